//! Real local receivers for the telemetry obs sends: an OTLP trace receiver (http/protobuf and
//! gRPC on one port, decoded with the official `opentelemetry-proto` types) and a Sentry
//! envelope endpoint. Each runs on its own thread and runtime, so tests of any runtime flavour
//! (or none) can use them, and each can misbehave on demand (fail, hang, be slow).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::StreamBody;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

pub use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
pub use opentelemetry_proto::tonic::trace::v1::Span;

/// How a receiver answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behavior {
    /// Accepts and answers success.
    Ok,
    /// Answers this HTTP status.
    Status(u16),
    /// Reads the request, then never answers.
    Hang,
    /// Answers success after this delay.
    Slow(Duration),
    /// Answers success without decoding or keeping anything (for load tests).
    Discard,
}

/// One export request as received.
#[derive(Clone, Debug)]
pub struct OtlpRequest {
    /// `grpc` or `http/protobuf`, from the path and content type.
    pub protocol: &'static str,
    /// The HTTP version the request came in (gRPC needs HTTP/2).
    pub version: axum::http::Version,
    pub headers: HeaderMap,
    pub body: ExportTraceServiceRequest,
}

struct Shared<T> {
    received: Mutex<Vec<T>>,
    behavior: Mutex<Behavior>,
}

impl<T: Clone> Shared<T> {
    fn new(behavior: Behavior) -> Arc<Self> {
        Arc::new(Self {
            received: Mutex::new(Vec::new()),
            behavior: Mutex::new(behavior),
        })
    }
    fn set(&self, behavior: Behavior) {
        *self.behavior.lock().unwrap_or_else(PoisonError::into_inner) = behavior;
    }
    fn behavior(&self) -> Behavior {
        *self.behavior.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn push(&self, item: T) {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(item);
    }
    fn all(&self) -> Vec<T> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Serves `app` on a loopback port from a new thread; returns the address.
fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("receiver runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let _ = axum::serve(listener, app).await;
        });
    });
    addr
}

/// Applies `behavior` before answering `ok`.
async fn answer(behavior: Behavior, ok: impl FnOnce() -> Response) -> Response {
    match behavior {
        Behavior::Ok | Behavior::Discard => ok(),
        Behavior::Status(code) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        Behavior::Hang => std::future::pending().await,
        Behavior::Slow(d) => {
            tokio::time::sleep(d).await;
            ok()
        }
    }
}

/// An OTLP/HTTP and OTLP/gRPC trace receiver on one loopback port.
pub struct OtlpReceiver {
    addr: SocketAddr,
    shared: Arc<Shared<OtlpRequest>>,
}

impl OtlpReceiver {
    /// Starts a receiver that answers with `behavior`.
    pub fn start(behavior: Behavior) -> Self {
        let shared = Shared::<OtlpRequest>::new(behavior);
        let app = Router::new()
            .route(OTLP_HTTP_PATH, post(otlp))
            .route(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                post(otlp),
            )
            .with_state(Arc::clone(&shared));
        Self {
            addr: serve(app),
            shared,
        }
    }

    /// The base endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`) for either protocol.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes how later requests are answered.
    pub fn set_behavior(&self, behavior: Behavior) {
        self.shared.set(behavior);
    }

    /// Every export request decoded so far.
    pub fn requests(&self) -> Vec<OtlpRequest> {
        self.shared.all()
    }

    /// Every span received so far, with its resource attributes.
    pub fn spans(&self) -> Vec<(BTreeMap<String, String>, Span)> {
        let mut out = Vec::new();
        for request in self.requests() {
            for rs in request.body.resource_spans {
                let resource = rs
                    .resource
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, display(&v)))
                    .collect::<BTreeMap<_, _>>();
                for ss in rs.scope_spans {
                    for span in ss.spans {
                        out.push((resource.clone(), span));
                    }
                }
            }
        }
        out
    }

    /// Waits until a span matching `pred` arrived, then returns every span so far: for a span
    /// that ends after the ones a test also reads (a SERVER span after its children), which
    /// were then exported with it or before. Panics after `timeout`.
    pub fn wait_for_span(&self, pred: impl Fn(&Span) -> bool, timeout: Duration) -> Vec<Span> {
        crate::eventually(
            timeout,
            || format!("no such span in {:#?}", self.spans()),
            || {
                let spans: Vec<Span> = self.spans().into_iter().map(|(_, s)| s).collect();
                spans.iter().any(&pred).then_some(spans)
            },
        )
    }

    /// Waits until `n` spans arrived (or `timeout`), then returns them all.
    pub fn wait_for_spans(&self, n: usize, timeout: Duration) -> Vec<Span> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans: Vec<Span> = self.spans().into_iter().map(|(_, s)| s).collect();
            if spans.len() >= n || Instant::now() >= deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The two OTLP transports on one handler: they share the recording and differ in framing,
