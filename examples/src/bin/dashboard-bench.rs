//! The shipped dashboard over a week, side by side: every query of `dashboards/obs-red.json`
//! (panels, variables, the deploy annotation) as Grafana sends it for the last 7 days on a
//! 1,600-pixel panel (step 300 s), asked of obs-collector, of a real Prometheus and, when
//! `victoria-metrics` is installed (Debian's package), of VictoriaMetrics, all holding the
//! same samples: one job of `--instances` instances x `--routes` routes (obs' 16 request
//! buckets, 200s and 500s, a release mid-week, a queue's and a database's histograms), a
//! sample every `--scrape` seconds, imported into the collector's store, backfilled into
//! Prometheus by promtool and imported into VictoriaMetrics.
//!
//! ```text
//! cargo build --release -p obs-collector -p obs-examples
//! ./target/release/dashboard-bench [--instances 10] [--routes 50] [--scrape 300] [--rounds 3] [--clients 6]
//!     [--engines collector,prometheus,victoria-metrics] [--keep]
//! ```
//!
//! Each round asks the whole dashboard with `--clients` requests at a time (a browser's
//! connections to one host); the first round is cold (nothing cached by the engines, the
//! files maybe in the page cache), the next are warm. Each engine is asked once the machine is
//! idle, so that the rounds measure the dashboard and not the tail of what came before them
//! (without that wait the collector's first two rounds took 7.1 s and 6.2 s, the third 4.2 s;
//! Prometheus compacts what promtool wrote when it starts). Printed: each engine's time per
//! round, the added memory (peak RSS over the rounds minus RSS before them), and how many
//! queries gave a different number of series than Prometheus.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use obs_testkit::client;
use obs_testkit::dashboard::{self, Substitutions};
use obs_testkit::process::{sibling_binary, status_kib, CollectorProcess};
use obs_testkit::prometheus::{free_port, Prometheus};

