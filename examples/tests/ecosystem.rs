//! A user's service calls the ecosystem's crates next to obs: reqwest-middleware with
//! reqwest-tracing for outgoing calls, `opentelemetry::global::tracer`, `otel.*` span fields,
//! the Sentry API (`sentry::capture_error`), `error!(error = &e as &dyn Error)` and the `log`
//! crate. The demo
//! service runs as a real process (obs installed by `obs::init()`) against local OTLP and Sentry
//! receivers; these tests check that the crates see the request's context and that what they
//! send carries the request's ids.

use std::collections::HashMap;
use std::time::Duration;

use obs_testkit::client;
use obs_testkit::process::DemoService;
use obs_testkit::receivers::{attributes, display, hex, Behavior, OtlpReceiver, SentryReceiver};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};

const WAIT: Duration = Duration::from_secs(10);

fn start(env: &[(&str, &str)]) -> DemoService {
    DemoService::start(env!("CARGO_BIN_EXE_demo-service").as_ref(), env)
        .expect("demo-service starts")
}

/// A Sentry receiver, and the demo service reporting to it (plus `env`).
fn start_with_sentry(env: &[(&str, &str)]) -> (SentryReceiver, DemoService) {
    let sentry = SentryReceiver::start(Behavior::Ok);
    let dsn = sentry.dsn("ecokey");
    let demo = start(&[&[("SENTRY_DSN", dsn.as_str())], env].concat());
    (sentry, demo)
}

fn attrs(span: &Span) -> HashMap<String, String> {
    attributes(&span.attributes)
        .iter()
        .map(|(k, v)| (k.clone(), display(v)))
        .collect()
}

#[test]
fn reqwest_tracing_and_the_opentelemetry_api_continue_the_request_trace() {
    let otlp = OtlpReceiver::start(Behavior::Ok);
    let endpoint = otlp.endpoint();
    let common = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let downstream = start(&[&common[..], &[("OTEL_SERVICE_NAME", "inventory")]].concat());
    let url = format!("http://{}", downstream.addr);
    let upstream = start(
        &[
            &common[..],
            &[
                ("OTEL_SERVICE_NAME", "checkout"),
                ("DEMO_DOWNSTREAM_URL", url.as_str()),
            ],
        ]
        .concat(),
    );
    let r = client::get(upstream.addr, "/checkout").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("downstream answered 200"), "{r:?}");
    // SERVER, checkout.reserve, price.lookup, audit.write, the CLIENT span, the downstream SERVER
    // and its db.query child.
    let up_lines = upstream.stop_json();
    let down_lines = downstream.stop_json();
    // Both exits flushed every span.
    let spans = otlp.wait_for_spans(7, WAIT);

    let find = |name: &str| -> &Span {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no span {name:?} in {:#?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let server = find("GET /checkout");
    let handler = find("checkout.reserve");
    let client_span = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .expect("reqwest-tracing's CLIENT span");
    let downstream_server = find("GET /users/{id}");

    // SERVER -> INTERNAL -> CLIENT -> downstream SERVER, one trace.
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(handler.kind, SpanKind::Internal as i32);
    assert_eq!(handler.parent_span_id, server.span_id);
    assert_eq!(client_span.parent_span_id, handler.span_id);
    assert_eq!(downstream_server.kind, SpanKind::Server as i32);
    assert_eq!(downstream_server.parent_span_id, client_span.span_id);
    for span in [handler, client_span, downstream_server] {
        assert_eq!(span.trace_id, server.trace_id, "{}", span.name);
    }

    // The trace id the downstream received is the one on the handler's log lines.
    let reserving = up_lines
        .iter()
        .find(|l| l["message"] == "reserving stock")
        .expect("the handler's line");
    assert_eq!(reserving["trace_id"], hex(&server.trace_id));
    assert_eq!(reserving["span_id"], hex(&handler.span_id));
    assert_eq!(reserving["request_id"], r.request_id());
    let received = down_lines
        .iter()
        .find(|l| l["message"] == "request completed" && l["http.route"] == "/users/{id}")
        .expect("the downstream request");
    assert_eq!(received["trace_id"], hex(&server.trace_id));

    // A span made with `opentelemetry::global::tracer` is a child of the handler's span.
    let priced = find("price.lookup");
    assert_eq!(priced.parent_span_id, handler.span_id);
    assert_eq!(priced.trace_id, server.trace_id);
    // `otel.name`, `otel.kind` and `otel.status_code` are honoured, not exported as attributes.
    let audit = find("audit.write");
    assert_eq!(audit.kind, SpanKind::Producer as i32);
    assert_eq!(audit.status.clone().unwrap().code, StatusCode::Error as i32);
    assert!(
        attrs(audit).keys().all(|k| !k.starts_with("otel.")),
        "{:?}",
        attrs(audit)
    );
    assert!(attrs(server).keys().all(|k| !k.starts_with("otel.")));
}

#[test]
fn the_sentry_api_inside_a_handler_reports_with_the_request() {
    let (sentry, demo) = start_with_sentry(&[("OTEL_SERVICE_NAME", "shop")]);
    let r = client::get(demo.addr, "/report").unwrap();
    assert_eq!(r.status, 200);
    let events = sentry.wait_for_events(2, WAIT);
    let lines = demo.stop_json();
    assert_eq!(events.len(), 2, "{events:#?}");
    let trace_id = lines
        .iter()
        .find(|l| l["message"] == "checkout failed")
        .expect("the error line")["trace_id"]
        .clone();
    for event in &events {
        assert_eq!(event["tags"]["request_id"], r.request_id(), "{event:#}");
        assert_eq!(event["tags"]["http.route"], "/report");
        assert_eq!(event["tags"]["trace_id"], trace_id);
        assert_eq!(event["tags"]["service.name"], "shop");
        assert_eq!(event["contexts"]["trace"]["trace_id"], trace_id);
        let exceptions = event["exception"]["values"].as_array().expect("exception");
        assert!(
            exceptions.iter().any(|e| e["type"] == "PaymentDeclined"),
            "{exceptions:#?}"
        );
    }
    // `error!(error = &e as &dyn Error)`: the source chain travels too (cause first).
    let logged = events
        .iter()
        .find(|e| e["logger"] == "demo_service")
        .expect("the event of the error! line");
    let chain: Vec<&str> = logged["exception"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["value"].as_str())
        .collect();
    assert!(
        chain.contains(&"card expired") && chain.contains(&"payment declined"),
        "{chain:?}"
    );
}

#[test]
fn log_records_inside_a_handler_carry_the_request_and_reach_sentry() {
    let (sentry, demo) = start_with_sentry(&[]);
    let r = client::get(demo.addr, "/legacy").unwrap();
    assert_eq!(r.status, 200);
    let lines = demo.stop_json(); // flushes Sentry before exiting
    let events = sentry.wait_for_events(1, WAIT);
    let logged: Vec<_> = lines
        .iter()
        .filter(|l| l["target"] == "legacy_billing")
        .collect();
    assert_eq!(logged.len(), 2, "{lines:#?}");
    let error = logged
        .iter()
        .find(|l| l["level"] == "ERROR")
        .expect("the error line");
    assert_eq!(error["message"], "invoice 42 could not be sent");
    assert_eq!(error["request_id"], r.request_id());
    let trace_id = error["trace_id"].as_str().expect("a trace id");
    // One Sentry event (the error; the warning is its breadcrumb), with the request's tags.
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["tags"]["request_id"], r.request_id(), "{event:#}");
    assert_eq!(event["tags"]["trace_id"], trace_id);
    assert_eq!(event["message"], "invoice 42 could not be sent");
    let crumbs = event["breadcrumbs"]["values"]
        .as_array()
        .expect("breadcrumbs");
    assert!(
        crumbs.iter().any(|c| c["message"] == "retrying invoice 42"),
        "{crumbs:#?}"
    );
}

