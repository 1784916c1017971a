//! Span ids for every span of a trace, and the record of sampled spans for export.
//!
//! The middleware attaches a [`SpanTrace`] to the request span (the SERVER span). [`SpanLayer`]
//! gives every span opened inside it (a handler's `tracing::info_span!`) its own span id under
//! the same trace, so log lines carry the ids of the innermost span, and, when the trace is
//! sampled and an exporter is configured, records name, times and fields, and hands the span to
//! the exporter's bounded queue when it closes.

use std::cell::Cell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use tracing::Span;
use tracing_core::field::{Field, Visit};
use tracing_core::span::{self, Id, Record};
use tracing_core::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{ExtensionsMut, LookupSpan};
use tracing_subscriber::Registry;

use super::context::{new_span_id, new_trace_id, HexIds};
use super::{Sampler, TraceContext};

/// The trace identity of one span (a span extension).
pub(crate) struct SpanTrace {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
    pub hex: HexIds,
    /// Present when the span is sampled and exported.
    pub record: Option<SpanRecord>,
}

impl SpanTrace {
    fn new(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Self {
        Self {
            hex: HexIds::new(&trace_id, &span_id, flags),
            trace_id,
            span_id,
            flags,
            record: None,
        }
    }
}

/// OTLP span kinds used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpanKind {
    Internal = 1,
    Server = 2,
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
}

/// Span attributes (the span's field names), in recording order.
pub(crate) type Attributes = Vec<(&'static str, Value)>;

/// The semconv attributes of a SERVER span, kept as the request's own values (reference-counted
/// clones, no formatting) and rendered only when exported.
#[derive(Clone)]
pub(crate) struct ServerAttrs {
    /// `http.request.method`: a known method or `_OTHER`.
    pub method: &'static str,
    /// `http.request.method_original`, for `_OTHER`.
    pub method_original: Option<http::Method>,
    pub route: Option<crate::http::Route>,
    /// `url.path` is its path (the query string is never exported).
    pub path: Option<http::uri::PathAndQuery>,
    pub scheme: &'static str,
    pub request_id: crate::RequestId,
    pub status: Option<u16>,
    /// Set on failures: status Error.
    pub error_type: Option<crate::metrics::ErrorType>,
}

/// Everything exported about one span.
#[derive(Clone)]
pub(crate) struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
    pub parent_span_id: Option<[u8; 8]>,
    /// The parent came from another process (`traceparent`).
    pub remote_parent: bool,
    pub tracestate: Option<HeaderValue>,
    /// The `tracing` span name; SERVER spans are named from `server` instead.
    pub name: &'static str,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Attributes,
    pub server: Option<ServerAttrs>,
}

impl SpanRecord {
    /// Sets `key`, replacing an earlier value.
    pub fn set(&mut self, key: &'static str, value: Value) {
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((key, value)),
        }
    }
}

pub(crate) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Where finished sampled spans go (encoded on the spot: nothing is allocated per span to
/// cross threads).
pub(crate) trait SpanSink: Send + Sync + 'static {
    fn export(&self, span: &SpanRecord);
}