const DAY_S: i64 = 86_400;
/// Grafana's step for 7 days on 1,600 pixels: 378 s, rounded to 5m.
const STEP_S: i64 = 300;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: i64| obs_examples::cli::flag(&args, name, default);
    let (instances, routes, scrape) = (
        flag("--instances", 10),
        flag("--routes", 50),
        flag("--scrape", 300),
    );
    let (rounds, clients) = (flag("--rounds", 3), flag("--clients", 6));
    let engines: String = obs_examples::cli::flag(
        &args,
        "--engines",
        "collector,prometheus,victoria-metrics".to_owned(),
    );
    let engine = |name: &str| engines.split(',').any(|e| e == name);
    let dir = std::env::temp_dir().join(format!("obs-dashboard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let end = now / STEP_S * STEP_S - 3600;
    let (start, days) = (end - 7 * DAY_S, 8);
    // Grafana: `$__rate_interval` is the larger of interval + scrape interval and four scrape
    // intervals (the data source's `timeInterval` is the scrape interval).
    let rate_interval = format!("{}s", (STEP_S + scrape).max(4 * scrape));
    let grafana = Substitutions {
        interval: "5m",
        rate_interval: &rate_interval,
        job: "shop",
    };

    // The samples into the collector's store; the same, as OpenMetrics files, for the others
    // once the collector is measured: each engine is measured right after its own import, not
    // while the kernel writes out gigabytes of files for the next.
    let started = Instant::now();
    let storage = dir.join("state.data");
    let les: Vec<String> = obs::semconv::DURATION_BUCKETS
        .iter()
        .map(|b| b.to_string())
        .chain(["+Inf".to_owned()])
        .collect();
    let les: Vec<&str> = les.iter().map(String::as_str).collect();
    let job = || dashboard::Job::new(instances as usize, routes as usize, &les, scrape, end, days);
    let mut samples = 0usize;
    {
        let retention = obs_collector::store::compact::Retention {
            time_ms: 400 * DAY_S * 1000,
            bytes: u64::MAX,
            raw_ms: 400 * DAY_S * 1000,
        };
        let mut blocks = obs_collector::store::blocks::Blocks::open(&storage, retention)?;
        for day in job() {
            let text = dashboard::openmetrics(&day);
            let series = obs_collector::import::read(&text)?;
            samples += series.iter().map(|(_, s)| s.len()).sum::<usize>();
            blocks.import(series)?;
        }
    }
    println!(
        "{instances} instances x {routes} routes, a sample every {scrape} s, {days} days: {samples} samples, made and imported in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let shipped = dashboard::shipped();
    let mut requests: Vec<Request> = dashboard::queries(&shipped, grafana)
        .into_iter()
        .map(|q| {
            let window = if q.instant {
                format!("time={end}")
            } else {
                format!("start={start}&end={end}&step={STEP_S}")
            };
            let path = if q.instant {
                "/api/v1/query"
            } else {
                "/api/v1/query_range"
            };
            Request {
                what: q.what,
                path: path.to_owned(),
                form: Some(format!("query={}&{window}", client::encode_query(&q.expr))),
            }
        })
        .collect();
    requests.extend(
        dashboard::variable_calls(&shipped, grafana, start, end)
            .into_iter()
            .map(|path| Request {
                what: path.clone(),
                path,
                form: None,
            }),
    );
    println!(
        "the dashboard: {} requests, {clients} at a time, {rounds} rounds",
        requests.len()
    );

    let mut results = Vec::new();
    if engine("collector") {
        let config = dir.join("collector.yml");
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: {scrape}s\nscrape_configs: []\n"),
        )?;
        let collector = CollectorProcess::start_with_args(
            &sibling_binary("obs-collector"),
            &config,
            &dir.join("state.json"),
            &[],
            &[
                "--storage.retention",
                "400d",
                "--storage.raw-retention",
                "400d",
            ],
        );
        results.push(measure(
            "obs-collector",
            collector.addr,
            collector.pid(),
            &requests,
            rounds,
            clients,
        ));
    }
    let mut files = Vec::new();
    if engine("prometheus") || engine("victoria-metrics") {
        for (i, day) in job().enumerate() {
            let path = dir.join(format!("day-{i}.om"));
            std::fs::write(&path, dashboard::openmetrics(&day))?;
            // On disk before anything is measured (7.5 GB at the default size).
            std::fs::File::open(&path)?.sync_all()?;
            files.push(path);
        }
    }
    if engine("prometheus") {
        let started = Instant::now();
        let prom = Prometheus::start_backfilled(
            &format!("global:\n  scrape_interval: {scrape}s\nscrape_configs: []\n"),
            &["--storage.tsdb.retention.time=10y"],
            &files,
        )?;
        println!(
            "Prometheus backfilled in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        results.push(measure(
            &version("prometheus", "--version"),
            prom.addr,
            prom.pid(),
            &requests,
            rounds,
            clients,
        ));
    }
    match engine("victoria-metrics").then(|| VictoriaMetrics::start(&dir, &files)) {
        None => {}
        Some(Ok(vm)) => results.push(measure(
            &version("victoria-metrics", "-version"),
            vm.addr,
            vm.child.id(),
            &requests,
            rounds,
            clients,
        )),
        Some(Err(e)) => println!("VictoriaMetrics: not measured ({e})"),
    }

    let prometheus = results.iter().find(|r| r.engine.starts_with("prometheus"));
    println!();
    println!(
        "| engine | cold | warm (median) | memory added | series count differs from Prometheus |"
    );
    println!("|---|---:|---:|---:|---|");
    for r in &results {
        let mut warm: Vec<f64> = r.rounds[1..].to_vec();
        warm.sort_by(f64::total_cmp);
        let median = warm.get(warm.len() / 2).copied().unwrap_or(r.rounds[0]);
        let differ: Vec<String> = r
            .series
            .iter()
            .zip(prometheus.map_or(&[][..], |p| &p.series))
            .zip(&requests)
            .filter(|((a, b), _)| a != b)
            .map(|((a, b), q)| format!("{} ({a:?} against {b:?})", q.what))
            .collect();
        println!(
            "| {} | {:.2} s | {:.2} s | {:.0} MiB | {} |",
            r.engine,
            r.rounds[0],
            median,
            r.added_mib,
            if differ.is_empty() {
                "none".to_owned()
            } else {
                format!("{}: {}", differ.len(), differ.join(", "))
            }
        );
    }
    if args.iter().any(|a| a == "--keep") {
        println!("kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// One of the dashboard's requests: a POST form (a query) or a GET (a variable's values).
struct Request {
    what: String,
    path: String,
    form: Option<String>,
}

/// Waits until the machine is idle (under 5% of its CPU busy for a second; two minutes at
/// most), for what came before (the import, the files written, Prometheus compacting what
/// promtool wrote) to be over before the dashboard is asked; the seconds waited.
fn settle() -> f64 {
    // Busy and total jiffies of all CPUs, from /proc/stat's first line.
    let jiffies = || -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let v: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let idle = v.get(3)? + v.get(4)?;
        let total: u64 = v.iter().sum();
        Some((total - idle, total))
    };
    let started = Instant::now();
    let mut last = jiffies();
    while started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_secs(1));
        let now = jiffies();
        match (last, now) {
            (Some((b0, t0)), Some((b1, t1))) if (b1 - b0) * 20 > (t1 - t0).max(1) => last = now,
            _ => break,
        }
    }
    started.elapsed().as_secs_f64()
}

