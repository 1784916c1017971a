//! Configuration: a Prometheus-shaped YAML file, validated with file, line and reason.
//!
//! A Prometheus configuration that uses only the shared keys loads unchanged:
//! `global.scrape_interval`, `scrape_timeout`, `evaluation_interval`, `external_labels`,
//! `rule_files`, and `scrape_configs[]` with `job_name`, `scrape_interval`, `scrape_timeout`,
//! `metrics_path`, `scheme`, `body_size_limit`, `static_configs[].targets/labels`. Unknown keys
//! are errors (a typo must not silently disable a job).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub mod changes;
pub mod route;

pub use route::Route;

use crate::inhibit::InhibitRule;
use crate::labels::Labels;
use crate::links::Links;
use crate::silence;

/// The embedded default rules: the very file shipped in `alerts/`.
pub const DEFAULT_RULES: &str = include_str!("../../../alerts/obs-red.rules.yml");
/// Where the default rules come from, for messages.
pub const DEFAULT_RULES_NAME: &str = "alerts/obs-red.rules.yml (embedded)";
/// The default target when there is no configuration file.
pub const DEFAULT_TARGET: &str = "127.0.0.1:9464";
/// Largest configuration or rule file read.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A configuration or rule-file error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: impl fmt::Display, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }

    /// A YAML parser's error, with the line the parser reports.
    pub(crate) fn yaml(file: &str, e: &serde_saphyr::Error) -> Self {
        let line = e
            .location()
            .map(|l| l.line() as usize)
            .filter(|line| *line > 0);
        // The plain rendering appends " at line X column Y"; the line is reported separately.
        let message = e.without_snippet().to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_owned();
        Self::new(file, line, message)
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// An `inhibit_rules` entry, its matchers parsed as Alertmanager's.
fn inhibit_rule(raw: &RawInhibitRule) -> Result<InhibitRule, Invalid> {
    let parse = |texts: &[String], what: &str| -> Result<Vec<silence::Matcher>, Invalid> {
        if texts.is_empty() {
            return Err(format!("{what} is required").into());
        }
        texts
            .iter()
            .map(|t| silence::parse_filter(t).map_err(|e| Invalid(format!("{what}: {e}"))))
            .collect()
    };
    Ok(InhibitRule {
        source: parse(&raw.source_matchers, "source_matchers")?,
        target: parse(&raw.target_matchers, "target_matchers")?,
        equal: raw.equal.clone(),
    })
}

/// A value the configuration cannot take; the message names the setting (`query.url "x" must
/// start with http:// or https://`), the caller adds the file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

impl From<String> for Invalid {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<&str> for Invalid {
    fn from(message: &str) -> Self {
        Self(message.to_owned())
    }
}

/// Parses a Prometheus duration: `1y2w3d4h5m6s7ms` (units in this order, each at most once), or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, Invalid> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let bad = || {
        Invalid(format!(
            "invalid duration {s:?} (examples: 15s, 2500ms, 1m30s)"
        ))
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total: i64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let pos = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(bad)?
            + next_unit;
        total = n
            .checked_mul(UNITS[pos].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        next_unit = pos + 1;
        rest = &rest[unit_len..];
    }
    if s.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_millis(total.unsigned_abs()))
}

/// A duration field in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    global: Global,
    #[serde(default)]
    rule_files: Vec<Spanned<String>>,
    #[serde(default)]
    scrape_configs: Vec<ScrapeConfig>,
    notifiers: Option<Spanned<RawNotifiers>>,
    query: Option<Spanned<RawQuery>>,
    /// Absent: the shipped default ([`InhibitRule::defaults`]); `[]`: none.
    inhibit_rules: Option<Vec<Spanned<RawInhibitRule>>>,
    route: Option<Spanned<route::RawRoute>>,
    links: Option<Spanned<RawLinks>>,
    verdicts: Option<Spanned<changes::RawVerdicts>>,
    report: Option<Spanned<changes::RawReport>>,
}

/// `links:`: the base URLs of messages' links (see [`crate::links`]).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLinks {
    external_url: Option<String>,
    runbook: Option<String>,
    dashboard: Option<String>,
}

