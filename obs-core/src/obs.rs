//! [`Obs`], the guard: building obs from its settings (the layers, the export thread, Sentry,
//! the admin server), [`Config::init`] and [`Config::into_layers`], and the flush at shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing_subscriber::Layer;

use crate::config::{Config, Settings};
use crate::db::DbLayer;
use crate::error::Error;
use crate::http::ObsLayer;
use crate::job::Job;
use crate::logs::{self, LineSink, LogWriter};
use crate::metrics::{self, Labels, Metrics};
use crate::readiness::Readiness;
use crate::shared::Shared;
use crate::shutdown::ShutdownSignal;
use crate::sync::lock;
use crate::{env, panic, report, request, trace};

/// Set once the global `init()` succeeded.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// The most of a shutdown's time kept for flushing the log lines (a tenth of it, up to this).
const LOG_FLUSH_RESERVE: Duration = Duration::from_millis(500);

/// How long `Drop` of [`Obs`] may spend flushing.
const DROP_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

impl Config {
    /// Installs obs with this configuration: the global subscriber, the panic hook and, inside a
    /// tokio runtime, the admin server. Bad values produce warning lines, never an error.
    ///
    /// ```
    /// let obs = obs::Config::new().service_name("api").disable_admin().init().unwrap();
    /// obs.shutdown(std::time::Duration::from_secs(1));
    /// ```
    pub fn init(self) -> Result<Obs, Error> {
        use tracing_subscriber::layer::SubscriberExt;
        // Checked first, so that a refused init() leaves no global behind.
        if INITIALIZED.load(Ordering::SeqCst) {
            return Err(Error::AlreadyInitialized);
        }
        if global_subscriber_set() {
            return Err(Error::SubscriberAlreadySet);
        }
        let (obs, layers, settings) = self.install(true)?;
        let subscriber = tracing_subscriber::registry().with(layers);
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            INITIALIZED.store(false, Ordering::SeqCst);
            return Err(Error::SubscriberAlreadySet);
        }
        obs.announce(&settings);
        Ok(obs)
    }

    /// Everything [`Config::init`] installs except the global subscriber: the guard, and obs'
    /// layers for a subscriber the service assembles itself. Put the layers first, directly on
    /// the registry; what comes after them sees obs' spans and ids.
    ///
    /// ```
    /// use tracing_subscriber::layer::SubscriberExt;
    /// use tracing_subscriber::util::SubscriberInitExt;
    ///
    /// let (obs, layers) = obs::Config::new().disable_admin().into_layers().unwrap();
    /// tracing_subscriber::registry()
    ///     .with(layers)
    ///     .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)) // your own
    ///     .init();
    /// tracing::info!("one JSON line on stdout, one text line on stderr");
    /// obs.shutdown(std::time::Duration::from_secs(1));
    /// ```
    ///
    /// The configuration line (`obs initialized`, and any warnings) is written to obs' log
    /// output at once, before the subscriber exists. The `log` bridge is left to the
    /// subscriber's `init()`: tracing-subscriber's installs it (its default `tracing-log`
    /// feature), and a second one would make that `init()` fail.
    pub fn into_layers(self) -> Result<(Obs, Layers), Error> {
        let (obs, layers, settings) = self.install(false)?;
        // The configuration line goes to obs' own log output now: the service's subscriber
        // does not exist yet.
        if let Some(writer) = &obs.writer {
            use tracing_subscriber::layer::SubscriberExt;
            let announce =
                tracing_subscriber::registry().with(logs::layer(&settings.log, writer.clone()));
            tracing::subscriber::with_default(announce, || obs.announce(&settings));
        }
        Ok((obs, layers))
    }

    /// The global parts: the OpenTelemetry globals, Sentry's main hub, the panic hook, the
    /// `log` bridge (`bridge_log`, when configured) and, inside a tokio runtime, the admin server.
    fn install(mut self, bridge_log: bool) -> Result<(Obs, Layers, Settings), Error> {
        if INITIALIZED.swap(true, Ordering::SeqCst) {
            return Err(Error::AlreadyInitialized);
        }
        let mut settings = Settings::from_env(&self);
        let extra = std::mem::take(&mut self.layers);
        let writer = LogWriter::spawn(std::io::stdout(), settings.log.buffer_bytes);
        let (obs, layers) = Obs::build(&settings, writer.clone(), Some(writer), true);
        panic::install_hook();
        if bridge_log && settings.log.bridge && !logs::install_log_bridge(Some(&settings.log)) {
            settings.warnings.push(
                "`log` records are not bridged: a `log` logger was installed before obs \
                 (Config::disable_log_bridge() says that is intended)"
                    .to_owned(),
            );
        }
        obs.start_admin(&settings);
        // Without extra layers, obs' alone: an empty `Vec` layer (or a `None` one) takes part
        // in callsite interest and level hints, and can silence all of obs.
        let layers: Layers = if extra.is_empty() {
            Box::new(layers)
        } else {
            Box::new(layers.and_then(extra))
        };
        Ok((obs, layers, settings))
    }
}

