//! The in-memory time-series store: one bounded ring of samples per series.
//!
//! Samples older than the retention (the longest range any rule reads, plus the 5-minute
//! lookback and a margin) are dropped on append; a series whose newest sample is older than
//! the retention is removed. A series that disappears from its target gets a stale marker, as
//! in Prometheus, so instant queries stop returning it at once.

use std::collections::{HashMap, VecDeque};

use crate::labels::Labels;

/// Prometheus' StaleNaN: a NaN with a specific payload, distinct from an ordinary NaN value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// How far back an instant selector looks for a sample (Prometheus' default lookback delta).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Whether `v` is a stale marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The stale marker value.
pub fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// One series: its labels and its samples, oldest first.
#[derive(Debug)]
pub struct Series {
    pub labels: Labels,
    pub samples: VecDeque<(i64, f64)>,
}

/// All series, indexed by metric name then label set.
#[derive(Debug)]
pub struct Store {
    by_name: HashMap<String, HashMap<Labels, Series>>,
    retention_ms: i64,
    samples: usize,
    /// Prometheus 2.x selection: ranges and the lookback closed on the left too.
    pub left_closed: bool,
}

impl Store {
    /// A store keeping samples for `retention_ms`.
    pub fn new(retention_ms: i64) -> Self {
        Self {
            by_name: HashMap::new(),
            retention_ms,
            samples: 0,
            left_closed: false,
        }
    }

    /// Appends a sample (timestamps must not go backwards within a series; older ones are
    /// ignored, as Prometheus rejects out-of-order samples).
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) {
        let name = labels.name().unwrap_or_default();
        if is_stale(v)
            && !self
                .by_name
                .get(name)
                .is_some_and(|m| m.contains_key(labels))
        {
            return; // nothing to mark stale
        }
        let by_labels = match self.by_name.get_mut(name) {
            Some(m) => m,
            None => self.by_name.entry(name.to_owned()).or_default(),
        };
        let series = match by_labels.get_mut(labels) {
            Some(s) => s,
            None => by_labels.entry(labels.clone()).or_insert_with(|| Series {
                labels: labels.clone(),
                samples: VecDeque::with_capacity(8),
            }),
        };
        if let Some(&(last_t, last_v)) = series.samples.back() {
            if t < last_t || (t == last_t && (is_stale(v) || last_v.to_bits() == v.to_bits())) {
                return;
            }
            if t == last_t {
                series.samples.pop_back();
                self.samples -= 1;
            }
        }
        series.samples.push_back((t, v));
        self.samples += 1;
        let cutoff = t - self.retention_ms;
        while series.samples.front().is_some_and(|&(st, _)| st <= cutoff) {
            series.samples.pop_front();
            self.samples -= 1;
        }
    }

    /// Drops samples (and then series) older than the retention before `now`.
    pub fn compact(&mut self, now: i64) {
        let cutoff = now - self.retention_ms;
        let mut removed = 0;
        for by_labels in self.by_name.values_mut() {
            by_labels.retain(|_, s| {
                while s.samples.front().is_some_and(|&(t, _)| t <= cutoff) {
                    s.samples.pop_front();
                    removed += 1;
                }
                !s.samples.is_empty()
            });
        }
        self.by_name.retain(|_, m| !m.is_empty());
        self.samples -= removed;
    }

    /// Series whose name is `name` (all series when `None`).
    pub fn series<'a>(&'a self, name: Option<&str>) -> Box<dyn Iterator<Item = &'a Series> + 'a> {
        match name {
            Some(n) => Box::new(self.by_name.get(n).into_iter().flat_map(|m| m.values())),
            None => Box::new(self.by_name.values().flat_map(|m| m.values())),
        }
    }

    pub fn series_count(&self) -> usize {
        self.by_name.values().map(HashMap::len).sum()
    }

    pub fn sample_count(&self) -> usize {
        self.samples
    }

    /// Approximate heap bytes held by the store.
    pub fn memory_bytes(&self) -> usize {
        self.by_name
            .values()
            .flat_map(|m| m.values())
            .map(|s| s.labels.heap_bytes() * 2 + s.samples.capacity() * 16 + 96)
            .sum()
    }
}

