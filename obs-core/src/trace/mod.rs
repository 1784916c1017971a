//! Traces: every request has a trace id, exporter or not; OTLP export when configured.
//!
//! obs is built on the OpenTelemetry crates your own code calls: `tracing` spans become
//! OpenTelemetry spans through `tracing-opentelemetry` and the `opentelemetry_sdk` tracer
//! provider, exported by `opentelemetry-otlp`. [`crate::init`] installs that provider and the
//! text-map propagator (`OTEL_PROPAGATORS`: `tracecontext`, `baggage`) as the OpenTelemetry
//! globals, so `tracing::Span::current().context()` (`OpenTelemetrySpanExt`), reqwest-tracing,
//! tonic interceptors and `opentelemetry::global::tracer(..)` all see the request's context:
//!
//! ```
//! use axum::{routing::get, Router};
//! use obs::otel::tracing_opentelemetry::OpenTelemetrySpanExt;
//! use obs::otel::opentelemetry::trace::TraceContextExt;
//!
//! async fn handler() -> String {
//!     // What reqwest-tracing injects as `traceparent` into the outgoing request.
//!     let cx = tracing::Span::current().context();
//!     format!("trace {}", cx.span().span_context().trace_id())
//! }
//! let obs = obs::test::init();
//! let app: Router = Router::new().route("/users/{id}", get(handler)).layer(obs.layer());
//! # let _ = app;
//! ```
//!
//! Work that leaves the request (a job on a queue, a message) carries the trace in its own
//! headers: [`inject`] writes the current context into any string map and [`extract`] reads it
//! back for the consumer's span.
//!
//! The middleware continues an incoming `traceparent` (with `tracestate` and `baggage`) and opens
//! the request's SERVER span (`GET /users/{id}`); spans that handlers open with `tracing` become
//! its children, and `otel.name`, `otel.kind`, `otel.status_code` fields are honoured. The ids
//! of the innermost span are on every log line (`trace_id`, `span_id`, `trace_flags`).
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, sampled spans are exported by opentelemetry-otlp
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default, or `grpc`;
//! `OTEL_EXPORTER_OTLP_COMPRESSION=gzip`; retries as the OTLP specification says). What obs adds
//! is the isolation: spans wait in one bounded queue, are exported from obs' own thread, and a
//! full queue or a failed export drops them and counts them in `obs_spans_dropped_total`. Also
//! read: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `_HEADERS`, `_TIMEOUT`,
//! `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*` and `OTEL_SDK_DISABLED`.
//!
//! ```
//! let obs = obs::test::init_with(
//!     obs::Config::new()
//!         .otlp_endpoint("http://127.0.0.1:4318")
//!         .sampler(obs::trace::Sampler::TraceIdRatio(0.1)),
//! );
//! # obs.shutdown(std::time::Duration::from_millis(10));
//! ```

pub(crate) mod context;
#[cfg(feature = "otlp")]
mod otlp;
#[cfg(feature = "otlp")]
mod processor;
// Only OTLP export queues work for a thread of obs' own (Sentry's transport has its own).
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
mod queue;
mod sampler;
mod settings;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use opentelemetry::propagation::{Extractor, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_core::Subscriber;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

pub use context::{extract, inject, TraceContext, TRACEPARENT, TRACESTATE};
pub use sampler::Sampler;
pub use settings::Protocol;
pub(crate) use settings::{TraceConfig, TraceSettings};

use crate::resource::Service;
pub(crate) use queue::Worker;

/// The OpenTelemetry side of obs: the SDK tracer provider (with obs' bounded processor when
/// exporting) and the configured propagators.
pub(crate) struct Pipeline {
    pub provider: SdkTracerProvider,
    pub propagator: TextMapCompositePropagator,
    /// The export thread, when an endpoint is configured.
    pub worker: Option<Worker>,
    /// Spans dropped: queue full or export failed.
    pub dropped: Option<Arc<AtomicU64>>,
}

impl Pipeline {
    /// Builds the provider; starts the export thread when an endpoint is configured.
    pub fn start(settings: &TraceSettings, resource: Resource) -> Self {
        let builder = SdkTracerProvider::builder()
            .with_sampler(settings.sampler.to_sdk())
            .with_resource(resource.clone());
        #[cfg(feature = "otlp")]
        let (builder, worker, dropped) = match settings.otlp.clone() {
            Some(otlp) => {
                let (queue, worker) = otlp::start(otlp, resource);
                let dropped = Arc::clone(&queue.dropped);
                let processor = processor::BoundedProcessor { queue };
                (
                    builder.with_span_processor(processor),
                    Some(worker),
                    Some(dropped),
                )
            }
            None => (builder, None, None),
        };
        #[cfg(not(feature = "otlp"))]
        let (worker, dropped) = (None, None);
        Self {
            provider: builder.build(),
            propagator: propagator(settings),
            worker,
            dropped,
        }
    }

    /// The tracing-opentelemetry layer over this provider. It sees spans only: events stay log
    /// lines (and Sentry breadcrumbs), not span events, which keeps the request path cheap.
    pub fn provider_layer<S>(&self) -> impl Layer<S> + Send + Sync
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("obs"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_level(false)
            .with_target(false)
            .with_filter(filter_fn(|meta| meta.is_span()))
    }

    /// Installs the provider and a propagator as the OpenTelemetry globals.
    pub fn install_globals(&self, settings: &TraceSettings) {
        opentelemetry::global::set_tracer_provider(self.provider.clone());
        opentelemetry::global::set_text_map_propagator(propagator(settings));
    }
}

/// `OTEL_PROPAGATORS` as the SDK's propagators.
fn propagator(settings: &TraceSettings) -> TextMapCompositePropagator {
    let mut propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
    if settings.tracecontext {
        propagators.push(Box::new(TraceContextPropagator::new()));
    }
    if settings.baggage {
        propagators.push(Box::new(BaggagePropagator::new()));
    }
    TextMapCompositePropagator::new(propagators)
}

/// The OpenTelemetry resource: service name and version, `OTEL_RESOURCE_ATTRIBUTES`, the SDK.
pub(crate) fn resource(service: &Service) -> Resource {
    let mut builder = Resource::builder_empty()
        .with_detector(Box::new(
            opentelemetry_sdk::resource::TelemetryResourceDetector,
        ))
        .with_service_name(service.name.clone());
    if let Some(v) = &service.version {
        builder = builder.with_attribute(KeyValue::new("service.version", v.to_owned()));
    }
    builder
        .with_attributes(
            service
                .attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build()
}

/// Reads propagation headers from an `http::HeaderMap`.
pub(crate) struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
