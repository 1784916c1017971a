//! Configuration: code > environment > defaults.
//!
//! [`Config`] is the builder for the 1% who need more than [`crate::init`]. Every setting has an
//! environment variable and a safe default; a bad value never fails start-up,
//! it produces one warning line (logged once logging is up) and the default.
//!
//! ```
//! use std::time::Duration;
//!
//! let obs = obs::Config::new()
//!     .service_name("checkout")
//!     .service_version("1.4.2")
//!     .log_filter("info,tower=warn")
//!     .disable_admin()
//!     .init()
//!     .expect("first init");
//! obs.shutdown(Duration::from_secs(1));
//! ```

use std::net::SocketAddr;

use crate::env::{bad_value, var, Env, Lookup};
use crate::logs::{LogConfig, LogSettings};
use crate::metrics::{MetricsConfig, MetricsSettings};
use crate::report::{SentryConfig, SentrySettings};
use crate::resource::Service;
use crate::trace::{TraceConfig, TraceSettings};

pub use crate::logs::{LogFormat, DEFAULT_LOG_BUFFER_BYTES, DEFAULT_LOG_FILTER};
pub use crate::metrics::DEFAULT_MAX_LABEL_SETS;

/// The default admin address (`/metrics`, `/healthz`, `/readyz`).
pub const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:9464";

/// Where code put the admin server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admin {
    Off,
    At(SocketAddr),
}

/// The builder behind [`crate::init`]. Values set here win over the environment.
///
/// ```
/// let config = obs::Config::new().service_name("api").log_format(obs::LogFormat::Json);
/// # let _ = config;
/// ```
#[derive(Default)]
#[must_use]
pub struct Config {
    service_name: Option<String>,
    service_version: Option<String>,
    log: LogConfig,
    metrics: MetricsConfig,
    trace: TraceConfig,
    sentry: SentryConfig,
    /// `None`: as `OBS_ADMIN_ADDR` says.
    admin: Option<Admin>,
    metrics_token: Option<String>,
    /// `disable_sqlx`.
    sqlx_off: bool,
    /// `db_system`.
    db_system: Option<String>,
    /// Extra layers for obs' subscriber (`with_layer`).
    pub(crate) layers:
        Vec<Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>>,
}

