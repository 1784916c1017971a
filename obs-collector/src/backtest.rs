//! `obs-collector backtest`: how the configured rules would have behaved over history.
//!
//! Each alerting rule's expression is fetched once as a range query (`/api/v1/query_range`)
//! at its group's evaluation interval, on the interval's slots as the collector evaluates.
//! The points are then replayed through the same evaluator and alert state machine that run
//! live ([`crate::rules::evaluate`] over a [`Querier`]), and the alerts through the
//! notification groups of `route:` ([`crate::notify::group`]), so `for`, `keep_firing_for` and
//! grouping behave as they would have. Silences and inhibition are not replayed (they were not
//! there yet).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::labels::Labels;
use crate::links::Links;
use crate::notify::{Context, Log, Policy};
use crate::promql::remote::Remote;
use crate::promql::{Querier, Query, QueryError, QueryFuture, Sample, Value};
use crate::rules::{self, Group, Kind, Transition};
use crate::store::Store;
use crate::time::{millis, next_slot, rfc3339};

/// Most evaluations of one group (Prometheus refuses range queries of more points).
pub const MAX_POINTS: i64 = 11_000;

/// Why a backtest could not run.
#[derive(Debug)]
pub enum BacktestError {
    /// The request itself is wrong (range, rule name): exit 2.
    Invalid(String),
    /// The backend did not answer a range query.
    Query { rule: String, error: QueryError },
}

impl std::fmt::Display for BacktestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BacktestError::Invalid(m) => f.write_str(m),
            BacktestError::Query { rule, error } => write!(f, "rule {rule}: {error}"),
        }
    }
}

impl std::error::Error for BacktestError {}

/// One time an alert was active: pending from `pending_ms`, maybe firing, until `ended_ms`
/// (resolved, or reset before it fired); open at the end of the range when `ended_ms` is
/// `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Episode {
    pub pending_ms: i64,
    pub firing_ms: Option<i64>,
    pub ended_ms: Option<i64>,
}

/// What one alert (rule and label set) did over the range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertHistory {
    pub rule: String,
    pub labels: Labels,
    pub episodes: Vec<Episode>,
    /// The messages that would have named it (firing or resolved).
    pub notifications: usize,
}

/// A backtest's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub start_ms: i64,
    pub end_ms: i64,
    pub evaluations: usize,
    pub alerts: Vec<AlertHistory>,
    /// Messages that would have been sent, on each channel.
    pub notifications: usize,
}

/// One series of a range query: its labels and its points by time.
type Series = (Labels, BTreeMap<i64, f64>);

/// Answers the rule expressions from their fetched range: the points at the evaluation time.
struct Replay(HashMap<String, Vec<Series>>);

impl Querier for Replay {
    fn query<'a>(&'a self, query: Query<'a>, t_ms: i64) -> QueryFuture<'a> {
        let value = match query.text.and_then(|text| self.0.get(text)) {
            Some(series) => Ok(Value::Vector(
                series
                    .iter()
                    .filter_map(|(labels, points)| {
                        Some(Sample {
                            labels: labels.clone(),
                            value: *points.get(&t_ms)?,
                        })
                    })
                    .collect(),
            )),
            // Sub-expressions (the status page's charts) are not fetched.
            None => Err(QueryError::Eval("not replayed".into())),
        };
        Box::pin(std::future::ready(value))
    }
}

/// The evaluation slots of `interval` in `[start_ms, end_ms]`: the first, and how many. The
/// collector's own schedule ([`next_slot`]), from the first slot at or after the start.
fn slots(start_ms: i64, end_ms: i64, interval: Duration) -> (i64, i64) {
    let step = millis(interval).max(1);
    let first = next_slot(start_ms - 1, step, 0);
    let count = if first > end_ms {
        0
    } else {
        (end_ms - first) / step + 1
    };
    (first, count)
}

