//! The weekly report as a page (`/report`, readable without a script: each route's daily p95
//! is a small SVG drawn here) and as JSON (`/api/v1/report`). Both take `end` (RFC 3339 or
//! Unix seconds; default now) and `weeks` (2 to 12; default the configuration's).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::json;

use super::status_page::{badge, chart, rows_or, STYLE};
use super::App;
use crate::changes::format;
use crate::changes::report::{Finding, JobReport, Kind, Report, RouteRow, ROUTES_SHOWN};

const DAY_MS: i64 = 86_400_000;

/// The report's `end` and `weeks` from the query string, or why they do not read.
fn options(app: &App, params: &HashMap<String, String>) -> Result<(i64, Option<u32>), String> {
    let end = match params.get("end") {
        None => app.collector.now_ms(),
        Some(t) => crate::time::parse_api_time(t).ok_or_else(|| {
            format!("invalid parameter \"end\": {t:?} is neither RFC 3339 nor Unix seconds")
        })?,
    };
    let weeks = match params.get("weeks") {
        None => None,
        Some(w) => Some(
            w.parse::<u32>()
                .ok()
                .filter(|w| (2..=12).contains(w))
                .ok_or_else(|| format!("invalid parameter \"weeks\": {w:?} is not 2 to 12"))?,
        ),
    };
    Ok((end, weeks))
}

/// The report, or the answer to send instead (a bad parameter, or numbers that cannot be read).
async fn build(
    app: &App,
    params: &HashMap<String, String>,
) -> Result<Report, (StatusCode, &'static str, String)> {
    let (end, weeks) =
        options(app, params).map_err(|e| (StatusCode::BAD_REQUEST, "bad_data", e))?;
    app.collector
        .report(end, weeks)
        .await
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, "execution", e.to_string()))
}

/// `GET /api/v1/report`.
pub(super) async fn api(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    match build(&app, &params).await {
        Ok(report) => Json(json!({"status": "success", "data": report})).into_response(),
        Err((status, kind, error)) => (
            status,
            Json(json!({"status": "error", "errorType": kind, "error": error})),
        )
            .into_response(),
    }
}

/// `GET /report`.
pub(super) async fn page(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    match build(&app, &params).await {
        Ok(report) => Html(render(&report).into_string()).into_response(),
        Err((status, _, error)) => (status, error).into_response(),
    }
}

/// The page of `report`.
pub fn render(report: &Report) -> Markup {
    let findings: Vec<Markup> = report.findings.iter().map(finding_row).collect();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "obs-collector: weekly report" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "Weekly report" }
                p.summary {
                    span { (report.start) " to " (report.end) }
                    span { (report.jobs.len()) " jobs" }
                    span { (report.findings.len()) " findings" }
                    span { (report.queries) " queries" }
                    span { a href="./" { "status page" } }
                }
                h2 { "Findings" }
                table {
                    tr { th { "kind" } th { "job" } th { "route" } th { "what" } }
                    (rows_or(findings, 4, "no deploy regression and no drift"))
                }
                @for job in &report.jobs { (job_section(job, report)) }
            }
        }
    }
}

fn finding_row(f: &Finding) -> Markup {
    let kind = match f.kind {
        Kind::DeployRegression => "deploy regression",
        Kind::Drift => "drift",
    };
    html! {
        tr {
            td data-label="kind" { (badge("firing", kind)) }
            td data-label="job" class="nowrap" { (f.job) }
            td data-label="route" class="wrap" { code { (f.route) } }
            td data-label="what" class="wrap" { (f.line()) }
        }
    }
}

fn job_section(job: &JobReport, report: &Report) -> Markup {
    let routes: Vec<Markup> = job
        .routes
        .iter()
        .take(ROUTES_SHOWN)
        .map(|r| route_row(r, report.end_ms))
        .collect();
    html! {
        h2 { (job.job) }
        p { (job.summary_line(report.weeks)) }
        @if let Some(slo) = &job.slo { p { (slo.line()) } }
        @if !job.alerts.is_empty() {
            ul { @for a in &job.alerts { li { (a.line()) } } }
        }
        @if !job.deploys.is_empty() {
            table {
                tr { th { "deploy" } th { "time" } th { "verdict" } }
                @for d in &job.deploys {
                    tr {
                        td data-label="deploy" class="wrap" {
                            (d.baseline_version.as_deref().unwrap_or("?")) " → " b { (d.version) }
                        }
                        td data-label="time" class="nowrap" { (d.time) }
                        td data-label="verdict" { (d.line()) }
                    }
                }
            }
        }
        table {
            tr { th { "route" } th { "requests" } th { "errors" } th { "p95" } th { "change" } th { "p95 per day" } }
            (rows_or(routes, 6, "no requests"))
        }
        @if job.routes_total > ROUTES_SHOWN {
            p { "… and " (job.routes_total - ROUTES_SHOWN) " more routes (all of them in /api/v1/report)" }
        }
    }
}

fn route_row(r: &RouteRow, end_ms: i64) -> Markup {
    let days = r.daily_p95.len() as i64;
    let points: Vec<(i64, f64)> = r
        .daily_p95
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                end_ms - (days - 1 - i as i64) * DAY_MS,
                v.unwrap_or(f64::NAN),
            )
        })
        .collect();
    let change = |c: Option<f64>| c.map_or("-".into(), format::relative);
    html! {
        tr {
            td data-label="route" class="wrap" { code { (r.route) } }
            td data-label="requests" class="nowrap" { (format::count(r.this_week.requests)) }
            td data-label="errors" class="nowrap" { (r.this_week.error_ratio.map_or("-".into(), format::percent)) }
            td data-label="p95" class="nowrap" { (r.this_week.p95.map_or("-".into(), format::latency)) }
            td data-label="change" class="nowrap" {
                (change(r.p95_change)) " on last week, " (change(r.p95_change_weeks)) " over the weeks"
            }
            td data-label="p95 per day" { (chart(&points, None, &[])) }
        }
    }
}
