//! [`ObsBody`]: the response body, which ends a gRPC request when its stream ends.
//!
//! Responses are classified with tower-http's classifiers: plain HTTP by its status (5xx is a
//! failure) when the head is sent; gRPC (`application/grpc*`) by `grpc-status`, from the head
//! (trailers-only responses, as `Status::internal` produces) or else from the trailers at the
//! end of the stream, so a gRPC error answered with HTTP 200 still counts as an error.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use http_body::{Body, Frame, SizeHint};
use tower_http::classify::{
    ClassifiedResponse, ClassifyEos, ClassifyResponse, GrpcEosErrorsAsFailures,
    GrpcErrorsAsFailures, GrpcFailureClass,
};

use super::layer::Pending;
use crate::request::{GrpcCode, Outcome};

/// How a response is classified.
pub(crate) struct Classify;

impl Classify {
    /// The outcome now, or the classifier that reads the trailers at the end of the stream.
    pub fn response<B>(response: &Response<B>) -> Result<Outcome, GrpcEosErrorsAsFailures> {
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
}

fn grpc_outcome(status: http::StatusCode, result: Result<(), GrpcFailureClass>) -> Outcome {
    match result {
        // A 5xx from a proxy in front of a gRPC service is an HTTP failure all the same.
        Ok(()) => Outcome::Status(status.as_u16()),
        Err(GrpcFailureClass::Code(code)) => Outcome::Grpc(GrpcCode(code)),
        Err(GrpcFailureClass::Error(_)) => Outcome::Grpc(GrpcCode(UNKNOWN)),
    }
}

const UNKNOWN: std::num::NonZeroI32 = std::num::NonZeroI32::new(2).unwrap();

pin_project_lite::pin_project! {
    /// The response body of [`super::ObsService`]: the service's body, unchanged. For a gRPC
    /// response whose status comes in the trailers, it finishes the request (metrics, span, log
    /// line) when the stream ends, or as cancelled if it is dropped before.
    pub struct ObsBody<B> {
        #[pin]
        inner: Option<B>,
        eos: Option<(GrpcEosErrorsAsFailures, Pending)>,
    }

    impl<B> PinnedDrop for ObsBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some((_, pending)) = this.project().eos.take() {
                pending.finish(Outcome::Cancelled);
            }
        }
    }
}

impl<B> ObsBody<B> {
    pub(crate) fn new(inner: B, eos: Option<(GrpcEosErrorsAsFailures, Pending)>) -> Self {
        Self {
            inner: Some(inner),
            eos,
        }
    }

    /// The empty body of the 500 sent after a panic.
    pub(crate) fn empty() -> Self {
        Self {
            inner: None,
            eos: None,
        }
    }
}

impl<B: Body> Body for ObsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(inner.poll_frame(cx));
        let ended = match &frame {
            Some(Ok(frame)) => frame.trailers_ref().map(|t| Ok(Some(t))),
            Some(Err(_)) => Some(Err(())),
            None => Some(Ok(None)),
        };
        if let Some(ended) = ended {
            if let Some((eos, pending)) = this.eos.take() {
                let outcome = match ended {
                    Ok(trailers) => grpc_outcome(http::StatusCode::OK, eos.classify_eos(trailers)),
                    Err(()) => Outcome::ServiceError,
                };
                pending.finish(outcome);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        // While a gRPC status is awaited, the end must be polled for (it finishes the request).
        self.eos.is_none() && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
