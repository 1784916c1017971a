//! The deploy log: per job and instance, each change of the version it serves
//! (`target_info{service_version}`) and each restart (a new `process_start_time_seconds` with
//! the same version), with the time the collector saw it. It is what says "1.1.0 on 1 of 2
//! instances since 12:03": the status page's Deploys list and chart markers, `/api/v1/deploys`,
//! and the alerts' context read it.
//!
//! A pure state machine (time passed in), persisted with the alert state, so a collector
//! restart neither forgets the deploys nor reports every instance as newly deployed, and a
//! deploy made while the collector was down is seen at the first scrape after it. Bounded: at
//! most [`MAX_ENTRIES`] entries (the oldest go first: a version flapping every scrape costs
//! entries, not memory), [`MAX_INSTANCES`] instances, and versions of at most
//! [`MAX_VERSION_CHARS`] characters.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::time::{duration_text, rfc3339};

/// Entries kept (newest kept).
pub const MAX_ENTRIES: usize = 1000;
/// Instances tracked; a new one beyond this is not tracked (its deploys are not logged).
pub const MAX_INSTANCES: usize = 10_000;
/// The longest version kept; a longer one is cut (and marked with `…`).
pub const MAX_VERSION_CHARS: usize = 64;

/// A start time that moved by less than this is the same start (float rounding, clock steps).
const SAME_START_S: f64 = 1.0;

/// What changed on an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// It serves another version.
    Deploy,
    /// It restarted, serving the same version.
    Restart,
}

/// One change, as seen by the collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deploy {
    pub job: String,
    pub instance: String,
    /// When the collector saw it (the scrape's time), ms since the epoch.
    pub at_ms: i64,
    pub change: Change,
    /// The version served since then (`None`: the instance names none).
    pub version: Option<String>,
    /// The version served before.
    pub previous: Option<String>,
}

/// What an instance serves, as last seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Serving {
    pub version: Option<String>,
    /// `process_start_time_seconds`, when served.
    pub started_s: Option<f64>,
    /// When it was last seen, ms since the epoch.
    pub seen_ms: i64,
}

/// The log, and what each instance serves now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployLog {
    /// Oldest first.
    entries: VecDeque<Deploy>,
    /// By job, then instance.
    serving: BTreeMap<String, BTreeMap<String, Serving>>,
}

impl DeployLog {
    /// Records what `instance` of `job` serves at `t`: its version (from `target_info`) and
    /// start time. The first sight of an instance is remembered, not logged; a change is
    /// logged and returned.
    pub fn observe(
        &mut self,
        job: &str,
        instance: &str,
        version: Option<&str>,
        started_s: Option<f64>,
        t: i64,
    ) -> Option<&Deploy> {
        // Called at every scrape: an instance seen before costs two lookups, no allocation.
        let version = version.map(bounded);
        let Some(seen) = self.serving.get_mut(job).and_then(|i| i.get_mut(instance)) else {
            self.remember(job, instance, version.map(Cow::into_owned), started_s, t);
            return None;
        };
        let restarted = match (seen.started_s, started_s) {
            (Some(before), Some(now)) => (now - before).abs() >= SAME_START_S,
            _ => false,
        };
        let change = if seen.version.as_deref() != version.as_deref() {
            Change::Deploy
        } else if restarted {
            Change::Restart
        } else {
            seen.seen_ms = t;
            if started_s.is_some() {
                seen.started_s = started_s;
            }
            return None;
        };
        let version = version.map(Cow::into_owned);
        let previous = std::mem::replace(&mut seen.version, version.clone());
        seen.started_s = started_s.or(seen.started_s);
        seen.seen_ms = t;
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back(Deploy {
            job: job.to_owned(),
            instance: instance.to_owned(),
            at_ms: t,
            change,
            version,
            previous,
        });
        self.entries.back()
    }

