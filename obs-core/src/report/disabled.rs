//! Without the `sentry` feature Sentry cannot be configured: these types have no values, so the
//! middleware's Sentry steps are never taken and compile to nothing.

use std::sync::Arc;
use std::time::Duration;

use super::SentryConfig;
use crate::env::{var, Env};
use crate::request::{JobInfo, JobOutcome, Outcome, RequestInfo};
use crate::resource::Service;

#[derive(Clone)]
pub(crate) enum SentrySettings {}

impl SentrySettings {
    /// A DSN set (in code or `SENTRY_DSN`) is a warning: Sentry is off without the feature.
    pub fn resolve(code: &SentryConfig, _service: &Service, env: &mut Env<'_>) -> Option<Self> {
        if code.dsn.is_some() || env.get(var::SENTRY_DSN).is_some() {
            env.warn(
                "a Sentry DSN is set but obs was built without the `sentry` feature; Sentry is off"
                    .to_owned(),
            );
        }
        None
    }

    pub fn environment(&self) -> &str {
        match *self {}
    }

    pub fn redacted_dsn(&self) -> String {
        match *self {}
    }
}

pub(crate) enum Reporter {}

impl Reporter {
    pub fn start(settings: &SentrySettings, _service_name: &str, _global: bool) -> Self {
        match *settings {}
    }

    pub fn request_hub(&self, _info: Arc<RequestInfo>) -> RequestHub {
        match *self {}
    }

    pub fn job_hub(&self, _info: Arc<JobInfo>) -> JobHub {
        match *self {}
    }

    pub fn close(&self, _timeout: Duration) -> bool {
        match *self {}
    }
}

pub(crate) enum RequestHub {}

impl RequestHub {
    pub fn run<R>(&self, _f: impl FnOnce() -> R) -> R {
        match *self {}
    }

    pub fn finish(&self, _outcome: Outcome) {
        match *self {}
    }
}

pub(crate) enum JobHub {}

impl JobHub {
    pub fn run<R>(&self, _f: impl FnOnce() -> R) -> R {
        match *self {}
    }

    pub fn finish(&self, _outcome: JobOutcome, _error: Option<&str>) {
        match *self {}
    }
}
