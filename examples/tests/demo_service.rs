//! The demo service as a real process: JSON logs on stdout, request ids, configuration from the
//! environment, the admin server and graceful shutdown.

use std::time::{Duration, Instant};

use obs_testkit::client::{self, Response};
use obs_testkit::process::DemoService;
use serde_json::Value;

fn start(env: &[(&str, &str)]) -> DemoService {
    DemoService::start(env!("CARGO_BIN_EXE_demo-service").as_ref(), env)
        .expect("demo-service starts")
}

/// Every stdout line, each parsed as one JSON object (panics on any line that is not).
fn json_lines(demo: &DemoService) -> Vec<Value> {
    demo.lines()
        .iter()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            assert!(v.is_object(), "not an object: {l}");
            v
        })
        .collect()
}

/// Waits for the "request completed" line of `request_id`.
fn completed(demo: &DemoService, request_id: &str) -> Value {
    let needle = format!(r#""request_id":"{request_id}""#);
    let line = demo
        .wait_for(
            |l| l.contains("request completed") && l.contains(&needle),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("no completion line for {request_id}: {:#?}", demo.lines()));
    serde_json::from_str(&line).unwrap()
}

fn is_uuid_v7(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b[14] == b'7'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
        && s.chars()
            .filter(|c| *c != '-')
            .all(|c| c.is_ascii_hexdigit())
}

#[test]
fn request_completed_line_and_request_id_propagation() {
    let demo = start(&[("OTEL_SERVICE_NAME", "checkout")]);
    let r = client::request(
        demo.addr,
        "GET",
        "/users/7?token=secret",
        &[("x-request-id", b"abc-123")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("abc-123"));

    let line = completed(&demo, "abc-123");
    assert_eq!(line["message"], "request completed");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["target"], "obs::http");
    assert_eq!(line["http.request.method"], "GET");
    assert_eq!(line["http.route"], "/users/{id}");
    assert_eq!(
        line["url.path"], "/users/7",
        "the query string must not be logged"
    );
    assert_eq!(line["http.response.status_code"], 200);
    assert!(line["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(line["service.name"], "checkout");
    let ts = line["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), "2026-11-27T13:29:12.123456Z".len(), "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T');
    assert!(!demo.lines().iter().any(|l| l.contains("secret")));

    // Every line of the request (the handler's two, one in its own span, and the completion
    // line) has the id.
    let of_request: Vec<Value> = json_lines(&demo)
        .into_iter()
        .filter(|l| l["url.path"] == "/users/7")
        .collect();
    assert_eq!(of_request.len(), 3, "{of_request:#?}");
    assert!(of_request.iter().all(|l| l["request_id"] == "abc-123"));
    assert_eq!(of_request[0]["message"], "row fetched");
    assert_eq!(of_request[0]["db.system"], "postgresql");
    assert_eq!(of_request[1]["message"], "user loaded");
}

#[test]
fn hostile_request_ids_are_replaced_and_never_logged() {
    let demo = start(&[]);
    let big = vec![b'a'; 10 * 1024];
    let hostile: Vec<&[u8]> = vec![
        b"a\"b",
        b"<script>alert(1)</script>",
        &big,
        "caf\u{e9}-\u{1f600}".as_bytes(),
        b"a b",
        b"\x1b[31mred",
        b"{\"json\":1}",
    ];
    for (i, value) in hostile.iter().enumerate() {
        let r = client::request(
            demo.addr,
            "GET",
            &format!("/users/{i}"),
            &[("x-request-id", value)],
        )
        .unwrap();
        if r.status == 400 {
            continue; // hyper refused the header itself: the request never reached the service
        }
        assert_eq!(r.status, 200);
        let id = r.header("x-request-id").unwrap().to_owned();
        assert!(is_uuid_v7(&id), "hostile id {i} replaced by {id}");
        let line = completed(&demo, &id);
        assert_eq!(line["url.path"], format!("/users/{i}"));
    }
    let lines = demo.lines();
    for l in &lines {
        assert!(
            !l.contains("<script>") && !l.contains("\"json\":1") && !l.contains("aaaaaaaaaaaaaaaa"),
            "{l}"
        );
    }
    json_lines(&demo); // every line is still exactly one JSON object
                       // A valid id of the maximum length is kept.
    let max = "x".repeat(128);
    let r = client::request(
        demo.addr,
        "GET",
        "/users/1",
        &[("x-request-id", max.as_bytes())],
    )
    .unwrap();
    assert_eq!(r.header("x-request-id"), Some(max.as_str()));
}

#[test]
fn failures_panics_and_unmatched_routes_are_logged() {
    let demo = start(&[]);
    let fail = client::get(demo.addr, "/fail").unwrap();
    let panic = client::get(demo.addr, "/panic").unwrap();
    let missing = client::get(demo.addr, "/.env").unwrap();
    assert_eq!((fail.status, panic.status, missing.status), (500, 500, 404));

    let fail_line = completed(&demo, fail.header("x-request-id").unwrap());
    assert_eq!(fail_line["level"], "ERROR");
    assert_eq!(fail_line["error.type"], "500");
    let panic_id = panic.header("x-request-id").unwrap();
    let panic_line = completed(&demo, panic_id);
    assert_eq!(panic_line["http.response.status_code"], 500);
    assert_eq!(panic_line["error.type"], "panic");
    // The panic itself is one JSON line inside the request, with its location.
    let lines = json_lines(&demo);
    let panicked = lines
        .iter()
        .find(|l| l["target"] == "obs::panic")
        .expect("panic line");
    assert_eq!(panicked["request_id"], panic_id);
    assert_eq!(panicked["message"], "panicked: simulated panic");
    assert!(panicked["panic.location"]
        .as_str()
        .unwrap()
        .contains("demo-service.rs"));
    let missing_line = completed(&demo, missing.header("x-request-id").unwrap());
    assert!(
        missing_line.get("http.route").is_none(),
        "no route for unmatched paths"
    );
    assert_eq!(missing_line["level"], "INFO");
}

#[test]
fn bad_environment_values_warn_once_and_fall_back() {
    let demo = start(&[
        ("OBS_LOG_FORMAT", "xml"),
        ("RUST_LOG", "info,[[[=="),
        ("OBS_ADMIN_ADDR", "not-an-address"),
    ]);
    let lines = json_lines(&demo); // still JSON: the default format
    let warnings: Vec<&Value> = lines
        .iter()
        .filter(|l| l["level"] == "WARN" && l["target"] == "obs::config")
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    let text: Vec<&str> = warnings
        .iter()
        .map(|w| w["message"].as_str().unwrap())
        .collect();
    assert!(
        text[0].contains("OBS_LOG_FORMAT") && text[0].contains("using json"),
        "{}",
        text[0]
    );
    assert!(
        text[1].contains("RUST_LOG") && text[1].contains("using info"),
        "{}",
        text[1]
    );
    assert!(
        text[2].contains("OBS_ADMIN_ADDR") && text[2].contains("0.0.0.0:9464"),
        "{}",
        text[2]
    );
    let init = lines
        .iter()
        .find(|l| l["message"] == "obs initialized")
        .unwrap();
    assert_eq!(init["log.filter"], "info");
    // The service works normally.
    assert_eq!(client::get(demo.addr, "/users/1").unwrap().status, 200);
}

#[test]
fn rust_log_warn_keeps_request_ids_on_the_lines_it_lets_through() {
    // demo_service=info keeps the "listening" line the harness waits for.
    let demo = start(&[("RUST_LOG", "warn,demo_service=info")]);
    let r = client::request(demo.addr, "GET", "/fail", &[("x-request-id", b"warn-test")]).unwrap();
    assert_eq!(r.status, 500);
    let error = demo
        .wait_for(|l| l.contains("simulated failure"), Duration::from_secs(10))
        .unwrap();
    let error: Value = serde_json::from_str(&error).unwrap();
    assert_eq!(error["request_id"], "warn-test");
    assert_eq!(error["http.route"], "/fail");
    // The 500's completion line is ERROR and passes; a 200's is INFO and is filtered out.
    completed(&demo, "warn-test");
    client::request(
        demo.addr,
        "GET",
        "/users/1",
        &[("x-request-id", b"info-test")],
    )
    .unwrap();
    // Every line, flushed by the exit.
    let lines = demo.stop_json();
    let of_info = |message: &str| {
        lines
            .iter()
            .any(|l| l["message"] == message && l["request_id"] == "info-test")
    };
    assert!(of_info("user loaded"), "demo_service=info passes");
    assert!(!of_info("request completed"), "{lines:#?}");
}

#[test]
fn pretty_format_is_human_readable() {
    let demo = start(&[("OBS_LOG_FORMAT", "pretty")]);
    client::request(
        demo.addr,
        "GET",
        "/users/3",
        &[("x-request-id", b"pretty-1")],
    )
    .unwrap();
    let line = demo
        .wait_for(|l| l.contains("request completed"), Duration::from_secs(10))
        .unwrap();
    assert!(
        !line.starts_with('{') && line.contains("pretty-1"),
        "{line}"
    );
}

#[test]
fn admin_endpoints_and_disabling_them() {
    let demo = start(&[]);
    let admin = demo.admin.expect("admin server on a loopback port");
    let health = client::get(admin, "/healthz").unwrap();
    let ready = client::get(admin, "/readyz").unwrap();
    assert_eq!((health.status, ready.status), (200, 200));
    let metrics: Response = client::get(admin, "/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(metrics.body.contains("obs_build_info{version="));
    assert!(metrics
        .body
        .contains(r#"target_info{service_name="demo-service"} 1"#));

    let off = start(&[("OBS_ADMIN_ADDR", "off")]);
    assert_eq!(off.admin, None);
    let init = off
        .wait_for(|l| l.contains("obs initialized"), Duration::from_secs(5))
        .unwrap();
    assert!(init.contains(r#""admin.addr":"off""#), "{init}");
}

#[test]
fn sigterm_drains_in_flight_requests_flushes_and_exits() {
    let mut demo = start(&[]);
    let addr = demo.addr;
    // One request in flight that finishes during the drain...
    let short = std::thread::spawn(move || client::get(addr, "/slow?ms=1000"));
    demo.wait_in_flight(1);
    let t = Instant::now();
    demo.terminate().unwrap();
    let status = demo
        .wait_exit(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        short.join().unwrap().unwrap().status,
        200,
        "the in-flight request was drained"
    );
    let lines = json_lines(&demo);
    assert!(lines
        .iter()
        .any(|l| l["message"] == "request completed" && l["url.path"] == "/slow"));
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert_eq!(
        messages[messages.len() - 2..],
        ["demo-service stopped", "obs shut down"],
        "the last lines were flushed"
    );
    assert!(
        client::get(addr, "/users/1").is_err(),
        "no longer accepting"
    );
}

#[test]
fn a_request_longer_than_the_drain_timeout_does_not_block_exit() {
    let mut demo = start(&[]);
    let addr = demo.addr;
    let _stuck = std::thread::spawn(move || client::get(addr, "/slow?ms=60000"));
    demo.wait_in_flight(1);
    let t = Instant::now();
    demo.terminate().unwrap();
    demo.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(demo.lines().iter().any(|l| l.contains("drain timed out")));
}

#[test]
fn every_line_of_a_request_carries_its_trace_context() {
    let demo = start(&[]);
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    client::request(
        demo.addr,
        "GET",
        "/users/5",
        &[
            ("x-request-id", b"traced-1"),
            ("traceparent", parent.as_bytes()),
            ("tracestate", b"rojo=00f067aa0ba902b7"),
        ],
    )
    .unwrap();
    client::request(
        demo.addr,
        "GET",
        "/users/6",
        &[("x-request-id", b"fresh-1"), ("traceparent", b"00-bogus")],
    )
    .unwrap();
    completed(&demo, "traced-1");
    completed(&demo, "fresh-1");
    let lines = json_lines(&demo);
    let traced: Vec<&Value> = lines
        .iter()
        .filter(|l| l["request_id"] == "traced-1")
        .collect();
    assert_eq!(
        traced.len(),
        3,
        "the handler's lines and the completion line"
    );
    // The line inside the handler's span has that span's id; the others the server span's.
    assert_ne!(traced[0]["span_id"], traced[1]["span_id"]);
    assert_eq!(traced[1]["span_id"], traced[2]["span_id"]);
    for l in &traced {
        assert_eq!(
            l["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "continues the incoming trace"
        );
        assert_eq!(l["trace_flags"], "01");
        let span = l["span_id"].as_str().unwrap();
        assert!(
            span.len() == 16 && span != "00f067aa0ba902b7",
            "a new server span: {span}"
        );
    }
    let fresh: Vec<&Value> = lines
        .iter()
        .filter(|l| l["request_id"] == "fresh-1")
        .collect();
    let trace = fresh[0]["trace_id"].as_str().unwrap();
    assert!(
        trace.len() == 32
            && trace.chars().all(|c| c.is_ascii_hexdigit())
            && trace != "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(
        fresh.iter().all(|l| l["trace_id"] == trace),
        "an invalid traceparent starts a new trace, on every line"
    );
    // Lines outside any request have no trace context.
    let startup = lines
        .iter()
        .find(|l| l["message"] == "obs initialized")
        .unwrap();
    assert!(startup.get("trace_id").is_none());
}

#[test]
fn obs_metrics_token_protects_metrics_but_not_the_probes() {
    let demo = start(&[("OBS_METRICS_TOKEN", "t0ps3cret")]);
    let admin = demo.admin.unwrap();
    assert_eq!(client::get(admin, "/metrics").unwrap().status, 401);
    assert_eq!(
        client::request(
            admin,
            "GET",
            "/metrics",
            &[("authorization", b"Bearer wrong")]
        )
        .unwrap()
        .status,
        401
    );
    let ok = client::request(
        admin,
        "GET",
        "/metrics",
        &[("authorization", b"Bearer t0ps3cret")],
    )
    .unwrap();
    assert!(ok.status == 200 && ok.body.contains("obs_build_info"));
    assert_eq!(client::get(admin, "/healthz").unwrap().status, 200);
    assert_eq!(client::get(admin, "/readyz").unwrap().status, 200);
    let init = demo
        .wait_for(|l| l.contains("obs initialized"), Duration::from_secs(5))
        .unwrap();
    assert!(init.contains(r#""metrics.auth":"bearer token""#), "{init}");
    assert!(
        !demo.lines().iter().any(|l| l.contains("t0ps3cret")),
        "the token is never logged"
    );
}
