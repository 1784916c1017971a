//! Time as the collector reads and shows it. A leaf: every stage may import it, it imports none.
//!
//! Every stage reads the time from a [`Clock`] it is given, never from the system directly, so
//! tests move time forward explicitly ([`ManualClock`]) instead of sleeping: the `for`
//! boundary, the repeat interval, retry backoff and `Retry-After` are tested to the millisecond.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A millisecond timestamp as RFC 3339 UTC (the API's, the page's and the messages' format).
///
/// ```
/// assert_eq!(obs_collector::time::rfc3339(1_000), "1970-01-01T00:00:01.000000Z");
/// ```
pub fn rfc3339(ms: i64) -> String {
    obs::logs::format_rfc3339(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// A time as the Prometheus API takes it: RFC 3339 or Unix seconds (with a fraction), in
/// milliseconds.
///
/// ```
/// use obs_collector::time::parse_api_time;
/// assert_eq!(parse_api_time("1.5"), Some(1500));
/// assert_eq!(parse_api_time("1970-01-01T00:00:02Z"), Some(2000));
/// assert_eq!(parse_api_time("yesterday"), None);
/// ```
pub fn parse_api_time(text: &str) -> Option<i64> {
    parse_rfc3339(text).or_else(|| {
        text.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite())
            .map(|s| (s * 1000.0).round() as i64)
    })
}

/// Parses an RFC 3339 timestamp (`2026-12-02T01:40:00Z`, fractional seconds and `+hh:mm`
/// offsets accepted) into milliseconds since the epoch; `None` if it is not one.
///
/// ```
/// use obs_collector::time::parse_rfc3339;
/// assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500));
/// assert_eq!(parse_rfc3339("1970-01-01T02:00:00+02:00"), Some(0));
/// assert_eq!(parse_rfc3339("yesterday"), None);
/// ```
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    // chrono is already built for promql-parser; its RFC 3339 parser is the reference one.
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A future returned by [`Clock::sleep_until`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where the collector's stages read the time and wait for it.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Resolves once [`Clock::now_ms`] has reached `t_ms`.
    fn sleep_until(&self, t_ms: i64) -> Sleep<'_>;
}

/// The system's wall clock, with tokio's timer for waiting.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64
    }

    fn sleep_until(&self, t_ms: i64) -> Sleep<'_> {
        let wait = (t_ms - self.now_ms()).max(0) as u64;
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock that moves only when told to: tests drive the collector's schedule with it.
///
/// ```
/// use obs_collector::time::{Clock, ManualClock};
/// let clock = ManualClock::new(60_000);
/// clock.advance(std::time::Duration::from_secs(15));
/// assert_eq!(clock.now_ms(), 75_000);
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: tokio::sync::watch::Sender<i64>,
}

impl ManualClock {
    /// A clock standing at `start_ms`.
    pub fn new(start_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            now: tokio::sync::watch::Sender::new(start_ms),
        })
    }

    /// Moves the clock to `t_ms` (never backwards), waking every sleeper that is due.
    pub fn set(&self, t_ms: i64) {
        self.now.send_if_modified(|now| {
            let moved = t_ms > *now;
            *now = (*now).max(t_ms);
            moved
        });
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.set(self.now_ms() + by.as_millis() as i64);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, t_ms: i64) -> Sleep<'_> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            let _ = now.wait_for(|now| *now >= t_ms).await;
        })
    }
}

/// A duration as a person reads it: `45s`, `2m 5s`, `1h 2m`, `3d 4h`.
///
/// ```
/// use obs_collector::time::duration_text;
/// assert_eq!(duration_text(61_000), "1m 1s");
/// assert_eq!(duration_text(3_720_000), "1h 2m");
/// ```
pub fn duration_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A duration as PromQL writes a range, in the largest unit that divides it: `1m`, `90s`,
/// `1500ms` (also how a rule's window is shown).
///
/// ```
/// use obs_collector::time::promql_duration;
/// assert_eq!(promql_duration(60_000), "1m");
/// assert_eq!(promql_duration(90_000), "90s");
/// assert_eq!(promql_duration(1_500), "1500ms");
/// ```
pub fn promql_duration(ms: i64) -> String {
    let ms = ms.max(0);
    let unit = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ]
    .into_iter()
    .find(|(size, _)| ms > 0 && ms % size == 0);
    match unit {
        Some((size, name)) => format!("{}{name}", ms / size),
        None => format!("{ms}ms"),
    }
}

/// `d` in whole milliseconds, the unit of the collector's timestamps (saturating).
///
/// ```
/// assert_eq!(obs_collector::time::millis(std::time::Duration::from_secs(2)), 2_000);
/// ```
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The next slot at or after `now_ms` (strictly after when `now_ms` is one) of a schedule that
/// runs every `interval_ms` at `offset_ms` past the multiples of the interval: Prometheus' way
/// of spreading scrapes and aligning evaluations (`offset_ms` 0) with promtool's.
///
/// ```
/// use obs_collector::time::next_slot;
/// assert_eq!(next_slot(61_000, 15_000, 0), 75_000);
/// assert_eq!(next_slot(60_000, 15_000, 0), 75_000);
/// assert_eq!(next_slot(61_000, 15_000, 2_000), 62_000);
/// ```
pub fn next_slot(now_ms: i64, interval_ms: i64, offset_ms: i64) -> i64 {
    let interval = interval_ms.max(1);
    let next = now_ms - now_ms.rem_euclid(interval) + offset_ms.rem_euclid(interval);
    if next <= now_ms {
        next + interval
    } else {
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleepers_wake_when_the_clock_reaches_them() {
        let clock = ManualClock::new(0);
        let sleeper = {
            let clock = Arc::clone(&clock);
            tokio::spawn(async move { clock.sleep_until(1_000).await })
        };
        clock.set(999);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke a millisecond early");
        clock.set(500);
        assert_eq!(clock.now_ms(), 999, "never backwards");
        clock.advance(Duration::from_millis(1));
        sleeper.await.unwrap();
        clock.sleep_until(10).await; // already past: at once
    }

    #[test]
    fn rfc3339_round_trips_and_rejects_garbage() {
        for ms in [0, 1_500, 1_800_000_000_123, 951_782_400_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms), "{}", rfc3339(ms));
        }
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00-01:30"),
            Some(951_787_800_000)
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-12-01T00:00:00",
            "2026-12-01T00:00:00.Z",
            "2026-12-01T00:00:00+0100",
            "2026-12-01 T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn slots_are_strictly_in_the_future() {
        for now in [0, 1, 14_999, 15_000, 15_001, -1] {
            let next = next_slot(now, 15_000, 0);
            assert!(
                next > now && next - now <= 15_000 && next % 15_000 == 0,
                "{now}"
            );
        }
        assert_eq!(next_slot(20_000, 15_000, 7_000), 22_000);
        assert_eq!(next_slot(22_000, 15_000, 7_000), 37_000);
    }
}
