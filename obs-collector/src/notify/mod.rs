//! Notifications, as Alertmanager's `notify/` does them but in process: alerts are grouped as
//! `route:` says and each group is flushed on Alertmanager's schedule ([`group`]); a resolved
//! message is never sent without a delivered firing one. Each message goes through a
//! per-channel queue that retries (the retry stage) and is persisted with the alert state, so a
//! restart neither repeats nor loses one.
//! Alertmanager's batches (Prometheus' resend rules, [`alertmanager::batch`]) take the same
//! queue: every channel, Slack, console and Alertmanager, is delivered by one pipeline.

pub mod alertmanager;
pub mod console;
pub mod group;
pub mod slack;

pub use group::{GroupAlert, GroupState};

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Route;
use crate::incident::Incident;
use crate::labels::Labels;
use crate::rules::{AlertingRule, State};

/// Most finished log entries kept (queued ones are always kept).
const LOG_KEEP: usize = 200;
/// Attempts before a message is given up.
pub const MAX_ATTEMPTS: u32 = 12;
/// First retry delay; doubled per attempt up to [`MAX_BACKOFF`], with ±50% jitter.
pub const BASE_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
    /// Not an alert: a deploy's verdict or the weekly report ([`Message::notice`]).
    Notice,
}

/// One alert inside a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertInfo {
    pub labels: Labels,
    #[serde(deserialize_with = "nan_or_f64")]
    pub value: f64,
}

/// JSON has no NaN: serde_json writes it as `null`, read back here as NaN.
fn nan_or_f64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What a notifier is asked to deliver: one group's firing alerts (and resolved ones), or its
/// resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub status: Status,
    pub alertname: String,
    pub job: String,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub value_text: String,
    pub threshold_text: Option<String>,
    pub since_ms: i64,
    pub since_text: String,
    pub severity: Option<String>,
    pub runbook_url: Option<String>,
    pub dashboard_url: Option<String>,
    /// The status page's form that silences the group for an hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_url: Option<String>,
    /// Trace ids of requests behind the numbers (firing messages), best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub example_traces: Vec<String>,
    /// Where the first of them opens (`notifiers.trace_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_url: Option<String>,
    /// The firing alerts.
    pub alerts: Vec<AlertInfo>,
    /// The alerts resolved since the group's last message (with `send_resolved`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved: Vec<AlertInfo>,
    /// A resolved message: how long the group fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_for_ms: Option<i64>,
    /// A resolved message: the highest value its alerts had while firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_text: Option<String>,
    /// What the job serves, its last deploy before the onset and the deploys since (the lead
    /// alert's, [`crate::deploys::DeployLog::context`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<String>,
    /// The lead alert's context ([`crate::incident`]): at its onset in a firing message (the
    /// routes, the value per version), at its resolution in a resolved one (the value now,
    /// the version change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Incident>,
    /// A notice's lines, after its title (`summary`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

impl Message {
    /// A notice: `kind` (`DeployVerdict`, `WeeklyReport`) for `job`, its title, its lines and
    /// the page it links to (`dashboard_url`).
    pub fn notice(
        kind: &str,
        job: &str,
        title: String,
        lines: Vec<String>,
        link: Option<String>,
        t: i64,
    ) -> Self {
        Self {
            status: Status::Notice,
            alertname: kind.to_owned(),
            job: job.to_owned(),
            summary: Some(title),
            description: None,
            value_text: String::new(),
            threshold_text: None,
            since_ms: t,
            since_text: crate::time::rfc3339(t),
            severity: None,
            runbook_url: None,
            dashboard_url: link,
            silence_url: None,
            example_traces: Vec::new(),
            trace_url: None,
            alerts: Vec::new(),
            resolved: Vec::new(),
            fired_for_ms: None,
            peak_text: None,
            deploy: None,
            incident: None,
            lines,
        }
    }
}

