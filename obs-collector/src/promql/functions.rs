//! `rate`, `increase` and `histogram_quantile`, exactly as Prometheus 3 computes them
//! (`promql/functions.go` `extrapolatedRate`, `promql/quantile.go` `BucketQuantile`).

/// `increase` (or `rate` when `per_second`) of one counter over the samples of the left-open
/// range `(t - range, t]`; `None` with fewer than two samples.
pub fn extrapolated_rate(
    samples: &[(i64, f64)],
    t_ms: i64,
    range_ms: i64,
    per_second: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let range_start = (t_ms - range_ms) as f64 / 1000.0;
    let range_end = t_ms as f64 / 1000.0;
    let (first_t, first_v) = samples[0];
    let (last_t, last_v) = samples[samples.len() - 1];
    let mut result = last_v - first_v;
    // Counter resets: any decrease means the counter restarted from zero.
    let mut prev = first_v;
    for &(_, v) in &samples[1..] {
        if v < prev {
            result += prev;
        }
        prev = v;
    }
    let first_t = first_t as f64 / 1000.0;
    let last_t = last_t as f64 / 1000.0;
    let mut duration_to_start = first_t - range_start;
    let mut duration_to_end = range_end - last_t;
    let sampled_interval = last_t - first_t;
    let average_between = sampled_interval / (samples.len() - 1) as f64;
    let threshold = average_between * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = average_between / 2.0;
    }
    if result > 0.0 && first_v >= 0.0 {
        // Do not extrapolate below zero: the counter cannot have been negative.
        let duration_to_zero = sampled_interval * (first_v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = average_between / 2.0;
    }
    let factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    let mut value = result * factor;
    if per_second {
        value /= range_ms as f64 / 1000.0;
    }
    Some(value)
}