impl RawLinks {
    fn resolve(self) -> Result<Links, Invalid> {
        let parse = |setting: &str, text: Option<String>| {
            text.map(|t| crate::links::base(setting, &t))
                .transpose()
                .map_err(|e| Invalid(e.to_string()))
        };
        Ok(Links {
            external: parse("links.external_url", self.external_url)?,
            runbook: parse("links.runbook", self.runbook)?,
            dashboard: parse("links.dashboard", self.dashboard)?,
            trace: None, // notifiers.trace_url
        })
    }
}

/// Alertmanager's `inhibit_rules` entry (matchers as strings: `alertname="TargetDown"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInhibitRule {
    #[serde(default)]
    source_matchers: Vec<String>,
    #[serde(default)]
    target_matchers: Vec<String>,
    #[serde(default)]
    equal: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    url: String,
    timeout: Option<Dur>,
    query_offset: Option<Dur>,
    bearer_token_file: Option<String>,
    basic_auth: Option<RawBasicAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    username: String,
    password_file: String,
}

/// Remote mode: rules are evaluated by a Prometheus-compatible query API.
#[derive(Debug, Clone)]
pub struct RemoteQuery {
    pub url: String,
    pub timeout: Duration,
    /// Rules are evaluated this long before the evaluation time (`query_offset`).
    pub offset: Duration,
    pub auth: Option<QueryAuth>,
}