/// Secrets (the metrics token, the Sentry DSN) show only whether they are set.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &Option<String>| if s.is_some() { "<redacted>" } else { "<unset>" };
        f.debug_struct("Config")
            .field("service_name", &self.service_name)
            .field("service_version", &self.service_version)
            .field("log_format", &self.log.format)
            .field("log_filter", &self.log.filter)
            .field("admin", &self.admin)
            .field("metrics_token", &set(&self.metrics_token))
            .field(
                "otlp_endpoint",
                &self.trace.endpoint.as_deref().map(crate::env::redact_url),
            )
            .field("sentry_dsn", &set(&self.sentry.dsn))
            .field("extra_layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A configuration that takes everything from the environment.
    ///
    /// ```
    /// let _ = obs::Config::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `service.name` (else `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, the executable name).
    ///
    /// ```
    /// let _ = obs::Config::new().service_name(env!("CARGO_PKG_NAME"));
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Sets `service.version` (else `service.version` from `OTEL_RESOURCE_ATTRIBUTES`).
    ///
    /// ```
    /// let _ = obs::Config::new().service_version(env!("CARGO_PKG_VERSION"));
    /// ```
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// Sets the log format (else `OBS_LOG_FORMAT`, default JSON).
    ///
    /// ```
    /// let _ = obs::Config::new().log_format(obs::LogFormat::Pretty);
    /// ```
    pub fn log_format(mut self, format: LogFormat) -> Self {
        self.log.format = Some(format);
        self
    }

    /// Sets the log filter in `RUST_LOG` syntax (else `RUST_LOG`, default `info`).
    ///
    /// ```
    /// let _ = obs::Config::new().log_filter("info,hyper=warn");
    /// ```
    pub fn log_filter(mut self, directives: impl Into<String>) -> Self {
        self.log.filter = Some(directives.into());
        self
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `addr` (else `OBS_ADMIN_ADDR`, default
    /// `0.0.0.0:9464`). Port 0 picks a free port; see [`crate::Obs::admin_addr`].
    ///
    /// ```
    /// let _ = obs::Config::new().admin_addr(([127, 0, 0, 1], 0).into());
    /// ```
    pub fn admin_addr(mut self, addr: SocketAddr) -> Self {
        self.admin = Some(Admin::At(addr));
        self
    }

    /// Does not start the admin server (same as `OBS_ADMIN_ADDR=off`); mount
    /// [`crate::Obs::admin_router`] yourself if you want the endpoints.
    ///
    /// ```
    /// let _ = obs::Config::new().disable_admin();
    /// ```
    pub fn disable_admin(mut self) -> Self {
        self.admin = Some(Admin::Off);
        self
    }

    /// Bounds the log buffer to `bytes` (default 16 MiB, at least 1 KiB: a smaller bound warns
    /// and is raised). When full, lines are dropped and counted in
    /// `obs_log_lines_dropped_total`; logging never blocks.
    ///
    /// ```
    /// let _ = obs::Config::new().log_buffer_bytes(1 << 20);
    /// ```
    pub fn log_buffer_bytes(mut self, bytes: usize) -> Self {
        self.log.buffer_bytes = Some(bytes);
        self
    }

    /// Replaces the request-duration histogram buckets (seconds, ascending). The default is the
    /// OpenTelemetry set plus `2`, which the default latency alert needs.
    ///
    /// ```
    /// let _ = obs::Config::new().histogram_buckets(&[0.01, 0.1, 1.0, 2.0, 10.0]);
    /// ```
    pub fn histogram_buckets(mut self, buckets: &[f64]) -> Self {
        self.metrics.buckets = Some(buckets.to_vec());
        self
    }

    /// Caps the distinct label sets of the request histogram (default 10,000; 0 warns and is
    /// taken as 1). Beyond it, new label sets are recorded with `http_route="_overflow"` and
    /// counted.
    ///
    /// ```
    /// let _ = obs::Config::new().max_label_sets(500);
    /// ```
    pub fn max_label_sets(mut self, max: usize) -> Self {
        self.metrics.max_label_sets = Some(max);
        self
    }

    /// Requires `Authorization: Bearer <token>` on the admin `/metrics` (else
    /// `OBS_METRICS_TOKEN`; default: open). `/healthz` and `/readyz` stay open for probes.
    ///
    /// ```
    /// let _ = obs::Config::new().metrics_token("s3cret");
    /// ```
    pub fn metrics_token(mut self, token: impl Into<String>) -> Self {
        self.metrics_token = Some(token.into());
        self
    }

    /// Exports spans over OTLP to this base URL (else `OTEL_EXPORTER_OTLP_ENDPOINT`); for
    /// http/protobuf `/v1/traces` is appended.
    ///
    /// ```
    /// let _ = obs::Config::new().otlp_endpoint("http://otel-collector:4318");
    /// ```
    pub fn otlp_endpoint(mut self, url: impl Into<String>) -> Self {
        self.trace.endpoint = Some(url.into());
        self
    }

    /// Sets the OTLP transport (else `OTEL_EXPORTER_OTLP_PROTOCOL`, default http/protobuf).
    ///
    /// ```
    /// let _ = obs::Config::new().otlp_protocol(obs::trace::Protocol::Grpc);
    /// ```
    pub fn otlp_protocol(mut self, protocol: crate::trace::Protocol) -> Self {
        self.trace.protocol = Some(protocol);
        self
    }

    /// Sets the sampler (else `OTEL_TRACES_SAMPLER`/`_ARG`, default parentbased_always_on).
    ///
    /// ```
    /// let _ = obs::Config::new().sampler(obs::trace::Sampler::TraceIdRatio(0.05));
    /// ```
    pub fn sampler(mut self, sampler: crate::trace::Sampler) -> Self {
        self.trace.sampler = Some(sampler);
        self
    }

    /// Sends errors and panics to Sentry at this DSN (else `SENTRY_DSN`). Never logged.
    ///
    /// ```
    /// let _ = obs::Config::new().sentry_dsn("https://key@o1.ingest.sentry.io/1");
    /// ```
    pub fn sentry_dsn(mut self, dsn: impl Into<String>) -> Self {
        self.sentry.dsn = Some(dsn.into());
        self
    }

    /// Sets the Sentry environment (else `SENTRY_ENVIRONMENT`, then the resource's
    /// `deployment.environment.name`, then `production`).
    ///
    /// ```
    /// let _ = obs::Config::new().sentry_environment("staging");
    /// ```
    pub fn sentry_environment(mut self, environment: impl Into<String>) -> Self {
        self.sentry.environment = Some(environment.into());
        self
    }

    /// Adds a layer to obs' subscriber, next to obs' own (tokio-console's, a file appender's, an
    /// error reporter's). It sees every span and event (`RUST_LOG` filters only obs' layers)
    /// and obs' request span is the parent of the handlers' spans, as in any subscriber.
    ///
    /// ```
    /// // A second, human-readable output to stderr, at debug level.
    /// let extra = tracing_subscriber::fmt::layer()
    ///     .with_writer(std::io::stderr)
    ///     .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG);
    /// # use tracing_subscriber::Layer;
    /// let obs = obs::Config::new().with_layer(extra).disable_admin().init().unwrap();
    /// # obs.shutdown(std::time::Duration::from_secs(1));
    /// ```
    pub fn with_layer<L>(mut self, layer: L) -> Self
    where
        L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
    {
        self.layers.push(Box::new(layer));
        self
    }

    /// Leaves `log` records alone: by default `init()` installs the `tracing-log` bridge, so
    /// `log::info!` and `log::error!` (of the service and its dependencies) become log lines
    /// with the request's ids, and Sentry events at error level. For services that install a
    /// `log` logger of their own.
    ///
    /// ```
    /// let config = obs::Config::new().disable_log_bridge();
    /// # let _ = config;
    /// ```
    pub fn disable_log_bridge(mut self) -> Self {
        self.log.bridge = false;
        self
    }

    /// Names the database sqlx talks to, for its spans and `db_client_operation_duration_seconds`
    /// (`db.system.name`: `postgresql`, `sqlite`, `mysql`, ...; sqlx's events do not say it).
    /// Default `other_sql`.
    ///
    /// ```
    /// let config = obs::Config::new().db_system("postgresql");
    /// # let _ = config;
    /// ```
    pub fn db_system(mut self, system: impl Into<String>) -> Self {
        self.db_system = Some(system.into());
        self
    }

    /// Leaves sqlx's `sqlx::query` events alone: by default each becomes a CLIENT span under
    /// the current span (when spans are exported) and an observation of
    /// `db_client_operation_duration_seconds`, whatever `RUST_LOG` says about `sqlx`.
    ///
    /// ```
    /// let config = obs::Config::new().disable_sqlx();
    /// # let _ = config;
    /// ```
    pub fn disable_sqlx(mut self) -> Self {
        self.sqlx_off = true;
        self
    }

    /// Resolves this configuration against `env`, collecting one warning per bad value: each
    /// subsystem resolves its own part, this only assembles them.
    pub(crate) fn resolve(&self, env: Lookup<'_>) -> Settings {
        let mut env = Env::new(env);
        let service = Service::resolve(
            self.service_name.as_deref(),
            self.service_version.as_deref(),
            &mut env,
        );
        let log = LogSettings::resolve(&self.log, &service.name, &mut env);
        let admin_addr = match self.admin {
            Some(Admin::Off) => None,
            Some(Admin::At(addr)) => Some(addr),
            None => admin_from_env(&mut env),
        };
        let mut trace = TraceSettings::resolve(&self.trace, &mut env);
        if cfg!(not(feature = "otlp")) && trace.otlp.take().is_some() {
            env.warn("an OTLP endpoint is set but obs was built without the `otlp` feature; spans are not exported".to_owned());
        }
        let metrics = MetricsSettings::resolve(&self.metrics, trace.otlp.is_some(), &mut env);
        let sentry = SentrySettings::resolve(&self.sentry, &service, &mut env);
        let metrics_token = self
            .metrics_token
            .clone()
            .or_else(|| env.get(var::OBS_METRICS_TOKEN))
            .map(|t| t.trim().to_owned());
        let db = DbSettings {
            sqlx: !self.sqlx_off,
            system: self
                .db_system
                .as_deref()
                .unwrap_or(DEFAULT_DB_SYSTEM)
                .into(),
        };
        Settings {
            service,
            log,
            metrics,
            trace,
            sentry,
            admin_addr,
            metrics_token,
            db,
            warnings: env.warnings,
        }
    }
}

/// `OBS_ADMIN_ADDR`: `host:port`, or `off`.
fn admin_from_env(env: &mut Env<'_>) -> Option<SocketAddr> {
    let default: SocketAddr = DEFAULT_ADMIN_ADDR.parse().expect("valid default");
    let Some(raw) = env.get(var::OBS_ADMIN_ADDR) else {
        return Some(default);
    };
    if raw.trim().eq_ignore_ascii_case("off") {
        return None;
    }
    Some(raw.trim().parse().unwrap_or_else(|_| {
        let why = r#"expected host:port (e.g. 127.0.0.1:9464) or "off""#;
        env.warn(bad_value(
            var::OBS_ADMIN_ADDR,
            &raw,
            why,
            DEFAULT_ADMIN_ADDR,
        ));
        default
    }))
}

/// The effective configuration after precedence and validation (holds secrets: no `Debug`).
#[derive(Clone)]
pub(crate) struct Settings {
    pub service: Service,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub trace: TraceSettings,
    pub sentry: Option<SentrySettings>,
    pub admin_addr: Option<SocketAddr>,
    /// Bearer token required on `/metrics` (never logged).
    pub metrics_token: Option<String>,
    pub db: DbSettings,
    pub warnings: Vec<String>,
}

/// The `db.system.name` of sqlx's queries unless `Config::db_system` names one (semconv's
/// fallback for an SQL database).
pub const DEFAULT_DB_SYSTEM: &str = "other_sql";

/// What to make of sqlx's query events (code only: no variable).
#[derive(Clone)]
pub(crate) struct DbSettings {
    /// Whether `sqlx::query` events become spans and observations.
    pub sqlx: bool,
    pub system: std::sync::Arc<str>,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env(config: &Config) -> Self {
        config.resolve(&|key| std::env::var(key).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semconv::DURATION_BUCKETS;

    fn resolve(config: &Config, vars: &[(&str, &str)]) -> Settings {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        config.resolve(&move |key| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_without_environment() {
        let s = resolve(&Config::new(), &[]);
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.log.filter, "info");
        assert_eq!(s.admin_addr, Some("0.0.0.0:9464".parse().unwrap()));
        assert_eq!(s.metrics.buckets, DURATION_BUCKETS);
        assert_eq!(s.metrics.max_label_sets, 10_000);
        assert!(!s.service.name.is_empty());
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn environment_is_read() {
        let s = resolve(
            &Config::new(),
            &[
                ("OTEL_SERVICE_NAME", "billing"),
                ("OBS_LOG_FORMAT", "Pretty"),
                ("RUST_LOG", "debug,hyper=warn"),
                ("OBS_ADMIN_ADDR", "127.0.0.1:9999"),
            ],
        );
        assert_eq!(s.service.name, "billing");
        assert_eq!(s.log.format, LogFormat::Pretty);
        assert_eq!(s.log.filter, "debug,hyper=warn");
        assert_eq!(s.admin_addr, Some("127.0.0.1:9999".parse().unwrap()));
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn code_wins_over_environment() {
        let config = Config::new()
            .service_name("from-code")
            .log_format(LogFormat::Json)
            .log_filter("warn")
            .disable_admin();
        let s = resolve(
            &config,
            &[
                ("OTEL_SERVICE_NAME", "from-env"),
                ("OBS_LOG_FORMAT", "pretty"),
                ("RUST_LOG", "trace"),
                ("OBS_ADMIN_ADDR", "127.0.0.1:1"),
            ],
        );
        assert_eq!(s.service.name, "from-code");
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.log.filter, "warn");
        assert_eq!(s.admin_addr, None);
    }

    #[test]
    fn admin_off() {
        let s = resolve(&Config::new(), &[("OBS_ADMIN_ADDR", "OFF")]);
        assert_eq!(s.admin_addr, None);
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn bad_values_warn_once_each_and_fall_back() {
        let s = resolve(
            &Config::new(),
            &[
                ("OBS_LOG_FORMAT", "xml"),
                ("RUST_LOG", "info,[[[=="),
                ("OBS_ADMIN_ADDR", "localhost:notaport"),
            ],
        );
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.log.filter, "info");
        assert_eq!(s.admin_addr, Some("0.0.0.0:9464".parse().unwrap()));
        assert_eq!(s.warnings.len(), 3, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("OBS_LOG_FORMAT") && s.warnings[0].contains("using json"));
        assert!(s.warnings[1].contains("RUST_LOG"));
        assert!(s.warnings[2].contains("OBS_ADMIN_ADDR") && s.warnings[2].contains("0.0.0.0:9464"));
    }

    #[test]
    fn a_huge_bad_value_is_shortened_in_the_warning() {
        let huge = "x".repeat(10_000);
        let s = resolve(&Config::new(), &[("OBS_LOG_FORMAT", &huge)]);
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].len() < 200, "{}", s.warnings[0]);
    }

    #[test]
    fn resource_attributes() {
        let s = resolve(
            &Config::new(),
            &[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=shop,service.version=2.0,deployment.environment.name=prod%20eu,broken",
            )],
        );
        assert_eq!(s.service.name, "shop");
        assert_eq!(s.service.version.as_deref(), Some("2.0"));
        assert_eq!(
            s.service.attributes,
            vec![(
                "deployment.environment.name".to_owned(),
                "prod eu".to_owned()
            )]
        );
        assert_eq!(s.warnings.len(), 1);
        // OTEL_SERVICE_NAME wins over the resource attribute, as the spec says.
        let s = resolve(
            &Config::new(),
            &[
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=shop"),
                ("OTEL_SERVICE_NAME", "cart"),
            ],
        );
        assert_eq!(s.service.name, "cart");
    }

    #[test]
    fn the_version_and_the_commit_say_what_is_deployed() {
        let s = resolve(
            &Config::new(),
            &[
                ("SENTRY_RELEASE", "shop@2.1"),
                ("OBS_VCS_REVISION", " abc123 "),
            ],
        );
        assert_eq!(s.service.version.as_deref(), Some("shop@2.1"));
        assert_eq!(
            s.service.attribute("vcs.ref.head.revision").as_deref(),
            Some("abc123")
        );
        // The resource wins over both; code wins over the resource.
        let env = [
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.version=1.2.0,vcs.ref.head.revision=def456",
            ),
            ("SENTRY_RELEASE", "shop@2.1"),
            ("OBS_VCS_REVISION", "abc123"),
        ];
        let s = resolve(&Config::new(), &env);
        assert_eq!(s.service.version.as_deref(), Some("1.2.0"));
        assert_eq!(
            s.service.attribute("vcs.ref.head.revision").as_deref(),
            Some("def456")
        );
        let s = resolve(&Config::new().service_version("9.9.9"), &env);
        assert_eq!(s.service.version.as_deref(), Some("9.9.9"));
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn bad_buckets_fall_back() {
        let s = resolve(&Config::new().histogram_buckets(&[1.0, 0.5]), &[]);
        assert_eq!(s.metrics.buckets, DURATION_BUCKETS);
        assert_eq!(s.warnings.len(), 1);
    }
}
