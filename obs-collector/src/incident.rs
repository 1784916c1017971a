//! The incident's context: for an alert of a rule over obs' RED histogram (an error ratio or a
//! latency quantile of `http_server_request_duration_seconds`), the routes behind it, the
//! rule's value per served version (the canary verdict) and its value now, read over the rule's
//! own window from the data the rule read (the local store or the backend, through the same
//! [`crate::promql::Querier`]).
//!
//! A [`Plan`] is read off the rule's expression: what it measures, over which matchers and
//! window. A rule that does not read obs' histogram has none, and its alerts get no routes and
//! no per-version values: nothing is invented. The plan's queries keep the alert's own labels
//! (`job`, and whatever else the rule groups by) and group by instance and route (and `le`);
//! the breakdown is done here, so one query (latency) or two (errors) per alert and transition
//! answer the routes, the versions and the value.

use std::borrow::Cow;
use std::collections::HashMap;

use obs::semconv::{
    HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE, HTTP_SERVER_REQUEST_DURATION,
};
use promql_parser::label::Matcher;
use serde::{Deserialize, Serialize};

use crate::labels::{Labels, NAME};
use crate::promql::functions::bucket_quantile;
use crate::promql::{self, BinOp, Expr, Sample};
use crate::rules::template::go_g;
use crate::rules::AlertingRule;
use crate::text::cut;
use crate::time::promql_duration;

/// Routes named behind an alert, at most.
pub const ROUTES: usize = 3;
/// The longest route template shown (a longer one is cut, and not put in a dashboard link).
pub const ROUTE_CHARS: usize = 100;
/// The longest method shown (obs bounds methods; a foreign target may not).
const METHOD_CHARS: usize = 16;

/// What a rule over obs' histogram measures.
#[derive(Debug, Clone)]
enum Measure {
    /// A ratio of failed requests: the numerator's matchers and the denominator's.
    Errors {
        failed: Vec<Matcher>,
        all: Vec<Matcher>,
    },
    /// The `q`-quantile of the durations, over the selector's matchers.
    Latency { q: f64, all: Vec<Matcher> },
    /// Anything else: its alerts get the window only, no routes and no versions.
    Other,
}

/// How to read an alert's context, from its rule.
#[derive(Debug, Clone)]
pub struct Plan {
    measure: Measure,
    window_ms: i64,
    threshold: Option<f64>,
    /// The rule's own labels (`severity`), which are no series' labels.
    static_labels: Vec<String>,
}

/// An alert's context at one time (its onset, or its resolution), rendered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Up to [`ROUTES`] routes, worst first, each with its numbers
    /// ("POST /checkout: 79.2% of its requests failed, 92.1% of the failures").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// The worst route's template, for the dashboard's `var-route`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_route: Option<String>,
    /// The rule's value per served version, worst first, when more than one version serves
    /// ("1.1.0: 38.2% errors; 1.0.0: 0.3% errors").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_version: Option<String>,
    /// The rule's value over the window, in its unit ("0.3% errors", "p95 180ms").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The window the numbers are over ("1m").
    #[serde(default)]
    pub window: String,
    /// At a resolution: the version change during the incident ("after the rollback to 1.0.0").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

fn series(suffix: &str) -> String {
    format!("{HTTP_SERVER_REQUEST_DURATION}{suffix}")
}

/// The matchers of the one selector `expr` reads, when it is obs' histogram's `suffix` series.
fn matchers_of(expr: &Expr, suffix: &str) -> Option<Vec<Matcher>> {
    let [selector] = expr.selectors()[..] else {
        return None;
    };
    if selector.name.as_deref() != Some(series(suffix).as_str()) || selector.offset_ms != 0 {
        return None;
    }
    Some(
        selector
            .matchers
            .iter()
            .filter(|m| m.name != NAME)
            .cloned()
            .collect(),
    )
}

impl Plan {
    /// The plan for `rule`'s alerts: routes and versions when it compares obs' error ratio or
    /// a latency quantile against a threshold, the window only for another rule that reads a
    /// range, none for one that reads none (`up == 0`).
    pub fn of(rule: &AlertingRule) -> Option<Self> {
        let compared = rule.expr.compared_value().map(|(value, _)| value);
        let value = compared.unwrap_or(&rule.expr);
        let window_ms = value.max_range_ms();
        let measure = Self::measure(compared).unwrap_or(Measure::Other);
        if matches!(measure, Measure::Other) && window_ms == 0 {
            return None;
        }
        Some(Self {
            measure,
            window_ms,
            threshold: rule.expr.threshold(),
            static_labels: rule.labels.iter().map(|(name, _)| name.clone()).collect(),
        })
    }

