//! A verdict on every deploy. The deploy log says when a job's instances started serving a
//! version; once the last of them has served it for [`Settings::after_ms`], its routes are
//! compared with a baseline through a [`Source`]:
//!
//! - a **canary** (instances still serving the previous version) against those instances over
//!   the same window: 4 queries;
//! - a **full rollout** against the job before the deploy over an equal window, and against the
//!   same hours a week earlier where history has them (a regression must show against both, so
//!   a Monday-morning peak is not taken for one): 6 queries.
//!
//! [`Verdicts`] is the record, persisted with the alert state: a deploy is judged once (its key
//! is recorded with the verdict and the verdict's message queued under one lock, then saved),
//! so a restart neither loses nor repeats one. Bounded: [`MAX_VERDICTS`] kept, a release's
//! routes listed at most [`MAX_LISTED`].

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::judge::{judge, Outcome, RouteJudgement, Thresholds};
use super::source::{read_windows, Scope, Source};
use super::{format, stats::Window};
use crate::deploys::{Change, DeployLog};
use crate::promql::QueryError;

/// Verdicts kept (the newest).
pub const MAX_VERDICTS: usize = 200;
/// Keys of judged releases kept: more than the deploy log can hold, so no release it still
/// lists is judged twice.
const MAX_KEYS: usize = 2 * crate::deploys::MAX_ENTRIES;
/// Regressed routes listed in a verdict.
pub const MAX_LISTED: usize = 20;
/// A release due longer ago than this is not judged any more (a collector that was down for
/// days does not flood the channel with old news).
pub const STALE_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * 86_400_000;
/// An instance last scraped longer ago than this does not serve the old version any more.
const SEEN_MS: i64 = 300_000;

pub use crate::config::changes::Verdicts as Settings;

/// A version reaching some instances of a job: the deploy log's entries that moved instances
/// of `job` to `version` within one window of the first.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub job: String,
    pub version: String,
    pub baseline_version: Option<String>,
    pub first_ms: i64,
    pub last_ms: i64,
    pub instances: Vec<String>,
}

impl Release {
    /// Recorded once judged.
    pub fn key(&self) -> String {
        format!("{}\u{1f}{}\u{1f}{}", self.job, self.version, self.first_ms)
    }

    /// When it is judged: a window after its last instance moved.
    pub fn due_ms(&self, after_ms: i64) -> i64 {
        self.last_ms + after_ms
    }
}

/// The releases in the deploy log, oldest first.
pub fn releases(log: &DeployLog, after_ms: i64) -> Vec<Release> {
    let mut out: Vec<Release> = Vec::new();
    for d in log.entries().filter(|d| d.change == Change::Deploy) {
        let Some(version) = &d.version else { continue };
        let open = out
            .iter_mut()
            .rev()
            .find(|r| r.job == d.job && &r.version == version && d.at_ms - r.first_ms <= after_ms);
        match open {
            Some(r) => {
                r.last_ms = d.at_ms;
                if !r.instances.contains(&d.instance) {
                    r.instances.push(d.instance.clone());
                }
            }
            None => out.push(Release {
                job: d.job.clone(),
                version: version.clone(),
                baseline_version: d.previous.clone(),
                first_ms: d.at_ms,
                last_ms: d.at_ms,
                instances: vec![d.instance.clone()],
            }),
        }
    }
    out
}

/// How a release was compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Against the instances still serving the previous version, same window.
    Canary,
    /// Against the job before the deploy (and a week earlier).
    Rollout,
    /// Not compared: its instances changed version again within the window.
    Superseded,
}

/// What a release came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    Regression,
    Clean,
    NotEnoughData,
    NoBaseline,
    Superseded,
}

impl Conclusion {
    pub fn text(self) -> &'static str {
        match self {
            Conclusion::Regression => "regression",
            Conclusion::Clean => "clean",
            Conclusion::NotEnoughData => "not enough data",
            Conclusion::NoBaseline => "no baseline",
            Conclusion::Superseded => "superseded",
        }
    }
}

