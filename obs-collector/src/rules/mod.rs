//! Rule files (Prometheus format) and rule groups.
//!
//! Each group is evaluated on its own interval; its rules run in order at the same timestamp,
//! so a recording rule's output is visible to the alerting rules after it.

pub mod alerting;
mod error;
mod evaluate;
pub mod template;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{line, ConfigError, Dur};
use crate::labels::{valid_metric_name, Labels, NAME};
use crate::promql::{self, Expr, Value};
use crate::store::{self, Store};
pub use alerting::{Alert, AlertingRule, State, Transition};
pub use error::RuleError;
pub use evaluate::{chart_point, evaluate, Evaluation};
use serde_saphyr::Spanned;
use template::Template;

/// Most rules accepted across all rule files (a runaway generator must not exhaust memory).
pub const MAX_RULES: usize = 5_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    interval: Option<Dur>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    alert: Option<Spanned<String>>,
    record: Option<Spanned<String>>,
    expr: Spanned<String>,
    #[serde(rename = "for")]
    for_: Option<Dur>,
    keep_firing_for: Option<Dur>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A group of rules evaluated together.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub file: String,
    pub interval: Duration,
    pub rules: Vec<Rule>,
}

impl Group {
    /// The group's alerting rules, in order (recording rules left out), as Prometheus'
    /// `Group.AlertingRules()`.
    pub fn alerting_rules(&self) -> impl Iterator<Item = &AlertingRule> {
        self.rules.iter().filter_map(|r| match &r.kind {
            Kind::Alerting(a) => Some(a),
            Kind::Recording(_) => None,
        })
    }
}

/// Evaluation bookkeeping of one rule.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub last_error: Option<String>,
    pub last_eval_ms: Option<i64>,
    pub last_duration_s: f64,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Alerting(AlertingRule),
    Recording(RecordingRule),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub kind: Kind,
    pub health: Health,
}

/// A recording rule: its output is stored as a new series.
#[derive(Debug, Clone)]
pub struct RecordingRule {
    pub name: String,
    pub expr_text: String,
    pub expr: Expr,
    pub labels: Vec<(String, String)>,
    /// Series written at the previous evaluation, to mark the vanished ones stale.
    pub last_output: HashSet<Labels>,
}

impl Rule {
    pub fn name(&self) -> &str {
        match &self.kind {
            Kind::Alerting(a) => &a.name,
            Kind::Recording(r) => &r.name,
        }
    }

    pub fn expr_text(&self) -> &str {
        match &self.kind {
            Kind::Alerting(a) => &a.expr_text,
            Kind::Recording(r) => &r.expr_text,
        }
    }

    pub fn expr(&self) -> &Expr {
        match &self.kind {
            Kind::Alerting(a) => &a.expr,
            Kind::Recording(r) => &r.expr,
        }
    }
}

impl RecordingRule {
    /// Evaluates and appends the result to the store.
    pub fn eval(&mut self, t: i64, store: &mut Store) -> Result<(), RuleError> {
        let samples = match promql::eval(&self.expr, store, t)? {
            Value::Vector(v) => v,
            Value::Scalar(v) => vec![promql::Sample {
                labels: Labels::default(),
                value: v,
            }],
        };
        let mut output = HashSet::with_capacity(samples.len());
        for s in samples {
            let mut labels = s.labels;
            labels.set(NAME, &self.name);
            for (k, v) in &self.labels {
                labels.set(k, v);
            }
            if !output.insert(labels.clone()) {
                return Err(RuleError::DuplicateLabelset { what: "rule" });
            }
            store.append(&labels, t, s.value);
        }
        for gone in self.last_output.difference(&output) {
            store.append(gone, t, store::stale());
        }
        self.last_output = output;
        Ok(())
    }
}

