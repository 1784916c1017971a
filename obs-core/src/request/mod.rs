//! The neutral request model that logs, metrics, spans and Sentry all read: what the request
//! is ([`RequestInfo`], [`Method`], [`Scheme`], [`Route`], its [`RequestId`] and
//! [`HttpRoute`]), how it ended ([`Outcome`]), and the `tracing` target of its span; the same
//! for a job (`job`: [`JobInfo`], [`JobOutcome`]). It depends on nothing else in the crate but
//! the ids and the semantic-convention names, so none of the pieces that read it needs another.

mod id;
mod job;
mod route;

use std::cell::RefCell;
use std::num::NonZeroI32;
use std::sync::Arc;

pub use id::{is_valid as is_valid_request_id, RequestId, MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER};
#[cfg(feature = "sentry")]
pub(crate) use job::current_job;
pub use job::MAX_JOB_TEXT_LEN;
pub(crate) use job::{bounded, JobInfo, JobOutcome, JobPolling, JOB_TARGET};
pub use route::HttpRoute;

use crate::semconv;

/// The `tracing` target of the request span and the "request completed" line.
pub const TARGET: &str = "obs::http";

/// Whether `meta` is the middleware's request span or a job's span (`obs.job(..)`): the spans
/// whose fields every line inside them carries.
pub(crate) fn is_request_span(meta: &tracing_core::Metadata<'_>) -> bool {
    meta.is_span() && matches!(meta.target(), TARGET | JOB_TARGET)
}

/// What every piece of obs knows about one request (cheap to build: reference-counted clones).
pub(crate) struct RequestInfo {
    pub id: RequestId,
    pub method: Method,
    pub scheme: Scheme,
    pub route: Option<Route>,
    /// The request target; only its path is ever reported (never the query string).
    pub target: Option<http::uri::PathAndQuery>,
    /// The authority the client asked for (for Sentry's request URL).
    #[cfg(feature = "sentry")]
    pub host: Option<http::HeaderValue>,
}

impl RequestInfo {
    pub fn of<B>(req: &http::Request<B>, id: RequestId) -> Self {
        #[cfg(feature = "sentry")]
        let host = match req.uri().authority() {
            Some(a) => http::HeaderValue::from_str(a.as_str()).ok(),
            None => req.headers().get(http::header::HOST).cloned(),
        };
        Self {
            id,
            method: Method::of(req.method()),
            scheme: Scheme::of(req.uri()),
            route: Route::of(req),
            target: req.uri().path_and_query().cloned(),
            #[cfg(feature = "sentry")]
            host,
        }
    }

    /// The path, without the query string.
    pub fn path(&self) -> &str {
        self.target.as_ref().map_or("/", |t| t.path())
    }
}

thread_local! {
    /// The request whose future this thread is polling: set by the middleware around each poll,
    /// read by `Obs::record_request` and by the Sentry event processing of events captured
    /// during the poll.
    static CURRENT: RefCell<Option<Arc<RequestInfo>>> = const { RefCell::new(None) };
}

/// The request being polled on this thread, if any.
#[cfg(feature = "sentry")]
pub(crate) fn current() -> Option<Arc<RequestInfo>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Whether this thread is polling a request of the middleware.
pub(crate) fn is_polling() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

/// Makes a unit of work (a request, a job) the thread's current one of its kind until dropped,
/// then restores the previous one (they nest when one service calls another in process).
pub(crate) struct Scoped<T: 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<Arc<T>>>>,
    previous: Option<Arc<T>>,
}

impl<T: 'static> Scoped<T> {
    fn enter(key: &'static std::thread::LocalKey<RefCell<Option<Arc<T>>>>, info: &Arc<T>) -> Self {
        let previous = key.with(|c| c.replace(Some(Arc::clone(info))));
        Self { key, previous }
    }
}

impl<T: 'static> Drop for Scoped<T> {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // The unit's own reference is dropped outside the borrow.
        let _ours = self.key.with(|c| c.replace(previous));
    }
}

/// The request being polled, as the thread's current one.
pub(crate) type Polling = Scoped<RequestInfo>;

impl Polling {
    pub(crate) fn request(info: &Arc<RequestInfo>) -> Self {
        Scoped::enter(&CURRENT, info)
    }
}

/// The route template the router matched (`/users/{id}`), never the raw path; cloning it is a
/// reference-count increment at most.
#[derive(Clone, Debug)]
pub(crate) enum Route {
    /// Given by the service's router ([`HttpRoute`]); wins over axum's.
    Given(HttpRoute),
    #[cfg(feature = "axum")]
    Axum(axum::extract::MatchedPath),
}

