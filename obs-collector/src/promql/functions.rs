//! The functions of a range of samples (`rate`, `increase`, `delta`, `irate`, `deriv`, the
//! `*_over_time` family, ...) and `histogram_quantile`, as Prometheus computes them
//! (`promql/functions.go`, `promql/quantile.go` `BucketQuantile`).

use super::RangeFunc;
use crate::store::querier::Windows;

/// `func` of the window of `samples` (stale markers left out) ending at each of `times`, in
/// order (`param`: its value at each, see [`over_window`]), and each window's sample count to
/// `lens` (cleared first). One loop per function: a week of a dashboard's `rate` is tens of
/// millions of windows, each a few nanoseconds once the function is inlined in it.
pub fn over_windows(
    func: RangeFunc,
    samples: &[(i64, f64)],
    times: &[i64],
    range_ms: i64,
    param: Option<&[f64]>,
    v2: bool,
    lens: &mut Vec<u32>,
) -> Vec<Option<f64>> {
    fn each(
        samples: &[(i64, f64)],
        times: &[i64],
        (range_ms, v2): (i64, bool),
        lens: &mut Vec<u32>,
        mut f: impl FnMut(&[(i64, f64)], usize, i64) -> Option<f64>,
    ) -> Vec<Option<f64>> {
        let mut windows = Windows::new(samples, range_ms, v2);
        let mut points = Vec::with_capacity(times.len());
        lens.clear();
        for (i, &t) in times.iter().enumerate() {
            let window = &samples[windows.at(t)];
            lens.push(window.len() as u32);
            points.push(f(window, i, t));
        }
        points
    }
    let extrapolated =
        |kind| move |w: &[(i64, f64)], _, t| extrapolated_rate(w, t, range_ms, kind, v2);
    let setup = (range_ms, v2);
    match func {
        RangeFunc::Rate => each(samples, times, setup, lens, extrapolated(Kind::Rate)),
        RangeFunc::Increase => each(samples, times, setup, lens, extrapolated(Kind::Increase)),
        RangeFunc::Delta => each(samples, times, setup, lens, extrapolated(Kind::Delta)),
        _ => each(samples, times, setup, lens, |w, i, t| {
            let q = param.map_or(0.0, |p| p[i]);
            over_window(func, w, (t, range_ms), q, v2)
        }),
    }
}

/// `func` of the samples of one series in one window (stale markers left out) ending at `t`;
/// `param` is `quantile_over_time`'s quantile or `predict_linear`'s seconds ahead; `v2`: as
/// Prometheus 2.x extrapolates (see [`extrapolated_rate`]).
pub fn over_window(
    func: RangeFunc,
    window: &[(i64, f64)],
    (t_ms, range_ms): (i64, i64),
    param: f64,
    v2: bool,
) -> Option<f64> {
    let values = || window.iter().map(|&(_, v)| v);
    let last = window.last().copied();
    Some(match func {
        RangeFunc::Rate => extrapolated_rate(window, t_ms, range_ms, Kind::Rate, v2)?,
        RangeFunc::Increase => extrapolated_rate(window, t_ms, range_ms, Kind::Increase, v2)?,
        RangeFunc::Delta => extrapolated_rate(window, t_ms, range_ms, Kind::Delta, v2)?,
        RangeFunc::Irate | RangeFunc::Idelta => {
            let [.., (t0, v0), (t1, v1)] = window else {
                return None;
            };
            if func == RangeFunc::Idelta {
                v1 - v0
            } else {
                let interval = (t1 - t0) as f64 / 1000.0;
                if interval == 0.0 {
                    return None;
                }
                // A decrease is a reset: the counter counted from zero.
                (if v1 < v0 { *v1 } else { v1 - v0 }) / interval
            }
        }
        RangeFunc::Deriv => {
            if window.len() < 2 {
                return None;
            }
            linear_regression(window, window[0].0).0
        }
        RangeFunc::PredictLinear => {
            if window.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(window, t_ms);
            slope * param + intercept
        }
        RangeFunc::Resets => {
            last?;
            window.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64
        }
        RangeFunc::Changes => {
            last?;
            window
                .windows(2)
                .filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()))
                .count() as f64
        }
        RangeFunc::AvgOverTime => {
            last?;
            incremental_mean(values())
        }
        RangeFunc::SumOverTime => {
            last?;
            values().sum()
        }
        RangeFunc::MinOverTime => {
            last?;
            values().fold(f64::NAN, |m, v| if m > v || m.is_nan() { v } else { m })
        }
        RangeFunc::MaxOverTime => {
            last?;
            values().fold(f64::NAN, |m, v| if m < v || m.is_nan() { v } else { m })
        }
        RangeFunc::CountOverTime => {
            last?;
            window.len() as f64
        }
        RangeFunc::QuantileOverTime => {
            last?;
            quantile(param, &mut values().collect::<Vec<_>>())
        }
        RangeFunc::StdvarOverTime => {
            last?;
            variance(values())
        }
        RangeFunc::StddevOverTime => {
            last?;
            variance(values()).sqrt()
        }
        RangeFunc::LastOverTime => last?.1,
        RangeFunc::PresentOverTime => {
            last?;
            1.0
        }
        // Decided over every series, by the evaluator.
        RangeFunc::AbsentOverTime => return None,
    })
}

/// The mean as Prometheus 2 computes it: incrementally (no overflow to infinity on the way),
/// an infinity kept against finite values.
pub fn incremental_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (mut mean, mut count) = (0.0f64, 0.0f64);
    for v in values {
        count += 1.0;
        if count == 1.0 {
            mean = v;
            continue;
        }
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        mean += v / count - mean / count;
    }
    mean
}