/// What the collector adds to a firing alert beyond its rule, when it dispatches it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// Trace ids of requests behind its numbers ([`crate::exemplars`]), best first.
    pub example_traces: Vec<String>,
    /// The deploy line ([`crate::deploys::DeployLog::context`]).
    pub deploy: Option<String>,
    /// The routes, versions and value behind it ([`crate::incident`]): read at its onset
    /// while it fires, at its resolution once resolved.
    pub incident: Option<Incident>,
}

pub use crate::time::duration_text;

/// The incident's context of `m` as labelled parts, for the one-line renderings (the plain
/// text, the console): the routes, the value per version and the window of a firing message;
/// the value now and the version change of a resolved one.
pub fn context_parts(m: &Message) -> Vec<(&'static str, String)> {
    let Some(i) = &m.incident else {
        return Vec::new();
    };
    let mut parts = Vec::new();
    match m.status {
        Status::Firing => {
            if !i.routes.is_empty() {
                parts.push(("routes", i.routes.join("; ")));
            }
            if let Some(v) = &i.by_version {
                parts.push(("by version", v.clone()));
            }
            if !i.window.is_empty() {
                parts.push(("window", i.window.clone()));
            }
        }
        Status::Resolved => {
            if let Some(v) = &i.value {
                parts.push(("now", format!("{v} over {}", i.window)));
            }
            if let Some(c) = &i.change {
                parts.push(("resolved", c.clone()));
            }
        }
        Status::Notice => {}
    }
    parts
}

/// Why a send did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// Transport error, timeout, 5xx or 429: try again (after `after` when the server said).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The server refused the Block Kit payload (HTTP 400): try once more as plain text.
    RejectedBlocks(String),
    /// 4xx: will never work (bad webhook, channel gone); the reason is the server's.
    Permanent(String),
}

/// A notification channel. Small on purpose: formatting and delivery only; grouping,
/// retries and persistence are the dispatcher's and the queue's.
#[allow(async_fn_in_trait)]
pub trait Notifier {
    fn name(&self) -> &'static str;
    /// The shortest time between two sends (Slack's webhook takes one message per second).
    fn min_spacing(&self) -> Duration {
        Duration::ZERO
    }
    async fn send(&self, entry: &Entry) -> Result<(), SendError>;
}

/// The configured channels.
pub enum Channel {
    Slack(slack::Slack),
    Console(console::Console),
    Alertmanager(alertmanager::Alertmanager),
}

impl Channel {
    fn inner(&self) -> &dyn NotifierName {
        match self {
            Channel::Slack(s) => s,
            Channel::Console(c) => c,
            Channel::Alertmanager(a) => a,
        }
    }
}

/// The synchronous half of [`Notifier`], object safe.
trait NotifierName {
    fn name(&self) -> &'static str;
    fn min_spacing(&self) -> Duration;
}

impl<N: Notifier> NotifierName for N {
    fn name(&self) -> &'static str {
        Notifier::name(self)
    }
    fn min_spacing(&self) -> Duration {
        Notifier::min_spacing(self)
    }
}

impl Notifier for Channel {
    fn name(&self) -> &'static str {
        self.inner().name()
    }
    fn min_spacing(&self) -> Duration {
        self.inner().min_spacing()
    }
    async fn send(&self, entry: &Entry) -> Result<(), SendError> {
        match self {
            Channel::Slack(s) => s.send(entry).await,
            Channel::Console(c) => c.send(entry).await,
            Channel::Alertmanager(a) => a.send(entry).await,
        }
    }
}

/// A webhook's answer, as the retry stage reads it.
struct Reply {
    status: u16,
    retry_after: Option<Duration>,
    /// The body's first 200 characters, or the status line.
    reason: String,
}

