//! A minimal blocking HTTP/1.1 client over `TcpStream`.
//!
//! It sends exactly the bytes it is given (so tests can send hostile headers that well-behaved
//! clients refuse to build) and reads one response per connection (`Connection: close`).
//!
//! ```no_run
//! let addr = "127.0.0.1:3000".parse().unwrap();
//! let response = obs_testkit::client::get(addr, "/users/7").unwrap();
//! assert_eq!(response.status, 200);
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Per-request timeout for connecting, writing and reading.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy UTF-8), de-chunked.
    pub body: String,
}

impl Response {
    /// The `x-request-id` obs echoed (panics without one).
    pub fn request_id(&self) -> String {
        self.header("x-request-id")
            .expect("x-request-id")
            .to_owned()
    }

    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    request(addr, "GET", path, &[])
}

/// Sends one request with extra raw headers and reads the response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
) -> io::Result<Response> {
    send(addr, encode_request(addr, method, path, headers))
}

/// `POST`s `body` as `application/json` and reads the response.
pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> io::Result<Response> {
    post(
        addr,
        path,
        &[("content-type", b"application/json")],
        body.as_bytes(),
    )
}

/// `POST`s `body` with extra raw headers (`content-length` is added) and reads the response.
pub fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> io::Result<Response> {
    let length = body.len().to_string();
    let mut all = headers.to_vec();
    all.push(("content-length", length.as_bytes()));
    let mut raw = encode_request(addr, "POST", path, &all);
    raw.extend_from_slice(body);
    send(addr, raw)
}

fn send(addr: SocketAddr, request: Vec<u8>) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(&request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// The bytes of a `Connection: close` request.
pub fn encode_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
) -> Vec<u8> {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n").into_bytes();
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req
}

fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Percent-encodes a query parameter value.
pub fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Waits until `GET /-/ready` on `addr` answers 200 (Prometheus', Alertmanager's and the
/// collector's readiness probe); panics after `timeout`, naming `what`.
pub fn wait_ready(addr: SocketAddr, timeout: std::time::Duration, what: &str) {
    crate::eventually(
        timeout,
        || format!("{what} not ready within {timeout:?}"),
        || {
            get(addr, "/-/ready")
                .is_ok_and(|r| r.status == 200)
                .then_some(())
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nX-Request-Id: a\r\ncontent-length: 2\r\n\r\nhi")
                .unwrap();
        assert_eq!(
            (r.status, r.header("x-request-id"), r.body.as_str()),
            (200, Some("a"), "hi")
        );
        let r = parse_response(b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (500, "abc"));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn query_encoding() {
        assert_eq!(
            encode_query("sum by (le) (x{a=\"b\"})"),
            "sum%20by%20%28le%29%20%28x%7Ba%3D%22b%22%7D%29"
        );
    }
}
