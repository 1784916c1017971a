//! The whole mission, end to end, as real processes on loopback: the demo service (obs with OTLP
//! and Sentry pointed at local receivers), obs-collector with the demo-speed rules posting to a
//! Slack stand-in, and the demo's traffic (healthy -> 30% errors -> healthy -> 20% at 3 s ->
//! healthy). Asserts the Slack messages (one firing and one resolved per incident, in order,
//! with the right values), that the logs' request ids are the response headers', and that every
//! 5xx has a Sentry event and an Error span sharing its log line's trace id.
//!
//! The demo rule file is `alerts/obs-red.rules.yml` with durations shortened and nothing else
//! changed (checked by `demo_rules`' test); the real timings are checked against promtool in
//! obs-collector's differential test.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use obs_testkit::process::{sibling_binary, DemoService};
use obs_testkit::receivers::{hex, Behavior, OtlpReceiver, SentryReceiver};
use obs_testkit::slack::{assert_block_kit, header, Slack};
use obs_testkit::traffic;
use serde_json::Value;

/// The number in a Slack message's "*Value*" field (`0.304` or `30.4%` -> 0.304, `3.75s` ->
/// 3.75).
fn value_field(m: &Value) -> f64 {
    let fields = obs_testkit::slack::blocks(m).unwrap()[2]["fields"]
        .as_array()
        .expect("a fields section");
    let text = fields[0]["text"].as_str().unwrap();
    let value = text
        .strip_prefix("*Value*\n")
        .expect("the value field first");
    let number: String = value
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let n: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("no number in {value:?}"));
    if value[number.len()..].starts_with('%') {
        n / 100.0
    } else {
        n
    }
}

