//! obs-collector: scrapes services' metrics, evaluates Prometheus alert rules with
//! Prometheus' semantics, and reports alerts.
//!
//! ```text
//! obs-collector [--config FILE] [--listen ADDR] [--state-file PATH]
//! obs-collector check FILE
//! obs-collector import FILE [--storage.path DIR]
//! obs-collector backtest [--config FILE] [--from URL] --start T --end T [--rule NAME] [--format text|json]
//! obs-collector report [--config FILE] [--storage.path DIR] [--from URL] [--end T] [--weeks N] [--format text|json|html]
//! ```
//!
//! Without `--config` it scrapes `127.0.0.1:9464` every 15 s as job `app` and evaluates the
//! rules embedded from `alerts/obs-red.rules.yml`. `OBS_COLLECTOR_TOKEN` makes every page but
//! `/-/healthy` and `/-/ready` require `Authorization: Bearer <token>`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use obs_collector::config::{Config, ConfigError};
use obs_collector::{collector, rules, web};

/// Scrapes services' metrics, evaluates Prometheus alert rules with Prometheus' semantics,
/// and notifies. Without --config it scrapes 127.0.0.1:9464 every 15 s as job `app` with the
/// shipped rules.
#[derive(Parser)]
#[command(
    name = "obs-collector",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Args,
}

/// Running the collector (no subcommand).
#[derive(clap::Args)]
struct Args {
    /// The configuration file (Prometheus' layout).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the status page, the API and /metrics listen.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9465")]
    listen: SocketAddr,
    /// Alert state and the notification log, kept across restarts.
    #[arg(long, value_name = "PATH", default_value = "obs-collector.state.json")]
    state_file: PathBuf,
    #[command(flatten)]
    storage: Storage,
    /// At most this many series in memory: new ones beyond are refused and counted
    /// (obs_collector_series_refused_total), and the status page says so.
    #[arg(
        long = "storage.max-series",
        value_name = "N",
        default_value_t = obs_collector::store::DEFAULT_MAX_SERIES
    )]
    max_series: usize,
    /// A query of the API that runs longer stops and answers 503 (Prometheus' flag).
    #[arg(long = "query.timeout", value_name = "DURATION", default_value = "2m", value_parser = duration_ms)]
    query_timeout: i64,
    /// A query that reads more samples stops and answers 422 (Prometheus' flag and default).
    #[arg(
        long = "query.max-samples",
        value_name = "N",
        default_value_t = 50_000_000
    )]
    query_max_samples: usize,
    /// At most this many queries are evaluated at once; the others wait (Prometheus' flag;
    /// by default the machine's cores, where Prometheus' is 20).
    #[arg(long = "query.max-concurrency", value_name = "N")]
    query_max_concurrency: Option<usize>,
    /// Evaluate rules and queries as Prometheus 2.x does (ranges closed on the left, its
    /// extrapolation order, no tolerance in histogram_quantile) rather than as Prometheus 3.
    #[arg(long = "query.prometheus-2")]
    query_prometheus_2: bool,
}

/// Where and how long history is kept.
#[derive(clap::Args)]
struct Storage {
    /// Where history is kept: blocks in `blocks/`, the head's write-ahead log in `wal/`.
    #[arg(
        long = "storage.path",
        value_name = "DIR",
        default_value = "obs-collector-data"
    )]
    path: PathBuf,
    /// Blocks that end longer ago are deleted (Prometheus' units: 35d, 12w, 1y).
    #[arg(long = "storage.retention", value_name = "DURATION", default_value = "35d", value_parser = duration_ms)]
    retention: i64,
    /// The oldest blocks are deleted while history takes more (512MB, 10GB: Prometheus'
    /// units, as body_size_limit; 0: no limit).
    #[arg(long = "storage.retention-size", value_name = "SIZE", default_value = "0", value_parser = obs_collector::config::parse_size)]
    retention_size: u64,
    /// Raw samples are kept this long, then downsampled to one every 5 minutes.
    #[arg(long = "storage.raw-retention", value_name = "DURATION", default_value = "8d", value_parser = duration_ms)]
    raw_retention: i64,
}

impl Storage {
    fn retention(&self) -> obs_collector::store::compact::Retention {
        obs_collector::store::compact::Retention {
            time_ms: self.retention,
            bytes: self.retention_size,
            raw_ms: self.raw_retention,
        }
    }
}

