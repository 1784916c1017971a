//! obs-collector as a real process: `check` exit codes, alert state surviving `kill -9`, a
//! malformed scrape page failing the scrape, not the process, and the allocator setting it
//! restarts itself with.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use obs_testkit::{client, eventually};

mod common;

use common::{fake_target, temp_dir, write_config, write_config_with_rules, Collector, BIN};

/// Runs the binary with `args`: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_validates_and_exits_2_with_file_line_and_reason() {
    let dir = temp_dir("check");
    let config = write_config(&dir, "127.0.0.1:1".parse().unwrap(), "30s", "");
    let config = config.to_str().unwrap();
    let (code, stdout, stderr) = run(&["check", config]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("OK (1 jobs, 1 targets, 1 rules)"),
        "{stdout}"
    );

    std::fs::write(
        dir.join("rules.yml"),
        "groups:\n  - name: t\n    rules:\n      - alert: Bad\n        expr: histogram_count(x)\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check", config]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("rules.yml:4:") && err.contains("histogram_count"),
        "{err}"
    );

    std::fs::write(config, "global:\n  scrape_interval: soon\n").unwrap();
    let (code, _, err) = run(&["check", config]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("collector.yml:2:") && err.contains("invalid duration"),
        "{err}"
    );

    // Running with a bad config exits 2 too, before doing anything.
    assert_eq!(run(&["--config", config]).0, Some(2));
    assert_eq!(run(&["--bogus"]).0, Some(2));
}

