//! The changes stage: once a minute, the releases the deploy log shows whose window has passed
//! are judged ([`crate::changes::verdict`]) and the weekly report is sent when its slot comes
//! ([`crate::changes::report`]). Both read through [`Collector::source`] (the store, or the
//! backend in remote mode), outside every lock, and queue their message in the notification
//! log; the verdict (or the slot) is recorded under the log's lock with its message and saved
//! with it, so after a restart neither is lost nor repeated.

use std::sync::Arc;

use super::{lock, Collector};
use crate::changes::report::{self, Report};
use crate::changes::source::{Evaluated, Source};
use crate::changes::verdict::{judge_release, Conclusion, Verdict};
use crate::changes::{format, judge::Outcome};
use crate::notify::Message;
use crate::time::{next_slot, rfc3339};

/// How often releases and the report's slot are looked at: once a minute, or a sixth of
/// `verdicts.after` when that is shorter (a demo's windows of seconds).
const EVERY_MS: i64 = 60_000;
/// A report slot missed by longer (the collector was down) is not sent late.
const REPORT_LATE_MS: i64 = 86_400_000;
/// Lines of a verdict's message listing routes.
const ROUTES_IN_MESSAGE: usize = 10;

impl Collector {
    /// Where verdicts and reports read: the backend in remote mode, else the store.
    pub fn source(&self) -> Box<dyn Source + '_> {
        match &self.remote {
            Some(remote) => Box::new(remote),
            // Each query over a snapshot: weeks of history read without the store's lock.
            None => Box::new(Evaluated(|expr: &crate::promql::Expr, steps| {
                self.query_detached(expr, steps)
            })),
        }
    }

    pub(super) async fn changes_loop(self: Arc<Self>) {
        let every = (self.config.verdicts.after_ms / 6).clamp(1_000, EVERY_MS);
        self.start_report_schedule(self.clock.now_ms());
        loop {
            let next = next_slot(self.clock.now_ms(), every, 0);
            self.clock.sleep_until(next).await;
            self.judge_deploys(next).await;
            self.send_report_if_due(next).await;
        }
    }

    /// Judges the releases due at `now`; a verdict that cannot be read now (the backend is
    /// down) is tried again at the next look.
    pub async fn judge_deploys(&self, now: i64) {
        let settings = self.config.verdicts;
        let log = lock(&self.deploys).clone();
        let due = lock(&self.verdicts).due(&log, &settings, now);
        if due.is_empty() {
            return;
        }
        let source = self.source();
        for release in due {
            let verdict = match judge_release(&*source, &log, &release, &settings, now).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!({ job = %release.job, version = %release.version, error = %e }, "deploy verdict deferred: cannot read its numbers");
                    continue;
                }
            };
            tracing::info!(
                {
                    job = %verdict.job,
                    version = %verdict.version,
                    baseline_version = verdict.baseline_version.as_deref().unwrap_or("none"),
                    comparison = ?verdict.comparison,
                    conclusion = verdict.conclusion.text(),
                },
                "deploy verdict: {}", verdict.summary
            );
            let message = verdict
                .is_news(&settings)
                .then(|| self.verdict_message(&verdict, now));
            {
                let mut log = lock(&self.log);
                if lock(&self.verdicts).record(verdict) {
                    if let Some(message) = message {
                        log.notify("deploy-verdicts", message, now, &self.policy);
                    }
                }
            }
            self.persist(now).await;
            self.wake.notify_waiters();
        }
    }

    /// The verdicts given, newest first.
    pub fn verdicts(&self) -> Vec<Verdict> {
        lock(&self.verdicts).all().rev().cloned().collect()
    }

    /// A verdict's message: its line, then the regressed routes, then what it compared.
    fn verdict_message(&self, v: &Verdict, now: i64) -> Message {
        let title = match v.conclusion {
            Conclusion::Regression => format!("Deploy regression: {} {}", v.job, v.version),
            _ => format!(
                "Deploy verdict: {} {} {}",
                v.job,
                v.version,
                v.conclusion.text()
            ),
        };
        let mut lines = vec![v.summary.clone()];
        for r in v.regressed.iter().take(ROUTES_IN_MESSAGE) {
            let worse: Vec<String> = r
                .worse
                .iter()
                .map(|w| {
                    format!(
                        "{} {} vs {} ({})",
                        w.metric,
                        format::metric(&w.metric, w.after),
                        format::metric(&w.metric, w.before),
                        format::change(&w.metric, w.change)
                    )
                })
                .collect();
            lines.push(format!(
                "• {}: {}; {} vs {} requests",
                r.route,
                worse.join(", "),
                format::count(r.requests_after),
                format::count(r.requests_before)
            ));
        }
        lines.push(format!(
            "Compared {} from {} to {} (a verdict, not an alert)",
            match v.comparison {
                crate::changes::verdict::Comparison::Canary => format!(
                    "{} against {} on the same window",
                    v.instances.join(", "),
                    v.baseline_instances.join(", ")
                ),
                _ => "the job with the window before the deploy and a week earlier".into(),
            },
            rfc3339(v.judged_ms - v.window_ms),
            rfc3339(v.judged_ms)
        ));
        let route = v
            .regressed
            .first()
            .filter(|r| r.outcome == Outcome::Regressed)
            .and_then(|r| r.route.split_once(' ').map(|(_, t)| t));
        let window = (v.deployed_ms - v.window_ms, v.judged_ms);
        Message::notice(
            "DeployVerdict",
            &v.job,
            title,
            lines,
            self.pinned_link(&v.job, window, route),
            now,
        )
    }

    /// The job's dashboard pinned to `window` (Grafana's, when `links.dashboard` is set), or
    /// this collector's status page.
    fn pinned_link(&self, job: &str, window: (i64, i64), route: Option<&str>) -> Option<String> {
        let links = self.links();
        let query = serde_urlencoded::to_string([("var-job", job)]).unwrap_or_default();
        match &links.dashboard {
            Some(_) => {
                let url = links.dashboard(Some(&format!("d/obs-red/obs-red?{query}")), "")?;
                Some(links.pinned(url, window, route))
            }
            None => links.external.as_ref().map(|e| e.to_string()),
        }
    }

    /// The weekly report ending at `end_ms` over `weeks` (default: the configuration's), from
    /// the store or the backend. Built on a blocking thread: weeks of history take the store
    /// seconds to read, which must not hold up the runtime's workers (scrapes, rules,
    /// deliveries).
    pub async fn report(
        self: &Arc<Self>,
        end_ms: i64,
        weeks: Option<u32>,
    ) -> Result<Report, crate::promql::QueryError> {
        let options = report::Options {
            end_ms,
            weeks: weeks.unwrap_or(self.config.report.weeks),
            thresholds: self.config.verdicts.thresholds,
            slo_budget: self.slo_budget(),
        };
        let me = Arc::clone(self);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            runtime.block_on(async { report::build(&*me.source(), &options).await })
        })
        .await
        .unwrap_or_else(|e| {
            Err(crate::promql::QueryError::Eval(format!(
                "the report failed: {e}"
            )))
        })
    }

    /// A collector that never sent a report starts counting from the slot before its first
    /// start: its first report comes at the next slot, not minutes after it was installed.
    pub fn start_report_schedule(&self, now: i64) {
        if let Some(schedule) = &self.config.report.schedule {
            lock(&self.report_sent).get_or_insert(schedule.last_slot(now));
        }
    }

    /// The SLO rules' error budget, when they are loaded.
    fn slo_budget(&self) -> Option<f64> {
        self.groups
            .iter()
            .find_map(|g| crate::rules::slo_budget([&*lock(g)]))
    }

    /// Sends the weekly report when its slot has come and it was not sent for that slot (a
    /// report of no traffic is not sent, as Sentry's is not).
    pub async fn send_report_if_due(self: &Arc<Self>, now: i64) {
        let Some(schedule) = &self.config.report.schedule else {
            return;
        };
        let slot = schedule.last_slot(now);
        let sent = *lock(&self.report_sent);
        if sent.is_some_and(|s| s >= slot) || now - slot > REPORT_LATE_MS {
            return;
        }
        let report = match self.report(slot, None).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!({ error = %e }, "weekly report deferred: cannot read its numbers");
                return;
            }
        };
        tracing::info!(
            { findings = report.findings.len(), jobs = report.jobs.len(), queries = report.queries },
            "weekly report built"
        );
        let message = (!report.jobs.is_empty()).then(|| self.report_message(&report, now));
        {
            let mut log = lock(&self.log);
            let mut sent = lock(&self.report_sent);
            if sent.is_some_and(|s| s >= slot) {
                return;
            }
            *sent = Some(slot);
            if let Some(message) = message {
                log.notify("weekly-report", message, now, &self.policy);
            }
        }
        self.persist(now).await;
        self.wake.notify_waiters();
    }

    /// The report's message: the findings, then each job's line.
    fn report_message(&self, report: &Report, now: i64) -> Message {
        let title = format!(
            "Weekly report: {} findings, {} jobs",
            report.findings.len(),
            report.jobs.len()
        );
        let mut lines: Vec<String> = report
            .findings
            .iter()
            .map(|f| format!("• {}", f.line()))
            .collect();
        if lines.is_empty() {
            lines.push("No deploy regression and no drift.".into());
        }
        for job in &report.jobs {
            lines.push(job.summary_line(report.weeks));
            lines.extend(
                job.slo
                    .iter()
                    .map(|slo| format!("{}: {}", job.job, slo.line())),
            );
            lines.extend(
                job.alerts
                    .iter()
                    .map(|a| format!("{}: {}", job.job, a.line())),
            );
        }
        let link = self
            .links()
            .external
            .as_ref()
            .and_then(|e| e.join("report").ok())
            .map(String::from);
        Message::notice("WeeklyReport", "", title, lines, link, now)
    }
}
