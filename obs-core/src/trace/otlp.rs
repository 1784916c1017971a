//! The OTLP span exporter: batches from a bounded queue, protobuf-encoded, sent over
//! http/protobuf or gRPC from the export thread.
//!
//! The encoder writes `ExportTraceServiceRequest` (opentelemetry-proto `trace/v1`) directly;
//! the tests decode it with the `opentelemetry-proto` types. Failed batches are dropped and
//! counted in `obs_spans_dropped_total` (with one WARN line per minute at most): a dead
//! collector costs the service nothing but those spans.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use super::settings::{OtlpSettings, Protocol};
use super::span::{SpanRecord, SpanSink, Value};
use crate::export::{Inbox, Queue, Worker};

/// The exporter's handle: the queue the span layer pushes into, and its worker.
pub(crate) struct Exporter {
    pub queue: Queue<Box<SpanRecord>>,
    pub worker: Worker,
}

impl SpanSink for Queue<Box<SpanRecord>> {
    fn export(&self, span: Box<SpanRecord>) {
        self.push(span);
    }
}

/// Resource and scope, encoded once.
pub(crate) struct Resource {
    pub attributes: Vec<(String, String)>,
}

impl Exporter {
    /// Starts the export thread.
    pub fn start(settings: OtlpSettings, resource: Resource) -> Self {
        let capacity = settings.max_queue;
        let (queue, worker) = Worker::spawn("obs-otlp", capacity, move |inbox| {
            run(inbox, settings, resource)
        });
        Self { queue, worker }
    }
}

async fn run(mut inbox: Inbox<Box<SpanRecord>>, settings: OtlpSettings, resource: Resource) {
    super::span::untraced_thread();
    let client = match client(&settings) {
        Ok(c) => c,
        Err(why) => {
            tracing::warn!(target: "obs::trace", "OTLP exporter not started: {why}");
            return;
        }
    };
    let prefix = encode_prefix(&resource);
    let mut batch = Vec::with_capacity(settings.max_batch);
    let mut failures = Failures::default();
    let mut tick = tokio::time::interval(settings.delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            span = inbox.rx.recv() => match span {
                Some(span) => {
                    batch.push(*span);
                    if batch.len() >= settings.max_batch {
                        send(&client, &settings, &prefix, &mut batch, &inbox, &mut failures).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                send(&client, &settings, &prefix, &mut batch, &inbox, &mut failures).await;
            }
            () = inbox.stop.notified() => break,
        }
    }
    // Final flush: whatever is queued, in batches (the caller waits only until its deadline).
    while let Ok(span) = inbox.rx.try_recv() {
        batch.push(*span);
        if batch.len() >= settings.max_batch {
            send(
                &client,
                &settings,
                &prefix,
                &mut batch,
                &inbox,
                &mut failures,
            )
            .await;
        }
    }
    send(
        &client,
        &settings,
        &prefix,
        &mut batch,
        &inbox,
        &mut failures,
    )
    .await;
}

fn client(settings: &OtlpSettings) -> Result<reqwest::Client, String> {
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
    let builder = reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
        .timeout(settings.timeout)
        .pool_max_idle_per_host(1);
    let builder = match settings.protocol {
        Protocol::Grpc => builder.http2_prior_knowledge(),
        Protocol::HttpProtobuf => builder,
    };
    builder.build().map_err(|e| e.without_url().to_string())
}

/// Export failures, reported at most once a minute.
#[derive(Default)]
struct Failures {
    last_report: Option<Instant>,
    since_report: u64,
}

async fn send(
    client: &reqwest::Client,
    settings: &OtlpSettings,
    prefix: &[u8],
    batch: &mut Vec<SpanRecord>,
    inbox: &Inbox<Box<SpanRecord>>,
    failures: &mut Failures,
) {
    if batch.is_empty() {
        return;
    }
    let body = encode_request(prefix, batch);
    let n = batch.len() as u64;
    batch.clear();
    if let Err(why) = post(client, settings, body).await {
        inbox.dropped.fetch_add(n, Ordering::Relaxed);
        failures.since_report += n;
        if failures
            .last_report
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            tracing::warn!(
                target: "obs::trace",
                "OTLP export to {} failed: {why}; {} spans dropped since the last report",
                super::settings::redact_url(&settings.url),
                failures.since_report
            );
            failures.last_report = Some(Instant::now());
            failures.since_report = 0;
        }
    }
}