/// Whether a global `tracing` subscriber is set. Asked from a new thread, which has no scoped
/// default (`tracing::dispatcher::has_been_set` also counts scoped ones, as `obs::test` sets).
fn global_subscriber_set() -> bool {
    std::thread::spawn(|| {
        tracing::dispatcher::get_default(|d| !d.is::<tracing_core::subscriber::NoSubscriber>())
    })
    .join()
    .unwrap_or(false)
}

/// obs' `tracing` layers, from [`Config::into_layers`]: for the registry
/// (`tracing_subscriber::registry().with(layers)`), before any other layer.
pub type Layers = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The obs guard returned by [`crate::init`]. Keep it alive for the life of the service; dropping it
/// (or calling [`Obs::shutdown`]) flushes buffered logs.
#[must_use = "dropping the guard shuts obs down: keep it for the life of the service"]
pub struct Obs {
    shared: Arc<Shared>,
    writer: Option<LogWriter>,
    #[cfg(feature = "axum")]
    admin: Mutex<Option<crate::admin::Server>>,
    admin_addr: Mutex<Option<SocketAddr>>,
    /// The OTLP export thread.
    workers: Vec<trace::Worker>,
    /// The OpenTelemetry tracer provider (also the global one after `init()`).
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
    /// Spans dropped since the start (queue full, export failed, unsent at the deadline).
    spans_dropped: Option<Arc<std::sync::atomic::AtomicU64>>,
    shut_down: AtomicBool,
}

impl Obs {
    /// Builds the guard and its subscriber. `global`: the OpenTelemetry globals and Sentry's
    /// main hub (with its panic integration) are installed too.
    pub(crate) fn build<W, S>(
        settings: &Settings,
        sink: W,
        writer: Option<LogWriter>,
        global: bool,
    ) -> (Obs, impl Layer<S> + Send + Sync)
    where
        W: LineSink + Clone,
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        let mut workers = Vec::new();
        let mut counters = Vec::new();
        let dropped_from = writer.clone();
        counters.push(metrics::DropCounter {
            name: metrics::names::OBS_LOG_LINES_DROPPED_TOTAL,
            help: "Log lines dropped because the log queue was full or stdout failed.",
            read: Box::new(move || dropped_from.as_ref().map_or(0, LogWriter::dropped)),
        });

        let resource = trace::resource(&settings.service);
        let mut pipeline = trace::Pipeline::start(&settings.trace, resource);
        if global {
            pipeline.install_globals(&settings.trace);
        }
        let spans_dropped = pipeline.dropped.take();
        let dropped_spans = spans_dropped.clone();
        workers.extend(pipeline.worker.take());
        counters.push(metrics::DropCounter {
            name: metrics::names::OBS_SPANS_DROPPED_TOTAL,
            help: "Spans dropped because the export queue was full or an OTLP export failed.",
            read: Box::new(move || {
                spans_dropped
                    .as_ref()
                    .map_or(0, |d| d.load(Ordering::Relaxed))
            }),
        });

