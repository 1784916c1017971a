//! [`ObsLayer`] and its service and future.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderName, Request, Response, StatusCode};
use opentelemetry::propagation::TextMapPropagator;
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::body::{Classify, ObsBody};
use super::request_id::{RequestId, REQUEST_ID_HEADER};
use super::TARGET;
use crate::metrics::names;
use crate::metrics::ActiveGuard;
use crate::request::{Outcome, Polling, RequestInfo};
use crate::trace::HeaderExtractor;
use crate::Shared;
use tower_http::classify::GrpcEosErrorsAsFailures;

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

/// The request's `tracing` span, which tracing-opentelemetry makes the SERVER span: `otel.*`
/// fields name it, the others are its attributes and every log line's fields (`otel.*` are not
/// logged, `request.id` is logged as `request_id`).
fn request_span(info: &RequestInfo, method: &http::Method) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = %SpanName(info),
        otel.kind = "server",
        otel.status_code = Empty,
        request.id = info.id.as_str(),
        http.request.method = info.method.as_str(),
        http.request.method_original = Empty,
        http.route = info.route.as_deref(),
        url.path = info.path(),
        url.scheme = info.scheme.as_str(),
        http.response.status_code = Empty,
        error.r#type = Empty,
    );
    if info.method.as_str() == names::METHOD_OTHER {
        span.record("http.request.method_original", method.as_str());
    }
    span
}

/// `GET /users/{id}`; `GET` without a route; `HTTP` for an unknown method (semconv).
struct SpanName<'a>(&'a RequestInfo);

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0.method.as_str(), self.0.route.as_deref()) {
            (names::METHOD_OTHER, _) => f.write_str("HTTP"),
            (m, Some(route)) => write!(f, "{m} {route}"),
            (m, None) => f.write_str(m),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ObsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ObsBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let id = RequestId::for_request(req.headers());
        let info = Arc::new(RequestInfo::of(&req, id.clone()));
        let span = request_span(&info, req.method());
        // The incoming `traceparent`/`tracestate`/`baggage` (as `OTEL_PROPAGATORS` says), or
        // none: a server span never inherits whatever context the thread had.
        let parent = self
            .shared
            .propagator
            .extract(&HeaderExtractor(req.headers()));
        let _ = span.set_parent(parent);
        let hub = self
            .shared
            .sentry
            .as_ref()
            .map(|reporter| reporter.request_hub(Arc::clone(&info)));
        req.extensions_mut().insert(id);
        let pending = Pending {
            shared: Arc::clone(&self.shared),
            start,
            _active: self.shared.metrics.red.active(info.method, info.scheme),
            info,
            span,
            hub,
        };
        let inner = pending.within(|| catch_unwind(AssertUnwindSafe(|| self.inner.call(req))).ok());
        ResponseFuture {
            inner,
            pending: Some(pending),
        }
    }
}

/// What is needed to finish the request; taken exactly once (response head, end of a gRPC
/// stream, panic, error or drop).
pub(crate) struct Pending {
    shared: Arc<Shared>,
    start: Instant,
    info: Arc<RequestInfo>,
    /// The SERVER span; it ends when this is dropped.
    span: Span,
    hub: Option<crate::errors::RequestHub>,
    _active: ActiveGuard,
}

impl Pending {
    /// Records the metrics, completes the SERVER span (status code, `error.type`, status Error
    /// on failures; 4xx leaves it unset, as semconv requires for servers), writes the "request
    /// completed" line and, for an unreported server error, the Sentry event.
    pub(crate) fn finish(self, outcome: Outcome) {
        self.within(|| self.record(outcome));
    }

    /// [`Pending::finish`]'s work, inside [`Pending::within`].
    fn record(&self, outcome: Outcome) {
        let ended = Instant::now();
        let secs = ended.duration_since(self.start).as_secs_f64();
        let info = &self.info;
        self.shared.metrics.red.observe(
            info.method,
            info.scheme,
            info.route.as_deref(),
            outcome,
            secs,
            Some(ended),
        );
        let status = outcome.status();
        let error_type = outcome.error_type();
        if let Some(status) = status {
            self.span
                .record("http.response.status_code", i64::from(status));
        }
        if let Some(error_type) = error_type {
            self.span
                .record("error.type", tracing::field::display(error_type));
            self.span.record("otel.status_code", "ERROR");
        }
        let error_type = error_type.map(tracing::field::display);
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
        if let Some(hub) = &self.hub {
            hub.finish(outcome);
        }
    }

    /// Runs `f` inside the request's span and Sentry hub.
    pub(crate) fn within<R>(&self, f: impl FnOnce() -> R) -> R {
        let _entered = self.span.enter();
        let _polling = Polling::enter(&self.info);
        match &self.hub {
            Some(hub) => hub.run(f),
            None => f(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ObsService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        pending: Option<Pending>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(pending) = this.project().pending.take() {
                // Dropped before completion: the client went away (or a timeout fired).
                pending.finish(Outcome::Cancelled);
            }
        }
    }
}

/// What a poll of the inner future came to, decided inside the request's span.
enum Step<B, E> {
    Pending,
    /// The response; with the classifier still to read its trailers (gRPC), or finished.
    Response(Response<B>, Option<GrpcEosErrorsAsFailures>),
    Error(E),
    Panicked,
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: http_body::Body,
{
    type Output = Result<Response<ObsBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(pending) = this.pending.take() else {
            return Poll::Pending; // polled after completion
        };
        let mut inner = this.inner;
        // One entry into the span per poll: the request is finished inside the same entry as
        // the poll that produced its response.
        let step = pending.within(|| {
            let polled = match inner.as_mut().as_pin_mut() {
                Some(inner) => catch_unwind(AssertUnwindSafe(|| inner.poll(cx))),
                None => Err(Box::new("panicked in call") as Box<dyn std::any::Any + Send>),
            };
            match polled {
                Ok(Poll::Pending) => Step::Pending,
                Ok(Poll::Ready(Ok(response))) => match Classify::response(&response) {
                    Ok(outcome) => {
                        pending.record(outcome);
                        Step::Response(response, None)
                    }
                    // A gRPC status in the trailers: the request ends with the stream.
                    Err(eos) => Step::Response(response, Some(eos)),
                },
                Ok(Poll::Ready(Err(e))) => {
                    pending.record(Outcome::ServiceError);
                    Step::Error(e)
                }
                Err(_panic) => {
                    // The handler's future is in an unknown state: drop it, never poll it again.
                    inner.set(None);
                    pending.record(Outcome::Panic);
                    Step::Panicked
                }
            }
        });
        let id = HeaderName::from_static(REQUEST_ID_HEADER);
        match step {
            Step::Pending => {
                *this.pending = Some(pending);
                Poll::Pending
            }
            Step::Response(response, eos) => {
                let (mut parts, body) = response.into_parts();
                parts.headers.insert(id, pending.info.id.header_value());
                let body = match eos {
                    None => ObsBody::new(body, None),
                    Some(eos) => ObsBody::new(body, Some((eos, pending))),
                };
                Poll::Ready(Ok(Response::from_parts(parts, body)))
            }
            Step::Error(e) => Poll::Ready(Err(e)),
            Step::Panicked => {
                let mut response = Response::new(ObsBody::empty());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response
                    .headers_mut()
                    .insert(id, pending.info.id.header_value());
                Poll::Ready(Ok(response))
            }
        }
    }
}
