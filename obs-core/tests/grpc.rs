//! A real tonic server behind `obs.layer()`: gRPC answers every call with HTTP 200, so obs
//! classifies by `grpc-status` (tower-http's gRPC classifier), from the headers of a
//! trailers-only error (`Status::internal`) or from the trailers of a successful stream.

use std::time::Duration;

use obs_testkit::exposition::samples;
use obs_testkit::receivers::{attributes, display, Behavior, OtlpReceiver};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};

/// Fails empty requests with `Status::internal`, accepts the others.
struct Picky;

#[tonic::async_trait]
impl TraceService for Picky {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if request.get_ref().resource_spans.is_empty() {
            Err(tonic::Status::internal("nothing to export"))
        } else {
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }
}

#[test]
fn grpc_errors_count_as_failures_and_ok_as_success() {
    let otlp = OtlpReceiver::start(Behavior::Ok);
    let obs = obs::test::init_with(obs::Config::new().otlp_endpoint(otlp.endpoint()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let router = tonic::service::Routes::new(TraceServiceServer::new(Picky))
            .prepare()
            .into_axum_router()
            .layer(obs.layer());
        let addr = obs_testkit::serve(router).await;
        let mut client = TraceServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let failed = client
            .export(ExportTraceServiceRequest::default())
            .await
            .expect_err("Status::internal");
        assert_eq!(failed.code(), tonic::Code::Internal);
        let request = ExportTraceServiceRequest {
            resource_spans: vec![Default::default()],
        };
        for _ in 0..2 {
            client.export(request.clone()).await.expect("Status::ok");
        }
    });
    obs.shutdown(Duration::from_secs(2));

    // RED: one failure with error_type INTERNAL, two successes without error_type.
    let text = obs.metrics_text();
    let counts: Vec<_> = samples(&text)
        .into_iter()
        .filter(|s| s.name == "http_server_request_duration_seconds_count")
        .collect();
    let failures: f64 = counts
        .iter()
        .filter(|s| s.label("error_type") == Some("INTERNAL"))
        .map(|s| s.value)
        .sum();
    let successes: f64 = counts
        .iter()
        .filter(|s| s.label("error_type").is_none())
        .map(|s| s.value)
        .sum();
    assert_eq!((failures, successes), (1.0, 2.0), "{text}");
    assert!(counts
        .iter()
        .all(|s| s.label("http_response_status_code") == Some("200")));

    // Spans: the failed call has status Error and error.type INTERNAL; the others are unset.
    let spans = otlp.wait_for_spans(3, Duration::from_secs(5));
    let servers: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(servers.len(), 3, "{spans:#?}");
    let errors: Vec<_> = servers
        .iter()
        .filter(|s| s.status.clone().unwrap_or_default().code == StatusCode::Error as i32)
        .collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        display(&attributes(&errors[0].attributes)["error.type"]),
        "INTERNAL"
    );

    // The log lines agree.
    let completed: Vec<serde_json::Value> = obs
        .logs()
        .iter()
        .filter(|l| l.contains("request completed"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(completed.len(), 3);
    assert_eq!(
        completed
            .iter()
            .filter(|l| l["error.type"] == "INTERNAL" && l["level"] == "ERROR")
            .count(),
        1
    );
}
