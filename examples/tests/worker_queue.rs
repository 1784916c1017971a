//! Request -> Redis -> worker, as real processes on loopback: demo-service enqueues a welcome
//! email per `POST /signup` into a real `redis-server`; the `worker` binary runs each with
//! `obs.job(..)` and calls the mail provider with reqwest-tracing. One trace goes from the
//! request through the enqueue and the job to the outgoing call (decoded from OTLP); the
//! worker's lines carry the job id and the trace id; its metrics count successes, failures and
//! panics exactly; Sentry gets the failures with the job's tags; a failing job name fires
//! `HighJobFailureRate` in the collector; SIGTERM loses no job.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use obs_testkit::client;
use obs_testkit::process::{DemoService, RedisServer};
use obs_testkit::receivers::{
    attributes, display, hex, Behavior, HttpRecorder, OtlpReceiver, SentryReceiver, Span,
};
use obs_testkit::slack::{header, Slack};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";
const WAIT: Duration = Duration::from_secs(15);

fn signup(service: &DemoService, email: &str, traceparent: Option<&str>) -> String {
    let mut headers: Vec<(&str, &[u8])> = vec![("content-type", b"text/plain")];
    if let Some(tp) = traceparent {
        headers.push(("traceparent", tp.as_bytes()));
    }
    let r = client::post(service.addr, "/signup", &headers, email.as_bytes()).unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    r.body
        .trim()
        .strip_prefix("queued ")
        .unwrap_or_else(|| panic!("not queued: {}", r.body))
        .to_owned()
}

/// The worker's count of `send_welcome_email` runs that ended in `error_type` (`None`: ok).
fn runs(worker: &DemoService, error_type: Option<&str>) -> u64 {
    let page = client::get(worker.admin.unwrap(), "/metrics").unwrap().body;
    let error = error_type.map_or(String::new(), |e| format!("error_type=\"{e}\","));
    let series = format!(
        "messaging_process_duration_seconds_count{{{error}messaging_destination_name=\"send_welcome_email\",messaging_operation_name=\"process\",messaging_system=\"redis\"}} "
    );
    page.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.parse().unwrap())
}

fn attrs(span: &Span) -> HashMap<String, String> {
    attributes(&span.attributes)
        .into_iter()
        .map(|(k, v)| (k, display(&v)))
        .collect()
}

const ERROR_TYPE: &str = "obs_examples::jobs::JobError";

