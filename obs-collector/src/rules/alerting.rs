//! Alerting rules and their state machine, as Prometheus' `rules/alerting.go`:
//! inactive -> pending (ActiveAt) -> firing (after `for`) -> inactive (resolved, kept 15 min),
//! with `keep_firing_for`, identity = output labels + rule labels + `alertname`, and a query
//! error leaving the state untouched.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::template::{Data, Template};
use super::RuleError;
use crate::labels::Labels;
use crate::promql::{self, Expr, Value};
use crate::store::Store;
use crate::time::millis;

/// How long a resolved alert is kept (and re-announced as resolved) before it is forgotten.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Inactive,
    Pending,
    Firing,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
        }
    }
}

/// One alert instance of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: Vec<(String, String)>,
    pub state: State,
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub keep_firing_since: Option<i64>,
    /// Restored from the state file and not seen in a result since.
    #[serde(skip)]
    pub restored: bool,
    /// When this alert was last sent to Alertmanager.
    #[serde(default)]
    pub last_sent_at: Option<i64>,
}

/// A state change worth telling someone about.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// A new instance started its `for` timer.
    Pending(Labels),
    /// A pending instance lost its condition before firing (timer reset).
    PendingReset(Labels),
    Firing(Labels),
    Resolved(Labels),
}

/// An alerting rule as loaded from a rule file.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    pub(crate) name: String,
    pub(crate) expr_text: String,
    pub(crate) expr: Expr,
    /// How long the condition must hold before the alert fires (`for`).
    pub(crate) for_duration: Duration,
    pub(crate) keep_firing_for: Duration,
    pub(crate) labels: Vec<(String, Template)>,
    pub(crate) annotations: Vec<(String, Template)>,
    /// The raw label and annotation texts, for the API.
    pub(crate) raw_labels: Vec<(String, String)>,
    pub(crate) raw_annotations: Vec<(String, String)>,
    pub(crate) active: HashMap<Labels, Alert>,
    /// After a restart the store is empty until scrapes refill the rule's windows; until then a
    /// restored alert missing from the result is missing data, not a false condition.
    pub(crate) warmup_until_ms: i64,
    /// The `ALERTS` series written at the last evaluation (each gone one gets a stale marker).
    pub(crate) alerts_written: HashSet<Labels>,
}

impl AlertingRule {
    /// Writes Prometheus' `ALERTS` series of the rule's pending and firing alerts at `t` into
    /// `store`, as Prometheus does: 1 for each, with the alert's labels, `alertname` and
    /// `alertstate`; a stale marker for each written before and gone now. The weekly report
    /// reads the week's alerts from them, and a query reads them as from Prometheus.
    pub fn write_alerts_series(&mut self, t: i64, store: &mut Store) {
        let mut now = HashSet::with_capacity(self.active.len());
        for a in self.active.values() {
            let state = match a.state {
                State::Pending => "pending",
                State::Firing => "firing",
                State::Inactive => continue,
            };
            let mut labels = a.labels.clone();
            labels.set(crate::labels::NAME, "ALERTS");
            labels.set("alertname", &self.name);
            labels.set("alertstate", state);
            store.append(&labels, t, 1.0);
            now.insert(labels);
        }
        for gone in self.alerts_written.difference(&now) {
            store.append(gone, t, crate::store::stale());
        }
        self.alerts_written = now;
    }

    /// Evaluates the rule over the local store at `t`. On error nothing changes.
    pub fn eval(
        &mut self,
        t: i64,
        store: &Store,
        external: &Labels,
    ) -> Result<Vec<Transition>, RuleError> {
        let result = promql::eval(&self.expr, store, t)?;
        self.apply(t, result, external)
    }

