//! Soak tests with chaos, for RELIABILITY.md. Build release binaries first:
//!
//! ```text
//! cargo build --release -p obs-collector -p obs-examples
//! ./target/release/soak service --minutes 20     # the demo service under load, backends flapping
//! ./target/release/soak collector --minutes 20   # the collector against 200 unruly targets
//! ```
//!
//! `service`: the demo service (release) at about 2,000 requests/s (10% to `/fail`) while its
//! OTLP endpoint and its Sentry endpoint change behaviour every minute (accept, hang, fail, be
//! slow). Counts every request that did not get its expected status, samples the service's RSS
//! and the drop counters every 30 s.
//!
//! `collector`: obs-collector (release) scraping 200 targets every 5 s, with the default rules,
//! while every 10 s a few targets vanish (connections closed) for 1-2 minutes, restart (counters
//! back to zero) or serve a malformed page. The last 3 minutes are calm; then every target must
//! be up and no alert pending or firing. Samples the collector's RSS every 30 s.
//!
//! Both print one line per sample and a Markdown summary; a violated expectation exits 1.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use obs_testkit::client;
use obs_testkit::exposition::sample;
use obs_testkit::process::{sibling_binary, status_kib, CollectorProcess, DemoService};
use obs_testkit::receivers::{Behavior, OtlpReceiver, SentryReceiver};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let minutes: u64 = args
        .iter()
        .position(|a| a == "--minutes")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(20);
    let run = match args.first().map(String::as_str) {
        Some("service") => service(minutes),
        Some("collector") => collector(minutes),
        _ => Err("usage: soak service|collector [--minutes N]".into()),
    };
    match run {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resident set size of `pid`, in MiB (0 once it is gone).
fn rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmRSS").map_or(0.0, |kib| kib as f64 / 1024.0)
}

/// A small xorshift generator: the chaos needs variety, not quality.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

// --- service -----------------------------------------------------------------------------------

/// The backends' behaviour in each minute, in turn (OTLP, Sentry).
const CHAOS: [(Behavior, Behavior, &str); 4] = [
    (Behavior::Discard, Behavior::Discard, "both up"),
    (
        Behavior::Hang,
        Behavior::Status(500),
        "OTLP hangs, Sentry fails",
    ),
    (
        Behavior::Status(503),
        Behavior::Hang,
        "OTLP fails, Sentry hangs",
    ),
    (
        Behavior::Slow(Duration::from_secs(3)),
        Behavior::Status(429),
        "OTLP slow, Sentry rate-limits",
    ),
];
const CLIENT_THREADS: u64 = 4;
const RATE_PER_THREAD: u64 = 500;

