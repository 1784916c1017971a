//! What the evaluator hands between its parts: a series of a range evaluation, where series go
//! as they are computed, and [`Evaluate`], the evaluator as the aggregations and the binary
//! operators see it (so that they call back into it without importing it).

use std::collections::HashMap;

use super::error::QueryError;
use super::Expr;
use crate::labels::Labels;

/// One series of a range evaluation: its value, or none, at each step.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<Option<f64>>,
}

impl Series {
    pub(super) fn present(&self) -> usize {
        self.points.iter().filter(|p| p.is_some()).count()
    }
}

/// The evaluator: the number of steps, and a sub-expression's series or scalar values at
/// each of them.
pub(super) trait Evaluate {
    fn steps(&self) -> usize;
    /// A vector expression's series, gathered (and counted against the query's budget).
    fn gather(&self, e: &Expr) -> Result<Vec<Series>, QueryError>;
    /// A scalar expression's value at each step.
    fn scalar(&self, e: &Expr) -> Result<Vec<f64>, QueryError>;
    /// A vector expression's series, each to `sink` as it is computed.
    fn stream(&self, e: &Expr, sink: &mut Sink) -> Result<(), QueryError>;
    /// Counts `slots` values more held against the query's budget.
    fn hold(&self, slots: usize) -> Result<(), QueryError>;
}

/// The entry of `key` in `groups`, made of a copy of `empty` for each step the first time. A
/// group made is counted against the query's budget then, one slot a step, whatever comes to
/// fill them: `count_values` over a counter makes a group for every value it meets.
pub(super) fn group<'g, T: Clone>(
    ctx: &dyn Evaluate,
    groups: &'g mut HashMap<Labels, Vec<T>>,
    key: Labels,
    empty: T,
) -> Result<&'g mut Vec<T>, QueryError> {
    use std::collections::hash_map::Entry;
    Ok(match groups.entry(key) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => {
            ctx.hold(ctx.steps())?;
            e.insert(vec![empty; ctx.steps()])
        }
    })
}

/// Where a series goes as it is computed.
pub(super) type Sink<'s> = dyn FnMut(Series) -> Result<(), QueryError> + 's;

pub(super) fn same_labelset() -> QueryError {
    "vector cannot contain metrics with the same labelset".into()
}

/// The label sets seen so far, and at which steps: two series with the same labels at the same
/// step are an error.
#[derive(Default)]
pub(super) struct Unique {
    seen: HashMap<Labels, Vec<bool>>,
}

impl Unique {
    pub(super) fn claim(&mut self, s: &Series) -> Result<(), QueryError> {
        self.claim_with(&s.labels, s, same_labelset)
    }

    /// Claims the steps where `s` has a point for `key`; `error` when one was claimed before.
    pub(super) fn claim_with(
        &mut self,
        key: &Labels,
        s: &Series,
        error: impl Fn() -> QueryError,
    ) -> Result<(), QueryError> {
        match self.seen.get_mut(key) {
            Some(steps) => {
                for (taken, p) in steps.iter_mut().zip(&s.points) {
                    if p.is_some() {
                        if *taken {
                            return Err(error());
                        }
                        *taken = true;
                    }
                }
            }
            None => {
                self.seen
                    .insert(key.clone(), s.points.iter().map(Option::is_some).collect());
            }
        }
        Ok(())
    }
}
