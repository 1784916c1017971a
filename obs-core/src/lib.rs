//! # obs: observability for Rust services in one call
//!
//! `obs::init()` installs JSON logs that carry a request id and trace ids, RED metrics in
//! Prometheus format, an admin server with `/metrics`, `/healthz` and `/readyz`, OTLP trace
//! export ([`trace`]) and Sentry error capture ([`sentry`]), all configured from standard
//! environment variables. `obs.layer()` is its one tower middleware. The returned [`Obs`] is the
//! guard: [`Obs::shutdown`] (or dropping it) flushes buffered log lines, spans and Sentry events,
//! bounded in time.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let obs = obs::init()?;
//!     let app = Router::new()
//!         .route("/users/{id}", get(|| async { "hello" }))
//!         .layer(obs.layer());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app)
//!         .with_graceful_shutdown(obs.shutdown_signal()) // SIGTERM, Ctrl-C
//!         .await?;
//!     obs.shutdown(std::time::Duration::from_secs(5)); // flush logs, spans, Sentry events
//!     Ok(())
//! }
//! ```
//!
//! | variable | effect | default |
//! |---|---|---|
//! | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | `service.name`, resource | executable name |
//! | `RUST_LOG` | log filter | `info` |
//! | `OBS_LOG_FORMAT` | `json` or `pretty` | `json` |
//! | `OBS_ADMIN_ADDR` | admin server address; `off` disables it | `0.0.0.0:9464` |
//! | `OBS_METRICS_TOKEN` | bearer token required on `/metrics` | none |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT`, `_PROTOCOL`, `_HEADERS`, `_TIMEOUT` | OTLP trace export | off |
//! | `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_PROPAGATORS`, `OTEL_SDK_DISABLED` | sampling, propagation | `parentbased_always_on`, `tracecontext,baggage`, `false` |
//! | `SENTRY_DSN`, `SENTRY_ENVIRONMENT`, `SENTRY_RELEASE` | Sentry; `SENTRY_RELEASE` is also the version when none is set | off |
//! | `OBS_VCS_REVISION` | the commit (`vcs.ref.head.revision` on spans, `target_info`) unless the resource has it | none |
//!
//! Code wins over the environment: see [`Config`]. For tests, [`test::init`] captures logs and
//! metrics without touching global state.
//!
//! Beyond tower servers: `obs.actix()` is the same middleware for actix-web 4 (feature
//! `actix`); [`Obs::job`] wraps a unit of work that is not a request (a job from a queue) with
//! its span, log fields, metric and Sentry hub ([`job`]); sqlx's statement events become CLIENT
//! spans and `db_client_operation_duration_seconds` ([`Config::db_system`],
//! [`Config::disable_sqlx`]).
//!
//! ## Floor plan
//!
//! Each module owns one thing and imports only the modules its row names, all of them listed
//! above it, so imports run one way and never in a circle; this file is the crate's face (docs,
//! `mod`s, re-exports) and nothing imports it. A test (`tests/floor_plan.rs`) holds the code to
//! this table.
//!
//! | module | owns | imports |
//! |---|---|---|
//! | `error` | [`Error`] and [`ParseError`] | - |
//! | `ids` | UUIDv7 and hex ids | - |
//! | `sync` | locks that survive a panic | - |
//! | `throttle` | at most one failure report a minute | - |
//! | `panic` | the panic hook's log line | - |
//! | [`semconv`] | metric, label and `error.type` names, the buckets | - |
//! | `env` | the one environment reader, the variables' names, `bad_value`, `redact_url` | - |
//! | `resource` | the service's name, version and resource attributes | env |
//! | `request` | the request model ([`RequestId`], [`HttpRoute`], method, route, outcome), its `tracing` target | ids, semconv |
//! | [`trace`] | the OpenTelemetry pipeline, its settings, the OTLP queue, `trace::context` (the one reader of the current ids) | env, error, ids, request, resource, sync, throttle |
//! | `report` | Sentry: the reporter, the request's hub, the transport, its settings | env, panic, request, resource, sync, throttle, trace::context |
//! | [`logs`] | the JSON layer, the writer, the filter, [`LogFormat`] and its settings | env, error, ids, request, sync, trace::context |
//! | [`metrics`] | the RED recorder, exemplars, OpenMetrics, its settings | env, request, resource, semconv, sync, trace::context |
//! | [`config`] | [`Config`], and `Settings` as the sum of the subsystems' settings | env, logs, metrics, report, resource, trace |
//! | `db` | sqlx's `sqlx::query` events as CLIENT spans and `db_client_operation_duration_seconds` | config, metrics, semconv, sync |
//! | `readiness` | what `/readyz` says: starting, ready, not ready, draining | - |
//! | `shared` | the state the guard, the middleware and the admin server share | metrics, readiness, report |
//! | [`http`] | the middleware: service -> future -> body -> finish; extractors; the bearer-token check | metrics, report, request, semconv, shared, trace |
//! | `actix` | `obs.actix()`: the middleware for actix-web (feature `actix`), on `http`'s span and in-flight record | http, request, shared |
//! | [`job`] | [`job::Job`]: a unit of work that is not a request (span, log fields, metric, hub, producer's trace) | ids, report, request, shared, trace |
//! | `admin` | the admin server (`/metrics`, `/healthz`, `/readyz`) | http, metrics, shared |
//! | `shutdown` | [`ShutdownSignal`] | shared |
//! | `obs` | [`Obs`]: building, `init`, `into_layers`, shutdown | actix, admin, config, db, env, error, http, job, logs, metrics, panic, readiness, report, request, shared, shutdown, sync, trace |
//! | `test` | [`test::init`]: obs without globals, logs captured | config, logs, obs, sync |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "axum")]
mod admin;
pub mod config;
mod db;
mod env;
mod error;
pub mod http;
mod ids;
pub mod job;
pub mod logs;
pub mod metrics;
mod obs;
mod panic;
mod readiness;
mod report;
mod request;
mod resource;
pub mod semconv;
mod shared;
mod shutdown;
mod sync;
pub mod test;
#[cfg(any(feature = "otlp", feature = "sentry"))]
mod throttle;
pub mod trace;

