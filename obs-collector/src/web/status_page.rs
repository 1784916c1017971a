//! The status page (`/`): what fires, what is silenced or inhibited, the targets, the
//! notifications and the silences, readable at 1280 px and on a phone.
//!
//! Words never break in the middle: names, states and times keep to one line, and only long
//! values (label values, URLs, errors), marked `wrap`, may break where they do not fit. Times
//! read as "2 min ago" with the exact time on hover. Each rule has an anchor (`#rule-<name>`),
//! the Dashboard link of messages when no Grafana is set.
//!
//! The page is written with maud: its markup is checked when the crate compiles and every
//! value interpolated into it is escaped by its type (only [`maud::PreEscaped`] is not: the
//! style sheet and the chart's SVG, both made here from numbers and constants).

use std::fmt::Write as _;

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::Html;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::{forms, health, live_alerts, App};
use crate::changes::verdict::{Conclusion, Verdict};
use crate::collector::Collector;
use crate::deploys::{Change, Deploy};
use crate::labels::Labels;
use crate::mute::Mutes;
use crate::notify::{Entry, Outcome, Status};
use crate::rules::template::{go_float, go_g};
use crate::rules::{Alert, AlertingRule, Group, Kind, Rule, State as AlertState};
use crate::silence::{Silence, SilenceState};
use crate::time::rfc3339;

pub(super) const STYLE: &str = "\
*{box-sizing:border-box}body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:80rem;padding:1rem;color:#1f2328}\
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}\
.summary{display:flex;flex-wrap:wrap;gap:.2rem .9rem;margin:0}.summary span{white-space:nowrap}\
.warning{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;margin:.6rem 0 0;padding:.4rem .6rem}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}\
th{font-weight:600;color:#57606a;white-space:nowrap}.nowrap,time,.badge,b.name{white-space:nowrap}\
.wrap{overflow-wrap:anywhere}code{font:12px ui-monospace,monospace;background:#f6f8fa;border-radius:4px;padding:0 .25em}\
.labels code{display:inline-block;margin:0 .2em .2em 0;max-width:100%;overflow-wrap:anywhere}\
.badge{display:inline-block;border-radius:1em;padding:0 .55em;font-size:12px;font-weight:600;background:#eaeef2;color:#57606a}\
.firing,.down,.failed{background:#ffebe9;color:#cf222e}.pending,.queued{background:#fff8c5;color:#9a6700}\
.deploy,.restart{background:#fbefff;color:#8250df}.inactive,.up,.ok,.delivered,.resolved{background:#dafbe1;color:#1a7f37}.silenced,.inhibited,.expired{background:#eaeef2;color:#57606a}\
.active{background:#ddf4ff;color:#0969da}\
.rule{border:1px solid #d0d7de;border-radius:6px;padding:.6rem .8rem;margin-bottom:.7rem}\
.rule header{display:flex;flex-wrap:wrap;gap:.2rem .6rem;align-items:baseline}.rule ul{margin:.4rem 0 0;padding-left:1.1rem}\
.rule li{margin-bottom:.3rem}.chart{margin-top:.4rem}small.span{display:block;color:#57606a}svg{width:100%;max-width:320px;height:auto;display:block}\
.empty{color:#57606a;font-style:italic}small{color:#57606a}\
form.act{display:inline-flex;gap:.3rem;margin:0 0 0 .3rem;vertical-align:baseline}form.act button{font-size:12px;white-space:nowrap}\
:target{outline:2px solid #0969da}\
@media (max-width:640px){table,tbody,tr,td{display:block;width:100%}tr:first-child{display:none}\
tr{border-bottom:1px solid #d0d7de;padding:.4rem 0}td{border:0;padding:.1rem 0}\
td[data-label]::before{content:attr(data-label) \": \";font-weight:600;color:#57606a}}";

