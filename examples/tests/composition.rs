//! obs next to a layer of the service's own, both ways (`Config::with_layer`, and a subscriber
//! the service builds from `Config::into_layers`), as processes: obs' JSON lines, metrics and
//! spans are all there, and the service's own layer sees the same events inside obs' request
//! span.

use std::time::Duration;

use obs_testkit::client;
use obs_testkit::process::DemoService;
use obs_testkit::receivers::{hex, Behavior, OtlpReceiver};

fn check(compose: &str) {
    let otlp = OtlpReceiver::start(Behavior::Ok);
    let service = DemoService::start(
        env!("CARGO_BIN_EXE_composed-service").as_ref(),
        &[
            ("OBS_COMPOSE", compose),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .unwrap();
    let r = client::get(service.addr, "/users/7").unwrap();
    assert_eq!(r.status, 200);
    let request_id = r.request_id();
    let metrics = client::get(service.admin.expect("admin server"), "/metrics").unwrap();
    assert!(
        metrics.body.lines().any(
            |l| l.starts_with("http_server_request_duration_seconds_count")
                && l.contains(r#"http_route="/users/{id}""#)
                && l.ends_with(" 1")
        ),
        "{}",
        metrics.body
    );
    // Both outputs read to their end: the exit closed them.
    let (lines, stderr) = service.stop_json_and_stderr();
    // The exit flushed every span.
    let spans = otlp.wait_for_spans(1, Duration::from_secs(10));

    // obs' JSON lines, with the request's ids.
    let loaded = lines
        .iter()
        .find(|l| l["message"] == "user loaded")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(loaded["request_id"], request_id.as_str());
    assert_eq!(loaded["user.id"], 7);
    assert!(
        lines.iter().any(|l| l["message"] == "obs initialized"),
        "{lines:#?}"
    );
    // Its span, exported, in the trace the line names.
    let span = spans
        .iter()
        .find(|s| s.name == "GET /users/{id}")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(hex(&span.trace_id), loaded["trace_id"].as_str().unwrap());
    // The service's own layer: the same event, inside obs' request span.
    let text = stderr;
    let own = text
        .lines()
        .find(|l| l.contains("user loaded"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        own.contains("request{") && own.contains(&request_id),
        "{own}"
    );
}

#[test]
fn an_extra_layer_through_config() {
    check("with-layer");
}

#[test]
fn a_subscriber_the_service_builds_from_obs_layers() {
    check("into-layers");
}
