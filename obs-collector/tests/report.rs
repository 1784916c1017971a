//! The weekly report over 35 days of a job's RED data, from the collector's history and from a
//! real Prometheus holding the same samples (one OpenMetrics file: `obs-collector import`, and
//! promtool's backfill), through `obs-collector report`:
//!
//! - `GET /users/{id}` doubles its latency at a deploy (1.2.0 → 1.3.0) 3 days before the end:
//!   a deploy regression naming both versions;
//! - `GET /search` creeps up 12% a week (no week above +15%, four weeks above +50%): drift;
//! - `GET /health` is steady with noise (±3% a day, ±10% traffic): nothing;
//! - the error ratio is a steady 1%: nothing, but ten times the SLO rules' budget (99.9%);
//! - `HighLatencyP95` fired twice in the week (`ALERTS`, as Prometheus writes it): 2 runs.
//!
//! Latencies are uniform within each route's range, and the buckets are 50 ms apart there, so
//! `histogram_quantile`'s linear interpolation is exact and the expected numbers are known.
//! Samples are every 5 minutes, 7.5 s after the minute, so none falls on a window's edge and
//! Prometheus 2.x (ranges closed on the left) answers as 3.x would.

use std::path::Path;
use std::process::Command;

use obs_testkit::prometheus::Prometheus;
use serde_json::Value;

mod common;

use common::{temp_dir, write_days, BIN};

const DAY_S: i64 = 86_400;
const WEEK_S: i64 = 7 * DAY_S;
const DAYS: i64 = 35;
const STEP_S: i64 = 300;
const FAMILY: &str = "http_server_request_duration_seconds";
const LES: [f64; 12] = [
    0.05,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.35,
    0.4,
    0.5,
    0.75,
    1.0,
    f64::INFINITY,
];

/// A route: its template, its latency range (uniform) at time `t` (seconds before the end),
/// and its requests per step.
struct Route {
    template: &'static str,
    latency: fn(i64) -> (f64, f64),
}

const DEPLOY_AGO_S: i64 = 3 * DAY_S;

fn users(ago: i64) -> (f64, f64) {
    let k = if ago < DEPLOY_AGO_S { 2.0 } else { 1.0 };
    (0.02 * k, 0.2 * k)
}

fn search(ago: i64) -> (f64, f64) {
    // 12% slower every week, continuously: 1.12^(weeks since the start).
    let weeks = (DAYS * DAY_S - ago) as f64 / WEEK_S as f64;
    let k = 1.12f64.powf(weeks);
    (0.05 * k, 0.25 * k)
}

fn health(ago: i64) -> (f64, f64) {
    // ±3% from day to day, no trend.
    let day = ago / DAY_S;
    let k = 1.0 + 0.03 * (((day * 7919) % 7) as f64 / 3.0 - 1.0);
    (0.005 * k, 0.05 * k)
}

const ROUTES: [Route; 3] = [
    Route {
        template: "/users/{id}",
        latency: users,
    },
    Route {
        template: "/search",
        latency: search,
    },
    Route {
        template: "/health",
        latency: health,
    },
];

