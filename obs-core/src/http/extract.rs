//! axum extractors for the values `obs.layer()` puts in a request's extensions: handlers take a
//! [`RequestId`] or a [`TraceContext`] as an argument.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use http::request::Parts;

use crate::request::RequestId;
use crate::trace::TraceContext;

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    /// The id set by `obs.layer()`; without the layer, the request's valid header or a new id.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(inserted_or(parts, RequestId::for_request))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TraceContext {
    type Rejection = Infallible;

    /// The current span's context: inside `obs.layer()`, the request's (or a handler span's).
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(inserted_or(parts, |_| TraceContext::current()))
    }
}

/// The value in the request's extensions, else `fallback` of its headers.
fn inserted_or<T: Clone + Send + Sync + 'static>(
    parts: &Parts,
    fallback: impl FnOnce(&http::HeaderMap) -> T,
) -> T {
    parts
        .extensions
        .get::<T>()
        .cloned()
        .unwrap_or_else(|| fallback(&parts.headers))
}
