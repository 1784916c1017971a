//! OTLP export end to end: a real axum server with `obs.layer()`, a real OTLP receiver on
//! loopback that decodes the protobuf with `opentelemetry-proto`, over http/protobuf and gRPC.
//! The ids on the log lines are compared with the decoded spans.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use obs::trace::{Protocol, Sampler};
use obs_testkit::client;
use obs_testkit::receivers::{attributes, display, hex, Behavior, OtlpReceiver, Span};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use tracing::Instrument;

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn app(obs: &obs::Obs) -> Router {
    Router::new()
        .route(
            "/users/{id}",
            get(|| async {
                async { tracing::info!(rows = 1, "row fetched") }
                    .instrument(tracing::info_span!("db.query", db.system = "postgresql"))
                    .await;
                "user"
            }),
        )
        .route(
            "/fail",
            get(|| async {
                tracing::error!("boom");
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no")
            }),
        )
        .layer(obs.layer())
}

async fn get_with(
    addr: SocketAddr,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
) -> client::Response {
    tokio::task::spawn_blocking(move || {
        let h: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        client::request(addr, "GET", path, &h).unwrap()
    })
    .await
    .unwrap()
}

fn attrs(span: &Span) -> BTreeMap<String, String> {
    attributes(&span.attributes)
        .into_iter()
        .map(|(k, v)| (k, display(&v)))
        .collect()
}

fn line_with(lines: &[String], message: &str) -> serde_json::Value {
    let line = lines
        .iter()
        .find(|l| l.contains(message))
        .unwrap_or_else(|| panic!("no line with {message:?} in {lines:#?}"));
    serde_json::from_str(line).unwrap()
}

