//! The end of a request: [`InFlight`] records the RED series, completes the SERVER span,
//! writes the "request completed" line and finishes the Sentry hub; [`classify`] says how a
//! response ended it.
//!
//! Responses are classified with tower-http's classifiers: plain HTTP by its status (5xx is a
//! failure) when the head is sent; gRPC (`application/grpc*`) by `grpc-status`, from the head
//! (trailers-only responses, as `Status::internal` produces) or else from the trailers at the
//! end of the stream, so a gRPC error answered with HTTP 200 still counts as an error.

use std::sync::Arc;
use std::time::Instant;

use http::Response;
use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, GrpcEosErrorsAsFailures, GrpcErrorsAsFailures,
    GrpcFailureClass,
};
use tracing::Span;

use crate::metrics::{ActiveGuard, Labels, Red};
use crate::report::RequestHub;
use crate::request::{GrpcCode, Outcome, Polling, RequestInfo, TARGET};

/// A request in flight: what is needed to finish it, taken exactly once (response head, end of
/// a gRPC stream, panic, error or drop). It holds only what finishing reads: the RED recorder,
/// the request, its span and its Sentry hub.
pub(crate) struct InFlight {
    red: Arc<Red>,
    start: Instant,
    info: Arc<RequestInfo>,
    /// The SERVER span; it ends when this is dropped.
    span: Span,
    hub: Option<RequestHub>,
    _active: ActiveGuard,
}

impl InFlight {
    /// Starts counting the request in flight.
    pub(crate) fn new(
        red: Arc<Red>,
        start: Instant,
        info: Arc<RequestInfo>,
        span: Span,
        hub: Option<RequestHub>,
    ) -> Self {
        let _active = red.active(info.method, info.scheme);
        Self {
            red,
            start,
            info,
            span,
            hub,
            _active,
        }
    }

    /// Records the metrics, completes the SERVER span (status code, `error.type`, status Error
    /// on failures; 4xx leaves it unset, as semconv requires for servers), writes the "request
    /// completed" line and, for an unreported server error, the Sentry event.
    pub(crate) fn finish(self, outcome: Outcome) {
        self.within(|| self.record(outcome));
    }

    /// [`InFlight::finish`]'s work, inside [`InFlight::within`].
    pub(crate) fn record(&self, outcome: Outcome) {
        let ended = Instant::now();
        let secs = ended.duration_since(self.start).as_secs_f64();
        let info = &self.info;
        self.red
            .observe(&Labels::of(info), outcome, secs, Some(ended));
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

    /// The request's id, for the response's `x-request-id`.
    pub(crate) fn request_id(&self) -> http::HeaderValue {
        self.info.id.header_value()
    }

    /// The request's id as text, for another framework's header type.
    #[cfg(feature = "actix")]
    pub(crate) fn request_id_str(&self) -> &str {
        self.info.id.as_str()
    }

    /// Runs `f` inside the request's span and Sentry hub.
    pub(crate) fn within<R>(&self, f: impl FnOnce() -> R) -> R {
        let _entered = self.span.enter();
        let _polling = Polling::request(&self.info);
        match &self.hub {
            Some(hub) => hub.run(f),
            None => f(),
        }
    }
}

/// How a response ended the request: the outcome now, or the classifier that reads the
/// trailers at the end of the stream.
pub(crate) fn classify<B>(response: &Response<B>) -> Result<Outcome, GrpcEosErrorsAsFailures> {
    let grpc = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if !grpc {
        return Ok(Outcome::Status(response.status().as_u16()));
    }
    match GrpcErrorsAsFailures::new().classify_response(response) {
        ClassifiedResponse::Ready(result) => Ok(grpc_outcome(response.status(), result)),
        ClassifiedResponse::RequiresEos(eos) => Err(eos),
    }
}

pub(crate) fn grpc_outcome(
    status: http::StatusCode,
    result: Result<(), GrpcFailureClass>,
) -> Outcome {
    match result {
        // A 5xx from a proxy in front of a gRPC service is an HTTP failure all the same.
        Ok(()) => Outcome::Status(status.as_u16()),
        Err(GrpcFailureClass::Code(code)) => Outcome::Grpc(GrpcCode(code)),
        Err(GrpcFailureClass::Error(_)) => Outcome::Grpc(GrpcCode(UNKNOWN)),
    }
}

const UNKNOWN: std::num::NonZeroI32 = std::num::NonZeroI32::new(2).unwrap();