#[derive(Debug, Clone)]
pub enum QueryAuth {
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

impl RemoteQuery {
    fn resolve(
        raw: RawQuery,
        dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Invalid> {
        if !(raw.url.starts_with("http://") || raw.url.starts_with("https://")) {
            return Err(format!(
                "query.url {:?} must start with http:// or https://",
                raw.url
            )
            .into());
        }
        let read = |file: &str, what: &str| {
            std::fs::read_to_string(dir.join(file))
                .map(|s| Secret(s.trim().to_owned()))
                .map_err(|e| format!("query.{what} {file}: {e}"))
        };
        let auth = match (raw.bearer_token_file, raw.basic_auth) {
            (Some(_), Some(_)) => {
                return Err("query: use bearer_token_file or basic_auth, not both".into())
            }
            (Some(file), None) => Some(QueryAuth::Bearer(read(&file, "bearer_token_file")?)),
            (None, Some(b)) => Some(QueryAuth::Basic {
                password: read(&b.password_file, "basic_auth.password_file")?,
                username: b.username,
            }),
            (None, None) => env("OBS_QUERY_BEARER_TOKEN")
                .filter(|t| !t.trim().is_empty())
                .map(|t| QueryAuth::Bearer(Secret(t.trim().to_owned()))),
        };
        Ok(RemoteQuery {
            url: raw.url,
            timeout: raw.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
            offset: raw.query_offset.map_or(Duration::ZERO, |d| d.0),
            auth,
        })
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNotifiers {
    slack: Option<RawSlack>,
    console: Option<bool>,
    send_resolved: Option<bool>,
    repeat_interval: Option<Dur>,
    alertmanager: Option<RawAlertmanager>,
    /// Where an example trace opens: a URL with `{{ trace_id }}`.
    trace_url: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    /// Base URL, e.g. `http://127.0.0.1:9093`.
    url: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    /// A file holding the webhook URL (else the `SLACK_WEBHOOK_URL` environment variable).
    webhook_url_file: Option<String>,
}

/// A secret (webhook URL, token): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Where notifications go.
#[derive(Debug, Clone)]
pub struct Notify {
    pub slack: Option<Secret>,
    /// Alertmanager base URL.
    pub alertmanager: Option<String>,
    pub console: bool,
    pub send_resolved: bool,
}

impl Notify {
    fn resolve(
        raw: RawNotifiers,
        dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Invalid> {
        let slack = match raw.slack.and_then(|s| s.webhook_url_file) {
            Some(file) => {
                let path = dir.join(&file);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!("notifiers.slack.webhook_url_file {}: {e}", path.display())
                })?;
                Some(text.trim().to_owned())
            }
            None => env("SLACK_WEBHOOK_URL")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
        };
        if let Some(url) = &slack {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(
                    "the Slack webhook URL must start with https:// (value not shown)".into(),
                );
            }
        }
        let alertmanager = raw.alertmanager.map(|a| a.url);
        if let Some(url) = &alertmanager {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "notifiers.alertmanager.url {url:?} must start with http:// or https://"
                )
                .into());
            }
        }
        Ok(Notify {
            alertmanager,
            console: raw.console.unwrap_or(slack.is_none()),
            slack: slack.map(Secret),
            send_resolved: raw.send_resolved.unwrap_or(true),
        })
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Global {
    scrape_interval: Option<Spanned<Dur>>,
    scrape_timeout: Option<Dur>,
    evaluation_interval: Option<Spanned<Dur>>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScrapeConfig {
    job_name: Spanned<String>,
    scrape_interval: Option<Dur>,
    scrape_timeout: Option<Dur>,
    metrics_path: Option<String>,
    scheme: Option<String>,
    body_size_limit: Option<String>,
    #[serde(default)]
    static_configs: Vec<StaticConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticConfig {
    #[serde(default)]
    targets: Vec<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub evaluation_interval: Duration,
    pub external_labels: Labels,
    pub jobs: Vec<Job>,
    /// `(name for messages, text)` of every rule file.
    pub rule_files: Vec<(String, String)>,
    pub notify: Notify,
    /// Remote mode (`query.url`): no scraping, rules evaluated by the backend.
    pub remote: Option<RemoteQuery>,
    pub inhibit_rules: Vec<InhibitRule>,
    pub route: Route,
    /// `links.external_url` unset: the collector's listen address (set at start).
    pub links: Links,
    /// How deploys are judged (`verdicts:`).
    pub verdicts: changes::Verdicts,
    /// When the weekly report is sent (`report:`).
    pub report: changes::Report,
}

/// One scrape job.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub metrics_path: String,
    pub scheme: String,
    pub body_size_limit: u64,
    pub targets: Vec<Target>,
}

/// One target of a job.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`.
    pub address: String,
    /// `job`, `instance` and the static labels.
    pub labels: Labels,
}

/// Prometheus defaults: 1m scrape and evaluation, 10s timeout. Without a file obs uses 15s.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const NO_CONFIG_INTERVAL: Duration = Duration::from_secs(15);
/// Default body size limit when the job sets none (Prometheus: unlimited).
pub const DEFAULT_BODY_SIZE_LIMIT: u64 = 16 * 1024 * 1024;

impl Config {
    /// No file: scrape `127.0.0.1:9464` as job `app` every 15 s with the embedded rules;
    /// Slack when `SLACK_WEBHOOK_URL` is set, else the console.
    pub fn default_config(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let notify = Notify::resolve(RawNotifiers::default(), Path::new("."), env)
            .map_err(|m| ConfigError::new("SLACK_WEBHOOK_URL", None, m.to_string()))?;
        Ok(Config {
            evaluation_interval: NO_CONFIG_INTERVAL,
            external_labels: Labels::default(),
            jobs: vec![Job {
                name: "app".into(),
                interval: NO_CONFIG_INTERVAL,
                timeout: DEFAULT_TIMEOUT,
                metrics_path: "/metrics".into(),
                scheme: "http".into(),
                body_size_limit: DEFAULT_BODY_SIZE_LIMIT,
                targets: vec![target("app", DEFAULT_TARGET, &BTreeMap::new())],
            }],
            rule_files: vec![(DEFAULT_RULES_NAME.into(), DEFAULT_RULES.into())],
            inhibit_rules: InhibitRule::defaults(),
            route: Route::default(),
            links: Links::default(),
            notify,
            remote: None,
            verdicts: changes::Verdicts::default(),
            report: changes::Report::default(),
        })
    }

    /// Reads and validates `path` and the rule files it names (relative to its directory).
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = read_bounded(path)?;
        Self::parse(
            &text,
            &path.display().to_string(),
            path.parent().unwrap_or(Path::new(".")),
            env,
        )
    }

