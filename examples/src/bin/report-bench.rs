//! Weekly-report and deploy-verdict benchmark over 35 days of history: the same samples in the
//! collector's store (imported) and, with `--prometheus`, in a real Prometheus (promtool's
//! backfill of the same samples as OpenMetrics); reports each one's time and peak memory, and
//! whether a running collector keeps its evaluation interval while it builds the report.
//!
//! ```text
//! cargo build --release -p obs-collector -p obs-examples
//! ./target/release/report-bench [--targets 100] [--days 35] [--step 60] [--prometheus] [--keep]
//! ```
//!
//! `--keep` leaves the imported history in place (its directory is printed), for a profiler.
//!
//! Each target serves 4 routes x 2 status codes of obs' RED histogram (16 buckets, count, sum:
//! 144 series) and `target_info`; 3 days before the end the odd targets move from 1.0.0 to
//! 1.1.0, whose `GET /users/{id}` is 50% slower (a canary, then the report's deploy
//! regression). Samples every `--step` seconds.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use obs_collector::labels::Labels;
use obs_collector::store::blocks::Blocks;

const ROUTES: [&str; 4] = ["/users/{id}", "/orders", "/search", "/health"];
/// obs' default request-duration buckets, and `+Inf`.
const LES: [f64; 16] = {
    let mut les = [f64::INFINITY; 16];
    let mut i = 0;
    while i < 15 {
        les[i] = obs::semconv::DURATION_BUCKETS[i];
        i += 1;
    }
    les
};
const FAMILY: &str = "http_server_request_duration_seconds";
const DAY_S: i64 = 86_400;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: i64| obs_examples::cli::flag(&args, name, default);
    let (targets, days, step) = (
        flag("--targets", 100),
        flag("--days", 35),
        flag("--step", 60),
    );
    let prometheus = args.iter().any(|a| a == "--prometheus");
    let collector = sibling("obs-collector");
    let dir = std::env::temp_dir().join(format!("obs-report-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let end = now / DAY_S * DAY_S; // midnight: the imported days are whole
    let series_count = targets * (ROUTES.len() as i64 * 2 * (LES.len() as i64 + 2) + 1);
    println!(
        "{targets} targets, {series_count} series, {days} days every {step} s: {} samples",
        series_count * days * DAY_S / step
    );

    // The history, a day at a time: into the collector's store, and as OpenMetrics files.
    let storage = dir.join("data");
    let started = Instant::now();
    let mut state = Fleet::new(targets as usize);
    let mut files = Vec::new();
    {
        let mut blocks = Blocks::open(&storage, retention())?;
        for day in 0..days {
            let from = end - (days - day) * DAY_S;
            let series = state.day(from, step, end);
            if prometheus {
                let path = dir.join(format!("day-{day}.om"));
                write_openmetrics(&path, &series)?;
                files.push(path);
            }
            blocks.import(series)?;
        }
    }
    println!("imported in {:.1} s", started.elapsed().as_secs_f64());

    let end_arg = end.to_string();
    let local = measure(Command::new(&collector).args([
        "report",
        "--storage.path",
        storage.to_str().unwrap(),
        "--end",
        &end_arg,
        "--format",
        "json",
    ]))?;
    println!(
        "report from the collector's store: {:.2} s, peak {:.0} MiB; {}",
        local.seconds,
        local.peak_mib,
        findings(&local.stdout)
    );

    let verdict = verdict(&storage, end, targets)?;
    println!("{verdict}");

    let held = evaluation_while_reporting(&collector, &dir, &storage, end)?;
    println!("{held}");

    if prometheus {
        let started = Instant::now();
        let prom = obs_testkit::prometheus::Prometheus::start_backfilled(
            "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
            &["--storage.tsdb.retention.time=10y"],
            &files,
        )?;
        println!(
            "Prometheus backfilled in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let pid = prom.pid();
        let before = status_kib(pid, "VmRSS:").unwrap_or(0);
        let from = format!("http://{}", prom.addr);
        let theirs = measure(Command::new(&collector).args([
            "report", "--from", &from, "--end", &end_arg, "--format", "json",
        ]))?;
        let after_hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
        println!(
            "report from Prometheus: {:.2} s (Prometheus' peak RSS {:.0} MiB, {:.0} MiB before); {}",
            theirs.seconds,
            after_hwm as f64 / 1024.0,
            before as f64 / 1024.0,
            findings(&theirs.stdout)
        );
    }
    if args.iter().any(|a| a == "--keep") {
        println!("kept: {}", storage.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn retention() -> obs_collector::store::compact::Retention {
    obs_collector::store::compact::Retention {
        time_ms: 400 * DAY_S * 1000,
        bytes: u64::MAX,
        raw_ms: 400 * DAY_S * 1000,
    }
}

/// The counters of every target's series, carried from one day to the next.
struct Fleet {
    /// Per target, route, status: cumulative bucket counts, then the sum.
    counts: Vec<[[[f64; 16]; 2]; 4]>,
    sums: Vec<[[f64; 2]; 4]>,
}

impl Fleet {
    fn new(targets: usize) -> Self {
        Self {
            counts: vec![[[[0.0; 16]; 2]; 4]; targets],
            sums: vec![[[0.0; 2]; 4]; targets],
        }
    }

    /// The samples of the day starting at `from` (seconds), every `step`.
    fn day(&mut self, from: i64, step: i64, end: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let points = DAY_S / step;
        let mut out = Vec::new();
        for t in 0..self.counts.len() {
            let instance = format!("10.0.{}.{}:9464", t / 250, t % 250);
            let label = |name: String, extra: &[(&str, String)]| {
                let mut pairs = vec![
                    ("__name__".to_owned(), name),
                    ("job".to_owned(), "shop".to_owned()),
                    ("instance".to_owned(), instance.clone()),
                ];
                pairs.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
                Labels::new(pairs)
            };
            // Per series: its samples over the day.
            let mut day: Vec<Vec<(i64, f64)>> = (0..4 * 2 * 18 + 1)
                .map(|_| Vec::with_capacity(points as usize))
                .collect();
            for i in 0..points {
                let ts = from + i * step;
                let ms = ts * 1000 + 7_500;
                let canary = t % 2 == 1 && ts >= end - 3 * DAY_S;
                for r in 0..4 {
                    let n = 50.0 + ((ts / step * 7919 + t as i64 * 31 + r as i64) % 21) as f64;
                    let errors = (n / 100.0).floor();
                    // Latencies uniform in (lo, hi), the users route 50% slower on the canary.
                    let slower = if canary && r == 0 { 1.5 } else { 1.0 };
                    let (lo, hi) = (
                        0.02 * (r + 1) as f64 * slower,
                        0.2 * (r + 1) as f64 * slower,
                    );
                    for (s, requests) in [(0, n - errors), (1, errors)] {
                        for (b, le) in LES.iter().enumerate() {
                            let share = if s == 1 {
                                1.0
                            } else {
                                ((le - lo) / (hi - lo)).clamp(0.0, 1.0)
                            };
                            self.counts[t][r][s][b] += (requests * share).floor();
                        }
                        self.sums[t][r][s] += requests * (lo + hi) / 2.0;
                        let base = (r * 2 + s) * 18;
                        for b in 0..16 {
                            day[base + b].push((ms, self.counts[t][r][s][b]));
                        }
                        day[base + 16].push((ms, self.counts[t][r][s][15]));
                        day[base + 17].push((ms, self.sums[t][r][s]));
                    }
                }
                day[4 * 2 * 18].push((ms, 1.0));
            }
            let version = |ts: i64| {
                if t % 2 == 1 && ts >= end - 3 * DAY_S {
                    "1.1.0"
                } else {
                    "1.0.0"
                }
            };
            for (r, route) in ROUTES.iter().enumerate() {
                for (s, status) in ["200", "500"].iter().enumerate() {
                    let extra = |le: Option<f64>| {
                        let mut e = vec![
                            ("http_request_method", "GET".to_owned()),
                            ("http_route", (*route).to_owned()),
                            ("http_response_status_code", (*status).to_owned()),
                        ];
                        if let Some(le) = le {
                            let le = if le.is_infinite() {
                                "+Inf".to_owned()
                            } else {
                                le.to_string()
                            };
                            e.push(("le", le));
                        }
                        e
                    };
                    let base = (r * 2 + s) * 18;
                    for (b, le) in LES.iter().enumerate() {
                        out.push((
                            label(format!("{FAMILY}_bucket"), &extra(Some(*le))),
                            std::mem::take(&mut day[base + b]),
                        ));
                    }
                    out.push((
                        label(format!("{FAMILY}_count"), &extra(None)),
                        std::mem::take(&mut day[base + 16]),
                    ));
                    out.push((
                        label(format!("{FAMILY}_sum"), &extra(None)),
                        std::mem::take(&mut day[base + 17]),
                    ));
                }
            }
            // target_info: the version changes within the day are split into two series.
            let info = std::mem::take(&mut day[4 * 2 * 18]);
            for part in info.chunk_by(|a, b| version(a.0 / 1000) == version(b.0 / 1000)) {
                let v = version(part[0].0 / 1000);
                out.push((
                    label("target_info".into(), &[("service_version", v.to_owned())]),
                    part.to_vec(),
                ));
            }
        }
        out
    }
}

fn write_openmetrics(path: &Path, series: &[(Labels, Vec<(i64, f64)>)]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "# TYPE {FAMILY} histogram")?;
    writeln!(f, "# TYPE target_info gauge")?;
    // OpenMetrics wants a family's samples together: histograms first, then target_info.
    for (labels, samples) in series {
        let name = labels.get("__name__").unwrap_or_default();
        let rest: Vec<String> = labels
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        for (ms, v) in samples {
            writeln!(
                f,
                "{name}{{{}}} {v} {}.{:03}",
                rest.join(","),
                ms / 1000,
                ms % 1000
            )?;
        }
    }
    writeln!(f, "# EOF")?;
    f.flush()
}

/// What a command took: its wall time, its peak RSS, what it printed.
struct Measured {
    seconds: f64,
    peak_mib: f64,
    stdout: String,
}

/// Runs `command`, polling its peak RSS (`VmHWM`) until it ends.
fn measure(command: &mut Command) -> std::io::Result<Measured> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let mut peak = 0;
    while child.try_wait()?.is_none() {
        peak = peak.max(status_kib(pid, "VmHWM:").unwrap_or(0));
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Measured {
        seconds: started.elapsed().as_secs_f64(),
        peak_mib: peak as f64 / 1024.0,
        stdout: reader.join().unwrap(),
    })
}

/// A `/proc/PID/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The findings of a report's JSON, one line.
fn findings(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let found: Vec<String> = v["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| format!("{} {} {}", f["kind"], f["route"], f["metric"]))
        .collect();
    format!("{} queries, findings: {}", v["queries"], found.join("; "))
}

/// The canary's verdict, in this process over the store: its time and memory.
fn verdict(storage: &Path, end: i64, targets: i64) -> Result<String, Box<dyn std::error::Error>> {
    use obs_collector::changes::{source::Evaluated, verdict};
    let deploy_ms = (end - 3 * DAY_S) * 1000 + 60_000;
    let mut log = obs_collector::deploys::DeployLog::default();
    for t in 0..targets {
        let instance = format!("10.0.{}.{}:9464", t / 250, t % 250);
        log.observe("shop", &instance, Some("1.0.0"), None, deploy_ms - 60_000);
    }
    for t in (1..targets).step_by(2) {
        let instance = format!("10.0.{}.{}:9464", t / 250, t % 250);
        log.observe("shop", &instance, Some("1.1.0"), None, deploy_ms);
    }
    for t in (0..targets).step_by(2) {
        let instance = format!("10.0.{}.{}:9464", t / 250, t % 250);
        log.observe(
            "shop",
            &instance,
            Some("1.0.0"),
            None,
            deploy_ms + 1_800_000,
        );
    }
    let settings = verdict::Settings::default();
    let release = verdict::releases(&log, settings.after_ms)
        .into_iter()
        .find(|r| r.version == "1.1.0")
        .ok_or("no release")?;
    let rss_before = status_kib(std::process::id(), "VmRSS:").unwrap_or(0);
    let started = Instant::now();
    let (store, _) =
        obs_collector::store::Store::open(storage, 60_000, usize::MAX, retention(), end * 1000)?;
    let opened = started.elapsed().as_secs_f64();
    let source = Evaluated(|e: &obs_collector::promql::Expr, steps| {
        obs_collector::promql::eval_range(e, &store, steps, obs_collector::promql::Limits::NONE)
    });
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let started = Instant::now();
    let v = runtime.block_on(verdict::judge_release(
        &source,
        &log,
        &release,
        &settings,
        deploy_ms + 1_800_000,
    ))?;
    let judged = started.elapsed().as_secs_f64();
    let rss_after = status_kib(std::process::id(), "VmRSS:").unwrap_or(0);
    Ok(format!(
        "canary verdict: {:.3} s ({} queries; store opened in {opened:.2} s), RSS +{:.0} MiB: {}",
        judged,
        v.queries,
        (rss_after as f64 - rss_before as f64) / 1024.0,
        v.summary
    ))
}

/// A collector running on the history (scraping one target, a rule every second) builds the
/// report on `/api/v1/report`: how long it takes, and the longest gap between two of its rule
/// evaluations meanwhile.
fn evaluation_while_reporting(
    collector: &Path,
    dir: &Path,
    storage: &Path,
    end: i64,
) -> Result<String, Box<dyn std::error::Error>> {
    let page = Arc::new(Mutex::new("up_probe 1\n".to_owned()));
    let target = obs_testkit::receivers::serve_text(page);
    std::fs::write(
        dir.join("rules.yml"),
        "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: Probe\n        expr: up_probe > 1\n",
    )?;
    let config = dir.join("collector.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: probe\n    static_configs:\n      - targets: ['{target}']\n"),
    )?;
    let state = dir.join("state.json");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], obs_testkit::prometheus::free_port()?).into();
    let mut child = Command::new(collector)
        .args([
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ])
        .arg("--state-file")
        .arg(&state)
        .arg("--storage.path")
        .arg(storage)
        .args([
            "--storage.retention",
            "400d",
            "--storage.raw-retention",
            "400d",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    obs_testkit::client::wait_ready(addr, Duration::from_secs(30), "the collector");
    std::thread::sleep(Duration::from_secs(5));
    let last = move || -> Option<i64> {
        let body = obs_testkit::client::get(addr, "/api/v1/rules").ok()?.body;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let t = v["data"]["groups"][0]["rules"][0]["lastEvaluation"].as_str()?;
        obs_collector::time::parse_rfc3339(t)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut seen: Vec<i64> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = last() {
                    if seen.last() != Some(&t) {
                        seen.push(t);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        })
    };
    let rss_before = status_kib(child.id(), "VmRSS:").unwrap_or(0);
    let started = Instant::now();
    // Weeks of many series take minutes: a client that waits for them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{addr}/api/v1/report?end={end}"))
            .timeout(Duration::from_secs(1800))
            .send()
            .await
            .map(|r| r.status().as_u16())
    })?;
    let took = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    let hwm = status_kib(child.id(), "VmHWM:").unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    let gap = seen.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    Ok(format!(
        "report from a running collector: {took:.2} s (HTTP {status}); its rule evaluations meanwhile: {} every 1 s, the longest gap {:.1} s; RSS {:.0} MiB before, peak {:.0} MiB",
        seen.len(),
        gap as f64 / 1000.0,
        rss_before as f64 / 1024.0,
        hwm as f64 / 1024.0
    ))
}

/// A binary next to this one.
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}