#[test]
fn alert_state_survives_kill_9() {
    let dir = temp_dir("kill9");
    let page = Arc::new(Mutex::new("flag 1\n".to_owned()));
    let target = fake_target(Arc::clone(&page));
    let config = write_config(&dir, target, "8s", "");
    let state = dir.join("state.json");

    let first = Collector::start(&config, &state, &[]);
    let pending = first.wait_alert("pending", Duration::from_secs(10));
    let pending_seen = Instant::now();
    let active_at = pending["activeAt"].as_str().unwrap().to_owned();
    assert_eq!(
        pending["annotations"]["description"],
        format!("flag is 1 on {target}")
    );
    // Killed once the pending alert is in the state file and has been pending for 2 s: a timer
    // that continued then fires within 8 - 2 + 1 (slot) s of the restart, one that restarted
    // only after 8 s, so the check below tells them apart.
    eventually(
        Duration::from_secs(5),
        || "the pending alert was never saved".into(),
        || {
            let saved =
                std::fs::read_to_string(&state).is_ok_and(|s| s.contains(r#""state":"pending""#));
            (saved && pending_seen.elapsed() >= Duration::from_secs(2)).then_some(())
        },
    );
    let mut first = first;
    first.kill9();

    let restarted_at = Instant::now();
    let second = Collector::start(&config, &state, &[]);
    // Before the first evaluation the restored alert is already known, with its ActiveAt.
    let restored = second.wait_alert("pending", Duration::from_secs(5));
    assert_eq!(
        restored["activeAt"],
        active_at.as_str(),
        "the for timer was not reset"
    );
    let firing = second.wait_alert("firing", Duration::from_secs(15));
    assert_eq!(firing["activeAt"], active_at.as_str());
    assert!(
        restarted_at.elapsed() < Duration::from_secs(8),
        "fired {:?} after the restart: the timer restarted instead of continuing",
        restarted_at.elapsed()
    );
}

/// The head's samples survive `kill -9`: they are in the write-ahead log under
/// `--storage.path`. The restarted collector scrapes once an hour, so a rule over the last hour
/// sees two samples or more only if the ones from before the kill were replayed; the same
/// restart with an empty storage path sees one, and nothing fires.
#[test]
fn samples_survive_kill_9_in_the_write_ahead_log() {
    let dir = temp_dir("wal-kill9");
    let target = fake_target(Arc::new(Mutex::new("flag 1\n".to_owned())));
    let rules = "groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: Remembered\n        expr: increase(flag[1h]) == 0\n";
    let config = write_config_with_rules(&dir, target, rules, "");
    let state = dir.join("state.json");
    let mut first = Collector::start(&config, &state, &[]);
    // A few scrapes, each committed to the log as it is taken.
    first.wait_alert("firing", Duration::from_secs(10));
    first.wait_evaluations(3);
    first.kill9();

    let hourly = std::fs::read_to_string(&config)
        .unwrap()
        .replace("scrape_interval: 1s", "scrape_interval: 1h");
    std::fs::write(&config, hourly).unwrap();
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let second = Collector::start(&config, &state, &[]);
    let replayed = second.wait_alert("firing", Duration::from_secs(10));
    // The samples from before the kill, through Prometheus' query API (GET and POST form).
    let range = client::get(
        second.addr,
        &format!(
            "/api/v1/query_range?query=flag&start={}&end={}&step=1s",
            (killed_ms - 60_000) as f64 / 1000.0,
            killed_ms as f64 / 1000.0
        ),
    )
    .unwrap();
    assert_eq!(range.status, 200, "{}", range.body);
    let v: serde_json::Value = serde_json::from_str(&range.body).unwrap();
    assert_eq!(v["data"]["resultType"], "matrix", "{v}");
    let points = v["data"]["result"][0]["values"].as_array().unwrap();
    assert!(points.len() >= 3, "{v}");
    assert!(points.iter().all(|p| p[1] == "1"), "{v}");
    assert_eq!(v["data"]["result"][0]["metric"]["job"], "svc");
    let instant = client::post(
        second.addr,
        "/api/v1/query",
        &[("content-type", b"application/x-www-form-urlencoded")],
        b"query=sum+by+(job)+(flag)",
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&instant.body).unwrap();
    assert_eq!(v["data"]["resultType"], "vector", "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");
    assert_eq!(
        v["data"]["result"][0]["metric"],
        serde_json::json!({"job": "svc"})
    );
    let refused = client::get(second.addr, "/api/v1/query?query=flag[").unwrap();
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains(r#""errorType":"bad_data""#),
        "{}",
        refused.body
    );
    assert_eq!(replayed["labels"]["alertname"], "Remembered");
    let output = second.output.lock().unwrap().clone();
    let opened = output
        .lines()
        .find(|l| l.contains("storage opened"))
        .unwrap_or_else(|| panic!("no storage line: {output}"));
    assert!(!opened.contains(r#""wal.records":0"#), "{opened}");

    // Without the log: one sample in the last hour, no increase, no alert.
    let forgetful = Collector::start(&config, &dir.join("other-state.json"), &[]);
    forgetful.wait_evaluations(3);
    assert!(forgetful.alerts().is_empty(), "{:?}", forgetful.alerts());
}

/// `/api/v1/query` and `/api/v1/query_range` against a real Prometheus scraping the same page:
/// the same result types, label sets, timestamps and values for the same question at the
/// same time (a page whose values do not move, so both stores hold the same values).
#[test]
fn the_query_api_answers_as_prometheus_does() {
    use obs_testkit::prometheus::Prometheus;
    let dir = temp_dir("query-api");
    let page = "flag{route=\"/a\"} 1\nflag{route=\"/b\"} 3\nc_total{route=\"/a\"} 10\ninfo{route=\"/a\",version=\"1\"} 1\ninfo{route=\"/b\",version=\"2\"} 1\n";
    let target = fake_target(Arc::new(Mutex::new(page.to_owned())));
    let config = write_config_with_rules(&dir, target, "groups: []\n", "");
    let collector = Collector::start(&config, &dir.join("state.json"), &[]);
    let prom = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: svc\n    static_configs: [{{ targets: ['{target}'] }}]\n"
    ))
    .unwrap();
    prom.wait_until(
        "count_over_time(flag[1m]) >= 6",
        Duration::from_secs(20),
        |r| r.len() == 2,
    )
    .unwrap();
    eventually(
        Duration::from_secs(20),
        || "the collector has not scraped".into(),
        || {
            let body = client::get(collector.addr, "/api/v1/query?query=count(flag)")
                .ok()?
                .body;
            body.contains(r#""2"]"#).then_some(())
        },
    );
    // Both have held the page for a few seconds: ask about the second before last.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let at = (now - 2.0).floor();
    let ask = |addr: std::net::SocketAddr, path: &str| -> serde_json::Value {
        let r = client::get(addr, path).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        // Series in one order for both (Prometheus sorts a vector by nothing in particular).
        if let Some(result) = v["data"]["result"].as_array_mut() {
            result.sort_by_key(|s| s["metric"].to_string());
        }
        v
    };
    for query in [
        "flag",
        "sum by (job) (flag)",
        "flag > 2",
        "flag * 2 + 1",
        "rate(c_total[5s])",
        "count(flag)",
        "42",
        // The dashboard's status-class panel, and label_replace's edges: a name capture, no
        // match (unchanged), a new label only where it matched.
        r#"sum by (status_class) (label_replace(flag, "status_class", "${1}xx", "route", "/(.)"))"#,
        r#"label_replace(flag, "kind", "${r}-x", "route", "/(?P<r>.*)")"#,
        r#"label_replace(flag, "kind", "z", "route", "nomatch")"#,
        r#"label_replace(flag, "kind", "$1", "route", "/(a)?.*")"#,
        // Many-to-one matching, as the dashboard's by-version panels use it.
        "flag * on (route) group_left(version) info",
        "sum by (version) (flag * on (job, instance, route) group_left(version) info)",
        "info * on (route) group_right(version) flag",
        "flag > on (route) group_left(version) info",
        "flag > bool on (route) group_left info",
        // Functions over numbers.
        "abs(flag - 2)",
        "ceil(flag / 2)",
        "floor(flag / 2)",
        "sqrt(flag)",
        "exp(flag)",
        "ln(flag)",
        "log2(flag)",
        "log10(flag)",
        "clamp_min(flag, 2)",
        "clamp_max(flag, 2)",
        "clamp(flag, 2, 2.5)",
        "clamp(flag, 3, 1)",
        "round(flag / 3)",
        "round(flag / 3, 0.1)",
        "time()",
        "vector(1)",
        "scalar(flag)",
        "flag * scalar(count(flag))",
    ] {
        let q: String = serde_urlencoded::to_string([("query", query)]).unwrap();
        let instant = format!("/api/v1/query?{q}&time={at}");
        assert_eq!(
            ask(collector.addr, &instant),
            ask(prom.addr, &instant),
            "{query} at {at}"
        );
        let range = format!("/api/v1/query_range?{q}&start={}&end={at}&step=1", at - 1.0);
        assert_eq!(
            ask(collector.addr, &range),
            ask(prom.addr, &range),
            "{query} from {} to {at}",
            at - 1.0
        );
    }
    // Errors: Prometheus' types and codes.
    for (path, code, error_type) in [
        ("/api/v1/query?query=flag[", 400, "bad_data"),
        (
            "/api/v1/query_range?query=flag&start=2&end=1&step=1",
            400,
            "bad_data",
        ),
        (
            "/api/v1/query_range?query=flag&start=0&end=100000&step=1",
            400,
            "bad_data",
        ),
        (
            "/api/v1/query_range?query=flag&start=0&end=1&step=0",
            400,
            "bad_data",
        ),
        // The "one" side of a group_left with two series per match: many-to-many.
        (
            "/api/v1/query?query=c_total%20%2B%20on%20(job)%20group_left%20flag",
            422,
            "execution",
        ),
        // Two series that become one label set.
        (
            "/api/v1/query?query=label_replace(flag%2C%22route%22%2C%22%22%2C%22route%22%2C%22.*%22)",
            422,
            "execution",
        ),
        (
            "/api/v1/query?query=label_replace(flag%2C%22a-b%22%2C%22x%22%2C%22route%22%2C%22.*%22)",
            422,
            "execution",
        ),
        (
            "/api/v1/query?query=label_replace(flag%2C%22a%22%2C%22x%22%2C%22route%22%2C%22(%22)",
            422,
            "execution",
        ),
    ] {
        let ours = client::get(collector.addr, path).unwrap();
        let theirs = client::get(prom.addr, path).unwrap();
        assert_eq!((ours.status, theirs.status), (code, code), "{path}");
        for body in [&ours.body, &theirs.body] {
            assert!(
                body.contains(&format!(r#""errorType":"{error_type}""#)),
                "{path}: {body}"
            );
        }
    }
}

/// A label that takes a new value on every scrape (12,000 new series a minute) is bounded by
/// `--storage.max-series`, not by the machine: the series stop at the limit, the refusals
/// are counted and the status page says so, and the rules are still evaluated.
#[test]
fn churning_labels_stop_at_the_series_limit() {
    let dir = temp_dir("churn");
    let page = Arc::new(Mutex::new(String::new()));
    let churn = |scrape: u64| -> String {
        (0..200)
            .map(|i| format!("churn{{request_id=\"{scrape}-{i}\"}} 1\n"))
            .collect()
    };
    *page.lock().unwrap() = churn(0);
    let target = fake_target(Arc::clone(&page));
    let config = write_config(&dir, target, "0s", "");
    let collector = obs_testkit::process::CollectorProcess::start_with_args(
        BIN.as_ref(),
        &config,
        &dir.join("state.json"),
        &[],
        &["--storage.max-series", "1000"],
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let changing = {
        let (page, stop) = (Arc::clone(&page), Arc::clone(&stop));
        std::thread::spawn(move || {
            obs_testkit::traffic::every(Duration::from_millis(1000), |i| {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return std::ops::ControlFlow::Break(());
                }
                *page.lock().unwrap() = churn(i + 1);
                std::ops::ControlFlow::Continue(())
            })
        })
    };
    let warned = collector.wait_page("The series limit is reached", Duration::from_secs(30));
    assert!(warned.contains("at most 1000 series"), "{warned}");
    let count = |query: &str| -> f64 {
        let q = serde_urlencoded::to_string([("query", query)]).unwrap();
        let body = client::get(collector.addr, &format!("/api/v1/query?{q}"))
            .unwrap()
            .body;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map_or(0.0, |s| s.parse().unwrap())
    };
    let held = count("count(churn)");
    assert!(held > 0.0 && held <= 1000.0, "{held} churn series held");
    eventually(
        Duration::from_secs(30),
        || "the refusals are not counted on /metrics".into(),
        || {
            let metrics = client::get(collector.addr, "/metrics").ok()?.body;
            let refused = metrics
                .lines()
                .find(|l| l.starts_with("obs_collector_series_refused_total "))?;
            (refused.rsplit(' ').next()?.parse::<f64>().ok()? > 0.0).then_some(())
        },
    );
    // Scraping and the rules go on: the target is up, the rule keeps being evaluated.
    collector.wait_evaluations(2);
    assert_eq!(count("up"), 1.0);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    changing.join().unwrap();
}

#[test]
fn a_malformed_page_fails_the_scrape_not_the_process() {
    let dir = temp_dir("malformed");
    let page = Arc::new(Mutex::new("flag 0\n".to_owned()));
    let target = fake_target(Arc::clone(&page));
    let config = write_config(&dir, target, "0s", "");
    let collector = Collector::start(&config, &dir.join("state.json"), &[]);
    *page.lock().unwrap() = "flag{oops 1\n<html>".to_owned();
    let html = collector.wait_page("malformed page: line 1", Duration::from_secs(10));
    assert!(html.contains("class=\"badge down\""), "{html}");
    let listed = || -> serde_json::Value {
        let body = client::get(collector.addr, "/api/v1/targets").unwrap().body;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["activeTargets"][0].clone()
    };
    let down = listed();
    assert_eq!(down["health"], "down", "{down}");
    assert_eq!(down["labels"]["job"], "svc", "{down}");
    assert_eq!(
        down["discoveredLabels"]["__address__"],
        target.to_string(),
        "{down}"
    );
    assert_eq!(
        down["scrapeUrl"],
        format!("http://{target}/metrics"),
        "{down}"
    );
    assert!(
        down["lastError"]
            .as_str()
            .unwrap()
            .contains("malformed page: line 1"),
        "{down}"
    );
    // Recovers when the page is fixed, and the alert logic sees the new value.
    *page.lock().unwrap() = "flag 2\n".to_owned();
    let firing = collector.wait_alert("firing", Duration::from_secs(10));
    assert_eq!(firing["value"], "2e+00");
    let up = listed();
    assert_eq!(
        (&up["health"], &up["lastError"]),
        (&"up".into(), &"".into()),
        "{up}"
    );
    let metrics = client::get(collector.addr, "/metrics").unwrap().body;
    assert!(
        metrics.contains("obs_collector_scrapes_total{job=\"svc\",result=\"failure\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("obs_collector_series "), "{metrics}");
}

#[test]
fn a_token_protects_the_pages_and_a_public_bind_without_one_warns() {
    let dir = temp_dir("token");
    let page = Arc::new(Mutex::new("flag 0\n".to_owned()));
    let config = write_config(&dir, fake_target(page), "0s", "");
    let collector = Collector::start(
        &config,
        &dir.join("state.json"),
        &[("OBS_COLLECTOR_TOKEN", "c0llect0r-t0ken")],
    );
    for path in [
        "/",
        "/api/v1/alerts",
        "/api/v1/rules",
        "/api/v1/targets",
        "/metrics",
    ] {
        assert_eq!(
            client::get(collector.addr, path).unwrap().status,
            401,
            "{path}"
        );
        let ok = client::request(
            collector.addr,
            "GET",
            path,
            &[("authorization", b"Bearer c0llect0r-t0ken")],
        )
        .unwrap();
        assert_eq!(ok.status, 200, "{path}");
    }
    assert_eq!(
        client::get(collector.addr, "/-/healthy").unwrap().status,
        200
    );
    assert!(!collector.output.lock().unwrap().contains("c0llect0r-t0ken"));

    // Basic auth instead (what a browser prompts for).
    let basic = Collector::start(
        &config,
        &dir.join("basic.json"),
        &[("OBS_COLLECTOR_BASIC_AUTH", "ops:s3cr3t pass")],
    );
    let denied = client::get(basic.addr, "/").unwrap();
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.header("www-authenticate"),
        Some("Basic realm=\"obs-collector\"")
    );
    let wrong = client::request(
        basic.addr,
        "GET",
        "/",
        &[("authorization", b"Basic b3BzOndyb25n")],
    )
    .unwrap();
    assert_eq!(wrong.status, 401);
    // base64("ops:s3cr3t pass")
    let ok = client::request(
        basic.addr,
        "GET",
        "/",
        &[("authorization", b"Basic b3BzOnMzY3IzdCBwYXNz")],
    )
    .unwrap();
    assert_eq!(ok.status, 200);

    let port = obs_testkit::prometheus::free_port().unwrap();
    let mut public = Command::new(BIN)
        .args([
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--state-file",
        ])
        .arg(dir.join("public.json"))
        .env_remove("OBS_COLLECTOR_TOKEN")
        .env_remove("OBS_COLLECTOR_BASIC_AUTH")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(public.stdout.take().unwrap());
    let mut warned = false;
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut stdout, &mut line).is_ok_and(|n| n > 0) {
        if line.contains("without OBS_COLLECTOR_TOKEN") {
            warned = line.contains("\"level\":\"WARN\"");
            break;
        }
        if line.contains("obs-collector started") && warned {
            break;
        }
        line.clear();
    }
    let _ = public.kill();
    let _ = public.wait();
    assert!(warned, "no warning for a public bind without a token");
}

/// The collector is a service obs instruments: its pages go through `obs.layer()` (request id
/// echoed, one JSON line per request, its own RED series by route template), its `/metrics` is
/// negotiated as obs' admin server's is, and SIGTERM stops it through `obs.shutdown_signal()`.
#[test]
fn the_collector_serves_through_obs_and_stops_on_sigterm() {
    let dir = temp_dir("on-obs");
    let target = fake_target(Arc::new(Mutex::new("flag 0\n".to_owned())));
    let config = write_config(&dir, target, "8s", "");
    let collector = Collector::start(&config, &dir.join("state.json"), &[]);

    let page = client::request(
        collector.addr,
        "GET",
        "/api/v1/rules",
        &[("x-request-id", b"req-42")],
    )
    .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(page.request_id(), "req-42");
    let line = eventually(
        Duration::from_secs(5),
        || collector.output.lock().unwrap().clone(),
        || {
            let out = collector.output.lock().unwrap();
            out.lines()
                .find(|l| l.contains(r#""request_id":"req-42""#) && l.contains("request completed"))
                .map(str::to_owned)
        },
    );
    assert!(line.contains(r#""http.route":"/api/v1/rules""#), "{line}");

    let accept: &[u8] = b"application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
    let metrics =
        client::request(collector.addr, "GET", "/metrics", &[("accept", accept)]).unwrap();
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/openmetrics-text")),
        "{:?}",
        metrics.headers
    );
    assert!(metrics.body.ends_with("# EOF\n"), "{}", metrics.body);
    let served = metrics.body.lines().find(|l| {
        l.starts_with("http_server_request_duration_seconds_count")
            && l.contains(r#"http_route="/api/v1/rules""#)
    });
    assert!(served.is_some(), "{}", metrics.body);
    assert!(
        metrics.body.contains("# TYPE obs_collector_series gauge"),
        "{}",
        metrics.body
    );
    let plain = client::get(collector.addr, "/metrics").unwrap();
    assert_eq!(
        plain.header("content-type"),
        Some(obs::metrics::CONTENT_TYPE)
    );

    let killed = Command::new("kill")
        .args(["-TERM", &collector.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    eventually(
        Duration::from_secs(10),
        || collector.output.lock().unwrap().clone(),
        || {
            let out = collector.output.lock().unwrap();
            (out.contains("shutdown requested") && out.contains("obs shut down")).then_some(())
        },
    );
}

/// The deploy log: a new `service_version` on a target's `target_info` is one deploy, a new
/// `process_start_time_seconds` with the same version is a restart, nothing else is; it is on
/// `/api/v1/deploys` and the status page, and survives `kill -9` without a deploy being
/// reported again or invented.
#[test]
fn deploys_are_logged_and_survive_kill_9() {
    let dir = temp_dir("deploys");
    let page_of = |version: &str, started: f64| {
        format!(
            "target_info{{service_name=\"shop\",service_version=\"{version}\"}} 1\nprocess_start_time_seconds {started}\nflag 0\n"
        )
    };
    let page = Arc::new(Mutex::new(page_of("1.0.0", 1000.0)));
    let target = fake_target(Arc::clone(&page));
    let config = write_config(&dir, target, "8s", "");
    let state = dir.join("state.json");
    let deploys = |c: &common::CollectorProcess| -> Vec<serde_json::Value> {
        let body = client::get(c.addr, "/api/v1/deploys").unwrap().body;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["deploys"].as_array().unwrap().clone()
    };

    let mut first = Collector::start(&config, &state, &[]);
    // Seen, not deployed: the first sight of an instance is no deploy.
    eventually(
        Duration::from_secs(10),
        || "the target is never scraped".into(),
        || {
            let body = client::get(first.addr, "/api/v1/deploys").ok()?.body;
            body.contains(r#""version":"1.0.0""#).then_some(())
        },
    );
    assert!(deploys(&first).is_empty());
    *page.lock().unwrap() = page_of("1.1.0", 2000.0);
    let found = eventually(
        Duration::from_secs(10),
        || format!("no deploy: {:?}", deploys(&first)),
        || deploys(&first).into_iter().next(),
    );
    assert_eq!(found["change"], "deploy");
    assert_eq!(
        (found["previous"].as_str(), found["version"].as_str()),
        (Some("1.0.0"), Some("1.1.0"))
    );
    assert_eq!(found["job"], "svc");
    assert_eq!(found["instance"], target.to_string());
    *page.lock().unwrap() = page_of("1.1.0", 3000.0);
    eventually(
        Duration::from_secs(10),
        || format!("no restart: {:?}", deploys(&first)),
        || (deploys(&first).first()?["change"] == "restart").then_some(()),
    );
    let html = first.wait_page("<h2>Deploys</h2>", Duration::from_secs(5));
    assert!(html.contains("1.0.0 → <b>1.1.0</b>"), "{html}");
    // The API shows a deploy as soon as it is observed; the file holds it a write later. The
    // kill comes after the write: what is on disk is what must survive.
    eventually(
        Duration::from_secs(10),
        || "the restart never reaches the state file".into(),
        || {
            let saved = std::fs::read_to_string(&state).ok()?;
            saved.contains(r#""change":"restart""#).then_some(())
        },
    );
    first.kill9();

    let second = Collector::start(&config, &state, &[]);
    assert_eq!(deploys(&second).len(), 2, "kept across kill -9");
    second.wait_evaluations(3);
    assert_eq!(
        deploys(&second).len(),
        2,
        "an unchanged target is no new deploy after a restart"
    );
}

/// A deploy, then an alert of a custom rule on the same job: the deploy is logged, but the
/// alert's message names no deploy and no route (the rule does not read obs' RED metrics).
#[test]
fn a_custom_rule_gets_no_invented_route_or_deploy_line() {
    let dir = temp_dir("deploy-line");
    let page_of = |version: &str, flag: u8| {
        format!("target_info{{service_version=\"{version}\"}} 1\nflag {flag}\n")
    };
    let page = Arc::new(Mutex::new(page_of("1.0.0", 0)));
    let target = fake_target(Arc::clone(&page));
    let config = write_config(&dir, target, "1s", "");
    let collector = Collector::start(&config, &dir.join("state.json"), &[]);
    eventually(
        Duration::from_secs(10),
        || "the target is never scraped".into(),
        || {
            let body = client::get(collector.addr, "/api/v1/deploys").ok()?.body;
            body.contains(r#""version":"1.0.0""#).then_some(())
        },
    );
    *page.lock().unwrap() = page_of("1.1.0", 0);
    eventually(
        Duration::from_secs(10),
        || "no deploy".into(),
        || {
            let body = client::get(collector.addr, "/api/v1/deploys").ok()?.body;
            body.contains(r#""change":"deploy""#).then_some(())
        },
    );
    *page.lock().unwrap() = page_of("1.1.0", 1);
    let line = eventually(
        Duration::from_secs(20),
        || collector.output.lock().unwrap().clone(),
        || {
            let out = collector.output.lock().unwrap();
            out.lines()
                .find(|l| l.contains("FIRING") && l.contains("Flag"))
                .map(str::to_owned)
        },
    );
    // Its own rule (`flag > 0`) reads no RED metrics: the message says its value, threshold
    // and window-less facts only, not routes or a deploy it cannot tie to the alert (the
    // deploy context of obs' own rules is tested end to end in examples/tests).
    assert!(line.contains("value 1 > 0"), "{line}");
    for invented in ["deploy:", "routes:", "by version:"] {
        assert!(!line.contains(invented), "{invented} in {line}");
    }
}

#[test]
fn the_collector_runs_with_a_fixed_mmap_threshold_and_keeps_one_set() {
    const VAR: &str = "MALLOC_MMAP_THRESHOLD_";
    let dir = temp_dir("mmap-threshold");
    let config = write_config(&dir, "127.0.0.1:1".parse().unwrap(), "30s", "");
    // The environment the answering process (the same pid, restarted by exec) runs with.
    let threshold = |c: &common::CollectorProcess| {
        let environ = std::fs::read(format!("/proc/{}/environ", c.pid())).unwrap();
        environ
            .split(|&b| b == 0)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .find_map(|v| v.strip_prefix(VAR)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let fixed = Collector::start(&config, &dir.join("fixed.json"), &[]);
    // This test's own environment may set it too: then that value is kept.
    let expected = std::env::var(VAR).unwrap_or_else(|_| "131072".to_owned());
    assert_eq!(threshold(&fixed).as_deref(), Some(expected.as_str()));
    assert_eq!(client::get(fixed.addr, "/-/ready").unwrap().status, 200);
    drop(fixed);
    let own = Collector::start(&config, &dir.join("own.json"), &[(VAR, "65536")]);
    assert_eq!(threshold(&own).as_deref(), Some("65536"));
}