/// A release's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub key: String,
    pub job: String,
    pub version: String,
    pub baseline_version: Option<String>,
    pub deployed_ms: i64,
    /// The end of the window compared.
    pub judged_ms: i64,
    pub window_ms: i64,
    pub comparison: Comparison,
    pub conclusion: Conclusion,
    pub instances: Vec<String>,
    pub baseline_instances: Vec<String>,
    /// The regressed routes, the largest change first, at most [`MAX_LISTED`].
    pub regressed: Vec<RouteJudgement>,
    pub unchanged: usize,
    pub not_enough_data: usize,
    pub no_baseline: usize,
    /// The one line said about it.
    pub summary: String,
    /// Queries it took (4 for a canary, 6 for a rollout, none when superseded).
    #[serde(default)]
    pub queries: usize,
}

impl Verdict {
    /// Whether its message is sent: regressions always, clean deploys when asked.
    pub fn is_news(&self, settings: &Settings) -> bool {
        match self.conclusion {
            Conclusion::Regression => true,
            Conclusion::Clean => settings.notify_clean,
            _ => false,
        }
    }
}

/// The verdicts given, persisted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdicts {
    /// Oldest first.
    given: VecDeque<Verdict>,
    /// The keys of every release judged (more than `given` keeps).
    judged: VecDeque<String>,
}

impl Verdicts {
    pub fn is_judged(&self, key: &str) -> bool {
        self.judged.iter().any(|k| k == key)
    }

    /// Records `verdict` (once: a key judged already is ignored); whether it was new.
    pub fn record(&mut self, verdict: Verdict) -> bool {
        if self.is_judged(&verdict.key) {
            return false;
        }
        if self.judged.len() >= MAX_KEYS {
            self.judged.pop_front();
        }
        self.judged.push_back(verdict.key.clone());
        if self.given.len() >= MAX_VERDICTS {
            self.given.pop_front();
        }
        self.given.push_back(verdict);
        true
    }

    /// The verdicts, oldest first.
    pub fn all(&self) -> impl DoubleEndedIterator<Item = &Verdict> {
        self.given.iter()
    }

    /// The releases of `log` due at `now_ms` and not judged yet (nor stale).
    pub fn due(&self, log: &DeployLog, settings: &Settings, now_ms: i64) -> Vec<Release> {
        releases(log, settings.after_ms)
            .into_iter()
            .filter(|r| {
                let due = r.due_ms(settings.after_ms);
                due <= now_ms && now_ms - due <= STALE_MS && !self.is_judged(&r.key())
            })
            .collect()
    }
}

/// Judges `release` as the deploy log `log` saw it, at its due time, reading through
/// `source`.
pub async fn judge_release(
    source: &dyn Source,
    log: &DeployLog,
    release: &Release,
    settings: &Settings,
    now_ms: i64,
) -> Result<Verdict, QueryError> {
    let counted = super::source::Counted::new(source);
    let mut verdict = judge_counted(&counted, log, release, settings, now_ms).await?;
    verdict.queries = counted.queries();
    Ok(verdict)
}

async fn judge_counted(
    source: &dyn Source,
    log: &DeployLog,
    release: &Release,
    settings: &Settings,
    now_ms: i64,
) -> Result<Verdict, QueryError> {
    let after = settings.after_ms;
    let end = release.due_ms(after);
    let start = release.last_ms;
    let mut verdict = Verdict {
        key: release.key(),
        job: release.job.clone(),
        version: release.version.clone(),
        baseline_version: release.baseline_version.clone(),
        deployed_ms: release.first_ms,
        judged_ms: end,
        window_ms: end - start,
        comparison: Comparison::Superseded,
        conclusion: Conclusion::Superseded,
        instances: release.instances.clone(),
        baseline_instances: Vec::new(),
        regressed: Vec::new(),
        unchanged: 0,
        not_enough_data: 0,
        no_baseline: 0,
        summary: String::new(),
        queries: 0,
    };
    // An instance that changed again within the window served more than this version.
    let changed_again = |instance: &str| {
        log.entries().any(|d| {
            d.job == release.job
                && d.instance == instance
                && d.at_ms > release.first_ms
                && d.at_ms <= end
                && d.version.as_deref() != Some(release.version.as_str())
        })
    };
    if release.instances.iter().any(|i| changed_again(i)) {
        verdict.summary = format!(
            "{} {}: not judged, its instances changed version again within {}",
            release.job,
            release.version,
            crate::time::duration_text(after)
        );
        return Ok(verdict);
    }
    let serving = log.serving(&release.job);
    let mut baseline_instances: Vec<String> = serving
        .into_iter()
        .flatten()
        .filter(|(i, s)| {
            !release.instances.contains(i)
                && s.version.is_some()
                && s.version == release.baseline_version
                && s.seen_ms >= now_ms.min(end) - SEEN_MS
        })
        .map(|(i, _)| i.clone())
        .collect();
    baseline_instances.sort();
    let job = Some(release.job.as_str());
    let judgements = if baseline_instances.is_empty() {
        verdict.comparison = Comparison::Rollout;
        let all = Scope {
            job,
            instances: None,
        };
        let after_w = read_windows(source, all, start, end).await?;
        let before = read_windows(source, all, release.first_ms - after, release.first_ms).await?;
        let week = read_windows(source, all, start - WEEK_MS, end - WEEK_MS).await?;
        compare_rollout(&before, &week, &after_w, &settings.thresholds)
    } else {
        verdict.comparison = Comparison::Canary;
        let candidate = Scope {
            job,
            instances: Some(&release.instances),
        };
        let baseline = Scope {
            job,
            instances: Some(&baseline_instances),
        };
        let after_w = read_windows(source, candidate, start, end).await?;
        let before = read_windows(source, baseline, start, end).await?;
        compare(&before, &after_w, &settings.thresholds)
    };
    verdict.baseline_instances = baseline_instances;
    conclude(&mut verdict, judgements);
    Ok(verdict)
}

