//! Sentry error capture (`SENTRY_DSN`) with the `sentry` and `sentry-tracing` crates.
//!
//! The client, hub, transport thread (bounded queue, rate limits, client reports) and protocol
//! are the `sentry` crate's (obs' send step adds a request timeout and failure reports); `sentry-tracing`'s layers turn `error!` into events (an
//! `error = &e as &dyn Error` field becomes an `exception` with the error's type and source
//! chain) and `warn!`/`info!` into breadcrumbs; the panic integration reports panics with stack
//! frames, after any panic hook that was installed before.
//!
//! What obs adds is the request: each request runs with its own hub, so `sentry::capture_error`,
//! `capture_message`, `configure_scope` and `with_scope` inside a handler reach Sentry with the
//! request's tags (`request_id`, `trace_id`, `http.route`), its trace context and its method and
//! path (never headers, cookies, query string or body), and breadcrumbs of one request never
//! appear on another's event. A 5xx response that produced no Sentry event gets one
//! (`HTTP 502 from GET /quiet/{id}`), so every server error is in Sentry exactly once.
//!
//! ```
//! // With `SENTRY_DSN` set, `obs::init()` does this; `sentry_dsn` is the code equivalent.
//! let obs = obs::test::init_with(
//!     obs::Config::new().sentry_dsn("http://public@127.0.0.1:9/42"),
//! );
//! tracing::error!(order = 7, "payment failed"); // -> one Sentry event
//! # obs.shutdown(std::time::Duration::from_millis(10));
//! ```

#[cfg(not(feature = "sentry"))]
mod disabled;
#[cfg(feature = "sentry")]
mod enabled;
#[cfg(feature = "sentry")]
mod request;
#[cfg(feature = "sentry")]
mod settings;
#[cfg(feature = "sentry")]
mod transport;

#[cfg(not(feature = "sentry"))]
pub(crate) use disabled::{Reporter, RequestHub, SentrySettings};
#[cfg(feature = "sentry")]
pub(crate) use enabled::{layers, Reporter, RequestHub, SentrySettings};
