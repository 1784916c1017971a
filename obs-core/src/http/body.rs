//! [`ObsBody`]: the response body, which ends a gRPC request when its stream ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tower_http::classify::{ClassifyEos, GrpcEosErrorsAsFailures};

use super::finish::{grpc_outcome, InFlight};
use crate::request::Outcome;

pin_project_lite::pin_project! {
    /// The response body of [`super::ObsService`]: the service's body, unchanged. For a gRPC
    /// response whose status comes in the trailers, it finishes the request (metrics, span, log
    /// line) when the stream ends, or as cancelled if it is dropped before.
    pub struct ObsBody<B> {
        #[pin]
        inner: Option<B>,
        eos: Option<(GrpcEosErrorsAsFailures, InFlight)>,
    }

    impl<B> PinnedDrop for ObsBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some((_, in_flight)) = this.project().eos.take() {
                in_flight.finish(Outcome::Cancelled);
            }
        }
    }
}

impl<B> ObsBody<B> {
    pub(crate) fn new(inner: B, eos: Option<(GrpcEosErrorsAsFailures, InFlight)>) -> Self {
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
            if let Some((eos, in_flight)) = this.eos.take() {
                let outcome = match ended {
                    Ok(trailers) => grpc_outcome(http::StatusCode::OK, eos.classify_eos(trailers)),
                    Err(()) => Outcome::ServiceError,
                };
                in_flight.finish(outcome);
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
