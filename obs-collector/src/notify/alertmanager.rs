//! The Alertmanager notifier: alerts go to `POST /api/v2/alerts` exactly as Prometheus sends
//! them, so teams that run Alertmanager get its routing, grouping, silences and inhibition.
//!
//! Prometheus' rules (`rules/alerting.go`): pending alerts are never sent; firing ones are sent
//! at once and re-sent every minute with `endsAt` = now + 4 x max(evaluation interval, 1m) (a
//! lease: a dead evaluator's alerts expire); resolved ones are sent with `endsAt` = resolution
//! time, and re-sent every minute while kept.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{Context, Entry, Notifier, SendError};
use crate::labels::Labels;
use crate::rules::{AlertingRule, State};
use crate::time::rfc3339;

/// Prometheus' `--rules.alert.resend-delay` default.
pub const RESEND_DELAY_MS: i64 = 60_000;
const TIMEOUT: Duration = Duration::from_secs(10);

/// The alerts of `rule` due for sending at `t` (marks them sent).
pub fn batch(
    rule: &mut AlertingRule,
    t: i64,
    eval_interval: Duration,
    external: &Labels,
    generator_url: &str,
    context: &dyn Fn(&Labels) -> Context,
) -> Vec<Value> {
    let valid_for = 4 * crate::time::millis(eval_interval).max(RESEND_DELAY_MS);
    let mut out = Vec::new();
    for a in rule.active.values_mut() {
        if a.state == State::Pending {
            continue;
        }
        let resolved_unsent = a.state == State::Inactive
            && a.resolved_at
                .is_some_and(|r| a.last_sent_at.is_none_or(|s| r > s));
        let resend = a.last_sent_at.is_none_or(|s| s + RESEND_DELAY_MS < t);
        if !(resolved_unsent || resend) {
            continue;
        }
        a.last_sent_at = Some(t);
        let ends = match (a.state, a.resolved_at) {
            (State::Inactive, Some(r)) => r,
            _ => t + valid_for,
        };
        let mut labels: Map<String, Value> = external
            .iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        labels.extend(a.labels.iter().map(|(k, v)| (k.to_owned(), Value::from(v))));
        let mut annotations: Map<String, Value> = a
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().into()))
            .collect();
        let context = context(&a.labels);
        if a.state == State::Firing {
            if let Some(id) = context.example_traces.into_iter().next() {
                annotations.insert("example_trace_id".into(), id.into());
            }
            if let Some(deploy) = context.deploy {
                annotations.insert("deploy".into(), deploy.into());
            }
        }
        // The incident's context as annotations a template can print: at the onset while it
        // fires, at the resolution once resolved.
        if let Some(i) = context.incident {
            let firing = a.state == State::Firing;
            let parts = [
                (
                    "routes",
                    Some(i.routes.join("; ")).filter(|r| firing && !r.is_empty()),
                ),
                ("by_version", i.by_version.filter(|_| firing)),
                ("value_now", i.value.filter(|_| !firing)),
                ("resolved_by", i.change.filter(|_| !firing)),
                ("window", Some(i.window).filter(|w| !w.is_empty())),
            ];
            for (name, value) in parts {
                if let Some(value) = value {
                    annotations.insert(name.into(), value.into());
                }
            }
        }
        out.push(json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(a.fired_at.unwrap_or(a.active_at)),
            "endsAt": rfc3339(ends),
            "generatorURL": generator_url,
        }));
    }
    out
}

/// Posts to one Alertmanager's `POST /api/v2/alerts`. Failures are retried by the delivery
/// pipeline like every channel's; a batch waits behind the older ones, so a resolution never
/// overtakes its firing batch.
pub struct Alertmanager {
    url: String,
    client: reqwest::Client,
}

impl Alertmanager {
    /// `base_url` as configured (`http://host:9093`).
    pub fn new(base_url: &str, client: reqwest::Client) -> Self {
        Self {
            url: format!("{}/api/v2/alerts", base_url.trim_end_matches('/')),
            client,
        }
    }
}

impl Notifier for Alertmanager {
    fn name(&self) -> &'static str {
        "alertmanager"
    }

    async fn send(&self, entry: &Entry) -> Result<(), SendError> {
        let response = self
            .client
            .post(&self.url)
            .timeout(TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(Value::from(entry.alerts.clone()).to_string())
            .send()
            .await
            .map_err(super::transport)?;
        super::Reply::read(response).await.outcome()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Alert;

    #[test]
    fn prometheus_resend_rules() {
        let mut rule = AlertingRule::for_test("A", "x > 1", 0);
        let labels = Labels::from_pairs(&[("alertname", "A"), ("job", "api")]);
        rule.active.insert(
            labels.clone(),
            Alert {
                labels: labels.clone(),
                annotations: vec![("summary".into(), "s".into())],
                state: State::Firing,
                value: 2.0,
                active_at: 0,
                fired_at: Some(15_000),
                resolved_at: None,
                keep_firing_since: None,
                restored: false,
                last_sent_at: None,
            },
        );
        let ext = Labels::from_pairs(&[("cluster", "eu")]);
        let b = batch(
            &mut rule,
            15_000,
            Duration::from_secs(15),
            &ext,
            "http://c/",
            &|_| Context {
                example_traces: vec!["4bf92f3577b34da6a3ce929d0e0e4736".into()],
                deploy: Some("serving 1.1.0 on 1 of 2".into()),
                incident: Some(crate::incident::Incident {
                    routes: vec!["POST /checkout: 80% of its requests failed".into()],
                    by_version: Some("1.1.0: 80% errors; 1.0.0: 0.1% errors".into()),
                    window: "1m".into(),
                    ..Default::default()
                }),
            },
        );
        assert_eq!(b[0]["annotations"]["deploy"], "serving 1.1.0 on 1 of 2");
        assert_eq!(
            b[0]["annotations"]["routes"],
            "POST /checkout: 80% of its requests failed"
        );
        assert_eq!(
            b[0]["annotations"]["by_version"],
            "1.1.0: 80% errors; 1.0.0: 0.1% errors"
        );
        assert_eq!(b[0]["annotations"]["window"], "1m");
        assert!(b[0]["annotations"].get("value_now").is_none());
        assert_eq!(b.len(), 1);
        assert_eq!(b[0]["labels"]["cluster"], "eu");
        assert_eq!(
            b[0]["annotations"]["example_trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "a firing alert's example trace, for Alertmanager's templates"
        );
        assert_eq!(b[0]["startsAt"], "1970-01-01T00:00:15.000000Z");
        assert_eq!(
            b[0]["endsAt"], "1970-01-01T00:04:15.000000Z",
            "now + 4 x max(15s, 1m)"
        );
        // The following batches, without example traces.
        let later = |rule: &mut AlertingRule, t| {
            batch(rule, t, Duration::from_secs(15), &ext, "", &|_| {
                Context::default()
            })
        };
        assert!(
            later(&mut rule, 30_000).is_empty(),
            "not re-sent within a minute"
        );
        assert_eq!(later(&mut rule, 76_000).len(), 1, "re-sent after a minute");
        let a = rule.active.get_mut(&labels).unwrap();
        a.state = State::Inactive;
        a.resolved_at = Some(90_000);
        let b = later(&mut rule, 90_000);
        assert_eq!(
            b[0]["endsAt"], "1970-01-01T00:01:30.000000Z",
            "resolved: endsAt is the resolution"
        );
    }
}
