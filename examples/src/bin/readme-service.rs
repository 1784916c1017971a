//! The README's service code, verbatim (`examples/tests/deploy.rs` checks that the README shows
//! exactly this file from its first `use` on, and runs it as a process).

use std::time::Duration;

use axum::{extract::Path, http::StatusCode, routing::get, Router};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let obs = obs::init()?;
    let app = Router::new()
        .route("/users/{id}", get(user))
        .layer(obs.layer()); // after the routes, so route templates are known
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("0.0.0.0:{port}")).await?;
    axum::serve(listener, app)
        // SIGTERM or Ctrl-C: /readyz turns 503 at once, in-flight requests finish.
        .with_graceful_shutdown(obs.shutdown_signal())
        .await?;
    // Then logs, spans and Sentry events are flushed, within 5 s.
    obs.shutdown(Duration::from_secs(5));
    Ok(())
}

async fn user(Path(id): Path<u64>, request_id: obs::RequestId) -> Result<String, StatusCode> {
    if id == 0 {
        // A JSON line with the request's ids, and a Sentry event (with `SENTRY_DSN`).
        tracing::error!(user.id = id, "user 0 cannot be loaded");
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    tracing::info!(user.id = id, "user loaded");
    Ok(format!("user {id} (request {request_id})"))
}