    /// Whether the rule reads obs' RED histogram (an error ratio or a latency quantile): only
    /// then do its alerts get routes, versions and the deploy line.
    pub fn reads_red(&self) -> bool {
        !matches!(self.measure, Measure::Other)
    }

    /// Whether `value` is obs' error ratio or a latency quantile, and over which matchers.
    fn measure(value: Option<&Expr>) -> Option<Measure> {
        Some(match value? {
            Expr::Binary {
                op: BinOp::Div,
                lhs,
                rhs,
                ..
            } => {
                let failed = matchers_of(lhs, "_count")?;
                let all = matchers_of(rhs, "_count")?;
                // A ratio whose numerator picks status codes: the errors.
                failed
                    .iter()
                    .any(|m| m.name == HTTP_RESPONSE_STATUS_CODE)
                    .then_some(Measure::Errors { failed, all })?
            }
            Expr::HistogramQuantile { q, v } => match q.as_ref() {
                Expr::Number(q) => Measure::Latency {
                    q: *q,
                    all: matchers_of(v, "_bucket")?,
                },
                _ => return None,
            },
            _ => return None,
        })
    }

    /// The PromQL queries for an alert with `labels`, in the order [`Plan::read`] takes their
    /// answers: one for a latency alert, two (failed, all) for an error alert.
    pub fn queries(&self, labels: &Labels) -> Vec<String> {
        let scope: Vec<String> = labels
            .iter()
            .filter(|(name, _)| {
                *name != "alertname" && !self.static_labels.iter().any(|s| s == name)
            })
            .map(|(name, value)| format!("{name}={}", promql::quote(value)))
            .collect();
        let window = promql_duration(self.window_ms.max(1));
        let query = |suffix: &str, matchers: &[Matcher], by: &str| {
            let all: Vec<String> = scope
                .iter()
                .cloned()
                .chain(matchers.iter().map(promql::matcher_text))
                .collect();
            format!(
                "sum by (instance, {HTTP_ROUTE}, {HTTP_REQUEST_METHOD}{by}) (increase({}{{{}}}[{window}]))",
                series(suffix),
                all.join(",")
            )
        };
        match &self.measure {
            Measure::Errors { failed, all } => {
                vec![query("_count", failed, ""), query("_count", all, "")]
            }
            Measure::Latency { all, .. } => vec![query("_bucket", all, ", le")],
            Measure::Other => Vec::new(),
        }
    }

    /// The context from the `answers` to [`Plan::queries`], `version_of` an instance saying
    /// what it serves.
    pub fn read(
        &self,
        answers: &[Vec<Sample>],
        version_of: &dyn Fn(&str) -> Option<String>,
    ) -> Incident {
        let mut incident = match (&self.measure, answers) {
            (Measure::Errors { .. }, [failed, all]) => errors(failed, all, version_of),
            (Measure::Latency { q, .. }, [buckets]) => {
                latency(*q, self.threshold, buckets, version_of)
            }
            _ => Incident::default(),
        };
        incident.window = promql_duration(self.window_ms);
        incident
    }
}

/// A series' route as shown: its method and template, bounded; `(no route)` when the request
/// matched none.
fn route_of(labels: &Labels) -> (String, Option<String>) {
    let method = cut(
        labels.get(HTTP_REQUEST_METHOD).unwrap_or_default(),
        METHOD_CHARS,
    );
    let template = labels.get(HTTP_ROUTE);
    let shown = cut(template.unwrap_or("(no route)"), ROUTE_CHARS);
    // A template shown whole (not cut) is the one a dashboard variable can select.
    let raw = match (&shown, template) {
        (Cow::Borrowed(whole), Some(_)) => Some((*whole).to_owned()),
        _ => None,
    };
    (format!("{method} {shown}").trim_start().to_owned(), raw)
}

/// `x` (a ratio) as a percentage.
fn percent(x: f64) -> String {
    format!("{}%", go_g(x * 100.0, 3))
}

/// `s` seconds, in seconds from one second up, else in milliseconds.
fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{}s", go_g(s, 3))
    } else {
        format!("{}ms", go_g(s * 1000.0, 3))
    }
}

/// `(key, value)` pairs as "key: value; ...".
fn listed(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Default, Clone, Copy)]
struct Tally {
    failed: f64,
    all: f64,
}

