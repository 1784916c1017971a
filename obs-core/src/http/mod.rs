//! The HTTP middleware: [`ObsLayer`], from `obs.layer()`.
//!
//! One tower `Layer` that, in this order, assigns the request id, catches panics, opens the
//! request span (whose fields every log line of the request carries), records RED metrics and
//! writes one "request completed" line. It works with axum, tonic and hyper services: the
//! response body is wrapped in [`ObsBody`] (which ends gRPC requests at the end of their stream).
//! Route templates come from axum's `MatchedPath` or, for any other router, an [`HttpRoute`]
//! request extension.
//!
//! ```
//! use axum::{routing::get, Router};
//!
//! let obs = obs::test::init();
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "ok" }))
//!     .layer(obs.layer()); // after the routes, so that route templates are known
//! # let _ = app;
//! ```

mod body;
mod layer;
mod request_id;
mod route;

/// Makes `$ty` an axum extractor: the value `obs.layer()` put in the request's extensions, or,
/// without the layer, `$fallback(&headers)`.
macro_rules! request_extractor {
    ($ty:ty, $fallback:expr, $doc:literal) => {
        #[cfg(feature = "axum")]
        impl<S: Send + Sync> axum::extract::FromRequestParts<S> for $ty {
            type Rejection = std::convert::Infallible;

            #[doc = $doc]
            async fn from_request_parts(
                parts: &mut http::request::Parts,
                _: &S,
            ) -> Result<Self, Self::Rejection> {
                Ok(parts
                    .extensions
                    .get::<$ty>()
                    .cloned()
                    .unwrap_or_else(|| $fallback(&parts.headers)))
            }
        }
    };
}
pub(crate) use request_extractor;

pub use body::ObsBody;
pub use layer::{ObsLayer, ObsService, ResponseFuture};
pub use request_id::{
    is_valid as is_valid_request_id, RequestId, MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER,
};
pub use route::HttpRoute;

/// The `tracing` target of the request span and the "request completed" line.
pub const TARGET: &str = "obs::http";

/// Whether `meta` is the middleware's request span.
pub(crate) fn is_request_span(meta: &tracing_core::Metadata<'_>) -> bool {
    meta.is_span() && meta.target() == TARGET
}

/// Whether `headers` carry `Authorization: Bearer <token>`, compared in constant time. Used by
/// the admin `/metrics` (`OBS_METRICS_TOKEN`) and the collector's pages.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", "Bearer s3cret".parse().unwrap());
/// assert!(obs::http::bearer_token_matches(&headers, "s3cret"));
/// assert!(!obs::http::bearer_token_matches(&headers, "s3cre"));
/// assert!(!obs::http::bearer_token_matches(&http::HeaderMap::new(), "s3cret"));
/// ```
pub fn bearer_token_matches(headers: &http::HeaderMap, token: &str) -> bool {
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else { return false };
    constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// Whether `a` and `b` are equal, in a time that depends only on their lengths (for secrets:
/// tokens, credentials).
///
/// ```
/// assert!(obs::http::constant_time_eq(b"s3cret", b"s3cret"));
/// assert!(!obs::http::constant_time_eq(b"s3cret", b"s3creT"));
/// assert!(!obs::http::constant_time_eq(b"s3cret", b"s3cre"));
/// ```
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
