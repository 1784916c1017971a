//! Where a message's links go, so that every one of them opens.
//!
//! Rule annotations name the runbook and the dashboard either absolutely (used as they are) or
//! relative to a base URL, as the shipped rules do (`RUNBOOK.md#higherrorrate`,
//! `d/obs-red/obs-red?var-job=checkout`). Relative ones are joined to the `links:` settings,
//! which default to what the collector serves itself: its copy of the shipped runbook, and,
//! without a Grafana, its status page at the alert's rule. A link that cannot be built (no base,
//! not http(s)) is left out rather than sent dead.

use reqwest::Url;

use crate::labels::Labels;

/// The base URLs of a message's links.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Links {
    /// How people reach this collector (`links.external_url`, else its listen address).
    pub external: Option<Url>,
    /// Base of relative `runbook_url` annotations (default: the collector's `/alerts/`).
    pub runbook: Option<Url>,
    /// Base of relative `dashboard_url` annotations, a Grafana (default: none, the status page).
    pub dashboard: Option<Url>,
    /// Where a trace opens (`notifiers.trace_url`): a URL with `{{ trace_id }}` in it.
    pub trace: Option<String>,
}

/// The placeholder of `notifiers.trace_url`.
pub const TRACE_ID: &str = "{{ trace_id }}";

/// A link setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// Not an absolute http:// or https:// URL.
    NotHttp { setting: String, value: String },
    /// A `notifiers.trace_url` without [`TRACE_ID`].
    NoTraceId { value: String },
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotHttp { setting, value } => {
                write!(f, "{setting} {value:?} is not an http:// or https:// URL")
            }
            Self::NoTraceId { value } => {
                write!(f, "notifiers.trace_url {value:?} has no {TRACE_ID}")
            }
        }
    }
}

impl std::error::Error for LinkError {}

/// A `notifiers.trace_url` setting: http(s), with [`TRACE_ID`] where the id goes.
///
/// ```
/// let t = obs_collector::links::trace_template("http://jaeger:16686/trace/{{ trace_id }}").unwrap();
/// assert!(obs_collector::links::trace_template("http://jaeger:16686/trace/").is_err());
/// # let _ = t;
/// ```
pub fn trace_template(text: &str) -> Result<String, LinkError> {
    let text = text.trim();
    let probe = text.replace(TRACE_ID, "0af7651916cd43dd8448eb211c80319c");
    if !text.contains(TRACE_ID) {
        return Err(LinkError::NoTraceId {
            value: text.to_owned(),
        });
    }
    absolute(&probe)
        .filter(|u| u.has_host())
        .map(|_| text.to_owned())
        .ok_or_else(|| LinkError::NotHttp {
            setting: "notifiers.trace_url".into(),
            value: text.to_owned(),
        })
}

