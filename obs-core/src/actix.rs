//! `obs.actix()`: obs' middleware for actix-web 4, which is not tower. It does what
//! `obs.layer()` does on axum, through the same request model, span, in-flight record and
//! "request completed" line:
//!
//! - the request id (`x-request-id` kept when valid, else a new UUIDv7; echoed; a handler reads
//!   it as `web::ReqData<obs::RequestId>`);
//! - the SERVER span, continuing the caller's W3C context, so reqwest-tracing inside a handler
//!   propagates the trace;
//! - the RED series with the route template (`HttpRequest::match_pattern`, read once; no
//!   `http_route` at all when nothing matched, never the raw path);
//! - the request's own Sentry hub;
//! - a panicking handler answered 500, with an ERROR line and one Sentry event;
//! - a request dropped before its response (the client went away) counted as cancelled.
//!
//! An error a handler returns (`actix_web::Error`) is passed on, counted with its status, and
//! its response will carry the request id; so is a panic's 500.
//!
//! ```
//! use actix_web::{web, App};
//!
//! let obs = obs::test::init();
//! let app = App::new()
//!     .wrap(obs.actix())
//!     .route("/users/{id}", web::get().to(|| async { "hello" }));
//! # let _ = app;
//! ```

use std::future::{ready, Future, Ready};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use opentelemetry::propagation::Extractor;

use crate::http::{begin, InFlight};
use crate::request::{
    HttpRoute, Method, Outcome, RequestId, RequestInfo, Route, Scheme, REQUEST_ID_HEADER,
};
use crate::shared::Shared;

/// The obs middleware for actix-web: `App::new().wrap(obs.actix())`. Get it from
/// [`crate::Obs::actix`]; cheap to clone.
#[derive(Clone)]
pub struct ObsActix {
    shared: Arc<Shared>,
}

impl ObsActix {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S, B> Transform<S, ServiceRequest> for ObsActix
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = ObsActixService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ObsActixService {
            service,
            shared: Arc::clone(&self.shared),
        }))
    }
}

/// The service [`ObsActix`] wraps around an app.
pub struct ObsActixService<S> {
    service: S,
    shared: Arc<Shared>,
}

/// The request model of an actix request (whose `http` types are of `http` 0.2); the host is
/// copied only for Sentry's request URL.
fn request_info(req: &ServiceRequest, id: RequestId, sentry: bool) -> RequestInfo {
    #[cfg(not(feature = "sentry"))]
    let _ = sentry;
    let uri = req.uri();
    RequestInfo {
        id,
        method: Method::named(req.method().as_str()),
        scheme: Scheme::named(uri.scheme_str()),
        // One call per request: it allocates.
        route: req
            .match_pattern()
            .map(|pattern| Route::Given(HttpRoute::from(pattern))),
        target: uri
            .path_and_query()
            .and_then(|pq| http::uri::PathAndQuery::try_from(pq.as_str()).ok()),
        #[cfg(feature = "sentry")]
        host: uri
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| req.headers().get("host").map(HeaderValue::as_bytes))
            .filter(|_| sentry)
            .and_then(|h| http::HeaderValue::from_bytes(h).ok()),
    }
}

/// Reads propagation headers from actix' header map.
struct ActixHeaders<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for ActixHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

impl<S, B> Service<ServiceRequest> for ObsActixService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = ActixFuture<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let start = Instant::now();
        let id = RequestId::or_new(
            req.headers()
                .get(REQUEST_ID_HEADER)
                .map(HeaderValue::as_bytes),
        );
        let info = Arc::new(request_info(&req, id.clone(), self.shared.sentry.is_some()));
        let headers = ActixHeaders(req.headers());
        let in_flight = begin(&self.shared, start, info, req.method().as_str(), &headers);
        req.extensions_mut().insert(id);
        let inner =
            in_flight.within(|| catch_unwind(AssertUnwindSafe(|| self.service.call(req))).ok());
        ActixFuture {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ObsActixService`].
    pub struct ActixFuture<F> {
        #[pin]
        inner: Option<F>,
        in_flight: Option<InFlight>,
    }

    impl<F> PinnedDrop for ActixFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(in_flight) = this.project().in_flight.take() {
                // Dropped before completion: the client went away.
                in_flight.finish(Outcome::Cancelled);
            }
        }
    }
}

impl<F, B> Future for ActixFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<B>, actix_web::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(in_flight) = this.in_flight.take() else {
            return Poll::Pending; // polled after completion
        };
        let mut inner = this.inner;
        let polled = in_flight.within(|| {
            let polled = match inner.as_mut().as_pin_mut() {
                Some(inner) => catch_unwind(AssertUnwindSafe(|| inner.poll(cx))),
                None => Err(Box::new("panicked in call") as Box<dyn std::any::Any + Send>),
            };
            let (answer, outcome) = match polled {
                Ok(Poll::Pending) => return None,
                Ok(Poll::Ready(Ok(response))) => {
                    let status = response.status().as_u16();
                    (Ok(response), Outcome::Status(status))
                }
                Ok(Poll::Ready(Err(error))) => {
                    let status = error.as_response_error().status_code().as_u16();
                    (Err(error), Outcome::Status(status))
                }
                Err(_panic) => {
                    // The handler's future is in an unknown state: drop it, never poll it again.
                    inner.set(None);
                    let error = actix_web::error::ErrorInternalServerError("");
                    (Err(error), Outcome::Panic)
                }
            };
            in_flight.record(outcome);
            Some(answer)
        });
        let Some(answer) = polled else {
            *this.in_flight = Some(in_flight);
            return Poll::Pending;
        };
        let id = HeaderValue::from_str(in_flight.request_id_str()).ok();
        Poll::Ready(match (answer, id) {
            (Ok(mut response), Some(id)) => {
                let name = HeaderName::from_static(REQUEST_ID_HEADER);
                response.headers_mut().insert(name, id);
                Ok(response)
            }
            (Err(error), Some(id)) => Err(WithRequestId { error, id }.into()),
            (answer, None) => answer,
        })
    }
}

/// An error passed on with the request id for its response: actix renders an error into a
/// response after the middleware, so the id goes with it.
struct WithRequestId {
    error: actix_web::Error,
    id: HeaderValue,
}

impl std::fmt::Debug for WithRequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.error, f)
    }
}

impl std::fmt::Display for WithRequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error, f)
    }
}

impl ResponseError for WithRequestId {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.error.as_response_error().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = self.error.error_response();
        let name = HeaderName::from_static(REQUEST_ID_HEADER);
        response.headers_mut().insert(name, self.id.clone());
        response
    }
}
