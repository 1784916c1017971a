//! W3C Trace Context (`traceparent`, `tracestate`), level 1.

use std::fmt;

use http::{HeaderMap, HeaderValue};

/// The `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header.
pub const TRACESTATE: &str = "tracestate";
/// Longest `tracestate` kept (the W3C limit is 32 members; 512 bytes is what must be propagated).
const TRACESTATE_MAX: usize = 512;

/// The trace context of one request's server span. See the [module docs](super).
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
/// let ctx = obs::TraceContext::for_request(&headers);
/// assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(ctx.parent_span_id().as_deref(), Some("00f067aa0ba902b7"));
/// assert_ne!(ctx.span_id(), "00f067aa0ba902b7", "the server span is a new span");
/// assert!(ctx.sampled());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub(super) trace_id: [u8; 16],
    pub(super) span_id: [u8; 8],
    pub(super) parent_span_id: Option<[u8; 8]>,
    pub(super) flags: u8,
    pub(super) tracestate: Option<HeaderValue>,
}

impl TraceContext {
    /// A new server span: the child of a valid incoming `traceparent`, else the root of a new
    /// (sampled) trace. An invalid header is ignored, as the specification requires.
    pub fn for_request(headers: &HeaderMap) -> Self {
        Self::start(headers, &super::TraceSettings::default())
    }

    /// The server span of a request under the configured propagators and sampler.
    pub(crate) fn start(headers: &HeaderMap, settings: &super::TraceSettings) -> Self {
        let incoming = headers
            .get(TRACEPARENT)
            .filter(|_| settings.propagate)
            .and_then(|v| parse_traceparent(v.as_bytes()));
        let mut ctx = match incoming {
            Some((trace_id, parent, flags)) => Self {
                trace_id,
                span_id: new_span_id(),
                parent_span_id: Some(parent),
                flags,
                tracestate: headers
                    .get(TRACESTATE)
                    .filter(|v| valid_tracestate(v.as_bytes()))
                    .cloned(),
            },
            None => Self::new_root(),
        };
        let parent_sampled = ctx.parent_span_id.map(|_| ctx.sampled());
        let sampled = settings
            .sampler
            .should_sample(&ctx.trace_id, parent_sampled);
        ctx.flags = (ctx.flags & !1) | u8::from(sampled);
        ctx
    }

    /// The root span of a new, sampled trace.
    ///
    /// ```
    /// let a = obs::TraceContext::new_root();
    /// assert!(a.parent_span_id().is_none() && a.sampled());
    /// assert_ne!(a.trace_id(), obs::TraceContext::new_root().trace_id());
    /// ```
    pub fn new_root() -> Self {
        Self {
            trace_id: new_trace_id(),
            span_id: new_span_id(),
            parent_span_id: None,
            flags: 1,
            tracestate: None,
        }
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// This span's id, 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span_id)
    }

    /// The incoming parent span's id, if the request continued a trace.
    pub fn parent_span_id(&self) -> Option<String> {
        self.parent_span_id.as_ref().map(|p| hex(p))
    }

    /// The trace flags, 2 lowercase hex digits (`01` = sampled).
    pub fn trace_flags(&self) -> String {
        hex(&[self.flags])
    }

    /// Whether the trace is sampled.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The incoming `tracestate`, kept as received (when valid).
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_ref().and_then(|v| v.to_str().ok())
    }

    /// The `traceparent` to send downstream: this trace, this span as the parent.
    ///
    /// ```
    /// let ctx = obs::TraceContext::new_root();
    /// let tp = ctx.traceparent();
    /// assert_eq!(tp, format!("00-{}-{}-01", ctx.trace_id(), ctx.span_id()));
    /// ```
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id(),
            self.span_id(),
            self.trace_flags()
        )
    }
}

/// The ids as lowercase hex, rendered once per span for every log line inside it.
#[derive(Clone)]
pub(crate) struct HexIds {
    trace_id: [u8; 32],
    span_id: [u8; 16],
    flags: [u8; 2],
}

