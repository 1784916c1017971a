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

/// A range query's answer: `Ok(series by labels: [(t, value)])` or `Err(error)`.
pub type Answer = Result<std::collections::BTreeMap<String, Vec<(f64, f64)>>, String>;

/// `query` from `start` to `end` at `step` seconds, as Grafana asks (a POST form).
pub fn ask_range(
    addr: std::net::SocketAddr,
    query: &str,
    (start, end): (i64, i64),
    step: i64,
) -> Answer {
    let body = format!(
        "query={}&start={start}&end={end}&step={step}",
        obs_testkit::client::encode_query(query)
    );
    let r = obs_testkit::client::post(
        addr,
        "/api/v1/query_range",
        &[("content-type", b"application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
    if v["status"] != "success" {
        return Err(format!("{} {}", r.status, v["error"]));
    }
    let number = |p: &serde_json::Value| -> f64 {
        match p.as_str() {
            Some(s) => match s {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                s => s.parse().unwrap(),
            },
            None => p.as_f64().unwrap(),
        }
    };
    let mut out = std::collections::BTreeMap::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let points = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (number(&p[0]), number(&p[1])))
            .collect();
        let mut metric: Vec<(String, String)> = s["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        metric.sort();
        out.insert(format!("{metric:?}"), points);
    }
    Ok(out)
}

/// The comparer's equality: values within 1e-5 relative, NaN equal to NaN.
pub fn same_value(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= 1e-5 * a.abs().max(b.abs())
}

/// Why two answers differ, if they do.
pub fn difference(ours: &Answer, theirs: &Answer) -> Option<String> {
    match (ours, theirs) {
        (Err(_), Err(_)) => None,
        (Ok(_), Err(e)) => Some(format!("Prometheus failed ({e}), the collector did not")),
        (Err(e), Ok(_)) => Some(format!("the collector failed: {e}")),
        (Ok(a), Ok(b)) => {
            if a.keys().ne(b.keys()) {
                let only_ours: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).take(3).collect();
                let only_theirs: Vec<_> =
                    b.keys().filter(|k| !a.contains_key(*k)).take(3).collect();
                return Some(format!(
                    "series differ: only the collector's {only_ours:?}, only Prometheus' {only_theirs:?}"
                ));
            }
            for (labels, ours) in a {
                let theirs = &b[labels];
                if ours.len() != theirs.len()
                    || ours
                        .iter()
                        .zip(theirs)
                        .any(|(x, y)| x.0 != y.0 || !same_value(x.1, y.1))
                {
                    let at = ours
                        .iter()
                        .zip(theirs)
                        .find(|(x, y)| x.0 != y.0 || !same_value(x.1, y.1));
                    return Some(format!(
                        "{labels}: {} points vs {}; first difference {at:?}",
                        ours.len(),
                        theirs.len()
                    ));
                }
            }
            None
        }
    }
}

/// `file` imported into `dir`'s storage (`state.data`), and a collector (with `args`) over it
/// whose only target is a silent one of job `probe` (its own series stay out of what the
/// tests ask about).
pub fn collector_over_import(dir: &Path, file: &Path, args: &[&str]) -> CollectorProcess {
    import(file, &dir.join("state.data"));
    let target = fake_target(std::sync::Arc::new(std::sync::Mutex::new(String::new())));
    let config = write_config_with_rules(dir, target, "groups: []\n", "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("job_name: svc", "job_name: probe")).unwrap();
    CollectorProcess::start_with_args(BIN.as_ref(), &config, &dir.join("state.json"), &[], args)
}

/// `obs-collector import file --storage.path storage`, which must succeed.
pub fn import(file: &Path, storage: &Path) {
    let (code, said) = try_import(file, storage);
    assert_eq!(code, Some(0), "{said}");
}

/// `obs-collector import file --storage.path storage`: its exit code, and what it printed.
pub fn try_import(file: &Path, storage: &Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("import")
        .arg(file)
        .arg("--storage.path")
        .arg(storage)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), said)
}

/// The wall clock in Unix seconds.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
