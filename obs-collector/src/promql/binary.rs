//! The binary operators at every step, as Prometheus' `VectorBinop`, `VectorscalarBinop` and
//! the set operators compute them.
//!
//! Between two vectors, the "one" side (the right, or the left with `group_right`) is gathered
//! and indexed by its matching labels; the "many" side streams past it, a series at a time.

use std::collections::HashMap;

use super::error::QueryError;
use super::series::{group, Evaluate, Series, Sink, Unique};
use super::{BinOp, Expr, Group, Matching};
use crate::labels::{Labels, NAME};

/// Arithmetic result, or for comparisons whether the pair is kept (value = left side).
fn apply(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        BinOp::Mod => (l % r, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Eq => (l, l == r),
        BinOp::Ne => (l, l != r),
        BinOp::Gt => (l, l > r),
        BinOp::Lt => (l, l < r),
        BinOp::Ge => (l, l >= r),
        BinOp::Le => (l, l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless => (l, true),
    }
}

/// `l op r` between scalars (a comparison gives 1 or 0: between scalars it needs `bool`).
pub(super) fn scalars(op: BinOp, l: f64, r: f64) -> f64 {
    let (v, keep) = apply(op, l, r);
    if op.is_comparison() {
        f64::from(u8::from(keep))
    } else {
        v
    }
}

/// A binary operation with at least one vector side, each result series to `sink`.
pub(super) fn stream(
    ctx: &dyn Evaluate,
    op: BinOp,
    lhs: &Expr,
    rhs: &Expr,
    matching: &Matching,
    return_bool: bool,
    sink: &mut Sink,
) -> Result<(), QueryError> {
    let drop_name = !op.is_comparison() || return_bool;
    // The value of a pair, or None where a comparison drops it.
    let finish = |l: f64, r: f64, element: f64| -> Option<f64> {
        let (value, keep) = apply(op, l, r);
        if return_bool {
            Some(if keep { 1.0 } else { 0.0 })
        } else if op.is_comparison() {
            keep.then_some(element)
        } else {
            Some(value)
        }
    };
    match (lhs.is_scalar(), rhs.is_scalar()) {
        (true, true) => Err("a binary operation between scalars is not a vector".into()),
        (scalar_left, true) | (scalar_left @ true, false) => {
            if op.is_set() {
                return Err("set operators (and, or, unless) need vectors on both sides".into());
            }
            let (scalar, vector) = if scalar_left { (lhs, rhs) } else { (rhs, lhs) };
            let scalar = ctx.scalar(scalar)?;
            ctx.stream(vector, &mut |mut s| {
                if drop_name {
                    s.labels = s.labels.without_name();
                }
                for (i, p) in s.points.iter_mut().enumerate() {
                    if let Some(v) = *p {
                        // A comparison keeps the vector's element, whichever side it is on.
                        let (l, r) = if scalar_left {
                            (scalar[i], v)
                        } else {
                            (v, scalar[i])
                        };
                        *p = finish(l, r, v);
                    }
                }
                sink(s)
            })
        }
        (false, false) if op.is_set() => set(ctx, op, lhs, rhs, matching, sink),
        (false, false) => vectors(ctx, lhs, rhs, matching, drop_name, &finish, sink),
    }
}

/// A vector-vector operation: each series of the "many" side joined at each step with its
/// match on the "one" side; one to one unless grouped, a grouped result taking the "many"
/// side's labels plus the included labels of its match.
#[allow(clippy::too_many_arguments)]
fn vectors(
    ctx: &dyn Evaluate,
    lhs: &Expr,
    rhs: &Expr,
    matching: &Matching,
    drop_name: bool,
    finish: &dyn Fn(f64, f64, f64) -> Option<f64>,
    sink: &mut Sink,
) -> Result<(), QueryError> {
    let right_is_many = matches!(matching.group, Some(Group::Right(_)));
    let (many, ones) = if right_is_many {
        (rhs, lhs)
    } else {
        (lhs, rhs)
    };
    let ones = ctx.gather(ones)?;
    let mut index: HashMap<Labels, Vec<usize>> = HashMap::new();
    for (i, s) in ones.iter().enumerate() {
        index
            .entry(signature(&s.labels, matching))
            .or_default()
            .push(i);
    }
    // The "one" side must be unique at each step.
    for (sig, members) in &index {
        if members.len() > 1 {
            let mut unique = Unique::default();
            for &m in members {
                unique.claim_with(sig, &ones[m], || {
                    let side = if right_is_many { "left" } else { "right" };
                    format!("found duplicate series for the match group {sig} on the {side} hand-side of the operation; many-to-many matching not allowed").into()
                })?;
            }
        }
    }
    let n = ctx.steps();
    let mut matched = Unique::default();
    ctx.stream(many, &mut |s| {
        let sig = signature(&s.labels, matching);
        let Some(members) = index.get(&sig) else {
            return Ok(());
        };
        // The results of this series, by their labels (a grouped result's labels depend on
        // which "one" series matched at a step), and the result each of its matches gives:
        // labels are made once a match, not once a step.
        let mut results: Vec<Series> = Vec::new();
        let mut result_of: Vec<Option<usize>> = vec![None; members.len()];
        for (i, p) in s.points.iter().enumerate() {
            let Some(v) = *p else { continue };
            let Some(k) = members.iter().position(|&m| ones[m].points[i].is_some()) else {
                continue;
            };
            let m = members[k];
            let o = ones[m].points[i].expect("found present");
            let (l, r) = if right_is_many { (o, v) } else { (v, o) };
            let Some(value) = finish(l, r, l) else { continue };
            let at = match result_of[k] {
                Some(at) => at,
                None => {
                    let labels = joined_labels(&s.labels, &ones[m].labels, matching, drop_name);
                    let at = match results.iter().position(|r| r.labels == labels) {
                        Some(at) => at,
                        None => {
                            results.push(Series {
                                labels,
                                points: vec![None; n],
                            });
                            results.len() - 1
                        }
                    };
                    result_of[k] = Some(at);
                    at
                }
            };
            results[at].points[i] = Some(value);
        }
        for r in results {
            match matching.group {
                None => matched.claim_with(&sig, &r, || {
                    format!("multiple matches for labels {sig}: many-to-one matching must be explicit (group_left/group_right)").into()
                })?,
                Some(_) => matched.claim_with(&r.labels.clone(), &r, || {
                    format!("multiple matches for labels {}: grouping labels must ensure unique matches", r.labels).into()
                })?,
            }
            sink(r)?;
        }
        Ok(())
    })
}

/// The labels of the result of `many` joined with `one`: one to one, the matching labels (`on`)
/// or all but them (`ignoring`); grouped, the "many" side's plus the included labels of `one`.
fn joined_labels(many: &Labels, one: &Labels, matching: &Matching, drop_name: bool) -> Labels {
    let mut labels = if drop_name {
        many.without_name()
    } else {
        many.clone()
    };
    match &matching.group {
        None if matching.on => labels.retain(|n| matching.labels.iter().any(|m| m == n)),
        None => labels.retain(|n| !matching.labels.iter().any(|m| m == n)),
        Some(Group::Left(include) | Group::Right(include)) => {
            for name in include {
                match one.get(name).filter(|v| !v.is_empty()) {
                    Some(v) => labels.set(name, v),
                    None => labels.retain(|n| n != name.as_str()),
                }
            }
        }
    }
    labels
}

/// The labels two series must share to match.
fn signature(labels: &Labels, matching: &Matching) -> Labels {
    let mut sig = labels.clone();
    if matching.on {
        sig.retain(|n| matching.labels.iter().any(|m| m == n));
    } else {
        sig.retain(|n| n != NAME && !matching.labels.iter().any(|m| m == n));
    }
    sig
}

/// `and`, `or`, `unless` at each step, by the matching labels; the left side's series keep
/// their labels.
fn set(
    ctx: &dyn Evaluate,
    op: BinOp,
    lhs: &Expr,
    rhs: &Expr,
    matching: &Matching,
    sink: &mut Sink,
) -> Result<(), QueryError> {
    // The steps at which each signature of one side has a series.
    let mut present: HashMap<Labels, Vec<bool>> = HashMap::new();
    let mut mark = |s: &Series| -> Result<(), QueryError> {
        let steps = group(ctx, &mut present, signature(&s.labels, matching), false)?;
        for (p, point) in steps.iter_mut().zip(&s.points) {
            *p |= point.is_some();
        }
        Ok(())
    };
    match op {
        BinOp::Or => {
            for s in ctx.gather(lhs)? {
                mark(&s)?;
                sink(s)?;
            }
            ctx.stream(rhs, &mut |mut s| {
                if let Some(steps) = present.get(&signature(&s.labels, matching)) {
                    for (p, &taken) in s.points.iter_mut().zip(steps) {
                        if taken {
                            *p = None;
                        }
                    }
                }
                sink(s)
            })
        }
        _ => {
            ctx.stream(rhs, &mut |s| mark(&s))?;
            let keep_matched = op == BinOp::And;
            ctx.stream(lhs, &mut |mut s| {
                let steps = present.get(&signature(&s.labels, matching));
                for (i, p) in s.points.iter_mut().enumerate() {
                    let matched = steps.is_some_and(|steps| steps[i]);
                    if matched != keep_matched {
                        *p = None;
                    }
                }
                sink(s)
            })
        }
    }
}
