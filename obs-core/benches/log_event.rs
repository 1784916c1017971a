//! Micro-benchmarks, each against its baseline in the same run:
//! - one JSON log event (5 fields) inside an entered request span, and outside any span:
//!   obs's `JsonLayer` vs `tracing_subscriber::fmt().json()`, both writing to `io::sink()`;
//! - one RED record: `Obs::record_request` vs a plain `prometheus::HistogramVec` observe, and
//!   with spans exported inside a sampled trace (the bucket's exemplar written too);
//! - the whole middleware on an in-process service (no network): bare vs `obs.layer()`;
//! - one job: a bare ready future vs the same under `obs.job(..).run(..)`, with obs' log line
//!   only (as the middleware case) and with the test obs' whole subscriber (spans built by
//!   tracing-opentelemetry, no exporter);
//! - one sqlx statement event: ignored, turned into the DB metric, and into the metric and a
//!   CLIENT span (exported).
//!
//! Run: `cargo bench -p obs-rs --bench log_event`

use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use obs::logs::JsonLayer;
use tower_layer::Layer;
use tower_service::Service;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer as _;

fn event() {
    tracing::info!(
        user.id = 42u64,
        cart.items = 3u64,
        amount = 19.99,
        currency = "EUR",
        paid = true,
        "checkout done"
    );
}

fn request_span() -> tracing::Span {
    tracing::info_span!(
        target: "obs::http",
        "request",
        request_id = "0190f3a2-7c1e-7d2a-9b1f-2f6c1e0a9d11",
        http.request.method = "GET",
        http.route = "/users/{id}",
        url.path = "/users/42",
    )
}

fn log_event(c: &mut Criterion) {
    let obs = tracing_subscriber::registry()
        .with(JsonLayer::new(std::io::sink(), "bench").with_filter(LevelFilter::INFO));
    let ts = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .with_max_level(LevelFilter::INFO)
        .finish();
    let obs = tracing::Dispatch::new(obs);
    let ts = tracing::Dispatch::new(ts);

    let mut g = c.benchmark_group("log_event_in_span");
    for (name, dispatch) in [("obs", &obs), ("tracing_subscriber_json", &ts)] {
        tracing::dispatcher::with_default(dispatch, || {
            let span = request_span();
            let _entered = span.enter();
            g.bench_function(name, |b| b.iter(event));
        });
    }
    g.finish();

    let mut g = c.benchmark_group("log_event_no_span");
    for (name, dispatch) in [("obs", &obs), ("tracing_subscriber_json", &ts)] {
        tracing::dispatcher::with_default(dispatch, || g.bench_function(name, |b| b.iter(event)));
    }
    g.finish();
}

fn record(c: &mut Criterion) {
    let obs = obs::test::init();
    let method = http::Method::GET;
    let plain = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new("plain_seconds", "baseline")
            .buckets(obs::metrics::names::DURATION_BUCKETS.to_vec()),
        &[
            "http_request_method",
            "http_route",
            "http_response_status_code",
            "url_scheme",
        ],
    )
    .unwrap();
    // The layer's record path, as a service outside `obs.layer()` calls it.
    let record = |obs: &obs::Obs| {
        obs.record_request(
            black_box(&method),
            Some(black_box("/users/{id}")),
            200,
            Duration::from_micros(1500),
        )
    };
    let mut g = c.benchmark_group("red_record");
    g.bench_function("obs_record_request", |b| b.iter(|| record(&obs)));
    // Spans exported (to a closed port; nothing is sent here) and a sampled trace active: the
    // record also writes the bucket's exemplar (ids, value, time).
    let exported = obs::test::init_with(obs::Config::new().otlp_endpoint("http://127.0.0.1:9"));
    let sampled = obs::test::sampled_context();
    g.bench_function("obs_record_request_with_exemplar", |b| {
        let _active = sampled.clone().attach();
        b.iter(|| record(&exported))
    });
    g.bench_function("prometheus_histogram_vec", |b| {
        b.iter(|| {
            plain
                .with_label_values(&[black_box("GET"), black_box("/users/{id}"), "200", "http"])
                .observe(black_box(0.0015))
        })
    });
    g.finish();
}

/// obs' JSON layer at INFO writing to `io::sink()`: lines formatted, then discarded.
fn json_sink() -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry()
        .with(JsonLayer::new(std::io::sink(), "bench").with_filter(LevelFilter::INFO))
}

/// Polls a future that completes without waiting (the services below never pend).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!("the benchmark services are always ready"),
    }
}

#[derive(Clone)]
struct Hello;

impl Service<Request<String>> for Hello {
    type Response = Response<String>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Response<String>, Self::Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Request<String>) -> Self::Future {
        std::future::ready(Ok(Response::new(String::from("hello"))))
    }
}

