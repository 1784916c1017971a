//! Evaluation of compiled expressions over the store: one engine for the rules (one instant)
//! and the query API (a range of steps), as Prometheus' `promql/engine.go` evaluates them.
//!
//! An expression is evaluated over all its steps at once, a series at a time: a selector reads
//! each series' samples once, over the whole range, and computes its value at every step; the
//! functions of one series map it on; an aggregation, a histogram quantile or the "many" side
//! of a binary operation consumes the series as they come. So a week-long query of a dashboard
//! reads every sample once and holds one series' samples plus its results, never every series'
//! samples at once. What must be whole (the "one" side of a binary operation, `topk`'s input)
//! is gathered, and counted against the sample limit.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Instant;

use super::aggregate;
use super::binary;
use super::error::QueryError;
use super::functions::{self, bucket_quantile, bucket_quantile_with};
pub use super::series::Series;
use super::series::{group, same_labelset, Evaluate, Sink, Unique};
use super::{At, Date, Expr, Func, RangeArg, RangeFunc, Selector};
use crate::labels::Labels;
use crate::store::querier::{self, Select};

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

/// The result of an expression at one instant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<Sample>),
}

/// The evaluation times of a range query: `start`, `start + step`, ... up to `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Steps {
    /// One instant.
    pub fn instant(t: i64) -> Steps {
        Steps {
            start: t,
            end: t,
            step: 1,
        }
    }

    pub fn len(&self) -> usize {
        ((self.end - self.start) / self.step.max(1) + 1).max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn time(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
}

/// The result of an expression over a range of steps.
#[derive(Debug, Clone, PartialEq)]
pub enum RangeValue {
    Scalar(Vec<f64>),
    /// In label order, each series with at least one point.
    Matrix(Vec<Series>),
}

/// What a query may cost (Prometheus' `--query.max-samples` and `--query.timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The samples a query may hold at once: the results it has gathered plus, at one step,
    /// the samples its selectors read.
    pub max_samples: usize,
    pub deadline: Option<Instant>,
}

impl Limits {
    pub const NONE: Limits = Limits {
        max_samples: usize::MAX,
        deadline: None,
    };
}

/// Evaluates `expr` at `t` (milliseconds) over what `store` holds (the head and the blocks).
pub fn eval(expr: &Expr, store: &dyn Select, t: i64) -> Result<Value, QueryError> {
    eval_instant(expr, store, t, Limits::NONE)
}

/// [`eval`] within `limits`; a vector keeps the order the expression gives it (`sort`).
pub fn eval_instant(
    expr: &Expr,
    store: &dyn Select,
    t: i64,
    limits: Limits,
) -> Result<Value, QueryError> {
    let steps = Steps::instant(t);
    let budget = Budget::new(limits, 1);
    let ctx = Ctx::query(store, steps, &budget);
    Ok(if expr.is_scalar() {
        Value::Scalar(ctx.scalar(expr)?[0])
    } else {
        Value::Vector(
            ctx.gather(expr)?
                .into_iter()
                .filter_map(|s| {
                    Some(Sample {
                        value: s.points[0]?,
                        labels: s.labels,
                    })
                })
                .collect(),
        )
    })
}

/// Evaluates `expr` at every step of `steps`, within `limits`.
pub fn eval_range(
    expr: &Expr,
    store: &dyn Select,
    steps: Steps,
    limits: Limits,
) -> Result<RangeValue, QueryError> {
    let budget = Budget::new(limits, steps.len());
    let ctx = Ctx::query(store, steps, &budget);
    if expr.is_scalar() {
        return Ok(RangeValue::Scalar(ctx.scalar(expr)?));
    }
    let mut out = merge(ctx.gather(expr)?)?;
    out.retain(|s| s.points.iter().any(Option::is_some));
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(RangeValue::Matrix(out))
}