async fn export_round_trip(protocol: Protocol) {
    let receiver = OtlpReceiver::start(Behavior::Ok);
    let obs = obs::test::init_with(
        obs::Config::new()
            .service_name("checkout")
            .service_version("1.2.3")
            .otlp_endpoint(receiver.endpoint())
            .otlp_protocol(protocol),
    );
    let addr = obs_testkit::serve(app(&obs)).await;
    let traceparent = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    let ok = get_with(
        addr,
        "/users/42",
        vec![
            ("traceparent", traceparent),
            ("tracestate", "congo=t61rcWkgMzE".into()),
        ],
    )
    .await;
    assert_eq!(ok.status, 200);
    let failed = get_with(addr, "/fail", vec![]).await;
    assert_eq!(failed.status, 500);
    let missing = get_with(addr, "/nope", vec![]).await;
    assert_eq!(missing.status, 404);
    let started = std::time::Instant::now();
    obs.shutdown(Duration::from_secs(2)); // flushes the batch
    assert!(started.elapsed() < Duration::from_secs(2));

    let requests = receiver.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.protocol, protocol.as_str());
        if protocol == Protocol::Grpc {
            assert_eq!(r.version, axum::http::Version::HTTP_2);
            assert_eq!(r.headers["content-type"], "application/grpc");
        }
    }
    let all = receiver.spans();
    let resource = &all[0].0;
    assert_eq!(resource["service.name"], "checkout");
    assert_eq!(resource["service.version"], "1.2.3");
    assert_eq!(resource["telemetry.sdk.name"], "opentelemetry");
    let spans: Vec<Span> = all.into_iter().map(|(_, s)| s).collect();
    assert_eq!(spans.len(), 4, "3 server spans and 1 child: {spans:#?}");
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name}"))
    };

    // The server span: name, kind, semconv attributes, parent and tracestate from the caller.
    let server = find("GET /users/{id}");
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(hex(&server.trace_id), PARENT_TRACE);
    assert_eq!(hex(&server.parent_span_id), PARENT_SPAN);
    assert_eq!(server.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(server.flags & 0x3ff, 0x301, "sampled, remote parent");
    let a = attrs(server);
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["http.route"], "/users/{id}");
    assert_eq!(a["url.path"], "/users/42");
    assert_eq!(a["url.scheme"], "http");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(a["request.id"], ok.header("x-request-id").unwrap());
    assert!(matches!(
        attributes(&server.attributes)["http.response.status_code"],
        obs_testkit::receivers::AnyValue::IntValue(200)
    ));
    assert_eq!(
        server.status.clone().unwrap_or_default().code,
        StatusCode::Unset as i32
    );
    assert!(
        server.end_time_unix_nano >= server.start_time_unix_nano && server.start_time_unix_nano > 0
    );

    // The handler's span is its child.
    let child = find("db.query");
    assert_eq!(child.kind, SpanKind::Internal as i32);
    assert_eq!(child.trace_id, server.trace_id);
    assert_eq!(child.parent_span_id, server.span_id);
    assert_eq!(attrs(child)["db.system"], "postgresql");

    // 5xx: status Error; 404 (no route): named by method only, status unset.
    let fail = find("GET /fail");
    assert_eq!(fail.status.clone().unwrap().code, StatusCode::Error as i32);
    assert_eq!(attrs(fail)["error.type"], "500");
    assert!(fail.parent_span_id.is_empty(), "a new trace: no parent");
    let nope = find("GET");
    assert_eq!(
        nope.status.clone().unwrap_or_default().code,
        StatusCode::Unset as i32
    );
    assert!(!attrs(nope).contains_key("http.route"));

    // Log lines carry the ids of the innermost span, equal to the exported ones.
    let lines = obs.logs();
    let in_child = line_with(&lines, "row fetched");
    assert_eq!(in_child["trace_id"], hex(&child.trace_id));
    assert_eq!(in_child["span_id"], hex(&child.span_id));
    assert_eq!(in_child["trace_flags"], "01");
    assert_eq!(in_child["request_id"], ok.header("x-request-id").unwrap());
    let completed: Vec<serde_json::Value> = lines
        .iter()
        .filter(|l| l.contains("request completed"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (line, span) in completed.iter().zip([server, fail, nope]) {
        assert_eq!(line["trace_id"], hex(&span.trace_id));
        assert_eq!(line["span_id"], hex(&span.span_id));
    }
    let boom = line_with(&lines, "boom");
    assert_eq!(boom["span_id"], hex(&fail.span_id));
}

#[tokio::test]
async fn http_protobuf_export_matches_the_logs() {
    export_round_trip(Protocol::HttpProtobuf).await;
}

#[tokio::test]
async fn grpc_export_matches_the_logs() {
    export_round_trip(Protocol::Grpc).await;
}

#[tokio::test]
async fn unsampled_traces_keep_ids_in_logs_but_export_nothing() {
    let receiver = OtlpReceiver::start(Behavior::Ok);
    let obs = obs::test::init_with(
        obs::Config::new()
            .otlp_endpoint(receiver.endpoint())
            .sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn))),
    );
    let addr = obs_testkit::serve(app(&obs)).await;
    // The caller did not sample: parent-based sampling follows it.
    let unsampled = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-00");
    assert_eq!(
        get_with(addr, "/users/1", vec![("traceparent", unsampled)])
            .await
            .status,
        200
    );
    obs.shutdown(Duration::from_secs(2));
    assert!(receiver.spans().is_empty());
    let line = line_with(&obs.logs(), "row fetched");
    assert_eq!(line["trace_id"], PARENT_TRACE);
    assert_eq!(line["trace_flags"], "00");

    let receiver = OtlpReceiver::start(Behavior::Ok);
    let obs = obs::test::init_with(
        obs::Config::new()
            .otlp_endpoint(receiver.endpoint())
            .sampler(Sampler::AlwaysOff),
    );
    let addr = obs_testkit::serve(app(&obs)).await;
    assert_eq!(get_with(addr, "/users/1", vec![]).await.status, 200);
    obs.shutdown(Duration::from_secs(2));
    assert!(receiver.spans().is_empty());
    let line = line_with(&obs.logs(), "row fetched");
    assert_eq!(line["trace_id"].as_str().unwrap().len(), 32);
    assert_eq!(line["trace_flags"], "00");
}