/// The population variance (Welford's running mean, as Prometheus).
pub fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut aux) = (0.0f64, 0.0f64, 0.0f64);
    for v in values {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        aux += delta * (v - mean);
    }
    aux / count
}

/// The φ-quantile of `values`, interpolated between the two nearest ranks (Prometheus'
/// `quantile`): -Inf below 0, +Inf above 1.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// The least-squares line through `samples`, x in seconds from `intercept_ms`: its slope and
/// its value at `intercept_ms` (Kahan-summed, as Prometheus).
fn linear_regression(samples: &[(i64, f64)], intercept_ms: i64) -> (f64, f64) {
    let first = samples[0].1;
    if samples.iter().all(|&(_, v)| v == first) {
        if first.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, first);
    }
    let mut n = 0.0;
    let (mut x, mut y, mut xy, mut x2) = (
        Kahan::default(),
        Kahan::default(),
        Kahan::default(),
        Kahan::default(),
    );
    for &(t, v) in samples {
        n += 1.0;
        let dx = (t - intercept_ms) as f64 / 1000.0;
        x.add(dx);
        y.add(v);
        xy.add(dx * v);
        x2.add(dx * dx);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (x.sum(), y.sum(), xy.sum(), x2.sum());
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    (slope, sum_y / n - slope * sum_x / n)
}

/// Kahan-Babuška (Neumaier) compensated summation, Prometheus' `kahanSumInc`.
#[derive(Default)]
struct Kahan {
    sum: f64,
    c: f64,
}

impl Kahan {
    fn add(&mut self, v: f64) {
        let t = self.sum + v;
        if t.is_infinite() {
            self.c = 0.0;
        } else if self.sum.abs() >= v.abs() {
            self.c += (self.sum - t) + v;
        } else {
            self.c += (v - t) + self.sum;
        }
        self.sum = t;
    }

    fn sum(&self) -> f64 {
        self.sum + self.c
    }
}

/// Which of the extrapolated functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rate,
    Increase,
    /// A gauge's change: no counter resets, no floor at zero.
    Delta,
}

/// `increase`, `rate` or `delta` of one series over the samples of the range
/// `(t - range, t]`; `None` with fewer than two samples. A counter is not extrapolated below
/// zero: Prometheus 3 applies that limit after the limit of half a sample interval, 2.x
/// (`v2`) before it.
#[inline]
pub fn extrapolated_rate(
    samples: &[(i64, f64)],
    t_ms: i64,
    range_ms: i64,
    kind: Kind,
    v2: bool,
) -> Option<f64> {
    let counter = kind != Kind::Delta;
    if samples.len() < 2 {
        return None;
    }
    let (first_t, first_v) = samples[0];
    let (last_t, last_v) = samples[samples.len() - 1];
    let mut result = last_v - first_v;
    // Counter resets: any decrease means the counter restarted from zero.
    let mut prev = first_v;
    for &(_, v) in &samples[1..] {
        if counter && v < prev {
            result += prev;
        }
        prev = v;
    }
    // Differences of whole milliseconds, then seconds, as Prometheus rounds them.
    let mut duration_to_start = (first_t - (t_ms - range_ms)) as f64 / 1000.0;
    let mut duration_to_end = (t_ms - last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let average_between = sampled_interval / (samples.len() - 1) as f64;
    let threshold = average_between * 1.1;
    let zero_limit = |to_start: f64| {
        if counter && result > 0.0 && first_v >= 0.0 {
            // Do not extrapolate below zero: the counter cannot have been negative.
            to_start.min(sampled_interval * (first_v / result))
        } else {
            to_start
        }
    };
    if v2 {
        duration_to_start = zero_limit(duration_to_start);
    }
    if duration_to_start >= threshold {
        duration_to_start = average_between / 2.0;
    }
    if !v2 {
        duration_to_start = zero_limit(duration_to_start);
    }
    if duration_to_end >= threshold {
        duration_to_end = average_between / 2.0;
    }
    // The factor is divided by the range before it multiplies, as in Prometheus: the last bit
    // depends on the order.
    let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if kind == Kind::Rate {
        factor /= range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// The φ-quantile of classic histogram buckets given as `(upper bound, cumulative count)`, as
/// Prometheus 3 computes it: counts within 1e-12 relative of the previous bucket's taken as
/// equal to it (floating point noise of `rate`), either way.
pub fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    bucket_quantile_with(q, buckets, 1e-12)
}

/// [`bucket_quantile`] with that tolerance; 0 is Prometheus 2.x's (only a decrease is
/// corrected).
pub fn bucket_quantile_with(q: f64, buckets: &mut Vec<(f64, f64)>, tolerance: f64) -> f64 {
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
    ensure_monotonic(buckets, tolerance);
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

/// Cumulative counts must not decrease; a decrease (or a difference within `tolerance`
/// relative) is replaced by the previous count.
fn ensure_monotonic(buckets: &mut [(f64, f64)], tolerance: f64) {
    let Some(&(_, first)) = buckets.first() else {
        return;
    };
    let mut prev = first;
    for bucket in buckets.iter_mut().skip(1) {
        let cur = bucket.1;
        if cur == prev || (cur - prev).abs() <= tolerance * cur.abs().max(prev.abs()) || cur < prev
        {
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
        extrapolated_rate(&in_range(s, t, range), t, range, Kind::Increase, false)
    }

    fn rate(s: &[(i64, f64)], t: i64, range: i64) -> Option<f64> {
        extrapolated_rate(&in_range(s, t, range), t, range, Kind::Rate, false)
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
