//! One behaviour, two frameworks: the same suite runs against demo-service (axum,
//! `obs.layer()`) and actix-service (actix-web 4, `obs.actix()`), real processes on loopback:
//! request ids (hostile ones replaced), exact RED counts under concurrency, route templates,
//! 404 without a route label, traceparent continued and propagated by reqwest-tracing, Sentry
//! events with the request's tags, a panic answered 500 with one event, and a SIGTERM drain
//! that loses nothing. Each behaviour is one function; `both!` runs it on each service.

use std::collections::HashMap;
use std::time::Duration;

use obs_testkit::client;
use obs_testkit::process::DemoService;
use obs_testkit::receivers::{
    attributes, display, hex, Behavior, HttpRecorder, OtlpReceiver, SentryReceiver,
};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value;

/// A service under test: its binary, the line it says when it listens, and what its
/// framework does with a request whose client went away.
#[derive(Clone, Copy)]
struct Framework {
    bin: &'static str,
    ready: &'static str,
    /// hyper drops the handler's future when the connection closes; actix-web's HTTP/1
    /// dispatcher runs the handler to its end and notices only when it writes.
    drops_abandoned: bool,
}

const AXUM: Framework = Framework {
    bin: env!("CARGO_BIN_EXE_demo-service"),
    ready: "demo-service listening",
    drops_abandoned: true,
};
const ACTIX: Framework = Framework {
    bin: env!("CARGO_BIN_EXE_actix-service"),
    ready: "actix-service listening",
    drops_abandoned: false,
};

/// Runs a behaviour on both services, as `<behaviour>::axum` and `<behaviour>::actix`.
macro_rules! both {
    ($($behaviour:ident),* $(,)?) => {$(
        mod $behaviour {
            #[test]
            fn axum() {
                super::$behaviour(super::AXUM)
            }
            #[test]
            fn actix() {
                super::$behaviour(super::ACTIX)
            }
        }
    )*};
}

both!(
    request_ids_are_kept_when_valid_and_replaced_when_hostile,
    red_counts_are_exact_under_concurrency_with_route_templates,
    traceparent_is_continued_and_propagated,
    sentry_gets_the_requests_errors_and_panics_once,
    sigterm_drains_in_flight_requests,
    a_request_the_client_abandons_is_counted_as_the_framework_ends_it,
);

fn start(fw: Framework, env: &[(&str, &str)]) -> DemoService {
    DemoService::start_until(fw.bin.as_ref(), env, fw.ready)
        .unwrap_or_else(|e| panic!("{}: {e}", fw.bin))
        .0
}

fn get_with(service: &DemoService, path: &str, headers: &[(&str, &[u8])]) -> client::Response {
    client::request(service.addr, "GET", path, headers).unwrap()
}

fn request_ids_are_kept_when_valid_and_replaced_when_hostile(fw: Framework) {
    let service = start(fw, &[]);
    let kept = get_with(&service, "/users/7", &[("x-request-id", b"req-7.a:b_c")]);
    assert_eq!(kept.status, 200);
    assert_eq!(kept.request_id(), "req-7.a:b_c");
    let long = "x".repeat(10_000);
    let mut replaced = Vec::new();
    for hostile in [
        &b"a\"b} level=ERROR"[..],
        long.as_bytes(),
        "ünïcode".as_bytes(),
    ] {
        let r = get_with(&service, "/users/8", &[("x-request-id", hostile)]);
        assert_eq!(
            r.status,
            200,
            "{}",
            String::from_utf8_lossy(&hostile[..hostile.len().min(20)])
        );
        let id = r.request_id();
        assert_eq!(id.len(), 36, "a fresh UUIDv7: {id}");
        assert_eq!(&id[14..15], "7", "{id}");
        replaced.push(id);
    }
    let lines = service.stop_json();
    let completed = |id: &str| {
        lines
            .iter()
            .find(|l| l["message"] == "request completed" && l["request_id"] == id)
            .unwrap_or_else(|| panic!("no line for {id}"))
    };
    assert_eq!(completed("req-7.a:b_c")["http.route"], "/users/{id}");
    for id in &replaced {
        completed(id);
    }
    // The handler's own line carries the request's id too.
    assert!(lines
        .iter()
        .any(|l| l["message"] == "user loaded" && l["request_id"] == "req-7.a:b_c"));
    let all = lines.iter().map(Value::to_string).collect::<String>();
    assert!(
        !all.contains("level=ERROR") && !all.contains(&long[..200]) && !all.contains("ünïcode")
    );
}

/// The `_count` of the series whose labels are exactly `labels` (sorted, as rendered).
fn count(page: &str, labels: &str) -> u64 {
    let prefix = format!("http_server_request_duration_seconds_count{{{labels}}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |v| v.parse().unwrap())
}

fn red_counts_are_exact_under_concurrency_with_route_templates(fw: Framework) {
    let service = start(fw, &[]);
    let addr = service.addr;
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in 0..25 {
                    let r = client::get(addr, &format!("/users/{}", t * 100 + i)).unwrap();
                    assert_eq!(r.status, 200);
                }
                if t < 5 {
                    assert_eq!(client::get(addr, "/fail").unwrap().status, 500);
                }
                if t < 3 {
                    assert_eq!(client::get(addr, &format!("/.env{t}")).unwrap().status, 404);
                }
            });
        }
    });
    let page = client::get(service.admin.unwrap(), "/metrics")
        .unwrap()
        .body;
    assert_eq!(
        count(
            &page,
            r#"http_request_method="GET",http_response_status_code="200",http_route="/users/{id}",url_scheme="http""#
        ),
        200,
        "{page}"
    );
    assert_eq!(
        count(
            &page,
            r#"error_type="500",http_request_method="GET",http_response_status_code="500",http_route="/fail",url_scheme="http""#
        ),
        5
    );
    // Unmatched paths: one series without a route label, never the raw path.
    assert_eq!(
        count(
            &page,
            r#"http_request_method="GET",http_response_status_code="404",url_scheme="http""#
        ),
        3
    );
    assert!(!page.contains(".env"), "{page}");
}