#[test]
fn a_panic_reaches_sentry_with_its_stack_frames() {
    let (sentry, demo) = start_with_sentry(&[]);
    let r = client::get(demo.addr, "/panic").unwrap();
    assert_eq!(r.status, 500);
    let events = sentry.wait_for_events(1, WAIT);
    let _ = demo.stop_json();
    assert_eq!(events.len(), 1, "one event for the panic: {events:#?}");
    let event = &events[0];
    assert_eq!(event["level"], "fatal");
    assert_eq!(event["tags"]["request_id"], r.request_id());
    let exception = &event["exception"]["values"][0];
    assert!(exception["value"]
        .as_str()
        .unwrap()
        .contains("simulated panic"));
    let frames = exception["stacktrace"]["frames"]
        .as_array()
        .expect("frames");
    assert!(frames.len() >= 3, "{frames:#?}");
    assert!(
        frames.iter().any(|f| f["function"]
            .as_str()
            .is_some_and(|name| name.contains("panicking_handler"))),
        "the handler's frame: {frames:#?}"
    );
}

#[test]
fn concurrent_requests_keep_their_own_breadcrumbs() {
    let (sentry, demo) = start_with_sentry(&[]);
    let addr = demo.addr;
    let clients: Vec<_> = ["alpha", "beta"]
        .into_iter()
        .map(|tag| {
            std::thread::spawn(move || client::get(addr, &format!("/steps?tag={tag}")).unwrap())
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().status, 200);
    }
    let events = sentry.wait_for_events(2, WAIT);
    let _ = demo.stop_json();
    assert_eq!(events.len(), 2, "{events:#?}");
    for event in &events {
        let message = event["message"].as_str().unwrap();
        let (own, other) = if message.contains("alpha") {
            ("alpha", "beta")
        } else {
            ("beta", "alpha")
        };
        let crumbs: Vec<&str> = event["breadcrumbs"]["values"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["message"].as_str())
            .collect();
        assert!(
            crumbs.contains(&format!("first step of {own}").as_str())
                && crumbs.contains(&format!("second step of {own}").as_str()),
            "{crumbs:?}"
        );
        assert!(
            crumbs.iter().all(|c| !c.contains(other)),
            "{own}'s event: {crumbs:?}"
        );
    }
}