#[test]
fn service_collector_and_slack_end_to_end() {
    let collector_bin = sibling_binary("obs-collector");
    assert!(
        collector_bin.exists(),
        "{} is missing: run the workspace's tests (`cargo test --workspace`), which build it",
        collector_bin.display()
    );
    let otlp = OtlpReceiver::start(Behavior::Ok);
    let sentry = SentryReceiver::start(Behavior::Ok);
    let slack = Slack::start();
    let (endpoint, dsn) = (otlp.endpoint(), sentry.dsn("e2ekey"));
    let mut service = DemoService::start(
        env!("CARGO_BIN_EXE_demo-service").as_ref(),
        &[
            ("OTEL_SERVICE_NAME", "demo"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "500"),
            ("SENTRY_DSN", &dsn),
            ("SENTRY_ENVIRONMENT", "e2e"),
        ],
    )
    .unwrap();
    let admin = service.admin.expect("admin address");

    let (collector, dir) = obs_examples::demo_rules::start_collector(
        "e2e",
        vec![admin],
        &[("SLACK_WEBHOOK_URL", &slack.url())],
    )
    .unwrap();

    let sent = traffic::drive(service.addr, &AtomicBool::new(false));
    let messages = slack.wait_delivered(4, Duration::from_secs(60));
    // Nothing more may arrive: three more evaluations dispatch whatever they would send.
    collector.wait_evaluations(3);

    // Every link of every firing message opens, on the collector itself (no Grafana set).
    for m in messages.iter().filter(|m| header(m).starts_with("FIRING")) {
        let buttons = obs_testkit::slack::buttons(m);
        let names: Vec<&str> = buttons.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Runbook", "Dashboard", "Silence 1h"], "{m}");
        for (name, url) in &buttons {
            let rest = url
                .strip_prefix(&format!("http://{}", collector.addr))
                .unwrap_or_else(|| panic!("{name}: {url} is not the collector's"));
            let (path, fragment) = match rest.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (rest, None),
            };
            let page = obs_testkit::client::get(collector.addr, path).unwrap();
            assert_eq!(page.status, 200, "{name}: {url}");
            if let Some(anchor) = fragment {
                assert!(
                    page.body.contains(&format!("id=\"{anchor}\"")),
                    "{name}: no #{anchor} at {url}"
                );
            }
        }
    }
    drop(collector);

    // Slack: one firing and one resolved message per incident, in order, valid Block Kit.
    let received = slack.received();
    assert_eq!(received.len(), 4, "{received:#?}");
    assert!(received.iter().all(|r| r.2 == Some(200)));
    for m in &messages {
        assert_block_kit(m);
    }
    let headers: Vec<String> = messages.iter().map(header).collect();
    assert_eq!(headers, obs_examples::demo_rules::STORY_HEADERS);
    let error_rate = value_field(&messages[0]);
    assert!(
        (0.2..=0.45).contains(&error_rate),
        "error rate {error_rate} for 30% failures"
    );
    let p95 = value_field(&messages[2]);
    assert!(
        (2.0..=5.0).contains(&p95),
        "p95 {p95}s for 20% of requests at 3 s"
    );

    // Stop the service (SIGTERM): it flushes logs, spans and Sentry events.
    service.terminate().unwrap();
    assert!(service
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
    let lines: Vec<Value> = service
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let completed: HashMap<&str, &Value> = lines
        .iter()
        .filter(|l| l["message"] == "request completed")
        .filter_map(|l| Some((l["request_id"].as_str()?, l)))
        .collect();

    // Every response's request id is the one in the service's completion line for that path.
    assert!(sent.len() > 1500, "{} requests", sent.len());
    for s in &sent {
        let id = s.request_id.as_deref().expect("every request was answered");
        let line = completed
            .get(id)
            .unwrap_or_else(|| panic!("no log line for request {id} ({})", s.path));
        let path = s.path.split('?').next().unwrap();
        assert_eq!(line["url.path"], path);
        assert_eq!(line["http.response.status_code"], s.status.unwrap());
    }

    // Every 5xx: one Sentry event and one Error span, sharing the log line's trace id.
    let failed: Vec<&str> = sent
        .iter()
        .filter(|s| s.status.unwrap() >= 500)
        .map(|s| s.request_id.as_deref().unwrap())
        .collect();
    assert!(failed.len() > 100, "{} failures", failed.len());
    let events = sentry.wait_for_events(failed.len(), Duration::from_secs(10));
    let spans = otlp.wait_for_spans(sent.len(), Duration::from_secs(10));
    let event_of: HashMap<&str, &Value> = events
        .iter()
        .filter_map(|e| Some((e["tags"]["request_id"].as_str()?, e)))
        .collect();
    let span_of: HashMap<String, _> = spans
        .iter()
        .filter(|s| s.name.starts_with("GET "))
        .map(|s| (hex(&s.trace_id), s))
        .collect();
    assert_eq!(
        events.len(),
        failed.len(),
        "exactly one Sentry event per 5xx"
    );
    // Each firing message names an example trace (the exemplars of the series its alert
    // reads): an exported request that shows the alert's cause.
    let failing = span_of
        .get(&obs_testkit::slack::example_trace(&messages[0]))
        .expect("HighErrorRate's example trace was exported");
    assert_eq!(
        failing.status.clone().unwrap_or_default().code,
        2,
        "status Error"
    );
    let status = obs_testkit::receivers::attributes(&failing.attributes)
        .get("http.response.status_code")
        .map(obs_testkit::receivers::display);
    assert_eq!(status.as_deref(), Some("500"), "{failing:?}");
    let slow = span_of
        .get(&obs_testkit::slack::example_trace(&messages[2]))
        .expect("HighLatencyP95's example trace was exported");
    let took = slow.end_time_unix_nano - slow.start_time_unix_nano;
    assert!(
        took > 2_000_000_000,
        "HighLatencyP95's example took {took} ns"
    );
    for id in failed {
        let trace_id = completed[id]["trace_id"].as_str().unwrap();
        let event = event_of
            .get(id)
            .unwrap_or_else(|| panic!("no Sentry event for {id}"));
        assert_eq!(event["tags"]["trace_id"], trace_id);
        assert_eq!(event["environment"], "e2e");
        let span = span_of
            .get(trace_id)
            .unwrap_or_else(|| panic!("no span for trace {trace_id}"));
        assert_eq!(span.name, "GET /fail");
        assert_eq!(
            span.status.clone().unwrap_or_default().code,
            2,
            "status Error"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