fn duration_ms(v: &str) -> Result<i64, String> {
    obs_collector::config::parse_duration(v)
        .map(|d| d.as_millis() as i64)
        .map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum Command {
    /// Checks a configuration and its rule files, as `promtool check config` does.
    Check {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Replays the rules over a range of a Prometheus-compatible backend's history.
    Backtest(BacktestArgs),
    /// Imports OpenMetrics text with timestamps (what `promtool tsdb create-blocks-from
    /// openmetrics` reads) into the history; run it while the collector is stopped.
    Import {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        storage: Storage,
    },
    /// The weekly report (deploy regressions, drift, each job's weeks) from the history on
    /// disk, or from a Prometheus-compatible backend (--from; a running collector is one).
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct ReportArgs {
    /// The configuration whose verdicts: and report: settings apply (default: the defaults).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The backend (default: the configuration's query.url, else the history on disk).
    #[arg(long, value_name = "URL")]
    from: Option<String>,
    /// The end of the week reported, RFC 3339 or Unix seconds (default: now).
    #[arg(long, value_name = "T")]
    end: Option<Timestamp>,
    /// Compare this week with this many weeks ago (2 to 12; default: the configuration's, 4).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=12))]
    weeks: Option<u32>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    #[command(flatten)]
    storage: Storage,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
    Html,
}

#[derive(clap::Args)]
struct BacktestArgs {
    /// The configuration whose rules are replayed (default: the shipped rules).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The backend (default: the configuration's query.url).
    #[arg(long, value_name = "URL")]
    from: Option<String>,
    /// RFC 3339 or Unix seconds.
    #[arg(long, value_name = "T")]
    start: Timestamp,
    /// RFC 3339 or Unix seconds.
    #[arg(long, value_name = "T")]
    end: Timestamp,
    /// Only this alerting rule.
    #[arg(long, value_name = "NAME")]
    rule: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// A time as the Prometheus API takes it (RFC 3339 or Unix seconds), in milliseconds.
#[derive(Clone, Copy)]
struct Timestamp(i64);

/// A time that is neither RFC 3339 nor Unix seconds.
#[derive(Debug)]
struct BadTime(String);

impl std::fmt::Display for BadTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is neither RFC 3339 nor Unix seconds", self.0)
    }
}

impl std::error::Error for BadTime {}

impl std::str::FromStr for Timestamp {
    type Err = BadTime;
    fn from_str(v: &str) -> Result<Self, BadTime> {
        obs_collector::time::parse_api_time(v)
            .map(Timestamp)
            .ok_or_else(|| BadTime(v.to_owned()))
    }
}

/// Loads the configuration and its rules.
fn load(path: Option<&PathBuf>) -> Result<(Config, Vec<rules::Group>), ConfigError> {
    let env = |k: &str| std::env::var(k).ok();
    let config = match path {
        Some(p) => Config::load(p, &env)?,
        None => Config::default_config(&env)?,
    };
    let groups = rules::load_all(
        &config.rule_files,
        config.evaluation_interval,
        config.remote.is_some(),
    )?;
    Ok((config, groups))
}

/// glibc's `malloc` serves allocations of 128 KiB and more with their own mappings, returned
/// to the system when freed, but by default it raises that threshold to the size of each such
/// block freed (up to 32 MiB): after a query frees a few MiB of series, later ones of that
/// size come from the heaps of the query threads, which keep them. Fixed at 128 KiB, the
/// dashboard over a week adds 38 MiB to the collector instead of 54, at the same speed
/// (BENCHMARKS.md). glibc reads the setting only from the environment, once, at start: the
/// collector starts itself again with it, unless it is set already (an operator's own value
/// wins). Elsewhere, or if that fails, it goes on as it is.
fn fixed_mmap_threshold() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "MALLOC_MMAP_THRESHOLD_";
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    // Returns only if it failed (the binary replaced under a running deploy, say).
    let failed = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(VAR, "131072")
        .exec();
    tracing::debug!(error = %failed, "not restarted with a fixed mmap threshold");
}

fn main() -> ExitCode {
    // Usage errors exit 2 with clap's message; --help and --version exit 0.
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { file }) => match load(Some(&file)) {
            Ok((config, groups)) => {
                let targets: usize = config.jobs.iter().map(|j| j.targets.len()).sum();
                let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
                println!(
                    "{}: OK ({} jobs, {targets} targets, {rules} rules)",
                    file.display(),
                    config.jobs.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Some(Command::Backtest(args)) => backtest(args),
        Some(Command::Import { file, storage }) => import(&file, &storage),
        Some(Command::Report(args)) => report(args),
        None => {
            fixed_mmap_threshold();
            run(cli.run)
        }
    }
}

/// Exit 0 when imported, 1 when the file or the store cannot be read or written (nothing is
/// imported then).
fn import(file: &std::path::Path, storage: &Storage) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("obs-collector: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let series = match obs_collector::import::read(&text) {
        Ok(series) => series,
        Err(e) => {
            eprintln!("obs-collector: {}: {e}; nothing imported", file.display());
            return ExitCode::FAILURE;
        }
    };
    let samples: usize = series.iter().map(|(_, s)| s.len()).sum();
    let count = series.len();
    let imported = obs_collector::store::blocks::Blocks::open(&storage.path, storage.retention())
        .map_err(|e| e.to_string())
        .and_then(|mut blocks| blocks.import(series).map_err(|e| e.to_string()));
    match imported {
        Ok(blocks) => {
            println!(
                "{}: {samples} samples of {count} series imported into {} ({} blocks)",
                file.display(),
                storage.path.display(),
                blocks.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("obs-collector: {e}; nothing imported");
            ExitCode::FAILURE
        }
    }
}

/// The backend a command reads: `--from`, else the configuration's `query.url`; `None` for
/// neither.
fn backend(
    from: Option<&str>,
    config: &Config,
) -> Result<Option<obs_collector::config::RemoteQuery>, String> {
    match (from, &config.remote) {
        (Some(url), _) if url.starts_with("http://") || url.starts_with("https://") => {
            Ok(Some(obs_collector::config::RemoteQuery {
                url: url.to_owned(),
                timeout: Duration::from_secs(60),
                offset: Duration::ZERO,
                auth: None,
            }))
        }
        (Some(url), _) => Err(format!(
            "--from {url:?} must start with http:// or https://"
        )),
        (None, remote) => Ok(remote.clone()),
    }
}

/// Exit 0 with the report, 2 when the request is wrong (configuration, backend), 1 when the
/// numbers cannot be read (the backend fails, the history is in use or unreadable).
fn report(args: ReportArgs) -> ExitCode {
    use obs_collector::changes::{report, source};
    let (config, groups) = match load(args.config.as_ref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let remote = match backend(args.from.as_deref(), &config) {
        Ok(remote) => remote,
        Err(e) => {
            eprintln!("obs-collector: {e}");
            return ExitCode::from(2);
        }
    };
    let now = obs_collector::time::Clock::now_ms(&obs_collector::time::SystemClock);
    let options = report::Options {
        end_ms: args.end.map_or(now, |t| t.0),
        weeks: args.weeks.unwrap_or(config.report.weeks),
        thresholds: config.verdicts.thresholds,
        slo_budget: obs_collector::rules::slo_budget(&groups),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let built = match remote {
        Some(query) => {
            let backend = obs_collector::promql::remote::Remote::new(query, reqwest::Client::new());
            runtime.block_on(report::build(&backend, &options))
        }
        None => {
            // The head's samples stay in memory for the report: a week of them at most.
            let opened = obs_collector::store::Store::open(
                &args.storage.path,
                8 * 86_400_000,
                usize::MAX,
                args.storage.retention(),
                now,
            );
            let store = match opened {
                Ok((store, _)) => store,
                Err(obs_collector::store::blocks::OpenError::InUse(dir)) => {
                    eprintln!("obs-collector: {} is in use by a running collector: ask it instead (--from http://ADDR, the collector answers the query API; or its /report page)", dir.display());
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    eprintln!(
                        "obs-collector: cannot read the history in {}: {e}",
                        args.storage.path.display()
                    );
                    return ExitCode::FAILURE;
                }
            };
            let local = source::Evaluated(|expr: &obs_collector::promql::Expr, steps| {
                obs_collector::promql::eval_range(
                    expr,
                    &store,
                    steps,
                    obs_collector::promql::Limits::NONE,
                )
            });
            runtime.block_on(report::build(&local, &options))
        }
    };
    match built {
        Ok(report) => {
            match args.format {
                ReportFormat::Text => print!("{}", report.text()),
                ReportFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("a report is JSON")
                ),
                ReportFormat::Html => println!(
                    "{}",
                    obs_collector::web::report_page::render(&report).into_string()
                ),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("obs-collector: cannot build the report: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit 0 with the report, 2 when the request is wrong (configuration, range, rule), 1 when
/// the backend fails.
fn backtest(args: BacktestArgs) -> ExitCode {
    let (config, groups) = match load(args.config.as_ref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let query = match backend(args.from.as_deref(), &config) {
        Ok(Some(query)) => query,
        Ok(None) => {
            eprintln!("obs-collector: backtest needs --from URL (or query.url in the config)");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("obs-collector: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let backend = obs_collector::promql::remote::Remote::new(query, reqwest::Client::new());
    let report = runtime.block_on(obs_collector::backtest::run(
        &config,
        groups,
        &backend,
        args.start.0,
        args.end.0,
        args.rule.as_deref(),
    ));
    match report {
        Ok(report) if args.format == Format::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("a report is JSON")
            );
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.text());
            ExitCode::SUCCESS
        }
        Err(e @ obs_collector::backtest::BacktestError::Invalid(_)) => {
            eprintln!("obs-collector: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("obs-collector: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> ExitCode {
    let (config, groups) = match load(args.config.as_ref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // The collector's own work (scrapes, rule evaluations, notifications) runs on a runtime of
    // its own, the web server on the other: requests queue behind requests, never ahead of an
    // evaluation. Measured (`tests/hostile_queries.rs`): with one runtime, 10,000 requests at
    // once delayed the evaluations of a 1 s group until 3 of 6 seconds had none.
    let work = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("collector")
        .enable_all()
        .build()
        .expect("runtime");
    let work_handle = work.handle().clone();
    runtime.block_on(async move {
        let obs = match obs::Config::new()
            .service_name("obs-collector")
            .service_version(env!("CARGO_PKG_VERSION"))
            .disable_admin()
            .init()
        {
            Ok(o) => Arc::new(o),
            Err(e) => {
                eprintln!("obs-collector: {e}");
                return ExitCode::FAILURE;
            }
        };
        let targets: usize = config.jobs.iter().map(|j| j.targets.len()).sum();
        let rule_count: usize = groups.iter().map(|g| g.rules.len()).sum();
        let collector = collector::Collector::new(config, groups, args.state_file.clone(), obs.registry());
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot listen on {}: {e}", args.listen);
                obs.shutdown(Duration::from_secs(2));
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            {
                listen = %args.listen,
                config = %args.config.as_ref().map_or_else(|| "none (default: scrape 127.0.0.1:9464 as job app)".into(), |p| p.display().to_string()),
                state.file = %args.state_file.display(),
                targets,
                rules = rule_count,
            },
            "obs-collector started"
        );
        collector.set_external_url(&format!("http://{}/", listener.local_addr().unwrap_or(args.listen)));
        collector.set_max_series(args.max_series);
        collector.set_prometheus_2(args.query_prometheus_2);
        collector.set_query_limits(collector::QueryLimits {
            timeout: Duration::from_millis(args.query_timeout.max(1) as u64),
            max_samples: args.query_max_samples,
            max_concurrency: args
                .query_max_concurrency
                .unwrap_or_else(|| collector::QueryLimits::default().max_concurrency),
        });
        // History on disk is worth a warning, never the alerts: without it the collector runs
        // in memory, as before.
        match collector.open_storage(&args.storage.path, args.storage.retention()) {
            Ok(replay) => {
                for aside in &replay.set_aside {
                    tracing::error!({ file = %aside.display() }, "a write-ahead log segment does not check out: set aside, the rest was replayed");
                }
                let history = collector.history();
                for aside in history.iter().flat_map(|h| &h.set_aside) {
                    tracing::error!({ file = %aside.path.display(), reason = %aside.reason }, "a block does not check out: set aside, the rest is served");
                }
                tracing::info!(
                    {
                        storage.path = %args.storage.path.display(),
                        wal.segments = replay.segments,
                        wal.records = replay.records,
                        wal.torn_tails = replay.torn_tails,
                        wal.orphan_samples = replay.orphan_samples,
                        blocks = history.as_ref().map_or(0, |h| h.blocks),
                    },
                    "storage opened"
                );
            }
            Err(e) => tracing::error!(
                { storage.path = %args.storage.path.display() },
                "cannot keep samples on disk ({e}): running in memory, a restart starts empty"
            ),
        }
        {
            let _work = work_handle.enter();
            collector.spawn();
        }
        let access = web::Access::from_env(&|k| std::env::var(k).ok());
        if access.is_open() && !args.listen.ip().is_loopback() {
            tracing::warn!(
                { listen = %args.listen },
                "listening beyond loopback without OBS_COLLECTOR_TOKEN or OBS_COLLECTOR_BASIC_AUTH: anyone who reaches this address can read alerts, rules and targets"
            );
        }
        let app = web::router(Arc::clone(&collector), Arc::clone(&obs), access);
        let server = axum::serve(listener, app).with_graceful_shutdown(obs.shutdown_signal());
        if let Err(e) = server.await {
            tracing::error!("server error: {e}");
        }
        tracing::info!("obs-collector stopped");
        obs.shutdown(Duration::from_secs(2));
        ExitCode::SUCCESS
    })
}