    /// The first sight of an instance, unless [`MAX_INSTANCES`] are tracked already.
    fn remember(
        &mut self,
        job: &str,
        instance: &str,
        version: Option<String>,
        started_s: Option<f64>,
        t: i64,
    ) {
        let tracked: usize = self.serving.values().map(BTreeMap::len).sum();
        if tracked >= MAX_INSTANCES {
            return;
        }
        let serving = Serving {
            version,
            started_s,
            seen_ms: t,
        };
        self.serving
            .entry(job.to_owned())
            .or_default()
            .insert(instance.to_owned(), serving);
    }

    /// Every logged change, oldest first, taken out of the log.
    pub fn into_entries(self) -> Vec<Deploy> {
        self.entries.into()
    }

    /// Every logged change, oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &Deploy> {
        self.entries.iter()
    }

    /// The changes of `job` between `from_ms` and `to_ms` (inclusive), oldest first.
    pub fn of_job(&self, job: &str, from_ms: i64, to_ms: i64) -> Vec<&Deploy> {
        self.entries
            .iter()
            .filter(|d| d.job == job && (from_ms..=to_ms).contains(&d.at_ms))
            .collect()
    }

    /// What every instance serves, by job and instance.
    pub fn serving_all(&self) -> &BTreeMap<String, BTreeMap<String, Serving>> {
        &self.serving
    }

    /// What each instance of `job` serves, by instance.
    pub fn serving(&self, job: &str) -> Option<&BTreeMap<String, Serving>> {
        self.serving.get(job)
    }
}

/// How far before an alert's onset its deploy is looked for.
pub const CONTEXT_WINDOW_MS: i64 = 3_600_000;
/// Deploys since the onset listed in a context line, at most.
const CONTEXT_SINCE_MAX: usize = 3;

