//! PromQL, as Prometheus evaluates it, for the rules and the query API (one engine).
//!
//! Expressions are parsed by the `promql-parser` crate (within the [`nesting`] limits), then
//! compiled into [`Expr`] and evaluated by [`eval`] over the store's
//! [`Select`](crate::store::querier::Select) seam: every aggregation, vector matching with `on`/`ignoring` and `group_left`/`group_right`, the set
//! operators, the range functions (`rate`, `irate`, `increase`, `delta`, `idelta`, `deriv`,
//! `predict_linear`, `resets`, `changes`, the `*_over_time` family), `histogram_quantile`,
//! label, math, date and time functions, `absent*`, `sort*`, subqueries, `offset` and `@`.
//! What is not evaluated (native-histogram functions, `sort_by_label`, `info`,
//! `double_exponential_smoothing`, `limitk`, ...) is refused by name when it is compiled,
//! never answered with a different number.

mod aggregate;
mod binary;
mod error;
mod eval;
pub mod functions;
pub mod nesting;
mod querier;
pub mod remote;
mod series;

use std::fmt;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, LabelModifier, Offset, VectorMatchCardinality};

use crate::labels::Labels;

pub use aggregate::format_value;
pub use error::QueryError;
pub use eval::{eval, eval_instant, eval_range, Limits, RangeValue, Sample, Series, Steps, Value};
pub use querier::{Local, Querier, Query, QueryFuture};

/// One exemplar of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// The series it is attached to (a histogram bucket, with `le`).
    pub series: Labels,
    pub trace_id: String,
    /// The observed value (a request's duration).
    pub value: f64,
    /// When it was observed (milliseconds); a scrape's time when the page gave none.
    pub timestamp_ms: i64,
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Number(f64),
    /// A string literal: only as an argument (`count_values`' label).
    String(String),
    /// An instant vector selector.
    Selector(Selector),
    /// A function of a range vector: `rate(x[5m])`, `max_over_time(x[1h:1m])`,
    /// `quantile_over_time(0.9, x[5m])` (`param`: the quantile, or `predict_linear`'s seconds).
    Range {
        func: RangeFunc,
        arg: Box<RangeArg>,
        param: Option<Box<Expr>>,
    },
    /// `histogram_quantile(q, v)`.
    HistogramQuantile {
        q: Box<Expr>,
        v: Box<Expr>,
    },
    /// An aggregation; `param` is `topk`'s k, `quantile`'s q or `count_values`' label.
    Aggregate {
        op: AggOp,
        grouping: Grouping,
        expr: Box<Expr>,
        param: Option<Box<Expr>>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        matching: Matching,
        return_bool: bool,
    },
    Neg(Box<Expr>),
    /// Valid PromQL the local engine does not evaluate: only a remote backend (`query.url`)
    /// evaluates it.
    Remote,
    /// `label_replace(v, dst, replacement, src, regex)`: `dst` set to `replacement` (with `$1`,
    /// `${name}`) where `src` matches the anchored `regex`; removed when that comes to nothing.
    LabelReplace {
        expr: Box<Expr>,
        dst: String,
        replacement: String,
        src: String,
        /// Anchored; an expression that does not compile fails the evaluation.
        regex: Result<regex::Regex, String>,
    },
    /// `label_join(v, dst, separator, src...)`.
    LabelJoin {
        expr: Box<Expr>,
        dst: String,
        separator: String,
        srcs: Vec<String>,
    },
    /// A function over numbers (see [`Func`]).
    Call {
        func: Func,
        args: Vec<Expr>,
    },
    /// `absent(v)`: one element (the selector's equality labels) where `v` has none.
    Absent {
        expr: Box<Expr>,
        labels: Labels,
    },
    /// `sort(v)`, `sort_desc(v)`: an instant query's order (a range query's has none).
    Sort {
        expr: Box<Expr>,
        descending: bool,
    },
}

/// What a range function reads: a range selector, or a subquery evaluated at its own steps.
#[derive(Debug, Clone)]
pub enum RangeArg {
    Selector {
        selector: Selector,
        range_ms: i64,
    },
    Subquery {
        expr: Expr,
        range_ms: i64,
        /// `None`: the query's step (an instant query's: the default evaluation interval, 1m).
        step_ms: Option<i64>,
        offset_ms: i64,
        at: Option<At>,
    },
}

impl RangeArg {
    pub fn range_ms(&self) -> i64 {
        match self {
            RangeArg::Selector { range_ms, .. } | RangeArg::Subquery { range_ms, .. } => *range_ms,
        }
    }
}

