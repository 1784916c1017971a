//! The OTLP export thread: opentelemetry-otlp's exporter (http/protobuf or gRPC, gzip, the OTLP
//! specification's retries on 429/502/503/504 and `Retry-After`) fed from obs' bounded queue.
//!
//! The exporter is built and polled on the export thread's own runtime, so a dead, slow or
//! hanging collector stalls only that thread; the thread runs in a telemetry-suppressed
//! OpenTelemetry context, so the HTTP stack's own spans are never traced (exporting them would
//! feed the exporter forever).

use std::time::{Duration, Instant};

use opentelemetry_otlp::{Compression, SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use opentelemetry_sdk::Resource;

use super::queue::{Inbox, Queue, Worker};
use super::settings::{OtlpSettings, Protocol};
use crate::env::redact_url;
use crate::throttle::ReportThrottle;

/// Starts the export thread; spans pushed on the queue are exported in batches.
pub(crate) fn start(settings: OtlpSettings, resource: Resource) -> (Queue<Vec<SpanData>>, Worker) {
    let (capacity, batch) = (settings.max_queue, settings.max_batch);
    Worker::spawn("obs-otlp", capacity, batch, move |inbox| {
        run(inbox, settings, resource)
    })
}

/// Builds opentelemetry-otlp's exporter from obs' settings (code > environment, validated).
fn build(settings: &OtlpSettings) -> Result<SpanExporter, String> {
    let mut headers = http::HeaderMap::new();
    for (k, v) in &settings.headers {
        if let (Ok(k), Ok(mut v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            v.set_sensitive(true);
            headers.insert(k, v);
        }
    }
    let built = match settings.protocol {
        Protocol::HttpProtobuf => {
            use opentelemetry_otlp::WithHttpConfig;
            let client = reqwest::Client::builder()
                .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
                .timeout(settings.timeout)
                .pool_max_idle_per_host(1)
                .build()
                .map_err(|e| e.without_url().to_string())?;
            let mut builder = SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_endpoint(settings.url.as_str())
                .with_timeout(settings.timeout)
                .with_headers(settings.headers.iter().cloned().collect());
            if settings.gzip {
                builder = builder.with_compression(Compression::Gzip);
            }
            builder.build()
        }
        Protocol::Grpc => {
            use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
            use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
            use opentelemetry_otlp::WithTonicConfig;
            let mut builder = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.url.as_str())
                .with_timeout(settings.timeout)
                .with_metadata(MetadataMap::from_headers(headers));
            if settings.url.starts_with("https://") {
                builder = builder.with_tls_config(ClientTlsConfig::new().with_enabled_roots());
            }
            if settings.gzip {
                builder = builder.with_compression(Compression::Gzip);
            }
            builder.build()
        }
    };
    built.map_err(|e| e.to_string())
}

async fn run(inbox: Inbox<Vec<SpanData>>, settings: OtlpSettings, resource: Resource) {
    let _suppressed = opentelemetry::Context::enter_telemetry_suppressed_scope();
    let mut exporter = match build(&settings) {
        Ok(e) => e,
        Err(why) => {
            tracing::warn!(target: "obs::trace", "OTLP exporter not started: {why}");
            return;
        }
    };
    exporter.set_resource(&resource);
    let mut failures = Failures::default();
    loop {
        // Woken by a full batch, the schedule delay, or shutdown; then everything queued goes.
        let stopping = inbox.wait(settings.delay).await;
        let mut spans = inbox.take();
        while !spans.is_empty() {
            let rest = spans.split_off(spans.len().min(settings.max_batch));
            let count = spans.len();
            let result = exporter.export(spans).await;
            inbox.done(count, result.is_err());
            if let Err(why) = result {
                failures.report(count, &settings.url, &redact_url(&why.to_string()));
            }
            spans = rest;
        }
        if stopping {
            return;
        }
    }
}

/// Export failures, reported at most once a minute.
#[derive(Default)]
struct Failures(ReportThrottle);

impl Failures {
    fn report(&mut self, count: usize, url: &str, why: &str) {
        if let Some(dropped) = self.0.failed(count as u64, Instant::now()) {
            tracing::warn!(
                target: "obs::trace",
                "OTLP export to {} failed: {why}; {dropped} spans dropped since the last report",
                redact_url(url),
            );
        }
    }
}
