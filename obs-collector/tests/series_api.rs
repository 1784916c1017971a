//! The series and label APIs against a real Prometheus holding the same samples: one
//! OpenMetrics file (two days, two jobs, a histogram, a gauge, a series that stops on the
//! first day), imported into the collector and backfilled into Prometheus 2.42 by promtool.
//! The calls are Grafana's: GET and POST form bodies, `match[]` repeated, `start`/`end` as Unix
//! seconds with fractions or RFC 3339; the answers must be the same.

use std::path::Path;
use std::sync::{Arc, Mutex};

use obs_testkit::client;
use obs_testkit::prometheus::Prometheus;
use serde_json::Value;

mod common;

use common::{fake_target, temp_dir, write_config_with_rules, write_days, Collector};

const DAY_S: i64 = 86_400;

/// Two days of samples ending at `end`, every 5 minutes, one chunk per day.
fn days(end: i64) -> Vec<String> {
    let start = end - 2 * DAY_S;
    let mut chunks = vec![String::new(), String::new()];
    for i in 0..(2 * DAY_S / 300) {
        let t = start + i * 300 + 7;
        let day = &mut chunks[((t - start) / DAY_S) as usize];
        for (job, instance) in [("shop", "a:1"), ("shop", "b:1"), ("search", "c:1")] {
            let l = format!(r#"job="{job}",instance="{instance}""#);
            day.push_str(&format!("up{{{l}}} 1 {t}\n"));
            for (route, le) in [
                ("/users/{id}", "0.1"),
                ("/users/{id}", "+Inf"),
                ("/", "+Inf"),
            ] {
                day.push_str(&format!(
                    "http_server_request_duration_seconds_bucket{{{l},http_route=\"{route}\",le=\"{le}\"}} {i} {t}\n"
                ));
            }
        }
        // A series that stops after the first day.
        if i < DAY_S / 300 {
            day.push_str(&format!(
                "legacy_jobs_total{{job=\"shop\",queue=\"old\"}} {i} {t}\n"
            ));
        }
    }
    chunks
}

fn openmetrics(body: &str) -> String {
    format!(
        "# TYPE up gauge\n# TYPE http_server_request_duration_seconds histogram\n# TYPE legacy_jobs_total counter\n{body}# EOF\n"
    )
}

/// GET `path` (or POST its query as a form when `form`), the answer's JSON.
fn ask(addr: std::net::SocketAddr, path: &str, form: bool) -> Value {
    let response = if form {
        let (endpoint, body) = path.split_once('?').unwrap_or((path, ""));
        client::post(
            addr,
            endpoint,
            &[("content-type", b"application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .unwrap()
    } else {
        client::get(addr, path).unwrap()
    };
    serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("{path}: {e}: {}", response.body))
}

#[test]
fn series_and_labels_answer_as_prometheus_does() {
    let dir = temp_dir("series-api");
    // Recent (a fixed date would pass the raw retention, then the retention, as weeks go by).
    let end = (common::now_s() - 3 * 3600) / 300 * 300;
    let (whole, per_day) = write_days(&dir, &days(end), openmetrics);
    let prom = Prometheus::start_backfilled(
        "global:\n  scrape_interval: 5m\nscrape_configs: []\n",
        &["--storage.tsdb.retention.time=10y"],
        &per_day,
    )
    .unwrap();
    // The collector's own target, job `probe`, is filtered by the calls below where it matters.
    let collector = common::collector_over_import(&dir, &whole, &[]);

    let day1 = end - 2 * DAY_S + 600;
    let rfc = |s: i64| obs_collector::time::rfc3339(s * 1000);
    let within = format!("start={}&end={}", end - 2 * DAY_S, end);
    let calls = [
        (format!("/api/v1/labels?match[]=%7Bjob%3D~%22shop%7Csearch%22%7D&{within}"), false),
        (format!("/api/v1/label/job/values?match[]=up%7Bjob%21%3D%22probe%22%7D&{within}"), false),
        (format!("/api/v1/label/__name__/values?match[]=%7Bjob%3D%22shop%22%7D&{within}"), false),
        (
            format!(
                "/api/v1/label/instance/values?match[]=http_server_request_duration_seconds_bucket%7Bjob%3D%22shop%22%7D&start={}&end={}",
                client::encode_query(&rfc(day1)),
                client::encode_query(&rfc(end))
            ),
            false,
        ),
        (
            format!("/api/v1/series?match[]=up%7Bjob%3D%22shop%22%7D&match[]=legacy_jobs_total&start={}.5&end={}.25", end - 2 * DAY_S, end),
            true,
        ),
        // Only the second day: the legacy series is gone.
        (
            format!("/api/v1/series?match[]=legacy_jobs_total&match[]=up%7Bjob%3D%22search%22%7D&start={}&end={end}", end - DAY_S / 2),
            false,
        ),
        (
            format!("/api/v1/label/http_route/values?match[]=http_server_request_duration_seconds_bucket&{within}"),
            false,
        ),
        // Grafana's label-names call, as a form.
        (format!("/api/v1/labels?match[]=up&match[]=legacy_jobs_total&{within}"), true),
    ];
    for (path, form) in &calls {
        let (ours, theirs) = (
            ask(collector.addr, path, *form),
            ask(prom.addr, path, *form),
        );
        assert_eq!(ours["status"], "success", "{path}: {ours}");
        assert_eq!(ours["data"], theirs["data"], "{path}");
        assert!(
            ours["data"].as_array().is_some_and(|a| !a.is_empty()),
            "{path}: {ours}"
        );
    }
    // A limit cuts and says so.
    let cut = ask(
        collector.addr,
        &format!("/api/v1/label/__name__/values?limit=1&{within}"),
        false,
    );
    assert_eq!(cut["data"].as_array().unwrap().len(), 1, "{cut}");
    assert_eq!(cut["warnings"][0], "results truncated due to limit");
    // Errors as Prometheus' API gives them.
    for path in [
        "/api/v1/series",
        "/api/v1/series?match[]=rate(up%5B1m%5D)",
        "/api/v1/labels?start=10&end=1",
        "/api/v1/label/a-b/values",
    ] {
        let r = client::get(collector.addr, path).unwrap();
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["errorType"], "bad_data", "{path}");
    }
    // buildinfo: a Prometheus with the label-match API (2.24 and later), no Mimir features.
    let info = ask(collector.addr, "/api/v1/status/buildinfo", false);
    let version = info["data"]["version"].as_str().unwrap();
    let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
    assert!(version.starts_with("2.") && minor >= 24, "{info}");
    assert!(info["data"].get("features").is_none());
    for key in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(info["data"][key].is_string(), "{key}: {info}");
    }
    let _ = Path::new(&dir);
}

/// `/api/v1/query_exemplars` answers from the exemplars the collector scraped (each target's
/// last page), in Prometheus' shape; Grafana's probe `query=test` succeeds with none.
#[test]
fn exemplars_are_answered_from_the_scraped_pages() {
    let dir = temp_dir("query-exemplars");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let page = format!(
        "# TYPE d histogram\nd_bucket{{le=\"1\"}} 3 # {{trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"}} 0.5 {now:.3}\nd_bucket{{le=\"+Inf\"}} 5\nd_count 5\nd_sum 2\n# EOF\n"
    );
    let target = fake_target(Arc::new(Mutex::new(page)));
    let config = write_config_with_rules(&dir, target, "groups: []\n", "");
    let collector = Collector::start(&config, &dir.join("state.json"), &[]);
    let found = obs_testkit::eventually(
        std::time::Duration::from_secs(10),
        || "no exemplar".into(),
        || {
            let v = ask(
                collector.addr,
                "/api/v1/query_exemplars?query=d_bucket",
                false,
            );
            v["data"].as_array().filter(|a| !a.is_empty()).cloned()
        },
    );
    assert_eq!(
        found[0]["seriesLabels"]["__name__"], "d_bucket",
        "{found:?}"
    );
    assert_eq!(found[0]["seriesLabels"]["le"], "1");
    let e = &found[0]["exemplars"][0];
    assert_eq!(e["labels"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(e["value"], "0.5");
    assert!((e["timestamp"].as_f64().unwrap() - now).abs() < 0.01, "{e}");
    // As a form, with a time range that leaves it out: none.
    let past = format!(
        "/api/v1/query_exemplars?query=d_bucket&start=1&end={}",
        now - 3600.0
    );
    assert_eq!(
        ask(collector.addr, &past, true)["data"],
        serde_json::json!([])
    );
    let probe = ask(collector.addr, "/api/v1/query_exemplars?query=test", false);
    assert_eq!(
        (probe["status"].as_str(), &probe["data"]),
        (Some("success"), &serde_json::json!([]))
    );
    let r = client::get(collector.addr, "/api/v1/query_exemplars").unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
}

/// Sorts each family's entries (Prometheus lists a family's distinct metadata in map order).
fn sorted_metadata(mut answer: Value) -> Value {
    if let Some(families) = answer["data"].as_object_mut() {
        for entries in families.values_mut() {
            if let Some(list) = entries.as_array_mut() {
                list.sort_by_key(|e| e.to_string());
            }
        }
    }
    answer
}

/// `/api/v1/metadata` against a real Prometheus scraping the same two targets (text format, as
/// obs-core serves it): types with `untyped`, help with escapes, a family with help alone,
/// and one family that the two targets describe differently (both listed, once each).
#[test]
fn metadata_answers_as_prometheus_does() {
    let dir = temp_dir("metadata-api");
    let a = fake_target(Arc::new(Mutex::new(
        "# HELP http_requests_total Requests, by \\\"route\\\".\\nPer instance \\\\ job.\n\
         # TYPE http_requests_total counter\nhttp_requests_total{route=\"/\"} 3\n\
         # HELP queue_depth Jobs waiting.\n# TYPE queue_depth gauge\nqueue_depth 2\n\
         # TYPE temperature untyped\ntemperature 21\n\
         # HELP only_help No type given.\nonly_help 1\n\
         # TYPE d_seconds histogram\nd_seconds_bucket{le=\"+Inf\"} 1\nd_seconds_count 1\nd_seconds_sum 0.5\n"
            .to_owned(),
    )));
    let b = fake_target(Arc::new(Mutex::new(
        "# HELP queue_depth Jobs in the queue.\n# TYPE queue_depth gauge\nqueue_depth 5\n"
            .to_owned(),
    )));
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: svc\n    static_configs: [{{ targets: ['{a}', '{b}'] }}]\n"
    );
    let file = dir.join("collector.yml");
    std::fs::write(&file, &config).unwrap();
    let collector = Collector::start(&file, &dir.join("state.json"), &[]);
    let prom = Prometheus::start(&config).unwrap();
    let wait = |addr| {
        obs_testkit::eventually(
            std::time::Duration::from_secs(20),
            || format!("{addr}: not both targets' metadata yet"),
            || {
                let v = ask(addr, "/api/v1/metadata", false);
                let families = v["data"].as_object()?;
                (families.len() == 5 && families["queue_depth"].as_array()?.len() == 2)
                    .then_some(())
            },
        )
    };
    wait(prom.addr);
    wait(collector.addr);
    let theirs = sorted_metadata(ask(prom.addr, "/api/v1/metadata", false));
    assert_eq!(
        theirs["data"]["http_requests_total"][0]["help"],
        "Requests, by \\\"route\\\".\nPer instance \\ job.",
        "the escapes this test means to check: {theirs}"
    );
    for call in [
        "/api/v1/metadata",
        "/api/v1/metadata?metric=queue_depth",
        "/api/v1/metadata?limit_per_metric=1",
        "/api/v1/metadata?metric=absent_metric",
        "/api/v1/metadata?limit=0",
        "/api/v1/metadata?limit=-1&limit_per_metric=0",
    ] {
        let ours = sorted_metadata(ask(collector.addr, call, false));
        let theirs = sorted_metadata(ask(prom.addr, call, false));
        if call.contains("limit_per_metric=1") {
            // Prometheus 2.42 predates `limit_per_metric` (it lists both); 2.53, whose API
            // the collector answers as, keeps one, as the collector does.
            let count = |v: &Value| v["data"]["queue_depth"].as_array().map(Vec::len);
            assert_eq!((count(&ours), count(&theirs)), (Some(1), Some(2)), "{call}");
            continue;
        }
        assert_eq!(ours, theirs, "{call}");
    }
    // `limit` keeps that many families (which ones is Prometheus' map order: compare counts).
    let families = |v: Value| v["data"].as_object().map(|m| m.len());
    let call = "/api/v1/metadata?limit=2";
    assert_eq!(
        families(ask(collector.addr, call, false)),
        families(ask(prom.addr, call, false))
    );
    let bad = "/api/v1/metadata?limit=many";
    let (ours, theirs) = (
        client::get(collector.addr, bad).unwrap(),
        client::get(prom.addr, bad).unwrap(),
    );
    assert_eq!((ours.status, theirs.status), (400, 400), "{bad}");
    let error = |body: &str| serde_json::from_str::<Value>(body).unwrap()["errorType"].clone();
    assert_eq!(error(&ours.body), error(&theirs.body), "{bad}");
    let ours = client::get(collector.addr, "/api/v1/metadata?limit_per_metric=x").unwrap();
    assert_eq!(ours.status, 400, "{}", ours.body);
}