/// Each route of `after` judged against `before`.
pub fn compare(
    before: &BTreeMap<(String, String), Window>,
    after: &BTreeMap<(String, String), Window>,
    t: &Thresholds,
) -> Vec<RouteJudgement> {
    let empty = Window::default();
    after
        .iter()
        .map(|(key, w)| judge(&key.1, before.get(key).unwrap_or(&empty), w, t))
        .collect()
}

/// A full rollout: each route of `after` judged against `before` and, where the week-earlier
/// window has enough requests, against `week` too; a regression must show against both.
pub fn compare_rollout(
    before: &BTreeMap<(String, String), Window>,
    week: &BTreeMap<(String, String), Window>,
    after: &BTreeMap<(String, String), Window>,
    t: &Thresholds,
) -> Vec<RouteJudgement> {
    let against_before = compare(before, after, t);
    let against_week = compare(week, after, t);
    against_before
        .into_iter()
        .zip(against_week)
        .map(|(mut b, w)| {
            let week_says = matches!(w.outcome, Outcome::Regressed | Outcome::Unchanged);
            if b.outcome == Outcome::Regressed && week_says {
                // Only what got worse against both counts.
                b.worse
                    .retain(|x| w.worse.iter().any(|y| y.metric == x.metric));
                if b.worse.is_empty() {
                    b.outcome = Outcome::Unchanged;
                }
            }
            b
        })
        .collect()
}

/// Fills the verdict's conclusion, counts, routes and summary from its routes' judgements.
fn conclude(verdict: &mut Verdict, mut routes: Vec<RouteJudgement>) {
    let count = |o: Outcome| routes.iter().filter(|r| r.outcome == o).count();
    verdict.unchanged = count(Outcome::Unchanged);
    verdict.not_enough_data = count(Outcome::NotEnoughData);
    verdict.no_baseline = count(Outcome::NoBaseline);
    let regressed = count(Outcome::Regressed);
    verdict.conclusion = if regressed > 0 {
        Conclusion::Regression
    } else if verdict.unchanged > 0 {
        Conclusion::Clean
    } else if verdict.not_enough_data > 0 {
        Conclusion::NotEnoughData
    } else {
        Conclusion::NoBaseline
    };
    routes.retain(|r| r.outcome == Outcome::Regressed);
    routes.sort_by(|a, b| {
        let top = |r: &RouteJudgement| r.worse.first().map_or(0.0, |w| w.change);
        top(b).total_cmp(&top(a))
    });
    routes.truncate(MAX_LISTED);
    verdict.regressed = routes;
    verdict.summary = summary(verdict);
}

