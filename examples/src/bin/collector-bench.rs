//! Scrape-and-evaluate benchmark: obs-collector and a real `prometheus` scrape the same fake
//! fleet (1,000 targets x 100 series, every 15 s) with the same rule file, side by side in one
//! run; reports CPU per scrape+evaluation cycle and memory of each.
//!
//! ```text
//! cargo build --release -p obs-collector -p obs-examples
//! ./target/release/collector-bench [--targets 1000] [--warmup 60] [--measure 120] \
//!     [--incident] [--collector PATH]
//! ```
//!
//! Every target says what it serves (`target_info`, `process_start_time_seconds`). With
//! `--incident`, from 20 s to 200 s after the start the odd targets serve 1.1.0 and answer
//! every `/login` with a 500: `HighErrorRate` fires (about 2.5 min in) and resolves after the
//! rollback (about 4.5 min in), so a measurement of 60 + 240 s covers both transitions and
//! their incident context, whose time the collector's
//! `obs_collector_incident_context_duration_seconds` reports (printed at the end).
//! `--collector` runs another obs-collector binary (a previous build) on the same fleet.
//!
//! The fleet is one HTTP server on `0.0.0.0:PORT`; target `i` is `127.0.X.Y:PORT` (all of
//! 127/8 is loopback), so each target is a distinct address as in a real fleet.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;