/// The functions of a range vector, as Prometheus' `promql/functions.go` computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFunc {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Deriv,
    PredictLinear,
    Resets,
    Changes,
    AvgOverTime,
    SumOverTime,
    MinOverTime,
    MaxOverTime,
    CountOverTime,
    QuantileOverTime,
    StddevOverTime,
    StdvarOverTime,
    LastOverTime,
    PresentOverTime,
    AbsentOverTime,
}

impl RangeFunc {
    fn named(name: &str) -> Option<RangeFunc> {
        Some(match name {
            "rate" => RangeFunc::Rate,
            "increase" => RangeFunc::Increase,
            "delta" => RangeFunc::Delta,
            "irate" => RangeFunc::Irate,
            "idelta" => RangeFunc::Idelta,
            "deriv" => RangeFunc::Deriv,
            "predict_linear" => RangeFunc::PredictLinear,
            "resets" => RangeFunc::Resets,
            "changes" => RangeFunc::Changes,
            "avg_over_time" => RangeFunc::AvgOverTime,
            "sum_over_time" => RangeFunc::SumOverTime,
            "min_over_time" => RangeFunc::MinOverTime,
            "max_over_time" => RangeFunc::MaxOverTime,
            "count_over_time" => RangeFunc::CountOverTime,
            "quantile_over_time" => RangeFunc::QuantileOverTime,
            "stddev_over_time" => RangeFunc::StddevOverTime,
            "stdvar_over_time" => RangeFunc::StdvarOverTime,
            "last_over_time" => RangeFunc::LastOverTime,
            "present_over_time" => RangeFunc::PresentOverTime,
            "absent_over_time" => RangeFunc::AbsentOverTime,
            _ => return None,
        })
    }

    /// Whether the result keeps the series' metric name (only `last_over_time` does).
    pub fn keeps_name(self) -> bool {
        self == RangeFunc::LastOverTime
    }
}

/// The `@` modifier: a fixed evaluation time, or the query's start or end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Time(i64),
    Start,
    End,
}

/// Label matchers, offset and `@`.
#[derive(Debug, Clone)]
pub struct Selector {
    pub name: Option<String>,
    pub matchers: Vec<Matcher>,
    pub offset_ms: i64,
    pub at: Option<At>,
}

impl Selector {
    /// Whether a series with `labels` is one this selector selects (its name included).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
}

#[derive(Debug, Clone)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }
    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
}

/// The functions of [`Expr::Call`], as Prometheus' `promql/functions.go` computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `abs`, `ceil`, `floor`, `exp`, `sqrt`, `ln`, `log2`, `log10`: each element, its
    /// metric name dropped.
    Math(Math),
    /// `clamp(v, min, max)`, `clamp_min(v, min)`, `clamp_max(v, max)`.
    Clamp,
    ClampMin,
    ClampMax,
    /// `round(v, to_nearest = 1)`: half up.
    Round,
    /// `time()`: the evaluation time in seconds.
    Time,
    /// `vector(s)`: one element without labels.
    Vector,
    /// `scalar(v)`: the value of a one-element vector, else NaN.
    Scalar,
    /// `timestamp(v)`: the sample's time (a selector's) or the evaluation time, in seconds.
    Timestamp,
    /// The date functions of a time in seconds (`time()` without an argument), in UTC.
    Date(Date),
    /// `pi()`.
    Pi,
}

/// The date functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Date {
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    DaysInMonth,
    Hour,
    Minute,
    Month,
    Year,
}

/// The one-argument math functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Math {
    Abs,
    Ceil,
    Floor,
    Exp,
    Sqrt,
    Ln,
    Log2,
    Log10,
    Sgn,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    Deg,
    Rad,
}

impl Math {
    pub fn apply(self, v: f64) -> f64 {
        match self {
            Math::Abs => v.abs(),
            Math::Ceil => v.ceil(),
            Math::Floor => v.floor(),
            Math::Exp => v.exp(),
            Math::Sqrt => v.sqrt(),
            Math::Ln => go_log(v),
            Math::Log2 => go_log2(v),
            // Go computes `1 / Ln10` exactly at compile time: log10(e), rounded once.
            Math::Log10 => go_log(v) * std::f64::consts::LOG10_E,
            Math::Sgn => {
                if v > 0.0 {
                    1.0
                } else if v < 0.0 {
                    -1.0
                } else {
                    v
                }
            }
            Math::Sin => v.sin(),
            Math::Cos => v.cos(),
            Math::Tan => v.tan(),
            Math::Asin => v.asin(),
            Math::Acos => v.acos(),
            Math::Atan => v.atan(),
            Math::Sinh => v.sinh(),
            Math::Cosh => v.cosh(),
            Math::Tanh => v.tanh(),
            Math::Asinh => v.asinh(),
            Math::Acosh => v.acosh(),
            Math::Atanh => v.atanh(),
            Math::Deg => v * 180.0 / std::f64::consts::PI,
            Math::Rad => v * std::f64::consts::PI / 180.0,
        }
    }
}