/// An engine's rounds.
struct Measured {
    engine: String,
    /// Seconds per round.
    rounds: Vec<f64>,
    added_mib: f64,
    /// Per request, the series (or values) of its answer, or an error.
    series: Vec<Result<usize, String>>,
}

/// Asks the dashboard of the engine at `addr` (process `pid`) `rounds` times.
fn measure(
    engine: &str,
    addr: std::net::SocketAddr,
    pid: u32,
    requests: &[Request],
    rounds: i64,
    clients: i64,
) -> Measured {
    let waited = settle();
    if waited > 1.5 {
        println!("{engine}: the machine idle after {waited:.0} s");
    }
    // The peak from here: what the engine did before (its import, compaction) is not the
    // dashboard's. Linux resets VmHWM on "5" (since 4.0).
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let before = status_kib(pid, "VmRSS").unwrap_or(0);
    let mut times = Vec::new();
    let mut series = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        series = ask_all(addr, requests, clients as usize);
        times.push(started.elapsed().as_secs_f64());
    }
    let peak = status_kib(pid, "VmHWM").unwrap_or(0);
    println!(
        "{engine}: {}",
        times
            .iter()
            .map(|t| format!("{t:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Measured {
        engine: engine.to_owned(),
        rounds: times,
        added_mib: peak.saturating_sub(before) as f64 / 1024.0,
        series,
    }
}

/// Every request, `clients` at a time; the size of each answer's `data` (or `data.result`).
fn ask_all(
    addr: std::net::SocketAddr,
    requests: &[Request],
    clients: usize,
) -> Vec<Result<usize, String>> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Result<usize, String>>> = Mutex::new(
        (0..requests.len())
            .map(|_| Err("not asked".into()))
            .collect(),
    );
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = requests.get(i) else { break };
                let answer = match &r.form {
                    Some(form) => client::post(
                        addr,
                        &r.path,
                        &[("content-type", b"application/x-www-form-urlencoded")],
                        form.as_bytes(),
                    ),
                    None => client::get(addr, &r.path),
                };
                let size = answer.map_err(|e| e.to_string()).and_then(|a| {
                    let v: serde_json::Value =
                        serde_json::from_str(&a.body).map_err(|e| e.to_string())?;
                    let data = if v["data"]["result"].is_array() {
                        &v["data"]["result"]
                    } else {
                        &v["data"]
                    };
                    data.as_array()
                        .map(Vec::len)
                        .ok_or_else(|| format!("{}: {}", a.status, v["error"]))
                });
                out.lock().unwrap()[i] = size;
            });
        }
    });
    out.into_inner().unwrap()
}

/// `command flag`'s first line (its version), or the command.
fn version(command: &str, flag: &str) -> String {
    Command::new(command)
        .arg(flag)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| command.to_owned())
}

/// A VictoriaMetrics single-node process, its samples imported.
struct VictoriaMetrics {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl VictoriaMetrics {
    /// Starts `victoria-metrics` with its result cache off (each round computes), imports
    /// `files` (OpenMetrics, seconds) through `/api/v1/import/prometheus` (milliseconds), and
    /// flushes them to be searchable.
    fn start(dir: &Path, files: &[std::path::PathBuf]) -> Result<Self, Box<dyn std::error::Error>> {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let child = Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", dir.join("vm").display()))
            .arg(format!("-httpListenAddr={addr}"))
            .args([
                "-retentionPeriod=100y",
                "-search.disableCache",
                "-search.latencyOffset=0s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot run victoria-metrics (apt-get install victoria-metrics): {e}")
            })?;
        let vm = VictoriaMetrics { child, addr };
        client::wait_ready(addr, Duration::from_secs(30), "VictoriaMetrics");
        let started = Instant::now();
        for file in files {
            let text = std::fs::read_to_string(file)?;
            let mut body = String::with_capacity(text.len());
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                // `... <seconds>.<millis>` to `... <milliseconds>`.
                let (sample, ts) = line.rsplit_once(' ').ok_or("a line without a timestamp")?;
                let (s, ms) = ts.split_once('.').unwrap_or((ts, "000"));
                body.push_str(sample);
                body.push(' ');
                body.push_str(s);
                body.push_str(&format!("{ms:0<3}"));
                body.push('\n');
            }
            let r = client::post(addr, "/api/v1/import/prometheus", &[], body.as_bytes())?;
            if r.status / 100 != 2 {
                return Err(format!("VictoriaMetrics' import: {} {}", r.status, r.body).into());
            }
        }
        client::get(addr, "/internal/force_flush")?;
        println!(
            "VictoriaMetrics imported in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        Ok(vm)
    }
}
