//! One evaluation of a rule group at a timestamp, over a [`Querier`]: Prometheus'
//! `Group.Eval`. Rules run in order, so a recording rule's output is visible to the rules after
//! it; the group's lock is never held while a query is awaited.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use super::{Group, Kind, RuleError, Transition};
use crate::labels::Labels;
use crate::promql::{Querier, Query, QueryError, Value};
use crate::store::Store;

/// What one evaluation of a group came to.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Alert transitions, with the name of their rule.
    pub transitions: Vec<(String, Transition)>,
    /// Rules whose evaluation failed (their state is unchanged).
    pub failures: usize,
    /// Each evaluated alerting rule's chart point: the value compared against the threshold
    /// (NaN when there is none).
    pub charts: Vec<(String, f64)>,
}

/// The point charted against a rule's threshold from its compared expression's value: the
/// worst series (highest when the alert fires above the threshold, lowest when below).
/// The point a chart shows for an alert's compared value: the worst of the vector (the largest
/// when the alert fires above its threshold).
pub fn chart_point(value: Result<Value, QueryError>, above: bool) -> Option<f64> {
    match value {
        Ok(Value::Vector(v)) => worst(&v, above),
        Ok(Value::Scalar(v)) => Some(v),
        Err(_) => None,
    }
}

fn worst(samples: &[crate::promql::Sample], above: bool) -> Option<f64> {
    samples
        .iter()
        .map(|s| s.value)
        .filter(|v| !v.is_nan())
        .reduce(|a, b| if above { a.max(b) } else { a.min(b) })
}

fn lock(group: &Mutex<Group>) -> MutexGuard<'_, Group> {
    group.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Evaluates every rule of `group` at `t`: alerting rules through `querier`, recording rules
/// over (and into) `store`. A failed rule keeps its state and shows the error as its health.
pub async fn evaluate(
    group: &Mutex<Group>,
    t: i64,
    querier: &dyn Querier,
    store: &RwLock<Store>,
    external: &Labels,
) -> Evaluation {
    let mut evaluation = Evaluation::default();
    let count = lock(group).rules.len();
    for index in 0..count {
        let started = Instant::now();
        let alerting = match &lock(group).rules[index].kind {
            Kind::Alerting(a) => Some((a.expr.clone(), a.expr_text.clone())),
            Kind::Recording(_) => None,
        };
        let result = match alerting {
            Some((expr, text)) => {
                let value = querier
                    .query(
                        Query {
                            expr: &expr,
                            text: Some(&text),
                        },
                        t,
                    )
                    .await;
                let chart = match (&value, expr.compared_value()) {
                    (Ok(_), Some((compared, above))) => chart_point(
                        querier
                            .query(
                                Query {
                                    expr: compared,
                                    text: None,
                                },
                                t,
                            )
                            .await,
                        above,
                    ),
                    _ => None,
                };
                // Without a compared expression (or from a remote backend, which evaluates
                // whole rule expressions only), chart the worst alerting value.
                let chart = chart.or_else(|| match &value {
                    Ok(Value::Vector(v)) => worst(v, true),
                    _ => None,
                });
                let applied =
                    apply_alerting(group, index, t, value.map_err(RuleError::from), external);
                if applied.is_ok() {
                    write_alerts(group, index, t, store);
                }
                applied.map(|applied| {
                    if let Some((name, transitions)) = applied {
                        let named = transitions.into_iter().map(|tr| (name.clone(), tr));
                        evaluation.transitions.extend(named);
                        evaluation.charts.push((name, chart.unwrap_or(f64::NAN)));
                    }
                })
            }
            None => match &mut lock(group).rules[index].kind {
                Kind::Recording(r) => {
                    let mut store = store.write().unwrap_or_else(PoisonError::into_inner);
                    let recorded = r.eval(t, &mut store);
                    store.commit();
                    recorded
                }
                Kind::Alerting(_) => Ok(()),
            },
        };
        let mut group = lock(group);
        let group_name = group.name.clone();
        let rule = &mut group.rules[index];
        rule.health.last_eval_ms = Some(t);
        rule.health.last_duration_s = started.elapsed().as_secs_f64();
        let error = result.err().map(|e| e.to_string());
        if let Some(e) = &error {
            evaluation.failures += 1;
            if rule.health.last_error.as_ref() != Some(e) {
                tracing::warn!({ rule_group = %group_name, rule = %rule.name(), error = %e }, "rule evaluation failed; alert state unchanged");
            }
        }
        rule.health.last_error = error;
    }
    evaluation
}

/// Writes alerting rule `index`'s `ALERTS` series at `t` (after its state machine ran).
fn write_alerts(group: &Mutex<Group>, index: usize, t: i64, store: &RwLock<Store>) {
    let mut group = lock(group);
    if let Kind::Alerting(a) = &mut group.rules[index].kind {
        let mut store = store.write().unwrap_or_else(PoisonError::into_inner);
        a.write_alerts_series(t, &mut store);
        store.commit();
    }
}

/// Runs alerting rule `index`'s state machine on its query's answer; gives the rule's name and
/// transitions (`None` if rule `index` is not an alerting rule).
fn apply_alerting(
    group: &Mutex<Group>,
    index: usize,
    t: i64,
    value: Result<Value, RuleError>,
    external: &Labels,
) -> Result<Option<(String, Vec<Transition>)>, RuleError> {
    let mut group = lock(group);
    let Kind::Alerting(a) = &mut group.rules[index].kind else {
        return Ok(None);
    };
    let transitions = a.apply(t, value?, external)?;
    Ok(Some((a.name.clone(), transitions)))
}
