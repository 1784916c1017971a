//! A deploy, as Kubernetes does it: the README's service code (built verbatim as
//! `readme-service`) under steady traffic gets SIGTERM. `/readyz` must turn 503 at once, every
//! request that was answered must have its log line, its span and (5xx) its Sentry event
//! delivered, and the process must exit 0 within the deadline, also when the backends hang.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use obs_testkit::client;
use obs_testkit::process::DemoService;
use obs_testkit::receivers::{attributes, display, hex, Behavior, OtlpReceiver, SentryReceiver};
use serde_json::Value;

/// The README's `obs.shutdown` deadline.
const DEADLINE: Duration = Duration::from_secs(5);

#[test]
fn the_readme_shows_the_service_that_is_tested() {
    let readme = include_str!("../../README.md");
    let source = include_str!("../src/bin/readme-service.rs");
    let code = &source[source.find("\nuse ").expect("a use line") + 1..];
    assert!(
        readme.contains(&format!("```rust,no_run\n{code}```")),
        "README.md must show examples/src/bin/readme-service.rs from its first `use` on"
    );
}

struct Answered {
    status: u16,
    request_id: String,
}

/// Requests `/users/{i}` (every tenth is `/users/0`, a 500) until `stop`, keeping every answer.
fn traffic(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Answered>> {
    std::thread::spawn(move || {
        let mut answered = Vec::new();
        obs_testkit::traffic::every(Duration::from_millis(5), |i| {
            if stop.load(Ordering::Relaxed) {
                return ControlFlow::Break(());
            }
            let i = i + 1;
            let path = if i.is_multiple_of(10) {
                "/users/0".to_owned()
            } else {
                format!("/users/{i}")
            };
            // After the signal the listener closes: those requests are refused, not answered.
            if let Ok(r) = client::get(addr, &path) {
                answered.push(Answered {
                    status: r.status,
                    request_id: r.request_id(),
                });
            }
            ControlFlow::Continue(())
        });
        answered
    })
}

/// Sends SIGTERM and measures how long `/readyz` takes to answer 503 (polling it tightly).
fn terminate_and_time_readyz(service: &DemoService) -> Duration {
    let admin = service.admin.expect("admin server");
    assert_eq!(client::get(admin, "/readyz").unwrap().status, 200);
    service.terminate().unwrap();
    let signalled = Instant::now();
    loop {
        let r = client::get(admin, "/readyz").expect("the admin server answers until obs stops");
        if r.status == 503 {
            return signalled.elapsed();
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "/readyz never turned 503"
        );
    }
}

/// A deploy of `readme-service` (with `env`): steady traffic until it served `warmup`
/// requests, then SIGTERM.
/// `/readyz` must answer 503 within 100 ms and the process exit 0 within `wait`; returns the
/// exited service, every answered request and the time from the signal to the exit.
fn deploy(
    env: &[(&str, &str)],
    warmup: u64,
    wait: Duration,
) -> (DemoService, Vec<Answered>, Duration) {
    let mut service =
        DemoService::start_on_port(env!("CARGO_BIN_EXE_readme-service").as_ref(), env).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(service.addr, Arc::clone(&stop));
    service.wait_metric("http_server_request_duration_seconds_count", |n| {
        n >= warmup as f64
    });
    let to_503 = terminate_and_time_readyz(&service);
    let signalled = Instant::now();
    let status = service.wait_exit(wait);
    let took = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    let answered = load.join().unwrap();
    assert!(
        to_503 <= Duration::from_millis(100),
        "/readyz took {to_503:?} to turn 503"
    );
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "exit 0 within {wait:?}"
    );
    (service, answered, took)
}

#[test]
fn sigterm_under_traffic_loses_nothing() {
    // A collector that takes 300 ms per export keeps the flush (and so the 503 window) open.
    let otlp = OtlpReceiver::start(Behavior::Slow(Duration::from_millis(300)));
    let sentry = SentryReceiver::start(Behavior::Ok);
    let (service, answered, _) = deploy(
        &[
            ("OTEL_SERVICE_NAME", "readme"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("SENTRY_DSN", &sentry.dsn("k")),
        ],
        150,
        DEADLINE + Duration::from_secs(2),
    );

    let lines: Vec<Value> = service
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let spans = otlp.spans();
    let events: Vec<Value> = sentry
        .envelopes()
        .into_iter()
        .flat_map(|e| e.unwrap().events().cloned().collect::<Vec<_>>())
        .collect();
    let errors = answered.iter().filter(|a| a.status == 500).count();
    assert!(
        answered.len() >= 50 && errors >= 5,
        "{} answered",
        answered.len()
    );
    for a in &answered {
        let completed = lines
            .iter()
            .find(|l| {
                l["request_id"] == a.request_id.as_str() && l["message"] == "request completed"
            })
            .unwrap_or_else(|| panic!("no completion line for {}", a.request_id));
        assert_eq!(completed["http.response.status_code"], a.status);
        let trace_id = completed["trace_id"].as_str().unwrap();
        assert!(
            spans.iter().any(|(_, s)| hex(&s.trace_id) == trace_id
                && display(&attributes(&s.attributes)["request.id"]) == a.request_id),
            "no span for request {}",
            a.request_id
        );
        let reported = events
            .iter()
            .filter(|e| e["tags"]["request_id"] == a.request_id.as_str())
            .count();
        assert_eq!(
            reported,
            usize::from(a.status == 500),
            "Sentry events of {}",
            a.request_id
        );
    }
    let signal = lines.iter().position(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("shutdown requested"))
    });
    let last = lines
        .iter()
        .position(|l| l["message"] == "obs shut down")
        .expect("the shutdown line");
    assert!(signal.is_some_and(|s| s < last));
    assert_eq!(lines[last]["spans.flushed"], true);
    assert_eq!(lines[last]["spans.dropped"], 0);
    assert_eq!(lines[last]["sentry.flushed"], true);
}

