//! Sentry events and envelopes, written as JSON with the log lines' escaper.
//!
//! The envelope format: a header line, an item header line with the payload length, the event.
//! See <https://develop.sentry.dev/sdk/envelopes/> and the event payload reference.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_core::{Event, Level};

use super::{RequestScope, SentrySettings};
use crate::logs::escape::write_str;
use crate::trace::HexIds;

/// Longest message kept (Sentry truncates at 8 KB anyway; this bounds the queue's memory).
const MAX_MESSAGE: usize = 8192;
/// Longest encoded breadcrumb data or event `extra`.
const MAX_DATA: usize = 4096;

/// A breadcrumb: a WARN or INFO event before the error.
#[derive(Clone, Debug)]
pub(crate) struct Breadcrumb {
    timestamp: f64,
    level: &'static str,
    category: &'static str,
    /// JSON string.
    message: Vec<u8>,
    /// JSON object body (`,"k":v` pairs, leading comma).
    data: Vec<u8>,
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        _ => "debug",
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The event's message (JSON string, `""` when absent) and other fields, each bounded.
fn fields(event: &Event<'_>) -> (Vec<u8>, Vec<u8>) {
    let (mut message, mut rest) = (Vec::new(), Vec::new());
    crate::logs::encode_event_fields(event, &mut message, &mut rest);
    if message.is_empty() {
        message.extend_from_slice(b"\"\"");
    }
    if message.len() > MAX_MESSAGE {
        let text: String = json_string_text(&message)
            .chars()
            .take(MAX_MESSAGE / 2)
            .collect();
        message.clear();
        write_str(&mut message, &text);
    }
    if rest.len() > MAX_DATA {
        rest.clear();
        rest.extend_from_slice(b",\"obs.truncated\":true");
    }
    (message, rest)
}

/// The text of a JSON string this module wrote (for truncating it on a char boundary).
fn json_string_text(json: &[u8]) -> String {
    let inner = json
        .get(1..json.len().saturating_sub(1))
        .unwrap_or_default();
    String::from_utf8_lossy(inner).into_owned()
}

impl Breadcrumb {
    pub fn of(event: &Event<'_>) -> Self {
        let (message, data) = fields(event);
        Self {
            timestamp: now_secs(),
            level: level_name(*event.metadata().level()),
            category: event.metadata().target(),
            message,
            data,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            format!(
                "{{\"timestamp\":{:.6},\"level\":\"{}\",\"category\":",
                self.timestamp, self.level
            )
            .as_bytes(),
        );
        write_str(out, self.category);
        out.extend_from_slice(b",\"message\":");
        out.extend_from_slice(&self.message);
        if !self.data.is_empty() {
            out.extend_from_slice(b",\"data\":{");
            out.extend_from_slice(&self.data[1..]);
            out.push(b'}');
        }
        out.push(b'}');
    }
}

/// What every event of this process shares.
pub(crate) struct Statics {
    release: Option<String>,
    environment: String,
    service_name: String,
}

impl Statics {
    pub fn new(settings: &SentrySettings, service_name: &str) -> Self {
        Self {
            release: settings.release.clone(),
            environment: settings.environment.clone(),
            service_name: service_name.to_owned(),
        }
    }

