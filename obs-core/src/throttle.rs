//! Failure reports at most once a minute, with the count of what was lost in between: a backend
//! that is down must not turn the service's own log into a flood.

use std::time::{Duration, Instant};

/// The shortest time between two reports.
const EVERY: Duration = Duration::from_secs(60);

/// Counts losses and says when the next report is due (time passed in, for tests).
#[derive(Debug, Default)]
pub(crate) struct ReportThrottle {
    last_report: Option<Instant>,
    since_report: u64,
}

impl ReportThrottle {
    /// Records `lost` items at `now`; `Some(total lost since the last report)` when a report is
    /// due, which the caller then writes.
    pub fn failed(&mut self, lost: u64, now: Instant) -> Option<u64> {
        self.since_report += lost;
        let due = self
            .last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= EVERY);
        due.then(|| {
            self.last_report = Some(now);
            std::mem::take(&mut self.since_report)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_reported_then_at_most_once_a_minute_with_the_count_in_between() {
        let t0 = Instant::now();
        let mut t = ReportThrottle::default();
        assert_eq!(t.failed(3, t0), Some(3));
        assert_eq!(t.failed(2, t0 + Duration::from_secs(1)), None);
        assert_eq!(t.failed(4, t0 + Duration::from_secs(59)), None);
        assert_eq!(t.failed(1, t0 + EVERY), Some(7));
        assert_eq!(t.failed(1, t0 + EVERY + Duration::from_secs(30)), None);
    }
}
