//! The shipped dashboard on the collector, against a real Prometheus holding the same samples:
//! a week of one job's RED metrics (two instances, a release in the middle of the week,
//! messaging and database histograms), one OpenMetrics file imported into the collector and
//! backfilled into Prometheus 2.42 by promtool. Every query of `dashboards/obs-red.json`
//! (panels, template variables and the deploy annotation) is sent as Grafana sends it for the
//! last 7 days on a 1,600-pixel panel: `$__interval` 5m (Grafana's rounding of 7d / 1,600),
//! the step 300 s, `$__rate_interval` 12m (the larger of interval + scrape interval and four
//! scrape intervals, with the data source's scrape interval of 3m), start and end aligned to
//! the step, a POST form; instant targets at the end. The answers must be the same series, the
//! same timestamps, values within 1e-5 relative.

use std::fmt::Write as _;

use obs_testkit::client;
use obs_testkit::prometheus::Prometheus;
use serde_json::Value;

mod common;

use common::{ask_range, difference, temp_dir, write_days};

const DAY_S: i64 = 86_400;
const SCRAPE_S: i64 = 180;
const LES: [&str; 5] = ["0.1", "0.25", "0.5", "1", "+Inf"];

/// Eight days of samples ending at `end_s`, a chunk a day (promtool's blocks).
fn week(end_s: i64) -> Vec<String> {
    let start = end_s - 8 * DAY_S;
    let mut days = vec![String::new(); 8];
    // Counters as a service that has run for a while: none starts near zero.
    let mut counts = vec![1_000.0f64; 96];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    for k in 0..(8 * DAY_S / SCRAPE_S) {
        // Off the whole second by an eighth, exactly representable in binary.
        let t = start + k * SCRAPE_S + 7;
        let ts = format!("{t}.125");
        let day = &mut days[((t - start) / DAY_S) as usize];
        for (i, instance) in ["shop-1:9464", "shop-2:9464"].iter().enumerate() {
            let l = format!("job=\"shop\",instance=\"{instance}\"");
            // shop-2 moves to 1.1.0 four days before the end; 1.1.0 is slower.
            let version = if i == 1 && t > end_s - 4 * DAY_S {
                "1.1.0"
            } else {
                "1.0.0"
            };
            let slower = if version == "1.1.0" { 1.6 } else { 1.0 };
            let _ = writeln!(day, "up{{{l}}} 1 {ts}");
            let _ = writeln!(
                day,
                "target_info{{{l},service_version=\"{version}\"}} 1 {ts}"
            );
            let _ = writeln!(
                day,
                "http_server_active_requests{{{l}}} {} {ts}",
                (noise() * 8.0).floor()
            );
            let mut c = i * 32;
            for route in ["/users/{id}", "/search"] {
                for code in ["200", "500"] {
                    let rl = format!("{l},http_request_method=\"GET\",http_route=\"{route}\",http_response_status_code=\"{code}\"");
                    let requests = (noise() * if code == "500" { 4.0 } else { 60.0 }).floor();
                    let mut cumulative = [0.0; LES.len()];
                    let mut sum = 0.0;
                    for _ in 0..requests as usize {
                        let d = noise().powi(2) * slower;
                        sum += d;
                        for (b, le) in LES.iter().enumerate() {
                            if *le == "+Inf" || d <= le.parse::<f64>().unwrap() {
                                cumulative[b] += 1.0;
                            }
                        }
                    }
                    for (b, le) in LES.iter().enumerate() {
                        counts[c + b] += cumulative[b];
                        let _ = writeln!(day, "http_server_request_duration_seconds_bucket{{{rl},le=\"{le}\"}} {} {ts}", counts[c + b]);
                    }
                    counts[c + 5] += sum;
                    let _ = writeln!(
                        day,
                        "http_server_request_duration_seconds_sum{{{rl}}} {} {ts}",
                        counts[c + 5]
                    );
                    let _ = writeln!(
                        day,
                        "http_server_request_duration_seconds_count{{{rl}}} {} {ts}",
                        counts[c + 4]
                    );
                    c += 8;
                }
            }
            // A queue's jobs (a tenth fail) and a database's queries.
            let base = 64 + i * 8;
            let jobs = (noise() * 10.0).floor();
            counts[base] += jobs;
            counts[base + 1] += (jobs / 10.0).floor();
            let ml = format!("{l},messaging_destination_name=\"emails\"");
            for (b, le) in LES.iter().enumerate() {
                let _ = writeln!(
                    day,
                    "messaging_process_duration_seconds_bucket{{{ml},le=\"{le}\"}} {} {ts}",
                    counts[base] * (b + 1) as f64 / LES.len() as f64
                );
            }
            let _ = writeln!(
                day,
                "messaging_process_duration_seconds_count{{{ml}}} {} {ts}",
                counts[base]
            );
            let _ = writeln!(
                day,
                "messaging_process_duration_seconds_count{{{ml},error_type=\"timeout\"}} {} {ts}",
                counts[base + 1]
            );
            let queries = (noise() * 30.0).floor();
            counts[base + 2] += queries;
            let dl = format!("{l},db_operation_name=\"SELECT\",db_collection_name=\"users\"");
            for (b, le) in LES.iter().enumerate() {
                let _ = writeln!(
                    day,
                    "db_client_operation_duration_seconds_bucket{{{dl},le=\"{le}\"}} {} {ts}",
                    (counts[base + 2] * (b + 2) as f64 / (LES.len() + 1) as f64).floor()
                );
            }
            let _ = writeln!(
                day,
                "db_client_operation_duration_seconds_count{{{dl}}} {} {ts}",
                counts[base + 2]
            );
        }
    }
    days
}

