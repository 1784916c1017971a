//! `obs.job(..)` against real receivers on loopback (OTLP decoded with opentelemetry-proto, a
//! Sentry envelope endpoint): the CONSUMER span in the producer's trace or linked to it, the
//! job's fields on every line, exact counts per outcome (Ok, Err, panic, cancel), the job's own
//! Sentry hub, and bounded names.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use obs_testkit::receivers::{attributes, display, hex, Behavior, OtlpReceiver, SentryReceiver};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value;

fn count(page: &str, name: &str, error_type: Option<&str>) -> u64 {
    let error = error_type.map_or(String::new(), |e| format!("error_type=\"{e}\","));
    let series = format!(
        "messaging_process_duration_seconds_count{{{error}messaging_destination_name=\"{name}\",messaging_operation_name=\"process\",messaging_system=\"redis\"}} "
    );
    page.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.parse().unwrap())
}

#[derive(Debug)]
struct Declined;

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("card declined")
    }
}

fn explode() -> Result<(), Declined> {
    panic!("gateway exploded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_continues_the_producers_trace_and_counts_each_outcome() {
    let otlp = OtlpReceiver::start(Behavior::Ok);
    let sentry = SentryReceiver::start(Behavior::Ok);
    let obs = obs::test::init_with(
        obs::Config::new()
            .service_name("worker")
            .otlp_endpoint(otlp.endpoint())
            .sentry_dsn(sentry.dsn("k3y")),
    );

    // The producer: a span whose context goes into the job's headers.
    let producer = tracing::info_span!("POST /signup");
    let sent = producer.in_scope(obs::TraceContext::current);
    let headers = HashMap::from([("traceparent".to_owned(), sent.traceparent())]);

    let ok = obs
        .job("send_welcome_email")
        .system("redis")
        .id("job-1")
        .parent(&headers)
        .run(async {
            tracing::info!(to = "user@example.com", "email sent");
            Ok::<_, Declined>(7)
        })
        .await;
    assert_eq!(ok.unwrap(), 7);
    for i in 0..3 {
        let failed = obs
            .job("charge_card")
            .system("redis")
            .id(format!("charge-{i}"))
            .run(async {
                tokio::task::yield_now().await;
                Err::<(), _>(Declined)
            })
            .await;
        assert!(failed.is_err());
    }
    // A panic is recorded, then resumed: the caller sees it as without obs.
    let panicked = tokio::spawn(
        obs.job("charge_card")
            .system("redis")
            .id("charge-panic")
            .run(async { explode() }),
    )
    .await;
    assert!(panicked.unwrap_err().is_panic());
    // A job dropped before it finished (a timeout around it) is cancelled.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(20),
        obs.job("charge_card")
            .system("redis")
            .id("charge-slow")
            .run(std::future::pending::<Result<(), Declined>>()),
    )
    .await;
    assert!(cancelled.is_err());

    let page = obs.metrics_text();
    assert_eq!(count(&page, "send_welcome_email", None), 1, "{page}");
    assert_eq!(count(&page, "charge_card", Some("jobs::Declined")), 3);
    assert_eq!(count(&page, "charge_card", Some("panic")), 1);
    assert_eq!(count(&page, "charge_card", Some("cancelled")), 1);
    assert_eq!(count(&page, "charge_card", None), 0);

    // Every line inside a job carries its id, name and trace; the end line says how it went.
    let lines: Vec<Value> = obs
        .logs()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sent_line = lines
        .iter()
        .find(|l| l["message"] == "email sent")
        .expect("the job's own line");
    assert_eq!(sent_line["job_id"], "job-1");
    assert_eq!(sent_line["job_name"], "send_welcome_email");
    assert_eq!(sent_line["messaging.system"], "redis");
    assert_eq!(sent_line["trace_id"], sent.trace_id().as_str());
    let ends: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "job completed")
        .collect();
    assert_eq!(ends.len(), 6, "{ends:#?}");
    let failed_end = ends.iter().find(|l| l["job_id"] == "charge-0").unwrap();
    assert_eq!(failed_end["level"], "ERROR");
    assert_eq!(failed_end["error.type"], "jobs::Declined");
    assert_eq!(failed_end["error"], "card declined");
    let cancelled_end = ends.iter().find(|l| l["job_id"] == "charge-slow").unwrap();
    assert_eq!(cancelled_end["level"], "WARN");
    assert_eq!(cancelled_end["error.type"], "cancelled");

    obs.shutdown(Duration::from_secs(3));

    // The spans: CONSUMER, named `process <name>`, the first in the producer's trace.
    let spans = otlp.wait_for_spans(7, Duration::from_secs(5));
    let attrs = |s: &obs_testkit::receivers::Span| -> BTreeMap<String, String> {
        attributes(&s.attributes)
            .into_iter()
            .map(|(k, v)| (k, display(&v)))
            .collect()
    };
    let job = spans
        .iter()
        .find(|s| s.name == "process send_welcome_email")
        .expect("the job's span");
    assert_eq!(job.kind, SpanKind::Consumer as i32);
    assert_eq!(hex(&job.trace_id), sent.trace_id());
    assert_eq!(hex(&job.parent_span_id), sent.span_id());
    let a = attrs(job);
    assert_eq!(a["messaging.system"], "redis");
    assert_eq!(a["messaging.operation.name"], "process");
    assert_eq!(a["messaging.operation.type"], "process");
    assert_eq!(a["messaging.destination.name"], "send_welcome_email");
    assert_eq!(a["messaging.message.id"], "job-1");
    let failed = spans
        .iter()
        .find(|s| s.name == "process charge_card" && attrs(s)["messaging.message.id"] == "charge-0")
        .unwrap();
    assert_eq!(attrs(failed)["error.type"], "jobs::Declined");
    assert_eq!(
        failed.status.clone().unwrap_or_default().code,
        2,
        "status Error"
    );
    // A job without a producer starts its own trace.
    assert_ne!(hex(&failed.trace_id), sent.trace_id());

    // Sentry: one event per failed job (the panic by the panic integration is a global
    // integration, not installed by a test obs), tagged with the job.
    let events = sentry.wait_for_events(3, Duration::from_secs(5));
    let failures: Vec<&Value> = events
        .iter()
        .filter(|e| e["tags"]["job_name"] == "charge_card")
        .collect();
    assert_eq!(failures.len(), 3, "{events:#?}");
    let first = failures
        .iter()
        .find(|e| e["tags"]["job_id"] == "charge-0")
        .unwrap();
    assert_eq!(first["message"], "job charge_card failed");
    assert_eq!(first["exception"]["values"][0]["type"], "jobs::Declined");
    assert_eq!(first["exception"]["values"][0]["value"], "card declined");
    assert_eq!(first["tags"]["messaging.system"], "redis");
    assert_eq!(
        first["tags"]["trace_id"].as_str(),
        Some(hex(&failed.trace_id).as_str())
    );
}