    /// Runs the state machine on the expression's result at `t` (from the local store or a
    /// remote backend).
    pub fn apply(
        &mut self,
        t: i64,
        result: Value,
        external: &Labels,
    ) -> Result<Vec<Transition>, RuleError> {
        let samples = match result {
            Value::Vector(v) => v,
            Value::Scalar(_) => return Err(RuleError::Scalar),
        };
        let mut current: HashMap<Labels, Alert> = HashMap::with_capacity(samples.len());
        for s in samples {
            let base = s.labels.without_name();
            let data = Data {
                labels: &base,
                external_labels: external,
                value: s.value,
            };
            let mut labels = base.clone();
            for (k, tmpl) in &self.labels {
                labels.set(k, &tmpl.expand(&data));
            }
            labels.set("alertname", &self.name);
            let annotations = self
                .annotations
                .iter()
                .map(|(k, tmpl)| (k.clone(), tmpl.expand(&data)))
                .collect();
            let alert = Alert {
                labels: labels.clone(),
                annotations,
                state: State::Pending,
                value: s.value,
                active_at: t,
                fired_at: None,
                resolved_at: None,
                keep_firing_since: None,
                restored: false,
                last_sent_at: None,
            };
            if current.insert(labels, alert).is_some() {
                return Err(RuleError::DuplicateLabelset { what: "alert" });
            }
        }

        let mut transitions = Vec::new();
        for (labels, alert) in current.iter() {
            match self.active.get_mut(labels) {
                Some(a) if a.state != State::Inactive => {
                    a.value = alert.value;
                    a.annotations = alert.annotations.clone();
                    a.restored = false;
                }
                _ => {
                    self.active.insert(labels.clone(), alert.clone());
                    transitions.push(Transition::Pending(labels.clone()));
                }
            }
        }
        let mut forget = Vec::new();
        for (labels, a) in self.active.iter_mut() {
            if !current.contains_key(labels) {
                if a.restored && t < self.warmup_until_ms {
                    continue;
                }
                let keep_for = millis(self.keep_firing_for);
                let keep = a.state == State::Firing && keep_for > 0 && {
                    let since = *a.keep_firing_since.get_or_insert(t);
                    t - since < keep_for
                };
                if a.state == State::Pending
                    || a.resolved_at.is_some_and(|r| t - r > RESOLVED_RETENTION_MS)
                {
                    if a.state == State::Pending {
                        transitions.push(Transition::PendingReset(labels.clone()));
                    }
                    forget.push(labels.clone());
                    continue;
                }
                if !keep {
                    if a.state != State::Inactive {
                        a.state = State::Inactive;
                        a.resolved_at = Some(t);
                        transitions.push(Transition::Resolved(labels.clone()));
                    }
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            if a.state == State::Pending && t - a.active_at >= millis(self.for_duration) {
                a.state = State::Firing;
                a.fired_at = Some(t);
                transitions.push(Transition::Firing(labels.clone()));
            } else if a.state == State::Firing && t - a.active_at < millis(self.for_duration) {
                // `for` grew (reload or restored state): back to pending.
                a.state = State::Pending;
                a.fired_at = None;
                a.keep_firing_since = None;
            }
        }
        for labels in forget {
            self.active.remove(&labels);
        }
        Ok(transitions)
    }

    /// The rule's name (`alert:`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule's alert instances: pending, firing, and resolved ones still kept.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
    }

    /// The rule's state: the "highest" state of its instances.
    pub fn state(&self) -> State {
        let states = self.active.values().map(|a| a.state);
        if states.clone().any(|s| s == State::Firing) {
            State::Firing
        } else if states.into_iter().any(|s| s == State::Pending) {
            State::Pending
        } else {
            State::Inactive
        }
    }
}

#[cfg(test)]
impl AlertingRule {
    /// A rule for tests: `expr`, firing after `for_ms` milliseconds, labelled `severity=page`.
    pub fn for_test(name: &str, expr: &str, for_ms: i64) -> Self {
        AlertingRule {
            name: name.into(),
            expr_text: expr.into(),
            expr: promql::compile(expr).unwrap(),
            for_duration: Duration::from_millis(for_ms.unsigned_abs()),
            keep_firing_for: Duration::ZERO,
            labels: vec![("severity".into(), Template::parse("page").unwrap())],
            annotations: vec![],
            raw_labels: vec![],
            raw_annotations: vec![],
            active: HashMap::new(),
            warmup_until_ms: 0,
            alerts_written: HashSet::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    /// A rule over `m` (a gauge) that fires when `m > 0`.
    fn rule(for_s: i64, keep_s: i64) -> AlertingRule {
        AlertingRule {
            name: "Test".into(),
            expr_text: "m > 0".into(),
            expr: promql::compile("m > 0").unwrap(),
            for_duration: Duration::from_secs(for_s.unsigned_abs()),
            keep_firing_for: Duration::from_secs(keep_s.unsigned_abs()),
            labels: vec![("severity".into(), Template::parse("page").unwrap())],
            annotations: vec![(
                "summary".into(),
                Template::parse("{{ $labels.job }} is {{ $value }}").unwrap(),
            )],
            raw_labels: vec![],
            raw_annotations: vec![],
            active: HashMap::new(),
            warmup_until_ms: 0,
            alerts_written: HashSet::new(),
        }
    }

    /// Evaluates `rule` every 15 s with `m{job="a"}` = `values[i]` (None = absent at that step).
    fn run(rule: &mut AlertingRule, values: &[Option<f64>]) -> Vec<Option<State>> {
        let mut store = Store::new(3600 * S);
        let labels = Labels::from_pairs(&[("__name__", "m"), ("job", "a")]);
        let alert_labels =
            Labels::from_pairs(&[("alertname", "Test"), ("job", "a"), ("severity", "page")]);
        let mut states = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let t = i as i64 * 15 * S;
            store.append(&labels, t, v.unwrap_or_else(crate::store::stale));
            rule.eval(t, &store, &Labels::default()).unwrap();
            states.push(rule.active.get(&alert_labels).map(|a| a.state));
        }
        states
    }

    use State::*;

    #[test]
    fn for_boundary_fires_when_elapsed_reaches_for() {
        // for: 30s, evaluations every 15 s: pending at 0, 15; firing at 30 (30 - 0 >= 30).
        let states = run(&mut rule(30, 0), &[Some(1.0); 4]);
        assert_eq!(
            states,
            [Some(Pending), Some(Pending), Some(Firing), Some(Firing)]
        );
    }

    #[test]
    fn for_zero_fires_at_once() {
        assert_eq!(run(&mut rule(0, 0), &[Some(1.0)]), [Some(Firing)]);
    }

    #[test]
    fn one_missing_evaluation_resets_pending() {
        let states = run(
            &mut rule(30, 0),
            &[
                Some(1.0),
                Some(1.0),
                Some(0.0),
                Some(1.0),
                Some(1.0),
                Some(1.0),
            ],
        );
        assert_eq!(
            states,
            [
                Some(Pending),
                Some(Pending),
                None,
                Some(Pending),
                Some(Pending),
                Some(Firing)
            ]
        );
        // A stale (absent) sample resets it too.
        let states = run(&mut rule(30, 0), &[Some(1.0), None, Some(1.0)]);
        assert_eq!(states, [Some(Pending), None, Some(Pending)]);
    }

    #[test]
    fn firing_resolves_and_a_new_match_starts_over() {
        let mut r = rule(15, 0);
        let states = run(&mut r, &[Some(1.0), Some(1.0), Some(0.0), Some(1.0)]);
        assert_eq!(
            states,
            [Some(Pending), Some(Firing), Some(Inactive), Some(Pending)]
        );
    }

    #[test]
    fn keep_firing_for_holds_firing_through_gaps() {
        // keep_firing_for 30 s: false at 30 and 45 (since=30: 0 < 30, 15 < 30), resolved at 60.
        let states = run(
            &mut rule(15, 30),
            &[Some(1.0), Some(1.0), Some(0.0), Some(0.0), Some(0.0)],
        );
        assert_eq!(
            states,
            [Pending, Firing, Firing, Firing, Inactive].map(Some)
        );
        // Condition back during keep_firing_for: stays firing, timer cleared.
        let mut r = rule(15, 30);
        let states = run(
            &mut r,
            &[
                Some(1.0),
                Some(1.0),
                Some(0.0),
                Some(1.0),
                Some(0.0),
                Some(0.0),
            ],
        );
        assert_eq!(
            states,
            [Pending, Firing, Firing, Firing, Firing, Firing].map(Some)
        );
    }

    #[test]
    fn keep_firing_for_does_not_apply_to_pending() {
        let states = run(&mut rule(60, 300), &[Some(1.0), Some(0.0)]);
        assert_eq!(states, [Some(Pending), None]);
    }

    #[test]
    fn resolved_alerts_are_forgotten_after_15_minutes() {
        let mut values = vec![Some(1.0), Some(0.0)];
        values.extend(std::iter::repeat_n(Some(0.0), 61));
        let states = run(&mut rule(0, 0), &values);
        assert_eq!(states[1], Some(Inactive));
        assert_eq!(states[61], Some(Inactive), "at 15m after resolution: kept");
        assert_eq!(states[62], None, "beyond 15m: forgotten");
    }

    #[test]
    fn annotations_are_templated_and_do_not_change_identity() {
        let mut r = rule(0, 0);
        run(&mut r, &[Some(3.0)]);
        let a = r.active.values().next().unwrap();
        assert_eq!(
            a.annotations,
            vec![("summary".to_owned(), "a is 3".to_owned())]
        );
    }

    #[test]
    fn errors_leave_state_untouched() {
        let mut r = rule(0, 0);
        run(&mut r, &[Some(1.0)]);
        let before = r.active.clone();
        r.expr = promql::compile("m / on(job) m2").unwrap();
        let mut store = Store::new(3600 * S);
        for j in ["x", "y"] {
            store.append(
                &Labels::from_pairs(&[("__name__", "m"), ("job", "a"), ("k", j)]),
                0,
                1.0,
            );
        }
        store.append(
            &Labels::from_pairs(&[("__name__", "m2"), ("job", "a")]),
            0,
            1.0,
        );
        assert!(r.eval(15 * S, &store, &Labels::default()).is_err());
        assert_eq!(r.active, before);
    }
}
