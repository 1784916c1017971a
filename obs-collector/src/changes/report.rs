//! The weekly report: per job, requests, error ratio and p95 this week against last week and
//! `weeks` weeks ago, per route (the most changed and the slowest first); the slow drift (a
//! route whose p95 or error ratio rose by [`DRIFT`] or more over the weeks while no single week
//! rose that much); the week's deploys, each judged as a full rollout; the week's alerts (from
//! the `ALERTS` series the collector writes, as Prometheus does); and, where the SLO rules are
//! loaded, the error budget used over the last four weeks. Built from a [`Source`] in a bounded
//! number of queries: 2 per week, 1 for the daily sparklines, 1 for the versions, 1 for the
//! alerts, and 6 per deploy (at most [`MAX_DEPLOYS`] per job).

use std::collections::BTreeMap;

use serde::Serialize;

use super::format;
use super::judge::{Outcome, Thresholds, QUANTILES};
use super::source::{read_windows, route_key, RouteKey, Scope, Source, HISTOGRAM};
use super::stats::{proportion_increase_p, Window};
use super::verdict::compare_rollout;
use crate::promql::QueryError;
use crate::time::rfc3339;

const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;
/// The rise over the weeks that is drift (and the step no single week may reach).
pub const DRIFT: f64 = 0.2;
/// Deploys judged per job and week (a version flapping every scrape is not thousands).
pub const MAX_DEPLOYS: usize = 20;
/// How versions are read: `target_info` at this step.
const VERSION_STEP_MS: i64 = 5 * 60_000;
/// A deploy's windows: at most a day on each side.
const DEPLOY_WINDOW_MS: i64 = DAY_MS;
/// Routes listed per job in the text and Slack renderings.
pub const ROUTES_SHOWN: usize = 10;
/// Routes kept per job in the report.
pub const ROUTES_KEPT: usize = 100;

/// What a report covers.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The end of "this week".
    pub end_ms: i64,
    /// How many weeks back the longest comparison goes (4: four weeks ago).
    pub weeks: u32,
    pub thresholds: Thresholds,
    /// The error budget (0.001 for a 99.9% objective) when the SLO rules are loaded.
    pub slo_budget: Option<f64>,
}

/// One week's numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub requests: f64,
    pub error_ratio: Option<f64>,
    pub p95: Option<f64>,
}

impl Totals {
    fn of(w: &Window) -> Self {
        Self {
            requests: w.requests,
            error_ratio: w.error_ratio(),
            p95: w.quantile(0.95),
        }
    }
}

/// A route's weeks.
#[derive(Debug, Clone, Serialize)]
pub struct RouteRow {
    /// `METHOD template`.
    pub route: String,
    /// This week, last week, `weeks` weeks ago.
    pub this_week: Totals,
    pub last_week: Totals,
    pub weeks_ago: Totals,
    /// The p95 per week, oldest first (`weeks + 1` values).
    pub weekly_p95: Vec<Option<f64>>,
    /// The p95 per day, oldest first (the sparkline).
    pub daily_p95: Vec<Option<f64>>,
    /// p95 this week against last week, and against `weeks` weeks ago.
    pub p95_change: Option<f64>,
    pub p95_change_weeks: Option<f64>,
}

/// A version that reached a job this week, judged as a full rollout.
#[derive(Debug, Clone, Serialize)]
pub struct DeployRow {
    pub version: String,
    pub baseline_version: Option<String>,
    pub time: String,
    pub at_ms: i64,
    /// `regression`, `clean`, `not enough data`, `no baseline`.
    pub conclusion: String,
    pub regressed_routes: usize,
    pub unchanged_routes: usize,
}

/// One job's week.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub job: String,
    pub this_week: Totals,
    pub last_week: Totals,
    pub weeks_ago: Totals,
    /// The most changed and the slowest first, at most [`ROUTES_KEPT`].
    pub routes: Vec<RouteRow>,
    pub routes_total: usize,
    pub deploys: Vec<DeployRow>,
    /// Version changes beyond [`MAX_DEPLOYS`], not judged.
    pub deploys_not_judged: usize,
    /// The week's alerts, by name, the longest firing first.
    pub alerts: Vec<AlertRow>,
    /// The error budget used over the last four weeks, where the SLO rules are loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
}

