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

use tracing_subscriber::EnvFilter;

use crate::metrics::names::DURATION_BUCKETS;

/// The default admin address (`/metrics`, `/healthz`, `/readyz`).
pub const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:9464";
/// The default log filter when `RUST_LOG` is unset or invalid.
pub const DEFAULT_LOG_FILTER: &str = "info";
/// Default bound of the log buffer, in bytes. A full buffer drops (and counts) lines, never blocks.
pub const DEFAULT_LOG_BUFFER_BYTES: usize = 16 * 1024 * 1024;
/// Default cap on distinct label sets per metric; beyond it routes fold into `_overflow`.
pub const DEFAULT_MAX_LABEL_SETS: usize = 10_000;

/// How log lines are rendered on stdout (`OBS_LOG_FORMAT`).
///
/// ```
/// assert_eq!("pretty".parse::<obs::LogFormat>(), Ok(obs::LogFormat::Pretty));
/// assert!("xml".parse::<obs::LogFormat>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line (the default).
    #[default]
    Json,
    /// Human-readable lines for local development.
    Pretty,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "pretty" => Ok(LogFormat::Pretty),
            _ => Err(r#"expected "json" or "pretty""#.to_owned()),
        }
    }
}

impl LogFormat {
    fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        }
    }
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
    pub(crate) service_name: Option<String>,
    pub(crate) service_version: Option<String>,
    pub(crate) log_format: Option<LogFormat>,
    pub(crate) log_filter: Option<String>,
    pub(crate) admin_addr: Option<Option<SocketAddr>>,
    pub(crate) log_buffer_bytes: Option<usize>,
    pub(crate) buckets: Option<Vec<f64>>,
    pub(crate) max_label_sets: Option<usize>,
    pub(crate) metrics_token: Option<String>,
    pub(crate) trace: crate::trace::TraceConfig,
    pub(crate) sentry_dsn: Option<String>,
    pub(crate) sentry_environment: Option<String>,
    pub(crate) log_bridge: Option<bool>,
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
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("admin_addr", &self.admin_addr)
            .field("metrics_token", &set(&self.metrics_token))
            .field(
                "otlp_endpoint",
                &self.trace.endpoint.as_deref().map(crate::trace::redact_url),
            )
            .field("sentry_dsn", &set(&self.sentry_dsn))
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
        self.log_format = Some(format);
        self
    }

    /// Sets the log filter in `RUST_LOG` syntax (else `RUST_LOG`, default `info`).
    ///
    /// ```
    /// let _ = obs::Config::new().log_filter("info,hyper=warn");
    /// ```
    pub fn log_filter(mut self, directives: impl Into<String>) -> Self {
        self.log_filter = Some(directives.into());
        self
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `addr` (else `OBS_ADMIN_ADDR`, default
    /// `0.0.0.0:9464`). Port 0 picks a free port; see [`crate::Obs::admin_addr`].
    ///
    /// ```
    /// let _ = obs::Config::new().admin_addr(([127, 0, 0, 1], 0).into());
    /// ```
    pub fn admin_addr(mut self, addr: SocketAddr) -> Self {
        self.admin_addr = Some(Some(addr));
        self
    }

    /// Does not start the admin server (same as `OBS_ADMIN_ADDR=off`); mount
    /// [`crate::Obs::admin_router`] yourself if you want the endpoints.
    ///
    /// ```
    /// let _ = obs::Config::new().disable_admin();
    /// ```
    pub fn disable_admin(mut self) -> Self {
        self.admin_addr = Some(None);
        self
    }

    /// Bounds the log buffer to `bytes` (default 16 MiB). When full, lines are dropped and
    /// counted in `obs_log_lines_dropped_total`; logging never blocks.
    ///
    /// ```
    /// let _ = obs::Config::new().log_buffer_bytes(1 << 20);
    /// ```
    pub fn log_buffer_bytes(mut self, bytes: usize) -> Self {
        self.log_buffer_bytes = Some(bytes.max(1024));
        self
    }

    /// Replaces the request-duration histogram buckets (seconds, ascending). The default is the
    /// OpenTelemetry set plus `2`, which the default latency alert needs.
    ///
    /// ```
    /// let _ = obs::Config::new().histogram_buckets(&[0.01, 0.1, 1.0, 2.0, 10.0]);
    /// ```
    pub fn histogram_buckets(mut self, buckets: &[f64]) -> Self {
        self.buckets = Some(buckets.to_vec());
        self
    }

    /// Caps the distinct label sets of the request histogram (default 10,000). Beyond it, new
    /// label sets are recorded with `http_route="_overflow"` and counted.
    ///
    /// ```
    /// let _ = obs::Config::new().max_label_sets(500);
    /// ```
    pub fn max_label_sets(mut self, max: usize) -> Self {
        self.max_label_sets = Some(max.max(1));
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
        self.sentry_dsn = Some(dsn.into());
        self
    }

    /// Sets the Sentry environment (else `SENTRY_ENVIRONMENT`, then the resource's
    /// `deployment.environment.name`, then `production`).
    ///
    /// ```
    /// let _ = obs::Config::new().sentry_environment("staging");
    /// ```
    pub fn sentry_environment(mut self, environment: impl Into<String>) -> Self {
        self.sentry_environment = Some(environment.into());
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
        self.log_bridge = Some(false);
        self
    }

    /// Resolves this configuration against `env`, collecting one warning per bad value.
    pub(crate) fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Settings {
        let mut warnings = Vec::new();
        let env = |key: &str| env(key).filter(|v| !v.trim().is_empty());

        let mut resource = match env("OTEL_RESOURCE_ATTRIBUTES") {
            Some(raw) => parse_resource_attributes(&raw, &mut warnings),
            None => Vec::new(),
        };
        let from_resource = |resource: &[(String, String)], key: &str| {
            resource
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let service_name = self
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .or_else(|| from_resource(&resource, "service.name"))
            .or_else(executable_name)
            .unwrap_or_else(|| "unknown_service".to_owned());
        let service_version = self
            .service_version
            .clone()
            .or_else(|| from_resource(&resource, "service.version"));
        resource.retain(|(k, _)| k != "service.name" && k != "service.version");

        let log_format = self.log_format.unwrap_or_else(|| {
            env("OBS_LOG_FORMAT").map_or(LogFormat::Json, |raw| {
                raw.parse().unwrap_or_else(|why: String| {
                    warnings.push(bad_value("OBS_LOG_FORMAT", &raw, &why, "json"));
                    LogFormat::Json
                })
            })
        });

        let (filter_source, filter) = match &self.log_filter {
            Some(code) => ("code", Some(code.clone())),
            None => ("RUST_LOG", env("RUST_LOG")),
        };
        let log_filter = match filter {
            Some(raw) => match EnvFilter::builder().parse(&raw) {
                Ok(_) => raw,
                Err(why) => {
                    warnings.push(bad_value(
                        filter_source,
                        &raw,
                        &why.to_string(),
                        DEFAULT_LOG_FILTER,
                    ));
                    DEFAULT_LOG_FILTER.to_owned()
                }
            },
            None => DEFAULT_LOG_FILTER.to_owned(),
        };

        let default_admin: SocketAddr = DEFAULT_ADMIN_ADDR.parse().expect("valid default");
        let admin_addr = self
            .admin_addr
            .unwrap_or_else(|| match env("OBS_ADMIN_ADDR") {
                None => Some(default_admin),
                Some(raw) if raw.trim().eq_ignore_ascii_case("off") => None,
                Some(raw) => raw.trim().parse().map(Some).unwrap_or_else(|_| {
                    let why = r#"expected host:port (e.g. 127.0.0.1:9464) or "off""#;
                    warnings.push(bad_value("OBS_ADMIN_ADDR", &raw, why, DEFAULT_ADMIN_ADDR));
                    Some(default_admin)
                }),
            });

        let buckets = match &self.buckets {
            Some(b) if valid_buckets(b) => b.clone(),
            Some(b) => {
                warnings.push(format!(
                    "invalid histogram buckets {b:?}: expected finite, strictly ascending values; using the default"
                ));
                DURATION_BUCKETS.to_vec()
            }
            None => DURATION_BUCKETS.to_vec(),
        };

        let mut trace = crate::trace::TraceSettings::resolve(&self.trace, &env, &mut warnings);
        if cfg!(not(feature = "otlp")) && trace.otlp.take().is_some() {
            warnings.push("an OTLP endpoint is set but obs was built without the `otlp` feature; spans are not exported".to_owned());
        }
        let release = service_version
            .as_ref()
            .map(|v| format!("{service_name}@{v}"));
        #[cfg(feature = "sentry")]
        let sentry = crate::errors::SentrySettings::resolve(
            self.sentry_dsn.as_deref(),
            self.sentry_environment.as_deref(),
            release,
            &resource,
            &env,
            &mut warnings,
        );
        #[cfg(not(feature = "sentry"))]
        let sentry = {
            let _ = release;
            if self.sentry_dsn.is_some() || env("SENTRY_DSN").is_some() {
                warnings.push(
                    "a Sentry DSN is set but obs was built without the `sentry` feature; Sentry is off"
                        .to_owned(),
                );
            }
            None
        };

        Settings {
            trace,
            sentry,
            service_name,
            service_version,
            resource,
            log_format,
            log_filter,
            admin_addr,
            log_buffer_bytes: self.log_buffer_bytes.unwrap_or(DEFAULT_LOG_BUFFER_BYTES),
            buckets,
            max_label_sets: self.max_label_sets.unwrap_or(DEFAULT_MAX_LABEL_SETS),
            metrics_token: self
                .metrics_token
                .clone()
                .or_else(|| env("OBS_METRICS_TOKEN"))
                .map(|t| t.trim().to_owned()),
            log_bridge: self.log_bridge.unwrap_or(true),
            warnings,
        }
    }
}

/// The effective configuration after precedence and validation (holds secrets: no `Debug`).
#[derive(Clone)]
pub(crate) struct Settings {
    pub service_name: String,
    pub service_version: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES` without `service.name`/`service.version`.
    pub resource: Vec<(String, String)>,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub admin_addr: Option<SocketAddr>,
    pub log_buffer_bytes: usize,
    pub buckets: Vec<f64>,
    pub max_label_sets: usize,
    /// Bearer token required on `/metrics` (never logged).
    pub metrics_token: Option<String>,
    pub trace: crate::trace::TraceSettings,
    pub sentry: Option<crate::errors::SentrySettings>,
    /// Whether `log` records are bridged into `tracing` (global forms only).
    pub log_bridge: bool,
    pub warnings: Vec<String>,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env(config: &Config) -> Self {
        config.resolve(&|key| std::env::var(key).ok())
    }

    pub fn log_format_name(&self) -> &'static str {
        self.log_format.as_str()
    }
}

/// One warning line: what, the (escaped, shortened) value, why, and what is used instead.
pub(crate) fn bad_value(var: &str, raw: &str, why: &str, default: &str) -> String {
    let mut shown: String = raw.chars().take(64).collect();
    if shown.len() < raw.len() {
        shown.push('…');
    }
    format!("invalid {var} {shown:?}: {why}; using {default}")
}

fn valid_buckets(b: &[f64]) -> bool {
    !b.is_empty() && b.iter().all(|v| v.is_finite()) && b.windows(2).all(|w| w[0] < w[1])
}

/// `key1=value1,key2=value2` with percent-encoded values (W3C Baggage octets), per the OTel spec.
fn parse_resource_attributes(raw: &str, warnings: &mut Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pair in raw.split(',').filter(|p| !p.trim().is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.push((k.trim().to_owned(), percent_decode(v.trim())));
            }
            _ => warnings.push(bad_value(
                "OTEL_RESOURCE_ATTRIBUTES entry",
                pair,
                "expected key=value",
                "nothing for this entry",
            )),
        }
    }
    out
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn executable_name() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.file_stem()?.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.log_filter, "info");
        assert_eq!(s.admin_addr, Some("0.0.0.0:9464".parse().unwrap()));
        assert_eq!(s.buckets, DURATION_BUCKETS);
        assert_eq!(s.max_label_sets, 10_000);
        assert!(!s.service_name.is_empty());
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
        assert_eq!(s.service_name, "billing");
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert_eq!(s.log_filter, "debug,hyper=warn");
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
        assert_eq!(s.service_name, "from-code");
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.log_filter, "warn");
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
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.log_filter, "info");
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
        assert_eq!(s.service_name, "shop");
        assert_eq!(s.service_version.as_deref(), Some("2.0"));
        assert_eq!(
            s.resource,
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
        assert_eq!(s.service_name, "cart");
    }

    #[test]
    fn bad_buckets_fall_back() {
        let s = resolve(&Config::new().histogram_buckets(&[1.0, 0.5]), &[]);
        assert_eq!(s.buckets, DURATION_BUCKETS);
        assert_eq!(s.warnings.len(), 1);
    }
}
