//! `obs-collector backtest` against a real Prometheus that evaluated the same rule live over a
//! scripted incident: the backtest's firing and resolved times match Prometheus' own `ALERTS`
//! series within one evaluation interval. And bad requests exit 2 and say why.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use obs_testkit::prometheus::Prometheus;
use serde_json::Value;

mod common;

use common::{fake_target, temp_dir, write_config, BIN};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn backtest(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("backtest")
        .args(args)
        .output()
        .unwrap()
}

/// The timestamps (ms) of the raw samples of `ALERTS{alertstate="firing"}` over the last 5 min.
fn prometheus_firing_samples(prom: &Prometheus) -> Vec<i64> {
    let result = prom
        .query(r#"ALERTS{alertname="Flag",alertstate="firing"}[5m]"#)
        .unwrap();
    assert_eq!(result.len(), 1, "{result:?}");
    result[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
        .collect()
}

#[test]
fn a_backtest_replays_what_prometheus_evaluated_live() {
    let dir = temp_dir("backtest");
    let page = Arc::new(Mutex::new("flag 0\n".to_owned()));
    let target = fake_target(Arc::clone(&page));
    // `Flag`: flag > 0 for 2s, groups evaluated every second; a route that sends at once.
    let config = write_config(&dir, target, "2s", "");
    let prom = Prometheus::start(&format!(
        "global:\n  scrape_interval: 500ms\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: svc\n    static_configs: [{{ targets: ['{target}'] }}]\n",
        dir.join("rules.yml").display()
    ))
    .unwrap();
    let start = now_ms();
    // A quiet start: Prometheus scraped the flag down a few times.
    prom.wait_until(
        "count_over_time(flag[1m]) >= 4",
        Duration::from_secs(20),
        |r| !r.is_empty(),
    )
    .unwrap();
    *page.lock().unwrap() = "flag 1\n".to_owned();
    // The incident: Prometheus has had the alert firing for a few evaluations.
    prom.wait_until(
        r#"count_over_time(ALERTS{alertname="Flag",alertstate="firing"}[1m]) >= 4"#,
        Duration::from_secs(30),
        |r| !r.is_empty(),
    )
    .unwrap();
    *page.lock().unwrap() = "flag 0\n".to_owned();
    // Resolved in Prometheus: its ALERTS series has stopped.
    prom.wait_until(
        r#"ALERTS{alertname="Flag"}"#,
        Duration::from_secs(20),
        <[Value]>::is_empty,
    )
    .unwrap();
    let samples = prometheus_firing_samples(&prom);
    let (prom_fired, prom_last) = (samples[0], *samples.last().unwrap());
    // The evaluation after the last firing one found it resolved.
    let prom_resolved = prom_last + 1_000;
    // The range ends two evaluations after that, whenever the wait above returned.
    let end = prom_resolved + 2_000;
    obs_testkit::eventually(
        Duration::from_secs(10),
        || "the clock stopped".into(),
        || (now_ms() >= end).then_some(()),
    );

    let url = format!("http://{}", prom.addr);
    let (start_s, end_s) = (
        format!("{:.3}", start as f64 / 1000.0),
        format!("{:.3}", end as f64 / 1000.0),
    );
    let config_arg = config.to_str().unwrap();
    let out = backtest(&[
        "--config", config_arg, "--from", &url, "--start", &start_s, "--end", &end_s, "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let alerts = report["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{report:#}");
    assert_eq!(alerts[0]["rule"], "Flag");
    let episodes = alerts[0]["episodes"].as_array().unwrap();
    assert_eq!(episodes.len(), 1, "one incident: {report:#}");
    let at = |k: &str| {
        episodes[0][k]
            .as_i64()
            .unwrap_or_else(|| panic!("{k}: {report:#}"))
    };
    let (fired, resolved) = (at("firing_ms"), at("ended_ms"));
    eprintln!(
        "firing: backtest {fired}, prometheus {prom_fired}; resolved: backtest {resolved}, prometheus {prom_resolved}"
    );
    // Only the evaluation slots differ: within one evaluation interval (1 s).
    assert!(
        (fired - prom_fired).abs() <= 1_000,
        "firing {} ms apart",
        fired - prom_fired
    );
    assert!(
        (resolved - prom_resolved).abs() <= 1_000,
        "resolved {} ms apart",
        resolved - prom_resolved
    );
    assert!(
        at("pending_ms") <= fired - 2_000,
        "pending for `for: 2s` first"
    );
    // One firing and one resolved message, as the route says.
    assert_eq!(alerts[0]["notifications"], 2, "{report:#}");
    assert_eq!(report["notifications"], 2);

    // The text report says the same for a person.
    let out = backtest(&[
        "--config", config_arg, "--from", &url, "--start", &start_s, "--end", &end_s, "--rule",
        "Flag",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(text.contains("Flag {alertname=\"Flag\""), "{text}");
    assert!(
        text.contains("  firing   ")
            && text.contains("  resolved ")
            && text.contains("(fired for "),
        "{text}"
    );

    // Bad requests: exit 2 and why; a backend that does not answer: exit 1.
    let now_s = format!("{}", end / 1000);
    for (args, expected) in [
        (
            vec!["--start", &end_s, "--end", &start_s],
            "is not after the start",
        ),
        (
            vec!["--start", "0", "--end", &now_s],
            "at most 11000: shorten the range",
        ),
        (
            vec!["--start", &start_s, "--end", &end_s, "--rule", "Nope"],
            "no alerting rule is named \"Nope\"",
        ),
        (
            vec!["--start", "yesterday", "--end", &end_s],
            "neither RFC 3339 nor Unix seconds",
        ),
        (
            vec!["--start", &start_s, "--end", &end_s, "--format", "xml"],
            "[possible values: text, json]",
        ),
    ] {
        let mut all = vec!["--config", config_arg, "--from", &url];
        all.extend(args);
        let out = backtest(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {stderr}");
        assert!(stderr.contains(expected), "{all:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    let out = backtest(&["--config", config_arg, "--start", &start_s, "--end", &end_s]);
    assert_eq!(out.status.code(), Some(2), "no --from and no query.url");
    let closed = format!(
        "http://127.0.0.1:{}",
        obs_testkit::prometheus::free_port().unwrap()
    );
    let out = backtest(&[
        "--config", config_arg, "--from", &closed, "--start", &start_s, "--end", &end_s,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