/// One alert's week: how often it fired, for how long, how long it took to resolve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    pub alertname: String,
    /// Times it started firing (a firing run of an alert's series).
    pub fired: usize,
    /// Time firing, all its alerts together, ms.
    pub firing_ms: i64,
    /// The mean time from firing to resolved, ms.
    pub mean_resolve_ms: i64,
}

/// The error budget over the last four weeks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slo {
    /// 0.999 for 99.9%.
    pub objective: f64,
    pub days: u32,
    pub error_ratio: f64,
    /// The share of the budget used (1: all of it).
    pub budget_used: f64,
}

/// `deploy_regression` or `drift`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    DeployRegression,
    Drift,
}

/// Something the report calls out.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub job: String,
    /// `METHOD template`.
    pub route: String,
    pub kind: Kind,
    /// `p50`, `p95`, `p99` or `error_ratio`.
    pub metric: String,
    pub before: f64,
    pub after: f64,
    /// Relative for latency, absolute for the error ratio.
    pub change: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_version: Option<String>,
    /// A deploy regression: when the version came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// A drift: the metric per week, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trend: Vec<f64>,
}

impl Finding {
    /// One line: `shop GET /users/{id}: p95 drifted 210 ms → 330 ms over 4 weeks (+57%)`.
    pub fn line(&self) -> String {
        let (b, a) = (
            format::metric(&self.metric, self.before),
            format::metric(&self.metric, self.after),
        );
        let change = format::change(&self.metric, self.change);
        match self.kind {
            Kind::DeployRegression => format!(
                "{} {}: {} {a} vs {b} after {} (was {}, {change})",
                self.job,
                self.route,
                self.metric,
                self.version.as_deref().unwrap_or("?"),
                self.baseline_version.as_deref().unwrap_or("?"),
            ),
            Kind::Drift => format!(
                "{} {}: {} drifted {b} → {a} over {} weeks ({change}; weekly {})",
                self.job,
                self.route,
                self.metric,
                self.trend.len().saturating_sub(1),
                self.trend
                    .iter()
                    .map(|v| format::metric(&self.metric, *v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub start: String,
    pub end: String,
    pub end_ms: i64,
    pub weeks: u32,
    pub jobs: Vec<JobReport>,
    /// Deploy regressions first, then drift; the largest change first within each.
    pub findings: Vec<Finding>,
    /// Queries it took.
    pub queries: usize,
}

/// Builds the report over the weeks ending at `options.end_ms`.
pub async fn build(source: &dyn Source, options: &Options) -> Result<Report, QueryError> {
    let counted = super::source::Counted::new(source);
    let source: &dyn Source = &counted;
    let end = options.end_ms;
    let weeks = options.weeks.max(1) as i64;
    let all = Scope {
        job: None,
        instances: None,
    };
    // Week 0 is this week; week `weeks` the oldest.
    let mut weekly: Vec<BTreeMap<RouteKey, Window>> = Vec::new();
    for w in 0..=weeks {
        weekly.push(read_windows(source, all, end - (w + 1) * WEEK_MS, end - w * WEEK_MS).await?);
    }
    let daily = daily_p95(source, end, weeks).await?;
    let versions = versions(source, end - WEEK_MS, end).await?;
    let alerts = alerts(source, end - WEEK_MS, end).await?;
    let t = &options.thresholds;
    let mut jobs: BTreeMap<String, JobReport> = BTreeMap::new();
    let mut findings = Vec::new();
    let keys: std::collections::BTreeSet<&RouteKey> =
        weekly.iter().flat_map(|w| w.keys()).collect();
    let empty = Window::default();
    let mut job_windows: BTreeMap<String, Vec<Window>> = BTreeMap::new();
    for key in keys {
        let (job, route) = key;
        let of = |w: usize| weekly[w].get(key).unwrap_or(&empty);
        let per_week: Vec<&Window> = (0..=weeks as usize).rev().map(of).collect();
        let sums = job_windows
            .entry(job.clone())
            .or_insert_with(|| vec![Window::default(); weeks as usize + 1]);
        for (i, w) in (0..=weeks as usize).map(|i| (i, of(i))) {
            merge(&mut sums[i], w);
        }
        let weekly_p95: Vec<Option<f64>> = per_week.iter().map(|w| w.quantile(0.95)).collect();
        let (this, last, old) = (of(0), of(1), of(weeks as usize));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b - 1.0),
            _ => None,
        };
        let row = RouteRow {
            route: route.clone(),
            this_week: Totals::of(this),
            last_week: Totals::of(last),
            weeks_ago: Totals::of(old),
            p95_change: ratio(this.quantile(0.95), last.quantile(0.95)),
            p95_change_weeks: ratio(this.quantile(0.95), old.quantile(0.95)),
            weekly_p95,
            daily_p95: daily.get(key).cloned().unwrap_or_default(),
        };
        findings.extend(drift(job, route, &per_week, t));
        jobs.entry(job.clone())
            .or_insert_with(|| JobReport {
                job: job.clone(),
                this_week: Totals::default(),
                last_week: Totals::default(),
                weeks_ago: Totals::default(),
                routes: Vec::new(),
                routes_total: 0,
                deploys: Vec::new(),
                deploys_not_judged: 0,
                alerts: Vec::new(),
                slo: None,
            })
            .routes
            .push(row);
    }
    for (job, report) in jobs.iter_mut() {
        if let Some(sums) = job_windows.get(job) {
            report.this_week = Totals::of(&sums[0]);
            report.last_week = Totals::of(&sums[1]);
            report.weeks_ago = Totals::of(&sums[weeks as usize]);
        }
        report.routes_total = report.routes.len();
        report.alerts = alerts.get(job).cloned().unwrap_or_default();
        if let (Some(budget), Some(sums)) = (options.slo_budget, job_windows.get(job)) {
            let recent = &sums[..sums.len().min(4)];
            let (errors, requests) = recent
                .iter()
                .fold((0.0, 0.0), |(e, r), w| (e + w.errors, r + w.requests));
            if requests > 0.0 && budget > 0.0 {
                report.slo = Some(Slo {
                    objective: 1.0 - budget,
                    days: 7 * recent.len() as u32,
                    error_ratio: errors / requests,
                    budget_used: errors / requests / budget,
                });
            }
        }
        report.routes.sort_by(|a, b| {
            let key = |r: &RouteRow| {
                r.p95_change
                    .unwrap_or(0.0)
                    .max(r.p95_change_weeks.unwrap_or(0.0))
            };
            key(b).total_cmp(&key(a)).then(
                b.this_week
                    .p95
                    .unwrap_or(0.0)
                    .total_cmp(&a.this_week.p95.unwrap_or(0.0)),
            )
        });
        report.routes.truncate(ROUTES_KEPT);
        let changes = versions.get(job).cloned().unwrap_or_default();
        report.deploys_not_judged = changes.len().saturating_sub(MAX_DEPLOYS);
        for (i, change) in changes.iter().take(MAX_DEPLOYS).enumerate() {
            let next = changes.get(i + 1).map_or(end, |c| c.at_ms);
            let span = DEPLOY_WINDOW_MS
                .min(next - change.at_ms)
                .min(end - change.at_ms);
            let (row, found) = judge_deploy(source, job, change, span, t).await?;
            report.deploys.push(row);
            findings.extend(found);
        }
    }
    findings.sort_by(|a, b| {
        (a.kind == Kind::Drift)
            .cmp(&(b.kind == Kind::Drift))
            .then(b.change.total_cmp(&a.change))
    });
    Ok(Report {
        start: rfc3339(end - WEEK_MS),
        end: rfc3339(end),
        end_ms: end,
        weeks: weeks as u32,
        jobs: jobs.into_values().collect(),
        findings,
        queries: counted.queries(),
    })
}

/// Adds `w`'s buckets, requests and errors to `sum`.
fn merge(sum: &mut Window, w: &Window) {
    sum.requests += w.requests;
    sum.errors += w.errors;
    for &(le, c) in &w.buckets {
        match sum.buckets.iter_mut().find(|(b, _)| *b == le) {
            Some(slot) => slot.1 += c,
            None => sum.buckets.push((le, c)),
        }
    }
    sum.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
}

/// The drift findings of a route whose weeks are `per_week` (oldest first): the p95 or the
/// error ratio rose by [`DRIFT`] or more from the oldest week to this one, beyond chance, with
/// no week-to-week step of [`DRIFT`] (that is a step, for the deploy verdicts), and every week
/// with enough requests.
fn drift(job: &str, route: &str, per_week: &[&Window], t: &Thresholds) -> Vec<Finding> {
    let (Some(first), Some(last)) = (per_week.first(), per_week.last()) else {
        return Vec::new();
    };
    if per_week.len() < 3 || per_week.iter().any(|w| w.requests < t.min_requests) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let finding = |metric: &str, values: Vec<f64>, change: f64| Finding {
        job: job.to_owned(),
        route: route.to_owned(),
        kind: Kind::Drift,
        metric: metric.to_owned(),
        before: values[0],
        after: values[values.len() - 1],
        change,
        version: None,
        baseline_version: None,
        time: None,
        trend: values,
    };
    let rises = |values: &[f64]| {
        let steps_small = values
            .windows(2)
            .all(|p| p[0] > 0.0 && p[1] / p[0] - 1.0 < DRIFT);
        let total = values[values.len() - 1] / values[0] - 1.0;
        (steps_small && total >= DRIFT).then_some(total)
    };
    let p95: Option<Vec<f64>> = per_week.iter().map(|w| w.quantile(0.95)).collect();
    if let (Some(values), Some(bound)) = (p95, first.bound_of(QUANTILES[1].1)) {
        let beyond_chance = proportion_increase_p(
            first.above(bound),
            first.requests,
            last.above(bound),
            last.requests,
        ) < t.significance;
        if let Some(total) = rises(&values).filter(|_| beyond_chance) {
            out.push(finding("p95", values, total));
        }
    }
    let errors: Option<Vec<f64>> = per_week.iter().map(|w| w.error_ratio()).collect();
    if let Some(values) = errors {
        let beyond_chance =
            proportion_increase_p(first.errors, first.requests, last.errors, last.requests)
                < t.significance;
        // A drift of the error ratio must also be worth a look: at least a tenth of the
        // minimum effect of a deploy (0.1 percentage point by default).
        let worth = values[values.len() - 1] - values[0] >= t.error_increase / 10.0;
        if let Some(total) = rises(&values).filter(|_| beyond_chance && worth) {
            out.push(finding("error_ratio", values, total));
        }
    }
    out
}

/// Each route's p95 per day over the report's weeks, oldest first (one range query).
async fn daily_p95(
    source: &dyn Source,
    end: i64,
    weeks: i64,
) -> Result<BTreeMap<RouteKey, Vec<Option<f64>>>, QueryError> {
    let days = 7 * (weeks + 1);
    let query = format!(
        "histogram_quantile(0.95, sum by (job, http_request_method, http_route, le) (increase({HISTOGRAM}_bucket[1d])))"
    );
    let start = end - (days - 1) * DAY_MS;
    let mut out = BTreeMap::new();
    for (labels, points) in source.range(&query, start, end, DAY_MS).await? {
        let mut days_p95 = vec![None; days as usize];
        for (t, v) in points {
            let i = ((t - start) / DAY_MS) as usize;
            if let Some(slot) = days_p95.get_mut(i) {
                *slot = v.is_finite().then_some(v);
            }
        }
        out.insert(route_key(&labels), days_p95);
    }
    Ok(out)
}

/// How often the alerts read from the `ALERTS` series sample: a firing run is consecutive
/// samples at most this far apart.
const ALERTS_STEP_MS: i64 = 60_000;

/// The week's alerts per job (one range query of `ALERTS{alertstate="firing"}`): per alert
/// name, its firing runs, their total time and their mean length.
async fn alerts(
    source: &dyn Source,
    from: i64,
    to: i64,
) -> Result<BTreeMap<String, Vec<AlertRow>>, QueryError> {
    let series = source
        .range("ALERTS{alertstate=\"firing\"}", from, to, ALERTS_STEP_MS)
        .await?;
    // Per job and alert name: (runs, total ms).
    let mut by: BTreeMap<(String, String), (usize, i64)> = BTreeMap::new();
    for (labels, points) in series {
        let key = (
            labels.get("job").unwrap_or_default().to_owned(),
            labels.get("alertname").unwrap_or_default().to_owned(),
        );
        let slot = by.entry(key).or_default();
        let times: Vec<i64> = points.iter().map(|p| p.0).collect();
        for run in times.chunk_by(|a, b| b - a <= ALERTS_STEP_MS) {
            slot.0 += 1;
            slot.1 += run[run.len() - 1] - run[0] + ALERTS_STEP_MS;
        }
    }
    let mut out: BTreeMap<String, Vec<AlertRow>> = BTreeMap::new();
    for ((job, alertname), (fired, firing_ms)) in by {
        out.entry(job).or_default().push(AlertRow {
            alertname,
            fired,
            firing_ms,
            mean_resolve_ms: firing_ms / fired.max(1) as i64,
        });
    }
    for rows in out.values_mut() {
        rows.sort_by_key(|r| std::cmp::Reverse(r.firing_ms));
    }
    Ok(out)
}

/// A version reaching a job.
#[derive(Debug, Clone)]
struct VersionChange {
    version: String,
    baseline_version: Option<String>,
    at_ms: i64,
}

/// The versions that reached each job in `(from, to]`, oldest first, from `target_info`'s
/// `service_version` (one range query): a version first seen after the start, with the version
/// most instances served just before.
async fn versions(
    source: &dyn Source,
    from: i64,
    to: i64,
) -> Result<BTreeMap<String, Vec<VersionChange>>, QueryError> {
    let query = "count by (job, service_version) (target_info)";
    let start = from - VERSION_STEP_MS;
    let series = source.range(query, start, to, VERSION_STEP_MS).await?;
    // Per job: per step, the instances per version.
    let mut by_job: BTreeMap<String, BTreeMap<i64, Vec<(String, f64)>>> = BTreeMap::new();
    for (labels, points) in series {
        let (Some(job), Some(version)) = (labels.get("job"), labels.get("service_version")) else {
            continue;
        };
        let steps = by_job.entry(job.to_owned()).or_default();
        for (t, n) in points {
            steps.entry(t).or_default().push((version.to_owned(), n));
        }
    }
    let mut out = BTreeMap::new();
    for (job, steps) in by_job {
        let mut seen: Vec<String> = Vec::new();
        let mut previous: Option<&Vec<(String, f64)>> = None;
        let mut changes = Vec::new();
        for (t, serving) in &steps {
            for (version, _) in serving {
                if seen.contains(version) {
                    continue;
                }
                seen.push(version.clone());
                if let Some(before) = previous {
                    let baseline = before
                        .iter()
                        .filter(|(v, _)| v != version)
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .map(|(v, _)| v.clone());
                    changes.push(VersionChange {
                        version: version.clone(),
                        baseline_version: baseline,
                        at_ms: *t,
                    });
                }
            }
            previous = Some(serving);
        }
        out.insert(job, changes);
    }
    Ok(out)
}

/// One deploy of the week judged as a full rollout over `span` on each side (6 queries).
async fn judge_deploy(
    source: &dyn Source,
    job: &str,
    change: &VersionChange,
    span: i64,
    t: &Thresholds,
) -> Result<(DeployRow, Vec<Finding>), QueryError> {
    let scope = Scope {
        job: Some(job),
        instances: None,
    };
    let a = change.at_ms;
    let mut row = DeployRow {
        version: change.version.clone(),
        baseline_version: change.baseline_version.clone(),
        time: rfc3339(a),
        at_ms: a,
        conclusion: "not enough data".into(),
        regressed_routes: 0,
        unchanged_routes: 0,
    };
    if span <= 0 {
        return Ok((row, Vec::new()));
    }
    let after = read_windows(source, scope, a, a + span).await?;
    let before = read_windows(source, scope, a - span, a).await?;
    let week = read_windows(source, scope, a - WEEK_MS, a + span - WEEK_MS).await?;
    let judged = compare_rollout(&before, &week, &after, t);
    let mut findings = Vec::new();
    for j in &judged {
        match j.outcome {
            Outcome::Regressed => row.regressed_routes += 1,
            Outcome::Unchanged => row.unchanged_routes += 1,
            _ => {}
        }
        for w in j.worse.iter().filter(|_| j.outcome == Outcome::Regressed) {
            findings.push(Finding {
                job: job.to_owned(),
                route: j.route.clone(),
                kind: Kind::DeployRegression,
                metric: w.metric.clone(),
                before: w.before,
                after: w.after,
                change: w.change,
                version: Some(change.version.clone()),
                baseline_version: change.baseline_version.clone(),
                time: Some(rfc3339(a)),
                trend: Vec::new(),
            });
        }
    }
    row.conclusion = if row.regressed_routes > 0 {
        "regression"
    } else if row.unchanged_routes > 0 {
        "clean"
    } else if judged.iter().all(|j| j.outcome == Outcome::NoBaseline) && !judged.is_empty() {
        "no baseline"
    } else {
        "not enough data"
    }
    .into();
    Ok((row, findings))
}

impl Report {
    /// The report as text: the findings, then each job's week and its most changed routes.
    pub fn text(&self) -> String {
        let mut out = format!("Weekly report {} to {}\n", self.start, self.end);
        if self.findings.is_empty() {
            out.push_str("No deploy regression and no drift.\n");
        }
        for f in &self.findings {
            let head = match f.kind {
                Kind::DeployRegression => "deploy regression",
                Kind::Drift => "drift",
            };
            out.push_str(&format!("- {head}: {}\n", f.line()));
        }
        for job in &self.jobs {
            out.push('\n');
            out.push_str(&job.summary_line(self.weeks));
            out.push('\n');
            for d in &job.deploys {
                out.push_str(&format!("  deploy {}\n", d.line()));
            }
            for a in &job.alerts {
                out.push_str(&format!("  alert {}\n", a.line()));
            }
            if let Some(slo) = &job.slo {
                out.push_str(&format!("  {}\n", slo.line()));
            }
            for r in job.routes.iter().take(ROUTES_SHOWN) {
                out.push_str(&format!("  {}\n", r.line()));
            }
            if job.routes_total > ROUTES_SHOWN {
                out.push_str(&format!(
                    "  … {} more routes\n",
                    job.routes_total - ROUTES_SHOWN
                ));
            }
        }
        out.push_str(&format!("({} queries)\n", self.queries));
        out
    }
}

impl JobReport {
    /// `shop: 1,234,567 requests (+3%), 0.12% errors, p95 210 ms (last week 200 ms, 4 weeks
    /// ago 180 ms)`.
    pub fn summary_line(&self, weeks: u32) -> String {
        let change = match self.last_week.requests {
            r if r > 0.0 => format!(" ({})", format::relative(self.this_week.requests / r - 1.0)),
            _ => String::new(),
        };
        format!(
            "{}: {} requests{change}, {} errors, p95 {} (last week {}, {weeks} weeks ago {})",
            self.job,
            format::count(self.this_week.requests),
            self.this_week
                .error_ratio
                .map_or("-".into(), format::percent),
            self.this_week.p95.map_or("-".into(), format::latency),
            self.last_week.p95.map_or("-".into(), format::latency),
            self.weeks_ago.p95.map_or("-".into(), format::latency),
        )
    }
}

impl AlertRow {
    /// `HighErrorRate fired 2 times, 14m 0s in all, 7m 0s to resolve on average`.
    pub fn line(&self) -> String {
        format!(
            "{} fired {} time{}, {} in all, {} to resolve on average",
            self.alertname,
            self.fired,
            if self.fired == 1 { "" } else { "s" },
            crate::time::duration_text(self.firing_ms),
            crate::time::duration_text(self.mean_resolve_ms)
        )
    }
}

impl Slo {
    /// `error budget (99.9% over 28 days): 35% used, 0.035% of requests failed`.
    pub fn line(&self) -> String {
        format!(
            "error budget ({}% over {} days): {:.0}% used, {} of requests failed",
            (self.objective * 1000.0).round() / 10.0,
            self.days,
            self.budget_used * 100.0,
            format::percent(self.error_ratio)
        )
    }
}

impl DeployRow {
    /// `1.3.0 at 2026-12-04T10:00:00Z (was 1.2.0): regression, 1 route regressed, 11 unchanged`.
    pub fn line(&self) -> String {
        format!(
            "{} at {} (was {}): {}, {} regressed, {} unchanged",
            self.version,
            self.time,
            self.baseline_version.as_deref().unwrap_or("?"),
            self.conclusion,
            routes(self.regressed_routes),
            self.unchanged_routes
        )
    }
}

/// `1 route`, `2 routes`.
fn routes(n: usize) -> String {
    format!("{n} route{}", if n == 1 { "" } else { "s" })
}

impl RouteRow {
    /// `GET /users/{id}: 18,342 requests, 0.10% errors, p95 410 ms (+41% on last week, +60%
    /// on 4 weeks ago)`.
    pub fn line(&self) -> String {
        let change = |c: Option<f64>| c.map_or("-".into(), format::relative);
        format!(
            "{}: {} requests, {} errors, p95 {} ({} on last week, {} over the weeks)",
            self.route,
            format::count(self.this_week.requests),
            self.this_week
                .error_ratio
                .map_or("-".into(), format::percent),
            self.this_week.p95.map_or("-".into(), format::latency),
            change(self.p95_change),
            change(self.p95_change_weeks),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn week(p95_shift: f64, requests: usize, errors: f64) -> Window {
        // Latencies spread over [0.1, 0.3] s shifted by `p95_shift` seconds.
        let bounds: Vec<f64> = (1..=20)
            .map(|i| i as f64 * 0.05)
            .chain([f64::INFINITY])
            .collect();
        let lat: Vec<f64> = (0..requests)
            .map(|i| 0.1 + 0.2 * (i as f64 + 0.5) / requests as f64 + p95_shift)
            .collect();
        Window {
            buckets: bounds
                .iter()
                .map(|&le| (le, lat.iter().filter(|&&l| l <= le).count() as f64))
                .collect(),
            requests: requests as f64,
            errors,
        }
    }

    #[test]
    fn a_slow_creep_is_drift_and_a_step_or_noise_is_not() {
        let t = Thresholds::default();
        let creep: Vec<Window> = (0..5)
            .map(|i| week(0.03 * i as f64, 20_000, 10.0))
            .collect();
        let refs: Vec<&Window> = creep.iter().collect();
        let found = drift("shop", "GET /", &refs, &t);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].metric, "p95");
        assert!(found[0].change >= DRIFT);
        assert_eq!(found[0].trend.len(), 5);

        let mut step: Vec<Window> = (0..4).map(|_| week(0.0, 20_000, 10.0)).collect();
        step.push(week(0.15, 20_000, 10.0));
        let refs: Vec<&Window> = step.iter().collect();
        assert!(drift("shop", "GET /", &refs, &t).is_empty());

        let noise: Vec<Window> = [0.0, 0.004, -0.003, 0.005, 0.002]
            .iter()
            .map(|&s| week(s, 20_000, 10.0))
            .collect();
        let refs: Vec<&Window> = noise.iter().collect();
        assert!(drift("shop", "GET /", &refs, &t).is_empty());

        // Too few requests in one week: no finding.
        let mut thin = creep.clone();
        thin[2] = week(0.06, 50, 0.0);
        let refs: Vec<&Window> = thin.iter().collect();
        assert!(drift("shop", "GET /", &refs, &t).is_empty());
    }
}

#[cfg(test)]
mod empty {
    use super::*;
    use crate::changes::source::Evaluated;
    use crate::store::Store;

    /// No traffic at all (a new collector, a week of nothing): a report of nothing, in its
    /// stated number of queries, not an error.
    #[tokio::test]
    async fn a_history_without_traffic_reports_nothing() {
        let store = Store::new(60_000);
        let source = Evaluated(|e: &crate::promql::Expr, steps| {
            crate::promql::eval_range(e, &store, steps, crate::promql::Limits::NONE)
        });
        let options = Options {
            end_ms: 1_800_000_000_000,
            weeks: 4,
            thresholds: Thresholds::default(),
            slo_budget: Some(0.001),
        };
        let report = build(&source, &options).await.unwrap();
        assert!(report.jobs.is_empty() && report.findings.is_empty());
        assert_eq!(report.queries, 2 * 5 + 1 + 1 + 1);
        assert!(report.text().contains("No deploy regression and no drift."));
    }
}
