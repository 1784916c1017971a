//! The OpenTelemetry environment: exporter, sampler, propagators, `OTEL_SDK_DISABLED`.

use std::time::Duration;

use super::Sampler;
use crate::env::{bad_value, key_value_list, redact_url, var, Env};
use crate::error::ParseError;

/// The OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
///
/// ```
/// assert_eq!("grpc".parse::<obs::trace::Protocol>(), Ok(obs::trace::Protocol::Grpc));
/// assert_eq!("http/protobuf".parse::<obs::trace::Protocol>(), Ok(obs::trace::Protocol::HttpProtobuf));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318), the specification's default.
    #[default]
    HttpProtobuf,
}

impl std::str::FromStr for Protocol {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => Err(ParseError("http/json is not supported")),
            _ => Err(ParseError(r#"expected "grpc" or "http/protobuf""#)),
        }
    }
}

impl Protocol {
    /// The name used in `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Where and how spans are exported (headers are secrets: no `Debug`). Without the `otlp`
/// feature the settings are still resolved, so that bad values still warn, but not used.
#[derive(Clone)]
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) struct OtlpSettings {
    /// The full URL requests go to (`.../v1/traces`, or the gRPC method path).
    pub url: String,
    pub protocol: Protocol,
    /// `OTEL_EXPORTER_OTLP_HEADERS`: often credentials, never logged.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// `OTEL_EXPORTER_OTLP_COMPRESSION`: gzip or none.
    pub gzip: bool,
    pub max_queue: usize,
    pub max_batch: usize,
    pub delay: Duration,
}

/// The tracing part of the effective configuration.
#[derive(Clone)]
pub(crate) struct TraceSettings {
    /// `OTEL_PROPAGATORS`: W3C `traceparent`/`tracestate` (`tracecontext`).
    pub tracecontext: bool,
    /// `OTEL_PROPAGATORS`: W3C `baggage`.
    pub baggage: bool,
    pub sampler: Sampler,
    pub otlp: Option<OtlpSettings>,
}

impl Default for TraceSettings {
    fn default() -> Self {
        Self {
            tracecontext: true,
            baggage: true,
            sampler: Sampler::default(),
            otlp: None,
        }
    }
}

/// What code set, before the environment is read.
#[derive(Clone, Default)]
pub(crate) struct TraceConfig {
    pub endpoint: Option<String>,
    pub protocol: Option<Protocol>,
    pub sampler: Option<Sampler>,
}

impl TraceSettings {
    /// Resolves code settings against the environment (one warning per bad value).
    pub fn resolve(code: &TraceConfig, env: &mut Env<'_>) -> Self {
        let disabled = env.var_or(var::OTEL_SDK_DISABLED, false, "false", |raw| {
            match raw.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err("expected true or false"),
            }
        });

        let (mut tracecontext, mut baggage) = (true, true);
        if let Some(raw) = env.get(var::OTEL_PROPAGATORS) {
            let names: Vec<String> = raw
                .split(',')
                .map(|n| n.trim().to_ascii_lowercase())
                .collect();
            tracecontext = names.iter().any(|n| n == "tracecontext");
            baggage = names.iter().any(|n| n == "baggage");
            if let Some(unknown) = names
                .iter()
                .find(|n| !matches!(n.as_str(), "tracecontext" | "baggage" | "none"))
            {
                env.warn(bad_value(
                    var::OTEL_PROPAGATORS,
                    &raw,
                    &format!("{unknown:?} is not supported (tracecontext, baggage, none are)"),
                    "the supported entries",
                ));
            }
        }

        let sampler = code.sampler.clone().unwrap_or_else(|| {
            let parsed = env.var_or(
                var::OTEL_TRACES_SAMPLER,
                Sampler::default(),
                "parentbased_always_on",
                str::parse,
            );
            let fallback = parsed.clone();
            parsed
                .with_arg(env.get(var::OTEL_TRACES_SAMPLER_ARG).as_deref())
                .unwrap_or_else(|why| {
                    env.warn(format!("{why}; using 1.0"));
                    fallback
                })
        });

        let protocol = code.protocol.unwrap_or_else(|| {
            let found = env.either(var::OTLP_TRACES_PROTOCOL, var::OTLP_PROTOCOL);
            env.parse_or(found, Protocol::default(), "http/protobuf", str::parse)
        });

        // A signal-specific endpoint is used as is; the general one is a base URL.
        let endpoint = match &code.endpoint {
            Some(e) => Some(("code", e.clone(), false)),
            None => env
                .get(var::OTLP_TRACES_ENDPOINT)
                .map(|e| (var::OTLP_TRACES_ENDPOINT, e, true))
                .or_else(|| {
                    env.get(var::OTLP_ENDPOINT)
                        .map(|e| (var::OTLP_ENDPOINT, e, false))
                }),
        };
        let url = endpoint.and_then(|(var, raw, exact)| {
            let trimmed = raw.trim();
            let valid = (trimmed.starts_with("http://") || trimmed.starts_with("https://"))
                && trimmed
                    .parse::<http::Uri>()
                    .is_ok_and(|u| u.host().is_some());
            if !valid {
                env.warn(bad_value(
                    var,
                    &redact_url(trimmed),
                    "expected an http:// or https:// URL",
                    "no trace export",
                ));
                return None;
            }
            let base = trimmed.trim_end_matches('/');
            Some(match (protocol, exact) {
                // tonic appends the service's method path itself.
                (Protocol::Grpc, _) => base.to_owned(),
                (Protocol::HttpProtobuf, true) => trimmed.to_owned(),
                (Protocol::HttpProtobuf, false) => format!("{base}/v1/traces"),
            })
        });

