//! Traces: every request has a trace id, exporter or not; OTLP export when configured.
//!
//! The middleware continues an incoming W3C `traceparent` (keeping `tracestate`) or starts a
//! new trace, and opens the request's SERVER span (`GET /users/{id}`). Spans that handlers open
//! with `tracing` become its children. The ids of the innermost span are on every log line
//! (`trace_id`, `span_id`, `trace_flags`), so logs from several services correlate before
//! anyone runs a tracing backend, and handlers can pass the context on:
//!
//! ```
//! use axum::{routing::get, Router};
//! use obs::TraceContext;
//!
//! async fn handler(trace: TraceContext) -> String {
//!     // Send `traceparent` to the next service so its logs share this trace id.
//!     format!("calling downstream with traceparent {}", trace.traceparent())
//! }
//! let obs = obs::test::init();
//! let app: Router = Router::new().route("/users/{id}", get(handler)).layer(obs.layer());
//! # let _ = app;
//! ```
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, sampled spans are exported over OTLP
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default, or `grpc`) in batches from a
//! bounded queue on a background thread; a full queue or a failed export drops spans and counts
//! them in `obs_spans_dropped_total`. Also read: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `_HEADERS`, `_TIMEOUT`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_PROPAGATORS` (`tracecontext`,
//! `baggage`, `none`), `OTEL_BSP_*` and `OTEL_SDK_DISABLED`.
//!
//! ```
//! let obs = obs::test::init_with(
//!     obs::Config::new()
//!         .otlp_endpoint("http://127.0.0.1:4318")
//!         .sampler(obs::trace::Sampler::TraceIdRatio(0.1)),
//! );
//! # obs.shutdown(std::time::Duration::from_millis(10));
//! ```

mod context;
#[cfg(feature = "otlp")]
pub(crate) mod otlp;
mod sampler;
mod settings;
pub(crate) mod span;

pub(crate) use context::HexIds;
pub use context::{TraceContext, TRACEPARENT, TRACESTATE};
pub use sampler::Sampler;
pub use settings::Protocol;
pub(crate) use settings::{redact_url, TraceConfig, TraceSettings};