#[test]
fn a_signup_crosses_redis_into_the_worker_in_one_trace() {
    let redis = RedisServer::start().expect("redis-server (Debian's redis-server package)");
    let otlp = OtlpReceiver::start(Behavior::Ok);
    let sentry = SentryReceiver::start(Behavior::Ok);
    let mail = HttpRecorder::start();
    let (endpoint, dsn) = (otlp.endpoint(), sentry.dsn("jobkey"));
    let common = [
        ("REDIS_URL", redis.url.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("SENTRY_DSN", &dsn),
    ];
    let service = DemoService::start(
        env!("CARGO_BIN_EXE_demo-service").as_ref(),
        &[&common[..], &[("OTEL_SERVICE_NAME", "signup-api")]].concat(),
    )
    .unwrap();
    let mail_url = format!("{}/send", mail.url());
    let (worker, _) = DemoService::start_until(
        env!("CARGO_BIN_EXE_worker").as_ref(),
        &[
            &common[..],
            &[
                ("OTEL_SERVICE_NAME", "mailer"),
                ("DEMO_MAIL_URL", &mail_url),
            ],
        ]
        .concat(),
        "worker waiting for jobs",
    )
    .unwrap();

    // A process without routes of its own still has obs' admin server: the probes answer.
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            client::get(worker.admin.unwrap(), probe).unwrap().status,
            200,
            "{probe}"
        );
    }

    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let sent = signup(&service, "ada@example.com", Some(&traceparent));
    let bounced = signup(&service, "bounce@example.com", None);
    let panicked = signup(&service, "panic@example.com", None);
    obs_testkit::eventually(
        WAIT,
        || "three runs".into(),
        || {
            (runs(&worker, None) + runs(&worker, Some(ERROR_TYPE)) + runs(&worker, Some("panic"))
                == 3)
                .then_some(())
        },
    );
    assert_eq!(runs(&worker, None), 1);
    assert_eq!(runs(&worker, Some(ERROR_TYPE)), 1);
    assert_eq!(
        runs(&worker, Some("panic")),
        1,
        "the worker survived the panic"
    );

    // Jobs whose headers hold a malformed traceparent: new traces, said once.
    for i in 0..2 {
        let job = format!(
            r#"{{"id":"bad-{i}","name":"send_welcome_email","headers":{{"traceparent":"00-zz-not-a-context"}},"payload":{{"email":"grace@example.com"}}}}"#
        );
        assert_eq!(
            redis
                .command(&["LPUSH", obs_examples::queue::QUEUE_KEY, &job])
                .unwrap()
                .chars()
                .next(),
            Some(':')
        );
    }
    obs_testkit::eventually(
        WAIT,
        || "the malformed jobs".into(),
        || (runs(&worker, None) == 3).then_some(()),
    );

    // The trace: request -> enqueue -> job -> the mail provider. Each span read below ends
    // before one of the three waited for (a job's call before the job, the enqueue before the
    // request), so it was exported with it or before.
    let spans: Vec<Span> = obs_testkit::eventually(
        WAIT,
        || format!("spans missing: {:#?}", otlp.spans()),
        || {
            let spans: Vec<Span> = otlp.spans().into_iter().map(|(_, s)| s).collect();
            let job_of = |id: &str| {
                spans.iter().any(|s| {
                    s.name == "process send_welcome_email"
                        && attrs(s).get("messaging.message.id").map(String::as_str) == Some(id)
                })
            };
            let request = spans
                .iter()
                .any(|s| s.name == "POST /signup" && hex(&s.trace_id) == TRACE);
            (request && job_of(&sent) && job_of(&bounced)).then_some(spans)
        },
    );
    let find = |name: &str, trace: &str| {
        spans
            .iter()
            .find(|s| s.name == name && hex(&s.trace_id) == trace)
            .unwrap_or_else(|| panic!("no span {name:?} in trace {trace}: {spans:#?}"))
    };
    let server = find("POST /signup", TRACE);
    assert_eq!(server.kind, SpanKind::Server as i32);
    let producer = find("send send_welcome_email", TRACE);
    assert_eq!(producer.kind, SpanKind::Producer as i32);
    assert_eq!(producer.parent_span_id, server.span_id);
    let job = find("process send_welcome_email", TRACE);
    assert_eq!(job.kind, SpanKind::Consumer as i32);
    assert_eq!(
        job.parent_span_id, producer.span_id,
        "the job continues the enqueue"
    );
    let a = attrs(job);
    assert_eq!(a["messaging.system"], "redis");
    assert_eq!(a["messaging.destination.name"], "send_welcome_email");
    assert_eq!(a["messaging.operation.type"], "process");
    assert_eq!(a["messaging.message.id"], sent);
    let call = spans
        .iter()
        .find(|s| s.parent_span_id == job.span_id && s.kind == SpanKind::Client as i32)
        .expect("the job's outgoing call");
    assert_eq!(hex(&call.trace_id), TRACE);
    let propagated: Vec<String> = mail
        .requests()
        .iter()
        .filter_map(|h| h.get("traceparent")?.to_str().ok().map(str::to_owned))
        .collect();
    assert!(
        propagated
            .iter()
            .any(|tp| tp.starts_with(&format!("00-{TRACE}-{}", hex(&call.span_id)))),
        "the mail provider got the job's trace: {propagated:?}"
    );
    let failed = spans
        .iter()
        .find(|s| {
            s.name == "process send_welcome_email" && attrs(s)["messaging.message.id"] == bounced
        })
        .unwrap();
    assert_eq!(attrs(failed)["error.type"], ERROR_TYPE);
    assert_ne!(
        hex(&failed.trace_id),
        TRACE,
        "an untraced signup starts its own trace"
    );

    // Sentry: the bounce (one event from obs) and the panic (the panic integration), tagged.
    let events = sentry.wait_for_events(2, WAIT);
    let tagged = |id: &str| {
        events
            .iter()
            .find(|e| e["tags"]["job_id"] == id)
            .unwrap_or_else(|| panic!("no event for job {id}: {events:#?}"))
    };
    let bounce_event = tagged(&bounced);
    assert_eq!(bounce_event["message"], "job send_welcome_email failed");
    assert_eq!(bounce_event["tags"]["job_name"], "send_welcome_email");
    assert_eq!(
        bounce_event["tags"]["trace_id"].as_str(),
        Some(hex(&failed.trace_id).as_str())
    );
    let panic_event = tagged(&panicked);
    assert!(panic_event["exception"]
        .to_string()
        .contains("template renderer crashed"));
    assert_eq!(
        events
            .iter()
            .filter(|e| e["tags"]["job_id"] == bounced.as_str())
            .count(),
        1,
        "one event per failed job"
    );

    // SIGTERM with jobs waiting: the one in progress finishes, the rest stay in Redis.
    for i in 0..30 {
        signup(&service, &format!("user{i}@example.com"), None);
    }
    let lines = worker.stop_json();
    let left: u64 = redis
        .command(&["LLEN", obs_examples::queue::QUEUE_KEY])
        .unwrap()
        .trim_start_matches(':')
        .parse()
        .unwrap();
    let completed = |id: &str| {
        lines
            .iter()
            .filter(|l| l["message"] == "job completed" && l["job_id"] == id)
            .count()
    };
    let all_completed = lines
        .iter()
        .filter(|l| l["message"] == "job completed")
        .count() as u64;
    assert_eq!(
        all_completed + left,
        3 + 2 + 30,
        "no job lost: {left} left in Redis"
    );
    assert_eq!(completed(&sent), 1);

    // The worker's lines: the job's id, name and trace on each line inside the job.
    let email_line = lines
        .iter()
        .find(|l| l["message"] == "welcome email sent" && l["job_id"] == sent.as_str())
        .expect("the job's own line");
    assert_eq!(email_line["job_name"], "send_welcome_email");
    assert_eq!(email_line["trace_id"], TRACE);
    assert_eq!(email_line["span_id"], hex(&job.span_id));
    let bounced_end = lines
        .iter()
        .find(|l| l["message"] == "job completed" && l["job_id"] == bounced.as_str())
        .unwrap();
    assert_eq!(bounced_end["level"], "ERROR");
    assert_eq!(
        bounced_end["error"],
        "the mail provider refused the address"
    );
    let malformed = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("traceparent is malformed"))
        })
        .count();
    assert_eq!(malformed, 1, "said once");
    // The addresses (the jobs' payloads) are in no line of the worker and no Sentry event.
    let said = format!("{lines:?}{events:?}");
    assert!(!said.contains("@example.com"), "a job's payload leaked");
}

