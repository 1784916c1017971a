//! Growing past one machine: the collector in remote mode (rules evaluated by a real
//! Prometheus' query API) against scrape mode and against Prometheus' own rule evaluation on the
//! same traffic; failures of the query API; and an HA pair of collectors behind one real
//! Alertmanager giving one notification per incident.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fake_target, temp_dir, Collector};
use obs_testkit::prometheus::Alertmanager;
use obs_testkit::prometheus::Prometheus;
use obs_testkit::slack::read_request;
use obs_testkit::{client, eventually};
use serde_json::Value;

const RULES: &str = "groups:\n  - name: t\n    interval: 2s\n    rules:\n      - alert: Flag\n        expr: flag > 0\n        for: 4s\n        labels:\n          severity: page\n";

fn remote_config(
    dir: &std::path::Path,
    name: &str,
    query_url: &str,
    extra: &str,
) -> std::path::PathBuf {
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    let path = dir.join(format!("{name}.yml"));
    std::fs::write(&path, format!("global:\n  evaluation_interval: 2s\nrule_files: [rules.yml]\nquery:\n  url: {query_url}\n  timeout: 1s\n{extra}")).unwrap();
    path
}

/// `activeAt` (seconds) of the Flag alert in a Prometheus-format `/api/v1/alerts`, once firing.
fn alerts(addr: SocketAddr) -> Vec<Value> {
    let body: Value =
        serde_json::from_str(&client::get(addr, "/api/v1/alerts").unwrap().body).unwrap();
    body["data"]["alerts"].as_array().unwrap().clone()
}

fn firing_active_at(addr: SocketAddr, timeout: Duration) -> f64 {
    eventually(
        timeout,
        || format!("no firing alert at {addr}"),
        || {
            alerts(addr)
                .iter()
                .find(|a| a["state"] == "firing")
                .map(|a| rfc3339_seconds(a["activeAt"].as_str().unwrap()))
        },
    )
}

fn no_alerts(addr: SocketAddr, timeout: Duration) {
    eventually(
        timeout,
        || format!("alerts did not resolve at {addr}: {:?}", alerts(addr)),
        || alerts(addr).is_empty().then_some(()),
    );
}

/// Seconds of the time of day of an RFC 3339 timestamp (enough to compare nearby instants).
fn rfc3339_seconds(s: &str) -> f64 {
    let time = &s[11..s.len() - 1];
    let mut parts = time.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let sec: f64 = parts.next().unwrap().parse().unwrap();
    h * 3600.0 + m * 60.0 + sec
}

#[test]
fn remote_mode_scrape_mode_and_prometheus_fire_and_resolve_together() {
    let dir = temp_dir("remote");
    let page = Arc::new(Mutex::new("flag 0\n".to_owned()));
    let target = fake_target(Arc::clone(&page));
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    let prom = Prometheus::start(&format!(
        "global:\n  scrape_interval: 500ms\n  evaluation_interval: 2s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: svc\n    static_configs: [{{ targets: ['{target}'] }}]\n",
        dir.join("rules.yml").display()
    ))
    .unwrap();
    // Scrape mode with the same scrape and evaluation intervals as the Prometheus above.
    let local_cfg = dir.join("local.yml");
    std::fs::write(
        &local_cfg,
        format!("global:\n  scrape_interval: 500ms\n  evaluation_interval: 2s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: svc\n    static_configs:\n      - targets: ['{target}']\n"),
    )
    .unwrap();
    let local = Collector::start(&local_cfg, &dir.join("local.state"), &[]);
    let remote_cfg = remote_config(&dir, "remote", &format!("http://{}", prom.addr), "");
    let remote = Collector::start(&remote_cfg, &dir.join("remote.state"), &[]);
    // All three have seen the flag down before it goes up.
    prom.wait_until("flag == 0", Duration::from_secs(10), |r| !r.is_empty())
        .unwrap();
    local.wait_evaluations(1);
    remote.wait_evaluations(1);

    *page.lock().unwrap() = "flag 1\n".to_owned();
    let times = [
        (
            "prometheus",
            firing_active_at(prom.addr, Duration::from_secs(20)),
        ),
        (
            "scrape mode",
            firing_active_at(local.addr, Duration::from_secs(20)),
        ),
        (
            "remote mode",
            firing_active_at(remote.addr, Duration::from_secs(20)),
        ),
    ];
    eprintln!("activeAt: {times:?}");
    // Remote mode evaluates Prometheus' own data: within one evaluation interval (2 s; only the
    // evaluation slots differ). Scrape mode scrapes on its own, so the first sample showing the
    // flag can differ by a scrape or more (observed: up to 3.2 s apart on a loaded machine):
    // within two evaluation intervals.
    assert!(
        (times[2].1 - times[0].1).abs() <= 2.0,
        "remote mode {:.2}s apart from Prometheus",
        times[2].1 - times[0].1
    );
    assert!(
        (times[1].1 - times[0].1).abs() <= 4.0,
        "scrape mode {:.2}s apart from Prometheus",
        times[1].1 - times[0].1
    );
    *page.lock().unwrap() = "flag 0\n".to_owned();
    for addr in [prom.addr, local.addr, remote.addr] {
        no_alerts(addr, Duration::from_secs(15));
    }
    let metrics = client::get(remote.addr, "/metrics").unwrap().body;
    assert!(
        metrics.contains("obs_collector_remote_query_duration_seconds_count"),
        "{metrics}"
    );
}