/// Loads one rule file. `default_interval` applies to groups without `interval`; `remote`
/// accepts any valid PromQL (the backend evaluates it) but no recording rules.
pub fn load(
    file: &str,
    text: &str,
    default_interval: Duration,
    remote: bool,
) -> Result<Vec<Group>, ConfigError> {
    let raw: RuleFile = serde_saphyr::from_str(text).map_err(|e| ConfigError::yaml(file, &e))?;
    let mut groups = Vec::new();
    let mut names = HashSet::new();
    for g in raw.groups {
        let group_line = line(&g.name);
        let group_name = g.name.value;
        if !names.insert(group_name.clone()) {
            return Err(ConfigError::new(
                file,
                group_line,
                format!("duplicate group name {group_name:?}"),
            ));
        }
        let interval = g.interval.map_or(default_interval, |d| d.0);
        if interval.is_zero() {
            return Err(ConfigError::new(
                file,
                group_line,
                format!("group {group_name:?}: interval must be positive"),
            ));
        }
        let mut rules = Vec::new();
        for r in g.rules {
            let (label, name) = match (&r.alert, &r.record) {
                (Some(a), None) => ("alert", a),
                (None, Some(n)) => ("record", n),
                _ => {
                    return Err(ConfigError::new(
                        file,
                        line(&r.expr),
                        "a rule needs exactly one of `alert` or `record`",
                    ));
                }
            };
            let (rule_line, name) = (line(name), name.value.clone());
            let fail = |m: String| ConfigError::new(file, rule_line, format!("rule {name:?}: {m}"));
            let expr_text = r.expr.value.trim().to_owned();
            let expr = if remote {
                promql::compile_for_remote(&expr_text)
            } else {
                promql::compile(&expr_text)
            }
            .map_err(|e| fail(e.0))?;
            if remote && label == "record" {
                return Err(fail("recording rules cannot run in remote mode (query.url): record them in the backend".into()));
            }
            if !expr.is_vector() && label == "alert" {
                return Err(fail(
                    "the expression must return a vector, not a scalar".into(),
                ));
            }
            let kind = if label == "alert" {
                let templates = |map: &BTreeMap<String, String>, what: &str| {
                    map.iter()
                        .map(|(k, v)| {
                            Template::parse(v)
                                .map(|t| (k.clone(), t))
                                .map_err(|e| fail(format!("{what} {k:?}: {e}")))
                        })
                        .collect::<Result<Vec<_>, _>>()
                };
                Kind::Alerting(AlertingRule {
                    name: name.clone(),
                    expr_text,
                    expr,
                    for_duration: r.for_.map_or(Duration::ZERO, |d| d.0),
                    keep_firing_for: r.keep_firing_for.map_or(Duration::ZERO, |d| d.0),
                    labels: templates(&r.labels, "label")?,
                    annotations: templates(&r.annotations, "annotation")?,
                    raw_labels: r.labels.clone().into_iter().collect(),
                    raw_annotations: r.annotations.clone().into_iter().collect(),
                    active: Default::default(),
                    warmup_until_ms: 0,
                    alerts_written: HashSet::new(),
                })
            } else {
                if r.for_.is_some() || r.keep_firing_for.is_some() || !r.annotations.is_empty() {
                    return Err(fail(
                        "recording rules take no `for`, `keep_firing_for` or annotations".into(),
                    ));
                }
                if !valid_metric_name(&name) {
                    return Err(fail("invalid metric name for `record`".into()));
                }
                Kind::Recording(RecordingRule {
                    name: name.clone(),
                    expr_text,
                    expr,
                    labels: r.labels.into_iter().collect(),
                    last_output: HashSet::new(),
                })
            };
            rules.push(Rule {
                kind,
                health: Health::default(),
            });
        }
        groups.push(Group {
            name: group_name,
            file: file.to_owned(),
            interval,
            rules,
        });
    }
    Ok(groups)
}

