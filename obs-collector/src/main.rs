//! obs-collector: scrapes services' metrics, evaluates Prometheus alert rules with
//! Prometheus' semantics, and reports alerts.
//!
//! ```text
//! obs-collector [--config FILE] [--listen ADDR] [--state-file PATH]
//! obs-collector check FILE
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
const USAGE: &str = "usage: obs-collector [--config FILE] [--listen ADDR] [--state-file PATH]\n       obs-collector check FILE";

struct Args {
    config: Option<PathBuf>,
    listen: SocketAddr,
    state_file: PathBuf,
}

enum Command {
    Run(Args),
    Check(PathBuf),
}

fn parse_args(args: &[String]) -> Result<Command, String> {
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
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());
        if let Err(e) = server.await {
            tracing::error!("server error: {e}");
        }
        tracing::info!("obs-collector stopped");
        obs.shutdown(Duration::from_secs(2));
        ExitCode::SUCCESS
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
