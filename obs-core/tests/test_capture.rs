//! `obs::test` captures every line of its test, from any task of the test's runtime, and none of
//! another test's, even with a global obs installed by another test of the same binary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

fn parsed(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Spawns `n` tasks that each log one line (after a yield, so that they move between workers).
async fn log_from_tasks(test: &'static str, n: u64) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                tracing::info!(test, i, "from a task");
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

fn assert_exactly_own_lines(lines: &[String], test: &str, n: u64) {
    let lines = parsed(lines);
    assert_eq!(lines.len() as u64, n, "{lines:#?}");
    for i in 0..n {
        assert_eq!(
            lines
                .iter()
                .filter(|l| l["test"] == test && l["i"] == i)
                .count(),
            1,
            "line {i} of {test}: {lines:#?}"
        );
    }
}

/// A test `Obs` on this runtime captures the `n` lines `test`'s spawned tasks log, and only those.
async fn captures_own_tasks(test: &'static str, n: u64) {
    let obs = obs::test::init();
    log_from_tasks(test, n).await;
    assert_exactly_own_lines(&obs.logs(), test, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_tasks_of_a_multi_thread_runtime_are_captured() {
    captures_own_tasks("multi2", 64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_worker_of_a_larger_runtime_is_captured() {
    captures_own_tasks("multi4", 64).await;
}

#[tokio::test]
async fn spawned_tasks_of_a_current_thread_runtime_are_captured() {
    captures_own_tasks("current", 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_are_captured_with_their_target_and_the_span_fields() {
    let obs = obs::test::init();
    tokio::spawn(async {
        let span = tracing::info_span!("job", job.id = 7);
        let _entered = span.enter();
        log::warn!(target: "legacy::billing", "invoice {} is late", 42);
    })
    .await
    .unwrap();
    let lines = parsed(&obs.logs());
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert_eq!(line["message"], "invoice 42 is late");
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["target"], "legacy::billing");
    assert_eq!(line["job.id"], 7);
    assert!(
        line.get("log.target").is_none() && line.get("log.file").is_none(),
        "{line}"
    );
}

fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The one test of this binary that installs obs globally; it logs from threads of its own
/// while the others run, and none of its lines may reach their captures.
#[test]
fn a_global_obs_in_the_same_binary_takes_no_line_of_the_tests() {
    let obs = obs::Config::new().disable_admin().init().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let noisy = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let noise = {
        let (stop, noisy) = (Arc::clone(&stop), Arc::clone(&noisy));
        std::thread::spawn(move || {
            let rt = two_workers();
            rt.block_on(async {
                let mut every_ms = tokio::time::interval(Duration::from_millis(1));
                while !stop.load(Ordering::Relaxed) {
                    every_ms.tick().await;
                    tokio::spawn(async { tracing::info!(test = "global", "global noise") });
                    noisy.fetch_add(1, Ordering::Relaxed);
                }
            });
        })
    };
    let noise_logged = || noisy.load(Ordering::Relaxed);
    // The noise is under way before the capture and still after it.
    obs_testkit::eventually(
        Duration::from_secs(5),
        || "no noise".into(),
        || (noise_logged() > 0).then_some(()),
    );
    // Captures made while the global is set see only their own lines too.
    let rt = two_workers();
    rt.block_on(async {
        let capture = obs::test::init();
        log_from_tasks("beside-global", 32).await;
        assert_exactly_own_lines(&capture.logs(), "beside-global", 32);
    });
    let during = noise_logged();
    obs_testkit::eventually(
        Duration::from_secs(5),
        || "the noise stopped".into(),
        || (noise_logged() > during).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    noise.join().unwrap();
    obs.shutdown(Duration::from_secs(2));
}