impl Route {
    /// The matched route of `req`, if a router matched one.
    pub(crate) fn of<B>(req: &http::Request<B>) -> Option<Route> {
        let ext = req.extensions();
        if let Some(given) = ext.get::<HttpRoute>() {
            return Some(Route::Given(given.clone()));
        }
        #[cfg(feature = "axum")]
        if let Some(matched) = ext.get::<axum::extract::MatchedPath>() {
            return Some(Route::Axum(matched.clone()));
        }
        None
    }
}

impl std::ops::Deref for Route {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Route::Given(r) => r.as_str(),
            #[cfg(feature = "axum")]
            Route::Axum(m) => m.as_str(),
        }
    }
}

/// A non-OK gRPC status code (`grpc-status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GrpcCode(pub NonZeroI32);

impl GrpcCode {
    /// The code's canonical name (gRPC's `statuscodes.md`), a bounded label value.
    pub fn name(self) -> &'static str {
        match self.0.get() {
            1 => "CANCELLED",
            2 => "UNKNOWN",
            3 => "INVALID_ARGUMENT",
            4 => "DEADLINE_EXCEEDED",
            5 => "NOT_FOUND",
            6 => "ALREADY_EXISTS",
            7 => "PERMISSION_DENIED",
            8 => "RESOURCE_EXHAUSTED",
            9 => "FAILED_PRECONDITION",
            10 => "ABORTED",
            11 => "OUT_OF_RANGE",
            12 => "UNIMPLEMENTED",
            13 => "INTERNAL",
            14 => "UNAVAILABLE",
            15 => "DATA_LOSS",
            16 => "UNAUTHENTICATED",
            _ => semconv::ERROR_OTHER,
        }
    }
}

/// A request method, normalised to the known set or `_OTHER`.
///
/// Index into [`semconv::KNOWN_METHODS`]; `KNOWN_METHODS.len()` means `_OTHER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Method(u8);

impl Method {
    pub fn of(method: &http::Method) -> Self {
        Self::named(method.as_str())
    }

    /// The method named `s` (another framework's method type, as text).
    pub fn named(s: &str) -> Self {
        let i = semconv::KNOWN_METHODS
            .iter()
            .position(|m| *m == s)
            .unwrap_or(semconv::KNOWN_METHODS.len());
        Self(i as u8)
    }

    /// Its index: a known method's position, or `KNOWN_METHODS.len()` for `_OTHER`.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    pub fn as_str(self) -> &'static str {
        semconv::KNOWN_METHODS
            .get(usize::from(self.0))
            .copied()
            .unwrap_or(semconv::METHOD_OTHER)
    }
}

/// `url.scheme`: only `http` or `https`, whatever the request claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn of(uri: &http::Uri) -> Self {
        Self::named(uri.scheme_str())
    }

    /// The scheme a request's URI names (another framework's URI type, as text).
    pub fn named(scheme: Option<&str>) -> Self {
        if scheme == Some("https") {
            Scheme::Https
        } else {
            Scheme::Http
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Outcome {
    /// A response with this status was sent.
    Status(u16),
    /// The handler panicked; a 500 was sent.
    Panic,
    /// The client went away before a response.
    Cancelled,
    /// The inner service returned an error instead of a response.
    ServiceError,
    /// A gRPC response (HTTP status 200) whose `grpc-status` (in headers or trailers) is not OK.
    Grpc(GrpcCode),
}

impl Outcome {
    /// The status code sent, if any.
    pub fn status(self) -> Option<u16> {
        match self {
            Outcome::Status(s) => Some(s),
            Outcome::Grpc(_) => Some(200),
            Outcome::Panic => Some(500),
            Outcome::Cancelled | Outcome::ServiceError => None,
        }
    }

    /// `error.type`: the 5xx code as text or the failure kind; `None` when not a failure.
    pub fn error_type(self) -> Option<ErrorType> {
        match self {
            Outcome::Status(s) if s >= 500 => Some(ErrorType::Status(s)),
            Outcome::Status(_) => None,
            Outcome::Panic => Some(ErrorType::Kind(semconv::ERROR_PANIC)),
            Outcome::Cancelled => Some(ErrorType::Kind(semconv::ERROR_CANCELLED)),
            Outcome::ServiceError => Some(ErrorType::Kind(semconv::ERROR_OTHER)),
            Outcome::Grpc(code) => Some(ErrorType::Kind(code.name())),
        }
    }
}

/// An `error.type` value without allocating for the status-code case.
#[derive(Clone, Copy)]
pub(crate) enum ErrorType {
    Status(u16),
    Kind(&'static str),
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorType::Status(s) => write!(f, "{s}"),
            ErrorType::Kind(k) => f.write_str(k),
        }
    }
}
