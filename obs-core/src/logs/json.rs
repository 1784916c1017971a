//! The JSON log layer: one object per event, one line per object.

use std::cell::RefCell;
use std::fmt;
use std::time::SystemTime;

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::escape::{write_debug, write_str, Escaper};
use super::timestamp::write_rfc3339_micros;

/// Where finished log lines go. Each call gets exactly one line, ending in `\n`.
///
/// ```
/// struct Discard;
/// impl obs::logs::LineSink for Discard {
///     fn write_line(&self, _line: &[u8]) {}
/// }
/// ```
pub trait LineSink: Send + Sync + 'static {
    /// Takes one complete line. Must not block for long: it runs on the logging thread.
    fn write_line(&self, line: &[u8]);
}

/// Discards lines after formatting them (for benchmarks).
impl LineSink for std::io::Sink {
    fn write_line(&self, _line: &[u8]) {}
}

/// The JSON formatting layer.
///
/// Span fields are serialised once, when they are recorded, and stored in the span; an event
/// inside a request then copies ready-made bytes instead of re-serialising every span field as
/// `tracing_subscriber::fmt().json()` does. That is what makes it cheap inside spans.
///
/// ```
/// use obs::logs::{JsonLayer, LineSink};
/// use std::sync::{Arc, Mutex};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// #[derive(Clone, Default)]
/// struct Lines(Arc<Mutex<Vec<String>>>);
/// impl LineSink for Lines {
///     fn write_line(&self, line: &[u8]) {
///         self.0.lock().unwrap().push(String::from_utf8_lossy(line).into_owned());
///     }
/// }
///
/// let lines = Lines::default();
/// let subscriber = tracing_subscriber::registry().with(JsonLayer::new(lines.clone(), "svc"));
/// tracing::subscriber::with_default(subscriber, || {
///     let span = tracing::info_span!("request", request_id = "abc-123");
///     let _entered = span.enter();
///     tracing::info!(user = 7, "hello \"world\"");
/// });
/// let line = &lines.0.lock().unwrap()[0];
/// assert!(line.contains(r#""message":"hello \"world\"""#));
/// assert!(line.contains(r#""user":7"#) && line.contains(r#""request_id":"abc-123""#));
/// assert!(line.contains(r#""service.name":"svc""#) && line.ends_with("}\n"));
/// ```
pub struct JsonLayer<W> {
    sink: W,
    /// `,"service.name":"..."`, pre-escaped.
    service: Box<[u8]>,
}

impl<W: LineSink> JsonLayer<W> {
    /// A layer writing to `sink`, stamping every line with `service.name`.
    ///
    /// ```
    /// let _layer = obs::logs::JsonLayer::new(std::io::sink(), "checkout");
    /// ```
    pub fn new(sink: W, service_name: &str) -> Self {
        let mut service = b",\"service.name\":".to_vec();
        write_str(&mut service, service_name);
        Self {
            sink,
            service: service.into(),
        }
    }
}

/// A span's fields, each already JSON-encoded as `"name":value`, in one buffer (two
/// allocations per span, whatever the number of fields).
#[derive(Default)]
struct SpanFields {
    buf: Vec<u8>,
    index: Vec<(&'static str, u32, u32)>,
}

impl SpanFields {
    fn iter(&self) -> impl Iterator<Item = (&'static str, &[u8])> {
        self.index
            .iter()
            .map(|&(name, start, end)| (name, &self.buf[start as usize..end as usize]))
    }
}

/// Collects span fields into [`SpanFields`]; a field recorded again replaces the old value.
struct SpanVisitor<'a>(&'a mut SpanFields);

impl SpanVisitor<'_> {
    fn put(&mut self, field: &Field, write: impl FnOnce(&mut Vec<u8>)) {
        let Some(name) = log_key(field.name()) else {
            return;
        };
        let fields = &mut *self.0;
        fields.index.retain(|(n, _, _)| *n != name);
        let start = fields.buf.len();
        write_str(&mut fields.buf, name);
        fields.buf.push(b':');
        write(&mut fields.buf);
        fields
            .index
            .push((name, start as u32, fields.buf.len() as u32));
    }
}

