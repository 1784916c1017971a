//! The status page's chart data: for each alerting rule, the value it compared against its
//! threshold at each recent evaluation. Kept by the collector next to the rules, not in them:
//! the rules hold only alert state (what is persisted and what decides notifications).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// Evaluations kept per rule (an hour at 15 s).
pub const POINTS: usize = 240;

/// `(time, value)` points, oldest first.
type Points = VecDeque<(i64, f64)>;

/// Recent chart points, per rule group and rule.
#[derive(Debug, Default)]
pub struct History {
    series: Mutex<HashMap<(String, String), Points>>,
}

impl History {
    /// Adds the point of rule `rule` of group `group` at `t` (NaN: nothing to chart).
    pub fn record(&self, group: &str, rule: &str, t: i64, value: f64) {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let points = series
            .entry((group.to_owned(), rule.to_owned()))
            .or_default();
        points.push_back((t, value));
        while points.len() > POINTS {
            points.pop_front();
        }
    }

    /// The points of rule `rule` of group `group`, oldest first.
    pub fn points(&self, group: &str, rule: &str) -> Vec<(i64, f64)> {
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        series
            .get(&(group.to_owned(), rule.to_owned()))
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_points_per_rule() {
        let history = History::default();
        for t in 0..(POINTS as i64 + 5) {
            history.record("g", "A", t, t as f64);
        }
        history.record("g", "B", 7, 1.5);
        let a = history.points("g", "A");
        assert_eq!(
            (a.len(), a[0].0, a.last().unwrap().0),
            (POINTS, 5, POINTS as i64 + 4)
        );
        assert_eq!(history.points("g", "B"), [(7, 1.5)]);
        assert!(history.points("other", "A").is_empty());
    }
}