/// How long ago (or until) `t_ms` is at `now_ms`, in words.
///
/// ```
/// use obs_collector::web::status_page::ago;
/// assert_eq!(ago(100_000, 100_000), "just now");
/// assert_eq!(ago(100_000, 58_000), "42 s ago");
/// assert_eq!(ago(10_000_000, 10_000_000 - 125_000), "2 min ago");
/// assert_eq!(ago(0, 3 * 3_600_000 + 1), "in 3 h");
/// ```
pub fn ago(now_ms: i64, t_ms: i64) -> String {
    let d = (now_ms - t_ms).abs() / 1000;
    let text = match d {
        0..=4 => return "just now".into(),
        5..=59 => format!("{d} s"),
        60..=3599 => format!("{} min", d / 60),
        3600..=172_799 => format!("{} h", d / 3600),
        _ => format!("{} d", d / 86_400),
    };
    if t_ms > now_ms {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A `<time>` that reads as [`ago`] and shows the exact time on hover.
fn time(now_ms: i64, t_ms: i64) -> Markup {
    let exact = rfc3339(t_ms);
    html! { time datetime=(exact) title=(exact) { (ago(now_ms, t_ms)) } }
}

pub(super) fn badge(class: &str, text: &str) -> Markup {
    html! { span class={ "badge " (class) } { (text) } }
}

/// Label pairs as chips, each on one line where it fits.
fn labels(l: &Labels) -> Markup {
    html! {
        span.labels {
            @for (k, v) in l.iter() { code { (k) "=\"" (v) "\"" } }
        }
    }
}

/// One pending or firing alert of a rule: its labels, state, value, since when, its example
/// trace, and why it is muted or the buttons that silence it.
fn alert_item(collector: &Collector, mutes: &Mutes<'_>, now: i64, x: &Alert) -> Markup {
    let muted = if !mutes.silenced_by(&x.labels).is_empty() {
        badge("silenced", "silenced")
    } else if !mutes.inhibited_by(&x.labels).is_empty() {
        badge("inhibited", "inhibited")
    } else {
        forms::silence_buttons(&x.labels)
    };
    let example = collector.examples_of(&x.labels).into_iter().next();
    let incident = collector
        .incident_of(&x.labels)
        .filter(|_| x.state == crate::rules::State::Firing);
    html! {
        li {
            (labels(&x.labels)) " " (badge(x.state.as_str(), x.state.as_str())) " "
            span.nowrap { "= " (go_float(x.value)) } " "
            span.nowrap { "since " (time(now, x.active_at)) }
            @if let Some(id) = &example {
                " "
                span {
                    "example trace "
                    @match collector.links().trace(id) {
                        Some(url) => a href=(url) { code.wrap { (id) } },
                        None => code.wrap { (id) },
                    }
                }
            }
            (muted)
            @if let Some(i) = &incident {
                @if !i.routes.is_empty() {
                    ul.routes {
                        @for r in &i.routes { li { (r) } }
                    }
                }
                @if let Some(v) = &i.by_version {
                    div.versions { "by version: " (v) }
                }
            }
        }
    }
}

/// One alerting rule: name, state, health, expression, chart and its live alerts.
fn rule_article(
    collector: &Collector,
    mutes: &Mutes<'_>,
    now: i64,
    (g, r, a): (&Group, &Rule, &AlertingRule),
    (range, deploys): (Range, &[Deploy]),
) -> Markup {
    // The last hour is what the evaluations charted; longer ranges are read from the store.
    let points = match (range, a.expr.compared_value()) {
        (Range::Hour, _) | (_, None) => None,
        (_, Some((compared, above))) => {
            collector.chart_over(compared, above, (now - range.ms(), now), CHART_POINTS)
        }
    }
    .unwrap_or_else(|| collector.chart(&g.name, &a.name));
    let state = a.state().as_str();
    let alerts = live_alerts(r);
    html! {
        article.rule id={ "rule-" (a.name) } {
            header {
                b.name { (a.name) } " " (badge(state, state)) " "
                @match &r.health.last_error {
                    Some(e) => { (badge("failed", "err")) " " small.wrap { (e) } },
                    None => (badge(health(r), health(r))),
                }
                " " small.wrap { (a.expr_text) }
            }
            div.chart { (chart(&points, a.expr.threshold(), deploys)) }
            @if !alerts.is_empty() {
                ul { @for x in alerts { (alert_item(collector, mutes, now, x)) } }
            }
        }
    }
}

/// A table's rows, or one row saying there are none.
pub(super) fn rows_or(rows: Vec<Markup>, columns: usize, what: &str) -> Markup {
    html! {
        @if rows.is_empty() {
            tr { td colspan=(columns) class="empty" { (what) } }
        } @else {
            @for row in rows { (row) }
        }
    }
}

fn notification_row(now: i64, e: &Entry) -> Markup {
    let status = match e.message.status {
        Status::Firing => "firing",
        Status::Resolved => "resolved",
        Status::Notice => "notice",
    };
    html! {
        tr {
            td data-label="created" { (time(now, e.created_ms)) }
            td data-label="channel" class="nowrap" { (e.channel) }
            td data-label="message" {
                (badge(status, status)) " " b.name { (e.message.alertname) } " "
                span.wrap { (e.message.job) }
            }
            td data-label="outcome" {
                @match &e.outcome {
                    Outcome::Queued => {
                        (badge("queued", "queued")) " attempt " (e.attempts + 1)
                        @if let Some(r) = &e.last_error { ", last error: " span.wrap { (r) } }
                    },
                    Outcome::Delivered { at_ms } => { (badge("delivered", "delivered")) " " (time(now, *at_ms)) },
                    Outcome::Failed { at_ms, reason } => {
                        (badge("failed", "failed")) " " (time(now, *at_ms)) ": " span.wrap { (reason) }
                    },
                }
            }
        }
    }
}

fn deploy_row(now: i64, d: &Deploy) -> Markup {
    let version = |v: &Option<String>| v.clone().unwrap_or_else(|| "no version".into());
    html! {
        tr {
            td data-label="seen" { (time(now, d.at_ms)) }
            td data-label="job" class="nowrap" { (d.job) }
            td data-label="instance" class="wrap" { (d.instance) }
            td data-label="change" class="wrap" {
                @match d.change {
                    Change::Deploy => { (badge("deploy", "deploy")) " " (version(&d.previous)) " → " b { (version(&d.version)) } },
                    Change::Restart => { (badge("restart", "restart")) " " (version(&d.version)) },
                }
            }
        }
    }
}

fn verdict_row(now: i64, v: &Verdict) -> Markup {
    let class = match v.conclusion {
        Conclusion::Regression => "firing",
        Conclusion::Clean => "ok",
        _ => "inactive",
    };
    html! {
        tr {
            td data-label="judged" { (time(now, v.judged_ms)) }
            td data-label="job" class="nowrap" { (v.job) }
            td data-label="version" class="wrap" {
                (v.baseline_version.as_deref().unwrap_or("?")) " → " b { (v.version) }
            }
            td data-label="verdict" class="wrap" { (badge(class, v.conclusion.text())) " " (v.summary) }
        }
    }
}

fn silence_row(now: i64, s: &Silence) -> Markup {
    let state = s.state(now);
    html! {
        tr {
            td data-label="matchers" { span.labels { @for m in &s.matchers { code { (m.to_string()) } } } }
            td data-label="state" {
                (badge(state.as_str(), state.as_str()))
                @if state != SilenceState::Expired {
                    form.act method="post" action="/silences/expire" {
                        input type="hidden" name="id" value=(s.id);
                        button { "expire" }
                    }
                }
            }
            td data-label="from" { (time(now, s.starts_ms)) }
            td data-label="until" { (time(now, s.ends_ms)) }
            td data-label="by" class="wrap" { (s.created_by) }
            td data-label="comment" class="wrap" { (s.comment) }
        }
    }
}

pub(super) async fn page(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Html<String> {
    let collector = &app.collector;
    let now = collector.now_ms();
    let range = Range::from_param(params.get("range").map(String::as_str));
    let mutes = collector.mutes();
    let (mut firing, mut pending) = (0, 0);
    let deploy_list = collector.deploys().into_entries();
    let mut rules = Vec::new();
    collector.for_each_group(|g| {
        for r in &g.rules {
            let Kind::Alerting(a) = &r.kind else { continue };
            for x in live_alerts(r) {
                match x.state {
                    AlertState::Firing => firing += 1,
                    _ => pending += 1,
                }
            }
            rules.push(rule_article(
                collector,
                &mutes,
                now,
                (g, r, a),
                (range, &deploy_list),
            ));
        }
    });
    let targets = collector.targets();
    let down = targets
        .iter()
        .filter(|t| t.status.up == Some(false))
        .count();
    let target_rows: Vec<Markup> = targets
        .iter()
        .map(|t| {
            let s = &t.status;
            let health = s.health();
            html! {
                tr {
                    td data-label="job" class="nowrap" { (s.job) }
                    td data-label="instance" class="wrap" title=(s.url) { (s.labels.get("instance").unwrap_or_default()) }
                    // Unknown (not scraped yet) gets the plain badge.
                    td data-label="state" { (badge(if s.up.is_some() { health } else { "" }, health)) }
                    td data-label="last scrape" {
                        @match s.last_scrape_ms { Some(t) => (time(now, t)), None => "never" }
                    }
                    td data-label="error" class="wrap" { (s.last_error.as_deref().unwrap_or_default()) }
                }
            }
        })
        .collect();
    let notifications: Vec<Markup> = collector
        .recent_notifications(20)
        .iter()
        .map(|e| notification_row(now, e))
        .collect();
    let silences = collector.silences();
    let active_silences = silences
        .iter()
        .filter(|s| s.state(now) == SilenceState::Active)
        .count();
    let silence_rows: Vec<Markup> = silences.iter().rev().map(|s| silence_row(now, s)).collect();
    let (max_series, refused_series) = collector.series_limit();
    let history = collector.history();
    let deploy_rows: Vec<Markup> = deploy_list
        .iter()
        .rev()
        .take(20)
        .map(|d| deploy_row(now, d))
        .collect();
    let verdict_rows: Vec<Markup> = collector
        .verdicts()
        .iter()
        .take(20)
        .map(|v| verdict_row(now, v))
        .collect();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content="10";
                title { "obs-collector" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "obs-collector" }
                    p.summary {
                        span { (firing) " firing" }
                        span { (pending) " pending" }
                        span { (down) " of " (targets.len()) " targets down" }
                        span { (active_silences) " active silences" }
                    }
                    @if refused_series > 0 {
                        p.warning {
                            "The series limit is reached: " (refused_series)
                            " samples of new series were refused since the start (at most "
                            (max_series) " series, --storage.max-series). A label that takes a new value "
                            "on every scrape (an id, a time) makes new series without end: "
                            "see obs_collector_series_refused_total."
                        }
                    }
                }
                (range_links(range))
                h2 { "Services" }
                (services(collector, now, range, &targets, &deploy_list))
                h2 { "Rules" }
                @for rule in rules { (rule) }
                h2 { "Targets" }
                table {
                    tr { th { "job" } th { "instance" } th { "state" } th { "last scrape" } th { "error" } }
                    (rows_or(target_rows, 5, "no targets (remote mode: the backend scrapes)"))
                }
                h2 { "Notifications" }
                table {
                    tr { th { "created" } th { "channel" } th { "message" } th { "outcome" } }
                    (rows_or(notifications, 4, "nothing sent yet"))
                }
                h2 { "History" }
                (history_section(now, history.as_ref()))
                h2 { "Deploys" }
                table {
                    tr { th { "seen" } th { "job" } th { "instance" } th { "change" } }
                    (rows_or(deploy_rows, 4, "no deploys seen: a new service_version on target_info is one"))
                }
                h2 { "Verdicts" }
                p { "Each deploy judged route by route against its baseline; the week's in the " a href="report" { "weekly report" } "." }
                table {
                    tr { th { "judged" } th { "job" } th { "version" } th { "verdict" } }
                    (rows_or(verdict_rows, 4, "no deploy judged yet: a version is judged once it has served for verdicts.after"))
                }
                h2 { "Silences" }
                table {
                    tr { th { "matchers" } th { "state" } th { "from" } th { "until" } th { "by" } th { "comment" } }
                    (rows_or(silence_rows, 6, "no silences: silence an alert above, or with amtool"))
                }
                script { (PreEscaped(LOCAL_TIMES)) }
            }
        }
    };
    Html(page.into_string())
}