fn usable(s: &Sample) -> bool {
    s.value.is_finite() && s.value >= 0.0
}

fn errors(
    failed: &[Sample],
    all: &[Sample],
    version_of: &dyn Fn(&str) -> Option<String>,
) -> Incident {
    let mut routes: HashMap<String, (Tally, Option<String>)> = HashMap::new();
    let mut versions: HashMap<String, Tally> = HashMap::new();
    let mut total = Tally::default();
    let counted = failed
        .iter()
        .map(|s| (s, true))
        .chain(all.iter().map(|s| (s, false)));
    for (s, is_failed) in counted.filter(|(s, _)| usable(s)) {
        let add = |t: &mut Tally| {
            if is_failed {
                t.failed += s.value;
            } else {
                t.all += s.value;
            }
        };
        let (shown, raw) = route_of(&s.labels);
        add(&mut routes.entry(shown).or_insert((Tally::default(), raw)).0);
        if let Some(v) = s.labels.get("instance").and_then(version_of) {
            add(versions.entry(v).or_default());
        }
        add(&mut total);
    }
    let mut worst: Vec<(String, Tally, Option<String>)> = routes
        .into_iter()
        .filter(|(_, (t, _))| t.failed > 0.0 && t.all > 0.0)
        .map(|(shown, (t, raw))| (shown, t, raw))
        .collect();
    worst.sort_by(|a, b| {
        b.1.failed
            .total_cmp(&a.1.failed)
            .then_with(|| a.0.cmp(&b.0))
    });
    worst.truncate(ROUTES);
    let by_version = versions_text(
        versions
            .into_iter()
            .filter(|(_, t)| t.all > 0.0)
            .map(|(v, t)| (v, t.failed / t.all)),
        |r| format!("{} errors", percent(r)),
    );
    Incident {
        routes: worst
            .iter()
            .map(|(shown, t, _)| {
                format!(
                    "{shown}: {} of its requests failed, {} of the failures",
                    percent((t.failed / t.all).min(1.0)),
                    percent(t.failed / total.failed)
                )
            })
            .collect(),
        top_route: worst.first().and_then(|(_, _, raw)| raw.clone()),
        by_version,
        value: (total.all > 0.0).then(|| format!("{} errors", percent(total.failed / total.all))),
        ..Incident::default()
    }
}

/// "1.1.0: 38.2% errors; 1.0.0: 0.3% errors", worst first, when more than one version has
/// numbers.
fn versions_text(
    values: impl Iterator<Item = (String, f64)>,
    shown: impl Fn(f64) -> String,
) -> Option<String> {
    let mut values: Vec<(String, f64)> = values.filter(|(_, v)| v.is_finite()).collect();
    if values.len() < 2 {
        return None;
    }
    values.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let pairs: Vec<(String, String)> = values.into_iter().map(|(k, v)| (k, shown(v))).collect();
    Some(listed(&pairs))
}

/// The requests of `buckets` (sorted, coalesced, cumulative, as [`bucket_quantile`] leaves
/// them) slower than `threshold`, interpolated inside its bucket as `histogram_quantile` is.
fn slower_than(threshold: f64, buckets: &[(f64, f64)]) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return 0.0;
    };
    let Some(b) = buckets.iter().position(|&(le, _)| le >= threshold) else {
        return 0.0;
    };
    let (lower, below) = if b == 0 { (0.0, 0.0) } else { buckets[b - 1] };
    let (upper, upto) = buckets[b];
    let at = if upper.is_infinite() || upper <= lower {
        below
    } else {
        below + (upto - below) * ((threshold - lower) / (upper - lower)).clamp(0.0, 1.0)
    };
    (total - at).max(0.0)
}

