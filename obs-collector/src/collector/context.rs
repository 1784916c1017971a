//! The context stage: an alert's routes, values per version and value now
//! ([`crate::incident`]) are read when it starts firing (or, after a restart, at the first
//! evaluation that finds it firing without one) and once more when it resolves, never at every
//! evaluation. They are read through the evaluation's [`Querier`], so from the data the rule
//! read: the local store, or the backend in remote mode (one query per latency alert, two per
//! error alert, per transition).

use std::collections::HashMap;

use super::{lock, Collector};
use crate::incident::{Incident, Plan};
use crate::labels::Labels;
use crate::promql::{self, Querier, Query, QueryError, Value};
use crate::rules::{Evaluation, State, Transition};

/// What is known of one alert's incident.
#[derive(Debug, Clone, Default)]
pub(super) struct Known {
    /// Read at the onset.
    pub onset: Option<Incident>,
    /// Read when it resolved.
    pub resolution: Option<Incident>,
}

/// One context to read: the rule's plan, the alert, when it became active, whether it is
/// the resolution.
struct Wanted {
    plan: Plan,
    labels: Labels,
    onset_ms: i64,
    resolved: bool,
}

impl Collector {
    /// Reads the contexts group `index`'s `evaluation` calls for, at `t`, and keeps them for
    /// [`Collector::context_of`]. A failed query only means no context (it is tried again at
    /// the next evaluation while the alert fires).
    pub(super) async fn read_incidents(
        &self,
        index: usize,
        evaluation: &Evaluation,
        querier: &dyn Querier,
        t: i64,
    ) {
        let wanted = self.wanted(index, evaluation);
        if wanted.is_empty() {
            return;
        }
        let _timer = self.metrics.context_seconds.start_timer();
        let mut read = Vec::with_capacity(wanted.len());
        'alerts: for w in wanted {
            let queries = w.plan.queries(&w.labels);
            let mut answers = Vec::with_capacity(queries.len());
            for text in &queries {
                match ask(querier, text, t).await {
                    Ok(samples) => answers.push(samples),
                    Err(e) => {
                        tracing::debug!({ query = %text, error = %e }, "no incident context");
                        continue 'alerts;
                    }
                }
            }
            read.push((w, answers));
        }
        let mut done = Vec::with_capacity(read.len());
        {
            let deploys = lock(&self.deploys);
            for (w, answers) in read {
                let job = w.labels.get("job").unwrap_or_default();
                let serving = deploys.serving(job);
                let version_of =
                    |instance: &str| -> Option<String> { serving?.get(instance)?.version.clone() };
                let mut incident = w.plan.read(&answers, &version_of);
                if w.resolved {
                    incident.change = deploys.change_during(job, w.onset_ms, t);
                }
                done.push((w.labels, w.resolved, incident));
            }
        }
        let mut known = lock(&self.incidents[index]);
        for (labels, resolved, incident) in done {
            let entry = known.entry(labels).or_default();
            if resolved {
                entry.resolution = Some(incident);
            } else {
                *entry = Known {
                    onset: Some(incident),
                    resolution: None,
                };
            }
        }
    }

    /// The alerts of group `index` whose context is to be read now: firing ones without an
    /// onset context, and those `evaluation` resolved.
    fn wanted(&self, index: usize, evaluation: &Evaluation) -> Vec<Wanted> {
        let (mut fired, mut resolved): (Vec<&Labels>, Vec<&Labels>) = (Vec::new(), Vec::new());
        for (_, transition) in &evaluation.transitions {
            match transition {
                Transition::Firing(labels) => fired.push(labels),
                Transition::Resolved(labels) => resolved.push(labels),
                _ => {}
            }
        }
        let group = lock(&self.groups[index]);
        let mut wanted = Vec::new();
        {
            let known = lock(&self.incidents[index]);
            for rule in group.alerting_rules() {
                // The plan is read off the rule only when one of its alerts needs it.
                let mut plan = None;
                for alert in rule.alerts() {
                    let is_resolved = resolved.contains(&&alert.labels);
                    // A new firing (also one that fires again after resolving) reads anew.
                    let needs_onset = alert.state == State::Firing
                        && (fired.contains(&&alert.labels)
                            || known.get(&alert.labels).is_none_or(|k| k.onset.is_none()));
                    if !(is_resolved || needs_onset) {
                        continue;
                    }
                    let Some(plan) = plan.get_or_insert_with(|| Plan::of(rule)) else {
                        break; // a rule that reads no range: no context to read
                    };
                    wanted.push(Wanted {
                        plan: plan.clone(),
                        labels: alert.labels.clone(),
                        onset_ms: alert.active_at,
                        resolved: is_resolved,
                    });
                }
            }
        }
        wanted
    }

    /// The contexts of group `index`'s alerts as the notification stage takes them: the
    /// onset's while an alert fires, the resolution's once it resolved. Those of alerts the
    /// rules forgot are dropped here.
    pub(super) fn incidents_of(
        &self,
        index: usize,
        group: &crate::rules::Group,
    ) -> HashMap<Labels, Incident> {
        let states: HashMap<&Labels, State> = group
            .alerting_rules()
            .flat_map(|r| r.alerts().map(|a| (&a.labels, a.state)))
            .collect();
        let mut known = lock(&self.incidents[index]);
        known.retain(|labels, _| states.contains_key(labels));
        known
            .iter()
            .filter_map(|(labels, k)| {
                let incident = match states[labels] {
                    State::Firing => k.onset.as_ref(),
                    State::Inactive => k.resolution.as_ref(),
                    State::Pending => None,
                }?;
                Some((labels.clone(), incident.clone()))
            })
            .collect()
    }
}

impl Collector {
    /// The onset context of the firing alert with `labels` (the status page's).
    pub fn incident_of(&self, labels: &Labels) -> Option<Incident> {
        self.incidents
            .iter()
            .find_map(|known| lock(known).get(labels)?.onset.clone())
    }
}

/// The instant vector `text` evaluates to at `t`, through `querier`.
async fn ask(querier: &dyn Querier, text: &str, t: i64) -> Result<Vec<promql::Sample>, QueryError> {
    let expr = promql::compile(text).map_err(|e| QueryError::Eval(e.to_string()))?;
    match querier
        .query(
            Query {
                expr: &expr,
                text: Some(text),
            },
            t,
        )
        .await
    {
        Ok(Value::Vector(samples)) => Ok(samples),
        Ok(Value::Scalar(_)) => Err("a scalar, not a vector".into()),
        Err(e) => Err(e),
    }
}
