//! `verdicts:` and `report:`: how deploys are judged and when the weekly report is sent.
//!
//! ```yaml
//! verdicts:
//!   after: 30m              # how long a new version serves before it is judged
//!   min_requests: 100       # per route, on each side
//!   latency_increase: 0.2   # +20% on a latency quantile (and at least 10 ms)
//!   error_increase: 0.01    # +1 percentage point of 5xx
//!   notify_clean: false     # a message for a clean deploy too
//! report:
//!   schedule: "Mon 09:00"   # or "off"
//!   timezone: Europe/Berlin # IANA name; UTC by default
//!   weeks: 4                # the longest comparison: this week against 4 weeks ago
//! ```

use serde::Deserialize;

use super::{Dur, Invalid};
use crate::schedule::Weekly;

/// What makes a change a regression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Requests each side needs, per route.
    pub min_requests: f64,
    /// The smallest relative rise of a latency quantile that counts (0.2: +20%).
    pub latency_increase: f64,
    /// The smallest absolute rise of a latency quantile that counts, seconds: a route of a
    /// millisecond that takes two is not a regression anyone feels, and scheduling noise
    /// makes such rises.
    pub latency_floor: f64,
    /// The smallest rise of the error ratio that counts, absolute (0.01: +1 percentage point).
    pub error_increase: f64,
    /// The largest p-value that is beyond chance (one-sided).
    pub significance: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            min_requests: 100.0,
            latency_increase: 0.2,
            latency_floor: 0.01,
            error_increase: 0.01,
            significance: 0.01,
        }
    }
}

/// How deploys are judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdicts {
    /// How long the new version serves before it is judged (and the window compared).
    pub after_ms: i64,
    pub thresholds: Thresholds,
    /// Send a message for a clean deploy too (off: only regressions are sent).
    pub notify_clean: bool,
}

impl Default for Verdicts {
    fn default() -> Self {
        Self {
            after_ms: 30 * 60_000,
            thresholds: Thresholds::default(),
            notify_clean: false,
        }
    }
}

/// When the weekly report is sent, and what it compares.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `None`: not sent (`schedule: off`); the page and the command still build it.
    pub schedule: Option<Weekly>,
    pub weeks: u32,
}

/// Sent Mondays at 09:00 UTC unless configured.
pub const DEFAULT_SCHEDULE: &str = "Mon 09:00";
pub const DEFAULT_WEEKS: u32 = 4;

impl Default for Report {
    fn default() -> Self {
        Self {
            schedule: Weekly::parse(DEFAULT_SCHEDULE, "UTC").ok(),
            weeks: DEFAULT_WEEKS,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVerdicts {
    after: Option<Dur>,
    min_requests: Option<u64>,
    latency_increase: Option<f64>,
    error_increase: Option<f64>,
    notify_clean: Option<bool>,
}

impl RawVerdicts {
    pub(super) fn resolve(self) -> Result<Verdicts, Invalid> {
        let d = Verdicts::default();
        let after_ms = self.after.map_or(d.after_ms, |a| a.0.as_millis() as i64);
        if after_ms < 10_000 {
            return Err("verdicts.after must be at least 10s".into());
        }
        let positive = |v: Option<f64>, default: f64, name: &str| match v {
            None => Ok(default),
            Some(v) if v.is_finite() && v > 0.0 => Ok(v),
            Some(v) => Err(Invalid(format!("verdicts.{name} must be above 0, not {v}"))),
        };
        Ok(Verdicts {
            after_ms,
            thresholds: Thresholds {
                min_requests: self
                    .min_requests
                    .map_or(d.thresholds.min_requests, |n| n.max(1) as f64),
                latency_increase: positive(
                    self.latency_increase,
                    d.thresholds.latency_increase,
                    "latency_increase",
                )?,
                latency_floor: d.thresholds.latency_floor,
                error_increase: positive(
                    self.error_increase,
                    d.thresholds.error_increase,
                    "error_increase",
                )?,
                significance: d.thresholds.significance,
            },
            notify_clean: self.notify_clean.unwrap_or(d.notify_clean),
        })
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReport {
    schedule: Option<String>,
    timezone: Option<String>,
    weeks: Option<u32>,
}

impl RawReport {
    pub(super) fn resolve(self) -> Result<Report, Invalid> {
        let weeks = self.weeks.unwrap_or(DEFAULT_WEEKS);
        if !(2..=12).contains(&weeks) {
            return Err(format!("report.weeks must be 2 to 12, not {weeks}").into());
        }
        let schedule = self.schedule.as_deref().unwrap_or(DEFAULT_SCHEDULE);
        let schedule = match schedule.trim() {
            "off" | "" => None,
            s => Some(
                Weekly::parse(s, self.timezone.as_deref().unwrap_or("UTC"))
                    .map_err(|e| Invalid(format!("report: {e}")))?,
            ),
        };
        Ok(Report { schedule, weeks })
    }
}
