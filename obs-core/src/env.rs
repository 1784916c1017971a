//! The environment, read through one reader: every variable obs reads is named here, and a bad
//! value is one warning line and the default, never an error (the warnings are logged once
//! logging is up). The lookup is injected, so tests resolve against a slice.

use std::fmt::Display;

/// The names of the variables obs reads, in one place.
pub(crate) mod var {
    pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
    pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
    pub const RUST_LOG: &str = "RUST_LOG";
    pub const OBS_LOG_FORMAT: &str = "OBS_LOG_FORMAT";
    pub const OBS_ADMIN_ADDR: &str = "OBS_ADMIN_ADDR";
    pub const OBS_METRICS_TOKEN: &str = "OBS_METRICS_TOKEN";
    pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
    pub const OTEL_PROPAGATORS: &str = "OTEL_PROPAGATORS";
    pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
    pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    pub const OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    pub const OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    pub const OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
    pub const OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
    pub const OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
    pub const OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
    pub const OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
    pub const OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
    pub const OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
    pub const BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
    pub const BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
    pub const BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
    pub const SENTRY_DSN: &str = "SENTRY_DSN";
    // Read only with the `sentry` feature (without it, only a DSN is noticed, to warn).
    #[cfg_attr(not(feature = "sentry"), allow(dead_code))]
    pub const SENTRY_ENVIRONMENT: &str = "SENTRY_ENVIRONMENT";
    pub const SENTRY_RELEASE: &str = "SENTRY_RELEASE";
    pub const OBS_VCS_REVISION: &str = "OBS_VCS_REVISION";
}

/// A lookup of the environment: the process' (`std::env::var`) or a test's slice.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The environment reader, collecting one warning per bad value.
pub(crate) struct Env<'a> {
    lookup: Lookup<'a>,
    pub warnings: Vec<String>,
}

impl<'a> Env<'a> {
    pub fn new(lookup: Lookup<'a>) -> Self {
        Self {
            lookup,
            warnings: Vec::new(),
        }
    }

    /// The variable's value; `None` when unset or blank (a blank variable is an unset one).
    pub fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.trim().is_empty())
    }

    /// The variable's value with its name (what [`Env::parse_or`] takes), as [`Env::get`].
    pub fn found(&self, var: &'static str) -> Option<(&'static str, String)> {
        self.get(var).map(|v| (var, v))
    }

    /// The signal-specific variable, else the general one, with the name of the one found.
    pub fn either(
        &self,
        specific: &'static str,
        general: &'static str,
    ) -> Option<(&'static str, String)> {
        self.found(specific).or_else(|| self.found(general))
    }

    /// `found` parsed by `parse`, `default` when unset; a bad value warns (naming the variable,
    /// why, and `shown_default`) and gives `default`.
    pub fn parse_or<T, E: Display>(
        &mut self,
        found: Option<(&str, String)>,
        default: T,
        shown_default: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> T {
        let Some((var, raw)) = found else {
            return default;
        };
        match parse(&raw) {
            Ok(value) => value,
            Err(why) => {
                self.warn(bad_value(var, &raw, &why.to_string(), shown_default));
                default
            }
        }
    }

    /// [`Env::parse_or`] of one variable.
    pub fn var_or<T, E: Display>(
        &mut self,
        var: &'static str,
        default: T,
        shown_default: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> T {
        let found = self.found(var);
        self.parse_or(found, default, shown_default, parse)
    }

    /// A positive integer (milliseconds, a queue size), `default` when unset or bad.
    pub fn positive(&mut self, found: Option<(&str, String)>, default: u64) -> u64 {
        self.parse_or(found, default, &default.to_string(), |raw| {
            match raw.trim().parse::<u64>() {
                Ok(v) if v > 0 => Ok(v),
                _ => Err("expected a positive integer"),
            }
        })
    }

    /// A warning line of its own.
    pub fn warn(&mut self, warning: String) {
        self.warnings.push(warning);
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

/// `key1=value1,key2=value2` with percent-encoded values (W3C Baggage octets, as
/// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS` are written). Entries without a
/// key or an `=` are handed to `bad` (which decides what a warning may show) and skipped.
pub(crate) fn key_value_list(raw: &str, mut bad: impl FnMut(&str)) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pair in raw.split(',').filter(|p| !p.trim().is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.push((k.trim().to_owned(), percent_decode(v.trim())));
            }
            _ => bad(pair),
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

    #[test]
    fn blank_is_unset_and_bad_values_warn_with_the_default() {
        let lookup = |k: &str| match k {
            "BLANK" => Some("  ".to_owned()),
            "N" => Some("0".to_owned()),
            "M" => Some("250".to_owned()),
            _ => None,
        };
        let mut env = Env::new(&lookup);
        assert_eq!(env.get("BLANK"), None);
        assert_eq!(env.positive(env.found("M"), 7), 250);
        assert_eq!(env.positive(env.found("N"), 7), 7);
        assert_eq!(
            env.warnings,
            [r#"invalid N "0": expected a positive integer; using 7"#]
        );
    }
}
