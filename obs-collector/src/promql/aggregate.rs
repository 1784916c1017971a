//! The aggregation operators, at every step, as Prometheus' `aggregation()` computes them.
//!
//! `sum`, `avg`, `min`, `max`, `count`, `group`, `stddev` and `stdvar` fold each series into its
//! group's running values as the series arrive (a group holds a few numbers a step, never its
//! series); `topk`, `bottomk`, `quantile` and `count_values` need every value of a step at once
//! and gather their input.

use std::collections::HashMap;

use super::error::QueryError;
use super::functions::quantile;
use super::series::{group, Evaluate, Series};
use super::{AggOp, Expr, Grouping};
use crate::labels::{Labels, NAME};

/// `op` over `expr`'s series, grouped by `grouping`; `param` is `topk`'s k, `quantile`'s q or
/// `count_values`' label.
pub(super) fn aggregate(
    ctx: &dyn Evaluate,
    op: AggOp,
    grouping: &Grouping,
    expr: &Expr,
    param: Option<&Expr>,
) -> Result<Vec<Series>, QueryError> {
    match op {
        AggOp::Topk | AggOp::Bottomk => {
            let k = ctx.scalar(param.ok_or("topk and bottomk need k")?)?;
            top(ctx, op == AggOp::Topk, &k, grouping, expr)
        }
        AggOp::Quantile => {
            let q = ctx.scalar(param.ok_or("quantile needs its φ")?)?;
            let mut groups: HashMap<Labels, Vec<Vec<f64>>> = HashMap::new();
            ctx.stream(expr, &mut |s| {
                let values = group(ctx, &mut groups, group_key(&s.labels, grouping), Vec::new())?;
                for (i, p) in s.points.iter().enumerate() {
                    if let Some(v) = p {
                        values[i].push(*v);
                    }
                }
                Ok(())
            })?;
            Ok(groups
                .into_iter()
                .map(|(labels, mut steps)| Series {
                    labels,
                    points: steps
                        .iter_mut()
                        .enumerate()
                        .map(|(i, values)| (!values.is_empty()).then(|| quantile(q[i], values)))
                        .collect(),
                })
                .collect())
        }
        AggOp::CountValues => {
            let Some(Expr::String(label)) = param else {
                return Err("count_values needs a label name".into());
            };
            let mut groups: HashMap<Labels, Vec<Option<f64>>> = HashMap::new();
            ctx.stream(expr, &mut |s| {
                let key = group_key(&s.labels, grouping);
                for (i, p) in s.points.iter().enumerate() {
                    if let Some(v) = p {
                        let mut labels = key.clone();
                        labels.set(label, &format_value(*v));
                        let counts = group(ctx, &mut groups, labels, None)?;
                        *counts[i].get_or_insert(0.0) += 1.0;
                    }
                }
                Ok(())
            })?;
            Ok(groups
                .into_iter()
                .map(|(labels, points)| Series { labels, points })
                .collect())
        }
        _ => {
            let mut groups: HashMap<Labels, Vec<Acc>> = HashMap::new();
            ctx.stream(expr, &mut |s| {
                let accs = group(
                    ctx,
                    &mut groups,
                    group_key(&s.labels, grouping),
                    Acc::default(),
                )?;
                for (acc, p) in accs.iter_mut().zip(&s.points) {
                    if let Some(v) = p {
                        acc.add(op, *v);
                    }
                }
                Ok(())
            })?;
            Ok(groups
                .into_iter()
                .map(|(labels, accs)| Series {
                    labels,
                    points: accs.iter().map(|a| a.result(op)).collect(),
                })
                .collect())
        }
    }
}

/// The labels of a series' group: the `by` labels, or all but the `without` labels and the
/// name.
fn group_key(labels: &Labels, grouping: &Grouping) -> Labels {
    let mut key = labels.clone();
    match grouping {
        Grouping::By(keep) => key.retain(|n| keep.iter().any(|k| k == n)),
        Grouping::Without(drop) => key.retain(|n| n != NAME && !drop.iter().any(|d| d == n)),
    }
    key
}

/// A group's running values at one step, as Prometheus 2 keeps them.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    count: f64,
    /// The sum, min, max or (for stddev and stdvar) the sum of squared deviations.
    value: f64,
    mean: f64,
}

impl Acc {
    fn add(&mut self, op: AggOp, v: f64) {
        self.count += 1.0;
        if self.count == 1.0 {
            self.value = v;
            self.mean = v;
            if matches!(op, AggOp::Stddev | AggOp::Stdvar) {
                self.value = 0.0;
            }
            return;
        }
        match op {
            AggOp::Sum => self.value += v,
            AggOp::Min if self.value > v || self.value.is_nan() => self.value = v,
            AggOp::Max if self.value < v || self.value.is_nan() => self.value = v,
            AggOp::Avg => {
                if self.mean.is_infinite() {
                    if v.is_infinite() && (self.mean > 0.0) == (v > 0.0) {
                        return;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        return;
                    }
                }
                // Each side divided by the count, so that no sum overflows.
                self.mean += v / self.count - self.mean / self.count;
            }
            AggOp::Stddev | AggOp::Stdvar => {
                let delta = v - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (v - self.mean);
            }
            _ => {}
        }
    }

    fn result(&self, op: AggOp) -> Option<f64> {
        if self.count == 0.0 {
            return None;
        }
        Some(match op {
            AggOp::Avg => self.mean,
            AggOp::Count => self.count,
            AggOp::Group => 1.0,
            AggOp::Stdvar => self.value / self.count,
            AggOp::Stddev => (self.value / self.count).sqrt(),
            _ => self.value,
        })
    }
}

/// `topk(k, v)` or `bottomk(k, v)`: at each step, the k largest (smallest) elements of each
/// group, with their own labels; NaN counts as the smallest for `topk`, the largest for
/// `bottomk`; among equal values, the first series.
fn top(
    ctx: &dyn Evaluate,
    largest: bool,
    k: &[f64],
    grouping: &Grouping,
    expr: &Expr,
) -> Result<Vec<Series>, QueryError> {
    let n = ctx.steps();
    let input = ctx.gather(expr)?;
    let mut groups: HashMap<Labels, Vec<usize>> = HashMap::new();
    for (i, s) in input.iter().enumerate() {
        groups
            .entry(group_key(&s.labels, grouping))
            .or_default()
            .push(i);
    }
    let mut chosen: Vec<Vec<Option<f64>>> = vec![Vec::new(); input.len()];
    for members in groups.values() {
        for step in 0..n {
            let want = k[step];
            // Below 1 (or NaN): nothing.
            if want.partial_cmp(&1.0).is_none_or(|o| o.is_lt()) {
                continue;
            }
            let mut present: Vec<(usize, f64)> = members
                .iter()
                .filter_map(|&m| Some((m, input[m].points[step]?)))
                .collect();
            // Stable: among equal values, the first series stays first.
            present.sort_by(|a, b| match (a.1.is_nan(), b.1.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if largest => b.1.total_cmp(&a.1),
                _ => a.1.total_cmp(&b.1),
            });
            let take = (want.min(present.len() as f64)) as usize;
            for &(m, v) in &present[..take] {
                let points = &mut chosen[m];
                if points.is_empty() {
                    points.resize(n, None);
                }
                points[step] = Some(v);
            }
        }
    }
    Ok(input
        .into_iter()
        .zip(chosen)
        .filter(|(_, points)| !points.is_empty())
        .map(|(s, points)| Series {
            labels: s.labels,
            points,
        })
        .collect())
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`, as `count_values` writes a value.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}
