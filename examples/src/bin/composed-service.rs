//! A service that assembles its `tracing` subscriber with obs instead of letting `init()` own
//! it, with a layer of its own: tracing-subscriber's text `fmt` layer on stderr (a file
//! appender, tokio-console's layer or an error reporter fit the same way).
//!
//! `OBS_COMPOSE=with-layer`: the layer is added to obs' subscriber with `Config::with_layer`.
//! `OBS_COMPOSE=into-layers`: the service builds the subscriber itself from
//! `Config::into_layers`. Route: `GET /users/{id}`. Listens on `OBS_DEMO_ADDR`; SIGTERM or
//! Ctrl-C stops it.

use std::time::Duration;

use axum::{extract::Path, routing::get, Router};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let obs = match std::env::var("OBS_COMPOSE").as_deref() {
        Ok("into-layers") => {
            let (obs, layers) = obs::Config::new().into_layers()?;
            tracing_subscriber::registry()
                .with(layers)
                .with(own_layer())
                .try_init()?;
            obs
        }
        _ => obs::Config::new().with_layer(own_layer()).init()?,
    };
    let app = Router::new()
        .route("/users/{id}", get(user))
        .layer(obs.layer());
    let addr = std::env::var("OBS_DEMO_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let metrics = obs
        .admin_addr()
        .map_or_else(|| "off".to_owned(), |a| format!("http://{a}/metrics"));
    tracing::info!({ listen.addr = %listener.local_addr()?, metrics.url = %metrics }, "demo-service listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(obs.shutdown_signal())
        .await?;
    obs.shutdown(Duration::from_secs(5));
    Ok(())
}

/// The service's own layer: plain text on stderr.
fn own_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
}

async fn user(Path(id): Path<u64>) -> String {
    tracing::info!(user.id = id, "user loaded");
    format!("user {id}")
}