        let sentry = settings
            .sentry
            .as_ref()
            .map(|s| report::Reporter::start(s, &settings.service.name, global));
        #[cfg(feature = "sentry")]
        let sentry_layers = sentry.is_some().then(report::layers);
        #[cfg(not(feature = "sentry"))]
        let sentry_layers = None::<tracing_subscriber::layer::Identity>;

        let otel_layer = pipeline.provider_layer();
        // sqlx's statements as spans only when spans leave the process.
        let db_tracer = (!workers.is_empty()).then(|| {
            use opentelemetry::trace::TracerProvider as _;
            pipeline.provider.tracer("obs.db")
        });
        let shared = Arc::new(Shared {
            metrics: Metrics::new(&settings.metrics, &settings.service, counters),
            ready: Readiness::default(),
            #[cfg(feature = "axum")]
            metrics_token: settings.metrics_token.clone(),
            propagator: pipeline.propagator,
            sentry,
            warned_malformed_parent: AtomicBool::new(false),
        });
        // One filter (RUST_LOG) for spans, log lines and Sentry: what is not logged is not
        // traced or reported either, and disabled callsites cost nothing.
        let db_layer = settings.db.sqlx.then(|| {
            let max = settings.metrics.max_label_sets;
            DbLayer::new(&settings.db, max, Arc::clone(&shared.metrics.db), db_tracer).filtered()
        });
        let layers = otel_layer
            .and_then(logs::layer(&settings.log, sink))
            .and_then(sentry_layers)
            .with_filter(logs::filter(&settings.log))
            // sqlx's statements whatever the log filter says (the layer filters for itself).
            .and_then(db_layer);
        let obs = Obs {
            shared,
            writer,
            #[cfg(feature = "axum")]
            admin: Mutex::new(None),
            admin_addr: Mutex::new(None),
            workers,
            provider: pipeline.provider,
            spans_dropped: dropped_spans,
            shut_down: AtomicBool::new(false),
        };
        (obs, layers)
    }

    /// Logs the configuration warnings, then one line with the effective configuration.
    fn announce(&self, settings: &Settings) {
        for warning in &settings.warnings {
            tracing::warn!(target: "obs::config", "{warning}");
        }
        let admin = self
            .admin_addr()
            .map_or_else(|| "off".to_owned(), |a| a.to_string());
        tracing::info!(
            target: "obs",
            {
                service.version = settings.service.version.as_deref(),
                log.format = settings.log.format.as_str(),
                log.filter = %settings.log.filter,
                admin.addr = %admin,
                metrics.auth = if settings.metrics_token.is_some() { "bearer token" } else { "none" },
                otlp.endpoint = settings.trace.otlp.as_ref().map(|o| env::redact_url(&o.url)),
                otlp.protocol = settings.trace.otlp.as_ref().map(|o| o.protocol.as_str()),
                otlp.compression = settings.trace.otlp.as_ref().map(|o| if o.gzip { "gzip" } else { "none" }),
                traces.sampler = %settings.trace.sampler,
                sentry = settings.sentry.as_ref().map(report::SentrySettings::redacted_dsn),
                sentry.environment = settings.sentry.as_ref().map(report::SentrySettings::environment),
            },
            "obs initialized"
        );
    }

    /// The middleware: request id, panic catch, request span, RED metrics, completion line.
    ///
    /// ```
    /// let obs = obs::test::init();
    /// let app: axum::Router = axum::Router::new().layer(obs.layer());
    /// # let _ = app;
    /// ```
    pub fn layer(&self) -> ObsLayer {
        ObsLayer::new(Arc::clone(&self.shared))
    }

    /// The middleware for actix-web 4 (feature `actix`): `App::new().wrap(obs.actix())` gives
    /// what [`Obs::layer`] gives a tower service. See [`crate::actix`].
    ///
    /// ```
    /// let obs = obs::test::init();
    /// let app = actix_web::App::new().wrap(obs.actix());
    /// # let _ = app;
    /// ```
    #[cfg(feature = "actix")]
    pub fn actix(&self) -> crate::actix::ObsActix {
        crate::actix::ObsActix::new(Arc::clone(&self.shared))
    }

    /// A job (a unit of work that is not an HTTP request) named `name`, the queue or task type
    /// (`messaging.destination.name`): [`Job::run`] runs its future with a span, `job_id` and
    /// `job_name` on its log lines, `messaging_process_duration_seconds` and its own Sentry hub.
    /// See [`crate::job`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let obs = obs::test::init();
    /// let failed = obs
    ///     .job("charge_card")
    ///     .run(async { Err::<(), _>("card declined") })
    ///     .await;
    /// assert!(failed.is_err());
    /// assert!(obs.metrics_text().contains(r#"error_type="&str""#));
    /// # });
    /// ```
    pub fn job(&self, name: impl Into<std::borrow::Cow<'static, str>>) -> Job {
        Job::new(Arc::clone(&self.shared), name.into())
    }

    /// The admin endpoints as a router, to mount by hand (e.g. with `OBS_ADMIN_ADDR=off`):
    /// `GET /metrics`, `GET /healthz` (200 while the process runs), `GET /readyz` (200 when
    /// ready, 503 once shutdown began or after `set_ready(false)`).
    ///
    /// ```
    /// let obs = obs::test::init();
    /// let admin: axum::Router = obs.admin_router();
    /// # let _ = admin;
    /// ```
    #[cfg(feature = "axum")]
    pub fn admin_router(&self) -> axum::Router {
        crate::admin::router(Arc::clone(&self.shared))
    }

    /// The address the admin server listens on, if it runs.
    ///
    /// ```
    /// let obs = obs::test::init();
    /// assert_eq!(obs.admin_addr(), None); // tests never bind ports
    /// ```
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        *lock(&self.admin_addr)
    }

    /// obs' Prometheus registry. `/metrics` serves it together with the `prometheus` crate's
    /// default registry, so business metrics can be registered in either: here, or the usual
    /// way with `prometheus::register_int_counter!` and friends. Use the `prometheus` version
    /// obs is built on (re-exported as [`obs::prometheus`](crate::prometheus)): metrics of
    /// another version are other types, and another version's default registry is another
    /// registry, which `/metrics` does not see.
    ///
    /// ```
    /// use obs::prometheus::{register_int_counter, IntCounter};
    ///
    /// let obs = obs::test::init();
    /// let orders = IntCounter::new("orders_total", "Orders placed.").unwrap();
    /// obs.registry().register(Box::new(orders.clone())).unwrap();
    /// let refunds = register_int_counter!("refunds_total", "Refunds issued.").unwrap();
    /// orders.inc();
    /// refunds.inc();
    /// let page = obs.metrics_text();
    /// assert!(page.contains("orders_total 1") && page.contains("refunds_total 1"));
    /// ```
    pub fn registry(&self) -> &prometheus::Registry {
        &self.shared.metrics.registry
    }

    /// The `/metrics` page: Prometheus text format ([`metrics::CONTENT_TYPE`]).
    ///
    /// ```
    /// let obs = obs::test::init();
    /// assert!(obs.metrics_text().contains("obs_build_info"));
    /// ```
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.render()
    }

    /// The `/metrics` page for a scraper's `Accept` header, with its Content-Type: OpenMetrics
    /// 1.0 when the scraper asks for it (Prometheus does), with the latest sampled request of
    /// each latency bucket as its exemplar (`trace_id`, `span_id`) when spans are exported;
    /// else text format 0.0.4, as [`Obs::metrics_text`]. For a service that serves `/metrics`
    /// on its own router rather than obs' admin server.
    ///
    /// ```
    /// let obs = obs::test::init();
    /// let (content_type, page) = obs.metrics_page("application/openmetrics-text;version=1.0.0");
    /// assert!(content_type.starts_with("application/openmetrics-text"));
    /// assert!(page.ends_with("# EOF\n"));
    /// let (content_type, _) = obs.metrics_page("text/plain");
    /// assert_eq!(content_type, obs::metrics::CONTENT_TYPE);
    /// ```
    pub fn metrics_page(&self, accept: &str) -> (&'static str, String) {
        self.shared.metrics.negotiate(accept)
    }

    /// [`Obs::metrics_page`] for a scrape request's headers (its `Accept`), for a `/metrics`
    /// handler of the service's own router.
    ///
    /// ```
    /// let obs = obs::test::init();
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("accept", "application/openmetrics-text;version=1.0.0".parse().unwrap());
    /// let (content_type, _) = obs.metrics_response(&headers);
    /// assert!(content_type.starts_with("application/openmetrics-text"));
    /// ```
    pub fn metrics_response(&self, request_headers: &::http::HeaderMap) -> (&'static str, String) {
        self.metrics_page(metrics::accept(request_headers))
    }

    /// Records one request handled outside `obs.layer()` (a server without tower, a custom
    /// server loop, a queue consumer speaking HTTP semantics) in the same RED metrics, with the
    /// same bounded labels. Give the route template, never the raw path. Called inside a
    /// request that `obs.layer()` handles, it records nothing and returns `false`: the layer
    /// counts that request already.
    ///
    /// ```
    /// use std::time::Duration;
    /// let obs = obs::test::init();
    /// let counted = obs.record_request(&http::Method::GET, Some("/jobs/{id}"), 200, Duration::from_millis(12));
    /// assert!(counted);
    /// assert!(obs.metrics_text().contains(r#"http_route="/jobs/{id}""#));
    /// ```
    pub fn record_request(
        &self,
        method: &::http::Method,
        route: Option<&str>,
        status: u16,
        duration: Duration,
    ) -> bool {
        if request::is_polling() {
            return false;
        }
        let outcome = request::Outcome::Status(status);
        let labels = Labels {
            method: request::Method::of(method),
            scheme: request::Scheme::Http,
            route,
        };
        let red = &self.shared.metrics.red;
        red.observe(&labels, outcome, duration.as_secs_f64(), None);
        true
    }

    /// Marks the service ready or not for `/readyz`.
    ///
    /// A service starts not ready (503) and becomes ready when its server first polls
    /// [`Obs::shutdown_signal`], which axum's `with_graceful_shutdown` and the actix pattern
    /// in the README do once they serve: a service that follows the README needs no call. A
    /// service of another shape (a worker, a hand-made accept loop) says `set_ready(true)` once
    /// it does its work. `set_ready(false)` (warming caches, a lost dependency) holds until
    /// `set_ready(true)`, whatever the signal's first poll. Once shutdown began (the signal or
    /// [`Obs::shutdown`]), `/readyz` answers 503 for good and this call changes nothing.
    ///
    /// ```
    /// let obs = obs::test::init();
    /// obs.set_ready(false); // e.g. while warming caches
    /// obs.set_ready(true); // warm: take traffic
    /// ```
    pub fn set_ready(&self, ready: bool) {
        self.shared.ready.set(ready);
    }

    /// What `/readyz` answers now (`true`: 200), for a probe served by a server of the
    /// service's own (see [`Obs::set_ready`]).
    ///
    /// ```
    /// let obs = obs::test::init();
    /// assert!(!obs.is_ready(), "nothing serves yet");
    /// obs.set_ready(true);
    /// assert!(obs.is_ready());
    /// ```
    pub fn is_ready(&self) -> bool {
        self.shared.ready.is_ready()
    }

    /// A future that resolves when the process is asked to stop (SIGTERM, which Kubernetes,
    /// systemd and `docker stop` send, or Ctrl-C), for a server's graceful shutdown. Its first
    /// poll, which a server makes once it serves, turns `/readyz` to 200 (see
    /// [`Obs::set_ready`]); it answers 503 from the moment the signal arrives, so a load
    /// balancer stops sending while the server finishes the requests in flight; then call
    /// [`Obs::shutdown`] to flush.
    ///
    /// ```no_run
    /// # async fn run(app: axum::Router) -> std::io::Result<()> {
    /// let obs = obs::init().unwrap();
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
    /// axum::serve(listener, app)
    ///     .with_graceful_shutdown(obs.shutdown_signal())
    ///     .await?;
    /// obs.shutdown(std::time::Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    ///
    /// A request that never ends holds axum's drain: bound handlers with
    /// `tower_http::timeout::TimeoutLayer`.
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        ShutdownSignal::new(Arc::clone(&self.shared))
    }

    /// Flushes and stops obs, never taking longer than `timeout`: `/readyz` turns 503, spans
    /// and Sentry events are sent, the admin server stops, a last line ("obs shut down") says
    /// what was flushed and dropped, and every log line buffered so far is written. Idempotent; works inside or
    /// outside a tokio runtime (of either flavour).
    ///
    /// ```
    /// let obs = obs::test::init();
    /// obs.shutdown(std::time::Duration::from_secs(2));
    /// obs.shutdown(std::time::Duration::from_secs(2)); // no-op
    /// ```
    pub fn shutdown(&self, timeout: Duration) {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let started = Instant::now();
        // The log lines are flushed last and get a share of the time of their own, so that
        // a hanging backend cannot cost the service its logs too.
        let deadline = started + timeout - (timeout / 10).min(LOG_FLUSH_RESERVE);
        let log_deadline = started + timeout;
        self.shared.ready.drain();
        // Spans and Sentry events flush in parallel, then the log lines (which may include
        // their failure reports). The admin server answers until then: `/readyz` says 503
        // rather than refusing connections, and a last scrape sees the final counts.
        for worker in &self.workers {
            worker.stop();
        }
        let sentry_flushed = self
            .shared
            .sentry
            .as_ref()
            .map(|sentry| sentry.close(deadline.saturating_duration_since(Instant::now())));
        let unflushed = self.workers.iter().filter(|w| !w.wait(deadline)).count();
        let spans_flushed = unflushed == 0;
        // The provider's processors are obs' own (flushed above): this only marks it shut down.
        let _ = self.provider.shutdown_with_timeout(Duration::ZERO);
        #[cfg(feature = "axum")]
        if let Some(server) = lock(&self.admin).take() {
            server.stop();
        }
        tracing::info!(
            target: "obs",
            {
                shutdown.ms = started.elapsed().as_millis() as u64,
                spans.flushed = spans_flushed,
                spans.dropped = self.spans_dropped.as_ref().map(|d| d.load(Ordering::Relaxed)),
                sentry.flushed = sentry_flushed,
            },
            "obs shut down"
        );
        if let Some(writer) = &self.writer {
            writer.flush(log_deadline.saturating_duration_since(Instant::now()));
        }
    }

    /// Starts the admin server when configured and a tokio runtime is present.
    fn start_admin(&self, settings: &Settings) {
        let Some(addr) = settings.admin_addr else {
            return;
        };
        #[cfg(feature = "axum")]
        match crate::admin::Server::start(addr, Arc::clone(&self.shared)) {
            Ok(server) => {
                *lock(&self.admin_addr) = Some(server.addr());
                *lock(&self.admin) = Some(server);
            }
            Err(why) => tracing::warn!(
                target: "obs::admin",
                "admin server not started on {addr}: {why}; /metrics is still available through Obs::admin_router()"
            ),
        }
        #[cfg(not(feature = "axum"))]
        tracing::warn!(target: "obs::admin", "admin server on {addr} needs the `axum` feature; not started");
    }
}

impl Drop for Obs {
    fn drop(&mut self) {
        self.shutdown(DROP_FLUSH_TIMEOUT);
    }
}

impl std::fmt::Debug for Obs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Obs")
            .field("admin_addr", &self.admin_addr())
            .finish_non_exhaustive()
    }
}