thread_local! {
    /// Set on the exporters' own threads: their HTTP stack's spans must not be traced
    /// (exporting them would feed the exporter forever).
    static UNTRACED_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as one whose spans are never traced.
pub(crate) fn untraced_thread() {
    UNTRACED_THREAD.with(|c| c.set(true));
}

/// Whether the current thread is an exporter thread.
pub(crate) fn is_untraced_thread() -> bool {
    UNTRACED_THREAD.with(Cell::get)
}

/// Runs `f` on the registry extensions of `span`, if obs' subscriber records it.
pub(crate) fn with_extensions(span: &Span, f: impl FnOnce(&mut ExtensionsMut<'_>)) {
    span.with_subscriber(|(id, dispatch)| {
        if let Some(data) = dispatch
            .downcast_ref::<Registry>()
            .and_then(|registry| registry.span(id))
        {
            f(&mut data.extensions_mut());
        }
    });
}

/// Attaches `ctx` to the request span, with a SERVER record when the trace is exported.
pub(crate) fn attach_server(
    ext: &mut ExtensionsMut<'_>,
    ctx: &TraceContext,
    server: Option<ServerAttrs>,
) {
    let mut trace = SpanTrace::new(ctx.trace_id, ctx.span_id, ctx.flags);
    trace.record = server.filter(|_| ctx.sampled()).map(|server| SpanRecord {
        trace_id: ctx.trace_id,
        span_id: ctx.span_id,
        flags: ctx.flags,
        parent_span_id: ctx.parent_span_id,
        remote_parent: ctx.parent_span_id.is_some(),
        tracestate: ctx.tracestate.clone(),
        name: "",
        kind: SpanKind::Server,
        start_unix_nanos: unix_nanos(SystemTime::now()),
        end_unix_nanos: 0,
        attributes: Vec::new(),
        server: Some(server),
    });
    ext.insert(trace);
}

/// The layer that keeps span ids and records. Installed by [`crate::init`].
pub(crate) struct SpanLayer {
    pub sampler: Sampler,
    /// `None`: ids only, nothing recorded.
    pub sink: Option<Box<dyn SpanSink>>,
}

/// Whether `meta` is the middleware's request span (its trace is attached by the middleware).
pub(crate) fn is_request_span(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.target() == crate::http::TARGET
}

impl<S> Layer<S> for SpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        if is_request_span(meta) || is_untraced_thread() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let parent = span.parent().and_then(|p| {
            let ext = p.extensions();
            ext.get::<SpanTrace>()
                .map(|t| (t.trace_id, t.span_id, t.flags, t.record.is_some()))
        });
        let span_id = new_span_id();
        let (trace_id, parent_span_id, flags, recording) = match parent {
            Some((trace_id, parent, flags, recording)) => {
                (trace_id, Some(parent), flags, recording)
            }
            None => {
                let trace_id = new_trace_id();
                let sampled = self.sampler.should_sample(&trace_id, None);
                let recording = sampled && self.sink.is_some();
                (trace_id, None, u8::from(sampled), recording)
            }
        };
        let mut trace = SpanTrace::new(trace_id, span_id, flags);
        if recording {
            let mut record = SpanRecord {
                trace_id,
                span_id,
                flags,
                parent_span_id,
                remote_parent: false,
                tracestate: None,
                name: meta.name(),
                kind: SpanKind::Internal,
                start_unix_nanos: unix_nanos(SystemTime::now()),
                end_unix_nanos: 0,
                attributes: Vec::new(),
                server: None,
            };
            attrs.record(&mut Attrs(&mut record));
            trace.record = Some(record);
        }
        span.extensions_mut().insert(trace);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(record) = ext.get_mut::<SpanTrace>().and_then(|t| t.record.as_mut()) {
            values.record(&mut Attrs(record));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(sink) = &self.sink else { return };
        let Some(span) = ctx.span(&id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(record) = ext.get_mut::<SpanTrace>().and_then(|t| t.record.as_mut()) {
            record.end_unix_nanos = unix_nanos(SystemTime::now()).max(record.start_unix_nanos);
            sink.export(record);
        }
    }
}

/// Span fields as attributes. Empty (`field::Empty`) fields are absent until recorded.
struct Attrs<'a>(&'a mut SpanRecord);

impl Visit for Attrs<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.set(field.name(), Value::Str(value.to_owned()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.set(field.name(), Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.set(field.name(), Value::Int(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        let v = i64::try_from(value).map_or_else(|_| Value::Str(value.to_string()), Value::Int);
        self.0.set(field.name(), v);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.set(field.name(), Value::Float(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.set(field.name(), Value::Str(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.set(field.name(), Value::Str(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Spans(Arc<Mutex<Vec<SpanRecord>>>);
    impl SpanSink for Spans {
        fn export(&self, span: &SpanRecord) {
            self.0.lock().unwrap().push(span.clone());
        }
    }

    #[test]
    fn children_share_the_trace_and_record_fields() {
        let spans = Spans::default();
        let layer = SpanLayer {
            sampler: Sampler::default(),
            sink: Some(Box::new(spans.clone())),
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("outer", user = 7u64, ok = true);
            let _e = outer.enter();
            let inner = tracing::info_span!("db.query", db.statement = tracing::field::Empty);
            inner.record("db.statement", "SELECT 1");
            drop(inner);
        });
        let spans = spans.0.lock().unwrap();
        let (inner, outer) = (&spans[0], &spans[1]);
        assert_eq!((inner.name, outer.name), ("db.query", "outer"));
        assert_eq!(inner.trace_id, outer.trace_id);
        assert_eq!(inner.parent_span_id, Some(outer.span_id));
        assert_eq!(outer.parent_span_id, None);
        assert_eq!(
            inner.attributes,
            [("db.statement", Value::Str("SELECT 1".into()))]
        );
        assert_eq!(
            outer.attributes,
            [("user", Value::Int(7)), ("ok", Value::Bool(true))]
        );
        assert!(inner.end_unix_nanos >= inner.start_unix_nanos && inner.kind == SpanKind::Internal);
    }

    #[test]
    fn unsampled_roots_get_ids_but_no_record() {
        let spans = Spans::default();
        let layer = SpanLayer {
            sampler: Sampler::AlwaysOff,
            sink: Some(Box::new(spans.clone())),
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let _s = tracing::info_span!("job").entered();
        });
        assert!(spans.0.lock().unwrap().is_empty());
    }
}
