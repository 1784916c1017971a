//! Shared harness of the process tests: a controllable metrics target and the collector as a
//! child process.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use obs_testkit::process::CollectorProcess;

pub const BIN: &str = env!("CARGO_BIN_EXE_obs-collector");

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("obs-collector-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A metrics endpoint whose page the test controls.
#[allow(unused_imports)]
pub use obs_testkit::receivers::serve_text as fake_target;

/// Slack's replies to a first message that the retry stage must get through: a 500, a 429 with
/// `Retry-After: 2`, then `invalid_blocks`, which only the plain-text fallback passes.
pub const RETRIES_THEN_PLAIN_TEXT: [obs_testkit::slack::Reply; 3] = [
    obs_testkit::slack::Reply::Status(500, "internal_error", None),
    obs_testkit::slack::Reply::Status(429, "rate_limited", Some(2)),
    obs_testkit::slack::Reply::Status(400, "invalid_blocks", None),
];

/// Writes `collector.yml` (job `svc` scraping `target` every second) and `rules.yml` (alert
/// `Flag`: `flag > 0` for `for_`), plus `extra` appended to the configuration (and
/// [`obs_testkit::PROMPT_ROUTE`] unless `extra` has a route).
pub fn write_config(dir: &Path, target: SocketAddr, for_: &str, extra: &str) -> PathBuf {
    let rules = format!("groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: Flag\n        expr: flag > 0\n        for: {for_}\n        labels:\n          severity: page\n        annotations:\n          summary: The flag is up.\n          description: 'flag is {{{{ $value }}}} on {{{{ $labels.instance }}}}'\n          runbook_url: https://runbooks.example/flag\n");
    write_config_with_rules(dir, target, &rules, extra)
}

/// [`write_config`] with `rules` as the whole of `rules.yml`.
pub fn write_config_with_rules(
    dir: &Path,
    target: SocketAddr,
    rules: &str,
    extra: &str,
) -> PathBuf {
    std::fs::write(dir.join("rules.yml"), rules).unwrap();
    let config = dir.join("collector.yml");
    let route = if extra.contains("route:") {
        ""
    } else {
        obs_testkit::PROMPT_ROUTE
    };
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: svc\n    static_configs:\n      - targets: ['{target}']\n{extra}{route}"),
    )
    .unwrap();
    config
}

/// The collector binary of this package as a child process.
pub struct Collector;

impl Collector {
    pub fn start(config: &Path, state: &Path, env: &[(&str, &str)]) -> CollectorProcess {
        CollectorProcess::start(BIN.as_ref(), config, state, env)
    }
}

/// Headless Debian Chromium with the flags this machine needs, on `url`.
pub fn chromium(args: &[&str], url: &str, profile: &std::path::Path) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium (Debian package) must be installed")
}

/// `days` of OpenMetrics lines written as one file (`35d.om`, for `obs-collector import`) and
/// a file a day (`day-N.om`, for promtool, which re-reads its whole input for every block it
/// writes), each made whole by `openmetrics`.
pub fn write_days(
    dir: &Path,
    days: &[String],
    openmetrics: fn(&str) -> String,
) -> (PathBuf, Vec<PathBuf>) {
    let whole = dir.join("35d.om");
    std::fs::write(&whole, openmetrics(&days.concat())).unwrap();
    let per_day = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let path = dir.join(format!("day-{i}.om"));
            std::fs::write(&path, openmetrics(d)).unwrap();
            path
        })
        .collect();
    (whole, per_day)
}
