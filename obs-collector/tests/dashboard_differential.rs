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

use obs_testkit::client;
use obs_testkit::dashboard::{self, Substitutions};
use obs_testkit::prometheus::Prometheus;
use serde_json::Value;

mod common;

use common::{ask_range, difference, temp_dir, write_days};

const DAY_S: i64 = 86_400;

/// Grafana's substitutions for 7 days on a 1,600-pixel panel, with a scrape interval of 3m.
const GRAFANA: Substitutions = Substitutions {
    interval: "5m",
    rate_interval: "12m",
    job: "shop",
};

#[test]
fn every_dashboard_query_answers_as_prometheus_does_over_a_week() {
    let dir = temp_dir("dashboard-differential");
    let now = common::now_s();
    // Three hours ago, on a whole step: all eight days newer than the raw retention (8d), so
    // that no block of them is downsampled while the test runs.
    let end_s = (now - 3 * 3600) / 300 * 300;
    // Two instances (one moves to 1.1.0 mid-week), two routes, a scrape every 3 minutes.
    let week: Vec<String> =
        dashboard::Job::new(2, 2, &["0.1", "0.25", "0.5", "1", "+Inf"], 180, end_s, 8).collect();
    let (whole, per_day) = write_days(&dir, &week, dashboard::openmetrics);
    let prom = Prometheus::start_backfilled(
        "global:\n  scrape_interval: 3m\nscrape_configs: []\n",
        &["--storage.tsdb.retention.time=10y"],
        &per_day,
    )
    .unwrap();
    let collector = common::collector_over_import(&dir, &whole, &[]);

    let (start, end) = (end_s - 7 * DAY_S, end_s);
    let shipped = dashboard::shipped();
    let queries = dashboard::queries(&shipped, GRAFANA);
    assert!(queries.len() >= 20, "{queries:?}");
    let mut differ = Vec::new();
    for dashboard::Query {
        what,
        expr,
        instant,
    } in &queries
    {
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
    for dashboard::Query { what, expr, .. } in queries.iter().filter(|q| q.instant) {
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
    let calls = dashboard::variable_calls(&shipped, GRAFANA, start, end);
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