fn middleware(c: &mut Criterion) {
    let test = obs::test::init();
    // Logs (one "request completed" line per request) are formatted and discarded.
    let sink = json_sink();
    let mut bare = Hello;
    let mut with_obs = test.layer().layer(Hello);
    let req = || {
        Request::get("/users/42")
            .header("x-request-id", "abc-123")
            .body(String::new())
            .unwrap()
    };
    tracing::subscriber::with_default(sink, || {
        let mut g = c.benchmark_group("middleware_in_process");
        g.bench_function("bare", |b| b.iter(|| ready(bare.call(req())).unwrap()));
        g.bench_function("obs_layer", |b| {
            b.iter(|| ready(with_obs.call(req())).unwrap())
        });
        g.finish();
    });
}

async fn job_body() -> Result<u64, std::io::Error> {
    Ok(black_box(42))
}

fn job(c: &mut Criterion) {
    let test = obs::test::init();
    let sink = json_sink();
    let mut g = c.benchmark_group("job");
    g.bench_function("bare", |b| b.iter(|| ready(job_body()).unwrap()));
    tracing::subscriber::with_default(sink, || {
        g.bench_function("obs_job", |b| {
            b.iter(|| ready(test.job("send_email").system("redis").run(job_body())).unwrap())
        });
    });
    tracing::dispatcher::with_default(&test.dispatch(), || {
        g.bench_function("obs_job_with_spans", |b| {
            b.iter(|| ready(test.job("send_email").system("redis").run(job_body())).unwrap())
        });
        // The floor under it: one span of the same subscriber, entered once, and one line.
        g.bench_function("one_span_and_line_with_spans", |b| {
            b.iter(|| {
                let span = tracing::info_span!("job", otel.kind = "consumer");
                span.in_scope(|| tracing::info!("job completed"));
            })
        });
    });
    g.finish();
}

/// One statement event as sqlx writes it (`sqlx::query`, DEBUG, `RUST_LOG` at INFO).
fn sqlx_event() {
    let elapsed = Duration::from_micros(420);
    tracing::event!(
        target: "sqlx::query",
        tracing::Level::DEBUG,
        summary = "SELECT id, name FROM …",
        db.statement = "\n\nSELECT id, name FROM users WHERE id = $1\n",
        rows_affected = 0u64,
        rows_returned = 1u64,
        ?elapsed,
        elapsed_secs = elapsed.as_secs_f64(),
    );
}

/// A sqlx statement event: ignored (`disable_sqlx`), turned into a metric (spans not
/// exported), into a metric and a CLIENT span (exported to a receiver that discards).
fn sqlx(c: &mut Criterion) {
    let receiver =
        obs_testkit::receivers::OtlpReceiver::start(obs_testkit::receivers::Behavior::Discard);
    let off = obs::test::init_with(obs::Config::new().disable_sqlx());
    let metric = obs::test::init_with(obs::Config::new().db_system("postgresql"));
    let span = obs::test::init_with(
        obs::Config::new()
            .db_system("postgresql")
            .otlp_endpoint(receiver.endpoint()),
    );
    let mut g = c.benchmark_group("sqlx_event");
    for (name, obs) in [
        ("ignored", &off),
        ("metric", &metric),
        ("span_and_metric", &span),
    ] {
        tracing::dispatcher::with_default(&obs.dispatch(), || {
            let request = tracing::info_span!("request");
            let _entered = request.enter();
            g.bench_function(name, |b| b.iter(sqlx_event));
        });
    }
    g.finish();
}

/// The actix middleware on an in-process app (`cargo bench -p obs-rs --features actix`): bare
/// vs `obs.actix()`, to set beside `middleware_in_process` (axum's `obs.layer()`).
#[cfg(feature = "actix")]
fn actix(c: &mut Criterion) {
    use actix_web::dev::Service as _;
    use actix_web::test as actix_test;
    use actix_web::{web, App};
    let obs = obs::test::init();
    let sink = json_sink();
    let system = actix_web::rt::System::new();
    let route = || web::get().to(|| async { "hello" });
    let bare = system.block_on(actix_test::init_service(
        App::new().route("/users/{id}", route()),
    ));
    let with_obs = system.block_on(actix_test::init_service(
        App::new().wrap(obs.actix()).route("/users/{id}", route()),
    ));
    let req = || {
        actix_test::TestRequest::get()
            .uri("/users/42")
            .insert_header(("x-request-id", "abc-123"))
            .to_request()
    };
    tracing::subscriber::with_default(sink, || {
        let mut g = c.benchmark_group("actix_in_process");
        g.bench_function("bare", |b| b.iter(|| ready(bare.call(req())).unwrap()));
        g.bench_function("obs_actix", |b| {
            b.iter(|| ready(with_obs.call(req())).unwrap())
        });
        g.finish();
    });
}

#[cfg(not(feature = "actix"))]
fn actix(_: &mut Criterion) {}

criterion_group!(benches, log_event, record, middleware, job, sqlx, actix);
criterion_main!(benches);