/// One export request; `Err` says why it failed (no URL, no header values).
async fn post(
    client: &reqwest::Client,
    settings: &OtlpSettings,
    body: Vec<u8>,
) -> Result<(), String> {
    let describe = |e: reqwest::Error| {
        if e.is_timeout() {
            format!("no answer within {:?}", settings.timeout)
        } else {
            e.without_url().to_string()
        }
    };
    match settings.protocol {
        Protocol::HttpProtobuf => {
            let response = client
                .post(&settings.url)
                .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                .body(body)
                .send()
                .await
                .map_err(describe)?;
            let status = response.status();
            // Read the (small) body so the connection can be reused.
            let _ = response.bytes().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {status}"))
            }
        }
        Protocol::Grpc => {
            let mut framed = Vec::with_capacity(body.len() + 5);
            framed.push(0); // not compressed
            framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
            framed.extend_from_slice(&body);
            let response = client
                .post(&settings.url)
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header(http::header::TE, "trailers")
                .body(framed)
                .send()
                .await
                .map_err(describe)?;
            let response: http::Response<reqwest::Body> = response.into();
            if response.status() != http::StatusCode::OK {
                return Err(format!("HTTP {}", response.status()));
            }
            // A failure may come as headers only, else the status is in the trailers.
            let mut status = grpc_status(response.headers());
            if status.is_none() {
                let collected =
                    tokio::time::timeout(settings.timeout, response.into_body().collect())
                        .await
                        .map_err(|_| format!("no answer within {:?}", settings.timeout))?
                        .map_err(describe)?;
                status = collected.trailers().and_then(grpc_status);
            }
            match status {
                Some((0, _)) => Ok(()),
                Some((code, message)) => Err(format!("gRPC status {code}: {message}")),
                None => Err("gRPC response without grpc-status".to_owned()),
            }
        }
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<(u32, String)> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    Some((code, message))
}

// --- protobuf encoding (field numbers from opentelemetry/proto/trace/v1/trace.proto) ---

const LEN: u8 = 2;
const VARINT: u8 = 0;
const I64: u8 = 1;
const I32: u8 = 5;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field << 3 | u32::from(wire)));
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A length-delimited sub-message written by `f`.
fn message(out: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::with_capacity(64);
    f(&mut inner);
    bytes(out, field, &inner);
}

/// `KeyValue { key = 1; AnyValue value = 2 }`, `AnyValue { string 1, bool 2, int 3, double 4 }`.
fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    message(out, field, |kv| {
        bytes(kv, 1, key.as_bytes());
        message(kv, 2, |any| match value {
            Value::Str(s) => bytes(any, 1, s.as_bytes()),
            Value::Bool(b) => {
                tag(any, 2, VARINT);
                varint(any, u64::from(*b));
            }
            Value::Int(i) => {
                tag(any, 3, VARINT);
                varint(any, *i as u64);
            }
            Value::Float(f) => {
                tag(any, 4, I64);
                any.extend_from_slice(&f.to_le_bytes());
            }
        });
    });
}

/// `ResourceSpans.resource` (1) and the start of `ScopeSpans.scope` (1): the same for every
/// request, so encoded once.
fn encode_prefix(resource: &Resource) -> Vec<u8> {
    let mut out = Vec::new();
    message(&mut out, 1, |r| {
        for (k, v) in &resource.attributes {
            key_value(r, 1, k, &Value::Str(v.clone()));
        }
    });
    out
}

/// `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }`.
pub(crate) fn encode_request(prefix: &[u8], spans: &[SpanRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 * spans.len() + 128);
    message(&mut out, 1, |rs| {
        rs.extend_from_slice(prefix);
        // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2 }
        message(rs, 2, |ss| {
            message(ss, 1, |scope| {
                bytes(scope, 1, b"obs");
                bytes(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for span in spans {
                message(ss, 2, |s| encode_span(s, span));
            }
        });
    });
    out
}

fn encode_span(out: &mut Vec<u8>, span: &SpanRecord) {
    bytes(out, 1, &span.trace_id);
    bytes(out, 2, &span.span_id);
    if let Some(state) = &span.tracestate {
        bytes(out, 3, state.as_bytes());
    }
    if let Some(parent) = &span.parent_span_id {
        bytes(out, 4, parent);
    }
    bytes(out, 5, span.name.as_bytes());
    tag(out, 6, VARINT);
    varint(out, span.kind as u64);
    tag(out, 7, I64);
    out.extend_from_slice(&span.start_unix_nanos.to_le_bytes());
    tag(out, 8, I64);
    out.extend_from_slice(&span.end_unix_nanos.to_le_bytes());
    for (k, v) in &span.attributes {
        key_value(out, 9, k, v);
    }
    if let Some(message_text) = &span.error {
        // Status { string message = 2; StatusCode code = 3 } with STATUS_CODE_ERROR = 2.
        message(out, 15, |st| {
            bytes(st, 2, message_text.as_bytes());
            tag(st, 3, VARINT);
            varint(st, 2);
        });
    }
    // flags (16, fixed32): W3C trace flags, plus "has is_remote" (0x100) and is_remote (0x200).
    let remote = if span.remote_parent { 0x300 } else { 0x100 };
    tag(out, 16, I32);
    out.extend_from_slice(&(u32::from(span.flags) | remote).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        out.clear();
        varint(&mut out, u64::MAX);
        assert_eq!(out.len(), 10);
    }
}
