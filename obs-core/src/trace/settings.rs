//! The OpenTelemetry environment: exporter, sampler, propagators, `OTEL_SDK_DISABLED`.

use std::time::Duration;

use super::Sampler;

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
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => Err("http/json is not supported".to_owned()),
            _ => Err(r#"expected "grpc" or "http/protobuf""#.to_owned()),
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
    /// Resolves code settings against the environment, pushing one warning per bad value.
    pub fn resolve(
        code: &TraceConfig,
        env: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<String>,
    ) -> Self {
        fn bad(warnings: &mut Vec<String>, var: &str, raw: &str, why: &str, default: &str) {
            warnings.push(crate::config::bad_value(var, raw, why, default));
        }
        let either = |specific: &str, general: &str| {
            env(specific)
                .map(|v| (specific.to_owned(), v))
                .or_else(|| env(general).map(|v| (general.to_owned(), v)))
        };

        let disabled = match env("OTEL_SDK_DISABLED") {
            None => false,
            Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    bad(
                        warnings,
                        "OTEL_SDK_DISABLED",
                        &raw,
                        "expected true or false",
                        "false",
                    );
                    false
                }
            },
        };

        let (mut tracecontext, mut baggage) = (true, true);
        if let Some(raw) = env("OTEL_PROPAGATORS") {
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
                bad(
                    warnings,
                    "OTEL_PROPAGATORS",
                    &raw,
                    &format!("{unknown:?} is not supported (tracecontext, baggage, none are)"),
                    "the supported entries",
                );
            }
        }

        let sampler = code.sampler.clone().unwrap_or_else(|| {
            let name = env("OTEL_TRACES_SAMPLER");
            let parsed = name.as_deref().map_or(Ok(Sampler::default()), str::parse);
            let parsed = parsed.unwrap_or_else(|why| {
                bad(
                    warnings,
                    "OTEL_TRACES_SAMPLER",
                    name.as_deref().unwrap_or_default(),
                    &why,
                    "parentbased_always_on",
                );
                Sampler::default()
            });
            let fallback = parsed.clone();
            parsed
                .with_arg(env("OTEL_TRACES_SAMPLER_ARG").as_deref())
                .unwrap_or_else(|why| {
                    warnings.push(format!("{why}; using 1.0"));
                    fallback
                })
        });

        let protocol = code.protocol.unwrap_or_else(|| {
            match either(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ) {
                None => Protocol::default(),
                Some((var, raw)) => raw.parse().unwrap_or_else(|why: String| {
                    bad(warnings, &var, &raw, &why, "http/protobuf");
                    Protocol::default()
                }),
            }
        });

        // A signal-specific endpoint is used as is; the general one is a base URL.
        let endpoint = match &code.endpoint {
            Some(e) => Some(("code".to_owned(), e.clone(), false)),
            None => env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .map(|e| ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".to_owned(), e, true))
                .or_else(|| {
                    env("OTEL_EXPORTER_OTLP_ENDPOINT")
                        .map(|e| ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), e, false))
                }),
        };
        let url = endpoint.and_then(|(var, raw, exact)| {
            let trimmed = raw.trim();
            let valid = (trimmed.starts_with("http://") || trimmed.starts_with("https://"))
                && trimmed
                    .parse::<http::Uri>()
                    .is_ok_and(|u| u.host().is_some());
            if !valid {
                bad(
                    warnings,
                    &var,
                    &redact_url(trimmed),
                    "expected an http:// or https:// URL",
                    "no trace export",
                );
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

        let headers = either(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        )
        .map(|(var, raw)| parse_headers(&var, &raw, warnings))
        .unwrap_or_default();

        let gzip = match either(
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ) {
            None => false,
            Some((var, raw)) => match raw.trim().to_ascii_lowercase().as_str() {
                "gzip" => true,
                "none" => false,
                _ => {
                    bad(warnings, &var, &raw, r#"expected "gzip" or "none""#, "none");
                    false
                }
            },
        };
        let mut millis = |var: &str, general: Option<&str>, default: u64| -> u64 {
            let found = match general {
                Some(g) => either(var, g),
                None => env(var).map(|v| (var.to_owned(), v)),
            };
            match found {
                None => default,
                Some((var, raw)) => match raw.trim().parse::<u64>() {
                    Ok(v) if v > 0 => v,
                    _ => {
                        bad(
                            warnings,
                            &var,
                            &raw,
                            "expected a positive integer",
                            &default.to_string(),
                        );
                        default
                    }
                },
            }
        };
        let timeout = Duration::from_millis(millis(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            Some("OTEL_EXPORTER_OTLP_TIMEOUT"),
            10_000,
        ));
        let max_queue = millis("OTEL_BSP_MAX_QUEUE_SIZE", None, 2048) as usize;
        let max_batch =
            (millis("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", None, 512) as usize).min(max_queue);
        let delay = Duration::from_millis(millis("OTEL_BSP_SCHEDULE_DELAY", None, 5000));

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

/// `key=value,...` with percent-encoded values. Warnings name the key, never the value.
fn parse_headers(var: &str, raw: &str, warnings: &mut Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pair in raw.split(',').filter(|p| !p.trim().is_empty()) {
        let parsed = pair.split_once('=').and_then(|(k, v)| {
            let (k, v) = (k.trim(), crate::config::percent_decode(v.trim()));
            let ok = http::HeaderName::from_bytes(k.as_bytes()).is_ok()
                && http::HeaderValue::from_str(&v).is_ok();
            ok.then(|| (k.to_owned(), v))
        });
        match parsed {
            Some(h) => out.push(h),
            None => warnings.push(format!(
                "invalid {var} entry (value hidden): expected name=value with a valid header name; entry skipped"
            )),
        }
    }
    out
}

/// Text for display with every URL's `user:password@` removed (a URL, or an error message
/// that quotes one).
pub(crate) fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == ')')
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => rest = &tail[at + 1..],
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed_from_urls_and_messages() {
        assert_eq!(
            redact_url("https://u:p@host:4318/v1"),
            "https://host:4318/v1"
        );
        assert_eq!(
            redact_url("error sending request for url (http://key@h/x): refused; see http://ok/y"),
            "error sending request for url (http://h/x): refused; see http://ok/y"
        );
        assert_eq!(redact_url("no url"), "no url");
    }

    fn resolve(vars: &[(&str, &str)]) -> (TraceSettings, Vec<String>) {
        let mut warnings = Vec::new();
        let env = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let s = TraceSettings::resolve(&TraceConfig::default(), &env, &mut warnings);
        (s, warnings)
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