fn le_of(labels: &Labels) -> Option<f64> {
    let le = labels.get("le")?;
    match le {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

fn latency(
    q: f64,
    threshold: Option<f64>,
    buckets: &[Sample],
    version_of: &dyn Fn(&str) -> Option<String>,
) -> Incident {
    type Buckets = Vec<(f64, f64)>;
    let mut routes: HashMap<String, (Buckets, Option<String>)> = HashMap::new();
    let mut versions: HashMap<String, Buckets> = HashMap::new();
    let mut total: Buckets = Vec::new();
    for s in buckets.iter().filter(|s| usable(s)) {
        let Some(le) = le_of(&s.labels) else { continue };
        let (shown, raw) = route_of(&s.labels);
        routes
            .entry(shown)
            .or_insert((Vec::new(), raw))
            .0
            .push((le, s.value));
        if let Some(v) = s.labels.get("instance").and_then(version_of) {
            versions.entry(v).or_default().push((le, s.value));
        }
        total.push((le, s.value));
    }
    let name = format!("p{}", go_g(q * 100.0, 3));
    let quantile = |b: &mut Buckets| bucket_quantile(q, b);
    let total_q = quantile(&mut total);
    let slow_total = threshold.map_or(0.0, |t| slower_than(t, &total));
    let mut slow: Vec<(String, f64, f64, Option<String>)> = routes
        .into_iter()
        .filter_map(|(shown, (mut b, raw))| {
            let p = quantile(&mut b);
            let over = threshold?;
            (p > over).then(|| (shown, p, slower_than(over, &b), raw))
        })
        .collect();
    slow.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    slow.truncate(ROUTES);
    let over = threshold.map(seconds).unwrap_or_default();
    let by_version = versions_text(
        versions.into_iter().map(|(v, mut b)| (v, quantile(&mut b))),
        |p| format!("{name} {}", seconds(p)),
    );
    Incident {
        routes: slow
            .iter()
            .map(|(shown, p, n, _)| {
                let share = if slow_total > 0.0 {
                    n / slow_total
                } else {
                    0.0
                };
                format!(
                    "{shown}: {name} {}, {} of the requests over {over}",
                    seconds(*p),
                    percent(share.min(1.0))
                )
            })
            .collect(),
        top_route: slow.first().and_then(|(_, _, _, raw)| raw.clone()),
        by_version,
        value: total_q
            .is_finite()
            .then(|| format!("{name} {}", seconds(total_q))),
        ..Incident::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::AlertingRule;

    const ERRORS: &str = r#"(sum by (job) (rate(http_server_request_duration_seconds_count{http_response_status_code=~"5.."}[1m])) / sum by (job) (rate(http_server_request_duration_seconds_count[1m]))) > 0.05 and on (job) sum by (job) (increase(http_server_request_duration_seconds_count[1m])) >= 10"#;
    const LATENCY: &str = r#"histogram_quantile(0.95, sum by (job, le) (rate(http_server_request_duration_seconds_bucket[1m]))) > 2 and on (job) sum by (job) (increase(http_server_request_duration_seconds_count[1m])) >= 10"#;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut l = Labels::default();
        for (k, v) in pairs {
            l.set(k, v);
        }
        l
    }

    fn sample(pairs: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            labels: labels(pairs),
            value,
        }
    }

    fn alert() -> Labels {
        labels(&[("alertname", "X"), ("job", "shop"), ("severity", "page")])
    }

    fn versions(instance: &str) -> Option<String> {
        match instance {
            "a:1" => Some("1.1.0".into()),
            "b:1" => Some("1.0.0".into()),
            _ => None,
        }
    }

    #[test]
    fn the_default_rules_have_plans_and_other_rules_none() {
        let plan = Plan::of(&AlertingRule::for_test("E", ERRORS, 0)).unwrap();
        assert_eq!(
            plan.queries(&alert()),
            vec![
                r#"sum by (instance, http_route, http_request_method) (increase(http_server_request_duration_seconds_count{job="shop",http_response_status_code=~"5.."}[1m]))"#,
                r#"sum by (instance, http_route, http_request_method) (increase(http_server_request_duration_seconds_count{job="shop"}[1m]))"#,
            ]
        );
        let plan = Plan::of(&AlertingRule::for_test("L", LATENCY, 0)).unwrap();
        assert_eq!(
            plan.queries(&alert()),
            vec![
                r#"sum by (instance, http_route, http_request_method, le) (increase(http_server_request_duration_seconds_bucket{job="shop"}[1m]))"#
            ]
        );
        assert!(Plan::of(&AlertingRule::for_test("U", "up == 0", 0)).is_none());
        for other in [
            "sum by (job) (rate(other_requests_total{code=~\"5..\"}[1m])) / sum by (job) (rate(other_requests_total[1m])) > 0.05",
            // A ratio of obs' series that picks no status code is no error ratio.
            "sum by (job) (rate(http_server_request_duration_seconds_count{http_route=\"/a\"}[1m])) / sum by (job) (rate(http_server_request_duration_seconds_count[1m])) > 0.5",
            "histogram_quantile(0.95, sum by (le) (rate(other_seconds_bucket[1m]))) > 2",
        ] {
            // A custom rule: its window, and no query, so no invented route or version.
            let plan = Plan::of(&AlertingRule::for_test("O", other, 0)).unwrap();
            assert!(!plan.reads_red() && plan.queries(&alert()).is_empty(), "{other}");
            let incident = plan.read(&[], &versions);
            assert_eq!(
                incident,
                Incident {
                    window: "1m".into(),
                    ..Incident::default()
                }
            );
        }
    }

    #[test]
    fn an_error_alert_names_its_routes_and_the_canary_verdict() {
        let plan = Plan::of(&AlertingRule::for_test("E", ERRORS, 0)).unwrap();
        let r = |i: &str, m: &str, route: &str, v: f64| {
            sample(
                &[
                    ("instance", i),
                    ("http_request_method", m),
                    ("http_route", route),
                ],
                v,
            )
        };
        let failed = vec![
            r("a:1", "POST", "/checkout", 80.0),
            r("a:1", "GET", "/cart", 5.0),
            r("b:1", "GET", "/cart", 1.0),
        ];
        let all = vec![
            r("a:1", "POST", "/checkout", 100.0),
            r("a:1", "GET", "/cart", 100.0),
            r("b:1", "GET", "/cart", 300.0),
            r("b:1", "POST", "/checkout", 100.0),
            r("b:1", "GET", "/", 400.0),
        ];
        let incident = plan.read(&[failed, all], &versions);
        assert_eq!(
            incident.routes,
            vec![
                "POST /checkout: 40% of its requests failed, 93% of the failures",
                "GET /cart: 1.5% of its requests failed, 6.98% of the failures",
            ]
        );
        assert_eq!(incident.top_route.as_deref(), Some("/checkout"));
        assert_eq!(
            incident.by_version.as_deref(),
            Some("1.1.0: 42.5% errors; 1.0.0: 0.125% errors")
        );
        assert_eq!(incident.value.as_deref(), Some("8.6% errors"));
        assert_eq!(incident.window, "1m");
    }

    #[test]
    fn a_latency_alert_names_the_routes_over_the_threshold() {
        let plan = Plan::of(&AlertingRule::for_test("L", LATENCY, 0)).unwrap();
        let mut buckets = Vec::new();
        // GET /search: 90 of 100 requests between 2.5 s and 5 s; GET /: all under 0.1 s.
        for (i, route, counts) in [
            ("a:1", "/search", [5.0, 10.0, 10.0, 100.0, 100.0]),
            ("b:1", "/", [200.0, 200.0, 200.0, 200.0, 200.0]),
        ] {
            for (le, n) in ["0.1", "1", "2.5", "5", "+Inf"].iter().zip(counts) {
                buckets.push(sample(
                    &[
                        ("instance", i),
                        ("http_request_method", "GET"),
                        ("http_route", route),
                        ("le", le),
                    ],
                    n,
                ));
            }
        }
        let incident = plan.read(&[buckets], &versions);
        assert_eq!(
            incident.routes,
            vec!["GET /search: p95 4.86s, 100% of the requests over 2s"]
        );
        assert_eq!(incident.top_route.as_deref(), Some("/search"));
        assert_eq!(
            incident.by_version.as_deref(),
            Some("1.1.0: p95 4.86s; 1.0.0: p95 95ms")
        );
        assert_eq!(incident.value.as_deref(), Some("p95 4.58s"));
    }

    #[test]
    fn hostile_routes_are_cut_and_many_routes_bounded() {
        let plan = Plan::of(&AlertingRule::for_test("E", ERRORS, 0)).unwrap();
        let long = "/".repeat(10_000);
        let mut failed = vec![sample(
            &[("instance", "a:1"), ("http_route", &long)],
            1000.0,
        )];
        let mut all = failed.clone();
        for i in 0..10_000 {
            let route = format!("/r{i}");
            failed.push(sample(&[("instance", "a:1"), ("http_route", &route)], 1.0));
            all.push(sample(&[("instance", "a:1"), ("http_route", &route)], 2.0));
        }
        let incident = plan.read(&[failed, all], &versions);
        assert_eq!(incident.routes.len(), ROUTES);
        assert!(
            incident.routes[0].chars().count() < ROUTE_CHARS + 60,
            "{}",
            incident.routes[0]
        );
        assert!(incident.routes[0].contains('…'));
        assert_eq!(
            incident.top_route, None,
            "a cut route is no dashboard variable"
        );
        // One version only: no verdict to give.
        assert_eq!(incident.by_version, None);
    }
}
