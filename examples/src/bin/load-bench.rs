//! The HTTP load harness: requests/s of bare axum vs axum + `obs.layer()`, measured in the same
//! run, interleaved, server pinned to CPU 0 and `wrk` to CPU 1.
//!
//! ```text
//! cargo run --release -p obs-examples --bin load-bench -- [--rounds 3] [--seconds 5] [--connections 32] [--only obs,actix-obs]
//! ```
//!
//! Variants (each a separate server process, stdout to /dev/null):
//! - `bare`: axum, no middleware;
//! - `obs`: `obs::init()` + `obs.layer()`: request id, request span, RED metrics, and one JSON
//!   "request completed" line per request at INFO;
//! - `obs-logs-off`: the same with `RUST_LOG=off` (request id, span and metrics only);
//! - `obs-otlp`, `obs-sentry`: `obs` plus only one of the two below (the breakdown);
//! - `obs-full`: `obs` plus OTLP export of every request's span (`always_on`, http/protobuf to a
//!   local receiver in this process that discards) and Sentry configured (a local endpoint);
//! - `peer`: the same capabilities assembled from the same crates the way their docs show it:
//!   tower-http `SetRequestId`/`PropagateRequestId` and `TraceLayer` (span and response line at
//!   INFO), tracing-subscriber
//!   `fmt().json()`, tracing-opentelemetry with the SDK's batch span processor and
//!   opentelemetry-otlp (same endpoint, `always_on`), sentry-tracing's default layer, and a
//!   `prometheus` RED middleware (histogram by method, route, status);
//! - `actix-bare`, `actix-obs`, `actix-obs-full`, `actix-peer`: the same on actix-web 4 (one
//!   worker): no middleware; `obs.actix()` as `obs` and as `obs-full`; and the actix peer as
//!   the crates' docs set it up: tracing-actix-web's `TracingLogger` (its `opentelemetry_0_32`
//!   feature), actix-web-prom's `PrometheusMetrics`, sentry-actix's `Sentry`, on the peer's
//!   subscriber, exporter and Sentry client above. An actix variant's overhead is against
//!   `actix-bare`.
//!
//! Prints a Markdown table: median requests/s, the overhead per request against `bare`
//! (`1e6/rps_variant - 1e6/rps_bare` microseconds) computed per round, median over rounds, and
//! the server's peak RSS (`VmHWM`), largest over rounds.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use obs_testkit::receivers::{Behavior, OtlpReceiver, SentryReceiver};

const VARIANTS: [&str; 11] = [
    "bare",
    "obs",
    "obs-logs-off",
    "obs-otlp",
    "obs-sentry",
    "obs-full",
    "peer",
    "actix-bare",
    "actix-obs",
    "actix-obs-full",
    "actix-peer",
];