/// The log key of a span field: `otel.*` fields are instructions to tracing-opentelemetry (span
/// name, kind, status), not data; the span attribute `request.id` is the lines' `request_id`,
/// a job's `messaging.message.id` and `messaging.destination.name` their `job_id` and
/// `job_name`; a name the line itself uses (`message` included) keeps its value under
/// `field.<name>`.
fn log_key(name: &'static str) -> Option<&'static str> {
    match name {
        "request.id" => Some("request_id"),
        "messaging.message.id" => Some("job_id"),
        "messaging.destination.name" => Some("job_name"),
        "message" => Some("field.message"),
        n if n.starts_with("otel.") => None,
        n => Some(unreserved(n)),
    }
}

/// A field name that is not one of the line's own keys: a field named `level`, `trace_id` or
/// `timestamp` would otherwise write that key twice (one JSON object, two values: log pipelines
/// keep either, or reject the line). Its value is kept under `field.<name>`.
fn unreserved(name: &'static str) -> &'static str {
    match name {
        "timestamp" => "field.timestamp",
        "level" => "field.level",
        "target" => "field.target",
        "trace_id" => "field.trace_id",
        "span_id" => "field.span_id",
        "trace_flags" => "field.trace_flags",
        "service.name" => "field.service.name",
        n => n,
    }
}

/// Writes each value kind as JSON; shared by span and event visitors.
macro_rules! visit_values {
    () => {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.put(field, |out| write_str(out, value));
        }
        fn record_bool(&mut self, field: &Field, value: bool) {
            self.put(field, |out| {
                out.extend_from_slice(if value { b"true" } else { b"false" })
            });
        }
        fn record_i64(&mut self, field: &Field, value: i64) {
            self.put(field, |out| write_display(out, value));
        }
        fn record_u64(&mut self, field: &Field, value: u64) {
            self.put(field, |out| write_display(out, value));
        }
        fn record_i128(&mut self, field: &Field, value: i128) {
            self.put(field, |out| write_display(out, value));
        }
        fn record_u128(&mut self, field: &Field, value: u128) {
            self.put(field, |out| write_display(out, value));
        }
        fn record_f64(&mut self, field: &Field, value: f64) {
            self.put(field, |out| {
                if value.is_finite() {
                    write_display(out, value)
                } else {
                    out.extend_from_slice(b"null")
                }
            });
        }
        fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
            self.put(field, |out| {
                out.push(b'"');
                let _ = fmt::write(&mut Escaper(out), format_args!("{value}"));
                out.push(b'"');
            });
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.put(field, |out| write_debug(out, value));
        }
    };
}

fn write_display(out: &mut Vec<u8>, value: impl fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "{value}");
}

impl Visit for SpanVisitor<'_> {
    visit_values!();
}

/// The fields `tracing-log` adds to a bridged `log` record.
const LOG_FIELDS: [&str; 4] = ["log.target", "log.module_path", "log.file", "log.line"];

/// Writes the event's `message` into one buffer and its other fields into another.
struct EventVisitor<'a> {
    /// A `log` record bridged by `tracing-log`.
    from_log: bool,
    message: &'a mut Vec<u8>,
    rest: &'a mut Vec<u8>,
    seen: &'a mut Vec<&'static str>,
}

impl EventVisitor<'_> {
    fn put(&mut self, field: &Field, write: impl FnOnce(&mut Vec<u8>)) {
        if self.from_log && LOG_FIELDS.contains(&field.name()) {
            return; // the record's target is the line's; file and line are not logged
        }
        if field.name() == "message" {
            self.message.clear();
            write(self.message);
            return;
        }
        let key = unreserved(field.name());
        self.rest.push(b',');
        write_str(self.rest, key);
        self.rest.push(b':');
        write(self.rest);
        self.seen.push(key);
    }
}

impl Visit for EventVisitor<'_> {
    visit_values!();
}