/// Points per chart: an hour at 15 s, 30 days at 3 h.
const CHART_POINTS: i64 = 240;

/// Rewrites every `<time datetime>`'s hover text (and a `.local` one's text) in the reader's
/// time zone; without script the page shows UTC.
const LOCAL_TIMES: &str = "for(const e of document.querySelectorAll('time[datetime]')){const d=new Date(e.getAttribute('datetime'));if(isNaN(d))continue;const s=d.toLocaleString();e.title=s;if(e.classList.contains('local'))e.textContent=s;}";

/// The range the status page's charts show (`?range=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    Hour,
    Day,
    Week,
    Month,
}

impl Range {
    const ALL: [Range; 4] = [Range::Hour, Range::Day, Range::Week, Range::Month];

    fn from_param(p: Option<&str>) -> Self {
        Self::ALL
            .into_iter()
            .find(|r| Some(r.param()) == p)
            .unwrap_or(Range::Hour)
    }

    fn param(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
        }
    }

    fn ms(self) -> i64 {
        const H: i64 = 3_600_000;
        match self {
            Range::Hour => H,
            Range::Day => 24 * H,
            Range::Week => 7 * 24 * H,
            Range::Month => 30 * 24 * H,
        }
    }
}

fn range_links(range: Range) -> Markup {
    html! {
        p.ranges {
            "Charts over the last "
            @for r in Range::ALL {
                @if r == range { b { (r.param()) } } @else { a href={ "?range=" (r.param()) } { (r.param()) } }
                " "
            }
        }
    }
}