/// Go's `math.Log` (FreeBSD's `e_log.c`), which Prometheus' `ln`, `log2` and `log10` use: not
/// always the correctly rounded logarithm the platform's gives (`ln(3)` differs in the last
/// place), and answers must be Prometheus' to the bit.
fn go_log(x: f64) -> f64 {
    // The constants as FreeBSD's source gives their bits.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    const L1: f64 = f64::from_bits(0x3fe5_5555_5555_5593);
    const L2: f64 = f64::from_bits(0x3fd9_9999_9997_fa04);
    const L3: f64 = f64::from_bits(0x3fd2_4924_9422_9359);
    const L4: f64 = f64::from_bits(0x3fcc_71c5_1d8e_78af);
    const L5: f64 = f64::from_bits(0x3fc7_4664_96cb_03de);
    const L6: f64 = f64::from_bits(0x3fc3_9a09_d078_c69f);
    const L7: f64 = f64::from_bits(0x3fc2_f112_df3e_5244);
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    let (mut f1, mut ki) = frexp(x);
    if f1 < std::f64::consts::SQRT_2 / 2.0 {
        f1 *= 2.0;
        ki -= 1;
    }
    let f = f1 - 1.0;
    let k = f64::from(ki);
    let s = f / (2.0 + f);
    let s2 = s * s;
    let s4 = s2 * s2;
    let t1 = s2 * (L1 + s4 * (L3 + s4 * (L5 + s4 * L7)));
    let t2 = s4 * (L2 + s4 * (L4 + s4 * L6));
    let r = t1 + t2;
    let hfsq = 0.5 * f * f;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
}

/// Go's `math.Log2`: exact for powers of two, else `Log` of the fraction.
fn go_log2(x: f64) -> f64 {
    let (frac, exp) = frexp(x);
    if frac == 0.5 {
        return f64::from(exp - 1);
    }
    go_log(frac) * std::f64::consts::LOG2_E + f64::from(exp)
}

/// `x` as `frac * 2^exp` with `frac` in [0.5, 1) (Go's `math.Frexp`).
fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    if exponent == 0 {
        // Subnormal: scale into the normal range first.
        let (f, e) = frexp(x * f64::from_bits(0x4330_0000_0000_0000)); // 2^52
        return (f, e - 52);
    }
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exponent - 1022)
}

/// Vector matching: `on(labels)` or `ignoring(labels)` (the default is `ignoring()`), one to
/// one unless grouped.
#[derive(Debug, Clone, Default)]
pub struct Matching {
    pub on: bool,
    pub labels: Vec<String>,
    pub group: Option<Group>,
}

/// Many-to-one matching, and the labels the "one" side adds to each result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    /// `group_left(labels)`: the left side is the "many".
    Left(Vec<String>),
    /// `group_right(labels)`: the right side is the "many".
    Right(Vec<String>),
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError(pub String);

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses and compiles `text`, within the [`nesting`] limits.
pub fn compile(text: &str) -> Result<Expr, CompileError> {
    from_ast(&parse(text)?)
}

/// `text`'s syntax tree, once [`nesting`] has measured it.
fn parse(text: &str) -> Result<parser::Expr, CompileError> {
    nesting::check_text(text)?;
    let ast = parser::parse(text).map_err(|e| CompileError(format!("PromQL syntax error: {e}")))?;
    nesting::check_tree(&ast)?;
    Ok(ast)
}

/// For remote evaluation: any valid PromQL is accepted (the backend evaluates it); what the
/// local subset understands is still compiled, for thresholds in messages.
pub fn compile_for_remote(text: &str) -> Result<Expr, CompileError> {
    Ok(from_ast(&parse(text)?).unwrap_or(Expr::Remote))
}