/// A query API that answers as scripted: "down" (connection refused is simulated by closing),
/// "slow" (never answers within the timeout), "error" (a Prometheus error body).
fn fake_api(mode: Arc<Mutex<&'static str>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mode = *mode.lock().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let body = match mode {
                    "ok" => {
                        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"svc"},"value":[0,"1"]}]}}"#
                    }
                    "error" => {
                        r#"{"status":"error","errorType":"execution","error":"query timed out in expression evaluation"}"#
                    }
                    "slow" => {
                        // Never answers: holds the connection until the client gives up.
                        let _ = s.read_to_end(&mut Vec::new());
                        return;
                    }
                    _ => return, // "down": hang up
                };
                let code = if mode == "ok" { 200 } else { 422 };
                let _ = write!(s, "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            });
        }
    });
    addr
}

#[test]
fn query_failures_leave_alert_state_unchanged_and_are_reported() {
    let dir = temp_dir("remote-failures");
    let mode = Arc::new(Mutex::new("ok"));
    let api = fake_api(Arc::clone(&mode));
    let config = remote_config(&dir, "c", &format!("http://{api}"), "");
    let collector = Collector::start(&config, &dir.join("state.json"), &[]);
    let pending = collector.wait_alert("pending", Duration::from_secs(10));
    for (m, needle) in [
        ("error", "query timed out in expression evaluation"),
        ("slow", "timeout"),
        ("down", "query failed"),
    ] {
        *mode.lock().unwrap() = m;
        collector.wait_page(needle, Duration::from_secs(10));
        let alerts = collector.alerts();
        assert_eq!(alerts.len(), 1, "{m}: a failed query changes nothing");
        assert_eq!(
            alerts[0]["activeAt"], pending["activeAt"],
            "{m}: the for timer was not reset"
        );
    }
    let metrics = client::get(collector.addr, "/metrics").unwrap().body;
    assert!(
        metrics.contains("obs_collector_rule_evaluation_failures_total{rule_group=\"t\"}"),
        "{metrics}"
    );
    // Back to normal: the timer continued through the failures, so it fires at once.
    *mode.lock().unwrap() = "ok";
    let firing = collector.wait_alert("firing", Duration::from_secs(10));
    assert_eq!(firing["activeAt"], pending["activeAt"]);
}

/// Alertmanager's notifications as received: (status, number of alerts).
type Received = Arc<Mutex<Vec<(String, usize)>>>;

/// A webhook receiver recording Alertmanager's notifications.
fn webhook() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&seen);
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let (_, body) = read_request(&s);
            let v: Value = serde_json::from_slice(&body).unwrap();
            shared.lock().unwrap().push((
                v["status"].as_str().unwrap().to_owned(),
                v["alerts"].as_array().unwrap().len(),
            ));
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (addr, seen)
}