impl Reply {
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let reason: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let reason = if reason.trim().is_empty() {
            status.to_string()
        } else {
            reason.trim().to_owned()
        };
        Self {
            status: status.as_u16(),
            retry_after,
            reason,
        }
    }

    /// 2xx delivered; 429 and 5xx retried (429 after `Retry-After`, 1 s without); other 4xx
    /// permanent, with the server's reason.
    fn outcome(self) -> Result<(), SendError> {
        let Reply {
            status,
            retry_after,
            reason,
        } = self;
        match status {
            200..=299 => Ok(()),
            429 => Err(SendError::Retry {
                reason: format!("rate limited: {reason}"),
                after: Some(retry_after.unwrap_or(Duration::from_secs(1))),
            }),
            500..=599 => Err(SendError::Retry {
                reason: format!("HTTP {status}: {reason}"),
                after: None,
            }),
            code => Err(SendError::Permanent(format!("HTTP {code}: {reason}"))),
        }
    }
}

/// A transport error (no answer, timeout) is retried.
fn transport(e: reqwest::Error) -> SendError {
    SendError::Retry {
        reason: crate::transport::describe(e),
        after: None,
    }
}

/// Delivery state of one log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Outcome {
    Queued,
    Delivered { at_ms: i64 },
    Failed { at_ms: i64, reason: String },
}

/// One message for one channel, with its delivery history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: u64,
    pub channel: String,
    pub group: String,
    pub message: Message,
    pub created_ms: i64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub plain_text: bool,
    pub last_error: Option<String>,
    pub outcome: Outcome,
    /// Alertmanager's channel: the alerts to post, in its API's shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<serde_json::Value>,
}

/// The notification log: group states and every channel's queue, persisted with the state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Log {
    pub next_id: u64,
    pub groups: BTreeMap<String, GroupState>,
    pub entries: Vec<Entry>,
}

/// Dispatch settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub channels: Vec<String>,
    pub send_resolved: bool,
    pub route: Route,
}

impl Log {
    /// Queues Alertmanager's `alerts` of `rule` (from [`alertmanager::batch`]) on `channel`.
    pub fn dispatch_alerts(
        &mut self,
        rule: &AlertingRule,
        alerts: Vec<serde_json::Value>,
        t: i64,
        channel: &str,
    ) {
        if alerts.is_empty() {
            return;
        }
        let firing = rule.active.values().any(|a| a.state == State::Firing);
        let status = if firing {
            Status::Firing
        } else {
            Status::Resolved
        };
        let message = batch_message(rule, status, t);
        self.push(channel, &rule.name, message, alerts, t);
        self.trim();
    }

    /// Queues a notice ([`Message::notice`]) on every channel of `policy` (Alertmanager takes
    /// alerts only).
    pub fn notify(&mut self, group: &str, message: Message, t: i64, policy: &Policy) {
        self.enqueue(group, message, t, policy);
    }

    fn enqueue(&mut self, group: &str, message: Message, t: i64, policy: &Policy) {
        for channel in &policy.channels {
            self.push(channel, group, message.clone(), Vec::new(), t);
        }
        self.trim();
    }

    fn push(
        &mut self,
        channel: &str,
        group: &str,
        message: Message,
        alerts: Vec<serde_json::Value>,
        t: i64,
    ) {
        self.next_id += 1;
        self.entries.push(Entry {
            id: self.next_id,
            channel: channel.to_owned(),
            group: group.to_owned(),
            message,
            created_ms: t,
            attempts: 0,
            next_attempt_ms: t,
            plain_text: false,
            last_error: None,
            outcome: Outcome::Queued,
            alerts,
        });
    }