/// Loads every rule file, enforcing [`MAX_RULES`].
pub fn load_all(
    files: &[(String, String)],
    default_interval: Duration,
    remote: bool,
) -> Result<Vec<Group>, ConfigError> {
    let mut all = Vec::new();
    let mut count = 0;
    for (name, text) in files {
        let groups = load(name, text, default_interval, remote)?;
        count += groups.iter().map(|g| g.rules.len()).sum::<usize>();
        if count > MAX_RULES {
            return Err(ConfigError::new(
                name,
                None,
                format!("more than {MAX_RULES} rules in total"),
            ));
        }
        all.extend(groups);
    }
    Ok(all)
}

/// The error budget of the SLO rules (`alerts/obs-slo.rules.yml`) when they are loaded:
/// `ErrorBudgetFastBurn`'s threshold over its burn rate, 14.4 (0.001 for the shipped 99.9%
/// objective).
pub fn slo_budget<'a>(groups: impl IntoIterator<Item = &'a Group>) -> Option<f64> {
    const FAST_BURN: f64 = 14.4;
    groups
        .into_iter()
        .flat_map(Group::alerting_rules)
        .find(|a| a.name == "ErrorBudgetFastBurn")
        .and_then(|a| a.expr.threshold())
        .map(|t| t / FAST_BURN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_rules_load() {
        let groups = load(
            crate::config::DEFAULT_RULES_NAME,
            crate::config::DEFAULT_RULES,
            Duration::from_secs(60),
            false,
        )
        .unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].interval, Duration::from_secs(15));
        let names: Vec<&str> = groups[0].rules.iter().map(Rule::name).collect();
        assert_eq!(
            names,
            [
                "HighErrorRate",
                "HighLatencyP95",
                "HighJobFailureRate",
                "TargetDown"
            ]
        );
        let Kind::Alerting(a) = &groups[0].rules[0].kind else {
            panic!()
        };
        assert_eq!(a.for_duration, Duration::from_secs(120));
    }

    #[test]
    fn rule_errors_have_the_rule_line() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: Ok\n        expr: up == 0\n      - alert: Bad\n        expr: histogram_count(x) > 1\n";
        let e = load("r.yml", text, Duration::from_secs(15), false).unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        assert!(
            e.message.contains("Bad") && e.message.contains("histogram_count"),
            "{e}"
        );
        let e = load("r.yml", "groups:\n  - name: g\n    rules:\n      - alert: T\n        expr: up\n        annotations:\n          s: '{{ $labels.job'\n", Duration::from_secs(15), false).unwrap_err();
        assert!(e.message.contains("annotation") && e.line == Some(4), "{e}");
        let e = load("r.yml", "groups:\n  - name: g\n    rules:\n      - alert: T\n        expr: up\n        for: 5q\n", Duration::from_secs(15), false).unwrap_err();
        // The parser places a value's error on the value's own line.
        assert!(
            e.message.contains("invalid duration") && e.line == Some(6),
            "{e}"
        );
        let e = load(
            "r.yml",
            "groups:\n  - name: g\n    rules:\n      - alert: T\n        expr: '1'\n",
            Duration::from_secs(15),
            false,
        )
        .unwrap_err();
        assert!(e.message.contains("vector"), "{e}");
    }

    #[test]
    fn recording_rules_write_series_and_stale_markers() {
        let text = "groups:\n  - name: g\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n";
        let mut groups = load("r.yml", text, Duration::from_secs(15), false).unwrap();
        let Kind::Recording(r) = &mut groups[0].rules[0].kind else {
            panic!()
        };
        let mut store = Store::new(600_000);
        let up = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        store.append(&up, 0, 1.0);
        r.eval(0, &mut store).unwrap();
        let out = store.series(Some("job:up:sum")).next().unwrap();
        assert_eq!(out.instant(0, false), Some(1.0));
        store.append(&up, 1000, store::stale());
        r.eval(1000, &mut store).unwrap();
        assert_eq!(
            store
                .series(Some("job:up:sum"))
                .next()
                .unwrap()
                .instant(1000, false),
            None
        );
    }
}