/// Per-thread buffers, reused so that formatting an event does not allocate.
#[derive(Default)]
struct Scratch {
    line: Vec<u8>,
    message: Vec<u8>,
    rest: Vec<u8>,
    seen: Vec<&'static str>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn level_str(level: &Level) -> &'static [u8] {
    match *level {
        Level::TRACE => b"TRACE",
        Level::DEBUG => b"DEBUG",
        Level::INFO => b"INFO",
        Level::WARN => b"WARN",
        Level::ERROR => b"ERROR",
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: LineSink,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields {
            buf: Vec::with_capacity(384),
            index: Vec::with_capacity(10),
        };
        attrs.record(&mut SpanVisitor(&mut fields));
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(fields) = ext.get_mut::<SpanFields>() {
            values.record(&mut SpanVisitor(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.format(event, &ctx, &mut scratch),
            // Re-entered (a field's Debug impl logged): use fresh buffers.
            Err(_) => self.format(event, &ctx, &mut Scratch::default()),
        });
    }
}

impl<W: LineSink> JsonLayer<W> {
    fn format<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>, s: &mut Scratch)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Scratch {
            line,
            message,
            rest,
            seen,
        } = s;
        line.clear();
        message.clear();
        rest.clear();
        seen.clear();
        // A `log` record's metadata says target `log`; its own target is in a field.
        let normalized = event.normalized_metadata();
        event.record(&mut EventVisitor {
            from_log: normalized.is_some(),
            message,
            rest,
            seen,
        });

        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        line.extend_from_slice(b"{\"timestamp\":\"");
        write_rfc3339_micros(line, SystemTime::now());
        line.extend_from_slice(b"\",\"level\":\"");
        line.extend_from_slice(level_str(meta.level()));
        line.extend_from_slice(b"\",\"message\":");
        if message.is_empty() {
            line.extend_from_slice(b"\"\"");
        } else {
            line.extend_from_slice(message);
        }
        line.extend_from_slice(b",\"target\":");
        write_str(line, meta.target());
        // The active span's trace ids (the request's SERVER span or a handler's span), as
        // exported.
        crate::trace::context::write_current_ids(line);
        line.extend_from_slice(&self.service);
        line.extend_from_slice(rest);
        // Span fields, innermost first; a name already written (by the event or an inner span)
        // is skipped so that every key appears once.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let ext = span.extensions();
                let Some(fields) = ext.get::<SpanFields>() else {
                    continue;
                };
                for (name, encoded) in fields.iter() {
                    if !seen.contains(&name) {
                        line.push(b',');
                        line.extend_from_slice(encoded);
                        seen.push(name);
                    }
                }
            }
        }
        line.extend_from_slice(b"}\n");
        self.sink.write_line(line);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_named_like_the_lines_own_keys_never_duplicate_a_key() {
        let obs = crate::test::init();
        let span = tracing::info_span!("job", level = "span-level", message = "span-message");
        let _entered = span.enter();
        tracing::info!(
            trace_id = "mine",
            timestamp = 7,
            target = "t",
            span_id = 1,
            trace_flags = 2,
            service.name = "other",
            "hello"
        );
        let line = &obs.logs()[0];
        // serde_json keeps the last of duplicate keys; count the keys in the text instead.
        for key in [
            "timestamp",
            "level",
            "message",
            "target",
            "trace_id",
            "span_id",
            "trace_flags",
            "service.name",
        ] {
            assert_eq!(
                line.matches(&format!("\"{key}\":")).count(),
                1,
                "{key} in {line}"
            );
        }
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["message"], "hello");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["trace_id"].as_str().map(str::len), Some(32));
        assert_eq!(v["field.trace_id"], "mine");
        assert_eq!(v["field.timestamp"], 7);
        assert_eq!(v["field.level"], "span-level");
        assert_eq!(v["field.message"], "span-message");
        assert_eq!(v["field.service.name"], "other");
    }

    #[test]
    fn hostile_field_values_stay_inside_one_json_string() {
        let obs = crate::test::init();
        let hostile = "\u{1b}[31mred\u{1b}[0m\nINJECTED {\"level\":\"ERROR\"}\r\u{0}\u{7f}\t\"\\";
        let span = tracing::info_span!("request", user.agent = hostile);
        let _entered = span.enter();
        tracing::info!(input = hostile, debugged = ?hostile, "{hostile}");
        let lines = obs.logs();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\u{1b}'));
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["input"], hostile);
        assert_eq!(v["message"], hostile);
        assert_eq!(v["user.agent"], hostile);
        assert_eq!(v["debugged"], format!("{hostile:?}"));
        assert_eq!(v["level"], "INFO");
    }
}
