//! The demo's worker: a process without HTTP routes that takes jobs off the Redis queue
//! (`REDIS_URL`, default `redis://127.0.0.1:6379`) and runs each with `obs.job(..)`. It gets
//! what a service gets from `obs::init()`: JSON logs, `/metrics`, `/healthz` and `/readyz` on
//! the admin address (`OBS_ADMIN_ADDR`), spans and Sentry. SIGTERM or Ctrl-C: the job in
//! progress finishes, nothing more is taken (what waits stays in Redis), the logs are flushed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use obs_examples::jobs;
use obs_examples::queue::{Queue, SYSTEM};

/// How long one wait for a job lasts, so that a stop is noticed within it.
const POLL: Duration = Duration::from_secs(1);
/// How long to wait before reconnecting after Redis failed.
const BACKOFF: Duration = Duration::from_millis(500);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let obs = Arc::new(obs::init()?);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let queue = Queue::connect(&url).await?;
    // No server polls obs' signal here: the worker says itself that it works.
    obs.set_ready(true);
    tracing::info!(
        { metrics.url = %obs.admin_addr().map_or_else(|| "off".to_owned(), |a| format!("http://{a}/metrics")) },
        "worker waiting for jobs"
    );
    let stopping = Arc::new(AtomicBool::new(false));
    let signal = obs.shutdown_signal();
    let flag = Arc::clone(&stopping);
    tokio::spawn(async move {
        signal.await;
        flag.store(true, Ordering::SeqCst);
    });
    // The stop is checked between pops, never inside one: a pop is not cancelled (Redis may
    // have handed the job over already) and a job runs to its end.
    while !stopping.load(Ordering::SeqCst) {
        match queue.pop(POLL).await {
            Ok(Some(job)) => {
                // In a task of its own: a job that panics ends its task, not the worker. A
                // failed job's error is in its span, its log line, the metric and Sentry.
                let obs = Arc::clone(&obs);
                let _ = tokio::spawn(async move { jobs::run(&obs, SYSTEM, job).await }).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the job queue failed: retrying");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
    tracing::info!(waiting = queue.len().await.unwrap_or(0), "worker stopped");
    obs.shutdown(Duration::from_secs(5));
    Ok(())
}