    /// One envelope with one event for `event`.
    pub fn envelope(
        &self,
        event: &Event<'_>,
        ids: Option<&HexIds>,
        scope: Option<&RequestScope>,
        global: &VecDeque<Breadcrumb>,
    ) -> Vec<u8> {
        let event_id = format!(
            "{:016x}{:016x}",
            crate::ids::random_u64(),
            crate::ids::random_u64()
        );
        let payload = self.payload(&event_id, event, ids, scope, global);
        let mut out = Vec::with_capacity(payload.len() + 128);
        out.extend_from_slice(b"{\"event_id\":\"");
        out.extend_from_slice(event_id.as_bytes());
        out.extend_from_slice(b"\",\"sent_at\":\"");
        crate::logs::timestamp::write_rfc3339_micros(&mut out, SystemTime::now());
        out.extend_from_slice(b"\"}\n");
        out.extend_from_slice(
            format!(
                "{{\"type\":\"event\",\"length\":{},\"content_type\":\"application/json\"}}\n",
                payload.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&payload);
        out.push(b'\n');
        out
    }

    fn payload(
        &self,
        event_id: &str,
        event: &Event<'_>,
        ids: Option<&HexIds>,
        scope: Option<&RequestScope>,
        global: &VecDeque<Breadcrumb>,
    ) -> Vec<u8> {
        let meta = event.metadata();
        let (mut message, extra) = fields(event);
        let panic = meta.target() == "obs::panic";
        let completion = meta.target() == crate::http::TARGET;
        if completion {
            // Group server errors by route, not under one "request completed" issue.
            if let Some(scope) = scope {
                message.clear();
                let status = status_of(&extra).unwrap_or("error");
                let what = scope.route.as_deref().unwrap_or("(unmatched route)");
                write_str(
                    &mut message,
                    &format!("HTTP {status} from {} {what}", scope.method),
                );
            }
        }
        let mut out = Vec::with_capacity(1024);
        let put = |out: &mut Vec<u8>, key: &str, value: &str| {
            out.push(b',');
            write_str(out, key);
            out.push(b':');
            write_str(out, value);
        };
        out.extend_from_slice(b"{\"event_id\":\"");
        out.extend_from_slice(event_id.as_bytes());
        out.extend_from_slice(format!("\",\"timestamp\":{:.6}", now_secs()).as_bytes());
        put(&mut out, "platform", "native");
        put(&mut out, "level", if panic { "fatal" } else { "error" });
        put(&mut out, "logger", meta.target());
        put(&mut out, "environment", &self.environment);
        if let Some(release) = &self.release {
            put(&mut out, "release", release);
        }
        out.extend_from_slice(b",\"logentry\":{\"formatted\":");
        out.extend_from_slice(&message);
        out.push(b'}');
        if panic {
            out.extend_from_slice(b",\"exception\":{\"values\":[{\"type\":\"panic\",\"value\":");
            out.extend_from_slice(&message);
            out.extend_from_slice(b",\"mechanism\":{\"type\":\"panic\",\"handled\":false}}]}");
        }
        // Tags: searchable in Sentry, and the way back to logs and traces.
        out.extend_from_slice(b",\"tags\":{\"service.name\":");
        write_str(&mut out, &self.service_name);
        if let Some(scope) = scope {
            put(&mut out, "request_id", scope.request_id.as_str());
            if let Some(route) = &scope.route {
                put(&mut out, "http.route", route);
            }
        }
        if let Some(ids) = ids {
            put(&mut out, "trace_id", ids.as_strs().0);
        }
        out.push(b'}');
        if let Some(ids) = ids {
            let (trace_id, span_id, _) = ids.as_strs();
            out.extend_from_slice(b",\"contexts\":{\"trace\":{\"type\":\"trace\"");
            put(&mut out, "trace_id", trace_id);
            put(&mut out, "span_id", span_id);
            if scope.is_some() {
                put(&mut out, "op", "http.server");
            }
            out.extend_from_slice(b"}}");
        }
        if let Some(scope) = scope {
            // Method and path only: no headers, cookies, query string or body.
            out.extend_from_slice(b",\"request\":{\"method\":");
            write_str(&mut out, scope.method);
            put(
                &mut out,
                "url",
                scope.path.as_ref().map_or("", |p| p.path()),
            );
            out.push(b'}');
        }
        if !extra.is_empty() {
            out.extend_from_slice(b",\"extra\":{");
            out.extend_from_slice(&extra[1..]);
            out.push(b'}');
        }
        let crumbs = global
            .iter()
            .chain(scope.into_iter().flat_map(|s| s.breadcrumbs.iter()));
        out.extend_from_slice(b",\"breadcrumbs\":{\"values\":[");
        for (i, crumb) in crumbs.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            crumb.write(&mut out);
        }
        out.extend_from_slice(b"]}");
        out.extend_from_slice(b",\"sdk\":{\"name\":\"obs\",\"version\":\"");
        out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        out.extend_from_slice(b"\"}}");
        out
    }
}

/// `http.response.status_code` from encoded fields (the completion line's).
fn status_of(extra: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(extra).ok()?;
    let start = text.find("\"http.response.status_code\":")? + 28;
    let end = text[start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(text.len(), |e| e + start);
    Some(&text[start..end]).filter(|s| !s.is_empty())
}