fn service(minutes: u64) -> Result<bool> {
    let otlp = OtlpReceiver::start(Behavior::Discard);
    let sentry = SentryReceiver::start(Behavior::Discard);
    let (endpoint, dsn) = (otlp.endpoint(), sentry.dsn("soakkey"));
    let demo = DemoService::start(
        &sibling_binary("demo-service"),
        &[
            ("OTEL_SERVICE_NAME", "soak"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("SENTRY_DSN", &dsn),
        ],
    )?;
    demo.discard_output();
    let admin = demo.admin.ok_or("no admin address")?;
    let (addr, pid) = (demo.addr, demo.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let (stop, ok, failed, failures) = (
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
                Arc::clone(&failures),
            );
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut i: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let (path, want) = if i.is_multiple_of(10) {
                        ("/fail".to_owned(), 500)
                    } else {
                        (format!("/users/{}", t * 1_000_000_000 + i), 200)
                    };
                    match client::get(addr, &path) {
                        Ok(r) if r.status == want => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            let mut f = failures.lock().unwrap_or_else(|e| e.into_inner());
                            if f.len() < 20 {
                                f.push(format!("{path}: {:?}", other.map(|r| r.status)));
                            }
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    // Pace: request i is due at i / rate seconds.
                    let due = Duration::from_micros(i * 1_000_000 / RATE_PER_THREAD);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            })
        })
        .collect();

    let metric = |name: &str| {
        client::get(admin, "/metrics")
            .ok()
            .and_then(|r| sample(&r.body, name, &[]))
            .unwrap_or(f64::NAN)
    };
    let started = Instant::now();
    let end = started + Duration::from_secs(minutes * 60);
    let mut rss = Vec::new();
    let mut last_ok = 0;
    println!("| min | chaos | req/s | failed | RSS MiB | spans dropped | log lines dropped |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    let mut next_sample = started + Duration::from_secs(30);
    let mut phase = usize::MAX;
    while Instant::now() < end {
        let minute = (started.elapsed().as_secs() / 60) as usize;
        if minute != phase {
            phase = minute;
            let (o, s, _) = CHAOS[minute % CHAOS.len()];
            otlp.set_behavior(o);
            sentry.set_behavior(s);
        }
        std::thread::sleep(next_sample.saturating_duration_since(Instant::now()));
        next_sample += Duration::from_secs(30);
        let now_ok = ok.load(Ordering::Relaxed);
        let mib = rss_mib(pid);
        rss.push(mib);
        println!(
            "| {:.1} | {} | {:.0} | {} | {mib:.1} | {} | {} |",
            started.elapsed().as_secs_f64() / 60.0,
            CHAOS[phase % CHAOS.len()].2,
            (now_ok - last_ok) as f64 / 30.0,
            failed.load(Ordering::Relaxed),
            metric("obs_spans_dropped_total"),
            metric("obs_log_lines_dropped_total"),
        );
        last_ok = now_ok;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let warm = rss.get(1).copied().unwrap_or(0.0);
    let last = rss.last().copied().unwrap_or(0.0);
    let max = rss.iter().copied().fold(0.0, f64::max);
    // The bounded queues and buffers first fill when a backend hangs: the baseline for "flat"
    // is the end of the first chaos cycle (every backend has hung, failed and been slow once),
    // when the run has a second cycle to compare; else the 1-minute value.
    let cycle = CHAOS.len();
    let (baseline, at) = match rss.get(2 * cycle - 1) {
        Some(&mib) if minutes >= 2 * cycle as u64 => (mib, cycle),
        _ => (warm, 1),
    };
    println!("\n**service soak, {minutes} min**: {ok} requests answered as expected, {failed} not; RSS {warm:.1} MiB at 1 min, {baseline:.1} MiB at {at} min, {last:.1} MiB at the end, {max:.1} MiB max.");
    for f in failures.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        println!("  failure: {f}");
    }
    // Flat: the end within 20% (+2 MiB) of the baseline.
    Ok(failed == 0 && last <= baseline * 1.2 + 2.0)
}

// --- collector ---------------------------------------------------------------------------------

const TARGETS: usize = 200;
const CALM_MINUTES: u64 = 3;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Up,
    /// Connections are closed without an answer, until this instant.
    Vanished(Instant),
    /// The next scrape gets a malformed page.
    Malformed,
}

struct Target {
    mode: Mode,
    /// Counters count from here: a restart resets them.
    started: Instant,
}

/// The page of a healthy RED-instrumented service: 3 routes x (15 buckets + sum + count).
fn page(since: Duration, seed: usize) -> String {
    let s = since.as_secs_f64();
    let mut out = String::from("# TYPE http_server_request_duration_seconds histogram\n");
    for (r, route) in ["/users/{id}", "/orders", "/health"].iter().enumerate() {
        let total = (s * (5.0 + (seed % 7) as f64 + r as f64)).floor();
        let labels = format!("http_request_method=\"GET\",http_route=\"{route}\",http_response_status_code=\"200\",url_scheme=\"http\"");
        // A healthy service: half under 5 ms, 97% under 50 ms, all under 250 ms.
        for le in obs::metrics::names::DURATION_BUCKETS {
            let share = match le {
                l if l >= 0.25 => 1.0,
                l if l >= 0.05 => 0.97,
                _ => 0.5,
            };
            let _ = writeln!(
                out,
                "http_server_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                (total * share).floor()
            );
        }
        let _ = writeln!(
            out,
            "http_server_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}\nhttp_server_request_duration_seconds_sum{{{labels}}} {}\nhttp_server_request_duration_seconds_count{{{labels}}} {total}",
            total * 0.05
        );
    }
    out
}

fn serve_targets(targets: Arc<Vec<Mutex<Target>>>) -> Result<Vec<SocketAddr>> {
    let mut addrs = Vec::new();
    for (i, _) in targets.iter().enumerate() {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        addrs.push(listener.local_addr()?);
        let targets = Arc::clone(&targets);
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                for mut stream in listener.incoming().flatten() {
                    let mut buf = [0u8; 2048];
                    let _ = stream.read(&mut buf);
                    let body = {
                        let mut t = targets[i].lock().unwrap_or_else(|e| e.into_inner());
                        match t.mode {
                            Mode::Vanished(until) if Instant::now() < until => continue, // drop
                            Mode::Malformed => {
                                t.mode = Mode::Up;
                                "http_server_request_duration_seconds_count{{{ 12 \u{0}\n".to_owned()
                            }
                            _ => {
                                t.mode = Mode::Up;
                                page(t.started.elapsed(), i)
                            }
                        }
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            })?;
    }
    Ok(addrs)
}

