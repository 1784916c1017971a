//! The OTLP span exporter: batches from a bounded queue, protobuf-encoded, sent over
//! http/protobuf or gRPC from the export thread.
//!
//! The encoder writes `ExportTraceServiceRequest` (opentelemetry-proto `trace/v1`) directly;
//! the tests decode it with the `opentelemetry-proto` types. Failed batches are dropped and
//! counted in `obs_spans_dropped_total` (with one WARN line per minute at most): a dead
//! collector costs the service nothing but those spans.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use super::settings::{OtlpSettings, Protocol};
use super::span::{ServerAttrs, SpanRecord, SpanSink, Value};
use crate::export::{Batch, Inbox, Queue, Worker};

/// Largest batch body: under the 4 MiB default message limit of gRPC servers.
const MAX_BATCH_BYTES: usize = 3 << 20;

/// Spans already encoded as `ScopeSpans.spans` entries, appended by the request path.
#[derive(Default)]
pub(crate) struct SpanBatch {
    bytes: Vec<u8>,
    count: usize,
}

impl Batch for SpanBatch {
    fn count(&self) -> usize {
        self.count
    }
}

/// The exporter's handle: the queue the span layer pushes into, and its worker.
pub(crate) struct Exporter {
    pub queue: Queue<SpanBatch>,
    pub worker: Worker,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl SpanSink for Queue<SpanBatch> {
    /// Encodes the span outside the lock, then appends it (a copy) under the lock.
    fn export(&self, span: &SpanRecord) {
        SCRATCH.with(|cell| {
            let mut fresh = Vec::new();
            let mut borrowed = cell.try_borrow_mut();
            let scratch = match borrowed.as_deref_mut() {
                Ok(s) => s,
                Err(_) => &mut fresh,
            };
            scratch.clear();
            encode_span(scratch, span);
            self.push_with(|batch| {
                if batch.bytes.len() + scratch.len() + 8 > MAX_BATCH_BYTES {
                    return false;
                }
                bytes(&mut batch.bytes, 2, scratch);
                batch.count += 1;
                true
            });
        });
    }
}

/// Resource and scope, encoded once.
pub(crate) struct Resource {
    pub attributes: Vec<(String, String)>,
}

impl Exporter {
    /// Starts the export thread.
    pub fn start(settings: OtlpSettings, resource: Resource) -> Self {
        let (capacity, batch) = (settings.max_queue, settings.max_batch);
        let (queue, worker) = Worker::spawn("obs-otlp", capacity, batch, move |inbox| {
            run(inbox, settings, resource)
        });
        Self { queue, worker }
    }
}

async fn run(inbox: Inbox<SpanBatch>, settings: OtlpSettings, resource: Resource) {
    super::span::untraced_thread();
    let client = match client(&settings) {
        Ok(c) => c,
        Err(why) => {
            tracing::warn!(target: "obs::trace", "OTLP exporter not started: {why}");
            return;
        }
    };
    let prefix = encode_prefix(&resource);
    let mut failures = Failures::default();
    loop {
        // Woken by a full batch, the schedule delay, or shutdown; then everything queued goes.
        let stopping = inbox.wait(settings.delay).await;
        let batch = inbox.take();
        if batch.count > 0 {
            send(&client, &settings, &prefix, &batch, &inbox, &mut failures).await;
        }
        if stopping {
            return;
        }
    }
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
    batch: &SpanBatch,
    inbox: &Inbox<SpanBatch>,
    failures: &mut Failures,
) {
    let body = encode_request(prefix, batch);
    if let Err(why) = post(client, settings, body).await {
        inbox.dropped(batch.count);
        failures.since_report += batch.count as u64;
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
//
// Attributes are written with their lengths computed up front, and each span is encoded once
// into a reused buffer, so a batch costs a handful of allocations, not several per attribute.

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

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field << 3 | u32::from(wire)));
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A length-delimited field whose bytes are already encoded in `inner`.
fn len_prefixed(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// An attribute value, borrowed: what the encoder needs from either kind of attribute.
#[derive(Clone, Copy)]
enum Val<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Float(f64),
}

impl<'a> From<&'a Value> for Val<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Str(s) => Val::Str(s),
            Value::Bool(b) => Val::Bool(*b),
            Value::Int(i) => Val::Int(*i),
            Value::Float(f) => Val::Float(*f),
        }
    }
}

/// `KeyValue { string key = 1; AnyValue value = 2 }` with
/// `AnyValue { string 1 | bool 2 | int64 3 | double 4 }`.
fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: Val<'_>) {
    let any_len = match value {
        Val::Str(s) => len_prefixed(s.len()),
        Val::Bool(_) => 2,
        Val::Int(i) => 1 + varint_len(i as u64),
        Val::Float(_) => 9,
    };
    let kv_len = len_prefixed(key.len()) + len_prefixed(any_len);
    tag(out, field, LEN);
    varint(out, kv_len as u64);
    bytes(out, 1, key.as_bytes());
    tag(out, 2, LEN);
    varint(out, any_len as u64);
    match value {
        Val::Str(s) => bytes(out, 1, s.as_bytes()),
        Val::Bool(b) => {
            tag(out, 2, VARINT);
            varint(out, u64::from(b));
        }
        Val::Int(i) => {
            tag(out, 3, VARINT);
            varint(out, i as u64);
        }
        Val::Float(f) => {
            tag(out, 4, I64);
            out.extend_from_slice(&f.to_le_bytes());
        }
    }
}

