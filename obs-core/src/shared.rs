//! [`Shared`]: the state the guard, the middleware, jobs, the admin server and the shutdown
//! signal share (one `Arc` of it per `Obs`).

use std::sync::atomic::AtomicBool;

use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::report::Reporter;

/// State shared by the guard, the middleware, the admin server and the shutdown signal.
pub(crate) struct Shared {
    pub metrics: Metrics,
    /// What `/readyz` says.
    pub ready: Readiness,
    /// Bearer token `/metrics` requires (the admin server needs axum).
    #[cfg(feature = "axum")]
    pub metrics_token: Option<String>,
    /// The propagators (`OTEL_PROPAGATORS`) that read a request's incoming context.
    pub propagator: opentelemetry::propagation::TextMapCompositePropagator,
    /// Sentry, when on (each request gets a hub of its own).
    pub sentry: Option<Reporter>,
    /// Whether a job's malformed `traceparent` was said already (it is said once).
    pub warned_malformed_parent: AtomicBool,
}