const ROUTES: [&str; 5] = [
    "/users/{id}",
    "/orders",
    "/orders/{id}",
    "/login",
    "/health",
];
const LES: [&str; 16] = [
    "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2", "2.5", "5",
    "7.5", "10", "+Inf",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u64| obs_examples::cli::flag(&args, name, default);
    let (targets, warmup, measure) = (
        flag("--targets", 1000) as usize,
        flag("--warmup", 60),
        flag("--measure", 120),
    );
    let incident = args.iter().any(|a| a == "--incident");
    let collector_bin = args
        .iter()
        .position(|a| a == "--collector")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || obs_testkit::process::sibling_binary("obs-collector"),
            PathBuf::from,
        );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let port = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await?;
        let port = listener.local_addr()?.port();
        let start = Instant::now();
        let app = Router::new().route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| async move {
                // Which target was scraped: the address in its Host header (127.0.X.Y).
                let host = headers
                    .get(axum::http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default();
                let odd = host
                    .split(':')
                    .next()
                    .and_then(|ip| ip.rsplit('.').next())
                    .and_then(|octet| octet.parse::<u8>().ok())
                    .is_some_and(|o| o % 2 == 1);
                let elapsed = start.elapsed().as_secs_f64();
                let broken = incident && odd && (20.0..200.0).contains(&elapsed);
                page(elapsed, broken)
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok::<_, std::io::Error>(port)
    })?;
    let addrs: Vec<SocketAddr> = (0..targets)
        .map(|i| ([127, 0, (1 + i / 250) as u8, (1 + i % 250) as u8], port).into())
        .collect();
    let dir = std::env::temp_dir().join(format!("obs-collector-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../alerts/obs-red.rules.yml")
        .canonicalize()?;
    let list: Vec<String> = addrs.iter().map(|a| format!("'{a}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: 15s\n  scrape_timeout: 10s\n  evaluation_interval: 15s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: fleet\n    static_configs:\n      - targets: [{}]\n",
        rules.display(),
        list.join(", ")
    );
    std::fs::write(dir.join("config.yml"), &config)?;

    let listen: SocketAddr = ([127, 0, 0, 1], obs_testkit::prometheus::free_port()?).into();
    let collector = Measured::spawn(
        "obs-collector",
        Command::new(&collector_bin)
            .arg("--config")
            .arg(dir.join("config.yml"))
            .args(["--listen", &listen.to_string(), "--state-file"])
            .arg(dir.join("state.json"))
            .arg("--storage.path")
            .arg(dir.join("data"))
            .envs(
                std::env::vars()
                    .filter(|(k, _)| k.starts_with("BENCH_COLLECTOR_"))
                    .map(|(k, v)| (k.trim_start_matches("BENCH_COLLECTOR_").to_owned(), v)),
            ),
    )?;
    let prometheus = Measured::spawn(
        "prometheus",
        &mut obs_testkit::prometheus::command(
            &dir.join("config.yml"),
            &dir.join("tsdb"),
            ([127, 0, 0, 1], obs_testkit::prometheus::free_port()?).into(),
        ),
    )?;
    eprintln!("{targets} targets x 102 series; warming up {warmup}s, then measuring {measure}s");
    std::thread::sleep(Duration::from_secs(warmup));
    let start = [collector.cpu_seconds()?, prometheus.cpu_seconds()?];
    std::thread::sleep(Duration::from_secs(measure));
    let end = [collector.cpu_seconds()?, prometheus.cpu_seconds()?];
    let cycles = measure as f64 / 15.0;
    println!("| process | CPU per 15 s cycle (s) | CPU share of one core | RSS now (MiB) | peak RSS (MiB) |");
    println!("|---|---:|---:|---:|---:|");
    for (i, p) in [&collector, &prometheus].iter().enumerate() {
        let cpu = end[i] - start[i];
        let (rss, peak) = p.rss_mib()?;
        println!(
            "| {} | {:.3} | {:.1}% | {rss:.1} | {peak:.1} |",
            p.name,
            cpu / cycles,
            100.0 * cpu / measure as f64
        );
    }
    // The context stage's time, from the collector's own metrics (absent in builds before it).
    let own = obs_testkit::client::get(listen, "/metrics")
        .map(|r| r.body)
        .unwrap_or_default();
    let read = |name: &str| -> Option<f64> {
        own.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    };
    let family = "obs_collector_incident_context_duration_seconds";
    if let (Some(sum), Some(count)) = (
        read(&format!("{family}_sum")),
        read(&format!("{family}_count")),
    ) {
        let within = |le: &str| read(&format!("{family}_bucket{{le=\"{le}\"}}")).unwrap_or(0.0);
        println!(
            "incident context: {count} readings, {:.1} ms on average, {} within 0.1 s, {} within 1 s",
            1000.0 * sum / count.max(1.0),
            within("0.1"),
            within("1")
        );
    }
    let firing = obs_testkit::client::get(listen, "/api/v1/alerts")
        .map(|r| r.body)
        .unwrap_or_default();
    println!("alerts at the end: {firing}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// One target's page: what it serves (2 series), then 5 routes x (16 buckets + sum + count)
/// and 10 gauges (100 series); `broken`: it serves 1.1.0 and its `/login` answers 500.
fn page(elapsed: f64, broken: bool) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let version = if broken { "1.1.0" } else { "1.0.0" };
    out.push_str(&format!(
        "target_info{{service_name=\"fleet\",service_version=\"{version}\"}} 1\nprocess_start_time_seconds 1800000000\n"
    ));
    out.push_str("# TYPE http_server_request_duration_seconds histogram\n");
    for (r, route) in ROUTES.iter().enumerate() {
        let total = elapsed * (10.0 + r as f64);
        let code = if broken && *route == "/login" {
            "500"
        } else {
            "200"
        };
        for (i, le) in LES.iter().enumerate() {
            let share = ((i + 1) as f64 / LES.len() as f64).min(1.0);
            out.push_str(&format!(
                "http_server_request_duration_seconds_bucket{{http_request_method=\"GET\",http_route=\"{route}\",http_response_status_code=\"{code}\",url_scheme=\"http\",le=\"{le}\"}} {}\n",
                (total * share).floor()
            ));
        }
        let labels = format!("http_request_method=\"GET\",http_route=\"{route}\",http_response_status_code=\"{code}\",url_scheme=\"http\"");
        out.push_str(&format!(
            "http_server_request_duration_seconds_sum{{{labels}}} {}\n",
            total * 0.05
        ));
        out.push_str(&format!(
            "http_server_request_duration_seconds_count{{{labels}}} {}\n",
            total.floor()
        ));
    }
    for g in 0..10 {
        out.push_str(&format!(
            "fleet_gauge{{n=\"{g}\"}} {}\n",
            (elapsed + g as f64).sin()
        ));
    }
    out
}

/// A child process whose CPU time and memory are read from /proc.
struct Measured {
    name: &'static str,
    child: Child,
}

impl Measured {
    fn spawn(name: &'static str, cmd: &mut Command) -> std::io::Result<Self> {
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        Ok(Self { name, child })
    }

    fn proc_path(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.child.id()))
    }

    /// utime + stime of the process, in seconds.
    fn cpu_seconds(&self) -> std::io::Result<f64> {
        let stat = std::fs::read_to_string(self.proc_path("stat"))?;
        let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        // Fields 14 and 15 of /proc/PID/stat; index 11 and 12 after the command name.
        let ticks: f64 =
            fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
        Ok(ticks / 100.0) // USER_HZ
    }

    /// (VmRSS, VmHWM) in MiB.
    fn rss_mib(&self) -> std::io::Result<(f64, f64)> {
        let mib = |field| {
            obs_testkit::process::status_kib(self.child.id(), field)
                .map(|kib| kib as f64 / 1024.0)
                .ok_or_else(|| std::io::Error::other(format!("no {field} for {}", self.child.id())))
        };
        Ok((mib("VmRSS")?, mib("VmHWM")?))
    }
}

impl Drop for Measured {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
