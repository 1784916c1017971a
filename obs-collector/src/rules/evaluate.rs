//! One evaluation of a rule group at a timestamp, over a [`Querier`]: Prometheus'
//! `Group.Eval`. Rules run in order, so a recording rule's output is visible to the rules after
//! it; the group's lock is never held while a query is awaited.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use super::{alerting, Group, Kind, RuleError, Transition};
use crate::labels::Labels;
use crate::promql::{Querier, Query};
use crate::store::Store;

/// What one evaluation of a group came to.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Alert transitions, with the name of their rule.
    pub transitions: Vec<(String, Transition)>,
    /// Rules whose evaluation failed (their state is unchanged).
    pub failures: usize,
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
                    (Ok(_), Some((compared, above))) => alerting::chart_point(
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
                apply_alerting(
                    group,
                    index,
                    t,
                    value.map_err(RuleError::from),
                    chart,
                    external,
                )
                .map(|tr| evaluation.transitions.extend(tr))
            }
            None => match &mut lock(group).rules[index].kind {
                Kind::Recording(r) => {
                    let mut store = store.write().unwrap_or_else(PoisonError::into_inner);
                    r.eval(t, &mut store)
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

/// Runs alerting rule `index`'s state machine on its query's answer.
fn apply_alerting(
    group: &Mutex<Group>,
    index: usize,
    t: i64,
    value: Result<crate::promql::Value, RuleError>,
    chart: Option<f64>,
    external: &Labels,
) -> Result<Vec<(String, Transition)>, RuleError> {
    let mut group = lock(group);
    let Kind::Alerting(a) = &mut group.rules[index].kind else {
        return Ok(Vec::new());
    };
    let transitions = a.apply(t, value?, chart, external)?;
    Ok(transitions
        .into_iter()
        .map(|tr| (a.name.clone(), tr))
        .collect())
}