    /// Parses configuration `text` (named `file` in errors); rule paths are relative to `dir`.
    pub fn parse(
        text: &str,
        file: &str,
        dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: FileConfig = if text.trim().is_empty() {
            FileConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::yaml(file, &e))?
        };
        let err = |line: Option<usize>, message: String| ConfigError::new(file, line, message);
        let global_interval = raw
            .global
            .scrape_interval
            .as_ref()
            .map_or(DEFAULT_INTERVAL, |d| d.value.0);
        let global_timeout = raw
            .global
            .scrape_timeout
            .map_or(DEFAULT_TIMEOUT.min(global_interval), |d| d.0);
        if global_interval.is_zero() {
            return Err(err(
                raw.global.scrape_interval.as_ref().and_then(line),
                "global.scrape_interval must be positive".into(),
            ));
        }
        let evaluation_interval = raw
            .global
            .evaluation_interval
            .as_ref()
            .map_or(DEFAULT_INTERVAL, |d| d.value.0);
        if evaluation_interval.is_zero() {
            return Err(err(
                raw.global.evaluation_interval.as_ref().and_then(line),
                "global.evaluation_interval must be positive".into(),
            ));
        }
        let mut jobs: Vec<Job> = Vec::new();
        for sc in raw.scrape_configs {
            let at = line(&sc.job_name);
            let job_name = sc.job_name.value;
            if jobs.iter().any(|j| j.name == job_name) {
                return Err(err(at, format!("duplicate job_name {job_name:?}")));
            }
            let interval = sc.scrape_interval.map_or(global_interval, |d| d.0);
            let timeout = sc
                .scrape_timeout
                .map_or(global_timeout.min(interval), |d| d.0);
            if interval.is_zero() || timeout.is_zero() {
                return Err(err(
                    at,
                    format!(
                        "job {job_name:?}: scrape_interval and scrape_timeout must be positive"
                    ),
                ));
            }
            if timeout > interval {
                return Err(err(
                    at,
                    format!("job {job_name:?}: scrape_timeout is greater than scrape_interval"),
                ));
            }
            let scheme = sc.scheme.unwrap_or_else(|| "http".into());
            if scheme != "http" && scheme != "https" {
                return Err(err(
                    at,
                    format!("job {job_name:?}: scheme must be http or https, not {scheme:?}"),
                ));
            }
            let metrics_path = sc.metrics_path.unwrap_or_else(|| "/metrics".into());
            if !metrics_path.starts_with('/') {
                return Err(err(
                    at,
                    format!("job {job_name:?}: metrics_path must start with /"),
                ));
            }
            let body_size_limit = match sc.body_size_limit {
                None => DEFAULT_BODY_SIZE_LIMIT,
                Some(s) => parse_size(&s).map_err(|m| err(at, format!("job {job_name:?}: {m}")))?,
            };
            let mut targets = Vec::new();
            for st in &sc.static_configs {
                for t in &st.targets {
                    let (t_line, t) = (line(t), &t.value);
                    if !valid_address(t) {
                        return Err(err(
                            t_line,
                            format!("job {job_name:?}: target {t:?} is not host:port"),
                        ));
                    }
                    targets.push(target(&job_name, t, &st.labels));
                }
            }
            jobs.push(Job {
                name: job_name,
                interval,
                timeout,
                metrics_path,
                scheme,
                body_size_limit,
                targets,
            });
        }
        let mut rule_files = Vec::new();
        for pattern in &raw.rule_files {
            let (at, pattern) = (line(pattern), &pattern.value);
            let paths = expand_glob(&dir.join(pattern)).map_err(|m| err(at, m.to_string()))?;
            for p in paths {
                let text = read_bounded(&p).map_err(|e| err(at, format!("rule file {e}")))?;
                rule_files.push((p.display().to_string(), text));
            }
        }
        let external_labels = Labels::new(raw.global.external_labels.into_iter().collect());
        let (notifiers_line, notifiers) = match raw.notifiers {
            Some(n) => (line(&n), n.value),
            None => (None, RawNotifiers::default()),
        };
        // `notifiers.repeat_interval` is where the setting was before the route.
        let legacy_repeat = notifiers.repeat_interval.map(|d| d.0);
        let trace_url = match &notifiers.trace_url {
            Some(t) => Some(
                crate::links::trace_template(t).map_err(|m| err(notifiers_line, m.to_string()))?,
            ),
            None => None,
        };
        let notify =
            Notify::resolve(notifiers, dir, env).map_err(|m| err(notifiers_line, m.to_string()))?;
        let (route_line, raw_route) = match raw.route {
            Some(r) => (line(&r), r.value),
            None => (notifiers_line, route::RawRoute::default()),
        };
        let route =
            Route::resolve(raw_route, legacy_repeat).map_err(|m| err(route_line, m.to_string()))?;
        let mut links = match raw.links {
            None => Links::default(),
            Some(l) => {
                let at = line(&l);
                l.value.resolve().map_err(|m| err(at, m.to_string()))?
            }
        };
        links.trace = trace_url;
        let remote = match raw.query {
            None => None,
            Some(q) if !jobs.is_empty() => {
                return Err(err(line(&q), "query.url and scrape_configs exclude each other: in remote mode the backend scrapes".into()));
            }
            Some(q) => {
                let at = line(&q);
                Some(RemoteQuery::resolve(q.value, dir, env).map_err(|m| err(at, m.to_string()))?)
            }
        };
        let inhibit_rules = match raw.inhibit_rules {
            None => InhibitRule::defaults(),
            Some(rules) => rules
                .iter()
                .map(|r| {
                    inhibit_rule(&r.value).map_err(|m| err(line(r), format!("inhibit_rules: {m}")))
                })
                .collect::<Result<_, _>>()?,
        };
        let verdicts = match raw.verdicts {
            None => changes::Verdicts::default(),
            Some(v) => {
                let at = line(&v);
                v.value.resolve().map_err(|m| err(at, m.to_string()))?
            }
        };
        let report = match raw.report {
            None => changes::Report::default(),
            Some(r) => {
                let at = line(&r);
                r.value.resolve().map_err(|m| err(at, m.to_string()))?
            }
        };
        Ok(Config {
            verdicts,
            report,
            inhibit_rules,
            route,
            links,
            evaluation_interval,
            external_labels,
            jobs,
            rule_files,
            notify,
            remote,
        })
    }

    /// The longest interval between two scrapes of any job.
    pub fn max_scrape_interval(&self) -> Duration {
        self.jobs
            .iter()
            .map(|j| j.interval)
            .max()
            .unwrap_or_default()
    }
}

