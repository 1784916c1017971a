//! The demo's jobs, run by the worker (from Redis) or by demo-service itself (without Redis):
//! `send_welcome_email`, which posts to the mail provider (`DEMO_MAIL_URL`, through
//! reqwest-tracing, so the call is in the job's trace) and fails the way mail does: an address
//! with `bounce` in it is refused (`Err`), one with `panic` in it crashes the handler.

use std::time::Duration;

use crate::queue::Envelope;

/// The one job name the demo enqueues.
pub const WELCOME_EMAIL: &str = "send_welcome_email";

/// Why a job failed.
#[derive(Debug)]
pub enum JobError {
    /// The mail provider refused the address.
    Bounced,
    /// The mail provider could not be reached or answered with an error.
    Provider(String),
    /// A job name this build does not know.
    Unknown(String),
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Bounced => f.write_str("the mail provider refused the address"),
            JobError::Provider(why) => write!(f, "the mail provider failed: {why}"),
            JobError::Unknown(name) => write!(f, "no such job: {name}"),
        }
    }
}

/// Runs `job` under `obs.job(..)`: its span continues the producer's trace from the headers.
pub async fn run(obs: &obs::Obs, system: &'static str, job: Envelope) -> Result<(), JobError> {
    obs.job(job.name.clone())
        .system(system)
        .id(job.id.clone())
        .parent(&job.headers)
        .run(perform(job))
        .await
}

async fn perform(job: Envelope) -> Result<(), JobError> {
    if job.name != WELCOME_EMAIL {
        return Err(JobError::Unknown(job.name));
    }
    let to = job.payload["email"].as_str().unwrap_or_default();
    if to.contains("panic") {
        // The address stays out of the message: a panic message reaches the logs and Sentry.
        panic!("the template renderer crashed");
    }
    if to.contains("bounce") {
        tracing::warn!("the address bounced before");
        return Err(JobError::Bounced);
    }
    if let Ok(mail) = std::env::var("DEMO_MAIL_URL") {
        let response = crate::outgoing::traced_client()
            .post(&mail)
            .body(to.to_owned())
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| JobError::Provider(e.to_string()))?;
        if !response.status().is_success() {
            return Err(JobError::Provider(response.status().to_string()));
        }
    } else {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tracing::info!("welcome email sent");
    Ok(())
}