/// The φ-quantile of classic histogram buckets given as `(upper bound, cumulative count)`.
pub fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce buckets with the same bound (e.g. le="0.2" and le="2e-1").
    buckets.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 += later.1;
            true
        } else {
            false
        }
    });
    ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = buckets.len();
    let b = buckets[..n - 1]
        .iter()
        .position(|&(_, c)| c >= rank)
        .unwrap_or(n - 1);
    if b == n - 1 {
        return buckets[n - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut bucket_start, mut bucket_end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        bucket_start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    if bucket_end == bucket_start {
        bucket_end = bucket_start; // unreachable after dedup; keeps the formula total
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

/// Cumulative counts must not decrease; a decrease (or a difference within 1e-12 relative)
/// is replaced by the previous count.
fn ensure_monotonic(buckets: &mut [(f64, f64)]) {
    let Some(&(_, first)) = buckets.first() else {
        return;
    };
    let mut prev = first;
    for bucket in buckets.iter_mut().skip(1) {
        let cur = bucket.1;
        if cur == prev || (cur - prev).abs() <= 1e-12 * cur.abs().max(prev.abs()) || cur < prev {
            bucket.1 = prev;
        } else {
            prev = cur;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// Prometheus' `start+stepxN` series notation at a 5m interval, as `(t_ms, v)`.
    fn series(values: &[f64], interval_ms: i64) -> Vec<(i64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * interval_ms, v))
            .collect()
    }

    fn expand(start: f64, step: f64, n: usize) -> Vec<f64> {
        (0..=n).map(|i| start + step * i as f64).collect()
    }

    fn in_range(s: &[(i64, f64)], t: i64, range: i64) -> Vec<(i64, f64)> {
        s.iter()
            .copied()
            .filter(|&(st, _)| st > t - range && st <= t)
            .collect()
    }

    fn increase(s: &[(i64, f64)], t: i64, range: i64) -> Option<f64> {
        extrapolated_rate(&in_range(s, t, range), t, range, false)
    }

    fn rate(s: &[(i64, f64)], t: i64, range: i64) -> Option<f64> {
        extrapolated_rate(&in_range(s, t, range), t, range, true)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    // Expected values from prometheus/promql/promqltest/testdata/functions.test.
    #[test]
    fn increase_matches_prometheus_test_data() {
        let five = 5 * MIN;
        let foobar = series(&expand(0.0, 10.0, 10), five);
        let mut resets = expand(0.0, 18.0, 5);
        resets.extend(expand(0.0, 18.0, 5));
        let bumms = series(&resets, five);
        let zeros = series(&expand(10.0, 10.0, 10), five);
        let ones = series(&expand(1.0, 10.0, 10), five);
        for (s, expected_50, expected_100) in [
            (&foobar, 100.0, 100.0),
            (&bumms, 160.0, 162.0),
            (&zeros, 100.0, 105.0),
            (&ones, 100.0, 101.0),
        ] {
            assert!(close(increase(s, 50 * MIN, 50 * MIN).unwrap(), expected_50));
            assert!(
                close(increase(s, 50 * MIN, 100 * MIN).unwrap(), expected_100),
                "{:?}",
                increase(s, 50 * MIN, 100 * MIN)
            );
        }
        let reset = series(&[0.0, 1.0, 2.0, 3.0, 2.0, 3.0, 4.0], five);
        assert!(close(increase(&reset, 30 * MIN, 30 * MIN).unwrap(), 7.0));
    }

    #[test]
    fn rate_matches_prometheus_test_data() {
        let five = 5 * MIN;
        let mut v = expand(0.0, 27.0, 4);
        v.extend(expand(0.0, 27.0, 5));
        assert!(close(
            rate(&series(&v, five), 50 * MIN, 50 * MIN).unwrap(),
            0.08
        ));
        let mut v = expand(0.0, 10.0, 9);
        v.extend([0.0, 10.0]);
        let s = series(&v, five);
        assert_eq!(
            rate(&s, 50 * MIN, 5 * MIN),
            None,
            "one sample in a left-open 5m range"
        );
        assert_eq!(rate(&s, 50 * MIN, 6 * MIN), Some(0.0));
        let s = series(&expand(0.0, 80.0, 10), five);
        assert!(close(
            rate(&s, 50 * MIN, 50 * MIN).unwrap(),
            0.26666666666666666
        ));
        // Counters whose zero lies at different times before the first sample (4m interval):
        // the left extrapolation stops at zero. rate[20m] at 10m.
        for (start_min, initial, expected) in [
            (0, 0.0, 0.5),
            (1, 60.0, 0.55),
            (2, 120.0, 0.6),
            (3, 180.0, 0.6),
            (4, 240.0, 0.6),
            (5, 300.0, 0.6),
        ] {
            let s: Vec<(i64, f64)> = (0..=10)
                .map(|i| (i * 4 * MIN, initial + 240.0 * i as f64))
                .collect();
            assert!(
                close(rate(&s, 10 * MIN, 20 * MIN).unwrap(), expected),
                "start {start_min}m"
            );
            assert!(
                close(rate(&s, 50 * MIN, 20 * MIN).unwrap(), 0.6),
                "start {start_min}m @50m"
            );
        }
    }

    fn hq(q: f64, buckets: &[(f64, f64)]) -> f64 {
        bucket_quantile(q, &mut buckets.to_vec())
    }

    // Expected values from prometheus/promql/promqltest/testdata/histograms.test.
    #[test]
    fn histogram_quantile_matches_prometheus_test_data() {
        let inf = f64::INFINITY;
        let b = [
            (0.0, 0.0),
            (0.1, 50.0),
            (0.2, 70.0),
            (1.0, 110.0),
            (inf, 110.0),
        ];
        for (q, want) in [
            (0.0, 0.0),
            (0.25, 0.055),
            (0.5, 0.125),
            (0.75, 0.45),
            (1.0, 1.0),
        ] {
            assert!(close(hq(q, &b), want), "q={q}: {}", hq(q, &b));
        }
        let b = [(0.1, 50.0), (0.2, 70.0), (1.0, 110.0), (inf, 120.0)];
        for (q, want) in [(0.2, 0.048), (0.5, 0.15), (0.8, 0.72), (1.0, 1.0)] {
            assert!(close(hq(q, &b), want), "q={q}: {}", hq(q, &b));
        }
        let b = [(-0.2, 10.0), (-0.1, 20.0), (0.3, 20.0), (inf, 30.0)];
        assert!(close(hq(0.0, &b), -0.2));
        assert!(close(hq(0.5, &b), -0.15));
        assert!(close(hq(0.8, &b), 0.3));
        assert_eq!(hq(-0.1, &b), f64::NEG_INFINITY);
        assert_eq!(hq(1.1, &b), f64::INFINITY);
        let b = [
            (0.1, 20.0),
            (1.0, 10.0),
            (10.0, 50.0),
            (100.0, 40.0),
            (1000.0, 90.0),
            (inf, 80.0),
        ];
        for (q, want) in [(0.01, 0.0045), (0.5, 8.5), (0.99, 979.75)] {
            assert!(close(hq(q, &b), want), "nonmonotonic q={q}: {}", hq(q, &b));
        }
        let b = [(0.1, 10.0), (0.2, 19.0), (inf, 25.0)];
        assert!(close(hq(0.3, &b), 0.075));
        assert!(close(hq(0.5, &b), 0.1277777777777778));
        let b = [(0.1, 1.0), (0.2, 1.0), (0.2, 1.0), (0.2, 1.0), (inf, 4.0)];
        for (q, want) in [(0.5, 0.15), (0.75, 0.2), (1.0, 0.2)] {
            assert!(close(hq(q, &b), want), "coalesced q={q}: {}", hq(q, &b));
        }
        assert!(
            hq(0.5, &[(0.1, 0.0), (inf, 0.0)]).is_nan(),
            "no observations"
        );
        assert!(
            hq(0.5, &[(0.1, 3.0), (1.0, 5.0)]).is_nan(),
            "no +Inf bucket"
        );
        assert!(hq(f64::NAN, &b).is_nan());
    }

    #[test]
    fn the_default_2s_bucket_decides_p95_exactly() {
        let inf = f64::INFINITY;
        // 96 fast, 4 at 3 s: rank 95 falls in the fast bucket.
        let fast = [
            (0.01, 96.0),
            (2.0, 96.0),
            (2.5, 96.0),
            (5.0, 100.0),
            (inf, 100.0),
        ];
        assert!(hq(0.95, &fast) <= 0.01);
        // 90 fast, 10 at 3 s: rank 95 is the 5th of 10 in (2.5, 5].
        let slow = [
            (0.01, 90.0),
            (2.0, 90.0),
            (2.5, 90.0),
            (5.0, 100.0),
            (inf, 100.0),
        ];
        assert!(close(hq(0.95, &slow), 3.75));
    }
}