fn target(job: &str, address: &str, labels: &BTreeMap<String, String>) -> Target {
    let mut pairs: Vec<(String, String)> =
        labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    pairs.push(("job".into(), job.into()));
    pairs.push(("instance".into(), address.into()));
    Target {
        address: address.into(),
        labels: Labels::new(pairs),
    }
}

fn valid_address(t: &str) -> bool {
    match t.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

/// `10MB`, `512KiB`... as Prometheus' `body_size_limit` and `--storage.tsdb.retention.size`
/// (base 1024 as in Prometheus' units); `0` is no limit (`u64::MAX`).
pub fn parse_size(s: &str) -> Result<u64, Invalid> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split]
        .parse()
        .map_err(|_| Invalid(format!("invalid size {s:?}")))?;
    let mult = match s[split..].trim() {
        "" | "B" => 1,
        "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        "TB" | "TiB" => 1 << 40,
        "PB" | "PiB" => 1 << 50,
        other => return Err(format!("invalid size unit {other:?} (B, KB, MB, GB, TB, PB)").into()),
    };
    if n == 0 {
        return Ok(u64::MAX); // 0 means no limit, as in Prometheus
    }
    n.checked_mul(mult)
        .ok_or_else(|| Invalid(format!("size {s:?} is too large")))
}

/// Supports `*` in the file-name part only (`rules/*.yml`), as most Prometheus configs use.
fn expand_glob(pattern: &Path) -> Result<Vec<PathBuf>, Invalid> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains('*') {
        return Ok(vec![pattern.to_path_buf()]);
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    let (prefix, suffix) = name.split_once('*').unwrap_or((&name, ""));
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Invalid(format!("cannot list {}: {e}", dir.display())))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            n.len() >= prefix.len() + suffix.len() && n.starts_with(prefix) && n.ends_with(suffix)
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Reads a file, refusing anything larger than [`MAX_FILE_BYTES`].
pub fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::new(path.display(), None, format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(ConfigError::new(
            path.display(),
            None,
            format!(
                "file is {} bytes; the limit is {MAX_FILE_BYTES}",
                meta.len()
            ),
        ));
    }
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path.display(), None, format!("cannot read: {e}")))
}