/// A chart's title and its points (`None`: the backend holds them).
type Drawn = (&'static str, Option<Vec<(i64, f64)>>);

/// Per job: request rate, error ratio and p95 over the range, from the store, with the job's
/// deploys marked. In remote mode the backend holds them (Grafana reads it).
fn services(
    collector: &Collector,
    now: i64,
    range: Range,
    targets: &[crate::collector::TargetView<'_>],
    deploys: &[Deploy],
) -> Markup {
    let mut jobs: Vec<&str> = targets.iter().map(|t| t.status.job.as_str()).collect();
    jobs.sort_unstable();
    jobs.dedup();
    let count = "http_server_request_duration_seconds_count";
    let charts: Vec<(&str, Vec<Drawn>)> = jobs
        .iter()
        .map(|&job| {
            let j = format!("job={}", crate::promql::quote(job));
            let queries = [
                ("requests/s", format!("sum(rate({count}{{{j}}}[1m]))")),
                (
                    "5xx ratio",
                    // No 5xx series at all is a ratio of 0, not no ratio.
                    format!("(sum(rate({count}{{{j},http_response_status_code=~\"5..\"}}[1m])) or sum(rate({count}{{{j}}}[1m])) * 0) / sum(rate({count}{{{j}}}[1m]))"),
                ),
                (
                    "p95 (s)",
                    format!("histogram_quantile(0.95, sum by (le) (rate(http_server_request_duration_seconds_bucket{{{j}}}[1m])))"),
                ),
            ];
            let drawn = queries
                .into_iter()
                .map(|(what, q)| {
                    let points = crate::promql::compile(&q).ok().and_then(|e| {
                        collector.chart_over(&e, true, (now - range.ms(), now), CHART_POINTS)
                    });
                    (what, points)
                })
                .collect();
            (job, drawn)
        })
        .collect();
    html! {
        @if jobs.is_empty() {
            p { "No jobs scraped (remote mode: the backend holds the services' history; Grafana reads it)." }
        }
        @for (job, drawn) in &charts {
            @let marks: Vec<Deploy> = deploys.iter().filter(|d| d.job == *job).cloned().collect();
            article.rule {
                header { b.name { (job) } }
                @for (what, points) in drawn {
                    div.chart {
                        small { (what) } " "
                        @match points {
                            Some(p) => (chart(p, None, &marks)),
                            None => small { "kept by the backend (remote mode)" },
                        }
                    }
                }
            }
        }
    }
}

/// What is kept on disk: since when, how much, for how long; files set aside at start.
fn history_section(now: i64, history: Option<&crate::collector::HistoryStatus>) -> Markup {
    let Some(h) = history else {
        return html! { p { "Not kept: the collector runs in memory (no --storage.path could be opened, or remote mode)." } };
    };
    let size = match h.retention.bytes {
        u64::MAX => String::new(),
        b => format!(" or {} MiB", b >> 20),
    };
    html! {
        p {
            @match h.oldest_ms {
                Some(t) => { "Since " (time(now, t)) }
                None => { "No block yet (the first is written 5 minutes after the first scrape)" }
            }
            ": " (h.blocks) " blocks, " (format!("{:.1}", h.bytes as f64 / 1_048_576.0)) " MiB on disk. Kept "
            (crate::time::duration_text(h.retention.time_ms)) (size) "; raw samples for "
            (crate::time::duration_text(h.retention.raw_ms)) ", then one every 5 minutes."
        }
        @for aside in &h.set_aside {
            p.warning {
                "Set aside at start, not served: " code { (aside.path.display().to_string()) } " (" (aside.reason) ")."
            }
        }
    }
}

/// A small SVG line chart of `points` with the threshold as a dashed red line; until there are
/// two points, a line saying data is being collected. Each of `deploys` in the chart's time
/// range is a vertical grey marker (its change on hover).
pub(super) fn chart(points: &[(i64, f64)], threshold: Option<f64>, deploys: &[Deploy]) -> Markup {
    const W: f64 = 320.0;
    const H: f64 = 56.0;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return collecting();
    };
    if points.len() < 2 {
        return collecting();
    }
    let values: Vec<f64> = points
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .chain(threshold)
        .collect();
    let lo = values.iter().copied().fold(0.0f64, f64::min);
    let hi = values
        .iter()
        .copied()
        .fold(f64::MIN, f64::max)
        .max(lo + f64::EPSILON)
        * 1.1;
    let span_t = (last.0 - first.0).max(1) as f64;
    let x = |t: i64| (t - first.0) as f64 / span_t * W;
    let y = |v: f64| H - (v - lo) / (hi - lo) * H;
    // Gaps (no value) split the line into segments.
    let mut segments = vec![String::new()];
    for &(t, v) in points {
        let current = segments.last_mut().expect("one segment at least");
        if v.is_finite() {
            if !current.is_empty() {
                current.push(' ');
            }
            let _ = write!(current, "{:.1},{:.1}", x(t), y(v));
        } else if !current.is_empty() {
            segments.push(String::new());
        }
    }
    segments.retain(|s| !s.is_empty());
    let latest = points
        .iter()
        .rev()
        .find(|p| p.1.is_finite())
        .map_or_else(|| "-".into(), |p| go_g(p.1, 4));
    let shown_threshold = threshold.map_or_else(|| "-".into(), |t| go_g(t, 4));
    // SVG elements are closed explicitly: inside <svg> the HTML parser nests unclosed ones.
    html! {
        svg width=(W) height=(H) viewBox={ "0 0 " (W) " " (H) } role="img"
            aria-label="value over time" style="background:#f6f8fa;border-radius:4px" {
            @for segment in &segments {
                polyline fill="none" stroke="#0969da" stroke-width="1.5" points=(segment) {}
            }
            @for d in deploys.iter().filter(|d| (first.0..=last.0).contains(&d.at_ms)) {
                @let at = format!("{:.1}", x(d.at_ms));
                line.deploy x1=(at) x2=(at) y1="0" y2=(H) stroke="#8c959f" stroke-dasharray="2" {
                    title { (d.job) " " (d.instance) ": " (d.version.as_deref().unwrap_or("no version")) }
                }
            }
            @if let Some(th) = threshold {
                @let at = format!("{:.1}", y(th));
                line x1="0" x2=(W) y1=(at) y2=(at) stroke="#cf222e" stroke-dasharray="4" {}
            }
        }
        small.nowrap { "latest " (latest) " · threshold " (shown_threshold) }
        // On a phone the two times take a line of their own.
        small.span {
            time.local datetime=(rfc3339(first.0)) { (rfc3339(first.0)) } " to "
            time.local datetime=(rfc3339(last.0)) { (rfc3339(last.0)) }
        }
    }
}

fn collecting() -> Markup {
    html! { small.empty { "collecting data: one point per evaluation" } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_draws_gaps_and_the_threshold() {
        let points = [(0, 0.01), (15_000, 0.02), (30_000, f64::NAN), (45_000, 0.2)];
        let deploy = Deploy {
            job: "shop".into(),
            instance: "a:1".into(),
            at_ms: 20_000,
            change: Change::Deploy,
            version: Some("<1.1>".into()),
            previous: None,
        };
        let svg = chart(&points, Some(0.05), &[deploy]).into_string();
        assert!(
            svg.contains(r#"class="deploy" x1="142.2""#) && svg.contains("&lt;1.1&gt;"),
            "{svg}"
        );
        assert_eq!(
            svg.matches("<polyline").count(),
            2,
            "the gap splits the line: {svg}"
        );
        assert!(
            svg.contains("stroke-dasharray") && svg.contains("latest 0.2 · threshold 0.05"),
            "{svg}"
        );
        assert!(chart(&[], None, &[])
            .into_string()
            .contains("collecting data"));
        assert!(chart(&[(0, 1.0)], None, &[])
            .into_string()
            .contains("collecting data"));
    }

    #[test]
    fn values_are_escaped_by_type() {
        let hostile = Labels::from_pairs(&[("job", "<script>\"&'")]);
        assert_eq!(
            labels(&hostile).into_string(),
            r#"<span class="labels"><code>job=&quot;&lt;script&gt;&quot;&amp;'&quot;</code></span>"#
        );
        assert_eq!(
            badge("down\" onclick=\"x", "<b>").into_string(),
            r#"<span class="badge down&quot; onclick=&quot;x">&lt;b&gt;</span>"#
        );
    }

    #[test]
    fn times_in_words() {
        assert_eq!(ago(0, -59_999), "59 s ago");
        assert_eq!(ago(0, -3_600_000), "1 h ago");
        assert_eq!(ago(0, -3 * 86_400_000), "3 d ago");
        assert_eq!(ago(0, 4 * 3_600_000), "in 4 h");
        assert!(time(0, 0)
            .into_string()
            .contains("title=\"1970-01-01T00:00:00"));
    }
}