fn collector(minutes: u64) -> Result<bool> {
    let targets: Arc<Vec<Mutex<Target>>> = Arc::new(
        (0..TARGETS)
            .map(|_| {
                Mutex::new(Target {
                    mode: Mode::Up,
                    started: Instant::now(),
                })
            })
            .collect(),
    );
    let addrs = serve_targets(Arc::clone(&targets))?;
    let dir = std::env::temp_dir().join(format!("obs-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("rules.yml"), obs_collector::config::DEFAULT_RULES)?;
    let list: Vec<String> = addrs.iter().map(|a| format!("'{a}'")).collect();
    let config = dir.join("collector.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: fleet\n    static_configs:\n      - targets: [{}]\n", list.join(", ")),
    )?;
    let collector = CollectorProcess::start(
        &sibling_binary("obs-collector"),
        &config,
        &dir.join("state.json"),
        &[],
    );
    let pid = collector.pid();
    let started = Instant::now();
    let chaos_end = started + Duration::from_secs(minutes.saturating_sub(CALM_MINUTES) * 60);
    let end = started + Duration::from_secs(minutes * 60);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let (mut vanished, mut restarted, mut malformed, mut max_down_alerts) = (0, 0, 0, 0);
    let mut rss = Vec::new();
    let mut next_sample = started + Duration::from_secs(30);
    println!("| min | RSS MiB | TargetDown firing | vanished so far | restarts so far | malformed pages so far |");
    println!("|---:|---:|---:|---:|---:|---:|");
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(10));
        if Instant::now() < chaos_end {
            for _ in 0..3 {
                let t = &targets[rng.below(TARGETS as u64) as usize];
                let until = Instant::now() + Duration::from_secs(60 + rng.below(60));
                t.lock().unwrap_or_else(|e| e.into_inner()).mode = Mode::Vanished(until);
                vanished += 1;
            }
            for _ in 0..3 {
                let t = &targets[rng.below(TARGETS as u64) as usize];
                t.lock().unwrap_or_else(|e| e.into_inner()).started = Instant::now();
                restarted += 1;
            }
            for _ in 0..2 {
                let t = &targets[rng.below(TARGETS as u64) as usize];
                let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                if t.mode == Mode::Up {
                    t.mode = Mode::Malformed;
                    malformed += 1;
                }
            }
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(30);
            let firing = alerts(collector.addr)
                .iter()
                .filter(|(name, state)| name == "TargetDown" && state == "firing")
                .count();
            max_down_alerts = max_down_alerts.max(firing);
            let mib = rss_mib(pid);
            rss.push(mib);
            println!(
                "| {:.1} | {mib:.1} | {firing} | {vanished} | {restarted} | {malformed} |",
                started.elapsed().as_secs_f64() / 60.0
            );
        }
    }
    let alive = rss_mib(pid) > 0.0;
    let active = alerts(collector.addr);
    let up = targets_up(collector.addr);
    let panicked = collector
        .output
        .lock()
        .map(|o| o.contains("panicked"))
        .unwrap_or(true);
    let warm = rss.get(1).copied().unwrap_or(0.0);
    let last = rss.last().copied().unwrap_or(0.0);
    let max = rss.iter().copied().fold(0.0, f64::max);
    println!("\n**collector soak, {minutes} min** ({TARGETS} targets, 5 s interval): {vanished} vanishings, {restarted} restarts, {malformed} malformed pages; TargetDown firing at most {max_down_alerts} at once during the chaos; after {CALM_MINUTES} calm minutes {up}/{TARGETS} targets up and {} alerts active ({active:?}); RSS {warm:.1} MiB at 1 min, {last:.1} MiB at the end, {max:.1} MiB max; process alive: {alive}, panicked: {panicked}.", active.len());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(alive
        && !panicked
        && up == TARGETS
        && active.is_empty()
        && max_down_alerts > 0
        && last <= warm * 1.2 + 5.0)
}

/// How many targets the collector's `/api/v1/targets` lists as up.
fn targets_up(addr: SocketAddr) -> usize {
    let Ok(r) = client::get(addr, "/api/v1/targets") else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    v["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["health"] == "up")
        .count()
}

/// (alertname, state) of every active alert.
fn alerts(addr: SocketAddr) -> Vec<(String, String)> {
    let Ok(r) = client::get(addr, "/api/v1/alerts") else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("?").to_owned(),
                a["state"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}