impl DeployLog {
    /// The deploy line of an alert of `job` whose condition became true at `onset_ms`, at
    /// `now_ms`: what the job's instances serve ("1.1.0 on 1 of 2 instances, 1.0.0 on 1"), its
    /// last deploy in the hour before the onset and how long before it, and the deploys since
    /// (a rollback shows there). `None` when no instance of the job names a version and
    /// nothing was deployed: a job that does not say what it serves gets no invented line.
    pub fn context(&self, job: &str, onset_ms: i64, now_ms: i64) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(instances) = self.serving(job) {
            let mut by_version: BTreeMap<&str, usize> = BTreeMap::new();
            for s in instances.values() {
                if let Some(v) = &s.version {
                    *by_version.entry(v).or_default() += 1;
                }
            }
            let mut counted: Vec<(&str, usize)> = by_version.into_iter().collect();
            counted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let total = instances.len();
            let serving: Vec<String> = counted
                .iter()
                .map(|(v, n)| format!("{v} on {n} of {total}"))
                .collect();
            if !serving.is_empty() {
                parts.push(format!("serving {}", serving.join(", ")));
            }
        }
        let deploys = self.of_job(job, onset_ms - CONTEXT_WINDOW_MS, now_ms);
        let shown = |d: &Deploy| d.version.clone().unwrap_or_else(|| "no version".into());
        if let Some(before) = deploys
            .iter()
            .rev()
            .find(|d| d.at_ms <= onset_ms && d.change == Change::Deploy)
        {
            // A release to several instances is one deploy: named by how many, timed by the
            // last of them.
            let mut instances: Vec<&str> = deploys
                .iter()
                .filter(|d| {
                    d.at_ms <= onset_ms && d.change == Change::Deploy && d.version == before.version
                })
                .map(|d| d.instance.as_str())
                .collect();
            instances.sort_unstable();
            instances.dedup();
            let on = match instances.len() {
                1 => before.instance.clone(),
                n => format!("{n} instances, the last"),
            };
            parts.push(format!(
                "deployed {} on {on} at {} UTC, {} before the onset",
                shown(before),
                clock_time(before.at_ms),
                duration_text(onset_ms - before.at_ms)
            ));
        }
        let since: Vec<String> = deploys
            .iter()
            .filter(|d| d.at_ms > onset_ms)
            .take(CONTEXT_SINCE_MAX)
            .map(|d| match d.change {
                Change::Deploy => format!(
                    "{} on {} {} after",
                    shown(d),
                    d.instance,
                    duration_text(d.at_ms - onset_ms)
                ),
                Change::Restart => format!(
                    "restart of {} {} after",
                    d.instance,
                    duration_text(d.at_ms - onset_ms)
                ),
            })
            .collect();
        if !since.is_empty() {
            parts.push(format!("since the onset: {}", since.join(", ")));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

impl DeployLog {
    /// How what `job` serves changed between an incident's onset and its end, for its
    /// resolution: "after the rollback to 1.0.0" when the last deploy in between went back to
    /// a version served before the onset, "after the deploy of 1.1.1" otherwise; `None` when
    /// nothing was deployed (the incident ended by itself).
    pub fn change_during(&self, job: &str, onset_ms: i64, end_ms: i64) -> Option<String> {
        let last = self
            .entries
            .iter()
            .rev()
            .filter(|d| d.job == job && d.change == Change::Deploy)
            .find(|d| (onset_ms..=end_ms).contains(&d.at_ms))?;
        let version = last.version.as_deref();
        let served_before = self.entries.iter().any(|d| {
            d.job == job
                && d.at_ms <= onset_ms
                && (d.previous.as_deref() == version || d.version.as_deref() == version)
        });
        let shown = version.unwrap_or("no version");
        Some(if served_before {
            format!("after the rollback to {shown}")
        } else {
            format!("after the deploy of {shown}")
        })
    }
}

/// `HH:MM:SS` of `ms` (UTC): the deploys of a context line are within the hour before it.
fn clock_time(ms: i64) -> String {
    let at = rfc3339(ms);
    at.get(11..19).unwrap_or(&at).to_owned()
}

/// `version`, cut to [`MAX_VERSION_CHARS`] characters (borrowed when it fits).
fn bounded(version: &str) -> Cow<'_, str> {
    crate::text::cut(version, MAX_VERSION_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_sight_is_remembered_and_changes_are_logged() {
        let mut log = DeployLog::default();
        assert!(log
            .observe("shop", "a:1", Some("1.0.0"), Some(100.0), 1_000)
            .is_none());
        assert!(log
            .observe("shop", "a:1", Some("1.0.0"), Some(100.0), 16_000)
            .is_none());
        let deploy = log
            .observe("shop", "a:1", Some("1.1.0"), Some(200.0), 31_000)
            .cloned()
            .unwrap();
        assert_eq!(
            deploy,
            Deploy {
                job: "shop".into(),
                instance: "a:1".into(),
                at_ms: 31_000,
                change: Change::Deploy,
                version: Some("1.1.0".into()),
                previous: Some("1.0.0".into()),
            }
        );
        // A restart with the same version, and one that only rounds differently.
        let restart = log
            .observe("shop", "a:1", Some("1.1.0"), Some(300.0), 46_000)
            .unwrap();
        assert_eq!(
            (restart.change, restart.previous.as_deref()),
            (Change::Restart, Some("1.1.0"))
        );
        assert!(log
            .observe("shop", "a:1", Some("1.1.0"), Some(300.0004), 61_000)
            .is_none());
        // Without a start time, only a version change counts.
        assert!(log
            .observe("shop", "a:1", Some("1.1.0"), None, 76_000)
            .is_none());
        assert_eq!(log.entries().count(), 2);
        assert_eq!(log.of_job("shop", 40_000, 50_000).len(), 1);
        assert_eq!(
            log.serving("shop").unwrap()["a:1"].version.as_deref(),
            Some("1.1.0")
        );
    }

    #[test]
    fn a_resolution_says_whether_it_came_with_a_rollback_or_a_deploy() {
        let mut log = DeployLog::default();
        log.observe("shop", "a:1", Some("1.0.0"), None, 0);
        log.observe("shop", "a:1", Some("1.1.0"), None, 60_000); // the bad canary
                                                                 // The incident: onset at 100 s.
        assert_eq!(log.change_during("shop", 100_000, 200_000), None);
        log.observe("shop", "a:1", Some("1.0.0"), None, 220_000);
        assert_eq!(
            log.change_during("shop", 100_000, 240_000).as_deref(),
            Some("after the rollback to 1.0.0")
        );
        log.observe("shop", "a:1", Some("1.1.1"), None, 300_000);
        assert_eq!(
            log.change_during("shop", 250_000, 320_000).as_deref(),
            Some("after the deploy of 1.1.1")
        );
        assert_eq!(log.change_during("other", 0, 320_000), None);
    }

    #[test]
    fn flapping_and_hostile_versions_stay_bounded() {
        let mut log = DeployLog::default();
        log.observe("j", "i", Some("a"), None, 0);
        for t in 1..=(MAX_ENTRIES as i64 * 3) {
            let version = if t % 2 == 0 { "a" } else { "b" };
            assert!(log.observe("j", "i", Some(version), None, t).is_some());
        }
        assert_eq!(log.entries().count(), MAX_ENTRIES);
        assert_eq!(
            log.entries().next().unwrap().at_ms,
            2 * MAX_ENTRIES as i64 + 1
        );

        let huge = "v".repeat(10_000);
        let deploy = log.observe("j", "i", Some(&huge), None, 1 << 40).unwrap();
        let shown = deploy.version.as_deref().unwrap();
        assert_eq!(shown.chars().count(), MAX_VERSION_CHARS);
        assert!(shown.ends_with('…'));
        // The same long version again is no change.
        assert!(log
            .observe("j", "i", Some(&huge), None, (1 << 40) + 1)
            .is_none());

        for n in 0..(MAX_INSTANCES + 10) {
            log.observe("many", &n.to_string(), Some("1"), None, 0);
        }
        let tracked: usize = log.serving.values().map(BTreeMap::len).sum();
        assert_eq!(tracked, MAX_INSTANCES);
    }

    #[test]
    fn the_context_line_names_the_canary_and_the_rollback() {
        let mut log = DeployLog::default();
        log.observe("shop", "a:1", Some("1.0.0"), None, 0);
        log.observe("shop", "b:1", Some("1.0.0"), None, 0);
        // The canary: one of two instances gets 1.1.0, 40 s before the errors start.
        log.observe("shop", "a:1", Some("1.1.0"), None, 60_000);
        let onset = 100_000;
        assert_eq!(
            log.context("shop", onset, 120_000).unwrap(),
            "serving 1.0.0 on 1 of 2, 1.1.0 on 1 of 2; deployed 1.1.0 on a:1 at 00:01:00 UTC, 40s before the onset"
        );
        // The rollback, while the alert still fires.
        log.observe("shop", "a:1", Some("1.0.0"), None, 200_000);
        let line = log.context("shop", onset, 210_000).unwrap();
        assert!(line.starts_with("serving 1.0.0 on 2 of 2;"), "{line}");
        assert!(
            line.ends_with("since the onset: 1.0.0 on a:1 1m 40s after"),
            "{line}"
        );
        // A release to both instances is one deploy, timed by the last.
        log.observe("shop", "a:1", Some("1.2.0"), None, 300_000);
        log.observe("shop", "b:1", Some("1.2.0"), None, 305_000);
        let line = log.context("shop", 320_000, 330_000).unwrap();
        assert_eq!(
            line,
            "serving 1.2.0 on 2 of 2; deployed 1.2.0 on 2 instances, the last at 00:05:05 UTC, 15s before the onset"
        );
        // A job that names no version, and one the log never saw: no line.
        log.observe("batch", "c:1", None, Some(5.0), 0);
        assert_eq!(log.context("batch", onset, 120_000), None);
        assert_eq!(log.context("other", onset, 120_000), None);
    }

    #[test]
    fn it_survives_a_round_trip_through_json() {
        let mut log = DeployLog::default();
        log.observe("shop", "a:1", Some("1.0.0"), Some(1.5), 0);
        log.observe("shop", "a:1", None, Some(1.5), 15_000);
        let json = serde_json::to_string(&log).unwrap();
        assert!(json.contains(r#""change":"deploy""#), "{json}");
        let back: DeployLog = serde_json::from_str(&json).unwrap();
        assert_eq!(back, log);
    }
}