/// Series with the same labels as one, as a range query's result holds them: an error where
/// two have a point at the same step.
fn merge(series: Vec<Series>) -> Result<Vec<Series>, QueryError> {
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(series.len());
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series {
        match index.get(&s.labels) {
            Some(&i) => {
                let into = &mut out[i].points;
                for (slot, p) in into.iter_mut().zip(s.points) {
                    if p.is_some() {
                        if slot.is_some() {
                            return Err(same_labelset());
                        }
                        *slot = p;
                    }
                }
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// The cost of one query so far, against its limits.
struct Budget {
    limits: Limits,
    /// Points of gathered results.
    held: Cell<usize>,
    /// Samples read at each step of the query.
    per_step: RefCell<Vec<usize>>,
}

impl Budget {
    fn new(limits: Limits, steps: usize) -> Budget {
        Budget {
            limits,
            held: Cell::new(0),
            per_step: RefCell::new(vec![0; steps]),
        }
    }

    fn hold(&self, points: usize) -> Result<(), QueryError> {
        self.held.set(self.held.get() + points);
        if self.held.get() > self.limits.max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }

    /// `counts[i]` samples read at step `i`, for each step of the query's own.
    fn read_steps(&self, counts: &[u32]) -> Result<(), QueryError> {
        let mut per_step = self.per_step.borrow_mut();
        let held = self.held.get();
        for (slot, &n) in per_step.iter_mut().zip(counts) {
            *slot += n as usize;
            if *slot + held > self.limits.max_samples {
                return Err(QueryError::TooManySamples);
            }
        }
        Ok(())
    }

    fn check_time(&self) -> Result<(), QueryError> {
        match self.limits.deadline {
            Some(d) if Instant::now() > d => Err(QueryError::Timeout("expression evaluation")),
            _ => Ok(()),
        }
    }
}

/// What [`Ctx::select`] calls with each series' labels and samples.
type Each<'e> = dyn FnMut(&Labels, &[(i64, f64)]) -> Result<(), QueryError> + 'e;

/// One evaluation: the store, the steps (a subquery's own), the query's start and end (for
/// `@ start()` and `@ end()`), and the budget.
struct Ctx<'a> {
    store: &'a dyn Select,
    steps: Steps,
    query: (i64, i64),
    budget: &'a Budget,
    /// A subquery's evaluation.
    inner: bool,
}

impl Evaluate for Ctx<'_> {
    fn steps(&self) -> usize {
        self.steps.len()
    }

    /// A vector expression's series, gathered (and counted against the budget).
    fn gather(&self, e: &Expr) -> Result<Vec<Series>, QueryError> {
        let mut out = Vec::new();
        self.stream(e, &mut |s| {
            self.budget.hold(s.present())?;
            out.push(s);
            Ok(())
        })?;
        Ok(out)
    }

    fn hold(&self, slots: usize) -> Result<(), QueryError> {
        self.budget.hold(slots)
    }

    /// A scalar expression's value at each step.
    fn scalar(&self, e: &Expr) -> Result<Vec<f64>, QueryError> {
        let n = self.steps.len();
        Ok(match e {
            Expr::Number(v) => vec![*v; n],
            Expr::Neg(e) => self.scalar(e)?.into_iter().map(|v| -v).collect(),
            Expr::Call {
                func: Func::Time, ..
            } => (0..n).map(|i| self.steps.time(i) as f64 / 1000.0).collect(),
            Expr::Call { func: Func::Pi, .. } => vec![std::f64::consts::PI; n],
            Expr::Call {
                func: Func::Scalar,
                args,
            } => {
                let mut count = vec![0u32; n];
                let mut value = vec![f64::NAN; n];
                self.stream(&args[0], &mut |s| {
                    for (i, p) in s.points.iter().enumerate() {
                        if let Some(v) = p {
                            count[i] += 1;
                            value[i] = *v;
                        }
                    }
                    Ok(())
                })?;
                value
                    .into_iter()
                    .zip(count)
                    .map(|(v, c)| if c == 1 { v } else { f64::NAN })
                    .collect()
            }
            Expr::Binary { op, lhs, rhs, .. } => {
                let (l, r) = (self.scalar(lhs)?, self.scalar(rhs)?);
                l.into_iter()
                    .zip(r)
                    .map(|(l, r)| binary::scalars(*op, l, r))
                    .collect()
            }
            _ => return Err("expected a scalar expression".into()),
        })
    }

    /// A vector expression's series, each to `sink` as it is computed.
    fn stream(&self, e: &Expr, sink: &mut Sink) -> Result<(), QueryError> {
        match e {
            Expr::Selector(sel) => self.selector(sel, false, sink),
            Expr::Range { func, arg, param } => {
                let param = match param {
                    Some(p) => Some(self.scalar(p)?),
                    None => None,
                };
                self.range_function(*func, arg, param.as_deref(), sink)
            }
            Expr::Neg(e) => self.stream(e, &mut |mut s| {
                s.labels = s.labels.without_name();
                for v in s.points.iter_mut().flatten() {
                    *v = -*v;
                }
                sink(s)
            }),
            Expr::Call { func, args } => self.call(*func, args, sink),
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
                let mut unique = Unique::default();
                self.stream(expr, &mut |mut s| {
                    if let Some(found) = regex.captures(s.labels.get(src).unwrap_or("")) {
                        let mut value = String::new();
                        found.expand(replacement, &mut value);
                        set_or_remove(&mut s.labels, dst, &value);
                    }
                    unique.claim(&s)?;
                    sink(s)
                })
            }
            Expr::LabelJoin {
                expr,
                dst,
                separator,
                srcs,
            } => {
                if !crate::labels::valid_name(dst) {
                    return Err(QueryError::Eval(format!(
                        "invalid destination label name in label_join(): {dst}"
                    )));
                }
                let mut unique = Unique::default();
                self.stream(expr, &mut |mut s| {
                    let joined: Vec<&str> = srcs
                        .iter()
                        .map(|src| s.labels.get(src).unwrap_or(""))
                        .collect();
                    let value = joined.join(separator);
                    set_or_remove(&mut s.labels, dst, &value);
                    unique.claim(&s)?;
                    sink(s)
                })
            }
            Expr::HistogramQuantile { q, v } => {
                let q = self.scalar(q)?;
                for s in self.histogram_quantile(&q, v)? {
                    sink(s)?;
                }
                Ok(())
            }
            Expr::Aggregate {
                op,
                grouping,
                expr,
                param,
            } => {
                for s in aggregate::aggregate(self, *op, grouping, expr, param.as_deref())? {
                    sink(s)?;
                }
                Ok(())
            }
            Expr::Binary {
                op,
                lhs,
                rhs,
                matching,
                return_bool,
            } => binary::stream(self, *op, lhs, rhs, matching, *return_bool, sink),
            Expr::Absent { expr, labels } => {
                let mut any = vec![false; self.steps.len()];
                self.stream(expr, &mut |s| {
                    for (a, p) in any.iter_mut().zip(&s.points) {
                        *a |= p.is_some();
                    }
                    Ok(())
                })?;
                sink(Series {
                    labels: labels.clone(),
                    points: any.into_iter().map(|a| (!a).then_some(1.0)).collect(),
                })
            }
            Expr::Sort { expr, descending } => {
                let mut all = self.gather(expr)?;
                // Only an instant query has an order; sorted by the first step's value.
                all.sort_by(|a, b| {
                    let (x, y) = (
                        a.points[0].unwrap_or(f64::NAN),
                        b.points[0].unwrap_or(f64::NAN),
                    );
                    if *descending {
                        y.total_cmp(&x)
                    } else {
                        x.total_cmp(&y)
                    }
                });
                for s in all {
                    sink(s)?;
                }
                Ok(())
            }
            Expr::Number(_) | Expr::String(_) => {
                Err("expected an instant vector, got a scalar or string".into())
            }
            Expr::Remote => {
                Err("this expression is only evaluated by a remote backend (query.url)".into())
            }
        }
    }
}

impl<'a> Ctx<'a> {
    /// The evaluation of a whole query over `steps`.
    fn query(store: &'a dyn Select, steps: Steps, budget: &'a Budget) -> Ctx<'a> {
        Ctx {
            store,
            steps,
            query: (steps.start, steps.end),
            budget,
            inner: false,
        }
    }

    /// Whether these are the query's own steps (a subquery's are not counted per step).
    fn counts_steps(&self) -> bool {
        !self.inner
    }

    /// The time a selector with `at` and `offset_ms` reads for step `i`.
    fn read_time(&self, at: Option<At>, offset_ms: i64, i: usize) -> i64 {
        let t = match at {
            Some(At::Time(t)) => t,
            Some(At::Start) => self.query.0,
            Some(At::End) => self.query.1,
            None => self.steps.time(i),
        };
        t - offset_ms
    }

    /// The series `sel` selects with samples in `[min_t, max_t]`, to `each` one at a time.
    fn select(
        &self,
        sel: &Selector,
        (min_t, max_t): (i64, i64),
        each: &mut Each,
    ) -> Result<(), QueryError> {
        let mut failed = None;
        self.store.select(
            sel.name.as_deref(),
            &|labels| sel.matches(labels),
            min_t,
            max_t,
            &mut |labels, samples| {
                if failed.is_none() {
                    if let Err(e) = self
                        .budget
                        .check_time()
                        .and_then(|()| each(labels, samples))
                    {
                        failed = Some(e);
                    }
                }
            },
        );
        failed.map_or(Ok(()), Err)
    }

    /// An instant selector at every step (its samples' times instead of values for
    /// `timestamp()`).
    fn selector(
        &self,
        sel: &Selector,
        timestamps: bool,
        sink: &mut Sink,
    ) -> Result<(), QueryError> {
        let n = self.steps.len();
        let times: Vec<i64> = (0..n)
            .map(|i| self.read_time(sel.at, sel.offset_ms, i))
            .collect();
        let (Some(&lo), Some(&hi)) = (times.iter().min(), times.iter().max()) else {
            return Ok(());
        };
        let left_closed = self.store.left_closed();
        let count = self.counts_steps();
        let from = querier::lookback_window(lo).0;
        let mut lens = Vec::with_capacity(n);
        self.select(sel, (from, hi), &mut |labels, samples| {
            let mut points = Vec::with_capacity(n);
            let mut cursor = querier::Instants::new(samples, left_closed);
            lens.clear();
            for &t in &times {
                let p = cursor
                    .at(t)
                    .map(|(st, v)| if timestamps { st as f64 / 1000.0 } else { v });
                lens.push(u32::from(p.is_some()));
                points.push(p);
            }
            if !lens.contains(&1) {
                return Ok(());
            }
            if count {
                self.budget.read_steps(&lens)?;
            }
            sink(Series {
                labels: labels.clone(),
                points,
            })
        })
    }

    /// A range function of a range selector or a subquery, at every step.
    fn range_function(
        &self,
        func: RangeFunc,
        arg: &RangeArg,
        param: Option<&[f64]>,
        sink: &mut Sink,
    ) -> Result<(), QueryError> {
        let n = self.steps.len();
        let (at, offset_ms, range_ms) = match arg {
            RangeArg::Selector { selector, range_ms } => {
                (selector.at, selector.offset_ms, *range_ms)
            }
            RangeArg::Subquery {
                at,
                offset_ms,
                range_ms,
                ..
            } => (*at, *offset_ms, *range_ms),
        };
        let times: Vec<i64> = (0..n).map(|i| self.read_time(at, offset_ms, i)).collect();
        let (Some(&lo), Some(&hi)) = (times.iter().min(), times.iter().max()) else {
            return Ok(());
        };
        let left_closed = self.store.left_closed();
        let count = self.counts_steps();
        let mut absent = vec![true; n];
        // Reused from series to series: the samples without stale markers, each window's count.
        let (mut read, mut lens) = (Vec::new(), Vec::with_capacity(n));
        let mut one = |labels: &Labels, samples: &[(i64, f64)]| -> Result<(), QueryError> {
            querier::without_stale_into(samples, &mut read);
            let points = functions::over_windows(
                func,
                &read,
                &times,
                range_ms,
                param,
                left_closed,
                &mut lens,
            );
            if count {
                self.budget.read_steps(&lens)?;
            }
            for (a, &len) in absent.iter_mut().zip(&lens) {
                *a &= len == 0;
            }
            if points.iter().any(Option::is_some) && func != RangeFunc::AbsentOverTime {
                let labels = if func.keeps_name() {
                    labels.clone()
                } else {
                    labels.without_name()
                };
                sink(Series { labels, points })?;
            }
            Ok(())
        };
        let absent_labels = match arg {
            RangeArg::Selector { selector, .. } => {
                self.select(selector, (lo - range_ms, hi), &mut one)?;
                super::absent_labels(selector)
            }
            RangeArg::Subquery { expr, step_ms, .. } => {
                // As Prometheus: the inner steps are the multiples of the step from the first
                // after the earliest window's start, to the last window's end.
                let step = step_ms.unwrap_or(DEFAULT_SUBQUERY_STEP_MS).max(1);
                let from = lo - range_ms;
                let mut start = step * from.div_euclid(step);
                if start < from {
                    start += step;
                }
                let inner = Ctx {
                    store: self.store,
                    steps: Steps {
                        start,
                        end: hi.max(start),
                        step,
                    },
                    query: self.query,
                    budget: self.budget,
                    inner: true,
                };
                let inner_steps = inner.steps;
                inner.stream(expr, &mut |s| {
                    let samples: Vec<(i64, f64)> = s
                        .points
                        .iter()
                        .enumerate()
                        .filter_map(|(j, p)| Some((inner_steps.time(j), (*p)?)))
                        .collect();
                    one(&s.labels, &samples)
                })?;
                Labels::default()
            }
        };
        if func == RangeFunc::AbsentOverTime {
            sink(Series {
                labels: absent_labels,
                points: absent.into_iter().map(|a| a.then_some(1.0)).collect(),
            })?;
        }
        Ok(())
    }

    /// [`Expr::Call`]: the functions of each element (their metric name dropped, as
    /// Prometheus' `simpleFunc`), `vector()` and the date functions.
    fn call(&self, func: Func, args: &[Expr], sink: &mut Sink) -> Result<(), QueryError> {
        let n = self.steps.len();
        let map = |f: &dyn Fn(usize, f64) -> f64, sink: &mut Sink| {
            self.stream(&args[0], &mut |mut s| {
                s.labels = s.labels.without_name();
                for (i, p) in s.points.iter_mut().enumerate() {
                    if let Some(v) = p {
                        *v = f(i, *v);
                    }
                }
                sink(s)
            })
        };
        match func {
            Func::Math(m) => map(&|_, v| m.apply(v), sink),
            Func::ClampMin => {
                let min = self.scalar(&args[1])?;
                map(&|i, v| v.max(min[i]), sink)
            }
            Func::ClampMax => {
                let max = self.scalar(&args[1])?;
                map(&|i, v| v.min(max[i]), sink)
            }
            Func::Clamp => {
                let min = self.scalar(&args[1])?;
                let max = self.scalar(&args[2])?;
                // Where max < min, nothing.
                self.stream(&args[0], &mut |mut s| {
                    s.labels = s.labels.without_name();
                    for (i, p) in s.points.iter_mut().enumerate() {
                        *p = match *p {
                            Some(_) if max[i] < min[i] => None,
                            Some(v) => Some(v.max(min[i]).min(max[i])),
                            None => None,
                        };
                    }
                    sink(s)
                })
            }
            Func::Round => {
                let to_nearest = match args.get(1) {
                    Some(e) => self.scalar(e)?,
                    None => vec![1.0; n],
                };
                // Prometheus divides by the inverse, for precision.
                map(
                    &|i, v| {
                        let inverse = 1.0 / to_nearest[i];
                        (v * inverse + 0.5).floor() / inverse
                    },
                    sink,
                )
            }
            Func::Vector => {
                let values = self.scalar(&args[0])?;
                sink(Series {
                    labels: Labels::default(),
                    points: values.into_iter().map(Some).collect(),
                })
            }
            Func::Timestamp => match &args[0] {
                // A selector's samples' own times; anything else's, the evaluation time.
                Expr::Selector(sel) => self.selector(sel, true, &mut |mut s| {
                    s.labels = s.labels.without_name();
                    sink(s)
                }),
                _ => map(&|i, _| self.steps.time(i) as f64 / 1000.0, sink),
            },
            Func::Date(d) => match args.first() {
                Some(_) => map(&|_, v| date(d, v), sink),
                None => sink(Series {
                    labels: Labels::default(),
                    points: (0..n)
                        .map(|i| Some(date(d, self.steps.time(i) as f64 / 1000.0)))
                        .collect(),
                }),
            },
            Func::Time | Func::Pi | Func::Scalar => {
                Err("expected an instant vector, got a scalar".into())
            }
        }
    }

    /// `histogram_quantile(q, v)` at each step: the buckets grouped by their labels but `le`
    /// (and the name).
    fn histogram_quantile(&self, q: &[f64], v: &Expr) -> Result<Vec<Series>, QueryError> {
        let mut groups: HashMap<Labels, Vec<Vec<(f64, f64)>>> = HashMap::new();
        self.stream(v, &mut |s| {
            let Some(le) = s
                .labels
                .get("le")
                .and_then(|le| le.trim().parse::<f64>().ok())
            else {
                return Ok(());
            };
            let mut key = s.labels.without_name();
            key.retain(|n| n != "le");
            let buckets = group(self, &mut groups, key, Vec::new())?;
            for (i, p) in s.points.iter().enumerate() {
                if let Some(c) = p {
                    buckets[i].push((le, *c));
                }
            }
            Ok(())
        })?;
        // Prometheus 2.x corrects only decreases.
        let v2 = self.store.left_closed();
        let mut out = Vec::with_capacity(groups.len());
        for (labels, steps) in groups {
            let points = steps
                .into_iter()
                .enumerate()
                .map(|(i, mut buckets)| {
                    (!buckets.is_empty()).then(|| {
                        if v2 {
                            bucket_quantile_with(q[i], &mut buckets, 0.0)
                        } else {
                            bucket_quantile(q[i], &mut buckets)
                        }
                    })
                })
                .collect();
            let s = Series { labels, points };
            self.budget.hold(s.present())?;
            out.push(s);
        }
        Ok(out)
    }
}

/// A subquery's step when it names none: Prometheus' default evaluation interval.
const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Sets `name` to `value`, or removes it when `value` is empty (a label is never empty).
fn set_or_remove(labels: &mut Labels, name: &str, value: &str) {
    if value.is_empty() {
        labels.retain(|n| n != name);
    } else {
        labels.set(name, value);
    }
}

/// A date function of a time in seconds, in UTC (as Go's `time.Unix(int64(v), 0).UTC()`).
fn date(d: Date, v: f64) -> f64 {
    if !v.is_finite() {
        return v;
    }
    let secs = v as i64;
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil(days);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let lengths = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    (match d {
        Date::DayOfMonth => day,
        Date::DayOfWeek => (days + 4).rem_euclid(7),
        Date::DayOfYear => lengths[..(month - 1) as usize].iter().sum::<i64>() + day,
        Date::DaysInMonth => lengths[(month - 1) as usize],
        Date::Hour => of_day / 3600,
        Date::Minute => of_day % 3600 / 60,
        Date::Month => month,
        Date::Year => year,
    }) as f64
}

/// Year, month (1-12) and day (1-31) of a day since 1970-01-01 (the proleptic Gregorian
/// calendar; Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