/// The share of requests at most `le` seconds for latencies uniform in `(lo, hi)`.
fn share(le: f64, (lo, hi): (f64, f64)) -> f64 {
    ((le - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// 35 days ending at `end_s`, one chunk of OpenMetrics lines per day.
fn days_of_samples(end_s: i64) -> Vec<String> {
    let steps = DAYS * DAY_S / STEP_S;
    let start = end_s - steps * STEP_S;
    let labels = |route: &str, status: u16| {
        format!(
            r#"job="shop",instance="shop-1:9464",http_request_method="GET",http_route="{route}",http_response_status_code="{status}""#
        )
    };
    // Cumulative counts: per route, per status, per bucket (as floats, written rounded down).
    let mut counts = vec![[[0f64; 12]; 2]; ROUTES.len()];
    let mut sums = vec![[0f64; 2]; ROUTES.len()];
    let mut chunks = Vec::new();
    let mut day = String::new();
    for i in 0..steps {
        if i > 0 && i % (DAY_S / STEP_S) == 0 {
            chunks.push(std::mem::take(&mut day));
        }
        let t_s = start + i * STEP_S + 7;
        let ago = end_s - t_s;
        let t = format!("{t_s}.5");
        for (r, route) in ROUTES.iter().enumerate() {
            // 400 to 480 requests a step, 1% of them 5xx (fast failures).
            let n = 400.0 + ((i * 7919 + r as i64 * 104_729) % 81) as f64;
            let errors = (n / 100.0).round();
            let range = (route.latency)(ago);
            for (b, le) in LES.iter().enumerate() {
                counts[r][0][b] += ((n - errors) * share(*le, range)).floor();
                counts[r][1][b] += errors;
            }
            sums[r][0] += (n - errors) * (range.0 + range.1) / 2.0;
            sums[r][1] += errors * 0.001;
            for (s, status) in [200u16, 500].iter().enumerate() {
                let l = labels(route.template, *status);
                for (b, le) in LES.iter().enumerate() {
                    let le = if le.is_infinite() {
                        "+Inf".to_owned()
                    } else {
                        le.to_string()
                    };
                    day.push_str(&format!(
                        "{FAMILY}_bucket{{{l},le=\"{le}\"}} {} {t}\n",
                        counts[r][s][b]
                    ));
                }
                day.push_str(&format!("{FAMILY}_count{{{l}}} {} {t}\n", counts[r][s][11]));
                day.push_str(&format!("{FAMILY}_sum{{{l}}} {:.3} {t}\n", sums[r][s]));
            }
        }
        // Two firing runs of HighLatencyP95 in the last week: 30 and 60 minutes of samples.
        let firing =
            (2 * DAY_S..2 * DAY_S + 1800).contains(&ago) || (DAY_S..DAY_S + 3600).contains(&ago);
        if firing {
            day.push_str(&format!(
                "ALERTS{{alertname=\"HighLatencyP95\",alertstate=\"firing\",job=\"shop\",severity=\"page\"}} 1 {t}\n"
            ));
        }
        let version = if ago < DEPLOY_AGO_S { "1.3.0" } else { "1.2.0" };
        day.push_str(&format!(
            "target_info{{job=\"shop\",instance=\"shop-1:9464\",service_version=\"{version}\"}} 1 {t}\n"
        ));
    }
    chunks.push(day);
    chunks
}

fn openmetrics(body: &str) -> String {
    format!(
        "# TYPE {FAMILY} histogram\n# TYPE target_info gauge\n# TYPE ALERTS gauge\n{body}# EOF\n"
    )
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn report_json(args: &[&str]) -> Value {
    let (code, out, err) = run(args);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A finding's `(kind, route, metric, version, baseline_version)`.
type Key = (String, String, String, String, String);

/// The findings by their [`Key`], with their `(before, after)` values.
fn findings(report: &Value) -> Vec<(Key, (f64, f64))> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                (
                    text(&f["kind"]),
                    text(&f["route"]),
                    text(&f["metric"]),
                    text(&f["version"]),
                    text(&f["baseline_version"]),
                ),
                (f["before"].as_f64().unwrap(), f["after"].as_f64().unwrap()),
            )
        })
        .collect()
}

#[test]
fn a_deploy_regression_and_a_slow_drift_are_reported_alike_from_history_and_from_prometheus() {
    let dir = temp_dir("report");
    // A fixed end, on a whole 5 minutes: the report is of a week that ended then.
    let end = 1_796_000_100 / STEP_S * STEP_S;
    let (whole, per_day) = write_days(&dir, &days_of_samples(end), openmetrics);
    let storage = dir.join("data");
    let storage_arg = storage.to_str().unwrap();
    let (code, _, err) = run(&[
        "import",
        whole.to_str().unwrap(),
        "--storage.path",
        storage_arg,
    ]);
    assert_eq!(code, Some(0), "{err}");

    let end_arg = end.to_string();
    // With the SLO rules loaded: the report says how much of the error budget is used.
    let config = dir.join("collector.yml");
    let slo_rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../alerts/obs-slo.rules.yml");
    std::fs::write(
        &config,
        format!("rule_files: ['{}']\n", slo_rules.display()),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let ours = report_json(&[
        "report",
        "--config",
        config_arg,
        "--storage.path",
        storage_arg,
        "--end",
        &end_arg,
        "--format",
        "json",
    ]);
    let found = findings(&ours);
    let keys: Vec<_> = found.iter().map(|(k, _)| k.clone()).collect();
    let key = |kind: &str, route: &str, metric: &str, v: &str, b: &str| {
        (kind.into(), route.into(), metric.into(), v.into(), b.into())
    };
    // The deploy: the users route's p95 doubled, against the day before and the week before.
    let regression = key(
        "deploy_regression",
        "GET /users/{id}",
        "p95",
        "1.3.0",
        "1.2.0",
    );
    assert!(keys.contains(&regression), "{keys:#?}");
    let (before, after) = found.iter().find(|(k, _)| *k == regression).unwrap().1;
    assert!(
        (before - 0.191).abs() < 0.002 && (after - 0.382).abs() < 0.004,
        "{before} {after}"
    );
    // The drift: the search route, +57% over four weeks, never +15% in one.
    let drift = key("drift", "GET /search", "p95", "", "");
    assert!(keys.contains(&drift), "{keys:#?}");
    let f = &ours["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "drift" && f["route"] == "GET /search")
        .unwrap()
        .clone();
    let trend: Vec<f64> = f["trend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(trend.len(), 5);
    assert!(trend.windows(2).all(|w| w[1] / w[0] < 1.15), "{trend:?}");
    assert!(trend[4] / trend[0] > 1.5, "{trend:?}");
    // Nothing else: not the steady route, not the error ratio, not the search route at the
    // deploy.
    for (k, _) in &found {
        assert!(
            k.1 == "GET /users/{id}" && k.0 == "deploy_regression" || *k == drift,
            "unexpected finding {k:?}"
        );
    }
    let deploys = ours["jobs"][0]["deploys"].as_array().unwrap();
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0]["version"], "1.3.0");
    assert_eq!(deploys[0]["conclusion"], "regression");
    // Bounded and stated: 2 per week (5 weeks), 1 for the sparklines, 1 for the versions, 1
    // for the alerts, 6 for the deploy.
    assert_eq!(ours["queries"], 2 * 5 + 1 + 1 + 1 + 6);
    // The week's alerts: two firing runs, their samples 30 and 60 minutes apart (each seen for
    // the 5-minute lookback after its last sample, and counted to the minute).
    let alerts = &ours["jobs"][0]["alerts"];
    assert_eq!(alerts[0]["alertname"], "HighLatencyP95", "{alerts}");
    assert_eq!(alerts[0]["fired"], 2, "{alerts}");
    let firing_min = alerts[0]["firing_ms"].as_f64().unwrap() / 60_000.0;
    assert!((90.0..=102.0).contains(&firing_min), "{alerts}");
    // A steady 1% of errors is ten times the 99.9% objective's budget.
    let slo = &ours["jobs"][0]["slo"];
    assert_eq!(slo["objective"], 0.999, "{slo}");
    assert_eq!(slo["days"], 28);
    let used = slo["budget_used"].as_f64().unwrap();
    assert!((9.5..10.5).contains(&used), "{slo}");

    // The same report from a Prometheus holding the same samples.
    let prom = Prometheus::start_backfilled(
        "global:\n  scrape_interval: 5m\nscrape_configs: []\n",
        &["--storage.tsdb.retention.time=10y"],
        &per_day,
    )
    .unwrap();
    let from = format!("http://{}", prom.addr);
    let theirs = report_json(&[
        "report", "--config", config_arg, "--from", &from, "--end", &end_arg, "--format", "json",
    ]);
    let theirs_found = findings(&theirs);
    assert_eq!(
        found.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        theirs_found.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    for ((k, (b1, a1)), (_, (b2, a2))) in found.iter().zip(&theirs_found) {
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1e-9);
        assert!(
            close(*b1, *b2) && close(*a1, *a2),
            "{k:?}: ours {b1} {a1}, Prometheus {b2} {a2}"
        );
    }
    assert_eq!(ours["jobs"][0]["this_week"], theirs["jobs"][0]["this_week"]);
    assert_eq!(ours["jobs"][0]["alerts"], theirs["jobs"][0]["alerts"]);
    assert_eq!(ours["jobs"][0]["slo"], theirs["jobs"][0]["slo"]);

    // The text and the page say the same.
    let (code, text, _) = run(&["report", "--storage.path", storage_arg, "--end", &end_arg]);
    assert_eq!(code, Some(0));
    assert!(
        text.contains(
            "deploy regression: shop GET /users/{id}: p95 382 ms vs 191 ms after 1.3.0 (was 1.2.0"
        ),
        "{text}"
    );
    assert!(
        text.contains("drift: shop GET /search: p95 drifted"),
        "{text}"
    );
    let (code, html, _) = run(&[
        "report",
        "--storage.path",
        storage_arg,
        "--end",
        &end_arg,
        "--format",
        "html",
    ]);
    assert_eq!(code, Some(0));
    assert!(
        html.contains("<svg") && html.contains("GET /users/{id}"),
        "{html}"
    );
    assert!(!html.contains("<script"), "readable without a script");
}