impl Expr {
    /// The expressions this one is computed from.
    pub fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Number(_) | Expr::String(_) | Expr::Selector(_) | Expr::Remote => Vec::new(),
            Expr::Range { arg, param, .. } => {
                let mut all: Vec<&Expr> = param.iter().map(|p| &**p).collect();
                if let RangeArg::Subquery { expr, .. } = &**arg {
                    all.push(expr);
                }
                all
            }
            Expr::HistogramQuantile { q: a, v: b } | Expr::Binary { lhs: a, rhs: b, .. } => {
                vec![a, b]
            }
            Expr::Aggregate { expr, param, .. } => {
                let mut all = vec![&**expr];
                all.extend(param.iter().map(|p| &**p));
                all
            }
            Expr::Neg(expr)
            | Expr::LabelReplace { expr, .. }
            | Expr::LabelJoin { expr, .. }
            | Expr::Absent { expr, .. }
            | Expr::Sort { expr, .. } => vec![expr],
            Expr::Call { args, .. } => args.iter().collect(),
        }
    }

    fn children_mut(&mut self) -> Vec<&mut Expr> {
        match self {
            Expr::Number(_) | Expr::String(_) | Expr::Selector(_) | Expr::Remote => Vec::new(),
            Expr::Range { arg, param, .. } => {
                let mut all: Vec<&mut Expr> = param.iter_mut().map(|p| &mut **p).collect();
                if let RangeArg::Subquery { expr, .. } = &mut **arg {
                    all.push(expr);
                }
                all
            }
            Expr::HistogramQuantile { q: a, v: b } | Expr::Binary { lhs: a, rhs: b, .. } => {
                vec![a, b]
            }
            Expr::Aggregate { expr, param, .. } => {
                let mut all = vec![&mut **expr];
                all.extend(param.iter_mut().map(|p| &mut **p));
                all
            }
            Expr::Neg(expr)
            | Expr::LabelReplace { expr, .. }
            | Expr::LabelJoin { expr, .. }
            | Expr::Absent { expr, .. }
            | Expr::Sort { expr, .. } => vec![expr],
            Expr::Call { args, .. } => args.iter_mut().collect(),
        }
    }

    /// The vector selectors this expression reads (none for one only a backend evaluates).
    pub fn selectors(&self) -> Vec<&Selector> {
        let mut all = match self {
            Expr::Selector(s) => vec![s],
            Expr::Range { arg, .. } => match &**arg {
                RangeArg::Selector { selector, .. } => vec![selector],
                RangeArg::Subquery { .. } => Vec::new(),
            },
            _ => Vec::new(),
        };
        for child in self.children() {
            all.extend(child.selectors());
        }
        all
    }

    /// The longest range (plus offset) this expression reads, in milliseconds.
    pub fn max_range_ms(&self) -> i64 {
        let own = match self {
            Expr::Selector(s) => s.offset_ms,
            Expr::Range { arg, .. } => match &**arg {
                RangeArg::Selector { selector, range_ms } => range_ms + selector.offset_ms,
                RangeArg::Subquery {
                    expr,
                    range_ms,
                    offset_ms,
                    ..
                } => range_ms + offset_ms + expr.max_range_ms(),
            },
            _ => 0,
        };
        self.children()
            .into_iter()
            .map(Expr::max_range_ms)
            .fold(own, i64::max)
    }

    /// The earliest sample time evaluating this expression from `start` to `end` reads
    /// (milliseconds): its ranges, offsets, subqueries, `@` times and the lookback.
    pub fn earliest(&self, start: i64, end: i64) -> i64 {
        let at = |at: &Option<At>| match at {
            Some(At::Time(t)) => *t,
            Some(At::Start) => start,
            Some(At::End) => end,
            None => start,
        };
        let own = match self {
            Expr::Selector(s) => at(&s.at) - s.offset_ms - crate::store::LOOKBACK_MS,
            Expr::Range { arg, .. } => match &**arg {
                RangeArg::Selector { selector, range_ms } => {
                    at(&selector.at) - selector.offset_ms - range_ms
                }
                RangeArg::Subquery {
                    expr,
                    range_ms,
                    offset_ms,
                    at: sub_at,
                    ..
                } => {
                    let from = at(sub_at) - offset_ms - range_ms;
                    return expr.earliest(from, end.max(from));
                }
            },
            _ => i64::MAX,
        };
        self.children()
            .into_iter()
            .map(|c| c.earliest(start, end))
            .fold(own, i64::min)
    }

    /// The constant an alert expression compares against (`... > 0.05 and ...` gives 0.05),
    /// for messages that show "value vs threshold".
    pub fn threshold(&self) -> Option<f64> {
        match self {
            Expr::Binary { op, rhs, .. } if op.is_comparison() => rhs.constant(),
            Expr::Binary {
                op: BinOp::And | BinOp::Unless,
                lhs,
                ..
            } => lhs.threshold(),
            _ => None,
        }
    }

    /// The value of an expression of numbers only (`14.4 * 0.001`), as a threshold is written.
    fn constant(&self) -> Option<f64> {
        match self {
            Expr::Number(n) => Some(*n),
            Expr::Neg(e) => e.constant().map(|v| -v),
            Expr::Binary { op, lhs, rhs, .. } => {
                let (a, b) = (lhs.constant()?, rhs.constant()?);
                match op {
                    BinOp::Add => Some(a + b),
                    BinOp::Sub => Some(a - b),
                    BinOp::Mul => Some(a * b),
                    BinOp::Div => Some(a / b),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// What an alert expression compares against its threshold (`ratio > 0.05 and guard` gives
    /// `ratio`), and whether the alert fires above (`>`, `>=`) rather than below it.
    pub fn compared_value(&self) -> Option<(&Expr, bool)> {
        match self {
            Expr::Binary { op, lhs, rhs, .. } if op.is_comparison() && rhs.constant().is_some() => {
                Some((lhs, matches!(op, BinOp::Gt | BinOp::Ge | BinOp::Ne)))
            }
            Expr::Binary {
                op: BinOp::And | BinOp::Unless,
                lhs,
                ..
            } => lhs.compared_value(),
            _ => None,
        }
    }

    /// The expression with every range selector's range at least `min_range_ms` long, so
    /// that evaluated at steps of that length it reads every sample once (as Grafana's
    /// `$__rate_interval`).
    pub fn widened(&self, min_range_ms: i64) -> Expr {
        let mut out = self.clone();
        out.widen(min_range_ms);
        out
    }

    fn widen(&mut self, min_range_ms: i64) {
        if let Expr::Range { arg, .. } = self {
            if let RangeArg::Selector { range_ms, .. } = &mut **arg {
                *range_ms = (*range_ms).max(min_range_ms);
            }
        }
        for child in self.children_mut() {
            child.widen(min_range_ms);
        }
    }

    /// Whether the expression yields a scalar (every step a number, no labels).
    pub fn is_scalar(&self) -> bool {
        match self {
            Expr::Number(_) => true,
            Expr::Call { func, .. } => matches!(func, Func::Time | Func::Scalar | Func::Pi),
            Expr::Neg(e) => e.is_scalar(),
            Expr::Binary { lhs, rhs, .. } => lhs.is_scalar() && rhs.is_scalar(),
            _ => false,
        }
    }

    /// Whether the expression yields a vector (alerting and recording rules need one): what
    /// is neither a scalar nor a string.
    pub fn is_vector(&self) -> bool {
        !self.is_scalar() && !matches!(self, Expr::String(_))
    }
}

/// `matcher` as PromQL writes it (`code=~"5.."`), its value quoted as Go reads a string.
pub fn matcher_text(matcher: &Matcher) -> String {
    let op = match &matcher.op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Re(_) => "=~",
        MatchOp::NotRe(_) => "!~",
    };
    format!("{}{op}{}", matcher.name, quote(&matcher.value))
}

/// `s` as a PromQL string literal: only `\\`, `"` and line breaks escaped, anything else
/// (any Unicode) as is, which is what Go's `strconv.Unquote` reads back unchanged.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn unsupported(what: impl fmt::Display) -> CompileError {
    CompileError(format!("{what} is not supported by obs-collector"))
}

/// A string argument (`label_replace`'s, `count_values`' label).
fn string_arg(e: &parser::Expr, func: &str, what: &str) -> Result<String, CompileError> {
    match e {
        parser::Expr::StringLiteral(s) => Ok(s.val.clone()),
        parser::Expr::Paren(p) => string_arg(&p.expr, func, what),
        _ => Err(CompileError(format!("{func}: the {what} must be a string"))),
    }
}

fn at(at: &Option<parser::AtModifier>) -> Option<At> {
    at.as_ref().map(|a| match a {
        parser::AtModifier::Start => At::Start,
        parser::AtModifier::End => At::End,
        parser::AtModifier::At(t) => At::Time(match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        }),
    })
}

fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

/// The argument of a range function: a range selector or a subquery.
fn range_arg(e: &parser::Expr, func: &str) -> Result<RangeArg, CompileError> {
    use parser::Expr as A;
    match e {
        A::MatrixSelector(ms) => Ok(RangeArg::Selector {
            selector: selector(&ms.vs)?,
            range_ms: ms.range.as_millis() as i64,
        }),
        A::Subquery(sq) => Ok(RangeArg::Subquery {
            expr: from_ast(&sq.expr)?,
            range_ms: sq.range.as_millis() as i64,
            step_ms: sq.step.map(|s| s.as_millis() as i64),
            offset_ms: offset_ms(&sq.offset),
            at: at(&sq.at),
        }),
        A::Paren(p) => range_arg(&p.expr, func),
        _ => Err(CompileError(format!(
            "{func}() needs a range vector such as x[1m] or a subquery such as (x)[1h:1m]"
        ))),
    }
}

fn from_ast(ast: &parser::Expr) -> Result<Expr, CompileError> {
    use parser::Expr as A;
    Ok(match ast {
        A::NumberLiteral(n) => Expr::Number(n.val),
        A::StringLiteral(s) => Expr::String(s.val.clone()),
        A::Paren(p) => from_ast(&p.expr)?,
        A::Unary(u) => Expr::Neg(Box::new(from_ast(&u.expr)?)),
        A::VectorSelector(vs) => Expr::Selector(selector(vs)?),
        A::Call(call) => call_from_ast(call.func.name, &call.args.args)?,
        A::Aggregate(agg) => {
            let op = match agg.op.to_string().as_str() {
                "sum" => AggOp::Sum,
                "avg" => AggOp::Avg,
                "min" => AggOp::Min,
                "max" => AggOp::Max,
                "count" => AggOp::Count,
                "group" => AggOp::Group,
                "stddev" => AggOp::Stddev,
                "stdvar" => AggOp::Stdvar,
                "topk" => AggOp::Topk,
                "bottomk" => AggOp::Bottomk,
                "quantile" => AggOp::Quantile,
                "count_values" => AggOp::CountValues,
                other => return Err(unsupported(format_args!("aggregation {other}"))),
            };
            let grouping = match &agg.modifier {
                Some(LabelModifier::Exclude(l)) => Grouping::Without(l.labels.clone()),
                Some(LabelModifier::Include(l)) => Grouping::By(l.labels.clone()),
                None => Grouping::By(Vec::new()),
            };
            let param = match &agg.param {
                Some(p) => Some(Box::new(from_ast(p)?)),
                None => None,
            };
            if op == AggOp::CountValues {
                let label = match param.as_deref() {
                    Some(Expr::String(l)) => l.clone(),
                    _ => {
                        return Err(CompileError(
                            "count_values: the label must be a string".into(),
                        ))
                    }
                };
                if !crate::labels::valid_name(&label) {
                    return Err(CompileError(format!("invalid label name {label:?}")));
                }
            }
            Expr::Aggregate {
                op,
                grouping,
                expr: Box::new(from_ast(&agg.expr)?),
                param,
            }
        }
        A::Binary(b) => {
            let op = match b.op.to_string().as_str() {
                "+" => BinOp::Add,
                "-" => BinOp::Sub,
                "*" => BinOp::Mul,
                "/" => BinOp::Div,
                "%" => BinOp::Mod,
                "^" => BinOp::Pow,
                "==" => BinOp::Eq,
                "!=" => BinOp::Ne,
                ">" => BinOp::Gt,
                "<" => BinOp::Lt,
                ">=" => BinOp::Ge,
                "<=" => BinOp::Le,
                "and" => BinOp::And,
                "or" => BinOp::Or,
                "unless" => BinOp::Unless,
                other => return Err(unsupported(format_args!("operator {other}"))),
            };
            let (matching, return_bool) = match &b.modifier {
                None => (Matching::default(), false),
                Some(m) => {
                    let group = match &m.card {
                        VectorMatchCardinality::ManyToOne(l) => Some(Group::Left(l.labels.clone())),
                        VectorMatchCardinality::OneToMany(l) => {
                            Some(Group::Right(l.labels.clone()))
                        }
                        _ => None,
                    };
                    let (on, labels) = match &m.matching {
                        Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
                        Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
                        None => (false, Vec::new()),
                    };
                    (Matching { on, labels, group }, m.return_bool)
                }
            };
            Expr::Binary {
                op,
                lhs: Box::new(from_ast(&b.lhs)?),
                rhs: Box::new(from_ast(&b.rhs)?),
                matching,
                return_bool,
            }
        }
        A::MatrixSelector(_) | A::Subquery(_) => {
            return Err(unsupported(
                "a range vector as the result (x[1m] or a subquery outside a range function)",
            ))
        }
        A::Extension(_) => return Err(unsupported("an extension expression")),
    })
}