#[test]
fn a_failing_job_name_fires_high_job_failure_rate() {
    let redis = RedisServer::start().expect("redis-server (Debian's redis-server package)");
    let slack = Slack::start();
    let service = DemoService::start(
        env!("CARGO_BIN_EXE_demo-service").as_ref(),
        &[("REDIS_URL", &redis.url)],
    )
    .unwrap();
    let (worker, _) = DemoService::start_until(
        env!("CARGO_BIN_EXE_worker").as_ref(),
        &[("REDIS_URL", &redis.url), ("OTEL_SERVICE_NAME", "mailer")],
        "worker waiting for jobs",
    )
    .unwrap();
    let (_collector, dir) = obs_examples::demo_rules::start_collector(
        "jobs",
        vec![worker.admin.unwrap()],
        &[("SLACK_WEBHOOK_URL", &slack.url())],
    )
    .unwrap();
    // 1 signup in 3 bounces, 10 a second, until the alert fires (demo speed: 10 s windows).
    let deadline = Instant::now() + Duration::from_secs(60);
    let firing = obs_testkit::traffic::every(Duration::from_millis(100), |i| {
        assert!(Instant::now() < deadline, "HighJobFailureRate did not fire");
        let email = if i % 3 == 0 {
            "bounce@example.com".to_owned()
        } else {
            format!("u{i}@example.com")
        };
        signup(&service, &email, None);
        match slack
            .received()
            .into_iter()
            .map(|(_, m, _)| m)
            .find(|m| header(m).starts_with("FIRING: HighJobFailureRate"))
        {
            Some(m) => std::ops::ControlFlow::Break(m),
            None => std::ops::ControlFlow::Continue(()),
        }
    });
    let text = firing.to_string();
    assert_eq!(header(&firing), "FIRING: HighJobFailureRate — demo");
    assert!(text.contains("send_welcome_email jobs failed"), "{text}");
    assert!(text.contains("messaging_destination_name"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}
