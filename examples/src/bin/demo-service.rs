//! The demo service: a real axum app instrumented with the two obs lines.
//!
//! Routes: `GET /users/{id}` (200, with a `db.query` child span), `GET /fail` (500, a WARN then
//! an ERROR line), `GET /slow?ms=N` (sleeps N ms, at most
//! 60 s), `GET /panic` (the handler panics; obs answers 500), `GET /checkout` (calls
//! `DEMO_DOWNSTREAM_URL/users/42` with reqwest-tracing, as services do), `GET /report` (reports
//! a handled error with the Sentry API and with `error!`), `GET /steps?tag=T` (two warnings,
//! then an error: breadcrumbs), `GET /legacy` (code on the `log` crate: a `log::warn!` and a
//! `log::error!`, bridged), `GET /search?q=` (a fast lookup), `POST /signup` (body: the
//! address; answers 202 at once and leaves the welcome email to a job: on the Redis queue at
//! `REDIS_URL` for the `worker`, else run in this process), `GET /accounts/{id}?note=N` (three
//! statements through sqlx on the users' database, `DATABASE_URL`: a SQLite file of its own by
//! default, or PostgreSQL). `DEMO_STARTUP_DELAY_MS` makes the start-up that much longer (a
//! migration): `/readyz` answers 503 until the server serves. `DEMO_FAULT` is what this
//! build gets wrong, so a deploy can break a route: `errors` (`GET /users/{id}` answers 500 to
//! 4 requests in 5), `slow` (`GET /search` takes 3 s) or `slower` (`GET /users/{id}` takes 40%
//! longer). `DEMO_USERS_MS` gives `GET /users/{id}` a database's latency: spread evenly from
//! half to one and a half times that many milliseconds over the ids. Listens on `OBS_DEMO_ADDR`
//! (default 127.0.0.1:3000); metrics on the admin address (`OBS_ADMIN_ADDR`, default
//! 0.0.0.0:9464). SIGTERM or Ctrl-C: stop accepting, drain in-flight requests (at most
//! `DRAIN_TIMEOUT`), flush the logs, exit.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use obs_examples::jobs::{self, WELCOME_EMAIL};
use obs_examples::queue::{Envelope, Queue};
use serde::Deserialize;
use tracing::Instrument;

const DEFAULT_ADDR: &str = "127.0.0.1:3000";
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_SLOW_MS: u64 = 60_000;
/// How long `GET /search` takes in a build with the `slow` fault.
const SLOW_SEARCH: Duration = Duration::from_secs(3);

/// What this build gets wrong (`DEMO_FAULT`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// `GET /users/{id}` fails for 4 ids in 5.
    Errors,
    /// `GET /search` is slow.
    Slow,
    /// `GET /users/{id}` takes 40% longer: far below any alert, a deploy's verdict catches it.
    Slower,
}

fn fault() -> Fault {
    static FAULT: std::sync::OnceLock<Fault> = std::sync::OnceLock::new();
    *FAULT.get_or_init(|| match std::env::var("DEMO_FAULT").as_deref() {
        Ok("errors") => Fault::Errors,
        Ok("slow") => Fault::Slow,
        Ok("slower") => Fault::Slower,
        _ => Fault::None,
    })
}