#[test]
fn sigterm_with_hanging_backends_exits_within_the_deadline_and_counts_the_drops() {
    let otlp = OtlpReceiver::start(Behavior::Hang);
    let sentry = SentryReceiver::start(Behavior::Hang);
    let (service, answered, took) = deploy(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("SENTRY_DSN", &sentry.dsn("k")),
        ],
        100,
        DEADLINE + Duration::from_secs(5),
    );
    assert!(
        took <= DEADLINE + Duration::from_secs(1),
        "exited {took:?} after SIGTERM"
    );

    let lines = service.lines();
    let last: Value = serde_json::from_str(
        lines
            .iter()
            .rev()
            .find(|l| l.contains("obs shut down"))
            .expect("the shutdown line"),
    )
    .unwrap();
    assert_eq!(last["spans.flushed"], false);
    assert_eq!(last["sentry.flushed"], false);
    // Every span of an answered request was either exported before the hang or counted.
    assert!(last["spans.dropped"].as_u64().unwrap() >= 1, "{last}");
    for a in &answered {
        assert!(lines
            .iter()
            .any(|l| l.contains(&a.request_id) && l.contains("request completed")));
    }
}

/// What a Kubernetes readiness probe sees over a service's life: a start-up that takes 2 s
/// before the port is bound (demo-service's `DEMO_STARTUP_DELAY_MS`, a migration) is 503
/// while the admin server already answers; 200 only once the port accepts; 503 from SIGTERM
/// until the exit. The service does nothing for it: its server polls `obs.shutdown_signal()`.
#[test]
fn readyz_is_200_only_while_the_service_serves() {
    use obs_testkit::prometheus::free_port;
    let (app_port, admin_port) = (free_port().unwrap(), free_port().unwrap());
    let (app, admin) = (
        format!("127.0.0.1:{app_port}"),
        format!("127.0.0.1:{admin_port}"),
    );
    let (mut service, _) = DemoService::start_until(
        env!("CARGO_BIN_EXE_demo-service").as_ref(),
        &[
            ("OBS_DEMO_ADDR", &app),
            ("OBS_ADMIN_ADDR", &admin),
            ("DEMO_STARTUP_DELAY_MS", "2000"),
        ],
        "obs initialized",
    )
    .unwrap();
    let (app, admin): (std::net::SocketAddr, std::net::SocketAddr) =
        (app.parse().unwrap(), admin.parse().unwrap());
    let accepts = || std::net::TcpStream::connect(app).is_ok();
    let ready = || client::get(admin, "/readyz").unwrap().status;

    // Start-up: the probe answers, and says 503, until the port accepts.
    let mut starting = 0;
    obs_testkit::eventually(
        Duration::from_secs(20),
        || "never ready".into(),
        || {
            let status = ready();
            // Read after the probe: a port that accepts now accepted when the probe said 200.
            let accepting = accepts();
            match status {
                200 => {
                    assert!(accepting, "/readyz said 200 before the port accepted");
                    Some(())
                }
                503 => {
                    starting += 1;
                    None
                }
                other => panic!("/readyz answered {other}"),
            }
        },
    );
    assert!(
        starting >= 3,
        "the 2 s start-up was seen as 503 ({starting} probes)"
    );
    assert_eq!(client::get(admin, "/healthz").unwrap().status, 200);
    assert_eq!(client::get(app, "/users/1").unwrap().status, 200);

    // Serving, then SIGTERM with a request in flight: 503 while it drains (the admin server
    // answers until the process ends), never 200 again.
    service.admin = Some(admin);
    let slow = std::thread::spawn(move || client::get(app, "/slow?ms=1500").unwrap().status);
    service.wait_in_flight(1);
    service.terminate().unwrap();
    obs_testkit::eventually(
        Duration::from_secs(5),
        || "/readyz never turned 503".into(),
        || (ready() == 503).then_some(()),
    );
    while let Ok(r) = client::get(admin, "/readyz") {
        assert_eq!(r.status, 503, "ready again after SIGTERM");
    }
    assert_eq!(
        slow.join().unwrap(),
        200,
        "the request in flight was drained"
    );
    assert!(service
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
}