/// `shop 1.3.0: GET /users/{id} p95 410 ms vs 290 ms on 1.2.0 (+41%, 18,342 vs 52,110
/// requests); 11 routes unchanged`.
fn summary(v: &Verdict) -> String {
    let baseline = v
        .baseline_version
        .as_deref()
        .unwrap_or("the previous version");
    let mut parts = Vec::new();
    for r in v.regressed.iter().take(3) {
        let w = &r.worse[0];
        parts.push(format!(
            "{} {} {} vs {} on {baseline} ({}, {} vs {} requests)",
            r.route,
            w.metric,
            format::metric(&w.metric, w.after),
            format::metric(&w.metric, w.before),
            format::change(&w.metric, w.change),
            format::count(r.requests_after),
            format::count(r.requests_before),
        ));
    }
    if v.regressed.len() > 3 {
        parts.push(format!("{} more routes regressed", v.regressed.len() - 3));
    }
    let plural = |n: usize| if n == 1 { "route" } else { "routes" };
    if v.unchanged > 0 && matches!(v.conclusion, Conclusion::Regression | Conclusion::Clean) {
        parts.push(format!("{} {} unchanged", v.unchanged, plural(v.unchanged)));
    }
    if v.not_enough_data > 0 {
        parts.push(format!(
            "{} {} with not enough data",
            v.not_enough_data,
            plural(v.not_enough_data)
        ));
    }
    let how = match v.comparison {
        Comparison::Canary => format!(
            "canary on {} of {} instances",
            v.instances.len(),
            v.instances.len() + v.baseline_instances.len()
        ),
        _ => "full rollout".into(),
    };
    let head = format!("{} {} ({how})", v.job, v.version);
    match v.conclusion {
        Conclusion::NotEnoughData if parts.is_empty() => format!("{head}: not enough data"),
        Conclusion::NotEnoughData => format!("{head}: not enough data; {}", parts.join("; ")),
        Conclusion::NoBaseline => format!("{head}: no baseline (no traffic before it)"),
        Conclusion::Clean => format!("{head}: no change; {}", parts.join("; ")),
        _ => format!("{head}: {}", parts.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(entries: &[(&str, &str, i64)]) -> DeployLog {
        let mut log = DeployLog::default();
        for (instance, version, t) in entries {
            log.observe("shop", instance, Some(version), None, *t);
        }
        log
    }

    #[test]
    fn a_rolling_release_is_one_release_judged_after_its_last_instance() {
        let log = log_of(&[
            ("a", "1.0", 0),
            ("b", "1.0", 0),
            ("a", "1.1", 60_000),
            ("b", "1.1", 120_000),
            ("a", "1.2", 10_000_000),
        ]);
        let settings = Settings::default();
        let r = releases(&log, settings.after_ms);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].instances, vec!["a", "b"]);
        assert_eq!(r[0].baseline_version.as_deref(), Some("1.0"));
        assert_eq!(r[0].due_ms(settings.after_ms), 120_000 + 1_800_000);
        let mut verdicts = Verdicts::default();
        assert!(verdicts.due(&log, &settings, 1_900_000).is_empty());
        let due = verdicts.due(&log, &settings, 1_920_000);
        assert_eq!(due.len(), 1);
        let v = Verdict {
            key: due[0].key(),
            job: "shop".into(),
            version: "1.1".into(),
            baseline_version: None,
            deployed_ms: 60_000,
            judged_ms: 1_920_000,
            window_ms: 1_800_000,
            comparison: Comparison::Rollout,
            conclusion: Conclusion::Clean,
            instances: vec![],
            baseline_instances: vec![],
            regressed: vec![],
            unchanged: 1,
            not_enough_data: 0,
            no_baseline: 0,
            summary: String::new(),
            queries: 6,
        };
        assert!(verdicts.record(v.clone()));
        assert!(!verdicts.record(v), "a release is judged once");
        assert!(verdicts.due(&log, &settings, 1_920_000).is_empty());
        // Stale: a day past due, never judged.
        assert!(verdicts
            .due(&log, &settings, 10_000_000 + 1_800_000 + STALE_MS + 1)
            .is_empty());
    }

    #[test]
    fn a_flapping_version_makes_bounded_releases() {
        let mut log = DeployLog::default();
        log.observe("shop", "a", Some("x"), None, 0);
        for t in 1..5000 {
            let v = if t % 2 == 0 { "x" } else { "y" };
            log.observe("shop", "a", Some(v), None, t * 15_000);
        }
        // Every flip within a window of the first is the same release: two, not thousands.
        let settings = Settings::default();
        let r = releases(&log, settings.after_ms);
        assert!(r.len() <= 20, "{}", r.len());
    }
}
