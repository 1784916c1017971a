//! The one-command demo: `cargo run --release -p obs-examples --bin demo`.
//!
//! Starts two instances of the demo service (instrumented with `obs::init()` and
//! `obs.layer()`, job `demo`) and, in this process, obs-collector scraping them with the
//! default rules at demo speed (10 s windows instead of 1 minute, see
//! `obs_examples::demo_rules`). Under steady traffic it then deploys as a team does: a canary
//! of 1.1.0 whose `GET /users/{id}` fails (`HighErrorRate` names the route, the version and the
//! deploy), its rollback (the resolution says so), a release 1.2.0 whose `GET /search` is slow
//! (`HighLatencyP95` names it), the fix, 1.2.1, and a release 1.3.0 whose `GET /users/{id}` is
//! 40% slower, far below any alert: no alert fires, and the deploy's verdict names the route,
//! the versions and the change (verdicts at demo speed: 15 s after a deploy instead of 30
//! minutes); about two and a half minutes. A summary says which deploy broke what. Alerts are printed on the console, or posted to Slack when
//! `SLACK_WEBHOOK_URL` is set. Ctrl-C stops everything.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use obs_collector::collector::Collector;
use obs_collector::config::Config;
use obs_collector::notify::{Outcome, Status};
use obs_collector::time::{duration_text, rfc3339};
use obs_collector::{rules, web};
use obs_examples::rollout::{steady_traffic, Build, Instance};
use obs_testkit::receivers::{hex, Behavior, OtlpReceiver};

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
    let env = [
        ROLE,
        ("OTEL_SERVICE_NAME", "demo"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "500"),
        // GET /users/{id} takes 20 to 60 ms, as a database would make it.
        ("DEMO_USERS_MS", "40"),
    ];
    let exe = std::env::current_exe()?;
    let mut shop = [Instance::new(&exe, &env)?, Instance::new(&exe, &env)?];
    for instance in &mut shop {
        instance.deploy(STABLE)?;
    }

    let config_path = obs_examples::demo_rules::write_config(
        &dir,
        obs_examples::demo_rules::Source::Scrape(shop.iter().map(|i| i.admin).collect()),
    )?;
    // Deploys judged at demo speed: 15 s after the last instance moved, not 30 minutes.
    let mut text = std::fs::read_to_string(&config_path)?;
    text.push_str("verdicts:\n  after: 15s\n");
    std::fs::write(&config_path, text)?;
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
        "  service        job demo: two instances, http://{}/users/1 and http://{}/users/1",
        shop[0].app, shop[1].app
    );
    println!(
        "  their metrics  http://{}/metrics, http://{}/metrics",
        shop[0].admin, shop[1].admin
    );
    println!("  collector      http://{status_page}/   (status page: targets, rules, charts, deploys, notifications)");
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
    let traffic = steady_traffic(&[shop[0].app, shop[1].app], &stop);
    let watched = tokio::task::spawn_blocking({
        let stop = Arc::clone(&stop);
        move || watch_alerts(status_page, &stop)
    });
    let mut told = tokio::task::spawn_blocking({
        let (stop, collector) = (Arc::clone(&stop), Arc::clone(&collector));
        move || {
            let told = tell(&mut shop, &collector, &stop);
            drop(shop); // the instances stop here, also on Ctrl-C
            told
        }
    });
    tokio::select! {
        done = &mut told => { done??; }
        _ = interrupt.recv() => {
            println!("\nCtrl-C: stopping");
            stop.store(true, Ordering::SeqCst);
            // The story stops at its next step and its instances with it.
            let _ = told.await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = watched.await;
    for t in traffic {
        let _ = t.join();
    }
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
    summary(&log);
    obs.shutdown(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The first build: what both instances serve at the start.
const STABLE: Build = Build {
    version: "1.0.0",
    fault: "",
};

/// The story, told as a team lives it: a canary that breaks a route, its rollback, a release
/// that makes another route slow, the fix. Each step waits for the collector's message
/// (at most [`STEP_TIMEOUT`]); returns early on `stop`.
fn tell(
    shop: &mut [Instance; 2],
    collector: &Collector,
    stop: &AtomicBool,
) -> Result<(), std::io::Error> {
    let started = std::time::Instant::now();
    let say = |what: &str| println!("[{:>3}s] {what}", started.elapsed().as_secs());
    say("1.0.0 on both instances, healthy traffic");
    if !pause(Duration::from_secs(15), stop) {
        return Ok(());
    }
    if let Some(line) = shop[0].service.as_ref().and_then(|s| {
        s.lines()
            .into_iter()
            .rev()
            .find(|l| l.contains("request completed"))
    }) {
        println!("  service log: {line}");
    }
    let canary = shop[1].admin.to_string();
    // Each step: what is said, which instances get which build, the message it leads to.
    let steps: [(String, &[usize], Build, &str, Status); 4] = [
        (
            format!(
                "deploy 1.1.0 as a canary on {canary} (its GET /users/{{id}} fails 4 times in 5)"
            ),
            &[1],
            Build {
                version: "1.1.0",
                fault: "errors",
            },
            "HighErrorRate",
            Status::Firing,
        ),
        (
            format!("the alert names the route and the version: roll {canary} back to 1.0.0"),
            &[1],
            STABLE,
            "HighErrorRate",
            Status::Resolved,
        ),
        (
            "release 1.2.0 on both instances (its GET /search takes 3 s)".to_owned(),
            &[0, 1],
            Build {
                version: "1.2.0",
                fault: "slow",
            },
            "HighLatencyP95",
            Status::Firing,
        ),
        (
            "the alert names GET /search: release the fix, 1.2.1, on both instances".to_owned(),
            &[0, 1],
            Build {
                version: "1.2.1",
                fault: "",
            },
            "HighLatencyP95",
            Status::Resolved,
        ),
    ];
    for (what, instances, build, alertname, status) in steps {
        say(&what);
        for &i in instances {
            shop[i].deploy(build)?;
        }
        if !wait_message(collector, alertname, status, stop) {
            return Ok(());
        }
    }
    say("release 1.3.0 on both instances (its GET /users/{id} takes 40% longer: far below the 2 s alert)");
    for instance in shop.iter_mut() {
        instance.deploy(SLOWER)?;
    }
    if !wait_notice(collector, "DeployVerdict", SLOWER.version, stop) {
        return Ok(());
    }
    say("no alert fired; the deploy's verdict named the route, the versions and the change");
    say("done");
    Ok(())
}

/// The last release: `GET /users/{id}` 40% slower.
const SLOWER: Build = Build {
    version: "1.3.0",
    fault: "slower",
};

/// Waits until a notice of `kind` whose title names `version` is delivered; false on `stop`
/// or after [`STEP_TIMEOUT`].
fn wait_notice(collector: &Collector, kind: &str, version: &str, stop: &AtomicBool) -> bool {
    let until = std::time::Instant::now() + STEP_TIMEOUT;
    while std::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
        let delivered = collector.notifications().entries.iter().any(|e| {
            e.message.status == Status::Notice
                && e.message.alertname == kind
                && e.message
                    .summary
                    .as_deref()
                    .is_some_and(|t| t.ends_with(&format!(" {version}")))
                && matches!(e.outcome, Outcome::Delivered { .. })
        });
        if delivered {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// How long one step waits for its message.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Sleeps `d` unless `stop`; whether it slept the whole time.
fn pause(d: Duration, stop: &AtomicBool) -> bool {
    let until = std::time::Instant::now() + d;
    while std::time::Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Waits until a `status` message of `alertname` is delivered (or sent to the console);
/// false on `stop` or after [`STEP_TIMEOUT`].
fn wait_message(collector: &Collector, alertname: &str, status: Status, stop: &AtomicBool) -> bool {
    let until = std::time::Instant::now() + STEP_TIMEOUT;
    while std::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
        let delivered = collector.notifications().entries.iter().any(|e| {
            e.message.alertname == alertname
                && e.message.status == status
                && matches!(e.outcome, Outcome::Delivered { .. })
        });
        if delivered {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// What broke, which deploy did it, and how it was found and fixed, from the messages sent.
fn summary(log: &obs_collector::notify::Log) {
    println!("\nsummary:");
    let mut said = std::collections::HashSet::new();
    for e in &log.entries {
        let m = &e.message;
        // One channel's message is enough; each verdict is its own notice.
        let title = m.summary.clone().filter(|_| m.status == Status::Notice);
        if !said.insert((m.alertname.clone(), m.status, title)) {
            continue;
        }
        let incident = m.incident.clone().unwrap_or_default();
        match m.status {
            Status::Firing => {
                println!("  {} fired at {}", m.alertname, m.since_text);
                for route in &incident.routes {
                    println!("    route    {route}");
                }
                if let Some(v) = &incident.by_version {
                    println!("    versions {v}");
                }
                if let Some(d) = &m.deploy {
                    println!("    deploy   {d}");
                }
            }
            Status::Resolved => {
                let fired = m.fired_for_ms.map(duration_text).unwrap_or_default();
                let change = incident.change.unwrap_or_else(|| "by itself".into());
                let now = incident.value.unwrap_or_default();
                println!("    resolved {change}, after {fired} (now {now})");
            }
            Status::Notice => {
                println!("  {}", m.summary.as_deref().unwrap_or(&m.alertname));
                for line in m.lines.iter().take(2) {
                    println!("    {line}");
                }
            }
        }
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