fn openmetrics(body: &str) -> String {
    format!(
        "# TYPE up gauge\n# TYPE target_info gauge\n# TYPE http_server_active_requests gauge\n# TYPE http_server_request_duration_seconds histogram\n# TYPE messaging_process_duration_seconds histogram\n# TYPE db_client_operation_duration_seconds histogram\n{body}# EOF\n"
    )
}

/// Grafana's substitutions for the job, all instances and routes, over 7 days.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "12m")
        .replace("$__interval", "5m")
        .replace("$job", "shop")
        .replace("$instance", ".*")
        .replace("$route", ".*")
}

/// Every query of the dashboard: `(what, expr, instant)`.
fn dashboard_queries() -> Vec<(String, String, bool)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/obs-red.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    fn walk(p: &Value, out: &mut Vec<(String, String, bool)>) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                let what = format!("{} {}", p["title"], t["refId"]);
                out.push((what, substitute(expr), t["instant"] == true));
            }
        }
        for q in p["panels"].as_array().into_iter().flatten() {
            walk(q, out);
        }
    }
    for p in d["panels"].as_array().unwrap() {
        walk(p, &mut out);
    }
    for a in d["annotations"]["list"].as_array().unwrap() {
        if let Some(expr) = a["expr"].as_str() {
            out.push((format!("annotation {}", a["name"]), substitute(expr), false));
        }
    }
    out
}

/// Grafana's template variables: `label_values(sel, label)` as the label-match API call.
fn variable_calls(start: i64, end: i64) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/obs-red.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut calls = Vec::new();
    for v in d["templating"]["list"].as_array().unwrap() {
        let Some(def) = v["definition"].as_str() else {
            continue;
        };
        let Some(args) = def
            .strip_prefix("label_values(")
            .and_then(|a| a.strip_suffix(')'))
        else {
            continue;
        };
        let (selector, label) = args.rsplit_once(", ").unwrap();
        calls.push(format!(
            "/api/v1/label/{label}/values?match[]={}&start={start}&end={end}",
            client::encode_query(&substitute(selector))
        ));
    }
    calls
}

#[test]
fn every_dashboard_query_answers_as_prometheus_does_over_a_week() {
    let dir = temp_dir("dashboard-differential");
    let now = common::now_s();
    // Three hours ago, on a whole step: all eight days newer than the raw retention (8d), so
    // that no block of them is downsampled while the test runs.
    let end_s = (now - 3 * 3600) / 300 * 300;
    let (whole, per_day) = write_days(&dir, &week(end_s), openmetrics);
    let prom = Prometheus::start_backfilled(
        "global:\n  scrape_interval: 3m\nscrape_configs: []\n",
        &["--storage.tsdb.retention.time=10y"],
        &per_day,
    )
    .unwrap();
    let collector = common::collector_over_import(&dir, &whole, &[]);

    let (start, end) = (end_s - 7 * DAY_S, end_s);
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");
    let mut differ = Vec::new();
    for (what, expr, instant) in &queries {
        let window = if *instant { (end, end) } else { (start, end) };
        let ours = ask_range(collector.addr, expr, window, 300);
        let theirs = ask_range(prom.addr, expr, window, 300);
        assert!(
            theirs.as_ref().is_ok_and(|m| !m.is_empty()),
            "{what}: Prometheus has no data: {theirs:?}"
        );
        if let Some(why) = difference(&ours, &theirs) {
            differ.push(format!("{what}: {expr}\n    {why}"));
        }
    }
    // Instant targets as Grafana sends them too.
    for (what, expr, _) in queries.iter().filter(|q| q.2) {
        let body = format!("query={}&time={end}", client::encode_query(expr));
        let ask = |addr| {
            let r = client::post(
                addr,
                "/api/v1/query",
                &[("content-type", b"application/x-www-form-urlencoded")],
                body.as_bytes(),
            )
            .unwrap();
            let mut v: Value = serde_json::from_str(&r.body).unwrap();
            if let Some(result) = v["data"]["result"].as_array_mut() {
                result.sort_by_key(|s| s["metric"].to_string());
            }
            v
        };
        let (ours, theirs) = (ask(collector.addr), ask(prom.addr));
        if ours["data"] != theirs["data"] {
            differ.push(format!("{what} (instant): {ours} vs {theirs}"));
        }
    }
    let calls = variable_calls(start, end);
    assert_eq!(calls.len(), 3, "job, instance and route: {calls:?}");
    for call in calls {
        let get = |addr| -> Value {
            serde_json::from_str(&client::get(addr, &call).unwrap().body).unwrap()
        };
        let (ours, theirs) = (get(collector.addr), get(prom.addr));
        assert!(
            theirs["data"].as_array().is_some_and(|a| !a.is_empty()),
            "{call}: {theirs}"
        );
        if ours["data"] != theirs["data"] {
            differ.push(format!("{call}: {ours} vs {theirs}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
