//! [`Select`]: what the evaluator reads, and all it reads (Prometheus' `storage.Querier`):
//! series and their samples over a time range, whether the head or the blocks on disk hold
//! them. The lookback and range rules are here too, on plain slices of samples, so that every
//! source answers them alike.

use super::{is_stale, LOOKBACK_MS};
use crate::labels::Labels;

/// What [`Select::select`] calls per series: its labels and its samples.
pub type Visit<'a> = dyn FnMut(&Labels, &[(i64, f64)]) + 'a;

/// A source of series.
pub trait Select {
    /// Whether ranges and the lookback are closed on the left (Prometheus 2.x).
    fn left_closed(&self) -> bool;

    /// Calls `each` once per series named `name` (every series when `None`) that `keep`
    /// accepts and that has samples in `[min_t, max_t]`, with those samples in time order
    /// (stale markers included, one sample per timestamp).
    fn select(
        &self,
        name: Option<&str>,
        keep: &dyn Fn(&Labels) -> bool,
        min_t: i64,
        max_t: i64,
        each: &mut Visit,
    );

    /// Calls `each` once per series named `name` (every series when `None`) that `keep`
    /// accepts and that has samples in `[min_t, max_t]` (in a block that overlaps it), with its
    /// labels only: the series and label APIs, which need no samples.
    fn series(
        &self,
        name: Option<&str>,
        keep: &dyn Fn(&Labels) -> bool,
        min_t: i64,
        max_t: i64,
        each: &mut dyn FnMut(&Labels),
    ) {
        self.select(name, keep, min_t, max_t, &mut |labels, _| each(labels));
    }
}

/// The window an instant selector at `t` reads.
pub fn lookback_window(t: i64) -> (i64, i64) {
    (t - LOOKBACK_MS, t)
}

/// The sample an instant selector sees at each time among `samples` (sorted): the newest in
/// `(t - lookback, t]` (`[t - lookback, t]` when `left_closed`, as Prometheus 2.x), unless it
/// is a stale marker; with its time. For times asked in increasing order (a range query's
/// steps) a cursor moves forward; an earlier time starts it again from the first sample.
pub struct Instants<'s> {
    samples: &'s [(i64, f64)],
    left_closed: bool,
    /// Samples at or before the last time asked.
    end: usize,
    last: i64,
}

impl<'s> Instants<'s> {
    pub fn new(samples: &'s [(i64, f64)], left_closed: bool) -> Self {
        Instants {
            samples,
            left_closed,
            end: 0,
            last: i64::MIN,
        }
    }

    /// What the selector sees at `t`.
    pub fn at(&mut self, t: i64) -> Option<(i64, f64)> {
        if t < self.last {
            self.end = 0;
        }
        self.last = t;
        while self.end < self.samples.len() && self.samples[self.end].0 <= t {
            self.end += 1;
        }
        let (st, v) = *self.samples.get(self.end.checked_sub(1)?)?;
        Some((st, visible((st, v), t, self.left_closed)?))
    }
}

/// Whether the newest sample at or before `t` is seen by an instant selector at `t`.
pub fn visible((st, v): (i64, f64), t: i64, left_closed: bool) -> Option<f64> {
    let inside = if left_closed {
        st >= t - LOOKBACK_MS
    } else {
        st > t - LOOKBACK_MS
    };
    (inside && !is_stale(v)).then_some(v)
}

/// `samples` without stale markers (what range functions read) into `out`, cleared first:
/// its allocation is reused from series to series.
pub fn without_stale_into(samples: &[(i64, f64)], out: &mut Vec<(i64, f64)>) {
    out.clear();
    out.extend(samples.iter().copied().filter(|&(_, v)| !is_stale(v)));
}

/// Where the range `(t - range, t]` (closed `[t - range, t]` when `left_closed`, as
/// Prometheus 2.x) lies in `samples` (sorted), for times asked in increasing order (a range
/// query's steps): two cursors move forward instead of two searches at each step. A time
/// earlier than the last one asked starts them again from the first sample.
pub struct Windows<'s> {
    samples: &'s [(i64, f64)],
    range_ms: i64,
    left_closed: bool,
    start: usize,
    end: usize,
    last: i64,
}

impl<'s> Windows<'s> {
    pub fn new(samples: &'s [(i64, f64)], range_ms: i64, left_closed: bool) -> Self {
        Windows {
            samples,
            range_ms,
            left_closed,
            start: 0,
            end: 0,
            last: i64::MIN,
        }
    }

    /// The window ending at `t`.
    pub fn at(&mut self, t: i64) -> std::ops::Range<usize> {
        if t < self.last {
            (self.start, self.end) = (0, 0);
        }
        self.last = t;
        let from = t - self.range_ms;
        let before = |st: i64| {
            if self.left_closed {
                st < from
            } else {
                st <= from
            }
        };
        while self.start < self.samples.len() && before(self.samples[self.start].0) {
            self.start += 1;
        }
        self.end = self.end.max(self.start);
        while self.end < self.samples.len() && self.samples[self.end].0 <= t {
            self.end += 1;
        }
        self.start..self.end
    }
}

