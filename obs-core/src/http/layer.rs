//! [`ObsLayer`] and its service and future.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderName, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

use super::request_id::{RequestId, REQUEST_ID_HEADER};
use super::Route;
use super::TARGET;
use crate::metrics::names;
use crate::metrics::{ActiveGuard, Method, Outcome, Scheme};
use crate::trace::span::{attach_server, with_extensions, ServerAttrs, SpanTrace};
use crate::trace::TraceContext;
use crate::Shared;

/// The obs middleware. Get it from [`crate::Obs::layer`]; cheap to clone.
///
/// ```
/// let obs = obs::test::init();
/// let layer: obs::http::ObsLayer = obs.layer();
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct ObsLayer {
    pub(crate) shared: Arc<Shared>,
}

impl<S> Layer<S> for ObsLayer {
    type Service = ObsService<S>;
    fn layer(&self, inner: S) -> ObsService<S> {
        ObsService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service produced by [`ObsLayer`].
///
/// ```
/// use tower_layer::Layer;
/// let obs = obs::test::init();
/// let svc = obs.layer().layer(tower_service_fn());
/// # fn tower_service_fn() -> axum::routing::Router { axum::routing::Router::new() }
/// # let _ = svc;
/// ```
#[derive(Clone)]
pub struct ObsService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ObsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let id = RequestId::for_request(req.headers());
        let trace = TraceContext::start(req.headers(), &self.shared.trace);
        let method = Method::of(req.method());
        let scheme = Scheme::of(req.uri());
        let route = Route::of(&req);
        let span = tracing::info_span!(
            target: TARGET,
            "request",
            request_id = id.as_str(),
            http.request.method = method.as_str(),
            http.route = route.as_deref(),
            url.path = req.uri().path(),
        );
        with_extensions(&span, |ext| {
            let server = (self.shared.exporting && trace.sampled()).then(|| ServerAttrs {
                method: method.as_str(),
                method_original: (method.as_str() == names::METHOD_OTHER)
                    .then(|| req.method().clone()),
                route: route.clone(),
                path: req.uri().path_and_query().cloned(),
                scheme: scheme.as_str(),
                request_id: id.clone(),
                status: None,
                error_type: None,
            });
            attach_server(ext, &trace, server);
            if self.shared.sentry {
                ext.insert(crate::sentry::RequestScope {
                    request_id: id.clone(),
                    method: method.as_str(),
                    route: route.clone(),
                    path: req.uri().path_and_query().cloned(),
                    breadcrumbs: Default::default(),
                    captured: false,
                });
            }
        });
        req.extensions_mut().insert(id.clone());
        req.extensions_mut().insert(trace);
        let active = self.shared.metrics.red.active(method, scheme);
        let inner = {
            let _entered = span.enter();
            catch_unwind(AssertUnwindSafe(|| self.inner.call(req))).ok()
        };
        ResponseFuture {
            inner,
            span,
            pending: Some(Pending {
                shared: Arc::clone(&self.shared),
                start,
                id,
                method,
                scheme,
                route,
                _active: active,
            }),
        }
    }
}

/// Completes the SERVER span: status code, `error.type`, and status Error on failures (5xx,
/// panic, cancellation; 4xx leaves it unset, as semconv requires for servers).
fn end_server_span(span: &Span, outcome: Outcome) {
    with_extensions(span, |ext| {
        let server = ext
            .get_mut::<SpanTrace>()
            .and_then(|t| t.record.as_mut())
            .and_then(|r| r.server.as_mut());
        if let Some(server) = server {
            server.status = outcome.status();
            server.error_type = outcome.error_type();
        }
    });
}

/// What is needed to finish the request; taken exactly once (response, panic, error or drop).
struct Pending {
    shared: Arc<Shared>,
    start: Instant,
    id: RequestId,
    method: Method,
    scheme: Scheme,
    route: Option<Route>,
    _active: ActiveGuard,
}

impl Pending {
    /// Records the metrics, writes the "request completed" line (inside the request span) and
    /// completes the SERVER span.
    fn finish(self, outcome: Outcome, span: &Span) {
        end_server_span(span, outcome);
        let secs = self.start.elapsed().as_secs_f64();
        let red = &self.shared.metrics.red;
        red.observe(
            self.method,
            self.scheme,
            self.route.as_deref(),
            outcome,
            secs,
        );
        let status = outcome.status();
        let error_type = outcome.error_type().map(tracing::field::display);
        let duration_ms = (secs * 1e6).round() / 1e3;
        macro_rules! completed {
            ($level:ident) => {
                tracing::$level!(
                    target: TARGET,
                    { http.response.status_code = status, duration_ms, error.r#type = error_type },
                    "request completed"
                )
            };
        }
        match outcome {
            Outcome::Status(s) if s < 500 => completed!(info),
            Outcome::Cancelled => completed!(warn),
            _ => completed!(error),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ObsService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        span: Span,
        pending: Option<Pending>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(pending) = this.pending.take() {
                // Dropped before completion: the client went away (or a timeout fired).
                let _entered = this.span.enter();
                pending.finish(Outcome::Cancelled, this.span);
            }
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let polled = match this.inner.as_mut().as_pin_mut() {
            Some(inner) => catch_unwind(AssertUnwindSafe(|| inner.poll(cx))),
            None => Err(Box::new("panicked in call") as Box<dyn std::any::Any + Send>),
        };
        let (outcome, result) = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(mut response))) => {
                let Some(pending) = this.pending.as_ref() else {
                    return Poll::Ready(Ok(response));
                };
                response.headers_mut().insert(
                    HeaderName::from_static(REQUEST_ID_HEADER),
                    pending.id.header_value(),
                );
                (Outcome::Status(response.status().as_u16()), Ok(response))
            }
            Ok(Poll::Ready(Err(e))) => (Outcome::ServiceError, Err(e)),
            Err(_panic) => {
                // The handler's future is in an unknown state: drop it, never poll it again.
                this.inner.set(None);
                let mut response = Response::new(ResBody::default());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                if let Some(pending) = this.pending.as_ref() {
                    response.headers_mut().insert(
                        HeaderName::from_static(REQUEST_ID_HEADER),
                        pending.id.header_value(),
                    );
                }
                (Outcome::Panic, Ok(response))
            }
        };
        if let Some(pending) = this.pending.take() {
            pending.finish(outcome, this.span);
        }
        Poll::Ready(result)
    }
}
