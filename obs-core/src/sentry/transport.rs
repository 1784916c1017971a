//! Sends envelopes to Sentry from the export thread, honouring its rate limits.

use std::time::{Duration, Instant};

use super::Dsn;
use crate::export::{Inbox, Queue, Worker};

/// Envelopes waiting to be sent; beyond this they are dropped and counted.
const QUEUE: usize = 100;
/// Per request. Sentry answers in milliseconds; a hang must not hold the queue long.
const TIMEOUT: Duration = Duration::from_secs(5);
/// When Sentry rate-limits without saying for how long.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(60);

/// The Sentry sender: its queue and worker thread.
pub(crate) struct Transport {
    pub queue: Queue<Vec<Vec<u8>>>,
    pub worker: Worker,
}

impl Transport {
    pub fn start(dsn: Dsn) -> Self {
        // Errors are rare: wake the worker for each one.
        let (queue, worker) = Worker::spawn("obs-sentry", QUEUE, 1, move |inbox| run(inbox, dsn));
        Self { queue, worker }
    }
}

async fn run(inbox: Inbox<Vec<Vec<u8>>>, dsn: Dsn) {
    crate::trace::span::untraced_thread();
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(TIMEOUT)
        .pool_max_idle_per_host(1)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(target: "obs::sentry", "Sentry transport not started: {}", e.without_url());
            return;
        }
    };
    let (url, auth) = (dsn.envelope_url(), dsn.auth_header());
    let mut limited_until: Option<Instant> = None;
    let mut last_report: Option<Instant> = None;
    loop {
        let stopping = inbox.wait(Duration::from_secs(3600)).await;
        for envelope in inbox.take() {
            send(
                &client,
                &url,
                &auth,
                envelope,
                &inbox,
                &mut limited_until,
                &mut last_report,
            )
            .await;
        }
        if stopping {
            return;
        }
    }
}

/// Sends one envelope; a failure drops it (counted) and is reported at most once a minute.
async fn send(
    client: &reqwest::Client,
    url: &str,
    auth: &str,
    envelope: Vec<u8>,
    inbox: &Inbox<Vec<Vec<u8>>>,
    limited_until: &mut Option<Instant>,
    last_report: &mut Option<Instant>,
) {
    if limited_until.is_some_and(|t| Instant::now() < t) {
        inbox.dropped(1);
        return;
    }
    let outcome = client
        .post(url)
        .header("x-sentry-auth", auth)
        .header(http::header::CONTENT_TYPE, "application/x-sentry-envelope")
        .body(envelope)
        .send()
        .await;
    let failure = match outcome {
        Ok(r) if r.status().is_success() => None,
        Ok(r) if r.status() == http::StatusCode::TOO_MANY_REQUESTS => {
            let wait = retry_after(r.headers()).unwrap_or(DEFAULT_BACKOFF);
            *limited_until = Some(Instant::now() + wait);
            Some(format!("rate limited for {wait:?}"))
        }
        Ok(r) => Some(format!("HTTP {}", r.status())),
        Err(e) if e.is_timeout() => Some(format!("no answer within {TIMEOUT:?}")),
        Err(e) => Some(e.without_url().to_string()),
    };
    if let Some(why) = failure {
        inbox.dropped(1);
        if last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *last_report = Some(Instant::now());
            tracing::warn!(target: "obs::sentry", "sending an event to Sentry failed: {why}; event dropped");
        }
    }
}

/// `X-Sentry-Rate-Limits: 60:error:key, ...` (first entry) or `Retry-After: <seconds>`.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let secs = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
    };
    headers
        .get("x-sentry-rate-limits")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| secs(v.split(':').next()?))
        .or_else(|| {
            headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(secs)
        })
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            "x-sentry-rate-limits",
            "30:error;transaction:organization, 60::key"
                .parse()
                .unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(30)));
        h.insert("x-sentry-rate-limits", "1e9:x".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3600)));
    }
}
