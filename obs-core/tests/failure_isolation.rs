//! Telemetry must never hurt the service: with the OTLP endpoint refusing connections, accepting
//! and never answering, answering slowly or failing, and with Sentry failing or hanging,
//! requests keep succeeding promptly, the queues stay bounded (drops are counted), nothing
//! panics, and `shutdown(2 s)` returns within about 2 s, inside a runtime of either flavour or
//! outside any runtime.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use obs_testkit::client;
use obs_testkit::exposition::sample;
use obs_testkit::receivers::{refused_endpoint, Behavior, BlackHole, OtlpReceiver, SentryReceiver};

/// Requests per scenario: more than twice the span queue.
const REQUESTS: usize = 5000;
/// The span queue bound (OTEL_BSP_MAX_QUEUE_SIZE default): at most this many spans wait, plus
/// at most this many in the batch being sent.
const SPAN_QUEUE: usize = 2048;
/// A request this slow would mean telemetry blocked it (handlers answer in microseconds).
const SLOW_REQUEST: Duration = Duration::from_secs(2);

#[derive(Clone, Copy)]
enum Flavour {
    /// `shutdown` called inside a current-thread runtime.
    CurrentThread,
    /// `shutdown` called after the multi-thread runtime is gone.
    MultiThreadThenOutside,
}

enum Backend {
    Otlp(String, Option<(OtlpReceiver, Behavior)>, Option<BlackHole>),
    Sentry(SentryReceiver),
}

fn app(obs: &obs::Obs) -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route(
            "/report",
            get(|| async {
                tracing::warn!("about to fail");
                tracing::error!(order = 7, "payment failed, handled");
                "handled"
            }),
        )
        .layer(obs.layer())
}

/// Serves the app, drives `REQUESTS` requests to `path` from 4 client threads, and returns
/// the slowest request.
async fn drive(obs: &obs::Obs, path: &'static str) -> Duration {
    let addr: SocketAddr = obs_testkit::serve(app(obs)).await;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            tokio::task::spawn_blocking(move || {
                let mut slowest = Duration::ZERO;
                for _ in 0..REQUESTS / 4 {
                    let started = Instant::now();
                    let response = client::get(addr, path).expect("the service answers");
                    assert_eq!(response.status, 200, "a request failed: {response:?}");
                    slowest = slowest.max(started.elapsed());
                }
                slowest
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for c in clients {
        slowest = slowest.max(c.await.expect("no client panicked"));
    }
    slowest
}

fn counter(obs: &obs::Obs, name: &str) -> f64 {
    sample(&obs.metrics_text(), name, &[]).unwrap_or_else(|| panic!("{name} is exposed"))
}

fn run(backend: Backend, flavour: Flavour) {
    let (config, path) = match &backend {
        Backend::Otlp(endpoint, ..) => (obs::Config::new().otlp_endpoint(endpoint), "/users/1"),
        Backend::Sentry(r) => (obs::Config::new().sentry_dsn(r.dsn("k3y")), "/report"),
    };
    let obs = obs::test::init_with(config);
    let dispatch = obs.dispatch();
    let runtime = match flavour {
        Flavour::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavour::MultiThreadThenOutside => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            // The test subscriber is per thread: install it on the runtime's threads too.
            b.worker_threads(2).on_thread_start(move || {
                std::mem::forget(tracing::dispatcher::set_default(&dispatch));
            });
            b
        }
    }
    .enable_all()
    .build()
    .unwrap();

    let slowest = runtime.block_on(drive(&obs, path));
    assert!(
        slowest < SLOW_REQUEST,
        "telemetry slowed a request to {slowest:?}"
    );

    let started = Instant::now();
    match flavour {
        Flavour::CurrentThread => runtime.block_on(async { obs.shutdown(Duration::from_secs(2)) }),
        Flavour::MultiThreadThenOutside => {
            drop(runtime);
            obs.shutdown(Duration::from_secs(2));
        }
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "shutdown took {took:?}");

    match &backend {
        Backend::Otlp(_, receiver, hole) => {
            let dropped = counter(&obs, "obs_spans_dropped_total") as usize;
            match (receiver, hole) {
                // Nothing can be delivered: every span is dropped, and counted.
                (None, None) => assert_eq!(dropped, REQUESTS),
                // The first batch hangs; the queue holds at most its bound; the rest is dropped.
                (None, Some(_)) => assert!(
                    dropped >= REQUESTS - 2 * SPAN_QUEUE,
                    "queue not bounded: only {dropped} dropped"
                ),
                // Batches were received (and decoded) but refused, retried as the OTLP spec says
                // for 503 until the deadline: every span is lost, and counted.
                (Some((r, Behavior::Status(_))), _) => {
                    assert!(!r.spans().is_empty(), "batches were sent");
                    assert_eq!(dropped, REQUESTS);
                }
                // Slow: what was answered in time is exported; what was still queued or in flight
                // at the deadline is counted as dropped (a batch in flight may also have arrived).
                (Some((r, _)), _) => {
                    let received = r.spans().len();
                    assert!(
                        received > 0 && dropped > 0 && dropped <= REQUESTS,
                        "{received} received, {dropped} dropped"
                    );
                }
            }
        }
        Backend::Sentry(receiver) => {
            // The sentry crate's transport queue is bounded (its drops travel to Sentry as client
            // reports): what matters here is that requests and shutdown were unaffected.
            assert!(!receiver.envelopes().is_empty(), "events were attempted");
            assert!(
                receiver.envelopes().iter().all(Result::is_ok),
                "well-formed envelopes"
            );
        }
    }
}

fn refused() -> Backend {
    Backend::Otlp(refused_endpoint(), None, None)
}
fn black_hole() -> Backend {
    let hole = BlackHole::start();
    Backend::Otlp(hole.endpoint(), None, Some(hole))
}
fn otlp(behavior: Behavior) -> Backend {
    let r = OtlpReceiver::start(behavior);
    Backend::Otlp(r.endpoint(), Some((r, behavior)), None)
}
fn sentry(behavior: Behavior) -> Backend {
    Backend::Sentry(SentryReceiver::start(behavior))
}

macro_rules! scenarios {
    ($($name:ident: $backend:expr;)*) => {
        mod current_thread {
            use super::*;
            $(#[test] fn $name() { run($backend, Flavour::CurrentThread) })*
        }
        mod multi_thread_then_outside {
            use super::*;
            $(#[test] fn $name() { run($backend, Flavour::MultiThreadThenOutside) })*
        }
    };
}

scenarios! {
    otlp_refuses_connections: refused();
    otlp_accepts_and_never_answers: black_hole();
    otlp_is_slow: otlp(Behavior::Slow(Duration::from_secs(3)));
    otlp_fails: otlp(Behavior::Status(503));
    sentry_fails: sentry(Behavior::Status(500));
    sentry_hangs: sentry(Behavior::Hang);
}
