//! With the `sentry` feature: the reporter and the `sentry-tracing` layers.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use sentry::protocol::{Context, Event, TraceContext};
use sentry::{Client, ClientOptions, Hub};
use sentry_tracing::{BreadcrumbLayer, ErrorLayer};
use tracing_core::{Level, Metadata, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

pub(crate) use super::request::RequestHub;
pub(crate) use super::settings::SentrySettings;

/// Breadcrumbs kept per hub (the request's, or the process').
const MAX_BREADCRUMBS: usize = 50;

/// The Sentry client and the hub every request's hub starts from.
pub(crate) struct Reporter {
    client: Arc<Client>,
    hub: Arc<Hub>,
}

impl Reporter {
    /// The client for `settings`. `global`: bound to the process' main hub, with the panic
    /// integration (a process-wide hook); otherwise a hub of its own for `obs::test`.
    pub fn start(settings: &SentrySettings, service_name: &str, global: bool) -> Self {
        let mut options = ClientOptions::default();
        options.dsn = Some(settings.dsn.clone());
        options.release = settings.release.clone().map(Cow::Owned);
        options.environment = Some(Cow::Owned(settings.environment.clone()));
        options.max_breadcrumbs = MAX_BREADCRUMBS;
        options.send_default_pii = false;
        options.default_integrations = global;
        options.before_send = Some(Arc::new(with_trace_context));
        options.transport = Some(Arc::new(super::transport::Factory {
            redacted_dsn: settings.redacted_dsn(),
        }));
        if !global {
            use sentry::integrations::backtrace::{
                AttachStacktraceIntegration, ProcessStacktraceIntegration,
            };
            options.integrations = vec![
                Arc::new(AttachStacktraceIntegration),
                Arc::new(sentry::integrations::contexts::ContextIntegration::default()),
                Arc::new(ProcessStacktraceIntegration),
            ];
        }
        let client = Arc::new(Client::from(sentry::apply_defaults(options)));
        let hub = if global {
            let main = Hub::main();
            main.bind_client(Some(Arc::clone(&client)));
            main
        } else {
            Arc::new(Hub::new(Some(Arc::clone(&client)), Default::default()))
        };
        let service_name = service_name.to_owned();
        hub.configure_scope(|scope| scope.set_tag("service.name", service_name));
        Self { client, hub }
    }

    /// A new hub for one request, on top of the reporter's.
    pub fn request_hub(&self, info: Arc<crate::request::RequestInfo>) -> RequestHub {
        RequestHub::new(&self.hub, info)
    }

    /// A new hub for one job, on top of the reporter's.
    pub fn job_hub(&self, info: Arc<crate::request::JobInfo>) -> super::JobHub {
        super::JobHub::new(&self.hub, info)
    }

    /// Sends what is queued, returning within `timeout` whether all was sent: the crate's transport can block on
    /// a hanging Sentry (its shutdown waits for the request in flight), so it is closed from a
    /// thread of its own and left behind at the deadline.
    pub fn close(&self, timeout: Duration) -> bool {
        let client = Arc::clone(&self.client);
        let (done, finished) = std::sync::mpsc::channel();
        let closing = std::thread::Builder::new()
            .name("obs-sentry-close".to_owned())
            .spawn(move || {
                let _ = done.send(client.close(Some(timeout)));
            });
        closing.is_ok() && finished.recv_timeout(timeout).unwrap_or(false)
    }
}

/// The `sentry-tracing` layers: `error!` -> event, `warn!`/`info!` -> breadcrumb. obs' own
/// request-completed line and panic line are left out (the middleware and the panic integration
/// report those, once), and so are the transport's lines about Sentry itself.
pub(crate) fn layers<S>() -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    fn own(meta: &Metadata<'_>) -> bool {
        matches!(
            meta.target(),
            crate::request::TARGET
                | crate::request::JOB_TARGET
                | crate::panic::TARGET
                | super::transport::TARGET
        )
    }
    let errors =
        ErrorLayer::new().with_filter(filter_fn(|m| *m.level() == Level::ERROR && !own(m)));
    let crumbs = BreadcrumbLayer::new().with_filter(filter_fn(|m| {
        matches!(*m.level(), Level::WARN | Level::INFO) && m.is_event() && !own(m)
    }));
    errors.and_then(crumbs)
}

/// Every event gets the active OpenTelemetry span's trace context and a `trace_id` tag, so
/// Sentry links it to the trace and to the log lines, and, captured while a request is polled,
/// that request's tags, method and path (a job's: its id, name and system).
fn with_trace_context(mut event: Event<'static>) -> Option<Event<'static>> {
    if let Some(info) = crate::request::current() {
        event = super::request::with_request(event, &info);
    }
    if let Some(info) = crate::request::current_job() {
        event = super::job::with_job(event, &info);
    }
    let ids = crate::trace::context::with_current(Clone::clone);
    if let Some(sc) = ids {
        event
            .tags
            .entry("trace_id".to_owned())
            .or_insert_with(|| sc.trace_id().to_string());
        let trace = TraceContext {
            trace_id: sc.trace_id().to_bytes().into(),
            span_id: sc.span_id().to_bytes().into(),
            ..TraceContext::default()
        };
        event
            .contexts
            .insert("trace".to_owned(), Context::Trace(Box::new(trace)));
    }
    Some(event)
}