fn traceparent_is_continued_and_propagated(fw: Framework) {
    let otlp = OtlpReceiver::start(Behavior::Ok);
    let downstream = HttpRecorder::start();
    let endpoint = otlp.endpoint();
    let url = downstream.url();
    let service = start(
        fw,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("DEMO_DOWNSTREAM_URL", &url),
        ],
    );
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let tp = format!("00-{trace}-{parent}-01");
    let r = get_with(&service, "/checkout", &[("traceparent", tp.as_bytes())]);
    assert_eq!(r.status, 200, "{}", r.body);
    // The SERVER span ends last: its CLIENT child was exported with it or before.
    let spans = otlp.wait_for_span(
        |s| s.kind == SpanKind::Server as i32,
        Duration::from_secs(10),
    );
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("no server span: {spans:#?}"));
    assert_eq!(server.name, "GET /checkout");
    assert_eq!(hex(&server.trace_id), trace);
    assert_eq!(hex(&server.parent_span_id), parent);
    let a: HashMap<String, String> = attributes(&server.attributes)
        .into_iter()
        .map(|(k, v)| (k, display(&v)))
        .collect();
    assert_eq!(a["http.route"], "/checkout");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(a["request.id"], r.request_id());
    let sent: Vec<String> = downstream
        .requests()
        .iter()
        .filter_map(|h| h.get("traceparent")?.to_str().ok().map(str::to_owned))
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].starts_with(&format!("00-{trace}-")), "{sent:?}");
    assert!(
        !sent[0].contains(parent),
        "the call's own span is the downstream's parent"
    );
}

fn sentry_gets_the_requests_errors_and_panics_once(fw: Framework) {
    let sentry = SentryReceiver::start(Behavior::Ok);
    let dsn = sentry.dsn("suitekey");
    let service = start(fw, &[("SENTRY_DSN", &dsn)]);
    let failed = get_with(&service, "/fail", &[]);
    assert_eq!(failed.status, 500);
    let panicked = get_with(&service, "/panic", &[]);
    assert_eq!(panicked.status, 500, "a panic is answered");
    assert_eq!(panicked.request_id().len(), 36);
    assert_eq!(
        get_with(&service, "/users/1", &[]).status,
        200,
        "and the service goes on"
    );
    // The exit flushes Sentry: every event the service sent has arrived.
    let lines = service.stop_json();
    let events = sentry.wait_for_events(2, Duration::from_secs(10));
    assert_eq!(events.len(), 2, "one event each: {events:#?}");
    let of = |r: &client::Response| {
        events
            .iter()
            .find(|e| e["tags"]["request_id"] == r.request_id().as_str())
            .unwrap_or_else(|| panic!("no event for {}: {events:#?}", r.request_id()))
    };
    let failure = of(&failed);
    assert_eq!(failure["message"], "simulated failure");
    assert_eq!(failure["tags"]["http.route"], "/fail");
    assert_eq!(failure["request"]["method"], "GET");
    let crumbs = failure["breadcrumbs"]["values"].to_string();
    assert!(crumbs.contains("payment provider is slow"), "{crumbs}");
    let panic = of(&panicked);
    assert_eq!(panic["tags"]["http.route"], "/panic");
    assert!(
        panic["exception"].to_string().contains("simulated panic"),
        "{panic}"
    );
    let panic_line = lines
        .iter()
        .find(|l| {
            l["message"] == "request completed" && l["request_id"] == panicked.request_id().as_str()
        })
        .unwrap();
    assert_eq!(panic_line["level"], "ERROR");
    assert_eq!(panic_line["error.type"], "panic");
}

fn sigterm_drains_in_flight_requests(fw: Framework) {
    let service = start(fw, &[]);
    let addr = service.addr;
    let slow: Vec<_> = (0..5)
        .map(|_| std::thread::spawn(move || client::get(addr, "/slow?ms=1500").unwrap()))
        .collect();
    service.wait_in_flight(5);
    let lines = service.stop_json(); // SIGTERM, then a clean exit
    for r in slow {
        let r = r.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let completed = lines
        .iter()
        .filter(|l| l["message"] == "request completed" && l["http.route"] == "/slow")
        .count();
    assert_eq!(
        completed, 5,
        "every in-flight request was logged before the exit"
    );
}

/// obs counts what the framework does: a future dropped before its response is `cancelled`;
/// a handler the framework runs to its end is counted with its status, once.
fn a_request_the_client_abandons_is_counted_as_the_framework_ends_it(fw: Framework) {
    use std::io::Write;
    let service = start(fw, &[]);
    let mut stream = std::net::TcpStream::connect(service.addr).unwrap();
    stream
        .write_all(b"GET /slow?ms=1500 HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    service.wait_in_flight(1);
    drop(stream); // the client goes away before the answer
    let series = if fw.drops_abandoned {
        r#"error_type="cancelled",http_request_method="GET",http_route="/slow",url_scheme="http""#
    } else {
        r#"http_request_method="GET",http_response_status_code="200",http_route="/slow",url_scheme="http""#
    };
    let page = || {
        client::get(service.admin.unwrap(), "/metrics")
            .unwrap()
            .body
    };
    let page = obs_testkit::eventually(
        Duration::from_secs(5),
        || format!("{series} never counted: {}", page()),
        || Some(page()).filter(|p| count(p, series) == 1),
    );
    let total: u64 = page
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 1, "counted once: {page}");
}
