//! obs-collector: scrapes services' metrics, evaluates Prometheus alert rules with
//! Prometheus' semantics, and reports alerts.
//!
//! ```text
//! obs-collector [--config FILE] [--listen ADDR] [--state-file PATH]
//! obs-collector check FILE
//! obs-collector backtest [--config FILE] [--from URL] --start T --end T [--rule NAME] [--format text|json]
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

use obs_collector::config::{Config, ConfigError};
use obs_collector::{collector, rules, web};

const DEFAULT_LISTEN: &str = "127.0.0.1:9465";
const DEFAULT_STATE_FILE: &str = "obs-collector.state.json";
const USAGE: &str = "usage: obs-collector [--config FILE] [--listen ADDR] [--state-file PATH]\n       obs-collector check FILE\n       obs-collector backtest [--config FILE] [--from URL] --start T --end T [--rule NAME] [--format text|json]\n         (T: RFC 3339 or Unix seconds; --from defaults to the config's query.url)";

struct Args {
    config: Option<PathBuf>,
    listen: SocketAddr,
    state_file: PathBuf,
}

enum Command {
    Run(Args),
    Check(PathBuf),
    Backtest(BacktestArgs),
}

struct BacktestArgs {
    config: Option<PathBuf>,
    from: Option<String>,
    start_ms: i64,
    end_ms: i64,
    rule: Option<String>,
    json: bool,
}

/// A time as the Prometheus API takes it: RFC 3339 or Unix seconds.
fn parse_time(flag: &str, v: &str) -> Result<i64, String> {
    obs_collector::time::parse_rfc3339(v)
        .or_else(|| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite())
                .map(|s| (s * 1000.0).round() as i64)
        })
        .ok_or_else(|| format!("{flag} {v:?} is neither RFC 3339 nor Unix seconds"))
}

fn parse_backtest(args: &[String]) -> Result<Command, String> {
    let (mut config, mut from, mut start, mut end, mut rule, mut json) =
        (None, None, None, None, None, false);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => config = Some(value()?.into()),
            "--from" => from = Some(value()?.clone()),
            "--start" => start = Some(parse_time(flag, value()?)?),
            "--end" => end = Some(parse_time(flag, value()?)?),
            "--rule" => rule = Some(value()?.clone()),
            "--format" => {
                json = match value()?.as_str() {
                    "json" => true,
                    "text" => false,
                    other => return Err(format!("--format {other:?}: text or json")),
                }
            }
            other => return Err(format!("backtest: unknown argument {other:?}")),
        }
    }
    Ok(Command::Backtest(BacktestArgs {
        config,
        from,
        start_ms: start.ok_or("backtest needs --start")?,
        end_ms: end.ok_or("backtest needs --end")?,
        rule,
        json,
    }))
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    if args.first().map(String::as_str) == Some("backtest") {
        return parse_backtest(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("check") {
        return match args {
            [_, file] => Ok(Command::Check(file.into())),
            _ => Err("check takes exactly one FILE".into()),
        };
    }
    let mut out = Args {
        config: None,
        listen: DEFAULT_LISTEN.parse().expect("valid"),
        state_file: DEFAULT_STATE_FILE.into(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => out.config = Some(value()?.into()),
            "--listen" => {
                let v = value()?;
                out.listen = v
                    .parse()
                    .map_err(|_| format!("--listen {v:?} is not host:port"))?;
            }
            "--state-file" => out.state_file = value()?.into(),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Command::Run(out))
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("obs-collector: {e}\n{USAGE}");
            ExitCode::from(2)
        }
        Ok(Command::Check(file)) => match load(Some(&file)) {
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
        Ok(Command::Run(args)) => run(args),
        Ok(Command::Backtest(args)) => backtest(args),
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
    let query = match (&args.from, &config.remote) {
        (Some(url), _) if url.starts_with("http://") || url.starts_with("https://") => {
            obs_collector::config::RemoteQuery {
                url: url.clone(),
                timeout: Duration::from_secs(60),
                offset: Duration::ZERO,
                auth: None,
            }
        }
        (Some(url), _) => {
            eprintln!("obs-collector: --from {url:?} must start with http:// or https://");
            return ExitCode::from(2);
        }
        (None, Some(remote)) => remote.clone(),
        (None, None) => {
            eprintln!("obs-collector: backtest needs --from URL (or query.url in the config)");
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
        args.start_ms,
        args.end_ms,
        args.rule.as_deref(),
    ));
    match report {
        Ok(report) if args.json => {
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
        collector.spawn();
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
