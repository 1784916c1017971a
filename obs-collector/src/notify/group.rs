//! Aggregation groups, as Alertmanager's dispatcher and dedup stage keep them.
//!
//! Firing alerts join the group their `route.group_by` labels name. A new group waits
//! `group_wait` for more alerts (not when its alert started firing longer ago than that, as
//! after a restart), then is flushed every `group_interval`. A flush sends one message with the
//! group's firing alerts (and its resolved ones, with `send_resolved`) when the notification
//! log says so: new firing alerts, all alerts resolved, newly resolved alerts, or
//! `repeat_interval` passed. Silenced and inhibited alerts are left out; a group whose alerts
//! are all muted says nothing. Resolved alerts leave the group once flushed, and an empty group
//! is forgotten, so an alert that fires again later starts a new group and is announced.
//!
//! A group is flushed when it falls due, on its own timer (see [`crate::collector`]); one that
//! falls due at an evaluation's slot is flushed by that evaluation, after its alerts are in.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{AlertInfo, Context, Log, Message, Policy, Status};
use crate::config::Route;
use crate::incident::Incident;
use crate::labels::Labels;
use crate::links::Links;
use crate::rules::template::go_g;
use crate::rules::{AlertingRule, State};
use crate::time::millis;

/// An alert as its group remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupAlert {
    pub labels: Labels,
    /// The rule's last value for it.
    #[serde(deserialize_with = "super::nan_or_f64")]
    pub value: f64,
    /// When it started firing (Alertmanager's `startsAt`).
    pub started_ms: i64,
    pub resolved_ms: Option<i64>,
    pub annotations: Vec<(String, String)>,
    pub threshold_text: Option<String>,
    /// Trace ids of requests behind its numbers ([`crate::exemplars`]), best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub example_traces: Vec<String>,
    /// The deploy line when it was dispatched ([`crate::deploys::DeployLog::context`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<String>,
    /// The highest value it had while firing (its resolution reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<f64>,
    /// Its context read at the onset ([`crate::incident`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Incident>,
    /// Its context read when it resolved: the value now, the version change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Incident>,
}

/// One aggregation group and what its last message said (Alertmanager's notification log
/// entry for it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// The `group_by` labels.
    #[serde(default)]
    pub labels: Labels,
    /// Sorted by labels.
    #[serde(default)]
    pub alerts: Vec<GroupAlert>,
    #[serde(default)]
    pub next_flush_ms: i64,
    #[serde(default)]
    pub flushed: bool,
    /// The firing alerts the last message listed.
    #[serde(default, alias = "firing")]
    pub notified_firing: BTreeSet<Labels>,
    /// The resolved alerts the last message listed.
    #[serde(default)]
    pub notified_resolved: BTreeSet<Labels>,
    pub last_sent_ms: Option<i64>,
}

impl GroupState {
    /// Alertmanager's dedup stage: whether a flush with these alerts sends a message.
    fn needs_update(
        &self,
        firing: &BTreeSet<Labels>,
        resolved: &BTreeSet<Labels>,
        t: i64,
        policy: &Policy,
    ) -> bool {
        let Some(last) = self.last_sent_ms else {
            // Never announced: only firing alerts are news.
            return !firing.is_empty();
        };
        if !firing.is_subset(&self.notified_firing) {
            return true;
        }
        if firing.is_empty() {
            // All resolved: said once if anything was announced firing.
            return !self.notified_firing.is_empty();
        }
        if policy.send_resolved && !resolved.is_subset(&self.notified_resolved) {
            return true;
        }
        // Strictly after, as Alertmanager's `entry.Timestamp.Before(now - repeat)`: with flushes
        // every group_interval, a 4h repeat goes out at the flush after 4h (4h05m by default).
        t - last > millis(policy.route.repeat_interval)
    }
}