/// The pinned OpenTelemetry crates obs is built on; use these (or the same versions) in your
/// code so that your spans and propagation share obs' provider and context. reqwest-tracing
/// 0.7 (feature `opentelemetry_0_32`) and tonic 0.14 match them.
pub mod otel {
    pub use opentelemetry;
    #[cfg(feature = "otlp")]
    pub use opentelemetry_otlp;
    pub use opentelemetry_sdk;
    pub use tracing_opentelemetry;
}

/// Sentry error capture (`SENTRY_DSN`) with the `sentry` and `sentry-tracing` crates.
///
/// The client, hub, transport thread (bounded queue, rate limits, client reports) and protocol
/// are the `sentry` crate's (obs' send step adds a request timeout and failure reports); `sentry-tracing`'s layers turn `error!` into events (an
/// `error = &e as &dyn Error` field becomes an `exception` with the error's type and source
/// chain) and `warn!`/`info!` into breadcrumbs; the panic integration reports panics with stack
/// frames, after any panic hook that was installed before.
///
/// What obs adds is the request: each request runs with its own hub, so `sentry::capture_error`,
/// `capture_message`, `configure_scope` and `with_scope` inside a handler reach Sentry with the
/// request's tags (`request_id`, `trace_id`, `http.route`), its trace context and its method and
/// path (never headers, cookies, query string or body), and breadcrumbs of one request never
/// appear on another's event. A 5xx response that produced no Sentry event gets one
/// (`HTTP 502 from GET /quiet/{id}`), so every server error is in Sentry exactly once.
///
/// ```
/// // With `SENTRY_DSN` set, `obs::init()` does this; `sentry_dsn` is the code equivalent.
/// let obs = obs::test::init_with(
///     obs::Config::new().sentry_dsn("http://public@127.0.0.1:9/42"),
/// );
/// tracing::error!(order = 7, "payment failed"); // -> one Sentry event
/// # obs.shutdown(std::time::Duration::from_millis(10));
/// ```
///
/// This is the pinned `sentry` crate obs reports with: `obs::sentry::capture_error(&e)` inside a
/// handler carries the request's tags.
#[cfg(feature = "sentry")]
pub use ::sentry;

/// The README's Rust examples compile (they are doctests of this crate).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}

pub use config::{Config, LogFormat};
pub use error::{Error, ParseError};
pub use http::{HttpRoute, ObsLayer, RequestId};
pub use obs::{Layers, Obs};
/// The pinned `prometheus` crate, for registering your own metrics in [`Obs::registry`].
pub use prometheus;
pub use shutdown::ShutdownSignal;
pub use trace::TraceContext;

/// Installs obs from the environment. See the [crate docs](crate) and [`Config::init`].
///
/// ```
/// let obs = obs::init().expect("first init in this process");
/// assert!(obs::init().is_err(), "a second init is an error, not a panic");
/// obs.shutdown(std::time::Duration::from_secs(1));
/// ```
pub fn init() -> Result<Obs, Error> {
    Config::new().init()
}
