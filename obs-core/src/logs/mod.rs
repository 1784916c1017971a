//! Logs: a JSON (or pretty) `tracing` layer writing through a bounded, non-blocking queue.
//!
//! [`crate::init`] installs this for you. The pieces are public so that they can be reused in
//! your own subscriber:
//!
//! ```
//! use obs::logs::{JsonLayer, LogWriter};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let writer = LogWriter::spawn(std::io::stdout(), 1 << 20);
//! let subscriber = tracing_subscriber::registry().with(JsonLayer::new(writer.clone(), "svc"));
//! tracing::subscriber::with_default(subscriber, || tracing::info!("one JSON line"));
//! writer.flush(std::time::Duration::from_secs(1));
//! ```

pub(crate) mod escape;
mod json;
mod settings;
pub(crate) mod timestamp;
mod writer;

use std::io::{self, IsTerminal};

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::subscriber::Interest;
use tracing_core::{Event, LevelFilter, Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

pub use json::{JsonLayer, LineSink};
pub(crate) use settings::{LogConfig, LogSettings};
pub use settings::{LogFormat, DEFAULT_LOG_BUFFER_BYTES, DEFAULT_LOG_FILTER};
pub use writer::LogWriter;

/// `t` as RFC 3339 UTC with microseconds, the format of the `timestamp` field of every line.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_micros(1_798_378_152_123_456);
/// assert_eq!(obs::logs::format_rfc3339(t), "2026-12-27T13:29:12.123456Z");
/// ```
pub fn format_rfc3339(t: std::time::SystemTime) -> String {
    let mut out = Vec::with_capacity(27);
    timestamp::write_rfc3339_micros(&mut out, t);
    String::from_utf8(out).unwrap_or_default()
}

/// The log filter (`RUST_LOG`), which also decides which spans are traced.
pub(crate) fn filter(settings: &LogSettings) -> RequestScopeFilter {
    RequestScopeFilter(settings.env_filter())
}

/// Builds the configured log layer (format) writing to `sink`.
pub(crate) fn layer<S, W>(settings: &LogSettings, sink: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: LineSink + Clone,
{
    match settings.format {
        LogFormat::Json => JsonLayer::new(sink, &settings.service_name).boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_ansi(io::stdout().is_terminal())
            .with_writer(PrettyWriter(sink))
            .boxed(),
    }
}

/// Installs the `tracing-log` bridge: `log` records become `tracing` events (target: the
/// record's), up to the level `RUST_LOG` can let through (`None`: every level). Installed once
/// per process, by `init()` or `obs::test`, whichever comes first; false when a `log` logger of
/// someone else's was installed before (it is kept).
pub(crate) fn install_log_bridge(settings: Option<&LogSettings>) -> bool {
    use tracing_log::AsLog;
    static BRIDGED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let max = settings
        .and_then(|s| Filter::<tracing_subscriber::Registry>::max_level_hint(&filter(s)))
        .unwrap_or(LevelFilter::TRACE)
        .as_log();
    let mut bridged = crate::sync::lock(&BRIDGED);
    if *bridged {
        // Each subscriber filters for itself: the records' level is only ever raised.
        log::set_max_level(max.max(log::max_level()));
        return true;
    }
    *bridged = tracing_log::LogTracer::builder()
        .with_max_level(max)
        .init()
        .is_ok();
    *bridged
}

/// Adapts a [`LineSink`] to `fmt`'s `MakeWriter`: each event is buffered and sent as one line.
#[derive(Clone)]
struct PrettyWriter<W>(W);

struct PrettyLine<'a, W: LineSink>(&'a W, Vec<u8>);

impl<'a, W: LineSink> MakeWriter<'a> for PrettyWriter<W> {
    type Writer = PrettyLine<'a, W>;
    fn make_writer(&'a self) -> Self::Writer {
        PrettyLine(&self.0, Vec::with_capacity(256))
    }
}

impl<W: LineSink> io::Write for PrettyLine<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.1.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: LineSink> Drop for PrettyLine<'_, W> {
    fn drop(&mut self) {
        if !self.1.is_empty() {
            self.0.write_line(&self.1);
        }
    }
}

/// The log filter (`RUST_LOG`) for events and user spans, but the request span is always kept:
/// its fields (`request_id`, route, ...) must reach every line of the request even when
/// `RUST_LOG=warn` filters out INFO.
pub(crate) struct RequestScopeFilter(pub EnvFilter);

impl RequestScopeFilter {
    fn is_request_span(meta: &Metadata<'_>) -> bool {
        crate::request::is_request_span(meta)
    }
}

impl<S: Subscriber> Filter<S> for RequestScopeFilter {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        Self::is_request_span(meta) || Filter::<S>::enabled(&self.0, meta, cx)
    }
    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::is_request_span(meta) {
            Interest::always()
        } else {
            Filter::<S>::callsite_enabled(&self.0, meta)
        }
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&self.0).map(|l| l.max(LevelFilter::INFO))
    }
    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        Filter::<S>::event_enabled(&self.0, event, cx)
    }
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        Filter::<S>::on_new_span(&self.0, attrs, id, ctx);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        Filter::<S>::on_record(&self.0, id, values, ctx);
    }
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        Filter::<S>::on_enter(&self.0, id, ctx);
    }
    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        Filter::<S>::on_exit(&self.0, id, ctx);
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        Filter::<S>::on_close(&self.0, id, ctx);
    }
}