fn call_from_ast(name: &str, args: &[Box<parser::Expr>]) -> Result<Expr, CompileError> {
    let arity = |range: std::ops::RangeInclusive<usize>| {
        if range.contains(&args.len()) {
            Ok(())
        } else {
            Err(CompileError(format!(
                "{name}() takes {} to {} arguments, not {}",
                range.start(),
                range.end(),
                args.len()
            )))
        }
    };
    if let Some(func) = RangeFunc::named(name) {
        let with_param = matches!(func, RangeFunc::QuantileOverTime | RangeFunc::PredictLinear);
        arity(if with_param { 2..=2 } else { 1..=1 })?;
        let (param, range) = if func == RangeFunc::QuantileOverTime {
            (Some(Box::new(from_ast(&args[0])?)), &args[1])
        } else if func == RangeFunc::PredictLinear {
            (Some(Box::new(from_ast(&args[1])?)), &args[0])
        } else {
            (None, &args[0])
        };
        return Ok(Expr::Range {
            func,
            arg: Box::new(range_arg(range, name)?),
            param,
        });
    }
    Ok(match name {
        "label_replace" => {
            arity(5..=5)?;
            let text = |i: usize, what: &str| string_arg(&args[i], name, what);
            // A bad destination or expression is an evaluation error, as in Prometheus
            // (422, not 400).
            let pattern = text(4, "regular expression")?;
            let regex = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| {
                format!("invalid regular expression in label_replace(): {pattern}: {e}")
            });
            Expr::LabelReplace {
                expr: Box::new(from_ast(&args[0])?),
                dst: text(1, "destination label")?,
                replacement: text(2, "replacement")?,
                src: text(3, "source label")?,
                regex,
            }
        }
        "label_join" => {
            if args.len() < 3 {
                return Err(CompileError(format!(
                    "label_join() takes at least 3 arguments, not {}",
                    args.len()
                )));
            }
            Expr::LabelJoin {
                expr: Box::new(from_ast(&args[0])?),
                dst: string_arg(&args[1], name, "destination label")?,
                separator: string_arg(&args[2], name, "separator")?,
                srcs: args[3..]
                    .iter()
                    .map(|a| string_arg(a, name, "source label"))
                    .collect::<Result<_, _>>()?,
            }
        }
        "histogram_quantile" => {
            arity(2..=2)?;
            Expr::HistogramQuantile {
                q: Box::new(from_ast(&args[0])?),
                v: Box::new(from_ast(&args[1])?),
            }
        }
        "absent" => {
            arity(1..=1)?;
            let expr = from_ast(&args[0])?;
            Expr::Absent {
                labels: match &expr {
                    Expr::Selector(s) => absent_labels(s),
                    _ => Labels::default(),
                },
                expr: Box::new(expr),
            }
        }
        "sort" | "sort_desc" => {
            arity(1..=1)?;
            Expr::Sort {
                expr: Box::new(from_ast(&args[0])?),
                descending: name == "sort_desc",
            }
        }
        name => {
            let func =
                function(name).ok_or_else(|| unsupported(format_args!("function {name}()")))?;
            arity(match func {
                Func::Time | Func::Pi => 0..=0,
                Func::Date(_) => 0..=1,
                Func::Math(_) | Func::Vector | Func::Scalar | Func::Timestamp => 1..=1,
                Func::ClampMin | Func::ClampMax => 2..=2,
                Func::Round => 1..=2,
                Func::Clamp => 3..=3,
            })?;
            Expr::Call {
                func,
                args: args.iter().map(|a| from_ast(a)).collect::<Result<_, _>>()?,
            }
        }
    })
}

