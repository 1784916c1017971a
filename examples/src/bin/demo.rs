//! The one-command demo: `cargo run --release -p obs-examples --bin demo`.
//!
//! Starts the demo service (instrumented with `obs::init()` and `obs.layer()`) and, in this
//! process, obs-collector scraping it with the default rules at demo speed (10 s windows instead
//! of 1 minute, see `obs_examples::demo_rules`). Then it drives traffic through healthy ->
//! 30% errors -> healthy -> 20% of requests at 3 s -> healthy, so `HighErrorRate` and
//! `HighLatencyP95` go pending, fire and resolve within about two minutes. Alerts are printed
//! on the console, or posted to Slack when `SLACK_WEBHOOK_URL` is set. Ctrl-C stops everything.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use obs_collector::collector::Collector;
use obs_collector::config::Config;
use obs_collector::notify::Outcome;
use obs_collector::time::rfc3339;
use obs_collector::{rules, web};
use obs_testkit::process::DemoService;
use obs_testkit::receivers::{hex, Behavior, OtlpReceiver};
use obs_testkit::traffic;

// The demo service is this very executable started again with `OBS_DEMO_ROLE=service`: it has
// its own process (its own `obs::init()`, ports and log lines) and `cargo run --bin demo` on a
// fresh clone needs no other binary built. `demo-service.rs` stays the standalone program.
#[path = "demo-service.rs"]
mod demo_service;

const COLLECTOR_ADDR: &str = "127.0.0.1:9465";
const ROLE: (&str, &str) = ("OBS_DEMO_ROLE", "service");