/// `ResourceSpans.resource` (field 1): the same for every request, so encoded once.
fn encode_prefix(resource: &Resource) -> Vec<u8> {
    let mut attrs = Vec::new();
    for (k, v) in &resource.attributes {
        key_value(&mut attrs, 1, k, Val::Str(v));
    }
    let mut out = Vec::with_capacity(attrs.len() + 8);
    bytes(&mut out, 1, &attrs);
    out
}

/// `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }`, with one
/// `ResourceSpans { resource = 1; repeated ScopeSpans scope_spans = 2 }` and one
/// `ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2 }`.
pub(crate) fn encode_request(prefix: &[u8], batch: &SpanBatch) -> Vec<u8> {
    let mut scope = Vec::with_capacity(32);
    bytes(&mut scope, 1, b"obs");
    bytes(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
    let scope_spans_len = len_prefixed(scope.len()) + batch.bytes.len();
    let resource_len = prefix.len() + len_prefixed(scope_spans_len);
    let mut out = Vec::with_capacity(len_prefixed(resource_len));
    tag(&mut out, 1, LEN);
    varint(&mut out, resource_len as u64);
    out.extend_from_slice(prefix);
    tag(&mut out, 2, LEN);
    varint(&mut out, scope_spans_len as u64);
    bytes(&mut out, 1, &scope);
    out.extend_from_slice(&batch.bytes);
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
    match &span.server {
        Some(server) => encode_server_name(out, server),
        None => bytes(out, 5, span.name.as_bytes()),
    }
    tag(out, 6, VARINT);
    varint(out, span.kind as u64);
    tag(out, 7, I64);
    out.extend_from_slice(&span.start_unix_nanos.to_le_bytes());
    tag(out, 8, I64);
    out.extend_from_slice(&span.end_unix_nanos.to_le_bytes());
    for (k, v) in &span.attributes {
        key_value(out, 9, k, v.into());
    }
    if let Some(server) = &span.server {
        encode_server_attributes(out, server);
    }
    // flags (16, fixed32): W3C trace flags, plus "has is_remote" (0x100) and is_remote (0x200).
    let remote = if span.remote_parent { 0x300 } else { 0x100 };
    tag(out, 16, I32);
    out.extend_from_slice(&(u32::from(span.flags) | remote).to_le_bytes());
}

/// `GET /users/{id}`; `GET` without a route; `HTTP` for `_OTHER` methods (semconv).
fn encode_server_name(out: &mut Vec<u8>, server: &ServerAttrs) {
    let method = if server.method == crate::metrics::names::METHOD_OTHER {
        "HTTP"
    } else {
        server.method
    };
    match server.route.as_deref() {
        Some(route) if method != "HTTP" => {
            tag(out, 5, LEN);
            varint(out, (method.len() + 1 + route.len()) as u64);
            out.extend_from_slice(method.as_bytes());
            out.push(b' ');
            out.extend_from_slice(route.as_bytes());
        }
        _ => bytes(out, 5, method.as_bytes()),
    }
}

fn encode_server_attributes(out: &mut Vec<u8>, server: &ServerAttrs) {
    key_value(out, 9, "http.request.method", Val::Str(server.method));
    if let Some(original) = &server.method_original {
        key_value(
            out,
            9,
            "http.request.method_original",
            Val::Str(original.as_str()),
        );
    }
    if let Some(route) = server.route.as_deref() {
        key_value(out, 9, "http.route", Val::Str(route));
    }
    if let Some(path) = &server.path {
        key_value(out, 9, "url.path", Val::Str(path.path()));
    }
    key_value(out, 9, "url.scheme", Val::Str(server.scheme));
    key_value(out, 9, "request.id", Val::Str(server.request_id.as_str()));
    if let Some(status) = server.status {
        key_value(
            out,
            9,
            "http.response.status_code",
            Val::Int(i64::from(status)),
        );
    }
    if let Some(error) = server.error_type {
        let mut text = String::new();
        let _ = std::fmt::Write::write_fmt(&mut text, format_args!("{error}"));
        key_value(out, 9, "error.type", Val::Str(&text));
        // Status { string message = 2; StatusCode code = 3 } with STATUS_CODE_ERROR = 2. For
        // a status code the description stays empty (semconv: it is inferable).
        let message = if server.status.is_some() {
            ""
        } else {
            text.as_str()
        };
        let mut status = Vec::with_capacity(message.len() + 4);
        if !message.is_empty() {
            bytes(&mut status, 2, message.as_bytes());
        }
        tag(&mut status, 3, VARINT);
        varint(&mut status, 2);
        bytes(out, 15, &status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        for v in [0, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
        }
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
    }
}
