//! The PromQL subset the collector evaluates.
//!
//! Expressions are parsed by the `promql-parser` crate, then compiled into [`Expr`]. Anything
//! outside the subset is refused at load time with a message naming it:
//! - selectors with `=`, `!=`, `=~`, `!~` matchers and `offset`;
//! - `rate`, `increase` (range vectors), `histogram_quantile`;
//! - `sum`, `avg`, `min`, `max`, `count` with `by` or `without`;
//! - `+ - * / % ^` and `== != > < >= <=` (with `bool`) between scalars and vectors, one-to-one
//!   vector matching with `on`/`ignoring`;
//! - `and`, `or`, `unless` with `on`/`ignoring`; unary minus; parentheses.
//!
//! Not supported (refused): `group_left`/`group_right`, subqueries, `@`, other functions and
//! aggregations (`topk`, `quantile`, `irate`, `absent`, ...), string literals.

mod error;
mod eval;
pub mod functions;
mod querier;
pub mod remote;

use std::fmt;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, LabelModifier, Offset, VectorMatchCardinality};

use crate::labels::Labels;

pub use error::QueryError;
pub use eval::{eval, Sample, Value};
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
    /// An instant vector selector.
    Selector(Selector),
    /// `rate(sel[range])` or `increase(sel[range])`.
    Rate {
        selector: Selector,
        range_ms: i64,
        per_second: bool,
    },
    /// `histogram_quantile(q, v)`.
    HistogramQuantile {
        q: Box<Expr>,
        v: Box<Expr>,
    },
    Aggregate {
        op: AggOp,
        grouping: Grouping,
        expr: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        matching: Matching,
        return_bool: bool,
    },
    Neg(Box<Expr>),
    /// Valid PromQL outside the local subset: only a remote backend (`query.url`) evaluates it.
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
    /// A function over numbers: the math functions, `clamp*`, `round`, `time()`, `vector()`,
    /// `scalar()` (see [`Func`]).
    Call {
        func: Func,
        args: Vec<Expr>,
    },
}

/// Label matchers plus offset.
#[derive(Debug, Clone)]
pub struct Selector {
    pub name: Option<String>,
    pub matchers: Vec<Matcher>,
    pub offset_ms: i64,
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

/// Parses and compiles `text`.
pub fn compile(text: &str) -> Result<Expr, CompileError> {
    let ast = parser::parse(text).map_err(|e| CompileError(format!("PromQL syntax error: {e}")))?;
    from_ast(&ast)
}

/// For remote evaluation: any valid PromQL is accepted (the backend evaluates it); what the
/// local subset understands is still compiled, for thresholds in messages.
pub fn compile_for_remote(text: &str) -> Result<Expr, CompileError> {
    let ast = parser::parse(text).map_err(|e| CompileError(format!("PromQL syntax error: {e}")))?;
    Ok(from_ast(&ast).unwrap_or(Expr::Remote))
}

impl Expr {
    /// The vector selectors this expression reads (none for one only a backend evaluates).
    pub fn selectors(&self) -> Vec<&Selector> {
        match self {
            Expr::Number(_) | Expr::Remote => Vec::new(),
            Expr::Selector(s) | Expr::Rate { selector: s, .. } => vec![s],
            Expr::HistogramQuantile { q: a, v: b } | Expr::Binary { lhs: a, rhs: b, .. } => {
                let mut all = a.selectors();
                all.extend(b.selectors());
                all
            }
            Expr::Aggregate { expr, .. } | Expr::Neg(expr) | Expr::LabelReplace { expr, .. } => {
                expr.selectors()
            }
            Expr::Call { args, .. } => args.iter().flat_map(Expr::selectors).collect(),
        }
    }

