//! demo-service's behaviour on actix-web 4 with `App::new().wrap(obs.actix())`: the same
//! routes the framework tests run against both (`GET /users/{id}`, `GET /fail` (a WARN, an
//! ERROR, 500), `GET /panic`, `GET /slow?ms=N`, `GET /checkout` (calls
//! `DEMO_DOWNSTREAM_URL/users/42` with reqwest-tracing)). Listens on `OBS_DEMO_ADDR` (default
//! 127.0.0.1:3000); metrics on the admin address. SIGTERM or Ctrl-C: obs' signal turns
//! `/readyz` to 503 and stops the server gracefully (in-flight requests finish, at most 5 s).

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Deserialize;

const DRAIN_TIMEOUT_SECS: u64 = 5;
const MAX_SLOW_MS: u64 = 60_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    actix_web::rt::System::new().block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let obs = obs::init()?;
    let middleware = obs.actix();
    let addr = std::env::var("OBS_DEMO_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let server = HttpServer::new(move || {
        App::new()
            .wrap(middleware.clone())
            .route("/users/{id}", web::get().to(user))
            .route("/fail", web::get().to(fail))
            .route("/panic", web::get().to(panicking_handler))
            .route("/slow", web::get().to(slow))
            .route("/checkout", web::get().to(checkout))
    })
    .workers(2)
    // obs' signal decides the stop (and turns /readyz to 503 first).
    .disable_signals()
    .shutdown_timeout(DRAIN_TIMEOUT_SECS)
    .bind(&addr)?;
    let listen = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    let metrics = obs
        .admin_addr()
        .map_or_else(|| "off".to_owned(), |a| format!("http://{a}/metrics"));
    tracing::info!({ listen.addr = %listen, metrics.url = %metrics }, "actix-service listening");
    let signal = obs.shutdown_signal();
    actix_web::rt::spawn(async move {
        signal.await;
        handle.stop(true).await; // graceful: in-flight requests finish
    });
    server.await?;
    tracing::info!("actix-service stopped");
    obs.shutdown(Duration::from_secs(5));
    Ok(())
}

async fn user(id: web::Path<u64>) -> HttpResponse {
    let id = id.into_inner();
    tracing::info!(user.id = id, "user loaded");
    HttpResponse::Ok().json(serde_json::json!({ "id": id, "name": format!("user-{id}") }))
}

async fn fail() -> HttpResponse {
    tracing::warn!("payment provider is slow: retrying once"); // a breadcrumb in Sentry
    tracing::error!("simulated failure");
    HttpResponse::InternalServerError().body("simulated failure\n")
}

async fn panicking_handler() -> HttpResponse {
    panic!("simulated panic")
}

#[derive(Deserialize)]
struct Slow {
    ms: Option<u64>,
}

async fn slow(q: web::Query<Slow>) -> String {
    let ms = q.ms.unwrap_or(100).min(MAX_SLOW_MS);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms} ms\n")
}

async fn checkout() -> HttpResponse {
    let Ok(downstream) = std::env::var("DEMO_DOWNSTREAM_URL") else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    tracing::info!("reserving stock");
    match obs_examples::outgoing::traced_client()
        .get(format!("{downstream}/users/42"))
        .send()
        .await
    {
        Ok(r) => HttpResponse::Ok().body(format!("downstream answered {}\n", r.status())),
        Err(_) => HttpResponse::BadGateway().finish(),
    }
}
