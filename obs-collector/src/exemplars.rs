//! Example traces: the exemplars behind an alert's numbers, so that a message opens the trace
//! of a real failing or slow request.
//!
//! The candidates are the latest exemplars of the scraped series (histogram buckets, from
//! OpenMetrics pages) or, in remote mode, what the backend's `/api/v1/query_exemplars` returns
//! for the rule's expression. An alert's are those of the series its expression selects (a
//! `_count` or `_sum` selector stands for its histogram's `_bucket` series, where exemplars
//! are) whose labels agree with the alert's, recent enough to belong to the incident, ranked:
//! 1. by the most specific selector they match, so an error ratio's examples come from its
//!    numerator (`status_code=~"5.."`), not from every request of its denominator;
//! 2. above the rule's threshold first, so a latency alert's examples are the slow requests;
//! 3. the most recent first.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::ops::Deref;

use promql_parser::label::MatchOp;

use crate::labels::{Labels, NAME};
pub use crate::promql::Exemplar;
use crate::promql::{self, Expr, Selector};
use crate::rules::{AlertingRule, Group, State};

/// Example traces kept per alert (the first is the one messages link).
pub const EXAMPLES: usize = 3;

/// How far before an alert became active its examples may be: the longest range its
/// expression reads (what made it true), at least 5 minutes.
pub fn window(rule: &AlertingRule) -> i64 {
    rule.expr.max_range_ms().max(300_000)
}

/// In remote mode, what to ask the backend's `/api/v1/query_exemplars` for each firing rule of
/// `group`: its name, the queries selecting where its exemplars are (the histogram buckets
/// behind its selectors; the whole expression when it has none), and since when.
pub fn remote_queries(group: &Group) -> Vec<(String, Vec<String>, i64)> {
    group
        .alerting_rules()
        .filter_map(|a| {
            let since = a
                .alerts()
                .filter(|x| x.state == State::Firing)
                .map(|x| x.active_at)
                .min()?;
            let mut queries: Vec<String> = a.expr.selectors().into_iter().map(query).collect();
            queries.sort();
            queries.dedup();
            if queries.is_empty() {
                queries.push(a.expr_text.clone());
            }
            Some((a.name().to_owned(), queries, since - window(a)))
        })
        .collect()
}

/// The example traces of `group`'s firing alerts, by their labels: from `remote`'s exemplars
/// for a rule that has some, else from `scraped` (the targets' last pages, each behind its
/// lock), which is read only when an alert needs it, and then once.
pub fn of_group<G: Deref<Target = Vec<Exemplar>>>(
    group: &Group,
    remote: &HashMap<String, Vec<Exemplar>>,
    scraped: impl FnOnce() -> Vec<G>,
) -> HashMap<Labels, Vec<String>> {
    let mut out = HashMap::new();
    let mut scraped = Some(scraped);
    let mut pages: Option<Vec<G>> = None;
    for a in group.alerting_rules() {
        for alert in a.alerts().filter(|x| x.state == State::Firing) {
            let since = alert.active_at - window(a);
            let found = match remote.get(a.name()) {
                Some(candidates) => for_alert(candidates, &a.expr, &alert.labels, since, EXAMPLES),
                None => {
                    let pages =
                        pages.get_or_insert_with(|| scraped.take().map_or_else(Vec::new, |f| f()));
                    for_alert(
                        pages.iter().flat_map(|g| g.iter()),
                        &a.expr,
                        &alert.labels,
                        since,
                        EXAMPLES,
                    )
                }
            };
            let traces: Vec<String> = found.into_iter().map(|e| e.trace_id.clone()).collect();
            if !traces.is_empty() {
                out.insert(alert.labels.clone(), traces);
            }
        }
    }
    out
}

