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
/// step are an error. The steps are kept as runs (a series present throughout is one run), so
/// a join of a week of 16,000 series holds a few bytes a series, not a flag a step.
#[derive(Default)]
pub(super) struct Unique {
    seen: HashMap<Labels, Vec<Run>>,
}

/// Steps `from..to` (half open).
type Run = (u32, u32);

/// The runs of steps where `points` has a value, in order.
fn runs(points: &[Option<f64>]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (i, p) in points.iter().enumerate() {
        if p.is_some() {
            let i = i as u32;
            match out.last_mut() {
                Some(last) if last.1 == i => last.1 = i + 1,
                _ => out.push((i, i + 1)),
            }
        }
    }
    out
}

/// Whether two sorted lists of disjoint runs share a step.
fn overlap(a: &[Run], b: &[Run]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].0 < b[j].1 && b[j].0 < a[i].1 {
            return true;
        }
        if a[i].1 <= b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    false
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
        let new = runs(&s.points);
        match self.seen.get_mut(key) {
            Some(claimed) => {
                if overlap(claimed, &new) {
                    return Err(error());
                }
                claimed.extend(new);
                claimed.sort_unstable();
            }
            None => {
                self.seen.insert(key.clone(), new);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_clash_only_at_a_shared_step() {
        let series = |points: &[Option<f64>]| Series {
            labels: Labels::from_pairs(&[("a", "1")]),
            points: points.to_vec(),
        };
        let (x, o) = (Some(1.0), None);
        assert_eq!(runs(&[x, x, o, x, o, o, x]), [(0, 2), (3, 4), (6, 7)]);
        assert!(runs(&[o, o]).is_empty());
        let mut unique = Unique::default();
        unique.claim(&series(&[x, x, o, o, o, x])).unwrap();
        unique.claim(&series(&[o, o, x, x, o, o])).unwrap();
        unique.claim(&series(&[o, o, o, o, x, o])).unwrap();
        for clash in [[x, o, o, o, o, o], [o, o, o, x, o, o], [o, o, o, o, o, x]] {
            assert!(unique.claim(&series(&clash)).is_err(), "{clash:?}");
        }
        let mut other = Unique::default();
        other.claim(&series(&[x, o, x])).unwrap();
        assert!(other.claim(&series(&[o, x, o])).is_ok());
        assert!(other.claim(&series(&[o, x, o])).is_err());
    }
}