/// A base URL setting: http(s), and a directory (a trailing `/` added), so that relative
/// references join below it rather than beside it.
///
/// ```
/// let base = obs_collector::links::base("links.dashboard", "https://grafana.example.com/g").unwrap();
/// assert_eq!(base.join("d/obs-red").unwrap().as_str(), "https://grafana.example.com/g/d/obs-red");
/// assert!(obs_collector::links::base("links.dashboard", "grafana:3000").is_err());
/// ```
pub fn base(setting: &str, text: &str) -> Result<Url, LinkError> {
    let mut url = Url::parse(text.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .ok_or_else(|| LinkError::NotHttp {
            setting: setting.to_owned(),
            value: text.to_owned(),
        })?;
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

/// `text` as an absolute http(s) URL, if it is one.
fn absolute(text: &str) -> Option<Url> {
    Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
}

/// `annotation` resolved: as it is when absolute, else joined to `base`.
fn resolve(annotation: Option<&str>, base: Option<Url>) -> Option<String> {
    let text = annotation.map(str::trim).filter(|t| !t.is_empty())?;
    match absolute(text) {
        Some(url) => Some(url.into()),
        // A relative reference (or a scheme Slack would not open): below the base, or nothing.
        None if Url::parse(text).is_err() => base?.join(text).ok().map(Into::into),
        None => None,
    }
}

impl Links {
    /// The runbook of an alert whose `runbook_url` annotation is `annotation`.
    ///
    /// ```
    /// use obs_collector::links::{base, Links};
    /// let links = Links { external: Some(base("e", "http://obs.example:9465").unwrap()), ..Links::default() };
    /// assert_eq!(links.runbook(Some("RUNBOOK.md#targetdown")).unwrap(), "http://obs.example:9465/alerts/RUNBOOK.md#targetdown");
    /// assert_eq!(links.runbook(Some("https://wiki.example/x")).unwrap(), "https://wiki.example/x");
    /// assert_eq!(links.runbook(Some("javascript:alert(1)")), None);
    /// ```
    pub fn runbook(&self, annotation: Option<&str>) -> Option<String> {
        let base = self
            .runbook
            .clone()
            .or_else(|| self.external.as_ref()?.join("alerts/").ok());
        resolve(annotation, base)
    }

    /// The dashboard of a group: its `dashboard_url` annotation below `links.dashboard`, or
    /// the collector's status page at the alert's rule when there is no Grafana to open.
    pub fn dashboard(&self, annotation: Option<&str>, alertname: &str) -> Option<String> {
        if let Some(url) = annotation.and_then(|a| absolute(a.trim())) {
            return Some(url.into());
        }
        if self.dashboard.is_some() {
            if let Some(url) = resolve(annotation, self.dashboard.clone()) {
                return Some(url);
            }
        }
        let mut page = self.external.clone()?;
        page.set_fragment(Some(&format!("rule-{alertname}")));
        Some(page.into())
    }

    /// `dashboard` (from [`Links::dashboard`]) pinned to an incident: Grafana's `from` and `to`
    /// (epoch ms) set to `window`, so that the link opened tomorrow still shows the incident,
    /// and `var-route` to the route behind it when one is known. The collector's own status
    /// page is left as it is (it shows the last hour).
    ///
    /// ```
    /// use obs_collector::links::{base, Links};
    /// let links = Links { dashboard: Some(base("d", "https://grafana.example/").unwrap()), ..Links::default() };
    /// let url = links.dashboard(Some("d/obs-red/obs-red?var-job=api&viewPanel=2&from=now-1h"), "A").unwrap();
    /// assert_eq!(
    ///     links.pinned(url.clone(), (1_000, 2_000), None),
    ///     "https://grafana.example/d/obs-red/obs-red?var-job=api&viewPanel=2&from=1000&to=2000"
    /// );
    /// assert_eq!(
    ///     links.pinned(url, (1_000, 2_000), Some("/users/{id}")),
    ///     "https://grafana.example/d/obs-red/obs-red?var-job=api&viewPanel=2&from=1000&to=2000&var-route=%2Fusers%2F%7Bid%7D"
    /// );
    /// ```
    pub fn pinned(
        &self,
        dashboard: String,
        (from_ms, to_ms): (i64, i64),
        route: Option<&str>,
    ) -> String {
        let Ok(mut url) = Url::parse(&dashboard) else {
            return dashboard;
        };
        let own = self
            .external
            .as_ref()
            .is_some_and(|e| e.origin() == url.origin() && e.path() == url.path());
        if own {
            return dashboard;
        }
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "from" && k != "to" && (route.is_none() || k != "var-route"))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut query = url.query_pairs_mut();
        query
            .clear()
            .extend_pairs(kept)
            .append_pair("from", &from_ms.to_string())
            .append_pair("to", &to_ms.to_string());
        if let Some(route) = route {
            query.append_pair("var-route", route);
        }
        drop(query);
        url.into()
    }

    /// The page of trace `trace_id` (32 hex digits), when `notifiers.trace_url` is set.
    ///
    /// ```
    /// use obs_collector::links::{trace_template, Links};
    /// let links = Links { trace: Some(trace_template("https://grafana.example/explore?left=%7B%22queries%22:%5B%7B%22query%22:%22{{ trace_id }}%22%7D%5D%7D").unwrap()), ..Links::default() };
    /// assert!(links.trace("4bf92f3577b34da6a3ce929d0e0e4736").unwrap().contains("%224bf92f3577b34da6a3ce929d0e0e4736%22"));
    /// assert_eq!(links.trace("<script>"), None, "only hex ids");
    /// ```
    pub fn trace(&self, trace_id: &str) -> Option<String> {
        let valid = !trace_id.is_empty()
            && trace_id.len() <= 32
            && trace_id.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.trace.as_ref().map(|t| t.replace(TRACE_ID, trace_id)))?
    }

    /// The status page's silence form, filled in with `labels` as matchers and `hours`.
    ///
    /// ```
    /// use obs_collector::labels::Labels;
    /// use obs_collector::links::{base, Links};
    /// let links = Links { external: Some(base("e", "http://obs.example:9465/").unwrap()), ..Links::default() };
    /// let group = Labels::from_pairs(&[("alertname", "HighErrorRate"), ("job", "check out")]);
    /// assert_eq!(
    ///     links.silence(&group, 1).unwrap(),
    ///     "http://obs.example:9465/silences/new?label.alertname=HighErrorRate&label.job=check+out&for=1h"
    /// );
    /// ```
    pub fn silence(&self, labels: &Labels, hours: u32) -> Option<String> {
        if labels.is_empty() {
            return None;
        }
        let mut url = self.external.as_ref()?.join("silences/new").ok()?;
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in labels.iter() {
                query.append_pair(&format!("label.{name}"), value);
            }
            query.append_pair("for", &format!("{hours}h"));
        }
        Some(url.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_annotations_join_their_base_and_nothing_dead_is_made() {
        let grafana = Links {
            external: Some(base("e", "http://127.0.0.1:9465/").unwrap()),
            runbook: Some(base("r", "https://git.example/ops/obs/blob/main/alerts").unwrap()),
            dashboard: Some(base("d", "https://grafana.example/").unwrap()),
            trace: None,
        };
        assert_eq!(
            grafana.runbook(Some("RUNBOOK.md#higherrorrate")).unwrap(),
            "https://git.example/ops/obs/blob/main/alerts/RUNBOOK.md#higherrorrate"
        );
        assert_eq!(
            grafana
                .dashboard(Some("d/obs-red/obs-red?var-job=api"), "HighErrorRate")
                .unwrap(),
            "https://grafana.example/d/obs-red/obs-red?var-job=api"
        );
        let alone = Links {
            external: grafana.external.clone(),
            ..Links::default()
        };
        assert_eq!(
            alone
                .dashboard(Some("d/obs-red/obs-red?var-job=api"), "HighErrorRate")
                .unwrap(),
            "http://127.0.0.1:9465/#rule-HighErrorRate",
            "no Grafana: the status page"
        );
        assert_eq!(
            alone.dashboard(None, "X").unwrap(),
            "http://127.0.0.1:9465/#rule-X"
        );
        let nothing = Links::default();
        assert_eq!(nothing.runbook(Some("RUNBOOK.md#x")), None);
        assert_eq!(nothing.dashboard(Some("d/x"), "X"), None);
        assert_eq!(nothing.silence(&Labels::from_pairs(&[("a", "b")]), 1), None);
        assert_eq!(alone.runbook(Some("  ")), None);
        assert_eq!(alone.runbook(Some("data:text/html,x")), None);
        for bad in ["ftp://x/", "x", "http://"] {
            assert!(base("links.runbook", bad).is_err(), "{bad}");
        }
    }
}