/// The line of a YAML value, as the parser saw it.
pub(crate) fn line<T>(value: &serde_saphyr::Spanned<T>) -> Option<usize> {
    Some(value.referenced.line() as usize).filter(|line| *line > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_millis(15_000)));
        assert_eq!(parse_duration("2500ms"), Ok(Duration::from_millis(2_500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_millis(90_000)));
        assert_eq!(parse_duration("1h0m"), Ok(Duration::from_millis(3_600_000)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_millis(86_400_000)));
        assert_eq!(parse_duration("0"), Ok(Duration::from_millis(0)));
        for bad in ["", "15", "s", "1s1m", "1m1m", "-5s", "1.5s", "10 s", "5x"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    const PROMETHEUS_SHAPED: &str = r#"
global:
  scrape_interval: 15s
  scrape_timeout: 5s
  evaluation_interval: 15s
  external_labels:
    cluster: eu-1
scrape_configs:
  - job_name: api
    static_configs:
      - targets: ['10.0.0.1:9464', 'api-2.internal:9464']
        labels:
          team: payments
  - job_name: worker
    scrape_interval: 30s
    metrics_path: /internal/metrics
    scheme: https
    body_size_limit: 10MB
    static_configs:
      - targets: ['worker:9000']
"#;

    #[test]
    fn a_prometheus_config_loads_unchanged() {
        let c = Config::parse(PROMETHEUS_SHAPED, "prometheus.yml", Path::new("."), &|_| {
            None
        })
        .unwrap();
        assert_eq!(c.evaluation_interval, Duration::from_secs(15));
        assert_eq!(c.external_labels.get("cluster"), Some("eu-1"));
        assert_eq!(c.jobs.len(), 2);
        let api = &c.jobs[0];
        assert_eq!(
            (api.interval, api.timeout, api.targets.len()),
            (Duration::from_secs(15), Duration::from_secs(5), 2)
        );
        assert_eq!(
            api.targets[1].labels.to_string(),
            r#"{instance="api-2.internal:9464", job="api", team="payments"}"#
        );
        let worker = &c.jobs[1];
        assert_eq!(
            (
                worker.interval,
                worker.scheme.as_str(),
                worker.metrics_path.as_str()
            ),
            (Duration::from_secs(30), "https", "/internal/metrics")
        );
        assert_eq!(worker.body_size_limit, 10 << 20);
        assert!(c.rule_files.is_empty());
    }

    #[test]
    fn inhibit_rules_default_explicit_none_and_bad() {
        let parse = |text: &str| Config::parse(text, "c.yml", Path::new("."), &|_| None);
        assert_eq!(parse("").unwrap().inhibit_rules, InhibitRule::defaults());
        assert!(parse("inhibit_rules: []\n")
            .unwrap()
            .inhibit_rules
            .is_empty());
        let c = parse("inhibit_rules:\n  - source_matchers: ['alertname=\"A\"']\n    target_matchers: ['severity=~\"warn.*\"']\n    equal: [job, cluster]\n").unwrap();
        assert_eq!(c.inhibit_rules[0].equal, ["job", "cluster"]);
        assert!(c.inhibit_rules[0].target[0].is_regex);
        let e = parse("scrape_configs: []\ninhibit_rules:\n  - source_matchers: ['alertname=~\"(\"']\n    target_matchers: ['a=\"b\"']\n").unwrap_err();
        assert!(
            e.message.contains("source_matchers") && e.line == Some(3),
            "{e}"
        );
        let e = parse("inhibit_rules:\n  - equal: [job]\n").unwrap_err();
        assert!(e.message.contains("source_matchers is required"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let cases = [
            ("global:\n  scrape_interval: 15x\n", Some(2), "invalid duration"),
            ("scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['nohost']\n", Some(4), "not host:port"),
            ("scrape_configs:\n  - job_name: a\n    scrap_interval: 5s\n", Some(3), "unknown field `scrap_interval`"),
            ("scrape_configs:\n  - job_name: a\n  - job_name: a\n", Some(3), "duplicate job_name"),
            ("scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n", Some(2), "greater than scrape_interval"),
            ("alerting: {}\n", Some(1), "unknown field `alerting`"),
            ("rule_files: [does-not-exist.yml]\n", Some(1), "cannot read"),
        ];
        for (text, line, needle) in cases {
            let e = Config::parse(text, "c.yml", Path::new("/nonexistent"), &|_| None).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
            assert!(e.to_string().starts_with("c.yml:"), "{e}");
        }
    }

    #[test]
    fn notifiers_from_env_or_file_and_never_shown() {
        let hook = "https://hooks.slack.com/services/T000/B000/SECRET";
        let env = |k: &str| (k == "SLACK_WEBHOOK_URL").then(|| hook.to_owned());
        let c = Config::parse("", "c.yml", Path::new("."), &env).unwrap();
        assert_eq!(c.notify.slack.as_ref().map(Secret::expose), Some(hook));
        assert!(!c.notify.console && c.notify.send_resolved);
        assert_eq!(c.route.repeat_interval, Duration::from_secs(4 * 3600));
        assert!(
            !format!("{c:?}").contains("SECRET"),
            "Debug never shows the webhook"
        );
        let c = Config::parse("", "c.yml", Path::new("."), &|_| None).unwrap();
        assert!(
            c.notify.slack.is_none() && c.notify.console,
            "console by default"
        );

        let dir = std::env::temp_dir().join(format!("obs-notify-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hook"), "not-a-url-SECRET\n").unwrap();
        let text = "notifiers:\n  slack:\n    webhook_url_file: hook\n  repeat_interval: 1h\n";
        let e = Config::parse(text, "c.yml", &dir, &|_| None).unwrap_err();
        assert!(
            e.message.contains("https://") && !e.to_string().contains("SECRET"),
            "{e}"
        );
        std::fs::write(dir.join("hook"), format!("{hook}\n")).unwrap();
        let c = Config::parse(text, "c.yml", &dir, &|_| None).unwrap();
        assert_eq!(
            (c.notify.slack.unwrap().expose(), c.route.repeat_interval),
            (hook, Duration::from_secs(3600))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_readme_configs_load() {
        let readme = include_str!("../../../README.md");
        let dir = std::env::temp_dir().join(format!("obs-readme-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for secret in ["slack-webhook", "token"] {
            std::fs::write(dir.join(secret), "https://hooks.slack.com/services/T/B/x\n").unwrap();
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut blocks = 0;
        let mut lines = readme.lines();
        while let Some(line) = lines.next() {
            if line.trim_start() != "```yaml" {
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            let text: String = lines
                .by_ref()
                .take_while(|l| l.trim_start() != "```")
                .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
                .collect::<String>()
                .replace("/etc/obs/", &format!("{}/", dir.display()));
            blocks += 1;
            if let Err(e) = Config::parse(&text, "README.md", &root, &|_| None) {
                panic!("README yaml block {blocks} does not load: {e}\n{text}");
            }
        }
        assert_eq!(blocks, 8, "every collector config in the README is checked");
    }

    #[test]
    fn remote_query_mode() {
        let text = "query:\n  url: http://prom:9090\n  query_offset: 30s\n  timeout: 5s\n";
        let c = Config::parse(text, "c.yml", Path::new("."), &|k| {
            (k == "OBS_QUERY_BEARER_TOKEN").then(|| "tok".into())
        })
        .unwrap();
        let r = c.remote.unwrap();
        assert_eq!(
            (r.url.as_str(), r.offset, r.timeout),
            (
                "http://prom:9090",
                Duration::from_secs(30),
                Duration::from_secs(5)
            )
        );
        assert!(matches!(&r.auth, Some(QueryAuth::Bearer(t)) if t.expose() == "tok"));
        assert!(!format!("{:?}", r.auth).contains("tok"));
        let both = "query:\n  url: http://p\nscrape_configs:\n  - job_name: a\n";
        let e = Config::parse(both, "c.yml", Path::new("."), &|_| None).unwrap_err();
        assert!(
            e.message.contains("exclude each other") && e.line == Some(2),
            "{e}"
        );
        let e = Config::parse(
            "query:\n  url: prom:9090\n",
            "c.yml",
            Path::new("."),
            &|_| None,
        )
        .unwrap_err();
        assert!(e.message.contains("http://"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512KB"), Ok(512 << 10));
        assert_eq!(parse_size("0"), Ok(u64::MAX));
        assert!(parse_size("10XB").is_err());
    }
}
