//! Sentry error capture (`SENTRY_DSN`): the reporter, the per-request and per-job hubs and the
//! transport;
//! documented on [`crate::sentry`].

#[cfg(not(feature = "sentry"))]
mod disabled;
#[cfg(feature = "sentry")]
mod enabled;
#[cfg(feature = "sentry")]
mod job;
#[cfg(feature = "sentry")]
mod request;
#[cfg(feature = "sentry")]
mod settings;
#[cfg(feature = "sentry")]
mod transport;

#[cfg(not(feature = "sentry"))]
pub(crate) use disabled::{JobHub, Reporter, RequestHub, SentrySettings};

/// What code set (`Config::sentry_dsn`, `Config::sentry_environment`).
#[derive(Clone, Default)]
pub(crate) struct SentryConfig {
    pub dsn: Option<String>,
    pub environment: Option<String>,
}
#[cfg(feature = "sentry")]
pub(crate) use enabled::{layers, Reporter, RequestHub, SentrySettings};
#[cfg(feature = "sentry")]
pub(crate) use job::JobHub;
