//! Request ids: `x-request-id` kept when safe, otherwise a fresh UUIDv7.

use std::fmt;

use http::HeaderValue;

/// The request-id header, lowercase as HTTP/2 requires.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest incoming id that is kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of the current request.
///
/// An incoming id is kept only if it is 1..=128 bytes of `[A-Za-z0-9._:-]`, so that nothing a
/// client sends can forge log lines, inject markup or blow up a log index. The id is echoed in
/// the response and can be extracted by handlers:
///
/// ```
/// use axum::{routing::get, Router};
/// use obs::RequestId;
///
/// async fn handler(id: RequestId) -> String {
///     format!("your request id is {id}")
/// }
/// let obs = obs::test::init();
/// let app: Router = Router::new().route("/", get(handler)).layer(obs.layer());
/// # let _ = app;
/// ```
///
/// ```
/// let id = obs::RequestId::from_incoming(Some(b"abc-123")).unwrap();
/// assert_eq!(id.as_str(), "abc-123");
/// assert!(obs::RequestId::from_incoming(Some(b"bad\nid")).is_none());
/// assert_eq!(obs::RequestId::generate().as_str().len(), 36);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// A fresh UUIDv7 id.
    ///
    /// ```
    /// assert_ne!(obs::RequestId::generate(), obs::RequestId::generate());
    /// ```
    pub fn generate() -> Self {
        let bytes = crate::ids::uuid_v7();
        Self(HeaderValue::from_bytes(&bytes).expect("hex and dashes are valid header bytes"))
    }

    /// The incoming id if it is valid, else `None`.
    ///
    /// ```
    /// assert!(obs::RequestId::from_incoming(Some("x".repeat(129).as_bytes())).is_none());
    /// assert!(obs::RequestId::from_incoming(Some("ünïcode".as_bytes())).is_none());
    /// ```
    pub fn from_incoming(value: Option<&[u8]>) -> Option<Self> {
        let value = value.filter(|v| is_valid(v))?;
        HeaderValue::from_bytes(value).ok().map(Self)
    }

    /// The id as text (always ASCII).
    ///
    /// ```
    /// let id = obs::RequestId::generate();
    /// assert!(id.as_str().is_ascii());
    /// ```
    pub fn as_str(&self) -> &str {
        // Only valid ids and generated UUIDs are ever stored: both are ASCII.
        self.0.to_str().unwrap_or_default()
    }

    /// The header value for the response.
    pub(crate) fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }

    /// Reads the request's `x-request-id`, or makes a new id.
    pub(crate) fn for_request(headers: &http::HeaderMap) -> Self {
        Self::or_new(headers.get(REQUEST_ID_HEADER).map(HeaderValue::as_bytes))
    }

    /// The incoming `x-request-id` (its bytes, from any framework's headers) if valid, else a
    /// new id.
    pub(crate) fn or_new(incoming: Option<&[u8]>) -> Self {
        Self::from_incoming(incoming).unwrap_or_else(Self::generate)
    }
}

/// Whether an incoming id may be kept: 1..=128 bytes of `[A-Za-z0-9._:-]`.
///
/// ```
/// assert!(obs::http::is_valid_request_id(b"req:2026-11-27.a_b"));
/// assert!(!obs::http::is_valid_request_id(b""));
/// assert!(!obs::http::is_valid_request_id(b"a\"b"));
/// ```
pub fn is_valid(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rules() {
        for ok in ["a", "abc-123", "A.b_c:d-e", &"x".repeat(128)] {
            assert!(is_valid(ok.as_bytes()), "{ok:?}");
        }
        for bad in [
            "",
            " ",
            "a b",
            "a\nb",
            "a\"b",
            "a\\b",
            "<script>",
            "é",
            "a\0",
            &"x".repeat(129),
        ] {
            assert!(!is_valid(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn for_request_keeps_valid_and_replaces_hostile() {
        let mut headers = http::HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(RequestId::for_request(&headers).as_str(), "abc-123");
        headers.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_bytes(&[b'x'; 10_240]).unwrap(),
        );
        let id = RequestId::for_request(&headers);
        assert_eq!(id.as_str().len(), 36);
        headers.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap(),
        );
        assert_eq!(RequestId::for_request(&headers).as_str().len(), 36);
        assert_eq!(
            RequestId::for_request(&http::HeaderMap::new())
                .as_str()
                .len(),
            36
        );
    }
}
