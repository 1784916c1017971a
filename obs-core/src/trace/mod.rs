//! Trace context: every request has a trace id, exporter or not.
//!
//! The middleware continues an incoming W3C `traceparent` (keeping `tracestate`) or starts a
//! new trace, and gives the request's server span its own span id. The ids are on every log
//! line of the request (`trace_id`, `span_id`, `trace_flags`), so logs from several services
//! correlate before anyone runs a tracing backend, and handlers can pass the context on:
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
//! let app: Router = Router::new().route("/", get(handler)).layer(obs.layer());
//! # let _ = app;
//! ```

mod context;

pub use context::{TraceContext, TRACEPARENT, TRACESTATE};
