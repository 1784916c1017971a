//! The demo service as a real process with OTLP and Sentry configured from the environment,
//! against real local receivers: Sentry events for errors and panics (tags, release,
//! environment, breadcrumbs, no request headers or cookies), spans sharing trace ids with the
//! logs and the Sentry events, and the OTEL_* variables the SDK itself does not read.

use std::time::Duration;

use obs_testkit::client::{self, Response};
use obs_testkit::process::DemoService;
use obs_testkit::receivers::{hex, Behavior, OtlpReceiver, SentryReceiver};
use serde_json::Value;

const KEY: &str = "s3cretpublickey";
const WAIT: Duration = Duration::from_secs(10);

fn start(env: &[(&str, &str)]) -> DemoService {
    DemoService::start(env!("CARGO_BIN_EXE_demo-service").as_ref(), env)
        .expect("demo-service starts")
}

fn line<'a>(lines: &'a [Value], request_id: &str, message: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["request_id"] == request_id && l["message"] == message)
        .unwrap_or_else(|| panic!("no {message:?} line for {request_id}"))
}

#[test]
fn errors_and_panics_reach_sentry_and_share_the_trace() {
    let sentry = SentryReceiver::start(Behavior::Ok);
    let otlp = OtlpReceiver::start(Behavior::Ok);
    let dsn = sentry.dsn(KEY);
    let endpoint = otlp.endpoint();
    let demo = start(&[
        ("OTEL_SERVICE_NAME", "demo"),
        ("SENTRY_DSN", &dsn),
        ("SENTRY_ENVIRONMENT", "staging"),
        ("SENTRY_RELEASE", "demo@9.9.9"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]);
    let secrets: &[(&str, &[u8])] = &[
        ("cookie", b"session=SECRETCOOKIE"),
        ("authorization", b"Bearer SECRETAUTH"),
    ];
    let fail = client::request(demo.addr, "GET", "/fail?card=4111111111111111", secrets).unwrap();
    assert_eq!(fail.status, 500);
    let panic = client::get(demo.addr, "/panic").unwrap();
    assert_eq!(panic.status, 500);
    let ok = client::get(demo.addr, "/users/7").unwrap();
    assert_eq!(ok.status, 200);
    let events = sentry.wait_for_events(2, WAIT);
    // The exit flushed every span.
    let lines = demo.stop_json();
    let spans = otlp.wait_for_spans(4, WAIT);

    // Exactly one event per server error, none for the 200.
    assert_eq!(events.len(), 2, "{events:#?}");
    let by_request = |r: &Response| {
        let id = r.request_id();
        events
            .iter()
            .find(|e| e["tags"]["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no event for {id}: {events:#?}"))
    };

    let event = by_request(&fail);
    assert_eq!(event["message"], "simulated failure");
    // `error` is Sentry's default level: the crate leaves it out.
    assert!(matches!(event["level"].as_str(), None | Some("error")));
    assert_eq!(event["release"], "demo@9.9.9");
    assert_eq!(event["environment"], "staging");
    assert_eq!(event["tags"]["http.route"], "/fail");
    assert_eq!(event["request"]["method"], "GET");
    let url = event["request"]["url"].as_str().unwrap();
    assert!(url.ends_with("/fail") && !url.contains('?'), "{url}");
    let crumbs = event["breadcrumbs"]["values"].as_array().unwrap();
    assert!(
        crumbs.iter().any(
            |c| c["message"] == "payment provider is slow: retrying once"
                && c["level"] == "warning"
        ),
        "{crumbs:#?}"
    );
    // The trace id joins the Sentry event, the log lines and the exported span.
    let log = line(&lines, &fail.request_id(), "simulated failure");
    assert_eq!(event["tags"]["trace_id"], log["trace_id"]);
    assert_eq!(event["contexts"]["trace"]["span_id"], log["span_id"]);
    let span = spans
        .iter()
        .find(|s| s.name == "GET /fail")
        .expect("the /fail span");
    assert_eq!(hex(&span.trace_id), log["trace_id"].as_str().unwrap());
    assert_eq!(span.status.clone().unwrap().code, 2, "status Error");

    let event = by_request(&panic);
    assert_eq!(event["level"], "fatal");
    assert_eq!(event["exception"]["values"][0]["type"], "panic");
    assert!(event["exception"]["values"][0]["value"]
        .as_str()
        .unwrap()
        .contains("simulated panic"));
    assert_eq!(event["tags"]["http.route"], "/panic");
    let log = line(&lines, &panic.request_id(), "request completed");
    assert_eq!(event["tags"]["trace_id"], log["trace_id"]);

    // No headers, cookies or query strings were sent; the DSN key only in the auth header.
    for envelope in sentry.envelopes() {
        let envelope = envelope.expect("well-formed envelope");
        for secret in [
            "SECRETCOOKIE",
            "SECRETAUTH",
            "4111111111111111",
            "\"cookies\"",
            "\"headers\"",
        ] {
            assert!(!envelope.raw.contains(secret), "{secret} sent to Sentry");
        }
        assert!(envelope.auth.contains(&format!("sentry_key={KEY}")));
    }
    let stdout = lines.iter().map(Value::to_string).collect::<String>();
    assert!(!stdout.contains(KEY), "the DSN key was printed");
    let started = lines
        .iter()
        .find(|l| l["message"] == "obs initialized")
        .unwrap();
    assert!(started["sentry"].as_str().unwrap().contains("***@"));
}

#[test]
fn a_server_error_without_an_error_log_is_reported_once() {
    let sentry = SentryReceiver::start(Behavior::Ok);
    let obs = obs::test::init_with(obs::Config::new().sentry_dsn(sentry.dsn(KEY)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = axum::Router::new()
            .route(
                "/quiet/{id}",
                axum::routing::get(|| async { axum::http::StatusCode::BAD_GATEWAY }),
            )
            .route(
                "/missing",
                axum::routing::get(|| async { axum::http::StatusCode::NOT_FOUND }),
            )
            .layer(obs.layer());
        let addr = obs_testkit::serve(app).await;
        let statuses = tokio::task::spawn_blocking(move || {
            [
                client::get(addr, "/quiet/1").unwrap().status,
                client::get(addr, "/missing").unwrap().status,
            ]
        })
        .await
        .unwrap();
        assert_eq!(statuses, [502, 404]);
    });
    obs.shutdown(Duration::from_secs(2));
    let events = sentry.wait_for_events(1, WAIT);
    assert_eq!(
        events.len(),
        1,
        "one event for the 502, none for the 404: {events:#?}"
    );
    assert_eq!(events[0]["message"], "HTTP 502 from GET /quiet/{id}");
    assert_eq!(events[0]["tags"]["http.route"], "/quiet/{id}");
}

#[test]
fn otel_variables_the_sdk_does_not_read_are_honoured() {
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let tp: &[(&str, &[u8])] = &[("traceparent", incoming.as_bytes())];

    // OTEL_PROPAGATORS=none: the incoming trace is not continued. OTEL_SDK_DISABLED: no export.
    let otlp = OtlpReceiver::start(Behavior::Ok);
    let endpoint = otlp.endpoint();
    let demo = start(&[
        ("OTEL_PROPAGATORS", "none"),
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]);
    let r = client::request(demo.addr, "GET", "/users/1", tp).unwrap();
    let lines = demo.stop_json();
    let log = line(&lines, &r.request_id(), "request completed");
    assert_ne!(log["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(log["trace_id"].as_str().unwrap().len(), 32);
    assert!(
        otlp.requests().is_empty(),
        "OTEL_SDK_DISABLED exported spans"
    );

    // gRPC with the default propagators: the trace is continued and exported.
    let demo = start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]);
    let r = client::request(demo.addr, "GET", "/users/1", tp).unwrap();
    let lines = demo.stop_json();
    let spans = otlp.wait_for_spans(2, WAIT);
    let log = line(&lines, &r.request_id(), "request completed");
    assert_eq!(log["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let server = spans.iter().find(|s| s.name == "GET /users/{id}").unwrap();
    assert_eq!(hex(&server.span_id), log["span_id"].as_str().unwrap());
    assert!(otlp.requests().iter().all(|r| r.protocol == "grpc"));

    // OTEL_TRACES_SAMPLER=always_off: ids in the logs, flags 00, nothing exported.
    let quiet = OtlpReceiver::start(Behavior::Ok);
    let endpoint = quiet.endpoint();
    let demo = start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_TRACES_SAMPLER", "always_off"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]);
    let r = client::get(demo.addr, "/users/1").unwrap();
    let lines = demo.stop_json();
    assert_eq!(
        line(&lines, &r.request_id(), "request completed")["trace_flags"],
        "00"
    );
    assert!(quiet.requests().is_empty());
}
