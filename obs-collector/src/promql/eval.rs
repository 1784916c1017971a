//! Evaluation of compiled expressions over the store, at one instant.

use std::collections::{HashMap, HashSet};

use super::error::QueryError;
use super::functions::{bucket_quantile, extrapolated_rate};
use super::{AggOp, BinOp, Expr, Func, Group, Grouping, Matching, Selector};
use crate::labels::{Labels, NAME};
use crate::store::querier::{self, Select};

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

/// The result of an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<Sample>),
}

/// Evaluates `expr` at `t` (milliseconds) over what `store` holds (the head and the blocks).
pub fn eval(expr: &Expr, store: &dyn Select, t: i64) -> Result<Value, QueryError> {
    evaluate(expr, store, t)
}

fn evaluate(expr: &Expr, store: &dyn Select, t: i64) -> Result<Value, QueryError> {
    Ok(match expr {
        Expr::Number(n) => Value::Scalar(*n),
        Expr::Remote => {
            return Err("this expression is only evaluated by a remote backend (query.url)".into())
        }
        Expr::Selector(sel) => {
            let at = t - sel.offset_ms;
            let (min_t, max_t) = querier::lookback_window(at);
            let mut out = Vec::new();
            select(store, sel, min_t, max_t, &mut |labels, samples| {
                if let Some(value) = querier::instant(samples, at, store.left_closed()) {
                    out.push(Sample {
                        labels: labels.clone(),
                        value,
                    });
                }
            });
            Value::Vector(out)
        }
        Expr::Rate {
            selector,
            range_ms,
            per_second,
        } => {
            let at = t - selector.offset_ms;
            let mut out = Vec::new();
            select(
                store,
                selector,
                at - range_ms,
                at,
                &mut |labels, samples| {
                    let window = querier::range(samples, at, *range_ms, store.left_closed());
                    if let Some(value) = extrapolated_rate(&window, at, *range_ms, *per_second) {
                        out.push(Sample {
                            labels: labels.without_name(),
                            value,
                        });
                    }
                },
            );
            Value::Vector(out)
        }
        Expr::HistogramQuantile { q, v } => {
            let Value::Scalar(q) = evaluate(q, store, t)? else {
                return Err("histogram_quantile: the quantile must be a scalar".into());
            };
            Value::Vector(histogram_quantile(
                q,
                vector(evaluate(v, store, t)?, "histogram_quantile")?,
            ))
        }
        Expr::LabelReplace {
            expr,
            dst,
            replacement,
            src,
            regex,
        } => {
            let regex = regex.as_ref().map_err(|e| QueryError::Eval(e.clone()))?;
            if !crate::labels::valid_name(dst) {
                return Err(QueryError::Eval(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            let samples = vector(evaluate(expr, store, t)?, "label_replace")?;
            let mut out = Vec::with_capacity(samples.len());
            let mut seen = HashSet::with_capacity(samples.len());
            for s in samples {
                let mut labels = s.labels;
                if let Some(found) = regex.captures(labels.get(src).unwrap_or("")) {
                    let mut value = String::new();
                    found.expand(replacement, &mut value);
                    if value.is_empty() {
                        labels.retain(|n| n != dst.as_str());
                    } else {
                        labels.set(dst, &value);
                    }
                }
                if !seen.insert(labels.clone()) {
                    return Err("vector cannot contain metrics with the same labelset".into());
                }
                out.push(Sample {
                    labels,
                    value: s.value,
                });
            }
            Value::Vector(out)
        }
        Expr::Call { func, args } => call(*func, args, store, t)?,
        Expr::Aggregate { op, grouping, expr } => Value::Vector(aggregate(
            *op,
            grouping,
            vector(evaluate(expr, store, t)?, "aggregation")?,
        )),
        Expr::Neg(e) => match evaluate(e, store, t)? {
            Value::Scalar(v) => Value::Scalar(-v),
            Value::Vector(samples) => Value::Vector(
                samples
                    .into_iter()
                    .map(|s| Sample {
                        labels: s.labels.without_name(),
                        value: -s.value,
                    })
                    .collect(),
            ),
        },
        Expr::Binary {
            op,
            lhs,
            rhs,
            matching,
            return_bool,
        } => binary(
            *op,
            evaluate(lhs, store, t)?,
            evaluate(rhs, store, t)?,
            matching,
            *return_bool,
        )?,
    })
}

/// A scalar argument (`clamp_min`'s bound, `round`'s `to_nearest`).
fn scalar_arg(e: &Expr, store: &dyn Select, t: i64, what: &str) -> Result<f64, QueryError> {
    match evaluate(e, store, t)? {
        Value::Scalar(v) => Ok(v),
        Value::Vector(_) => Err(format!("{what} expects a scalar, got an instant vector").into()),
    }
}

/// [`Expr::Call`]: each element's value mapped, its metric name dropped (Prometheus'
/// `simpleFunc`), or the scalar functions.
fn call(func: Func, args: &[Expr], store: &dyn Select, t: i64) -> Result<Value, QueryError> {
    let each = |f: &dyn Fn(f64) -> f64| -> Result<Value, QueryError> {
        let samples = vector(evaluate(&args[0], store, t)?, "the function")?;
        Ok(Value::Vector(
            samples
                .into_iter()
                .map(|s| Sample {
                    labels: s.labels.without_name(),
                    value: f(s.value),
                })
                .collect(),
        ))
    };
    Ok(match func {
        Func::Math(m) => each(&|v| m.apply(v))?,
        Func::ClampMin => {
            let min = scalar_arg(&args[1], store, t, "clamp_min")?;
            each(&|v| v.max(min))?
        }
        Func::ClampMax => {
            let max = scalar_arg(&args[1], store, t, "clamp_max")?;
            each(&|v| v.min(max))?
        }
        Func::Clamp => {
            let min = scalar_arg(&args[1], store, t, "clamp")?;
            let max = scalar_arg(&args[2], store, t, "clamp")?;
            if max < min {
                Value::Vector(Vec::new())
            } else {
                each(&|v| v.max(min).min(max))?
            }
        }
        Func::Round => {
            let to_nearest = match args.get(1) {
                Some(e) => scalar_arg(e, store, t, "round")?,
                None => 1.0,
            };
            // Prometheus divides by the inverse, for precision.
            let inverse = 1.0 / to_nearest;
            each(&|v| (v * inverse + 0.5).floor() / inverse)?
        }
        Func::Time => Value::Scalar(t as f64 / 1000.0),
        Func::Vector => Value::Vector(vec![Sample {
            labels: Labels::default(),
            value: scalar_arg(&args[0], store, t, "vector")?,
        }]),
        Func::Scalar => match vector(evaluate(&args[0], store, t)?, "scalar")?.as_slice() {
            [one] => Value::Scalar(one.value),
            _ => Value::Scalar(f64::NAN),
        },
    })
}

fn vector(v: Value, what: &str) -> Result<Vec<Sample>, QueryError> {
    match v {
        Value::Vector(s) => Ok(s),
        Value::Scalar(_) => Err(format!("{what} expects an instant vector, got a scalar").into()),
    }
}

/// The series `sel` matches, with their samples in `[min_t, max_t]`.
fn select(store: &dyn Select, sel: &Selector, min_t: i64, max_t: i64, each: &mut querier::Visit) {
    store.select(
        sel.name.as_deref(),
        &|labels| sel.matches(labels),
        min_t,
        max_t,
        each,
    );
}

fn histogram_quantile(q: f64, samples: Vec<Sample>) -> Vec<Sample> {
    let mut groups: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
    for s in samples {
        let Some(le) = s.labels.get("le").and_then(parse_le) else {
            continue;
        };
        let mut key = s.labels.without_name();
        key.retain(|n| n != "le");
        groups.entry(key).or_default().push((le, s.value));
    }
    groups
        .into_iter()
        .map(|(labels, mut buckets)| Sample {
            value: bucket_quantile(q, &mut buckets),
            labels,
        })
        .collect()
}

/// `le` as a float (`+Inf`, `1`, `1.0`, `2e-1` all parse; compare as numbers, never as text).
fn parse_le(le: &str) -> Option<f64> {
    le.trim().parse().ok()
}

fn aggregate(op: AggOp, grouping: &Grouping, samples: Vec<Sample>) -> Vec<Sample> {
    struct Acc {
        sum: f64,
        count: f64,
        min: f64,
        max: f64,
    }
    let mut groups: HashMap<Labels, Acc> = HashMap::new();
    for s in samples {
        let mut key = s.labels;
        match grouping {
            Grouping::By(keep) => key.retain(|n| keep.iter().any(|k| k == n)),
            Grouping::Without(drop) => key.retain(|n| n != NAME && !drop.iter().any(|d| d == n)),
        }
        let v = s.value;
        groups
            .entry(key)
            .and_modify(|a| {
                a.sum += v;
                a.count += 1.0;
                if a.min > v || a.min.is_nan() {
                    a.min = v;
                }
                if a.max < v || a.max.is_nan() {
                    a.max = v;
                }
            })
            .or_insert(Acc {
                sum: v,
                count: 1.0,
                min: v,
                max: v,
            });
    }
    groups
        .into_iter()
        .map(|(labels, a)| Sample {
            labels,
            value: match op {
                AggOp::Sum => a.sum,
                AggOp::Avg => a.sum / a.count,
                AggOp::Min => a.min,
                AggOp::Max => a.max,
                AggOp::Count => a.count,
            },
        })
        .collect()
}

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

fn binary(
    op: BinOp,
    lhs: Value,
    rhs: Value,
    matching: &Matching,
    return_bool: bool,
) -> Result<Value, QueryError> {
    // The scalar is on the left of a vector/scalar operation.
    let swap = matches!(lhs, Value::Scalar(_));
    let drop_name = !op.is_comparison() || return_bool;
    let finish = |value: f64, keep: bool| -> Option<f64> {
        if return_bool {
            Some(if keep { 1.0 } else { 0.0 })
        } else {
            keep.then_some(value)
        }
    };
    Ok(match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = apply(op, l, r);
            Value::Scalar(if op.is_comparison() {
                f64::from(u8::from(keep))
            } else {
                v
            })
        }
        (Value::Vector(_), Value::Scalar(_)) | (Value::Scalar(_), Value::Vector(_))
            if op.is_set() =>
        {
            return Err("set operators (and, or, unless) need vectors on both sides".into());
        }
        (Value::Vector(v), Value::Scalar(scalar)) | (Value::Scalar(scalar), Value::Vector(v)) => {
            // As Prometheus' VectorscalarBinop: `swap` when the scalar is on the left; a
            // comparison keeps the vector element's value either way.
            Value::Vector(
                v.into_iter()
                    .filter_map(|s| {
                        let (l, r) = if swap {
                            (scalar, s.value)
                        } else {
                            (s.value, scalar)
                        };
                        let (mut value, keep) = apply(op, l, r);
                        if op.is_comparison() {
                            value = s.value;
                        }
                        let value = finish(value, keep)?;
                        Some(Sample {
                            labels: if drop_name {
                                s.labels.without_name()
                            } else {
                                s.labels
                            },
                            value,
                        })
                    })
                    .collect(),
            )
        }
        (Value::Vector(l), Value::Vector(r)) if op.is_set() => {
            Value::Vector(set_op(op, l, r, matching))
        }
        (Value::Vector(l), Value::Vector(r)) => {
            Value::Vector(vector_binary(op, l, r, matching, drop_name, &finish)?)
        }
    })
}

/// A vector-vector operation, as Prometheus' `VectorBinop`: the "one" side (the right, or the
/// left with `group_right`) indexed by the matching labels, each sample of the other side
/// joined with its match; a result is one to one unless grouped, and a grouped result takes
/// the "many" side's labels plus the included labels of its match.
fn vector_binary(
    op: BinOp,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    matching: &Matching,
    drop_name: bool,
    finish: &dyn Fn(f64, bool) -> Option<f64>,
) -> Result<Vec<Sample>, QueryError> {
    let right_is_many = matches!(matching.group, Some(Group::Right(_)));
    let (many, ones) = if right_is_many {
        (rhs, lhs)
    } else {
        (lhs, rhs)
    };
    let mut one: HashMap<Labels, Sample> = HashMap::new();
    for s in ones {
        let sig = signature(&s.labels, matching);
        if one.insert(sig.clone(), s).is_some() {
            let side = if right_is_many { "left" } else { "right" };
            return Err(format!("found duplicate series for the match group {sig} on the {side} hand-side of the operation; many-to-many matching not allowed").into());
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for s in many {
        let sig = signature(&s.labels, matching);
        let Some(o) = one.get(&sig) else { continue };
        let (l, r) = if right_is_many {
            (o.value, s.value)
        } else {
            (s.value, o.value)
        };
        let (value, keep) = apply(op, l, r);
        let Some(value) = finish(value, keep) else {
            continue;
        };
        let mut labels = if drop_name {
            s.labels.without_name()
        } else {
            s.labels
        };
        match &matching.group {
            None if matching.on => labels.retain(|n| matching.labels.iter().any(|m| m == n)),
            None => labels.retain(|n| !matching.labels.iter().any(|m| m == n)),
            Some(Group::Left(include) | Group::Right(include)) => {
                for name in include {
                    match o.labels.get(name).filter(|v| !v.is_empty()) {
                        Some(v) => labels.set(name, v),
                        None => labels.retain(|n| n != name.as_str()),
                    }
                }
            }
        }
        let unique = match matching.group {
            None => seen.insert(sig.clone()),
            Some(_) => seen.insert(labels.clone()),
        };
        if !unique {
            return Err(match matching.group {
                None => format!("multiple matches for labels {sig}: many-to-one matching must be explicit (group_left/group_right)"),
                Some(_) => format!("multiple matches for labels {labels}: grouping labels must ensure unique matches"),
            }
            .into());
        }
        out.push(Sample { labels, value });
    }
    Ok(out)
}

/// The labels two samples must share to match.
fn signature(labels: &Labels, matching: &Matching) -> Labels {
    let mut sig = labels.clone();
    if matching.on {
        sig.retain(|n| matching.labels.iter().any(|m| m == n));
    } else {
        sig.retain(|n| n != NAME && !matching.labels.iter().any(|m| m == n));
    }
    sig
}

fn set_op(op: BinOp, lhs: Vec<Sample>, rhs: Vec<Sample>, matching: &Matching) -> Vec<Sample> {
    match op {
        BinOp::And => {
            let right: HashSet<Labels> =
                rhs.iter().map(|s| signature(&s.labels, matching)).collect();
            lhs.into_iter()
                .filter(|s| right.contains(&signature(&s.labels, matching)))
                .collect()
        }
        BinOp::Unless => {
            let right: HashSet<Labels> =
                rhs.iter().map(|s| signature(&s.labels, matching)).collect();
            lhs.into_iter()
                .filter(|s| !right.contains(&signature(&s.labels, matching)))
                .collect()
        }
        _ => {
            let left: HashSet<Labels> =
                lhs.iter().map(|s| signature(&s.labels, matching)).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|s| !left.contains(&signature(&s.labels, matching))),
            );
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::compile;
    use super::*;
    use crate::store::Store;

    const S: i64 = 1000;

    fn store() -> Store {
        let mut st = Store::new(3600 * S);
        let series = [
            (
                vec![("__name__", "req_count"), ("job", "a"), ("code", "200")],
                10.0,
            ),
            (
                vec![("__name__", "req_count"), ("job", "a"), ("code", "500")],
                2.0,
            ),
            (
                vec![("__name__", "req_count"), ("job", "b"), ("code", "200")],
                5.0,
            ),
            (
                vec![("__name__", "up"), ("job", "a"), ("instance", "x")],
                1.0,
            ),
            (
                vec![("__name__", "up"), ("job", "b"), ("instance", "y")],
                0.0,
            ),
        ];
        for (labels, per_step) in series {
            let l = Labels::from_pairs(&labels);
            let gauge = l.name() == Some("up");
            for i in 0..=8 {
                st.append(
                    &l,
                    i * 15 * S,
                    if gauge { per_step } else { per_step * i as f64 },
                );
            }
        }
        st
    }

    fn run(expr: &str) -> Vec<(String, f64)> {
        match eval(&compile(expr).unwrap(), &store(), 120 * S).unwrap() {
            Value::Vector(v) => {
                let mut out: Vec<(String, f64)> = v
                    .into_iter()
                    .map(|s| (s.labels.to_string(), s.value))
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                out
            }
            Value::Scalar(s) => vec![("scalar".into(), s)],
        }
    }

    #[test]
    fn selectors_with_all_matcher_kinds() {
        assert_eq!(
            run("up == 0"),
            [("up{instance=\"y\", job=\"b\"}".to_owned(), 0.0)]
        );
        assert_eq!(run(r#"req_count{code=~"5.."}"#).len(), 1);
        assert_eq!(
            run(r#"req_count{code!~"5..", job!="b"}"#),
            [("req_count{code=\"200\", job=\"a\"}".to_owned(), 80.0)]
        );
        assert_eq!(
            run(r#"req_count{missing=""}"#).len(),
            3,
            "an absent label matches the empty string"
        );
    }

    #[test]
    fn rate_sum_by_and_ratio() {
        // 4 samples in (60s, 120s] at 15 s spacing; increase 3 steps * per_step, extrapolated by 15/45.
        let r = run(r#"sum by (job) (increase(req_count[1m]))"#);
        assert_eq!(
            r,
            [
                ("{job=\"a\"}".to_owned(), 48.0),
                ("{job=\"b\"}".to_owned(), 20.0)
            ]
        );
        let ratio = run(
            r#"sum by (job) (rate(req_count{code=~"5.."}[1m])) / sum by (job) (rate(req_count[1m]))"#,
        );
        assert_eq!(ratio.len(), 1);
        assert!((ratio[0].1 - 2.0 / 12.0).abs() < 1e-12);
    }

    #[test]
    fn set_operators_with_on_and_ignoring() {
        let and = run(r#"sum by (job) (req_count) > 50 and on (job) up == 1"#);
        assert_eq!(and, [("{job=\"a\"}".to_owned(), 96.0)]);
        let unless = run(r#"up unless on (job) req_count{code="500"}"#);
        assert_eq!(unless, [("up{instance=\"y\", job=\"b\"}".to_owned(), 0.0)]);
        let or = run(r#"up{job="a"} or ignoring (instance) up"#);
        assert_eq!(or.len(), 2);
    }

    #[test]
    fn aggregations() {
        assert_eq!(run("count(req_count)"), [("{}".to_owned(), 3.0)]);
        assert_eq!(
            run("max without (code) (req_count)"),
            [
                ("{job=\"a\"}".to_owned(), 80.0),
                ("{job=\"b\"}".to_owned(), 40.0)
            ]
        );
        assert_eq!(run("min by (job) (req_count)")[0].1, 16.0);
        assert_eq!(run("avg(up)"), [("{}".to_owned(), 0.5)]);
    }

    #[test]
    fn arithmetic_and_bool() {
        assert_eq!(
            run("up * 2 + 1")[0].0,
            "{instance=\"x\", job=\"a\"}",
            "arithmetic drops the name"
        );
        assert_eq!(
            run("up > bool 0").iter().map(|s| s.1).collect::<Vec<_>>(),
            [1.0, 0.0]
        );
        assert_eq!(run("2 > bool 1"), [("scalar".to_owned(), 1.0)]);
        assert_eq!(run("1 < up").len(), 0);
        assert_eq!(
            run("0 < up"),
            [("up{instance=\"x\", job=\"a\"}".to_owned(), 1.0)]
        );
    }

    #[test]
    fn one_to_one_matching_errors_on_duplicates() {
        let err = eval(
            &compile("req_count / on (job) up").unwrap(),
            &store(),
            120 * S,
        )
        .unwrap_err();
        assert!(
            matches!(&err, QueryError::Eval(m) if m.contains("multiple matches")),
            "{err}"
        );
    }

    #[test]
    fn histogram_quantile_groups_without_le() {
        let mut st = Store::new(3600 * S);
        for (le, c) in [
            ("0.1", 50.0),
            ("0.2", 70.0),
            ("1.0", 110.0),
            ("+Inf", 120.0),
        ] {
            let l = Labels::from_pairs(&[("__name__", "h_bucket"), ("le", le), ("job", "a")]);
            st.append(&l, 0, c);
        }
        let v = eval(
            &compile("histogram_quantile(0.5, h_bucket)").unwrap(),
            &st,
            0,
        )
        .unwrap();
        let Value::Vector(v) = v else { panic!() };
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].labels.to_string(), "{job=\"a\"}");
        assert!((v[0].value - 0.15).abs() < 1e-12);
    }
}