/// A histogram's or counter's name without the suffix of its sample (`_bucket`, `_count`,
/// `_sum`, `_total`).
fn family(name: &str) -> &str {
    ["_bucket", "_count", "_sum", "_total"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// The PromQL selecting the series where `selector`'s exemplars are: its histogram's
/// `_bucket` series for a `_count`/`_sum`/`_bucket` selector, else the selector itself (for a
/// backend's `/api/v1/query_exemplars`, which returns the exemplars of the series a query
/// selects).
///
/// ```
/// let expr = obs_collector::promql::compile(r#"rate(d_seconds_count{code=~"5.."}[1m])"#).unwrap();
/// let s = expr.selectors();
/// assert_eq!(obs_collector::exemplars::query(s[0]), r#"{code=~"5..",__name__="d_seconds_bucket"}"#);
/// ```
pub fn query(selector: &Selector) -> String {
    let matchers: Vec<String> = selector
        .matchers
        .iter()
        .map(|m| match (&m.op, m.name == NAME) {
            (MatchOp::Equal, true) if m.value != family(&m.value) => {
                format!(
                    "{NAME}={}",
                    promql::quote(&format!("{}_bucket", family(&m.value)))
                )
            }
            _ => promql::matcher_text(m),
        })
        .collect();
    format!("{{{}}}", matchers.join(","))
}

/// How many matchers of `selector` the series matches with, or `None` when it is not selected.
fn specificity(selector: &Selector, series: &Labels) -> Option<usize> {
    let mut count = 0;
    for m in &selector.matchers {
        let matched = if m.name == NAME {
            let name = series.get(NAME).unwrap_or_default();
            match &m.op {
                MatchOp::Equal => family(&m.value) == family(name),
                _ => m.is_match(name),
            }
        } else if m.name == "le" {
            true // a _count selector stands for every bucket
        } else {
            m.is_match(series.get(&m.name).unwrap_or_default())
        };
        if !matched {
            return None;
        }
        count += 1;
    }
    Some(count)
}

/// The labels an alert and a series both have, with equal values.
fn agrees(alert: &Labels, series: &Labels) -> bool {
    alert
        .iter()
        .all(|(k, v)| series.get(k).is_none_or(|s| s == v))
}

/// Up to `n` example traces for an alert with `labels` of a rule with `expr`, from exemplars
/// observed since `since_ms` (distinct traces, best first; see the module docs).
pub fn for_alert<'a>(
    candidates: impl IntoIterator<Item = &'a Exemplar>,
    expr: &Expr,
    labels: &Labels,
    since_ms: i64,
    n: usize,
) -> Vec<&'a Exemplar> {
    let selectors = expr.selectors();
    let threshold = expr.threshold();
    let mut ranked: Vec<(usize, bool, i64, &Exemplar)> = candidates
        .into_iter()
        .filter(|e| e.timestamp_ms >= since_ms && agrees(labels, &e.series))
        .filter_map(|e| {
            // Remote mode without a local plan: the backend chose by the expression already.
            let specificity = if selectors.is_empty() {
                0
            } else {
                selectors
                    .iter()
                    .filter_map(|s| specificity(s, &e.series))
                    .max()?
            };
            let above = threshold.is_some_and(|t| e.value > t);
            Some((specificity, above, e.timestamp_ms, e))
        })
        .collect();
    ranked.sort_by_key(|(specificity, above, at, _)| {
        (Reverse(*specificity), Reverse(*above), Reverse(*at))
    });
    let mut out: Vec<&Exemplar> = Vec::new();
    for (_, _, _, e) in ranked {
        if out.len() == n {
            break;
        }
        if !out.iter().any(|o| o.trace_id == e.trace_id) {
            out.push(e);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exemplar(status: &str, le: &str, value: f64, at: i64, trace: &str) -> Exemplar {
        Exemplar {
            series: Labels::from_pairs(&[
                (NAME, "http_server_request_duration_seconds_bucket"),
                ("job", "checkout"),
                ("http_response_status_code", status),
                ("le", le),
            ]),
            trace_id: trace.into(),
            value,
            timestamp_ms: at,
        }
    }

    fn rule(name: &str) -> Expr {
        let rules = crate::config::DEFAULT_RULES;
        let groups =
            crate::rules::load("r.yml", rules, std::time::Duration::from_secs(15), false).unwrap();
        let rule = groups[0]
            .rules
            .iter()
            .find_map(|r| match &r.kind {
                crate::rules::Kind::Alerting(a) if a.name() == name => Some(a.expr.clone()),
                _ => None,
            })
            .unwrap();
        rule
    }

    #[test]
    fn an_error_alert_shows_failures_and_a_latency_alert_slow_requests() {
        let all = [
            exemplar("200", "0.1", 0.05, 1_000, "ok-recent"),
            exemplar("500", "0.1", 0.02, 900, "failed"),
            exemplar("500", "0.1", 0.03, 950, "failed-later"),
            exemplar("200", "5", 2.5, 800, "slow"),
            exemplar("200", "2", 1.9, 990, "almost"),
        ];
        let checkout = Labels::from_pairs(&[
            ("alertname", "X"),
            ("job", "checkout"),
            ("severity", "page"),
        ]);
        let ids = |v: Vec<&Exemplar>| v.iter().map(|e| e.trace_id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(for_alert(&all, &rule("HighErrorRate"), &checkout, 0, 2)),
            ["failed-later", "failed"],
            "the 5xx series, most recent first"
        );
        assert_eq!(
            ids(for_alert(&all, &rule("HighLatencyP95"), &checkout, 0, 2)),
            ["slow", "ok-recent"],
            "above 2 s first"
        );
        let other_job = Labels::from_pairs(&[("job", "search")]);
        assert!(for_alert(&all, &rule("HighErrorRate"), &other_job, 0, 2).is_empty());
        assert!(
            for_alert(&all, &rule("HighErrorRate"), &checkout, 2_000, 2).is_empty(),
            "too old for the incident"
        );
        assert!(
            for_alert(&all, &rule("TargetDown"), &checkout, 0, 2).is_empty(),
            "`up` has none"
        );
    }
}
