//! The logs part of the configuration: `OBS_LOG_FORMAT`, `RUST_LOG`, the buffer's bound and the
//! `log` bridge.

use tracing_subscriber::EnvFilter;

use crate::env::{bad_value, var, Env};
use crate::error::ParseError;

/// The default log filter when `RUST_LOG` is unset or invalid.
pub const DEFAULT_LOG_FILTER: &str = "info";
/// Default bound of the log buffer, in bytes. A full buffer drops (and counts) lines, never blocks.
pub const DEFAULT_LOG_BUFFER_BYTES: usize = 16 * 1024 * 1024;
/// The smallest log buffer: one long line must fit.
const MIN_LOG_BUFFER_BYTES: usize = 1024;

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
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "pretty" => Ok(LogFormat::Pretty),
            _ => Err(ParseError(r#"expected "json" or "pretty""#)),
        }
    }
}

impl LogFormat {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        }
    }
}

/// What code set.
#[derive(Clone)]
pub(crate) struct LogConfig {
    pub format: Option<LogFormat>,
    pub filter: Option<String>,
    pub buffer_bytes: Option<usize>,
    /// Whether `log` records are bridged into `tracing` (global forms only).
    pub bridge: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: None,
            filter: None,
            buffer_bytes: None,
            bridge: true,
        }
    }
}

/// The effective logs settings.
#[derive(Clone)]
pub(crate) struct LogSettings {
    /// `service.name`, on every JSON line.
    pub service_name: String,
    pub format: LogFormat,
    /// A valid filter in `RUST_LOG` syntax.
    pub filter: String,
    pub buffer_bytes: usize,
    pub bridge: bool,
}

impl LogSettings {
    /// Code > environment > default; a bad format or filter warns and gives the default.
    pub fn resolve(code: &LogConfig, service_name: &str, env: &mut Env<'_>) -> Self {
        let format = code.format.unwrap_or_else(|| {
            env.var_or(var::OBS_LOG_FORMAT, LogFormat::Json, "json", str::parse)
        });
        let (source, filter) = match &code.filter {
            Some(code) => ("code", Some(code.clone())),
            None => (var::RUST_LOG, env.get(var::RUST_LOG)),
        };
        let filter = match filter {
            Some(raw) => match EnvFilter::builder().parse(&raw) {
                Ok(_) => raw,
                Err(why) => {
                    env.warn(bad_value(
                        source,
                        &raw,
                        &why.to_string(),
                        DEFAULT_LOG_FILTER,
                    ));
                    DEFAULT_LOG_FILTER.to_owned()
                }
            },
            None => DEFAULT_LOG_FILTER.to_owned(),
        };
        let buffer_bytes = match code.buffer_bytes {
            Some(bytes) if bytes < MIN_LOG_BUFFER_BYTES => {
                env.warn(format!(
                    "invalid log_buffer_bytes {bytes}: expected at least {MIN_LOG_BUFFER_BYTES}; using {MIN_LOG_BUFFER_BYTES}"
                ));
                MIN_LOG_BUFFER_BYTES
            }
            Some(bytes) => bytes,
            None => DEFAULT_LOG_BUFFER_BYTES,
        };
        Self {
            service_name: service_name.to_owned(),
            format,
            filter,
            buffer_bytes,
            bridge: code.bridge,
        }
    }

    /// The filter, parsed (validated by `resolve`, so the fallback is never taken).
    pub fn env_filter(&self) -> EnvFilter {
        EnvFilter::builder()
            .parse(&self.filter)
            .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER))
    }
}