/// in how a bad request is refused and in how a failure is answered.
async fn otlp(
    State(shared): State<Arc<Shared<OtlpRequest>>>,
    uri: axum::http::Uri,
    version: axum::http::Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let behavior = shared.behavior();
    let grpc = uri.path() != OTLP_HTTP_PATH;
    if !grpc && behavior == Behavior::Discard {
        return StatusCode::OK.into_response();
    }
    let decoded = if grpc {
        // gRPC framing: compressed flag (0), big-endian length, message.
        let framed = body.len() >= 5
            && body[0] == 0
            && u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize == body.len() - 5;
        match framed.then(|| ExportTraceServiceRequest::decode(&body[5..]).ok()) {
            Some(Some(decoded)) => decoded,
            _ => return grpc_reply(3, "malformed request"), // INVALID_ARGUMENT
        }
    } else {
        if headers.get("content-type").map(|v| v.as_bytes()) != Some(b"application/x-protobuf") {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected application/x-protobuf",
            )
                .into_response();
        }
        let Ok(decoded) = ExportTraceServiceRequest::decode(body) else {
            return (StatusCode::BAD_REQUEST, "undecodable protobuf").into_response();
        };
        decoded
    };
    shared.push(OtlpRequest {
        protocol: if grpc { "grpc" } else { "http/protobuf" },
        version,
        headers,
        body: decoded,
    });
    match behavior {
        Behavior::Status(_) if grpc => grpc_reply(14, "unavailable"), // UNAVAILABLE
        other if grpc => answer(other, || grpc_reply(0, "")).await,
        // ExportTraceServiceResponse {} is empty: an empty protobuf body.
        other => {
            answer(other, || {
                ([("content-type", "application/x-protobuf")], Vec::new()).into_response()
            })
            .await
        }
    }
}

const OTLP_HTTP_PATH: &str = "/v1/traces";