        let headers = env
            .either(var::OTLP_TRACES_HEADERS, var::OTLP_HEADERS)
            .map(|(var, raw)| parse_headers(var, &raw, &mut env.warnings))
            .unwrap_or_default();

        let found = env.either(var::OTLP_TRACES_COMPRESSION, var::OTLP_COMPRESSION);
        let gzip = env.parse_or(found, false, "none", |raw| {
            match raw.trim().to_ascii_lowercase().as_str() {
                "gzip" => Ok(true),
                "none" => Ok(false),
                _ => Err(r#"expected "gzip" or "none""#),
            }
        });
        let found = env.either(var::OTLP_TRACES_TIMEOUT, var::OTLP_TIMEOUT);
        let timeout = Duration::from_millis(env.positive(found, DEFAULT_TIMEOUT_MS));
        let found = env.found(var::BSP_MAX_QUEUE_SIZE);
        let max_queue = env.positive(found, DEFAULT_MAX_QUEUE) as usize;
        let found = env.found(var::BSP_MAX_EXPORT_BATCH_SIZE);
        let max_batch = (env.positive(found, DEFAULT_MAX_BATCH) as usize).min(max_queue);
        let found = env.found(var::BSP_SCHEDULE_DELAY);
        let delay = Duration::from_millis(env.positive(found, DEFAULT_DELAY_MS));

        Self {
            tracecontext,
            baggage,
            sampler,
            otlp: url.filter(|_| !disabled).map(|url| OtlpSettings {
                url,
                protocol,
                headers,
                timeout,
                gzip,
                max_queue,
                max_batch,
                delay,
            }),
        }
    }
}

/// `OTEL_EXPORTER_OTLP_TIMEOUT`'s default (the specification's), in milliseconds.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// `OTEL_BSP_MAX_QUEUE_SIZE`'s default (the specification's).
const DEFAULT_MAX_QUEUE: u64 = 2048;
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`'s default (the specification's).
const DEFAULT_MAX_BATCH: u64 = 512;
/// `OTEL_BSP_SCHEDULE_DELAY`'s default (the specification's), in milliseconds.
const DEFAULT_DELAY_MS: u64 = 5000;

/// `key=value,...` with percent-encoded values. Warnings name the key, never the value.
fn parse_headers(var: &str, raw: &str, warnings: &mut Vec<String>) -> Vec<(String, String)> {
    let skipped = || {
        format!(
            "invalid {var} entry (value hidden): expected name=value with a valid header name; entry skipped"
        )
    };
    let mut out = key_value_list(raw, |_| warnings.push(skipped()));
    out.retain(|(k, v)| {
        let ok = http::HeaderName::from_bytes(k.as_bytes()).is_ok()
            && http::HeaderValue::from_str(v).is_ok();
        if !ok {
            warnings.push(skipped());
        }
        ok
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(vars: &[(&str, &str)]) -> (TraceSettings, Vec<String>) {
        let lookup = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let mut env = Env::new(&lookup);
        let s = TraceSettings::resolve(&TraceConfig::default(), &mut env);
        (s, env.warnings)
    }

    #[test]
    fn no_endpoint_no_exporter_no_warning() {
        let (s, w) = resolve(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert!(s.otlp.is_none() && w.is_empty() && s.tracecontext && s.baggage);
        assert_eq!(s.sampler, Sampler::default());
    }

    #[test]
    fn endpoints_and_protocols() {
        let (s, _) = resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        let otlp = s.otlp.unwrap();
        assert_eq!(otlp.url, "http://collector:4318/v1/traces");
        assert_eq!(
            (otlp.protocol, otlp.timeout),
            (Protocol::HttpProtobuf, Duration::from_secs(10))
        );
        let (s, _) = resolve(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ]);
        let otlp = s.otlp.unwrap();
        assert_eq!(otlp.url, "http://collector:4317");
        assert_eq!(otlp.timeout, Duration::from_millis(2500));
        let (s, _) = resolve(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://tempo.example/otlp/v1/traces",
            ),
        ]);
        assert_eq!(s.otlp.unwrap().url, "https://tempo.example/otlp/v1/traces");
    }

    #[test]
    fn sdk_disabled_turns_export_off() {
        let (s, w) = resolve(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ]);
        assert!(s.otlp.is_none() && w.is_empty());
    }

    #[test]
    fn sampler_and_propagators() {
        let (s, w) = resolve(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ("OTEL_PROPAGATORS", "baggage"),
        ]);
        assert_eq!(
            s.sampler,
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(0.1)))
        );
        assert!(!s.tracecontext && s.baggage && w.is_empty());
        let (s, w) = resolve(&[("OTEL_PROPAGATORS", "tracecontext,b3")]);
        assert!(s.tracecontext && !s.baggage);
        assert!(w[0].contains("\"b3\" is not supported"), "{w:?}");
    }

    #[test]
    fn bad_values_warn_without_leaking_secrets() {
        let (s, w) = resolve(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://user:hunter2@host"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20hunter2,bad header=hunter2",
            ),
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
            ("OTEL_TRACES_SAMPLER_ARG", "x"),
            ("OTEL_SDK_DISABLED", "yes"),
        ]);
        assert!(s.otlp.is_none());
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w.iter().all(|w| !w.contains("hunter2")), "{w:?}");
    }

    #[test]
    fn headers_are_percent_decoded() {
        let mut w = Vec::new();
        let h = parse_headers("X", "authorization=Bearer%20abc, x-tenant = a ", &mut w);
        assert_eq!(
            h,
            [
                ("authorization".to_owned(), "Bearer abc".to_owned()),
                ("x-tenant".to_owned(), "a".to_owned())
            ]
        );
        assert!(w.is_empty());
    }
}
