//! [`TraceContext`]: the ids of a request's SERVER span, as handlers and logs see them.
//!
//! Parsing and injecting `traceparent`/`tracestate`/`baggage` is the OpenTelemetry
//! propagators' job (`opentelemetry_sdk::propagation`); this type only presents the span's
//! context in the W3C text forms.

use std::fmt;

use opentelemetry::trace::{SpanContext, TraceContextExt};

/// The `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

/// The trace context of one request's SERVER span. See the [module docs](super).
///
/// ```
/// use obs::otel::opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
///
/// let span = SpanContext::new(
///     TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
///     SpanId::from_hex("00f067aa0ba902b7").unwrap(),
///     TraceFlags::SAMPLED,
///     false,
///     TraceState::NONE,
/// );
/// let ctx = obs::TraceContext::from(span);
/// assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(ctx.traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert!(ctx.sampled());
/// ```
#[derive(Clone, PartialEq)]
pub struct TraceContext(SpanContext);

impl From<SpanContext> for TraceContext {
    fn from(span: SpanContext) -> Self {
        Self(span)
    }
}

impl TraceContext {
    /// The context of the current `tracing` span (through tracing-opentelemetry), or of the
    /// active OpenTelemetry span; an invalid (all-zero) context outside any span.
    ///
    /// ```
    /// let obs = obs::test::init();
    /// let span = tracing::info_span!("job");
    /// let _entered = span.enter();
    /// assert_eq!(obs::TraceContext::current().trace_id().len(), 32);
    /// assert!(obs::TraceContext::current().is_valid());
    /// ```
    pub fn current() -> Self {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let cx = tracing::Span::current().context();
        Self(cx.span().span_context().clone())
    }

    /// Whether the ids are real (not all zero).
    pub fn is_valid(&self) -> bool {
        self.0.is_valid()
    }

    /// The OpenTelemetry span context.
    pub fn span_context(&self) -> &SpanContext {
        &self.0
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        self.0.trace_id().to_string()
    }

    /// This span's id, 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        self.0.span_id().to_string()
    }

    /// The trace flags, 2 lowercase hex digits (`01` = sampled).
    pub fn trace_flags(&self) -> String {
        format!("{:02x}", self.0.trace_flags().to_u8())
    }

    /// Whether the trace is sampled.
    pub fn sampled(&self) -> bool {
        self.0.is_sampled()
    }

    /// The `tracestate` carried by the trace, if any.
    pub fn tracestate(&self) -> Option<String> {
        let state = self.0.trace_state().header();
        (!state.is_empty()).then_some(state)
    }

    /// The `traceparent` to send downstream: this trace, this span as the parent. Clients
    /// instrumented with the OpenTelemetry propagator (reqwest-tracing, tonic interceptors) send
    /// it by themselves.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id(),
            self.span_id(),
            self.trace_flags()
        )
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("traceparent", &self.traceparent())
            .finish_non_exhaustive()
    }
}

/// Puts the current span's context into `carrier` (any string map: a job's headers, a message's
/// attributes) as the installed propagators write it (`OTEL_PROPAGATORS`: `traceparent`,
/// `tracestate`, `baggage`), so that the work it carries continues this trace. Nothing is
/// written outside a span, or before [`crate::init`] installed the propagators.
///
/// ```no_run
/// use std::collections::HashMap;
/// let obs = obs::init()?;
/// let span = tracing::info_span!("enqueue welcome email");
/// let _entered = span.enter();
/// let mut headers: HashMap<String, String> = HashMap::new();
/// obs::trace::inject(&mut headers);
/// assert!(headers.contains_key("traceparent"));
/// # Ok::<(), obs::Error>(())
/// ```
pub fn inject(carrier: &mut dyn opentelemetry::propagation::Injector) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, carrier));
}

/// The context `carrier` names (what [`inject`] wrote, or another OpenTelemetry producer's),
/// for a consumer's span: its parent (`OpenTelemetrySpanExt::set_parent`) or a link. A missing
/// or malformed `traceparent` gives a context without a remote span (`TraceContextExt::span`'s
/// context is not valid): the consumer starts a new trace.
///
/// ```no_run
/// use std::collections::HashMap;
/// use obs::otel::opentelemetry::trace::TraceContextExt;
/// use obs::otel::tracing_opentelemetry::OpenTelemetrySpanExt;
/// let obs = obs::init()?;
/// let headers = HashMap::from([(
///     "traceparent".to_owned(),
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
/// )]);
/// let producer = obs::trace::extract(&headers);
/// assert!(producer.span().span_context().is_valid());
/// let span = tracing::info_span!("process welcome email", otel.kind = "consumer");
/// let _ = span.set_parent(producer); // the job's span continues the producer's trace
/// # Ok::<(), obs::Error>(())
/// ```
pub fn extract(carrier: &dyn opentelemetry::propagation::Extractor) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier))
}

/// Writes the active OpenTelemetry span's `trace_id`, `span_id` and `trace_flags` as JSON
/// members (`,"trace_id":"..."...`) into `out`; nothing outside a span. tracing-opentelemetry
/// activates the span's context when a `tracing` span is entered, so these are the exported ids.
pub(crate) fn write_current_ids(out: &mut Vec<u8>) {
    with_current(|sc| {
        out.extend_from_slice(b",\"trace_id\":\"");
        crate::ids::write_hex(out, &sc.trace_id().to_bytes());
        out.extend_from_slice(b"\",\"span_id\":\"");
        crate::ids::write_hex(out, &sc.span_id().to_bytes());
        out.extend_from_slice(b"\",\"trace_flags\":\"");
        crate::ids::write_hex(out, &[sc.trace_flags().to_u8()]);
        out.push(b'"');
    });
}

/// `f` of the active OpenTelemetry span's context, when there is a valid one: the one reader of
/// the current ids (the log lines', the exemplars', Sentry's). tracing-opentelemetry activates
/// a span's context when its `tracing` span is entered, so these are the exported ids.
pub(crate) fn with_current<R>(f: impl FnOnce(&SpanContext) -> R) -> Option<R> {
    opentelemetry::Context::map_current(|cx| {
        if !cx.has_active_span() {
            return None;
        }
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| f(sc))
    })
}
