//! A request's own Sentry hub (and the hub type jobs share): what `sentry::capture_*` and the
//! `sentry-tracing` layers see while the request's future is polled.

use std::sync::Arc;

use sentry::protocol::{Event, Request, Url};
use sentry::{Hub, Level};

use crate::request::{Outcome, RequestInfo};

/// One unit of work's hub (a request's, a job's): its breadcrumbs and scope changes are its
/// own.
pub(crate) struct UnitHub<T> {
    pub(super) hub: Arc<Hub>,
    pub(super) info: Arc<T>,
}

/// A request's hub.
pub(crate) type RequestHub = UnitHub<RequestInfo>;

impl<T> UnitHub<T> {
    pub fn new(base: &Arc<Hub>, info: Arc<T>) -> Self {
        // No scope of its own until something adds a breadcrumb or a tag: configuring one per
        // unit would copy the process' scope. The unit's tags are added where events are
        // processed (`with_request`, `with_job`, from the unit being polled).
        let hub = Arc::new(Hub::new_from_top(base));
        Self { hub, info }
    }

    /// Runs `f` (one poll of the unit) with this hub as the thread's current hub.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        Hub::run(Arc::clone(&self.hub), f)
    }
}

impl RequestHub {
    /// After the response: a server error that produced no Sentry event yet gets one, so every
    /// server error is in Sentry exactly once (grouped by route, not under one message).
    pub fn finish(&self, outcome: Outcome) {
        if outcome.error_type().is_none()
            || matches!(outcome, Outcome::Cancelled)
            || self.hub.last_event_id().is_some()
        {
            return;
        }
        let status = outcome
            .status()
            .map_or_else(|| "error".to_owned(), |s| s.to_string());
        let route = self.info.route.as_deref().unwrap_or("(unmatched route)");
        let message = format!("HTTP {status} from {} {route}", self.info.method.as_str());
        self.hub.capture_message(&message, Level::Error);
    }
}

/// Tags `request_id` and `http.route`; the request's method and URL without the query string
/// (never headers, cookies or body).
pub(super) fn with_request(mut event: Event<'static>, info: &RequestInfo) -> Event<'static> {
    event
        .tags
        .insert("request_id".to_owned(), info.id.as_str().to_owned());
    if let Some(route) = &info.route {
        event
            .tags
            .insert("http.route".to_owned(), route.to_string());
    }
    if event.request.is_none() {
        let host = info.host.as_ref().and_then(|h| h.to_str().ok());
        let url = format!(
            "{}://{}{}",
            info.scheme.as_str(),
            host.unwrap_or("localhost"),
            info.path()
        );
        event.request = Some(Request {
            url: Url::parse(&url).ok(),
            method: Some(info.method.as_str().to_owned()),
            ..Request::default()
        });
    }
    event
}