    /// The longest range (plus offset) this expression reads, in milliseconds.
    pub fn max_range_ms(&self) -> i64 {
        match self {
            Expr::Number(_) | Expr::Remote => 0,
            Expr::Selector(s) => s.offset_ms,
            Expr::Rate {
                selector, range_ms, ..
            } => range_ms + selector.offset_ms,
            Expr::HistogramQuantile { q, v } => q.max_range_ms().max(v.max_range_ms()),
            Expr::Aggregate { expr, .. } | Expr::Neg(expr) | Expr::LabelReplace { expr, .. } => {
                expr.max_range_ms()
            }
            Expr::Call { args, .. } => args.iter().map(Expr::max_range_ms).max().unwrap_or(0),
            Expr::Binary { lhs, rhs, .. } => lhs.max_range_ms().max(rhs.max_range_ms()),
        }
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

    /// The expression with every range at least `min_range_ms` long, so that evaluated at
    /// steps of that length it reads every sample once (as Grafana's `$__rate_interval`).
    pub fn widened(&self, min_range_ms: i64) -> Expr {
        let w = |e: &Expr| Box::new(e.widened(min_range_ms));
        match self {
            Expr::Rate {
                selector,
                range_ms,
                per_second,
            } => Expr::Rate {
                selector: selector.clone(),
                range_ms: (*range_ms).max(min_range_ms),
                per_second: *per_second,
            },
            Expr::HistogramQuantile { q, v } => Expr::HistogramQuantile { q: w(q), v: w(v) },
            Expr::Aggregate { op, grouping, expr } => Expr::Aggregate {
                op: *op,
                grouping: grouping.clone(),
                expr: w(expr),
            },
            Expr::Binary {
                op,
                lhs,
                rhs,
                matching,
                return_bool,
            } => Expr::Binary {
                op: *op,
                lhs: w(lhs),
                rhs: w(rhs),
                matching: matching.clone(),
                return_bool: *return_bool,
            },
            Expr::Neg(e) => Expr::Neg(w(e)),
            Expr::Call { func, args } => Expr::Call {
                func: *func,
                args: args.iter().map(|a| a.widened(min_range_ms)).collect(),
            },
            Expr::LabelReplace {
                expr,
                dst,
                replacement,
                src,
                regex,
            } => Expr::LabelReplace {
                expr: w(expr),
                dst: dst.clone(),
                replacement: replacement.clone(),
                src: src.clone(),
                regex: regex.clone(),
            },
            Expr::Number(_) | Expr::Selector(_) | Expr::Remote => self.clone(),
        }
    }

    /// Whether the expression yields a vector (alerting and recording rules need one).
    pub fn is_vector(&self) -> bool {
        match self {
            Expr::Number(_) => false,
            Expr::Call { func, .. } => !matches!(func, Func::Time | Func::Scalar),
            Expr::Neg(e) => e.is_vector(),
            Expr::Binary { lhs, rhs, .. } => lhs.is_vector() || rhs.is_vector(),
            _ => true,
        }
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
    CompileError(format!("{what} is not supported by obs-collector (supported: selectors, rate, increase, histogram_quantile, label_replace, math functions, clamp*, round, time, vector, scalar, sum/avg/min/max/count by|without, arithmetic, comparisons, and/or/unless with on|ignoring and group_left|group_right)"))
}

fn from_ast(ast: &parser::Expr) -> Result<Expr, CompileError> {
    use parser::Expr as A;
    Ok(match ast {
        A::NumberLiteral(n) => Expr::Number(n.val),
        A::Paren(p) => from_ast(&p.expr)?,
        A::Unary(u) => Expr::Neg(Box::new(from_ast(&u.expr)?)),
        A::VectorSelector(vs) => Expr::Selector(selector(vs)?),
        A::Call(call) => match (call.func.name, call.args.args.as_slice()) {
            (name @ ("rate" | "increase"), [arg]) => match arg.as_ref() {
                A::MatrixSelector(ms) => Expr::Rate {
                    selector: selector(&ms.vs)?,
                    range_ms: ms.range.as_millis() as i64,
                    per_second: name == "rate",
                },
                _ => {
                    return Err(CompileError(format!(
                    "{name}() needs a range selector such as x[1m]; subqueries are not supported"
                )))
                }
            },
            ("label_replace", [v, dst, replacement, src, regex]) => {
                let text = |e: &parser::Expr, what: &str| match e {
                    A::StringLiteral(s) => Ok(s.val.clone()),
                    _ => Err(CompileError(format!(
                        "label_replace: the {what} must be a string"
                    ))),
                };
                // A bad destination or expression is an evaluation error, as in Prometheus
                // (422, not 400).
                let pattern = text(regex, "regular expression")?;
                let regex = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| {
                    format!("invalid regular expression in label_replace(): {pattern}: {e}")
                });
                Expr::LabelReplace {
                    expr: Box::new(from_ast(v)?),
                    dst: text(dst, "destination label")?,
                    replacement: text(replacement, "replacement")?,
                    src: text(src, "source label")?,
                    regex,
                }
            }
            (name, args) if function(name).is_some() => {
                let func = function(name).expect("checked");
                let arity = match func {
                    Func::Time => 0..=0,
                    Func::Math(_) | Func::Vector | Func::Scalar => 1..=1,
                    Func::ClampMin | Func::ClampMax => 2..=2,
                    Func::Round => 1..=2,
                    Func::Clamp => 3..=3,
                };
                if !arity.contains(&args.len()) {
                    return Err(CompileError(format!(
                        "{name}() takes {} to {} arguments, not {}",
                        arity.start(),
                        arity.end(),
                        args.len()
                    )));
                }
                Expr::Call {
                    func,
                    args: args.iter().map(|a| from_ast(a)).collect::<Result<_, _>>()?,
                }
            }
            ("histogram_quantile", [q, v]) => Expr::HistogramQuantile {
                q: Box::new(from_ast(q)?),
                v: Box::new(from_ast(v)?),
            },
            (name, _) => return Err(unsupported(format_args!("function {name}()"))),
        },
        A::Aggregate(agg) => {
            let op = match agg.op.to_string().as_str() {
                "sum" => AggOp::Sum,
                "avg" => AggOp::Avg,
                "min" => AggOp::Min,
                "max" => AggOp::Max,
                "count" => AggOp::Count,
                other => return Err(unsupported(format_args!("aggregation {other}"))),
            };
            let grouping = match &agg.modifier {
                Some(LabelModifier::Exclude(l)) => Grouping::Without(l.labels.clone()),
                Some(LabelModifier::Include(l)) => Grouping::By(l.labels.clone()),
                None => Grouping::By(Vec::new()),
            };
            Expr::Aggregate {
                op,
                grouping,
                expr: Box::new(from_ast(&agg.expr)?),
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
        A::MatrixSelector(_) => {
            return Err(CompileError(
                "a range selector (x[1m]) must be inside rate() or increase()".into(),
            ))
        }
        A::Subquery(_) => return Err(unsupported("a subquery")),
        A::StringLiteral(_) => return Err(unsupported("a string literal")),
        A::Extension(_) => return Err(unsupported("an extension expression")),
    })
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
        "clamp" => Func::Clamp,
        "clamp_min" => Func::ClampMin,
        "clamp_max" => Func::ClampMax,
        "round" => Func::Round,
        "time" => Func::Time,
        "vector" => Func::Vector,
        "scalar" => Func::Scalar,
        _ => return None,
    })
}

fn selector(vs: &parser::VectorSelector) -> Result<Selector, CompileError> {
    if vs.at.is_some() {
        return Err(unsupported("the @ modifier"));
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err(unsupported("`or` inside a selector"));
    }
    let mut matchers = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name {
        if !matchers.iter().any(|m| m.name == crate::labels::NAME) {
            matchers.push(Matcher::new(MatchOp::Equal, crate::labels::NAME, name));
        }
    }
    let offset_ms = match &vs.offset {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    };
    let name = matchers
        .iter()
        .find(|m| m.name == crate::labels::NAME && matches!(m.op, MatchOp::Equal))
        .map(|m| m.value.clone());
    Ok(Selector {
        name,
        matchers,
        offset_ms,
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
            ("irate(x[5m])", "function irate()"),
            ("topk(3, x)", "aggregation topk"),
            ("count_values(\"v\", x)", "aggregation count_values"),
            ("rate(x[5m:1m])", "subqueries"),
            ("x @ 100", "@ modifier"),
            ("x[5m]", "range selector"),
            ("absent(up)", "function absent()"),
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
    fn max_range_covers_offsets() {
        let e = compile("rate(a[5m] offset 1m) / increase(b[2m])").unwrap();
        assert_eq!(e.max_range_ms(), 6 * 60_000);
    }
}