impl HexIds {
    /// (trace id, span id, flags) as text.
    pub(crate) fn as_strs(&self) -> (&str, &str, &str) {
        fn s(b: &[u8]) -> &str {
            std::str::from_utf8(b).unwrap_or_default()
        }
        (s(&self.trace_id), s(&self.span_id), s(&self.flags))
    }
}

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

impl HexIds {
    pub(crate) fn new(trace_id: &[u8; 16], span_id: &[u8; 8], flags: u8) -> Self {
        let mut ids = HexIds {
            trace_id: [0; 32],
            span_id: [0; 16],
            flags: [0; 2],
        };
        hex_into(trace_id, &mut ids.trace_id);
        hex_into(span_id, &mut ids.span_id);
        hex_into(&[flags], &mut ids.flags);
        ids
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("traceparent", &self.traceparent())
            .finish_non_exhaustive()
    }
}

crate::http::request_extractor!(
    TraceContext,
    "The context set by `obs.layer()`; without the layer, one derived from the headers."
);

pub(super) fn new_trace_id() -> [u8; 16] {
    let mut trace_id = [0u8; 16];
    loop {
        trace_id[..8].copy_from_slice(&crate::ids::random_u64().to_be_bytes());
        trace_id[8..].copy_from_slice(&crate::ids::random_u64().to_be_bytes());
        if trace_id != [0; 16] {
            return trace_id;
        }
    }
}

pub(super) fn new_span_id() -> [u8; 8] {
    loop {
        let id = crate::ids::random_u64();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None, // uppercase is invalid in traceparent
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// `version-traceid-parentid-flags`; version 00 exactly, later versions by their first four
/// fields; all-zero ids and version `ff` are invalid.
fn parse_traceparent(v: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    if v.len() < 55 {
        return None;
    }
    let version: [u8; 1] = unhex(&v[0..2])?;
    if version[0] == 0xff
        || (version[0] == 0 && v.len() != 55)
        || (version[0] > 0 && v.len() > 55 && v[55] != b'-')
    {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id: [u8; 16] = unhex(&v[3..35])?;
    let parent: [u8; 8] = unhex(&v[36..52])?;
    let flags: [u8; 1] = unhex(&v[53..55])?;
    if trace_id == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace_id, parent, flags[0]))
}

/// A bounded list of `key=value` members of visible ASCII.
fn valid_tracestate(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= TRACESTATE_MAX
        && v.iter().all(|b| (0x20..0x7f).contains(b))
        && v.split(|b| *b == b',')
            .filter(|m| !m.iter().all(|b| *b == b' '))
            .all(|m| m.contains(&b'='))
        && v.split(|b| *b == b',').count() <= 32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(traceparent: &str, tracestate: Option<&str>) -> TraceContext {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_str(traceparent).unwrap());
        if let Some(ts) = tracestate {
            h.insert(TRACESTATE, HeaderValue::from_str(ts).unwrap());
        }
        TraceContext::for_request(&h)
    }

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_a_valid_parent() {
        let c = ctx(VALID, Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
        assert_eq!(c.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.parent_span_id().as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(
            c.tracestate(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        assert_eq!(c.span_id().len(), 16);
        let unsampled = ctx(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            None,
        );
        assert!(!unsampled.sampled());
        assert_eq!(unsampled.trace_flags(), "00");
        // A future version with extra fields is read by its first four.
        let future = ctx(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future",
            None,
        );
        assert_eq!(future.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn invalid_parents_start_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let c = ctx(bad, Some("a=b"));
            assert_ne!(c.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736", "{bad:?}");
            assert!(
                c.parent_span_id().is_none() && c.tracestate().is_none() && c.sampled(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hostile_tracestate_is_dropped() {
        assert_eq!(ctx(VALID, Some(&"a=b,".repeat(200))).tracestate(), None);
        assert_eq!(ctx(VALID, Some("no-equals")).tracestate(), None);
        assert_eq!(ctx(VALID, Some("a=b")).tracestate(), Some("a=b"));
    }

    #[test]
    fn traceparent_round_trips() {
        let root = TraceContext::new_root();
        let child = ctx(&root.traceparent(), None);
        assert_eq!(child.trace_id(), root.trace_id());
        assert_eq!(child.parent_span_id(), Some(root.span_id()));
    }
}