impl Log {
    /// Puts `rule`'s firing alerts at `t` into their groups, and marks those of its alerts
    /// that stopped firing resolved (Alertmanager's dispatcher receiving Prometheus' alerts).
    /// `context` gives a firing alert's context (by its labels), and a resolved one's at its
    /// resolution.
    pub fn insert(
        &mut self,
        rule: &AlertingRule,
        t: i64,
        route: &Route,
        context: &dyn Fn(&Labels) -> Context,
    ) {
        let is_firing = |labels: &Labels| {
            rule.active
                .get(labels)
                .is_some_and(|a| a.state == State::Firing)
        };
        for group in self.groups.values_mut() {
            for a in &mut group.alerts {
                if a.resolved_ms.is_none()
                    && a.labels.get("alertname") == Some(rule.name())
                    && !is_firing(&a.labels)
                {
                    a.resolved_ms = Some(t);
                    a.resolution = context(&a.labels).incident;
                }
            }
        }
        let threshold_text = rule.expr.threshold().map(|v| go_g(v, 4));
        let group_wait = millis(route.group_wait);
        for alert in rule.active.values().filter(|a| a.state == State::Firing) {
            let labels = route.group_by.group_labels(&alert.labels);
            let group = self
                .groups
                .entry(labels.to_string())
                .or_insert_with(|| GroupState {
                    labels,
                    next_flush_ms: t + group_wait,
                    ..GroupState::default()
                });
            let started_ms = alert.fired_at.unwrap_or(t);
            let context = context(&alert.labels);
            let position = group
                .alerts
                .binary_search_by(|a| a.labels.cmp(&alert.labels));
            let before = position.ok().and_then(|i| group.alerts[i].peak);
            let peak = [before, Some(alert.value).filter(|v| v.is_finite())]
                .into_iter()
                .flatten()
                .reduce(f64::max);
            let entry = GroupAlert {
                labels: alert.labels.clone(),
                value: alert.value,
                started_ms,
                resolved_ms: None,
                annotations: alert.annotations.clone(),
                threshold_text: threshold_text.clone(),
                example_traces: context.example_traces,
                deploy: context.deploy,
                peak,
                incident: context.incident,
                resolution: None,
            };
            match position {
                Ok(i) => group.alerts[i] = entry,
                Err(i) => group.alerts.insert(i, entry),
            }
            // Waiting gathers alerts that start together; one that started long ago (restored
            // after a restart) has waited enough.
            if !group.flushed && started_ms + group_wait <= t {
                group.next_flush_ms = group.next_flush_ms.min(t);
            }
        }
    }

    /// When the group that falls due first is to be flushed.
    pub fn next_flush_ms(&self) -> Option<i64> {
        self.groups.values().map(|g| g.next_flush_ms).min()
    }

    /// Flushes, in time order and each at its own time, every group that falls due before
    /// `until` (what the live timers do between two evaluations).
    pub fn flush_before(
        &mut self,
        until: i64,
        policy: &Policy,
        links: &Links,
        muted: &dyn Fn(&Labels) -> bool,
    ) {
        // A flush moves its group's time on by group_interval (positive) or forgets the group.
        while let Some(due) = self.next_flush_ms().filter(|&due| due < until) {
            self.flush(due, policy, links, muted);
        }
    }

    /// Flushes every group due at `t`: queues the message the dedup stage calls for on every
    /// channel of `policy`, leaving out alerts `muted` says are silenced or inhibited.
    /// Relative links of the rules' annotations are resolved with `links`.
    pub fn flush(
        &mut self,
        t: i64,
        policy: &Policy,
        links: &Links,
        muted: &dyn Fn(&Labels) -> bool,
    ) {
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush_ms <= t)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(mut group) = self.groups.remove(&key) else {
                continue;
            };
            let (firing, resolved): (Vec<&GroupAlert>, Vec<&GroupAlert>) = group
                .alerts
                .iter()
                .filter(|a| !muted(&a.labels))
                .partition(|a| a.resolved_ms.is_none());
            // Everything muted: nothing is said, and the log keeps what was said before.
            if !firing.is_empty() || !resolved.is_empty() {
                let set = |alerts: &[&GroupAlert]| -> BTreeSet<Labels> {
                    alerts.iter().map(|a| a.labels.clone()).collect()
                };
                let (firing_set, resolved_set) = (set(&firing), set(&resolved));
                if group.needs_update(&firing_set, &resolved_set, t, policy) {
                    // Without send_resolved an all-resolved group is recorded, not sent.
                    if !firing.is_empty() || policy.send_resolved {
                        let listed_resolved: &[&GroupAlert] =
                            if policy.send_resolved { &resolved } else { &[] };
                        let message = message(&group.labels, &firing, listed_resolved, links, t);
                        self.enqueue(&key, message, t, policy);
                    }
                    group.notified_firing = firing_set;
                    group.notified_resolved = resolved_set;
                    group.last_sent_ms = Some(t);
                }
            }
            group.alerts.retain(|a| a.resolved_ms.is_none());
            group.flushed = true;
            group.next_flush_ms = t + millis(policy.route.group_interval);
            if !group.alerts.is_empty() {
                self.groups.insert(key, group);
            }
        }
    }
}

