//! One route's requests over a window, read from obs' RED histogram, and the two tests a
//! comparison needs: a one-sided two-proportion z-test (error ratios, and the share of requests
//! above a bucket bound) and the normal tail it reads.
//!
//! Latency comes as classic histogram buckets, so a latency quantile is compared where the
//! buckets can say something: the share of requests above the bucket bound nearest the
//! baseline's quantile. A slower version puts significantly more requests above that bound;
//! the interpolated quantiles (Prometheus' `histogram_quantile`) give the size of the change.

use serde::Serialize;

use crate::promql::functions::bucket_quantile;

/// One route's requests over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Window {
    /// Cumulative counts by upper bound (`le`), `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
    pub requests: f64,
    /// Responses with a 5xx status.
    pub errors: f64,
}

impl Window {
    /// The `q`-quantile as Prometheus' `histogram_quantile` computes it; `None` without
    /// requests.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.requests <= 0.0 {
            return None;
        }
        let value = bucket_quantile(q, &mut self.buckets.clone());
        value.is_finite().then_some(value)
    }

    /// 5xx responses per request; `None` without requests.
    pub fn error_ratio(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| (self.errors / self.requests).clamp(0.0, 1.0))
    }

    /// Requests slower than `bound` (above the largest bucket bound at most `bound`).
    pub fn above(&self, bound: f64) -> f64 {
        let below = self
            .buckets
            .iter()
            .filter(|(le, _)| *le <= bound)
            .map(|(_, c)| *c)
            .fold(0.0, f64::max);
        (self.requests - below).max(0.0)
    }

    /// The bucket bound nearest below the `q`-quantile (the lower bound of the bucket it is in;
    /// its upper bound when that is the first bucket): the bound a quantile test counts
    /// requests above.
    pub fn bound_of(&self, q: f64) -> Option<f64> {
        let rank = q * self.requests;
        let mut sorted = self.buckets.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let i = sorted.iter().position(|&(_, c)| c >= rank)?;
        let bound = match i {
            0 => sorted[0].0,
            i => sorted[i - 1].0,
        };
        bound.is_finite().then_some(bound)
    }
}

/// The probability that a standard normal variable exceeds `z`.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' `erfcc`: relative error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The one-sided p-value of "the share `x2 / n2` is larger than `x1 / n1`" (pooled
/// two-proportion z-test). 1 when either side is empty or both shares are 0 or 1.
pub fn proportion_increase_p(x1: f64, n1: f64, x2: f64, n2: f64) -> f64 {
    if n1 <= 0.0 || n2 <= 0.0 {
        return 1.0;
    }
    let pooled = ((x1 + x2) / (n1 + n2)).clamp(0.0, 1.0);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 || !se.is_finite() {
        return 1.0;
    }
    normal_sf((x2 / n2 - x1 / n1) / se)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(counts: &[(f64, f64)], errors: f64) -> Window {
        Window {
            buckets: counts.to_vec(),
            requests: counts.last().unwrap().1,
            errors,
        }
    }

    #[test]
    fn the_normal_tail_matches_tables() {
        for (z, p) in [
            (0.0, 0.5),
            (1.0, 0.158_655_25),
            (1.644_853_6, 0.05),
            (2.326_347_9, 0.01),
            (3.090_232_3, 0.001),
            (-1.0, 0.841_344_75),
        ] {
            assert!((normal_sf(z) - p).abs() < 1e-6, "z={z}: {}", normal_sf(z));
        }
    }

    #[test]
    fn the_proportion_test_separates_a_change_from_noise() {
        // 1% vs 2% of 10,000 requests each: z = 5.8, far beyond chance.
        assert!(proportion_increase_p(100.0, 10_000.0, 200.0, 10_000.0) < 1e-6);
        // 1% vs 1.1% of 1,000 each: well within chance.
        assert!(proportion_increase_p(10.0, 1000.0, 11.0, 1000.0) > 0.3);
        // Fewer errors is no increase.
        assert!(proportion_increase_p(200.0, 10_000.0, 100.0, 10_000.0) > 0.99);
        assert_eq!(proportion_increase_p(0.0, 100.0, 0.0, 100.0), 1.0);
        assert_eq!(proportion_increase_p(1.0, 0.0, 1.0, 10.0), 1.0);
    }

    #[test]
    fn a_window_reads_its_quantiles_and_bounds() {
        let w = window(
            &[
                (0.1, 500.0),
                (0.25, 900.0),
                (0.5, 980.0),
                (f64::INFINITY, 1000.0),
            ],
            20.0,
        );
        assert_eq!(w.error_ratio(), Some(0.02));
        // The 95th percentile is in (0.25, 0.5]: 950 is 50 of its 80.
        assert!((w.quantile(0.95).unwrap() - (0.25 + 0.25 * 50.0 / 80.0)).abs() < 1e-12);
        assert_eq!(w.bound_of(0.95), Some(0.25));
        assert_eq!(w.bound_of(0.3), Some(0.1));
        assert_eq!(w.above(0.25), 100.0);
        assert_eq!(w.above(0.3), 100.0);
        assert_eq!(Window::default().quantile(0.95), None);
        assert_eq!(Window::default().error_ratio(), None);
    }
}
