//! The admin server: `/metrics`, `/healthz`, `/readyz`, on its own address so that it is never
//! counted in the RED metrics nor exposed with the public routes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;

use crate::http::bearer_token_matches;
use crate::metrics::accept;
use crate::shared::Shared;

/// The admin endpoints over `shared` (mounted by hand through `Obs::admin_router`).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let metrics = Arc::clone(&shared);
    Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| async move {
                if let Some(token) = &metrics.metrics_token {
                    if !bearer_token_matches(&headers, token) {
                        return (
                            StatusCode::UNAUTHORIZED,
                            [(header::WWW_AUTHENTICATE, "Bearer")],
                            "unauthorized\n",
                        )
                            .into_response();
                    }
                }
                let (content_type, page) = metrics.metrics.negotiate(accept(&headers));
                ([(header::CONTENT_TYPE, content_type)], page).into_response()
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move {
                if shared.ready.is_ready() {
                    (StatusCode::OK, "ready\n").into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
                }
            }),
        )
}

/// A running admin server; [`Server::stop`] ends it.
pub(crate) struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
}

impl Server {
    /// Binds `addr` (synchronously, so errors are reported now) and serves on the current runtime.
    pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            std::io::Error::other(
                "no tokio runtime (call obs::init() inside one, or mount Obs::admin_router())",
            )
        })?;
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _enter = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        runtime.spawn(async move {
            let serve = axum::serve(listener, router(shared)).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(why) = serve.await {
                tracing::warn!(target: "obs::admin", "admin server stopped: {why}");
            }
        });
        Ok(Self { addr, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
    }
}
