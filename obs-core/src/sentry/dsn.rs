//! The Sentry DSN: where envelopes go and the key that authorises them.

use std::fmt;

/// A parsed DSN (`https://PUBLIC_KEY@HOST/PROJECT_ID`). Its `Debug` and `Display` hide the key.
///
/// ```
/// let dsn: obs::sentry::Dsn = "https://abc123@o1.ingest.sentry.io/4505".parse().unwrap();
/// assert_eq!(dsn.envelope_url(), "https://o1.ingest.sentry.io/api/4505/envelope/");
/// assert_eq!(dsn.to_string(), "https://***@o1.ingest.sentry.io/4505");
/// assert!(!format!("{dsn:?}").contains("abc123"));
/// assert!("not a dsn".parse::<obs::sentry::Dsn>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    /// `scheme://host[:port][/path]`, without the project id.
    base: String,
    public_key: String,
    project_id: String,
}

impl Dsn {
    /// The envelope endpoint: `{base}/api/{project_id}/envelope/`.
    pub fn envelope_url(&self) -> String {
        format!("{}/api/{}/envelope/", self.base, self.project_id)
    }

    /// The `X-Sentry-Auth` header value (contains the public key: never log it).
    pub(crate) fn auth_header(&self) -> String {
        format!(
            "Sentry sentry_version=7, sentry_client=obs/{}, sentry_key={}",
            env!("CARGO_PKG_VERSION"),
            self.public_key
        )
    }
}

impl std::str::FromStr for Dsn {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (scheme, rest) = s
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
            .ok_or("expected http:// or https://")?;
        let (userinfo, location) = rest.rsplit_once('@').ok_or("no public key")?;
        let public_key = userinfo.split(':').next().unwrap_or_default();
        let (host_and_path, project_id) = location
            .trim_end_matches('/')
            .rsplit_once('/')
            .ok_or("no project id")?;
        let ok_key =
            !public_key.is_empty() && public_key.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok_key {
            return Err("the public key must be alphanumeric");
        }
        if project_id.is_empty() || !project_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("the project id must be alphanumeric");
        }
        let host = host_and_path.split('/').next().unwrap_or_default();
        if host.is_empty() || format!("{scheme}://{host}/").parse::<http::Uri>().is_err() {
            return Err("invalid host");
        }
        Ok(Self {
            base: format!("{scheme}://{host_and_path}"),
            public_key: public_key.to_owned(),
            project_id: project_id.to_owned(),
        })
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, host) = self.base.split_once("://").unwrap_or(("https", &self.base));
        write!(f, "{scheme}://***@{host}/{}", self.project_id)
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dsn({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_self_hosted_and_legacy_forms() {
        let d: Dsn = "http://key:secret@localhost:9000/sentry/17"
            .parse()
            .unwrap();
        assert_eq!(
            d.envelope_url(),
            "http://localhost:9000/sentry/api/17/envelope/"
        );
        assert!(
            d.auth_header().contains("sentry_key=key,")
                || d.auth_header().ends_with("sentry_key=key")
        );
        assert!(!d.to_string().contains("secret") && !d.to_string().contains("key@"));
        for bad in [
            "",
            "https://o1.ingest.sentry.io/1",
            "ftp://k@h/1",
            "https://k@h/",
            "https://k@/1",
            "https://k y@h/1",
        ] {
            assert!(bad.parse::<Dsn>().is_err(), "{bad:?}");
        }
    }
}
