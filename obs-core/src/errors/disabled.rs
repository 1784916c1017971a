//! Without the `sentry` feature Sentry cannot be configured: these types have no values, so the
//! middleware's Sentry steps are never taken and compile to nothing.

use std::sync::Arc;
use std::time::Duration;

use crate::request::{Outcome, RequestInfo};

#[derive(Clone)]
pub(crate) enum SentrySettings {}

impl SentrySettings {
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