/// A unary gRPC response: an empty message, then `grpc-status` in the trailers.
fn grpc_reply(code: u32, message: &str) -> Response {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", code.into());
    if !message.is_empty() {
        trailers.insert("grpc-message", message.parse().expect("ascii message"));
    }
    let frames = vec![
        Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let body = Body::new(StreamBody::new(futures_util::stream::iter(frames)));
    Response::builder()
        .header("content-type", "application/grpc")
        .body(body)
        .expect("valid response")
}

/// Span or resource attributes as a map.
pub fn attributes(
    kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> BTreeMap<String, AnyValue> {
    kvs.iter()
        .filter_map(|kv| Some((kv.key.clone(), kv.value.as_ref()?.value.clone()?)))
        .collect()
}

/// An attribute value as text (strings unquoted).
pub fn display(v: &AnyValue) -> String {
    match v {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        AnyValue::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Lowercase hex of an id.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One Sentry envelope as received.
#[derive(Clone, Debug)]
pub struct SentryEnvelope {
    /// The `X-Sentry-Auth` header.
    pub auth: String,
    /// The raw body (to check what was *not* sent).
    pub raw: String,
    /// The envelope header line.
    pub header: serde_json::Value,
    /// Each item: its header and its payload.
    pub items: Vec<(serde_json::Value, serde_json::Value)>,
}

impl SentryEnvelope {
    /// The event payloads of this envelope.
    pub fn events(&self) -> impl Iterator<Item = &serde_json::Value> {
        self.items
            .iter()
            .filter(|(h, _)| h["type"] == "event")
            .map(|(_, p)| p)
    }
}

/// A Sentry envelope endpoint (`/api/{project}/envelope/`) on a loopback port.
pub struct SentryReceiver {
    addr: SocketAddr,
    shared: Arc<Shared<Result<SentryEnvelope, String>>>,
}

impl SentryReceiver {
    /// Starts an endpoint that answers with `behavior`.
    pub fn start(behavior: Behavior) -> Self {
        let shared = Shared::<Result<SentryEnvelope, String>>::new(behavior);
        let app = Router::new()
            .route("/api/{project}/envelope/", post(sentry_envelope))
            .with_state(Arc::clone(&shared));
        Self {
            addr: serve(app),
            shared,
        }
    }

    /// A DSN for project 42 with public key `key`.
    pub fn dsn(&self, key: &str) -> String {
        format!("http://{key}@{}/42", self.addr)
    }

    /// Changes how later requests are answered.
    pub fn set_behavior(&self, behavior: Behavior) {
        self.shared.set(behavior);
    }

    /// Every envelope so far; an envelope that did not parse is an `Err` with the reason.
    pub fn envelopes(&self) -> Vec<Result<SentryEnvelope, String>> {
        self.shared.all()
    }

    /// The events of every well-formed envelope, waiting until `n` arrived (or `timeout`).
    pub fn wait_for_events(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events: Vec<serde_json::Value> = self
                .envelopes()
                .iter()
                .flatten()
                .flat_map(|e| e.events().cloned().collect::<Vec<_>>())
                .collect();
            if events.len() >= n || Instant::now() >= deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn sentry_envelope(
    State(shared): State<Arc<Shared<Result<SentryEnvelope, String>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let behavior = shared.behavior();
    if behavior == Behavior::Discard {
        return StatusCode::OK.into_response();
    }
    let auth = headers
        .get("x-sentry-auth")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let parsed = parse_envelope(&body).map(|(header, items)| SentryEnvelope {
        auth,
        raw: String::from_utf8_lossy(&body).into_owned(),
        header,
        items,
    });
    let ok = parsed.is_ok();
    shared.push(parsed);
    if !ok {
        return (StatusCode::BAD_REQUEST, "malformed envelope").into_response();
    }
    answer(behavior, || (StatusCode::OK, "{}").into_response()).await
}

type Items = Vec<(serde_json::Value, serde_json::Value)>;

/// Parses an envelope: a JSON header line, then items, each a JSON header line (with `length`
/// in bytes, or up to the next newline) and a payload.
pub fn parse_envelope(body: &[u8]) -> Result<(serde_json::Value, Items), String> {
    let line_end = |from: usize| {
        body[from..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|p| from + p)
    };
    let end = line_end(0).ok_or("no envelope header line")?;
    let header: serde_json::Value =
        serde_json::from_slice(&body[..end]).map_err(|e| format!("envelope header: {e}"))?;
    let mut pos = end + 1;
    let mut items = Vec::new();
    while pos < body.len() {
        let end = line_end(pos).ok_or("item header without newline")?;
        let item: serde_json::Value =
            serde_json::from_slice(&body[pos..end]).map_err(|e| format!("item header: {e}"))?;
        pos = end + 1;
        let payload_end = match item["length"].as_u64() {
            Some(len) => pos + len as usize,
            None => line_end(pos).unwrap_or(body.len()),
        };
        let payload = body
            .get(pos..payload_end)
            .ok_or("payload shorter than its length")?;
        let payload: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| format!("payload: {e}"))?;
        items.push((item, payload));
        pos = payload_end;
        if body.get(pos) == Some(&b'\n') {
            pos += 1;
        }
    }
    Ok((header, items))
}

/// A port that accepts TCP connections and never says anything (a hung collector).
pub struct BlackHole {
    addr: SocketAddr,
}

impl BlackHole {
    /// Starts accepting; accepted connections are held open until the process exits.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        });
        Self { addr }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// An address where nothing listens (connections are refused).
pub fn refused_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    format!("http://{addr}")
}

/// A downstream HTTP service that answers every request 200 and keeps its headers (the mail
/// provider a job calls, to see the `traceparent` it sent).
pub struct HttpRecorder {
    addr: SocketAddr,
    shared: Arc<Shared<HeaderMap>>,
}

impl HttpRecorder {
    /// Starts a recorder on a loopback port.
    pub fn start() -> Self {
        let shared = Shared::<HeaderMap>::new(Behavior::Ok);
        let app = Router::new()
            .fallback(
                |State(shared): State<Arc<Shared<HeaderMap>>>, headers: HeaderMap| async move {
                    shared.push(headers);
                    StatusCode::OK
                },
            )
            .with_state(Arc::clone(&shared));
        Self {
            addr: serve(app),
            shared,
        }
    }

    /// Its base URL, `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The headers of every request so far.
    pub fn requests(&self) -> Vec<HeaderMap> {
        self.shared.all()
    }
}

/// A metrics target serving `page` (which the caller may change) as Prometheus text.
pub fn serve_text(page: Arc<Mutex<String>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = page.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    addr
}