#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Without `DATABASE_URL`, a SQLite file of this process' own, removed at the end.
    let own_file = std::env::var_os("DATABASE_URL")
        .is_none()
        .then(|| std::env::temp_dir().join(format!("obs-demo-{}.db", std::process::id())));
    let database = match &own_file {
        Some(file) => format!("sqlite://{}?mode=rwc", file.display()),
        None => std::env::var("DATABASE_URL")?,
    };
    let system = if database.starts_with("postgres") {
        "postgresql"
    } else {
        "sqlite"
    };
    let obs = Arc::new(obs::Config::new().db_system(system).init()?);
    // A slow start-up (a long migration, a cache to warm), `DEMO_STARTUP_DELAY_MS`: `/readyz`
    // answers 503 until the server below serves.
    if let Some(ms) = std::env::var("DEMO_STARTUP_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let users = users_db(&database).await?;
    let queue = match std::env::var("REDIS_URL") {
        Ok(url) => Some(Queue::connect(&url).await?),
        Err(_) => None,
    };
    let signups = Router::new()
        .route("/signup", post(signup))
        .with_state(Signups {
            obs: Arc::clone(&obs),
            queue,
        });
    let accounts = Router::new()
        .route("/accounts/{id}", get(account))
        .with_state(users.clone());
    let app = Router::new()
        .route("/users/{id}", get(user))
        .route("/fail", get(fail))
        .route("/slow", get(slow))
        .route("/panic", get(panicking_handler))
        .route("/checkout", get(checkout))
        .route("/report", get(report))
        .route("/steps", get(steps))
        .route("/legacy", get(legacy))
        .route("/search", get(search))
        .merge(signups)
        .merge(accounts)
        .layer(obs.layer());

    let addr: SocketAddr = match std::env::var("OBS_DEMO_ADDR") {
        Ok(raw) => raw
            .parse()
            .map_err(|e| format!("invalid OBS_DEMO_ADDR {raw:?}: {e}"))?,
        Err(_) => DEFAULT_ADDR.parse()?,
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let metrics = obs
        .admin_addr()
        .map_or_else(|| "off".to_owned(), |a| format!("http://{a}/metrics"));
    tracing::info!({ listen.addr = %listener.local_addr()?, metrics.url = %metrics }, "demo-service listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let mut stop_rx = stop_rx;
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    let mut server = tokio::spawn(async move { server.await });
    // obs' signal turns /readyz to 503; the drain is bounded here, as a request may be slow.
    tokio::select! {
        result = &mut server => result??,
        () = obs.shutdown_signal() => {
            let _ = stop_tx.send(true);
            match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                Ok(result) => result??,
                Err(_) => tracing::warn!("drain timed out after {DRAIN_TIMEOUT:?}: exiting with requests in flight"),
            }
        }
    }
    tracing::info!("demo-service stopped");
    users.close().await;
    if let Some(file) = own_file {
        let _ = std::fs::remove_file(file);
    }
    obs.shutdown(Duration::from_secs(5));
    Ok(())
}

/// The users' database: its tables, and ten users.
async fn users_db(url: &str) -> Result<sqlx::AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::pool::PoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect(url)
        .await?;
    for statement in [
        "CREATE TABLE IF NOT EXISTS users (id BIGINT PRIMARY KEY, name TEXT NOT NULL, note TEXT)",
        "CREATE TABLE IF NOT EXISTS orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, total BIGINT NOT NULL)",
    ] {
        sqlx::query(statement).execute(&pool).await?;
    }
    for id in 1..=10_i64 {
        sqlx::query("INSERT INTO users (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(format!("user-{id}"))
            .execute(&pool)
            .await?;
        sqlx::query("INSERT INTO orders (id, user_id, total) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(id)
            .bind(id * 100)
            .execute(&pool)
            .await?;
    }
    Ok(pool)
}

#[derive(Deserialize)]
struct Note {
    note: Option<String>,
}

/// Three statements: the user, their orders, the note written back (a bound parameter, never
/// in a span or a line).
async fn account(
    State(db): State<sqlx::AnyPool>,
    Path(id): Path<i64>,
    Query(q): Query<Note>,
) -> Result<Json<serde_json::Value>, StatusCode> {
    use sqlx::Row;
    let failed = |e: sqlx::Error| {
        tracing::error!(error = %e, "the users' database failed");
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let user = sqlx::query("SELECT id, name FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(&db)
        .await
        .map_err(failed)?
        .ok_or(StatusCode::NOT_FOUND)?;
    let name: String = user.try_get("name").map_err(failed)?;
    let orders: i64 = sqlx::query("SELECT COUNT(*) AS n FROM orders WHERE user_id = $1")
        .bind(id)
        .fetch_one(&db)
        .await
        .and_then(|row| row.try_get("n"))
        .map_err(failed)?;
    sqlx::query("UPDATE users SET note = $1 WHERE id = $2")
        .bind(q.note.unwrap_or_default())
        .bind(id)
        .execute(&db)
        .await
        .map_err(failed)?;
    Ok(Json(
        serde_json::json!({ "id": id, "name": name, "orders": orders }),
    ))
}

/// Where signups' jobs go.
#[derive(Clone)]
struct Signups {
    obs: Arc<obs::Obs>,
    queue: Option<Queue>,
}

/// Answers at once; the welcome email is a job, on the queue or in a task of this process.
async fn signup(State(s): State<Signups>, email: String) -> (StatusCode, String) {
    let payload = serde_json::json!({ "email": email.trim() });
    match &s.queue {
        Some(queue) => match queue.enqueue(WELCOME_EMAIL, payload).await {
            Ok(id) => (StatusCode::ACCEPTED, format!("queued {id}\n")),
            Err(e) => {
                tracing::error!(error = %e, "the job queue is unreachable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "try again later\n".to_owned(),
                )
            }
        },
        None => {
            let job = Envelope::new(WELCOME_EMAIL, payload);
            let id = job.id.clone();
            let obs = Arc::clone(&s.obs);
            tokio::spawn(async move { jobs::run(&obs, "tokio", job).await });
            (StatusCode::ACCEPTED, format!("started {id}\n"))
        }
    }
}

async fn user(Path(id): Path<u64>) -> Result<Json<serde_json::Value>, (StatusCode, &'static str)> {
    if fault() == Fault::Errors && id % 5 != 0 {
        tracing::error!(user.id = id, "user row could not be decoded");
        return Err((StatusCode::INTERNAL_SERVER_ERROR, "cannot load user\n"));
    }
    // A handler's own span: a child of the request's SERVER span in the exported trace, and
    // the `span_id` of the log lines inside it.
    let name = load_user(id)
        .instrument(tracing::info_span!(
            "db.query",
            db.system = "postgresql",
            db.operation = "SELECT"
        ))
        .await;
    tracing::info!(user.id = id, "user loaded");
    Ok(Json(serde_json::json!({ "id": id, "name": name })))
}

#[derive(Deserialize)]
struct Search {
    q: Option<String>,
}

async fn search(Query(s): Query<Search>) -> Json<serde_json::Value> {
    if fault() == Fault::Slow {
        tokio::time::sleep(SLOW_SEARCH).await;
    }
    let q = s.q.unwrap_or_default();
    Json(serde_json::json!({ "q": q, "hits": [] }))
}

async fn load_user(id: u64) -> String {
    static BASE_MS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let base = *BASE_MS.get_or_init(|| {
        std::env::var("DEMO_USERS_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    });
    // Evenly from half to one and a half times the base over the ids (a deterministic spread:
    // the same ids take the same time on every build).
    let spread = 0.5 + (id.wrapping_mul(7919) % 101) as f64 / 100.0;
    let slower = if fault() == Fault::Slower { 1.4 } else { 1.0 };
    let ms = base * spread * slower;
    if ms > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
    } else {
        tokio::task::yield_now().await;
    }
    tracing::info!(user.id = id, "row fetched");
    format!("user-{id}")
}

async fn fail() -> (StatusCode, &'static str) {
    tracing::warn!("payment provider is slow: retrying once"); // a breadcrumb in Sentry
    tracing::error!("simulated failure");
    (StatusCode::INTERNAL_SERVER_ERROR, "simulated failure\n")
}

#[derive(Deserialize)]
struct Slow {
    ms: Option<u64>,
}

async fn slow(Query(q): Query<Slow>) -> String {
    let ms = q.ms.unwrap_or(100).min(MAX_SLOW_MS);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms} ms\n")
}

async fn panicking_handler() -> &'static str {
    panic!("simulated panic")
}

/// An outgoing call the way services make them: reqwest-middleware with reqwest-tracing, which
/// opens the CLIENT span and injects `traceparent` from the OpenTelemetry globals obs installed.
#[tracing::instrument(name = "checkout.reserve")]
async fn checkout() -> Result<String, StatusCode> {
    use obs::otel::opentelemetry::trace::{Span as _, Tracer as _};
    let Ok(downstream) = std::env::var("DEMO_DOWNSTREAM_URL") else {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    };
    // A span made with the OpenTelemetry API: a child of this handler's span.
    let mut priced = obs::otel::opentelemetry::global::tracer("demo").start("price.lookup");
    priced.end();
    // `otel.*` fields name the span, set its kind and status.
    let _audit = tracing::info_span!(
        "audit",
        otel.name = "audit.write",
        otel.kind = "producer",
        otel.status_code = "ERROR"
    )
    .entered();
    drop(_audit);
    tracing::info!("reserving stock");
    let response = obs_examples::outgoing::traced_client()
        .get(format!("{downstream}/users/42"))
        .send()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    Ok(format!("downstream answered {}\n", response.status()))
}

/// A failure with a cause, as a service's own error type.
#[derive(Debug)]
struct PaymentDeclined {
    source: std::io::Error,
}

impl std::fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("payment declined")
    }
}

impl std::error::Error for PaymentDeclined {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

async fn report() -> &'static str {
    let declined = || PaymentDeclined {
        source: std::io::Error::other("card expired"),
    };
    obs::sentry::capture_error(&declined());
    let e = declined();
    tracing::error!(error = &e as &dyn std::error::Error, "checkout failed");
    "reported\n"
}

/// Code (a dependency, say) that logs with the `log` crate.
async fn legacy() -> &'static str {
    log::warn!(target: "legacy_billing", "retrying invoice {}", 42);
    log::error!(target: "legacy_billing", "invoice {} could not be sent", 42);
    "legacy\n"
}

#[derive(Deserialize)]
struct Steps {
    tag: String,
}

async fn steps(Query(q): Query<Steps>) -> &'static str {
    tracing::warn!(tag = %q.tag, "first step of {}", q.tag);
    tokio::time::sleep(Duration::from_millis(200)).await;
    tracing::warn!(tag = %q.tag, "second step of {}", q.tag);
    tracing::error!(tag = %q.tag, "steps failed for {}", q.tag);
    "stepped\n"
}
