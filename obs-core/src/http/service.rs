//! [`ObsLayer`] and [`ObsService`]: the request's start (id, span, parent context, Sentry hub),
//! handed to [`super::future`] with the inner service's future.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use opentelemetry::propagation::TextMapPropagator;
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::body::ObsBody;
use super::finish::InFlight;
use super::future::ResponseFuture;
use crate::request::{RequestId, RequestInfo, TARGET};
use crate::semconv;
use crate::shared::Shared;
use crate::trace::HeaderExtractor;

/// The obs middleware. Get it from [`crate::Obs::layer`]; cheap to clone.
///
/// ```
/// let obs = obs::test::init();
/// let layer: obs::http::ObsLayer = obs.layer();
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct ObsLayer {
    shared: Arc<Shared>,
}

impl ObsLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
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

/// The request's `tracing` span (`method`: as the client sent it), which tracing-opentelemetry
/// makes the SERVER span: `otel.*` fields name it, the others are its attributes and every log
/// line's fields (`otel.*` are not logged, `request.id` is logged as `request_id`).
fn request_span(info: &RequestInfo, method: &str) -> Span {
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
    if info.method.as_str() == semconv::METHOD_OTHER {
        span.record("http.request.method_original", method);
    }
    span
}

/// A request's start, whatever the framework: its SERVER span, continuing the context the
/// `headers` carry, its Sentry hub, and the in-flight record that finishes it. `method`: as
/// the client sent it.
pub(crate) fn begin(
    shared: &Shared,
    start: Instant,
    info: Arc<RequestInfo>,
    method: &str,
    headers: &dyn opentelemetry::propagation::Extractor,
) -> InFlight {
    let span = request_span(&info, method);
    // The incoming `traceparent`/`tracestate`/`baggage` (as `OTEL_PROPAGATORS` says), or none:
    // a server span never inherits whatever context the thread had.
    let _ = span.set_parent(shared.propagator.extract(headers));
    let hub = shared
        .sentry
        .as_ref()
        .map(|reporter| reporter.request_hub(Arc::clone(&info)));
    InFlight::new(Arc::clone(&shared.metrics.red), start, info, span, hub)
}

/// `GET /users/{id}`; `GET` without a route; `HTTP` for an unknown method (semconv).
struct SpanName<'a>(&'a RequestInfo);

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0.method.as_str(), self.0.route.as_deref()) {
            (semconv::METHOD_OTHER, _) => f.write_str("HTTP"),
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
        let headers = HeaderExtractor(req.headers());
        let in_flight = begin(&self.shared, start, info, req.method().as_str(), &headers);
        req.extensions_mut().insert(id);
        let inner =
            in_flight.within(|| catch_unwind(AssertUnwindSafe(|| self.inner.call(req))).ok());
        ResponseFuture::new(inner, in_flight)
    }
}
