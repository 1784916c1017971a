//! [`ResponseFuture`]: each poll of the inner future inside the request's span and hub, panics
//! caught; the response head finishes the request, or hands it to the body (gRPC).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderName, Response, StatusCode};
use tower_http::classify::GrpcEosErrorsAsFailures;

use super::body::ObsBody;
use super::finish::{classify, InFlight};
use crate::request::{Outcome, REQUEST_ID_HEADER};

pin_project_lite::pin_project! {
    /// The response future of [`ObsService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        in_flight: Option<InFlight>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(in_flight) = this.project().in_flight.take() {
                // Dropped before completion: the client went away (or a timeout fired).
                in_flight.finish(Outcome::Cancelled);
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

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: Option<F>, in_flight: InFlight) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: http_body::Body,
{
    type Output = Result<Response<ObsBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(in_flight) = this.in_flight.take() else {
            return Poll::Pending; // polled after completion
        };
        let mut inner = this.inner;
        // One entry into the span per poll: the request is finished inside the same entry as
        // the poll that produced its response.
        let step = in_flight.within(|| {
            let polled = match inner.as_mut().as_pin_mut() {
                Some(inner) => catch_unwind(AssertUnwindSafe(|| inner.poll(cx))),
                None => Err(Box::new("panicked in call") as Box<dyn std::any::Any + Send>),
            };
            match polled {
                Ok(Poll::Pending) => Step::Pending,
                Ok(Poll::Ready(Ok(response))) => match classify(&response) {
                    Ok(outcome) => {
                        in_flight.record(outcome);
                        Step::Response(response, None)
                    }
                    // A gRPC status in the trailers: the request ends with the stream.
                    Err(eos) => Step::Response(response, Some(eos)),
                },
                Ok(Poll::Ready(Err(e))) => {
                    in_flight.record(Outcome::ServiceError);
                    Step::Error(e)
                }
                Err(_panic) => {
                    // The handler's future is in an unknown state: drop it, never poll it again.
                    inner.set(None);
                    in_flight.record(Outcome::Panic);
                    Step::Panicked
                }
            }
        });
        let id = HeaderName::from_static(REQUEST_ID_HEADER);
        match step {
            Step::Pending => {
                *this.in_flight = Some(in_flight);
                Poll::Pending
            }
            Step::Response(response, eos) => {
                let (mut parts, body) = response.into_parts();
                parts.headers.insert(id, in_flight.request_id());
                let body = match eos {
                    None => ObsBody::new(body, None),
                    Some(eos) => ObsBody::new(body, Some((eos, in_flight))),
                };
                Poll::Ready(Ok(Response::from_parts(parts, body)))
            }
            Step::Error(e) => Poll::Ready(Err(e)),
            Step::Panicked => {
                let mut response = Response::new(ObsBody::empty());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response.headers_mut().insert(id, in_flight.request_id());
                Poll::Ready(Ok(response))
            }
        }
    }
}