impl Series {
    /// The value an instant selector sees at `t`: the newest sample in `(t - lookback, t]`
    /// (`[t - lookback, t]` when `left_closed`, as Prometheus 2.x), unless it is a stale marker.
    pub fn instant(&self, t: i64, left_closed: bool) -> Option<f64> {
        let end = self.samples.partition_point(|&(st, _)| st <= t);
        let &(st, v) = self.samples.get(end.checked_sub(1)?)?;
        let inside = if left_closed {
            st >= t - LOOKBACK_MS
        } else {
            st > t - LOOKBACK_MS
        };
        (inside && !is_stale(v)).then_some(v)
    }

    /// Samples in the left-open range `(t - range, t]` (closed `[t - range, t]` when
    /// `left_closed`, as Prometheus 2.x), stale markers skipped.
    pub fn range(&self, t: i64, range_ms: i64, left_closed: bool) -> Vec<(i64, f64)> {
        let start = if left_closed {
            self.samples.partition_point(|&(st, _)| st < t - range_ms)
        } else {
            self.samples.partition_point(|&(st, _)| st <= t - range_ms)
        };
        let end = self.samples.partition_point(|&(st, _)| st <= t);
        self.samples
            .range(start..end)
            .copied()
            .filter(|&(_, v)| !is_stale(v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Labels {
        Labels::from_pairs(&[("__name__", "up"), ("job", "a")])
    }

    #[test]
    fn instant_lookback_and_staleness() {
        let mut s = Store::new(10 * 60_000);
        s.append(&up(), 0, 1.0);
        s.append(&up(), 10_000, 2.0);
        let series = s.series(Some("up")).next().unwrap();
        assert_eq!(series.instant(9_999, false), Some(1.0));
        assert_eq!(series.instant(10_000, false), Some(2.0));
        assert_eq!(series.instant(10_000 + LOOKBACK_MS - 1, false), Some(2.0));
        assert_eq!(
            series.instant(10_000 + LOOKBACK_MS, false),
            None,
            "lookback is left-open"
        );
        s.append(&up(), 20_000, stale());
        let series = s.series(Some("up")).next().unwrap();
        assert_eq!(
            series.instant(20_000, false),
            None,
            "a stale marker ends the series at once"
        );
        assert_eq!(
            series.range(20_000, 60_000, false),
            vec![(0, 1.0), (10_000, 2.0)],
            "range skips stale markers"
        );
        assert_eq!(
            series.range(10_000, 10_000, false),
            vec![(10_000, 2.0)],
            "range is left-open"
        );
        assert_eq!(
            series.range(10_000, 10_000, true),
            vec![(0, 1.0), (10_000, 2.0)],
            "2.x: closed"
        );
    }

    #[test]
    fn retention_bounds_memory() {
        let mut s = Store::new(60_000);
        for i in 0..1000 {
            s.append(&up(), i * 15_000, i as f64);
        }
        assert_eq!(s.sample_count(), 4, "only samples newer than 60 s are kept");
        s.compact(1000 * 15_000 + 120_000);
        assert_eq!((s.series_count(), s.sample_count()), (0, 0));
    }

    #[test]
    fn out_of_order_and_duplicate_samples_are_ignored() {
        let mut s = Store::new(60_000);
        s.append(&up(), 10, 1.0);
        s.append(&up(), 5, 9.0);
        s.append(&up(), 10, 1.0);
        assert_eq!(s.sample_count(), 1);
        let mut fresh = Store::new(60_000);
        fresh.append(&up(), 10, stale());
        assert_eq!(
            fresh.series_count(),
            0,
            "a stale marker alone creates nothing"
        );
    }
}