/// The environment of each variant's server.
fn variant_env(name: &str, otlp: &str, dsn: &str) -> Vec<(&'static str, String)> {
    match name {
        "obs" | "actix-obs" => vec![("RUST_LOG", "info".into())],
        "obs-logs-off" => vec![("RUST_LOG", "off".into())],
        "obs-otlp" => vec![
            ("RUST_LOG", "info".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.into()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            ("OTEL_TRACES_SAMPLER", "always_on".into()),
        ],
        "obs-sentry" => vec![("RUST_LOG", "info".into()), ("SENTRY_DSN", dsn.into())],
        "obs-full" | "peer" | "actix-obs-full" | "actix-peer" => vec![
            ("RUST_LOG", "info".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.into()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            ("OTEL_TRACES_SAMPLER", "always_on".into()),
            ("SENTRY_DSN", dsn.into()),
        ],
        _ => vec![],
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return serve(&args[1], args[2].parse()?);
    }
    let flag = |name: &str, default: u64| obs_examples::cli::flag(&args, name, default);
    // `--only a,b`: just these variants (their bare ones are added).
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_owned).collect());
    let chosen = |name: &str| {
        only.as_ref()
            .is_none_or(|o| name == "bare" || name == "actix-bare" || o.iter().any(|v| v == name))
    };
    let (rounds, seconds, connections) = (
        flag("--rounds", 3),
        flag("--seconds", 5),
        flag("--connections", 32),
    );
    let exe = std::env::current_exe()?;
    let otlp = OtlpReceiver::start(Behavior::Discard);
    let sentry = SentryReceiver::start(Behavior::Ok);
    let mut results: Vec<(&str, Vec<f64>)> = VARIANTS.iter().map(|n| (*n, Vec::new())).collect();
    let mut peak_rss = [0u64; VARIANTS.len()];
    for round in 1..=rounds {
        for (i, name) in VARIANTS.iter().enumerate() {
            if !chosen(name) {
                continue;
            }
            let env = variant_env(name, &otlp.endpoint(), &sentry.dsn("benchkey"));
            let server = Server::start(&exe, name, &env)?;
            let rps = wrk(server.addr, seconds, connections)?;
            let rss = server.peak_rss_kib();
            eprintln!(
                "round {round}: {name:<13} {rps:>10.0} req/s, peak RSS {} KiB",
                rss
            );
            results[i].1.push(rps);
            peak_rss[i] = peak_rss[i].max(rss);
        }
    }
    // Overhead per request against bare: from the medians, and per round against the bare run
    // of the same round (back to back, so slow phases of the machine hit both), median of those.
    // An actix variant's bare is actix-bare.
    let axum_bare = results[0].1.clone();
    let actix_bare = results[VARIANTS.iter().position(|v| *v == "actix-bare").unwrap()]
        .1
        .clone();
    println!("| variant | median req/s | rounds (req/s) | overhead from medians (us) | overhead, median of rounds (us) | peak RSS (MiB) |");
    println!("|---|---:|---|---:|---:|---:|");
    for ((name, rps), rss) in results.iter().zip(peak_rss) {
        if rps.is_empty() {
            continue;
        }
        let bare = if name.starts_with("actix") {
            &actix_bare
        } else {
            &axum_bare
        };
        let runs: Vec<String> = rps.iter().map(|r| format!("{r:.0}")).collect();
        let paired: Vec<f64> = rps
            .iter()
            .zip(bare.iter())
            .map(|(v, b)| 1e6 / v - 1e6 / b)
            .collect();
        let from_medians = 1e6 / median(rps) - 1e6 / median(bare);
        println!(
            "| {name} | {:.0} | {} | {from_medians:.2} | {:.2} | {:.1} |",
            median(rps),
            runs.join(", "),
            median(&paired),
            rss as f64 / 1024.0
        );
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `wrk` pinned to CPU 1 and returns requests/s.
fn wrk(
    addr: SocketAddr,
    seconds: u64,
    connections: u64,
) -> Result<f64, Box<dyn std::error::Error>> {
    let out = Command::new("taskset")
        .args([
            "-c",
            "1",
            "wrk",
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
        ])
        .arg(format!("http://{addr}/users/42"))
        .output()
        .map_err(|e| format!("cannot run taskset/wrk (apt-get install wrk util-linux): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk saw errors:\n{text}").into());
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output:\n{text}").into())
}

/// A server variant in a child process pinned to CPU 0.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(
        exe: &std::path::Path,
        variant: &str,
        env: &[(&str, String)],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let addr: SocketAddr = ([127, 0, 0, 1], obs_testkit::prometheus::free_port()?).into();
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", "0"])
            .arg(exe)
            .args(["serve", variant, &addr.to_string()]);
        cmd.env("OBS_ADMIN_ADDR", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while obs_testkit::client::get(addr, "/users/1").is_err() {
            if Instant::now() > deadline {
                return Err(format!("{variant} server did not start").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, addr })
    }
}

impl Server {
    /// The process's peak resident set size (`VmHWM`), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        // taskset execs the server, so the child's pid is the server's.
        obs_testkit::process::status_kib(self.child.id(), "VmHWM").unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server side: a one-thread runtime serving `GET /users/{id}`.
fn serve(variant: &str, addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    if variant.starts_with("actix") {
        return actix_web::rt::System::new().block_on(serve_actix(variant, addr));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let app = Router::new().route("/users/{id}", get(|| async { "ok" }));
        let (app, _obs, _peer) = match variant {
            "bare" => (app, None, None),
            "peer" => {
                let guard = peer::install()?;
                (peer::layers(app)?, None, Some(guard))
            }
            _ => {
                let obs = obs::init()?;
                (app.layer(obs.layer()), Some(obs), None)
            }
        };
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// The actix server side: one worker serving `GET /users/{id}`.
async fn serve_actix(variant: &str, addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    use actix_web::{web, App, HttpServer};
    async fn user() -> &'static str {
        "ok"
    }
    match variant {
        "actix-bare" => {
            HttpServer::new(|| App::new().route("/users/{id}", web::get().to(user)))
                .workers(1)
                .bind(addr)?
                .run()
                .await?
        }
        "actix-peer" => {
            let _guard = peer::install()?;
            let prometheus = actix_web_prom::PrometheusMetricsBuilder::new("api")
                .endpoint("/metrics")
                .build()
                .map_err(|e| e.to_string())?;
            HttpServer::new(move || {
                App::new()
                    .wrap(prometheus.clone())
                    .wrap(sentry_actix::Sentry::new())
                    .wrap(tracing_actix_web::TracingLogger::default())
                    .route("/users/{id}", web::get().to(user))
            })
            .workers(1)
            .bind(addr)?
            .run()
            .await?
        }
        _ => {
            let obs = obs::init()?;
            let middleware = obs.actix();
            HttpServer::new(move || {
                App::new()
                    .wrap(middleware.clone())
                    .route("/users/{id}", web::get().to(user))
            })
            .workers(1)
            .bind(addr)?
            .run()
            .await?
        }
    }
    Ok(())
}

/// The peer assembly, as the crates' documentation shows it.
mod peer {
    use std::time::Instant;

    use axum::extract::{MatchedPath, Request};
    use axum::middleware::{from_fn, Next};
    use axum::response::Response;
    use axum::Router;
    use obs::otel::opentelemetry::global;
    use obs::otel::opentelemetry::trace::TracerProvider as _;
    use obs::otel::opentelemetry_otlp::SpanExporter;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::runtime::Tokio;
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
    use prometheus::{HistogramOpts, HistogramVec};
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    /// What must live as long as the server.
    pub struct Guard {
        _sentry: obs::sentry::ClientInitGuard,
        _provider: SdkTracerProvider,
    }

    static RED: std::sync::OnceLock<HistogramVec> = std::sync::OnceLock::new();

    async fn red(request: Request, next: Next) -> Response {
        let started = Instant::now();
        let method = request.method().to_string();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(String::new, |p| p.as_str().to_owned());
        let response = next.run(request).await;
        if let Some(histogram) = RED.get() {
            histogram
                .with_label_values(&[&method, &route, response.status().as_str()])
                .observe(started.elapsed().as_secs_f64());
        }
        response
    }

    /// Installs the peer's subscriber, exporter and Sentry client from
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` and `SENTRY_DSN` (shared by the axum and actix peers).
    pub fn install() -> Result<Guard, Box<dyn std::error::Error>> {
        let exporter = SpanExporter::builder().with_http().build()?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter, Tokio).build())
            .with_sampler(Sampler::AlwaysOn)
            .build();
        global::set_tracer_provider(provider.clone());
        global::set_text_map_propagator(TraceContextPropagator::new());
        let sentry = obs::sentry::init(std::env::var("SENTRY_DSN").ok());
        #[allow(deprecated)] // the legacy combined layer is the one with the default filters
        let sentry_layer = sentry_tracing::layer();
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(tracing_subscriber::fmt::layer().json())
            .with(obs::otel::tracing_opentelemetry::layer().with_tracer(provider.tracer("peer")))
            .with(sentry_layer)
            .try_init()?;
        Ok(Guard {
            _sentry: sentry,
            _provider: provider,
        })
    }

    /// The axum peer's middleware stack over `app`, with its RED histogram.
    pub fn layers(app: Router) -> Result<Router, Box<dyn std::error::Error>> {
        let histogram = HistogramVec::new(
            HistogramOpts::new("http_server_request_duration_seconds", "Request duration."),
            &[
                "http_request_method",
                "http_route",
                "http_response_status_code",
            ],
        )?;
        prometheus::register(Box::new(histogram.clone()))?;
        let _ = RED.set(histogram);
        Ok(app
            .layer(from_fn(red))
            // At INFO, as services configure it to get a span and a line per request (the
            // defaults are DEBUG, which `info` filters out: no span, no line, nothing exported).
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid)))
    }
}
