//! The Sentry part of the configuration: `SENTRY_DSN`, `SENTRY_ENVIRONMENT`, `SENTRY_RELEASE`.

use sentry::types::Dsn;

use super::SentryConfig;
use crate::env::{var, Env};
use crate::resource::Service;

/// The Sentry part of the effective configuration (the DSN holds the key: no `Debug`).
#[derive(Clone)]
pub(crate) struct SentrySettings {
    pub dsn: Dsn,
    pub environment: String,
    pub release: Option<String>,
}

impl SentrySettings {
    /// The Sentry environment events are sent with.
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// The DSN for display, the key hidden.
    pub fn redacted_dsn(&self) -> String {
        redacted_dsn(&self.dsn)
    }

    /// `SENTRY_DSN` (or code), `SENTRY_ENVIRONMENT`, `SENTRY_RELEASE` (else the service's
    /// version: the string on the spans and on `target_info`). A bad DSN is a warning that does
    /// not repeat the DSN.
    pub fn resolve(code: &SentryConfig, service: &Service, env: &mut Env<'_>) -> Option<Self> {
        let (source, raw) = match &code.dsn {
            Some(d) => ("code", d.clone()),
            None => (var::SENTRY_DSN, env.get(var::SENTRY_DSN)?),
        };
        let dsn = match raw.trim().parse::<Dsn>() {
            Ok(dsn) => dsn,
            Err(why) => {
                env.warn(format!(
                    "invalid Sentry DSN from {source} (value hidden): {why}; Sentry is off"
                ));
                return None;
            }
        };
        let environment = code
            .environment
            .clone()
            .or_else(|| env.get(var::SENTRY_ENVIRONMENT))
            .or_else(|| service.attribute("deployment.environment.name"))
            .or_else(|| service.attribute("deployment.environment"))
            .unwrap_or_else(|| "production".to_owned());
        let release = env
            .get(var::SENTRY_RELEASE)
            .map(|r| r.trim().to_owned())
            .or_else(|| service.version.clone());
        Some(Self {
            dsn,
            environment,
            release,
        })
    }
}

/// The DSN for display: `https://***@host/project`, the key hidden.
fn redacted_dsn(dsn: &Dsn) -> String {
    let port = match (dsn.scheme().to_string().as_str(), dsn.port()) {
        ("https", 443) | ("http", 80) => String::new(),
        (_, port) => format!(":{port}"),
    };
    format!(
        "{}://***@{}{port}{}{}",
        dsn.scheme(),
        dsn.host(),
        dsn.path(),
        dsn.project_id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(dsn: &str) -> (Option<SentrySettings>, Vec<String>) {
        let mut env = Env::new(&|_| None);
        let code = SentryConfig {
            dsn: Some(dsn.to_owned()),
            environment: None,
        };
        let service = Service::resolve(Some("svc"), None, &mut env);
        let s = SentrySettings::resolve(&code, &service, &mut env);
        (s, env.warnings)
    }

    #[test]
    fn the_key_never_shows() {
        let (s, w) = resolve("https://abc123@o1.ingest.sentry.io/4505");
        assert!(w.is_empty());
        let s = s.unwrap();
        assert_eq!(redacted_dsn(&s.dsn), "https://***@o1.ingest.sentry.io/4505");
        assert_eq!(s.environment, "production");
        let (s, w) = resolve("http://k3y@127.0.0.1:9000/7");
        assert_eq!(redacted_dsn(&s.unwrap().dsn), "http://***@127.0.0.1:9000/7");
        assert!(w.is_empty());
        // The release is the service's version: the string the spans and target_info carry.
        let mut env = Env::new(&|_| None);
        let service = Service::resolve(Some("svc"), Some("1.1.0"), &mut env);
        let code = SentryConfig {
            dsn: Some("https://k@o1.ingest.sentry.io/1".into()),
            environment: None,
        };
        let s = SentrySettings::resolve(&code, &service, &mut env).unwrap();
        assert_eq!(s.release.as_deref(), Some("1.1.0"));
        let (s, w) = resolve("https://secretkey@/nohost");
        assert!(s.is_none());
        assert!(
            w[0].contains("value hidden") && !w[0].contains("secretkey"),
            "{w:?}"
        );
    }
}