/// How much of the time before an incident its dashboard link shows.
const DASHBOARD_BEFORE_MS: i64 = 3_600_000;
/// How much of the time after a resolved incident its dashboard link shows.
const DASHBOARD_AFTER_MS: i64 = 600_000;

/// The message for a group's `firing` and `resolved` alerts (not both empty).
fn message(
    group: &Labels,
    firing: &[&GroupAlert],
    resolved: &[&GroupAlert],
    links: &Links,
    t: i64,
) -> Message {
    let status = if firing.is_empty() {
        Status::Resolved
    } else {
        Status::Firing
    };
    // The alert that started first speaks for the group (its annotations, its threshold).
    let lead = if firing.is_empty() { resolved } else { firing }
        .iter()
        .min_by_key(|a| a.started_ms)
        .expect("a message has an alert");
    let all = || firing.iter().chain(resolved);
    // A group label, or the values the alerts share; several are listed.
    let common = |name: &str| -> String {
        if let Some(v) = group.get(name) {
            return v.to_owned();
        }
        let values: BTreeSet<&str> = all().filter_map(|a| a.labels.get(name)).collect();
        values.into_iter().collect::<Vec<_>>().join(", ")
    };
    let annotation = |name: &str| {
        lead.annotations
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let value = firing
        .iter()
        .map(|a| a.value)
        .filter(|v| !v.is_nan())
        .fold(f64::NAN, f64::max);
    let started = all().map(|a| a.started_ms).min().unwrap_or_default();
    let resolved_at = resolved.iter().filter_map(|a| a.resolved_ms).max();
    let is_firing = status == Status::Firing;
    let since_ms = if is_firing {
        firing.iter().map(|a| a.started_ms).min().unwrap_or(started)
    } else {
        resolved_at.unwrap_or(started)
    };
    // A firing message's example traces: the lead alert's (a resolution needs none).
    let examples = if is_firing {
        lead.example_traces.clone()
    } else {
        Vec::new()
    };
    let info = |a: &&GroupAlert| AlertInfo {
        labels: a.labels.clone(),
        value: a.value,
    };
    Message {
        status,
        alertname: common("alertname"),
        job: common("job"),
        summary: annotation("summary"),
        // A resolution does not repeat the firing text: its value is the last firing one.
        description: annotation("description").filter(|_| is_firing),
        peak_text: resolved
            .iter()
            .filter_map(|a| a.peak)
            .reduce(f64::max)
            .map(|v| go_g(v, 4))
            .filter(|_| !is_firing),
        value_text: if value.is_nan() {
            "-".into()
        } else {
            go_g(value, 4)
        },
        threshold_text: lead.threshold_text.clone(),
        since_ms,
        since_text: crate::time::rfc3339(since_ms),
        severity: lead.labels.get("severity").map(str::to_owned),
        runbook_url: links.runbook(annotation("runbook_url").as_deref()),
        // Pinned to the incident: an hour before it started, to now while it fires or ten
        // minutes after its end (Grafana's own alert links use the same window).
        dashboard_url: links
            .dashboard(
                annotation("dashboard_url").as_deref(),
                lead.labels.get("alertname").unwrap_or_default(),
            )
            .map(|url| {
                let to = match (status, resolved_at) {
                    (Status::Resolved, Some(end)) => end + DASHBOARD_AFTER_MS,
                    _ => t,
                };
                let route = lead.incident.as_ref().and_then(|i| i.top_route.as_deref());
                links.pinned(url, (started - DASHBOARD_BEFORE_MS, to), route)
            }),
        silence_url: links.silence(group, 1),
        trace_url: examples.first().and_then(|id| links.trace(id)),
        example_traces: examples,
        alerts: firing.iter().map(info).collect(),
        resolved: resolved.iter().map(info).collect(),
        fired_for_ms: resolved_at.map(|end| end - started).filter(|_| !is_firing),
        deploy: lead.deploy.clone(),
        incident: if is_firing {
            lead.incident.clone()
        } else {
            lead.resolution.clone()
        },
        lines: Vec::new(),
    }
}