    /// The next queued entry of `channel` (oldest first: messages of a channel keep their order).
    pub fn next_for(&self, channel: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.channel == channel && e.outcome == Outcome::Queued)
    }

    /// Whether a firing message of `group` was delivered on `channel` before entry `before`.
    fn firing_delivered(&self, channel: &str, group: &str, before: u64) -> bool {
        self.entries
            .iter()
            .rev()
            .filter(|e| {
                e.id < before
                    && e.channel == channel
                    && e.group == group
                    && e.message.status == Status::Firing
            })
            .any(|e| matches!(e.outcome, Outcome::Delivered { .. }))
    }

    /// Whether entry `id` may be sent now (a resolved message needs a delivered firing one).
    pub fn ready(&mut self, id: u64, now: i64) -> bool {
        let Some(e) = self.entries.iter().find(|e| e.id == id) else {
            return false;
        };
        // Alertmanager takes resolved alerts as they come (Prometheus sends them so).
        if e.message.status == Status::Resolved
            && e.alerts.is_empty()
            && !self.firing_delivered(&e.channel.clone(), &e.group.clone(), id)
        {
            let reason =
                "not sent: the firing message of this group was never delivered".to_owned();
            self.update(id, Outcome::Failed { at_ms: now, reason });
            return false;
        }
        true
    }

    /// Records the result of an attempt: the retry stage.
    pub fn record(&mut self, id: u64, result: Result<(), SendError>, now: i64, jitter: f64) {
        let Some(e) = self.entries.iter_mut().find(|e| e.id == id) else {
            return;
        };
        e.attempts += 1;
        let outcome = match result {
            Ok(()) => Outcome::Delivered { at_ms: now },
            Err(SendError::RejectedBlocks(reason)) if !e.plain_text => {
                e.plain_text = true;
                e.last_error = Some(format!("{reason}; retrying as plain text"));
                e.next_attempt_ms = now;
                return;
            }
            Err(SendError::RejectedBlocks(reason) | SendError::Permanent(reason)) => {
                Outcome::Failed { at_ms: now, reason }
            }
            Err(SendError::Retry { reason, after }) => {
                if e.attempts >= MAX_ATTEMPTS {
                    Outcome::Failed {
                        at_ms: now,
                        reason: format!("gave up after {} attempts: {reason}", e.attempts),
                    }
                } else {
                    e.next_attempt_ms = now
                        + after
                            .unwrap_or_else(|| backoff(e.attempts, jitter))
                            .as_millis() as i64;
                    e.last_error = Some(reason);
                    return;
                }
            }
        };
        e.outcome = outcome;
    }

    fn update(&mut self, id: u64, outcome: Outcome) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
            e.outcome = outcome;
        }
    }

    /// Keeps every queued entry and the newest finished ones.
    fn trim(&mut self) {
        let finished = self
            .entries
            .iter()
            .filter(|e| e.outcome != Outcome::Queued)
            .count();
        let mut drop = finished.saturating_sub(LOG_KEEP);
        self.entries.retain(|e| {
            if drop > 0 && e.outcome != Outcome::Queued {
                drop -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// Exponential backoff for attempt `n` (1-based) with `jitter` in [0, 1) mapped to ±50%.
pub fn backoff(n: u32, jitter: f64) -> Duration {
    let base = BASE_BACKOFF.as_secs_f64() * 2f64.powi(n.saturating_sub(1).min(16) as i32);
    let capped = base.min(MAX_BACKOFF.as_secs_f64());
    Duration::from_secs_f64(capped * (0.5 + jitter))
}

/// The log's summary of an Alertmanager batch: the batch itself is in the entry's `alerts`.
fn batch_message(rule: &AlertingRule, status: Status, t: i64) -> Message {
    Message {
        status,
        alertname: rule.name.clone(),
        job: String::new(),
        summary: None,
        description: None,
        value_text: "-".into(),
        threshold_text: None,
        since_ms: t,
        since_text: crate::time::rfc3339(t),
        severity: None,
        runbook_url: None,
        dashboard_url: None,
        silence_url: None,
        example_traces: Vec::new(),
        trace_url: None,
        alerts: Vec::new(),
        resolved: Vec::new(),
        fired_for_ms: None,
        peak_text: None,
        deploy: None,
        incident: None,
        lines: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