/// The labels `absent(v)` and `absent_over_time(v[r])` give: the equality matchers of the
/// selector, its name left out; a label matched twice is left out.
fn absent_labels(sel: &Selector) -> Labels {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let mut twice: Vec<&str> = Vec::new();
    for m in &sel.matchers {
        if m.name == crate::labels::NAME || !matches!(m.op, MatchOp::Equal) {
            continue;
        }
        if pairs.iter().any(|(n, _)| *n == m.name) {
            twice.push(&m.name);
        }
        pairs.push((&m.name, &m.value));
    }
    pairs.retain(|(n, _)| !twice.contains(n));
    Labels::from_pairs(&pairs)
}

/// The [`Func`] of a function name, if it is one.
fn function(name: &str) -> Option<Func> {
    Some(match name {
        "abs" => Func::Math(Math::Abs),
        "ceil" => Func::Math(Math::Ceil),
        "floor" => Func::Math(Math::Floor),
        "exp" => Func::Math(Math::Exp),
        "sqrt" => Func::Math(Math::Sqrt),
        "ln" => Func::Math(Math::Ln),
        "log2" => Func::Math(Math::Log2),
        "log10" => Func::Math(Math::Log10),
        "sgn" => Func::Math(Math::Sgn),
        "sin" => Func::Math(Math::Sin),
        "cos" => Func::Math(Math::Cos),
        "tan" => Func::Math(Math::Tan),
        "asin" => Func::Math(Math::Asin),
        "acos" => Func::Math(Math::Acos),
        "atan" => Func::Math(Math::Atan),
        "sinh" => Func::Math(Math::Sinh),
        "cosh" => Func::Math(Math::Cosh),
        "tanh" => Func::Math(Math::Tanh),
        "asinh" => Func::Math(Math::Asinh),
        "acosh" => Func::Math(Math::Acosh),
        "atanh" => Func::Math(Math::Atanh),
        "deg" => Func::Math(Math::Deg),
        "rad" => Func::Math(Math::Rad),
        "pi" => Func::Pi,
        "clamp" => Func::Clamp,
        "clamp_min" => Func::ClampMin,
        "clamp_max" => Func::ClampMax,
        "round" => Func::Round,
        "time" => Func::Time,
        "vector" => Func::Vector,
        "scalar" => Func::Scalar,
        "timestamp" => Func::Timestamp,
        "day_of_month" => Func::Date(Date::DayOfMonth),
        "day_of_week" => Func::Date(Date::DayOfWeek),
        "day_of_year" => Func::Date(Date::DayOfYear),
        "days_in_month" => Func::Date(Date::DaysInMonth),
        "hour" => Func::Date(Date::Hour),
        "minute" => Func::Date(Date::Minute),
        "month" => Func::Date(Date::Month),
        "year" => Func::Date(Date::Year),
        _ => return None,
    })
}

