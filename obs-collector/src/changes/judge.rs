//! Comparing a route's requests on one version with its baseline: which of the error ratio
//! and the latency quantiles got worse, by at least the minimum effect and beyond chance.
//! Too little traffic on either side is "not enough data", never a verdict; no traffic at all
//! before is "no baseline".

use serde::{Deserialize, Serialize};

use super::stats::{proportion_increase_p, Window};
pub use crate::config::changes::Thresholds;

/// The latency quantiles compared, with their names.
pub const QUANTILES: [(&str, f64); 3] = [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)];

/// How a route (or a whole deploy) came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Regressed,
    NotEnoughData,
    NoBaseline,
    Unchanged,
}

impl Outcome {
    pub fn text(self) -> &'static str {
        match self {
            Outcome::Regressed => "regressed",
            Outcome::NotEnoughData => "not enough data",
            Outcome::NoBaseline => "no baseline",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// One metric that got worse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Worse {
    /// `p50`, `p95`, `p99` (seconds) or `error_ratio`.
    pub metric: String,
    pub before: f64,
    pub after: f64,
    /// Relative (`after / before - 1`) for latency, absolute (`after - before`) for the error
    /// ratio.
    pub change: f64,
    pub p_value: f64,
}

/// A route's comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteJudgement {
    /// `METHOD template`.
    pub route: String,
    pub outcome: Outcome,
    pub requests_before: f64,
    pub requests_after: f64,
    /// p95 before and after, seconds (shown for every route with data).
    pub p95_before: Option<f64>,
    pub p95_after: Option<f64>,
    /// What got worse, the largest change first.
    pub worse: Vec<Worse>,
}

/// Compares `after` with `before` for `route`.
pub fn judge(route: &str, before: &Window, after: &Window, t: &Thresholds) -> RouteJudgement {
    let mut judgement = RouteJudgement {
        route: route.to_owned(),
        outcome: Outcome::Unchanged,
        requests_before: before.requests,
        requests_after: after.requests,
        p95_before: before.quantile(0.95),
        p95_after: after.quantile(0.95),
        worse: Vec::new(),
    };
    if before.requests <= 0.0 {
        judgement.outcome = Outcome::NoBaseline;
        return judgement;
    }
    if before.requests < t.min_requests || after.requests < t.min_requests {
        judgement.outcome = Outcome::NotEnoughData;
        return judgement;
    }
    if let (Some(b), Some(a)) = (before.error_ratio(), after.error_ratio()) {
        let p = proportion_increase_p(before.errors, before.requests, after.errors, after.requests);
        if a - b >= t.error_increase && p < t.significance {
            judgement.worse.push(Worse {
                metric: "error_ratio".into(),
                before: b,
                after: a,
                change: a - b,
                p_value: p,
            });
        }
    }
    for (name, q) in QUANTILES {
        // A tail quantile needs a handful of requests in its tail on both sides.
        let tail = (1.0 - q) * before.requests.min(after.requests);
        let (Some(b), Some(a), Some(bound)) =
            (before.quantile(q), after.quantile(q), before.bound_of(q))
        else {
            continue;
        };
        if tail < 5.0 || b <= 0.0 {
            continue;
        }
        let p = proportion_increase_p(
            before.above(bound),
            before.requests,
            after.above(bound),
            after.requests,
        );
        let change = a / b - 1.0;
        if change >= t.latency_increase && a - b >= t.latency_floor && p < t.significance {
            judgement.worse.push(Worse {
                metric: name.into(),
                before: b,
                after: a,
                change,
                p_value: p,
            });
        }
    }
    if !judgement.worse.is_empty() {
        judgement.outcome = Outcome::Regressed;
        judgement
            .worse
            .sort_by(|x, y| y.change.total_cmp(&x.change));
    }
    judgement
}

#[cfg(test)]
mod tests {
    use super::*;

    /// obs' default request-duration buckets, and `+Inf`.
    fn bounds() -> impl Iterator<Item = f64> {
        obs::semconv::DURATION_BUCKETS
            .into_iter()
            .chain([f64::INFINITY])
    }

    /// `n` requests whose latencies are spread evenly over `[lo, hi]` seconds, `errors` of them 5xx.
    fn uniform(n: usize, lo: f64, hi: f64, errors: f64) -> Window {
        let latencies: Vec<f64> = (0..n)
            .map(|i| lo + (hi - lo) * (i as f64 + 0.5) / n as f64)
            .collect();
        let buckets = bounds()
            .map(|le| (le, latencies.iter().filter(|&&l| l <= le).count() as f64))
            .collect();
        Window {
            buckets,
            requests: n as f64,
            errors,
        }
    }

    #[test]
    fn a_forty_percent_slower_route_regresses_on_its_quantiles() {
        // Every request 40% slower. Within obs' wide (0.25, 0.5] bucket the interpolated p95
        // moves by less (as on a dashboard); the median shows the whole change.
        let before = uniform(20_000, 0.02, 0.3, 10.0);
        let after = uniform(8_000, 0.028, 0.42, 4.0);
        let j = judge("GET /users/{id}", &before, &after, &Thresholds::default());
        assert_eq!(j.outcome, Outcome::Regressed, "{j:?}");
        let p50 = j.worse.iter().find(|w| w.metric == "p50").unwrap();
        assert!(p50.change > 0.35 && p50.p_value < 0.01, "{p50:?}");
        assert!(j.worse.iter().all(|w| w.metric != "error_ratio"));
    }

    #[test]
    fn the_same_distribution_is_unchanged() {
        let before = uniform(20_000, 0.05, 0.3, 100.0);
        let after = uniform(5_000, 0.05, 0.3, 26.0);
        let j = judge("GET /", &before, &after, &Thresholds::default());
        assert_eq!(j.outcome, Outcome::Unchanged, "{j:?}");
    }

    #[test]
    fn errors_count_when_they_rise_by_the_minimum_and_beyond_chance() {
        let t = Thresholds::default();
        let before = uniform(10_000, 0.05, 0.2, 50.0);
        let worse = judge(
            "POST /orders",
            &before,
            &uniform(5_000, 0.05, 0.2, 150.0),
            &t,
        );
        assert_eq!(worse.outcome, Outcome::Regressed);
        assert_eq!(worse.worse[0].metric, "error_ratio");
        assert!((worse.worse[0].change - 0.025).abs() < 1e-12);
        // +0.5 percentage points is below the minimum effect, however certain.
        let small = judge(
            "POST /orders",
            &before,
            &uniform(50_000, 0.05, 0.2, 500.0),
            &t,
        );
        assert_eq!(small.outcome, Outcome::Unchanged, "{small:?}");
        // +1.5 points on 100 requests (2 errors) is within chance.
        let few = judge("POST /orders", &before, &uniform(100, 0.05, 0.2, 2.0), &t);
        assert_eq!(few.outcome, Outcome::Unchanged, "{few:?}");
    }

    #[test]
    fn too_little_traffic_gives_no_verdict() {
        let t = Thresholds::default();
        let before = uniform(10_000, 0.05, 0.2, 0.0);
        let j = judge("GET /", &before, &uniform(20, 1.0, 2.0, 20.0), &t);
        assert_eq!(j.outcome, Outcome::NotEnoughData);
        assert!(j.worse.is_empty());
        let j = judge("GET /", &Window::default(), &before, &t);
        assert_eq!(j.outcome, Outcome::NoBaseline);
    }
}