/// Runs `groups` (the rules of `config`, only `rule` when given) over `[start_ms, end_ms]`
/// against `backend`.
pub async fn run(
    config: &Config,
    groups: Vec<Group>,
    backend: &Remote,
    start_ms: i64,
    end_ms: i64,
    rule: Option<&str>,
) -> Result<Report, BacktestError> {
    if end_ms <= start_ms {
        return Err(BacktestError::Invalid(format!(
            "the end ({}) is not after the start ({})",
            rfc3339(end_ms),
            rfc3339(start_ms)
        )));
    }
    let mut groups = groups;
    if let Some(name) = rule {
        for g in &mut groups {
            g.rules
                .retain(|r| matches!(&r.kind, Kind::Alerting(a) if a.name() == name));
        }
        groups.retain(|g| !g.rules.is_empty());
        if groups.is_empty() {
            return Err(BacktestError::Invalid(format!(
                "no alerting rule is named {name:?}"
            )));
        }
    }
    for g in &groups {
        let (_, count) = slots(start_ms, end_ms, g.interval);
        if count > MAX_POINTS {
            return Err(BacktestError::Invalid(format!(
                "group {:?}: {count} evaluations at its {}s interval; at most {MAX_POINTS}: shorten the range",
                g.name,
                g.interval.as_secs_f64()
            )));
        }
    }
    let policy = Policy {
        channels: vec!["backtest".into()],
        send_resolved: config.notify.send_resolved,
        route: config.route.clone(),
    };
    let mut log = Log::default();
    let mut episodes: BTreeMap<(String, Labels), Vec<Episode>> = BTreeMap::new();
    let mut evaluations = 0;
    let store = RwLock::new(Store::new(0));
    // The groups run one after the other: each has its own slots. As live, the log is flushed
    // at every evaluation and, between them, when a group falls due.
    let mut timeline: Vec<(i64, usize)> = Vec::new();
    let mut replays = Vec::new();
    for (index, g) in groups.iter().enumerate() {
        let (first, count) = slots(start_ms, end_ms, g.interval);
        let mut fetched = HashMap::new();
        for r in &g.rules {
            let Kind::Alerting(a) = &r.kind else { continue };
            let series = backend
                .range(&a.expr_text, first, end_ms, g.interval)
                .await
                .map_err(|error| BacktestError::Query {
                    rule: a.name().to_owned(),
                    error,
                })?;
            let series = series
                .into_iter()
                .map(|(labels, points)| (labels, points.into_iter().collect()))
                .collect();
            fetched.insert(a.expr_text.clone(), series);
        }
        replays.push(Replay(fetched));
        timeline.extend((0..count).map(|k| (first + k * millis(g.interval), index)));
    }
    timeline.sort_unstable();
    let groups: Vec<Mutex<Group>> = groups.into_iter().map(Mutex::new).collect();
    let links = Links::default();
    let unmuted = |_: &Labels| false;
    for (t, index) in timeline {
        log.flush_before(t, &policy, &links, &unmuted);
        let evaluation = rules::evaluate(
            &groups[index],
            t,
            &replays[index],
            &store,
            &config.external_labels,
        )
        .await;
        evaluations += 1;
        for (name, transition) in evaluation.transitions {
            record(&mut episodes, name, transition, t);
        }
        let group = groups[index].lock().unwrap_or_else(|e| e.into_inner());
        for r in &group.rules {
            if let (Kind::Alerting(a), None) = (&r.kind, &r.health.last_error) {
                log.insert(a, t, &policy.route, &|_| Context::default());
            }
        }
        log.flush(t, &policy, &links, &unmuted);
    }
    log.flush_before(end_ms.saturating_add(1), &policy, &links, &unmuted);
    let alerts = episodes
        .into_iter()
        .map(|((rule, labels), episodes)| {
            let notifications = log
                .entries
                .iter()
                .filter(|e| {
                    let m = &e.message;
                    m.alerts
                        .iter()
                        .chain(&m.resolved)
                        .any(|a| a.labels == labels)
                })
                .count();
            AlertHistory {
                rule,
                labels,
                episodes,
                notifications,
            }
        })
        .collect();
    Ok(Report {
        start_ms,
        end_ms,
        evaluations,
        alerts,
        notifications: log.entries.len(),
    })
}