/// The samples of `samples` (sorted) with `min_t <= t <= max_t`.
pub fn between(samples: &[(i64, f64)], min_t: i64, max_t: i64) -> &[(i64, f64)] {
    let from = samples.partition_point(|s| s.0 < min_t);
    let to = samples.partition_point(|s| s.0 <= max_t);
    &samples[from..to.max(from)]
}

/// Sorts samples gathered from several sources by time and keeps one per timestamp (the
/// first given: sources are given oldest block first, the head last).
pub fn merge(samples: &mut Vec<(i64, f64)>) {
    if !samples.is_sorted_by_key(|s| s.0) {
        samples.sort_by_key(|s| s.0);
    }
    samples.dedup_by_key(|s| s.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_the_ranges_at_increasing_and_decreasing_times() {
        let samples: Vec<(i64, f64)> = (0..200).map(|i| (i * 7_000 + i % 3, 1.0)).collect();
        for left_closed in [false, true] {
            for range_ms in [1, 7_000, 21_000, 300_000, 5_000_000] {
                let mut windows = Windows::new(&samples, range_ms, left_closed);
                let times = (-20..400)
                    .map(|k| k * 3_500)
                    .chain([700_000, 21_000, 1_400_000]);
                for t in times {
                    // The window's samples, found one by one.
                    let inside = |st: i64| {
                        st <= t
                            && if left_closed {
                                st >= t - range_ms
                            } else {
                                st > t - range_ms
                            }
                    };
                    let expected: Vec<usize> = (0..samples.len())
                        .filter(|&i| inside(samples[i].0))
                        .collect();
                    assert_eq!(
                        windows.at(t).collect::<Vec<_>>(),
                        expected,
                        "t {t}, range {range_ms}, left-closed {left_closed}"
                    );
                }
            }
        }
    }

    #[test]
    fn lookback_and_range_on_slices() {
        let s = [
            (0, 1.0),
            (10_000, 2.0),
            (20_000, f64::from_bits(super::super::STALE_NAN_BITS)),
        ];
        let instant = |s, t, left_closed| Instants::new(s, left_closed).at(t);
        assert_eq!(instant(&s, 9_999, false).map(|(_, v)| v), Some(1.0));
        assert_eq!(instant(&s, 10_000, false).map(|(_, v)| v), Some(2.0));
        assert_eq!(
            instant(&s, 20_000, false),
            None,
            "a stale marker hides the series"
        );
        assert_eq!(instant(&s, -1, false).map(|(_, v)| v), None);
        assert_eq!(
            instant(&s[..1], LOOKBACK_MS, false).map(|(_, v)| v),
            None,
            "left-open"
        );
        assert_eq!(
            instant(&s[..1], LOOKBACK_MS, true),
            Some((0, 1.0)),
            "left-closed, with the sample's time"
        );
        // One cursor over increasing times, then an earlier one.
        let mut cursor = Instants::new(&s, false);
        let seen: Vec<_> = [-1, 0, 9_999, 10_000, 15_000, 20_000, 0]
            .map(|t| cursor.at(t).map(|(_, v)| v))
            .to_vec();
        assert_eq!(
            seen,
            [
                None,
                Some(1.0),
                Some(1.0),
                Some(2.0),
                Some(2.0),
                None,
                Some(1.0)
            ]
        );
        let mut read = Vec::new();
        without_stale_into(&s, &mut read);
        let window = |t, range_ms, left_closed| {
            read[Windows::new(&read, range_ms, left_closed).at(t)].to_vec()
        };
        assert_eq!(
            window(20_000, 10_000, false),
            [],
            "left-open; the stale marker skipped"
        );
        assert_eq!(window(20_000, 10_000, true), [(10_000, 2.0)]);
        assert_eq!(window(20_000, 20_000, true), [(0, 1.0), (10_000, 2.0)]);
        // (Times compared: the stale marker is a NaN.)
        let times =
            |min_t, max_t| -> Vec<i64> { between(&s, min_t, max_t).iter().map(|p| p.0).collect() };
        assert_eq!(times(1, 20_000), [10_000, 20_000]);
        assert_eq!(times(0, 10_000), [0, 10_000]);
        assert!(times(10_001, 19_999).is_empty());
        assert!(times(30_000, -5).is_empty(), "an empty range");
        let mut m = vec![(2, 2.0), (1, 1.0), (2, 9.0), (3, 3.0)];
        merge(&mut m);
        assert_eq!(m, [(1, 1.0), (2, 2.0), (3, 3.0)]);
    }
}