#[test]
fn an_ha_pair_behind_one_alertmanager_notifies_once_per_incident() {
    let dir = temp_dir("ha");
    let page = Arc::new(Mutex::new("flag 0\n".to_owned()));
    let target = fake_target(Arc::clone(&page));
    let prom = Prometheus::start(&format!(
        "global:\n  scrape_interval: 500ms\nscrape_configs:\n  - job_name: svc\n    static_configs: [{{ targets: ['{target}'] }}]\n"
    ))
    .unwrap();
    let (hook, notifications) = webhook();
    let am = Alertmanager::start(
        &dir,
        &format!("route:\n  receiver: hook\n  group_by: [alertname, job]\n  group_wait: 2s\n  group_interval: 10s\n  repeat_interval: 4h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{hook}/\n        send_resolved: true\n"),
    );
    let am_addr = am.addr;
    let extra =
        format!("notifiers:\n  console: false\n  alertmanager:\n    url: http://{am_addr}\n");
    let query = format!("http://{}", prom.addr);
    let a = Collector::start(
        &remote_config(&dir, "a", &query, &extra),
        &dir.join("a.state"),
        &[],
    );
    let b = Collector::start(
        &remote_config(&dir, "b", &query, &extra),
        &dir.join("b.state"),
        &[],
    );
    a.wait_evaluations(1);
    b.wait_evaluations(1);

    *page.lock().unwrap() = "flag 1\n".to_owned();
    firing_active_at(a.addr, Duration::from_secs(20));
    firing_active_at(b.addr, Duration::from_secs(20));
    eventually(
        Duration::from_secs(20),
        || "Alertmanager never notified".into(),
        || (!notifications.lock().unwrap().is_empty()).then_some(()),
    );
    *page.lock().unwrap() = "flag 0\n".to_owned();
    eventually(
        Duration::from_secs(30),
        || format!("never resolved: {:?}", notifications.lock().unwrap()),
        || {
            notifications
                .lock()
                .unwrap()
                .iter()
                .any(|(s, _)| s == "resolved")
                .then_some(())
        },
    );
    // Nothing more: two more evaluations of each dispatched whatever they would send.
    a.wait_evaluations(2);
    b.wait_evaluations(2);
    let seen = notifications.lock().unwrap().clone();
    assert_eq!(
        seen,
        [("firing".to_owned(), 1), ("resolved".to_owned(), 1)],
        "two collectors, one alert, one message each way"
    );
}

/// In remote mode the deploy log comes from the backend's `target_info`: a real Prometheus
/// scrapes the target, the collector reads what it serves and logs the change of version.
#[test]
fn remote_mode_reads_the_deploy_log_from_the_backend() {
    let dir = temp_dir("remote-deploys");
    let page_of = |v: &str| {
        format!("target_info{{service_name=\"shop\",service_version=\"{v}\"}} 1\nprocess_start_time_seconds 1000\nflag 0\n")
    };
    let page = Arc::new(Mutex::new(page_of("1.0.0")));
    let target = fake_target(Arc::clone(&page));
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    let prom = Prometheus::start(&format!(
        "global:\n  scrape_interval: 500ms\nscrape_configs:\n  - job_name: shop\n    static_configs: [{{ targets: ['{target}'] }}]\n"
    ))
    .unwrap();
    let remote_cfg = remote_config(&dir, "remote", &format!("http://{}", prom.addr), "");
    let remote = Collector::start(&remote_cfg, &dir.join("remote.state"), &[]);
    let deploys = || -> serde_json::Value {
        let body = client::get(remote.addr, "/api/v1/deploys").unwrap().body;
        serde_json::from_str(&body).unwrap()
    };
    eventually(
        Duration::from_secs(20),
        || format!("never read from the backend: {}", deploys()),
        || {
            (deploys()["data"]["serving"]["shop"][target.to_string()]["version"] == "1.0.0")
                .then_some(())
        },
    );
    *page.lock().unwrap() = page_of("1.1.0");
    let found = eventually(
        Duration::from_secs(20),
        || format!("no deploy: {}", deploys()),
        || deploys()["data"]["deploys"].as_array()?.first().cloned(),
    );
    assert_eq!(found["change"], "deploy");
    assert_eq!(
        (found["previous"].as_str(), found["version"].as_str()),
        (Some("1.0.0"), Some("1.1.0"))
    );
    assert_eq!(found["job"], "shop");
}
