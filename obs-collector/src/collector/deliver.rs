//! The retry stage, Alertmanager's `RetryStage`: one task per channel sends the oldest queued
//! entry when it is due (its retry time and the channel's minimum spacing passed), records the
//! outcome in the notification log (which sets the next attempt, with jitter) and persists it.
//! The log's state machine decides; this stage only times, sends and reports.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::{lock, Collector};
use crate::notify::{Channel, Entry, Notifier, SendError};

/// A channel with the time of its last send (for its minimum spacing).
pub(super) struct Delivery {
    pub channel: Channel,
    last_send_ms: AtomicI64,
}

impl Delivery {
    pub fn new(channel: Channel) -> Self {
        Self {
            channel,
            last_send_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// When an entry whose retry time is `next_attempt_ms` may be sent: not before it, nor
    /// before the channel's minimum spacing after its last send.
    pub fn due(&self, next_attempt_ms: i64) -> i64 {
        let spacing = self.channel.min_spacing().as_millis() as i64;
        let last = self.last_send_ms.load(Ordering::Relaxed);
        next_attempt_ms.max(last.saturating_add(spacing))
    }

    /// Records a send at `at`.
    pub fn sent(&self, at: i64) {
        self.last_send_ms.store(at, Ordering::Relaxed);
    }
}

/// What [`Collector::deliver_next`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// An entry was sent (or given up without sending): call again.
    Progress,
    /// The channel's next entry is due at this time.
    WaitUntil(i64),
    /// Nothing is queued on the channel.
    Idle,
}

impl Collector {
    /// The delivery task of channel `index`: sends as [`Collector::deliver_next`] says, sleeps
    /// on the clock until the next entry is due or a new one is queued.
    pub(super) async fn deliver_loop(self: Arc<Self>, index: usize) {
        loop {
            let queued = self.wake.notified();
            tokio::pin!(queued);
            // Registered before the log is read, so an entry queued meanwhile still wakes us.
            queued.as_mut().enable();
            match self.deliver_next(index).await {
                Step::Progress => {}
                Step::WaitUntil(t) => {
                    tokio::select! {
                        () = self.clock.sleep_until(t) => {}
                        () = queued => {}
                    }
                }
                Step::Idle => queued.await,
            }
        }
    }

    /// Sends channel `index`'s oldest queued entry if it is due at the clock's time (its retry
    /// time and the channel's minimum spacing passed), records the outcome in the log (the retry
    /// stage) and persists it.
    pub async fn deliver_next(&self, index: usize) -> Step {
        let delivery = &self.deliveries[index];
        let channel = &delivery.channel;
        let name = channel.name();
        let now = self.clock.now_ms();
        let Some(entry) = lock(&self.log).next_for(name).cloned() else {
            return Step::Idle;
        };
        let due = delivery.due(entry.next_attempt_ms);
        if due > now {
            return Step::WaitUntil(due);
        }
        if !lock(&self.log).ready(entry.id, now) {
            self.persist(now).await;
            return Step::Progress;
        }
        let result = channel.send(&entry).await;
        let sent_at = self.clock.now_ms();
        delivery.sent(sent_at);
        let outcome = report(name, &entry, &result);
        self.metrics
            .notifications
            .with_label_values(&[name, outcome])
            .inc();
        lock(&self.log).record(entry.id, result, sent_at, jitter(sent_at));
        self.persist(sent_at).await;
        Step::Progress
    }
}

/// Logs what a send came to and names its outcome for `obs_collector_notifications_total`:
/// delivered; retried (a transient failure, or blocks refused, sent again as plain text); failed.
fn report(name: &str, entry: &Entry, result: &Result<(), SendError>) -> &'static str {
    let message = &entry.message;
    let status = format!("{:?}", message.status).to_lowercase();
    match result {
        Ok(()) => {
            tracing::info!({ channel = name, alertname = %message.alertname, job = %message.job, status = %status }, "notification sent");
            "delivered"
        }
        Err(SendError::Retry { reason, .. }) => {
            tracing::warn!({ channel = name, alertname = %message.alertname, job = %message.job, error = %reason }, "notification failed; will retry");
            "retried"
        }
        Err(SendError::RejectedBlocks(reason)) if !entry.plain_text => {
            tracing::warn!({ channel = name, alertname = %message.alertname, error = %reason }, "blocks rejected; retrying as plain text");
            "retried"
        }
        Err(SendError::Permanent(reason) | SendError::RejectedBlocks(reason)) => {
            tracing::error!({ channel = name, alertname = %message.alertname, job = %message.job, error = %reason }, "notification failed permanently");
            "failed"
        }
    }
}

/// A number in [0, 1) for retry jitter (random per call; `now` only adds to the seed).
pub(super) fn jitter(now: i64) -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::console::Console;

    #[test]
    fn an_entry_waits_for_its_retry_time_and_the_channel_spacing() {
        let console = Delivery::new(Channel::Console(Console));
        assert_eq!(console.due(5_000), 5_000, "never sent: its own time");
        console.sent(4_000);
        // The console has no spacing: not before its last send, else the entry's own time.
        assert_eq!(console.due(3_000), 4_000);
        assert_eq!(console.due(6_000), 6_000);
    }

    #[test]
    fn jitter_is_a_fraction() {
        for now in [0, 1, i64::MAX, -5] {
            let j = jitter(now);
            assert!((0.0..1.0).contains(&j), "{j}");
        }
        let spread: std::collections::HashSet<u64> = (0..20).map(|_| jitter(7).to_bits()).collect();
        assert!(
            spread.len() > 1,
            "random per call, not a function of the time"
        );
    }
}