fn main() -> ExitCode {
    if std::env::var(ROLE.0).as_deref() == Ok(ROLE.1) {
        return match demo_service::main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo-service: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("obs-demo-{}", std::process::id()));
    // Spans go to a local OTLP stand-in (where Tempo or Jaeger would be), so that the
    // service's latency buckets carry exemplars and the alerts name example traces.
    let traces = OtlpReceiver::start(Behavior::Ok);
    let otlp_endpoint = traces.endpoint();
    let service = DemoService::start(
        &std::env::current_exe()?,
        &[
            ROLE,
            ("OTEL_SERVICE_NAME", "demo"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp_endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "500"),
        ],
    )?;
    let admin = service
        .admin
        .ok_or("the demo service has no admin address")?;

    let config_path = obs_examples::demo_rules::write_config(
        &dir,
        obs_examples::demo_rules::Source::Scrape(vec![admin]),
    )?;
    let env = |k: &str| std::env::var(k).ok();
    let config = Config::load(&config_path, &env)?;
    let slack = config.notify.slack.is_some();
    let groups = rules::load_all(&config.rule_files, config.evaluation_interval, false)?;
    let obs = Arc::new(
        obs::Config::new()
            .service_name("obs-demo")
            .disable_admin()
            .log_filter("off")
            .init()?,
    );
    let collector = Collector::new(config, groups, dir.join("state.json"), obs.registry());
    let listener = match tokio::net::TcpListener::bind(COLLECTOR_ADDR).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await?,
    };
    let status_page = listener.local_addr()?;
    collector.set_external_url(&format!("http://{status_page}/"));
    collector.spawn();
    let app = web::router(
        Arc::clone(&collector),
        Arc::clone(&obs),
        web::Access::default(),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    println!("obs demo\n========");
    println!(
        "  service        http://{}/users/1   (JSON logs below, with request and trace ids)",
        service.addr
    );
    println!("  its metrics    http://{admin}/metrics");
    println!("  collector      http://{status_page}/   (status page: targets, rules, charts, notifications)");
    println!("  dashboard      dashboards/obs-red.json (import into Grafana, see README)");
    println!(
        "  traces         exported to a local OTLP stand-in; each alert names an example trace"
    );
    println!(
        "  alerts         {}",
        if slack {
            "posted to Slack (SLACK_WEBHOOK_URL) and listed on the status page"
        } else {
            "printed below (set SLACK_WEBHOOK_URL to post to Slack)"
        }
    );
    println!("  rules          alerts/obs-red.rules.yml at demo speed: 10 s windows, for: 10 s\n");

    let stop = Arc::new(AtomicBool::new(false));
    // Listening for Ctrl-C before the traffic starts: from the first phase on, Ctrl-C stops
    // the demo cleanly (`ctrl_c()` would only listen once first polled, in the select below).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let driver = {
        let (stop, addr) = (Arc::clone(&stop), service.addr);
        tokio::task::spawn_blocking(move || traffic::drive(addr, &stop))
    };
    let shown = tokio::spawn(show_logs(service));
    let watched = tokio::task::spawn_blocking({
        let stop = Arc::clone(&stop);
        move || watch_alerts(status_page, &stop)
    });
    tokio::select! {
        done = driver => { done?; }
        _ = interrupt.recv() => {
            println!("\nCtrl-C: stopping");
            stop.store(true, Ordering::SeqCst);
        }
    }
    shown.abort();
    stop.store(true, Ordering::SeqCst);
    let _ = watched.await;
    let log = collector.notifications();
    println!("\nnotifications:");
    for e in &log.entries {
        let outcome = match &e.outcome {
            Outcome::Delivered { at_ms } => format!("delivered at {}", rfc3339(*at_ms)),
            Outcome::Failed { reason, .. } => format!("failed: {reason}"),
            Outcome::Queued => "still queued".to_owned(),
        };
        println!(
            "  {:<8} {:<8} {:<20} {outcome}",
            e.channel,
            format!("{:?}", e.message.status).to_lowercase(),
            e.group
        );
        // The trace of a request behind the alert, as the OTLP stand-in received it.
        if let Some(id) = e.message.example_traces.first() {
            let span = traces
                .spans()
                .into_iter()
                .map(|(_, span)| span)
                .find(|s| hex(&s.trace_id) == *id && s.parent_span_id.is_empty());
            let what = span.map_or_else(
                || "not received (yet)".to_owned(),
                |s| {
                    format!(
                        "{}, {} ms",
                        s.name,
                        (s.end_time_unix_nano - s.start_time_unix_nano) / 1_000_000
                    )
                },
            );
            println!("           example trace {id}: {what}");
        }
    }
    obs.shutdown(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(()) // the demo service is killed when `service` is dropped (in `show_logs`)
}

/// Prints one of the service's JSON log lines every 15 s, so the ids can be seen.
async fn show_logs(service: DemoService) {
    let mut seen = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(15)).await;
        let lines = service.lines();
        if let Some(line) = lines
            .iter()
            .skip(seen)
            .rev()
            .find(|l| l.contains("request completed"))
        {
            println!("  service log: {line}");
        }
        seen = lines.len();
    }
}

/// Prints each alert's state changes (pending, firing, gone) as the collector's API shows them.
fn watch_alerts(collector: std::net::SocketAddr, stop: &AtomicBool) {
    let started = std::time::Instant::now();
    let mut last: Vec<(String, String)> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(1));
        let Ok(r) = obs_testkit::client::get(collector, "/api/v1/alerts") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body) else {
            continue;
        };
        let now: Vec<(String, String)> = v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let name = a["labels"]["alertname"].as_str().unwrap_or("?").to_owned();
                (name, a["state"].as_str().unwrap_or("?").to_owned())
            })
            .collect();
        for (name, state) in &now {
            if !last.contains(&(name.clone(), state.clone())) {
                println!(
                    "[{:>3}s] alert {name} is {state}",
                    started.elapsed().as_secs()
                );
            }
        }
        for (name, _) in &last {
            if !now.iter().any(|(n, _)| n == name) {
                println!(
                    "[{:>3}s] alert {name} is no longer active",
                    started.elapsed().as_secs()
                );
            }
        }
        last = now;
    }
}