#[tokio::test]
async fn an_error_the_job_reported_itself_is_not_reported_twice() {
    let sentry = SentryReceiver::start(Behavior::Ok);
    let obs = obs::test::init_with(obs::Config::new().sentry_dsn(sentry.dsn("k3y")));
    let _ = obs
        .job("import")
        .run(async {
            sentry::capture_message("row 7 is malformed", sentry::Level::Error);
            Err::<(), _>("import failed")
        })
        .await;
    // The shutdown flushed Sentry: every event sent has arrived.
    obs.shutdown(Duration::from_secs(3));
    let events = sentry.wait_for_events(1, Duration::from_secs(5));
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["message"], "row 7 is malformed");
    assert_eq!(events[0]["tags"]["job_name"], "import");
}

#[tokio::test]
async fn a_link_starts_a_new_trace_and_a_malformed_parent_is_said_once() {
    let otlp = OtlpReceiver::start(Behavior::Ok);
    let obs = obs::test::init_with(obs::Config::new().otlp_endpoint(otlp.endpoint()));
    let producer = tracing::info_span!("enqueue");
    let sent = producer.in_scope(obs::TraceContext::current);
    let headers = HashMap::from([("traceparent".to_owned(), sent.traceparent())]);
    obs.job("digest")
        .link(&headers)
        .run(async { Ok::<_, &str>(()) })
        .await
        .unwrap();
    let bad = HashMap::from([("traceparent".to_owned(), "00-zz-not-a-context".to_owned())]);
    for _ in 0..3 {
        obs.job("digest")
            .parent(&bad)
            .run(async { Ok::<_, &str>(()) })
            .await
            .unwrap();
    }
    let warnings = obs
        .logs()
        .iter()
        .filter(|l| l.contains("traceparent is malformed"))
        .count();
    assert_eq!(warnings, 1, "{:#?}", obs.logs());
    obs.shutdown(Duration::from_secs(3));
    let spans = otlp.wait_for_spans(4, Duration::from_secs(5));
    let linked = &spans[0];
    assert_eq!(linked.name, "process digest");
    assert_ne!(hex(&linked.trace_id), sent.trace_id(), "a trace of its own");
    assert!(linked.parent_span_id.is_empty());
    assert_eq!(linked.links.len(), 1);
    assert_eq!(hex(&linked.links[0].trace_id), sent.trace_id());
    assert_eq!(hex(&linked.links[0].span_id), sent.span_id());
    // Each malformed parent gave a new trace.
    let traces: std::collections::HashSet<String> =
        spans[1..].iter().map(|s| hex(&s.trace_id)).collect();
    assert_eq!(traces.len(), 3);
}

#[tokio::test]
async fn job_names_are_bounded() {
    let obs = obs::test::init_with(obs::Config::new().max_label_sets(100));
    let long = "x".repeat(10_000);
    obs.job(long.clone())
        .run(async { Ok::<_, &str>(()) })
        .await
        .unwrap();
    for i in 0..10_000 {
        obs.job(format!("job-{i}"))
            .run(async { Ok::<_, &str>(()) })
            .await
            .unwrap();
    }
    let page = obs.metrics_text();
    let name = format!(
        "messaging_destination_name=\"{}\"",
        "x".repeat(obs::job::MAX_JOB_TEXT_LEN)
    );
    assert!(page.contains(&name), "the long name, cut");
    assert!(!page.contains(&"x".repeat(obs::job::MAX_JOB_TEXT_LEN + 1)));
    let series = page
        .lines()
        .filter(|l| l.starts_with("messaging_process_duration_seconds_count"))
        .count();
    assert_eq!(series, 101, "100 names and _overflow");
    assert!(page.contains("messaging_destination_name=\"_overflow\""));
    let line = obs
        .logs()
        .into_iter()
        .find(|l| l.contains("job completed"))
        .unwrap();
    assert!(line.len() < 1_000, "{line}");
}
