//! How events reach Sentry: the `sentry` crate's transport thread (bounded queue, rate limits,
//! client reports) with a send step of obs' own. The crate's reqwest transport has no request
//! timeout (a hanging Sentry holds its thread, so every later event is dropped at the queue) and
//! reports failures only on stderr with `debug: true`; this one bounds each request and reports
//! failures in the service's log (at most once a minute, the DSN's key hidden).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sentry::client_report::{Reason, Recorder};
use sentry::transports::{RateLimiter, TokioTransportThread, TokioTransportThreadOptions};
use sentry::{Envelope, Transport, TransportFactory, TransportOptions};

use crate::throttle::ReportThrottle;

/// The target of the transport's own log lines (kept out of Sentry: they are about Sentry).
pub(crate) const TARGET: &str = "obs::errors";

/// The longest one request to Sentry may take, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the transport for a client (the `transport` of its options).
pub(crate) struct Factory {
    /// The DSN as shown in reports.
    pub redacted_dsn: String,
}

impl TransportFactory for Factory {
    fn create_transport_with_options(&self, options: TransportOptions) -> Arc<dyn Transport> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(1)
            .danger_accept_invalid_certs(options.accept_invalid_certs);
        let proxies = [
            options.http_proxy.as_deref().map(reqwest::Proxy::http),
            options.https_proxy.as_deref().map(reqwest::Proxy::https),
        ];
        for proxy in proxies.into_iter().flatten() {
            match proxy {
                Ok(proxy) => builder = builder.proxy(proxy),
                Err(why) => tracing::warn!(target: TARGET, "Sentry proxy ignored: {why}"),
            }
        }
        let client = match builder.build() {
            Ok(client) => client,
            Err(why) => {
                tracing::warn!(target: TARGET, "Sentry is off: no HTTP client: {why}");
                return Arc::new(Off);
            }
        };
        let sender = Arc::new(Sender {
            client,
            url: options.dsn.envelope_api_url().to_string(),
            auth: options.dsn.to_auth(Some(&options.user_agent)).to_string(),
            redacted_dsn: self.redacted_dsn.clone(),
            recorder: options.client_report_recorder.clone(),
            failures: Mutex::new(ReportThrottle::default()),
        });
        let mut options_thread = TokioTransportThreadOptions::new(move |envelope, limits| {
            Arc::clone(&sender).send(envelope, limits)
        })
        .with_client_report_recorder(options.client_report_recorder);
        if let Some(capacity) = options.transport_channel_capacity {
            options_thread = options_thread.with_channel_capacity(capacity.get());
        }
        Arc::new(Thread(options_thread.spawn_thread()))
    }
}

/// One envelope's request, with what it needs to report its outcome.
struct Sender {
    client: reqwest::Client,
    url: String,
    auth: String,
    redacted_dsn: String,
    recorder: Recorder,
    failures: Mutex<ReportThrottle>,
}

impl Sender {
    async fn send(self: Arc<Self>, envelope: Envelope, mut limits: RateLimiter) -> RateLimiter {
        let mut body = Vec::new();
        if envelope.to_writer(&mut body).is_err() {
            self.recorder
                .record_lost_data(&envelope, Reason::InternalError);
            return limits;
        }
        let sent = self
            .client
            .post(&self.url)
            .header("X-Sentry-Auth", &self.auth)
            .body(body)
            .send()
            .await;
        let failure = match sent {
            Ok(response) => {
                let status = response.status();
                let header = |name: &str| response.headers().get(name)?.to_str().ok();
                if let Some(limit) = header("x-sentry-rate-limits") {
                    limits.update_from_sentry_header(limit);
                } else if let Some(retry_after) = header("retry-after") {
                    limits.update_from_retry_after(retry_after);
                } else if status.as_u16() == 429 {
                    limits.update_from_429();
                }
                // Sentry counts what it refused with 429 itself; a client must not.
                (!status.is_success() && status.as_u16() != 429).then(|| {
                    self.recorder.record_lost_data(&envelope, Reason::SendError);
                    format!("HTTP {status}")
                })
            }
            Err(why) => {
                self.recorder
                    .record_lost_data(&envelope, Reason::NetworkError);
                Some(why.without_url().to_string())
            }
        };
        if let Some(why) = failure {
            let due = self
                .failures
                .lock()
                .map_or(None, |mut f| f.failed(1, Instant::now()));
            if let Some(lost) = due {
                tracing::warn!(
                    target: TARGET,
                    "sending an event to Sentry failed ({}): {why}; {lost} events lost since the last report",
                    self.redacted_dsn
                );
            }
        }
        limits
    }
}

/// The crate's transport thread, flushed on shutdown like the crate's own transports.
struct Thread(TokioTransportThread);

impl Transport for Thread {
    fn send_envelope(&self, envelope: Envelope) {
        self.0.send(envelope);
    }
    fn flush(&self, timeout: Duration) -> bool {
        self.0.flush(timeout)
    }
}

/// No HTTP client could be built (no TLS roots, say): events are dropped.
struct Off;

impl Transport for Off {
    fn send_envelope(&self, _: Envelope) {}
}
