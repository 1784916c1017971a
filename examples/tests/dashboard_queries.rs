//! Every query of `dashboards/obs-red.json` and every expression of the shipped rule files runs
//! against a real Prometheus that scrapes the demo service under known traffic (1 request in 5
//! fails): each parses, returns data, and the numbers match the traffic.

use std::path::Path;
use std::time::Duration;

use obs_testkit::client;
use obs_testkit::process::DemoService;
use obs_testkit::prometheus::Prometheus;
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Grafana's substitutions for a single-job, all-instances, all-routes view.
fn substitute(expr: &str, job: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$job", job)
        .replace("$instance", ".*")
        .replace("$route", ".*")
}

#[test]
fn dashboard_and_rule_queries_return_the_traffics_numbers() {
    let demo = DemoService::start(
        env!("CARGO_BIN_EXE_demo-service").as_ref(),
        &[("OTEL_RESOURCE_ATTRIBUTES", "service.version=1.4.2")],
    )
    .unwrap();
    let rules: Vec<String> = ["obs-red.rules.yml", "obs-slo.rules.yml"]
        .iter()
        .map(|f| {
            root()
                .join("alerts")
                .join(f)
                .canonicalize()
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}', '{}']\nscrape_configs:\n  - job_name: demo\n    static_configs: [{{ targets: ['{}'] }}]\n",
        rules[0],
        rules[1],
        demo.admin.unwrap()
    );
    let prom = Prometheus::start(&config).unwrap();

    // 40 s of steady traffic: 4 of 5 requests succeed, 1 fails on /fail. Of the successes,
    // 1 in 8 is a signup (202), whose welcome email is a job (in this process, without
    // Redis); 1 signup in 4 bounces.
    let addr = demo.addr;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut signups = 0;
    let sent = obs_testkit::traffic::every(Duration::from_millis(20), |sent| {
        if std::time::Instant::now() >= deadline {
            return std::ops::ControlFlow::Break(sent);
        }
        if sent % 10 == 0 {
            let email = if signups % 4 == 0 {
                "bounce@example.com"
            } else {
                "ada@example.com"
            };
            let r = client::post(addr, "/signup", &[], email.as_bytes()).unwrap();
            assert_eq!(r.status, 202);
            signups += 1;
        } else {
            let path = if sent % 5 == 4 {
                "/fail".to_owned()
            } else {
                format!("/users/{sent}")
            };
            client::get(addr, &path).unwrap();
        }
        std::ops::ControlFlow::Continue(())
    });
    // Until a scrape has seen every request sent.
    prom.wait_until(
        r#"sum(http_server_request_duration_seconds_count{job="demo"})"#,
        Duration::from_secs(10),
        |r| {
            r.first()
                .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok())
                .is_some_and(|n| n >= sent as f64)
        },
    )
    .unwrap();

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("dashboards/obs-red.json")).unwrap(),
    )
    .unwrap();
    let mut ran = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = substitute(target["expr"].as_str().unwrap(), "demo");
            let result = prom
                .query(&expr)
                .unwrap_or_else(|e| panic!("{}: {e}", panel["title"]));
            assert!(
                !result.is_empty(),
                "panel {:?} query {} returned no data:\n{expr}",
                panel["title"],
                target["refId"]
            );
            ran += 1;
        }
    }
    assert_eq!(
        ran, 21,
        "every query of every panel, the error panel's exemplar query too"
    );

    let value = |expr: &str| -> f64 {
        let r = prom.query(&substitute(expr, "demo")).unwrap();
        r[0]["value"][1].as_str().unwrap().parse().unwrap()
    };
    let panel_expr = |title: &str, i: usize| {
        let p = dashboard["panels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["title"] == title)
            .unwrap();
        p["targets"][i]["expr"].as_str().unwrap().to_owned()
    };
    let ratio = value(&panel_expr("Error ratio (5xx)", 0));
    assert!(
        (ratio - 0.2).abs() < 0.01,
        "error ratio {ratio} is not within 1 point of 20%"
    );
    let by_route = prom
        .query_by(
            &substitute(&panel_expr("Error ratio by route", 0), "demo"),
            "http_route",
        )
        .unwrap();
    // Only routes that had a 5xx have a ratio (the division needs both sides).
    assert_eq!(by_route, vec![("/fail".to_owned(), 1.0)]);
    // Split by the version target_info names: the same 20%, under the version served.
    // Each by-version panel: one series, under the version served.
    let by_version = |title: &str| {
        let split = prom
            .query_by(
                &substitute(&panel_expr(title, 0), "demo"),
                "service_version",
            )
            .unwrap();
        assert_eq!(split.len(), 1, "{title}: {split:?}");
        assert_eq!(split[0].0, "1.4.2", "{title}");
        split[0].1
    };
    let ratio_of_version = by_version("Error ratio by version");
    assert!((ratio_of_version - 0.2).abs() < 0.01, "{ratio_of_version}");
    by_version("Latency p95 by version");
    let rate = value(&panel_expr("Request rate", 0));
    let expected_rate = sent as f64 / 40.0;
    assert!(
        (rate - expected_rate).abs() / expected_rate < 0.25,
        "rate {rate}/s vs about {expected_rate}/s sent"
    );
    let p95 = value(&panel_expr("Latency p50 / p95 / p99", 1));
    assert!(
        p95 > 0.0 && p95 < 0.1,
        "p95 {p95}: these handlers answer in milliseconds"
    );
    let five_xx = prom
        .query_by(
            &substitute(&panel_expr("Requests by status class", 0), "demo"),
            "status_class",
        )
        .unwrap();
    let class = |c: &str| {
        five_xx
            .iter()
            .find(|(k, _)| k == c)
            .map(|(_, v)| *v)
            .unwrap()
    };
    assert!((class("5xx") / (class("2xx") + class("5xx")) - 0.2).abs() < 0.01);
    assert_eq!(value(&panel_expr("Targets up", 0)), 1.0);
    let job_rate = value(&panel_expr("Job rate by name", 0));
    let expected_jobs = f64::from(signups) / 40.0;
    assert!(
        (job_rate - expected_jobs).abs() / expected_jobs < 0.3,
        "job rate {job_rate}/s vs about {expected_jobs}/s"
    );
    let job_failures = value(&panel_expr("Job failure ratio by name", 0));
    assert!(
        (job_failures - 0.25).abs() < 0.1,
        "job failure ratio {job_failures}: 1 signup in 4 bounces"
    );
    assert!(value(&panel_expr("Job duration p95 by name", 0)) > 0.0);
    // The service's start-up statements on its SQLite file: ten rows inserted into each table.
    let mut inserts = prom
        .query_by(
            &substitute(
                "sum by (db_collection_name) (db_client_operation_duration_seconds_count{job=~\"$job\", db_operation_name=\"INSERT\"})",
                "demo",
            ),
            "db_collection_name",
        )
        .unwrap();
    inserts.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        inserts,
        vec![("orders".to_owned(), 10.0), ("users".to_owned(), 10.0)]
    );

    // Every variable's values include the demo.
    for (label, matcher) in [
        ("job", ""),
        ("instance", "job=~\"demo\""),
        ("http_route", "job=~\"demo\""),
    ] {
        let path = format!(
            "/api/v1/label/{label}/values?match[]={}",
            client::encode_query(&format!(
                "http_server_request_duration_seconds_count{{{matcher}}}"
            ))
        );
        let r = client::get(prom.addr, &path).unwrap();
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert!(
            !v["data"].as_array().unwrap().is_empty(),
            "variable over {label} has no values"
        );
    }

    // The rules loaded and evaluate without errors; every expression parses and runs.
    let r: Value =
        serde_json::from_str(&client::get(prom.addr, "/api/v1/rules").unwrap().body).unwrap();
    let rules = r["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone());
    let mut n = 0;
    for rule in rules {
        assert_eq!(
            rule["health"], "ok",
            "{}: {}",
            rule["name"], rule["lastError"]
        );
        prom.query(rule["query"].as_str().unwrap()).unwrap();
        n += 1;
    }
    assert_eq!(n, 10);
    // 20% errors with more than 10 requests a minute: HighErrorRate is at least pending.
    prom.wait_until(
        "ALERTS{alertname=\"HighErrorRate\",job=\"demo\"}",
        Duration::from_secs(10),
        |r| !r.is_empty(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // 1 job in 4 failing, more than 10 a minute: HighJobFailureRate too, for the job's name.
    prom.wait_until(
        "ALERTS{alertname=\"HighJobFailureRate\",job=\"demo\",messaging_destination_name=\"send_welcome_email\"}",
        Duration::from_secs(10),
        |r| !r.is_empty(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The dashboard's Deploys annotation (a `target_info` series that was not there one step
/// before: `unless … offset`, since `changes()` never fires on an info series) against a real
/// Prometheus: the first sight and each version change make one, a restart with the same
/// version makes none.
#[test]
fn the_deploy_annotation_marks_version_changes_only() {
    use std::sync::{Arc, Mutex};
    let page_of = |version: &str, started: u32| {
        format!("target_info{{service_name=\"shop\",service_version=\"{version}\"}} 1\nprocess_start_time_seconds {started}\n")
    };
    let page = Arc::new(Mutex::new(page_of("1.0.0", 1)));
    let target = obs_testkit::receivers::serve_text(Arc::clone(&page));
    let prom = Prometheus::start(&format!(
        "global:\n  scrape_interval: 500ms\nscrape_configs:\n  - job_name: shop\n    static_configs: [{{ targets: ['{target}'] }}]\n"
    ))
    .unwrap();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("dashboards/obs-red.json")).unwrap(),
    )
    .unwrap();
    let annotation = dashboard["annotations"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "Deploys")
        .expect("a Deploys annotation");
    // Grafana runs it as a range query with `$__interval` as its step: each step is this.
    let expr =
        substitute(annotation["expr"].as_str().unwrap(), "shop").replace("$__interval", "3s");
    let marked = || -> Vec<String> {
        let mut versions: Vec<String> = prom
            .query(&expr)
            .unwrap()
            .iter()
            .map(|s| s["metric"]["service_version"].as_str().unwrap().to_owned())
            .collect();
        versions.sort();
        versions
    };
    let wait = |want: &[&str], what: &str| {
        prom.wait_until(&expr, Duration::from_secs(15), |_| marked() == want)
            .unwrap_or_else(|e| panic!("{what}: {e}; marked {:?}", marked()));
    };
    wait(&["1.0.0"], "the first sight");
    wait(&[], "a steady version");
    // A restart with the same version: for two steps, nothing is marked.
    *page.lock().unwrap() = page_of("1.0.0", 2);
    // Until Prometheus has scraped only the restarted process for 7 s (more than two steps).
    prom.wait_until(
        r#"min_over_time(process_start_time_seconds{job="shop"}[7s]) == 2"#,
        Duration::from_secs(20),
        |r| {
            assert_eq!(marked(), Vec::<String>::new(), "a restart is no deploy");
            !r.is_empty()
        },
    )
    .unwrap();
    assert_eq!(marked(), Vec::<String>::new(), "a restart is no deploy");
    *page.lock().unwrap() = page_of("1.1.0", 3);
    wait(&["1.1.0"], "the deploy");
    wait(&[], "after the deploy");
    *page.lock().unwrap() = page_of("1.0.0", 4);
    wait(&["1.0.0"], "the rollback");
}