fn selector(vs: &parser::VectorSelector) -> Result<Selector, CompileError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(unsupported("`or` inside a selector"));
    }
    let mut matchers = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name {
        if !matchers.iter().any(|m| m.name == crate::labels::NAME) {
            matchers.push(Matcher::new(MatchOp::Equal, crate::labels::NAME, name));
        }
    }
    let name = matchers
        .iter()
        .find(|m| m.name == crate::labels::NAME && matches!(m.op, MatchOp::Equal))
        .map(|m| m.value.clone());
    Ok(Selector {
        name,
        matchers,
        offset_ms: offset_ms(&vs.offset),
        at: at(&vs.at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rules_compile() {
        let rules = include_str!("../../../alerts/obs-red.rules.yml");
        let file: serde_json::Value = serde_saphyr::from_str(rules).unwrap();
        let mut n = 0;
        for group in file["groups"].as_array().unwrap() {
            for rule in group["rules"].as_array().unwrap() {
                compile(rule["expr"].as_str().unwrap()).unwrap();
                n += 1;
            }
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn unsupported_constructs_are_named() {
        for (expr, needle) in [
            ("histogram_count(x)", "function histogram_count()"),
            ("sort_by_label(x, \"a\")", "function sort_by_label()"),
            ("x[5m]", "a range vector as the result"),
            ("rate(x)", "expected type matrix"),
            ("sum(", "syntax error"),
        ] {
            let err = compile(expr).unwrap_err().0;
            assert!(err.contains(needle), "{expr}: {err}");
        }
    }

    #[test]
    fn thresholds_of_the_default_rules() {
        let rules = include_str!("../../../alerts/obs-red.rules.yml");
        let file: serde_json::Value = serde_saphyr::from_str(rules).unwrap();
        let got: Vec<Option<f64>> = file["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| compile(r["expr"].as_str().unwrap()).unwrap().threshold())
            .collect();
        assert_eq!(got, [Some(0.05), Some(2.0), Some(0.05), Some(0.0)]);
    }

    #[test]
    fn vectors_and_scalars() {
        for vector in ["vector(1)", "up", "abs(up)", "hour()", "1 + up", "-up"] {
            assert!(compile(vector).unwrap().is_vector(), "{vector}");
        }
        for scalar in ["1", "time()", "scalar(up)", "pi() * 2", "-(1)"] {
            let e = compile(scalar).unwrap();
            assert!(e.is_scalar() && !e.is_vector(), "{scalar}");
        }
    }

    #[test]
    fn max_range_covers_offsets() {
        let e = compile("rate(a[5m] offset 1m) / increase(b[2m])").unwrap();
        assert_eq!(e.max_range_ms(), 6 * 60_000);
    }
}