/// Adds one state change at `t` to the alert's episodes.
fn record(
    episodes: &mut BTreeMap<(String, Labels), Vec<Episode>>,
    rule: String,
    transition: Transition,
    t: i64,
) {
    let labels = match &transition {
        Transition::Pending(l)
        | Transition::Firing(l)
        | Transition::PendingReset(l)
        | Transition::Resolved(l) => l.clone(),
    };
    let list = episodes.entry((rule, labels)).or_default();
    let open = list.last_mut().filter(|e| e.ended_ms.is_none());
    match (transition, open) {
        (Transition::Pending(_), None) => list.push(Episode {
            pending_ms: t,
            firing_ms: None,
            ended_ms: None,
        }),
        // `for: 0`: firing at once.
        (Transition::Firing(_), None) => list.push(Episode {
            pending_ms: t,
            firing_ms: Some(t),
            ended_ms: None,
        }),
        (Transition::Firing(_), Some(e)) => e.firing_ms = Some(t),
        (Transition::PendingReset(_) | Transition::Resolved(_), Some(e)) => e.ended_ms = Some(t),
        _ => {}
    }
}

impl Report {
    /// The report for a person: per alert, each episode and the messages it caused.
    pub fn text(&self) -> String {
        let mut out = format!(
            "backtest {} .. {}: {} evaluations, {} alerts, {} notifications\n",
            rfc3339(self.start_ms),
            rfc3339(self.end_ms),
            self.evaluations,
            self.alerts.len(),
            self.notifications
        );
        for a in &self.alerts {
            out.push_str(&format!(
                "\n{} {} ({} notifications)\n",
                a.rule, a.labels, a.notifications
            ));
            for e in &a.episodes {
                out.push_str(&format!("  pending  {}\n", rfc3339(e.pending_ms)));
                if let Some(f) = e.firing_ms {
                    out.push_str(&format!("  firing   {}\n", rfc3339(f)));
                }
                let end = match (e.firing_ms, e.ended_ms) {
                    (Some(f), Some(end)) => format!(
                        "  resolved {} (fired for {})\n",
                        rfc3339(end),
                        crate::notify::duration_text(end - f)
                    ),
                    (None, Some(end)) => format!("  reset    {} (never fired)\n", rfc3339(end)),
                    (_, None) => "  still active at the end\n".to_owned(),
                };
                out.push_str(&end);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_intervals_multiples_inside_the_range() {
        let s = Duration::from_secs(15);
        assert_eq!(slots(0, 60_000, s), (0, 5));
        assert_eq!(slots(1, 60_000, s), (15_000, 4));
        assert_eq!(slots(1, 14_999, s), (15_000, 0));
    }

    #[test]
    fn episodes_from_transitions() {
        let mut e = BTreeMap::new();
        let l = Labels::from_pairs(&[("job", "a")]);
        for (tr, t) in [
            (Transition::Pending(l.clone()), 0),
            (Transition::PendingReset(l.clone()), 15),
            (Transition::Pending(l.clone()), 30),
            (Transition::Firing(l.clone()), 45),
            (Transition::Resolved(l.clone()), 90),
            (Transition::Firing(l.clone()), 120),
        ] {
            record(&mut e, "R".into(), tr, t);
        }
        let list = &e[&("R".to_owned(), l)];
        assert_eq!(
            list,
            &[
                Episode {
                    pending_ms: 0,
                    firing_ms: None,
                    ended_ms: Some(15)
                },
                Episode {
                    pending_ms: 30,
                    firing_ms: Some(45),
                    ended_ms: Some(90)
                },
                Episode {
                    pending_ms: 120,
                    firing_ms: Some(120),
                    ended_ms: None
                },
            ]
        );
    }
}
