//! Sentry error capture (`SENTRY_DSN`): `error!` events and panics become Sentry events,
//! `warn!` and `info!` become breadcrumbs.
//!
//! Events inside a request are tagged `request_id`, `trace_id` and `http.route`, carry the trace
//! context (so Sentry links them to the trace) and the request's method and path, never its
//! headers, cookies, query string or body. A 5xx response that produced no Sentry event yet gets
//! one (`HTTP 500 from GET /users/{id}`), so every server error is in Sentry exactly once.
//! Envelopes are sent from a background thread through a bounded queue; a slow or failing
//! Sentry drops events (counted in `obs_sentry_events_dropped_total`), never requests.
//!
//! ```
//! // With `SENTRY_DSN` set, `obs::init()` does this; `sentry_dsn` is the code equivalent.
//! let obs = obs::test::init_with(
//!     obs::Config::new().sentry_dsn("http://public@127.0.0.1:9/42"),
//! );
//! tracing::error!(order = 7, "payment failed"); // -> one Sentry event
//! # obs.shutdown(std::time::Duration::from_millis(10));
//! ```

mod dsn;
mod event;
mod transport;

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use tracing_core::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

pub use dsn::Dsn;
pub(crate) use event::Breadcrumb;
pub(crate) use transport::Transport;

use crate::export::Queue;
use crate::trace::span::{is_untraced_thread, SpanTrace};

/// Breadcrumbs kept per request, and for events outside requests.
const MAX_BREADCRUMBS: usize = 50;

/// The Sentry part of the effective configuration.
#[derive(Clone, Debug)]
pub(crate) struct SentrySettings {
    pub dsn: Dsn,
    pub environment: String,
    pub release: Option<String>,
}

impl SentrySettings {
    /// `SENTRY_DSN` (or code), `SENTRY_ENVIRONMENT`, `SENTRY_RELEASE`. A bad DSN is a warning
    /// that does not repeat the DSN.
    pub fn resolve(
        code_dsn: Option<&str>,
        code_environment: Option<&str>,
        default_release: Option<String>,
        resource: &[(String, String)],
        env: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<String>,
    ) -> Option<Self> {
        let (source, raw) = match code_dsn {
            Some(d) => ("code", d.to_owned()),
            None => ("SENTRY_DSN", env("SENTRY_DSN")?),
        };
        let dsn = match raw.parse::<Dsn>() {
            Ok(dsn) => dsn,
            Err(why) => {
                warnings.push(format!(
                    "invalid Sentry DSN from {source} (value hidden): {why}; Sentry is off"
                ));
                return None;
            }
        };
        let from_resource = |key: &str| {
            resource
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let environment = code_environment
            .map(str::to_owned)
            .or_else(|| env("SENTRY_ENVIRONMENT"))
            .or_else(|| from_resource("deployment.environment.name"))
            .or_else(|| from_resource("deployment.environment"))
            .unwrap_or_else(|| "production".to_owned());
        let release = env("SENTRY_RELEASE").or(default_release);
        Some(Self {
            dsn,
            environment,
            release,
        })
    }
}

/// Per-request Sentry scope, an extension of the request span.
pub(crate) struct RequestScope {
    pub request_id: crate::RequestId,
    pub method: &'static str,
    pub route: Option<crate::http::Route>,
    /// Only its path is sent (never the query string).
    pub path: Option<http::uri::PathAndQuery>,
    pub breadcrumbs: VecDeque<Breadcrumb>,
    /// A Sentry event was already sent for this request.
    pub captured: bool,
}

/// The layer: captures ERROR events, keeps WARN/INFO as breadcrumbs.
pub(crate) struct SentryLayer {
    queue: Queue<Vec<Vec<u8>>>,
    statics: event::Statics,
    /// Breadcrumbs of events outside any request.
    global: Mutex<VecDeque<Breadcrumb>>,
}

impl SentryLayer {
    pub fn new(settings: &SentrySettings, service_name: &str, queue: Queue<Vec<Vec<u8>>>) -> Self {
        Self {
            queue,
            statics: event::Statics::new(settings, service_name),
            global: Mutex::new(VecDeque::new()),
        }
    }
}

fn push_bounded(ring: &mut VecDeque<Breadcrumb>, crumb: Breadcrumb) {
    if ring.len() == MAX_BREADCRUMBS {
        ring.pop_front();
    }
    ring.push_back(crumb);
}

impl<S> Layer<S> for SentryLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::INFO || is_untraced_thread() {
            return;
        }
        let completion = event.metadata().target() == crate::http::TARGET;
        if level != Level::ERROR && completion {
            return; // the request is over: a breadcrumb could never be used
        }
        // The innermost span's trace ids, and the request span (outermost with a scope).
        let mut ids = None;
        let mut request = None;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let ext = span.extensions();
                if ids.is_none() {
                    ids = ext.get::<SpanTrace>().map(|t| t.hex.clone());
                }
                if ext.get::<RequestScope>().is_some() {
                    request = Some(span.id());
                }
            }
        }
        let request = request.and_then(|id| ctx.span(&id));
        if level != Level::ERROR {
            let crumb = Breadcrumb::of(event);
            match &request {
                Some(span) => {
                    if let Some(scope) = span.extensions_mut().get_mut::<RequestScope>() {
                        push_bounded(&mut scope.breadcrumbs, crumb);
                    }
                }
                None => push_bounded(
                    &mut self.global.lock().unwrap_or_else(PoisonError::into_inner),
                    crumb,
                ),
            }
            return;
        }
        let global = self
            .global
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let envelope = match &request {
            Some(span) => {
                let mut ext = span.extensions_mut();
                let Some(scope) = ext.get_mut::<RequestScope>() else {
                    return;
                };
                if completion && scope.captured {
                    return; // this request's error is in Sentry already
                }
                scope.captured = true;
                self.statics
                    .envelope(event, ids.as_ref(), Some(scope), &global)
            }
            None => self.statics.envelope(event, ids.as_ref(), None, &global),
        };
        self.queue.push(envelope);
    }
}
