//! The HTTP middleware: [`ObsLayer`], from `obs.layer()`.
//!
//! One tower `Layer` that, in this order, assigns the request id, catches panics, opens the
//! request span (whose fields every log line of the request carries), records RED metrics and
//! writes one "request completed" line. It works with axum, tonic and hyper services: the
//! response body is wrapped in [`ObsBody`] (which ends gRPC requests at the end of their stream).
//! Route templates come from axum's `MatchedPath` or, for any other router, an [`HttpRoute`]
//! request extension.
//!
//! Laid out as tower-http lays out a middleware, imports running one way: `service` (the
//! request's start) -> `future` (each poll) -> `body` (a gRPC stream's end) -> `finish` (the
//! in-flight record and the classifier); `extract` (axum extractors) and `auth` (the bearer
//! token check of `/metrics`) stand apart.
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

mod auth;
mod body;
#[cfg(feature = "axum")]
mod extract;
mod finish;
mod future;
mod service;

pub use auth::{bearer_token_matches, constant_time_eq};
pub use body::ObsBody;
pub use future::ResponseFuture;
// What another framework's middleware (`crate::actix`) shares with this one.
#[cfg(feature = "actix")]
pub(crate) use finish::InFlight;
#[cfg(feature = "actix")]
pub(crate) use service::begin;
pub use service::{ObsLayer, ObsService};
// The request's values live with the request model; they are the middleware's public face.
pub use crate::request::{
    is_valid_request_id, HttpRoute, RequestId, MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER, TARGET,
};
