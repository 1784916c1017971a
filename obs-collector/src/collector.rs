//! The running collector: scrape tasks feed the store, group tasks evaluate rules over it,
//! state is persisted after every evaluation.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use obs::prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use crate::config::{Config, Job, Target};
use crate::labels::Labels;
use crate::notify::{self, Channel, Notifier};
use crate::promql::remote::Remote;
use crate::promql::{QueryError, Value};
use crate::rules::{Group, Kind, RuleError, Transition};
use crate::scrape::{self, TargetSeries, TargetStatus};
use crate::state;
use crate::store::Store;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The collector's own metrics, registered in obs's registry (served at its `/metrics`).
pub struct SelfMetrics {
    series: IntGauge,
    samples: IntGauge,
    store_bytes: IntGauge,
    scrapes: IntCounterVec,
    evaluations: IntCounterVec,
    evaluation_failures: IntCounterVec,
    notifications: IntCounterVec,
    remote_query_seconds: obs::prometheus::Histogram,
}

impl SelfMetrics {
    fn new(registry: &Registry) -> Self {
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        Self {
            series: gauge("obs_collector_series", "Series in the in-memory store."),
            samples: gauge("obs_collector_samples", "Samples in the in-memory store."),
            store_bytes: gauge(
                "obs_collector_store_bytes",
                "Approximate heap bytes of the in-memory store.",
            ),
            scrapes: counter(
                "obs_collector_scrapes_total",
                "Scrapes by job and result.",
                &["job", "result"],
            ),
            evaluations: counter(
                "obs_collector_rule_evaluations_total",
                "Rule group evaluations.",
                &["rule_group"],
            ),
            evaluation_failures: counter(
                "obs_collector_rule_evaluation_failures_total",
                "Rule evaluations that failed (state left unchanged).",
                &["rule_group"],
            ),
            remote_query_seconds: {
                let h = obs::prometheus::Histogram::with_opts(obs::prometheus::HistogramOpts::new(
                    "obs_collector_remote_query_duration_seconds",
                    "Duration of rule queries sent to the remote backend (remote mode).",
                ))
                .expect("valid metric");
                let _ = registry.register(Box::new(h.clone()));
                h
            },
            notifications: counter(
                "obs_collector_notifications_total",
                "Notification attempts by channel and outcome (delivered, retried, failed).",
                &["channel", "outcome"],
            ),
        }
    }
}

/// One scrape target with its job and status.
pub struct TargetEntry {
    pub job: Job,
    pub target: Target,
    pub status: Mutex<TargetStatus>,
}

/// Everything the tasks and the web server share.
pub struct Collector {
    pub config: Config,
    pub store: RwLock<Store>,
    pub groups: Vec<Mutex<Group>>,
    pub targets: Vec<TargetEntry>,
    pub state_path: PathBuf,
    pub ready: AtomicBool,
    client: reqwest::Client,
    /// The notification log (with every channel's queue).
    pub log: Mutex<notify::Log>,
    /// This collector's URL, for Alertmanager's `generatorURL`.
    pub external_url: std::sync::OnceLock<String>,
    channels: Vec<Channel>,
    policy: notify::Policy,
    wake: tokio::sync::Notify,
    remote: Option<Remote>,
    save_lock: Mutex<()>,
    metrics: SelfMetrics,
}

impl Collector {
    /// Builds the collector; restores alert state from `state_path`.
    pub fn new(
        config: Config,
        mut groups: Vec<Group>,
        state_path: PathBuf,
        registry: &Registry,
    ) -> Arc<Self> {
        let mut log = notify::Log::default();
        match state::load(&state_path) {
            Ok(saved) => {
                // Two scrape intervals for every target to be scraped again after the restart.
                let margin = 2 * config.max_scrape_interval_ms();
                let n = state::restore(&mut groups, saved.alerts, now_ms(), margin);
                log = saved.notifications;
                let queued = log
                    .entries
                    .iter()
                    .filter(|e| e.outcome == notify::Outcome::Queued)
                    .count();
                if n > 0 || queued > 0 {
                    tracing::info!({ state.file = %state_path.display(), alerts = n, queued_notifications = queued }, "state restored");
                }
            }
            Err(e) => tracing::warn!("{e}; starting with empty alert state"),
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("obs-collector/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client");
        let mut channels = Vec::new();
        if let Some(hook) = &config.notify.slack {
            channels.push(Channel::Slack(notify::slack::Slack::new(
                hook.clone(),
                client.clone(),
            )));
        }
        if config.notify.console {
            channels.push(Channel::Console(notify::console::Console));
        }
        let remote = config
            .remote
            .clone()
            .map(|q| Remote::new(q, client.clone()));
        let policy = notify::Policy {
            channels: channels.iter().map(|c| c.name().to_owned()).collect(),
            send_resolved: config.notify.send_resolved,
            repeat_interval_ms: config.notify.repeat_interval_ms,
        };
        let store = Store::new(retention_ms(&config, &groups));
        let targets = config
            .jobs
            .iter()
            .flat_map(|job| {
                job.targets.iter().map(move |t| TargetEntry {
                    job: job.clone(),
                    target: t.clone(),
                    status: Mutex::new(TargetStatus {
                        job: job.name.clone(),
                        labels: t.labels.clone(),
                        url: scrape::url(job, t),
                        ..Default::default()
                    }),
                })
            })
            .collect();
        Arc::new(Self {
            config,
            store: RwLock::new(store),
            groups: groups.into_iter().map(Mutex::new).collect(),
            targets,
            state_path,
            ready: AtomicBool::new(false),
            // No idle connections between scrapes: with thousands of targets, each pooled
            // connection would hold its buffers (tens of KiB) for the whole interval.
            client,
            log: Mutex::new(log),
            external_url: std::sync::OnceLock::new(),
            channels,
            policy,
            wake: tokio::sync::Notify::new(),
            remote,
            save_lock: Mutex::new(()),
            metrics: SelfMetrics::new(registry),
        })
    }

    /// Starts the scrape, evaluation and housekeeping tasks on the current runtime.
    pub fn spawn(self: &Arc<Self>) {
        for i in 0..self.targets.len() {
            tokio::spawn(Arc::clone(self).scrape_loop(i));
        }
        for i in 0..self.groups.len() {
            tokio::spawn(Arc::clone(self).eval_loop(i));
        }
        tokio::spawn(Arc::clone(self).housekeeping());
        for i in 0..self.channels.len() {
            tokio::spawn(Arc::clone(self).deliver(i));
        }
        self.ready.store(true, Ordering::SeqCst);
    }

    async fn scrape_loop(self: Arc<Self>, index: usize) {
        let entry = &self.targets[index];
        let interval = entry.job.interval_ms;
        // Spread targets over the interval, as Prometheus does, instead of scraping all at once.
        let offset = hash(&entry.target.labels) % interval as u64;
        let mut previous = TargetSeries::default();
        loop {
            let now = now_ms();
            let next = (now - now.rem_euclid(interval)) + offset as i64;
            let next = if next <= now { next + interval } else { next };
            tokio::time::sleep(Duration::from_millis((next - now) as u64)).await;
            self.scrape_target(index, &mut previous, next).await;
        }
    }

    /// Scrapes one target once (used by the loop and by tests).
    pub async fn scrape_target(&self, index: usize, previous: &mut TargetSeries, t: i64) {
        let entry = &self.targets[index];
        let started = std::time::Instant::now();
        let result = scrape::scrape_once(
            &self.client,
            &entry.job,
            &entry.target,
            &self.store,
            previous,
            t,
        )
        .await;
        let mut status = lock(&entry.status);
        status.up = Some(result.is_ok());
        status.last_scrape_ms = Some(t);
        status.last_duration_s = started.elapsed().as_secs_f64();
        let result_label = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .scrapes
            .with_label_values(&[&entry.job.name, result_label])
            .inc();
        match result {
            Ok(n) => {
                status.samples = n;
                status.last_error = None;
            }
            Err(e) => {
                let e = e.to_string();
                if status.last_error.as_deref() != Some(&e) {
                    tracing::warn!({ job = %entry.job.name, instance = %entry.target.address, error = %e }, "scrape failed");
                }
                status.samples = 0;
                status.last_error = Some(e);
            }
        }
    }

    async fn eval_loop(self: Arc<Self>, index: usize) {
        let interval = lock(&self.groups[index]).interval_ms;
        loop {
            let now = now_ms();
            // Evaluate on multiples of the interval, as promtool and Prometheus' slots do.
            let next = now - now.rem_euclid(interval) + interval;
            tokio::time::sleep(Duration::from_millis((next - now) as u64)).await;
            let remote = self.query_remote(index, next).await;
            self.eval_group(index, next, remote);
        }
    }

    /// In remote mode, runs every alerting rule's expression of group `index` on the backend
    /// (one query at a time, without holding the group's lock).
    async fn query_remote(&self, index: usize, t: i64) -> Option<Vec<Result<Value, QueryError>>> {
        let remote = self.remote.as_ref()?;
        let queries: Vec<String> = lock(&self.groups[index])
            .rules
            .iter()
            .map(|r| r.expr_text().to_owned())
            .collect();
        let mut results = Vec::with_capacity(queries.len());
        for q in queries {
            let started = std::time::Instant::now();
            let r = remote.query(&q, t).await;
            self.metrics
                .remote_query_seconds
                .observe(started.elapsed().as_secs_f64());
            results.push(r);
        }
        Some(results)
    }

    /// Evaluates every rule of group `index` at `t` (over the store, or on the `remote`
    /// results), logs transitions, dispatches notifications, persists state.
    pub fn eval_group(&self, index: usize, t: i64, remote: Option<Vec<Result<Value, QueryError>>>) {
        let external = self.config.external_labels.clone();
        let mut group = lock(&self.groups[index]);
        let group_name = group.name.clone();
        let mut transitions = Vec::new();
        // The remote results, one per rule in the group's order (`query_remote` made them so).
        let mut remote = remote.map(Vec::into_iter);
        for rule in group.rules.iter_mut() {
            let started = std::time::Instant::now();
            let from_remote = remote.as_mut().and_then(Iterator::next);
            let result = match &mut rule.kind {
                Kind::Alerting(a) => {
                    let evaluated = match from_remote {
                        Some(value) => value
                            .map_err(RuleError::from)
                            .and_then(|v| a.apply(t, v, None, &external)),
                        None => a.eval(
                            t,
                            &self.store.read().unwrap_or_else(PoisonError::into_inner),
                            &external,
                        ),
                    };
                    evaluated
                        .map(|tr| transitions.extend(tr.into_iter().map(|x| (a.name.clone(), x))))
                }
                Kind::Recording(r) => {
                    let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
                    r.eval(t, &mut store)
                }
            };
            rule.health.last_eval_ms = Some(t);
            rule.health.last_duration_s = started.elapsed().as_secs_f64();
            let error = result.err().map(|e| e.to_string());
            if let Some(e) = &error {
                self.metrics
                    .evaluation_failures
                    .with_label_values(&[&group_name])
                    .inc();
                if rule.health.last_error.as_ref() != Some(e) {
                    tracing::warn!({ rule_group = %group_name, rule = %rule.name(), error = %e }, "rule evaluation failed; alert state unchanged");
                }
            }
            rule.health.last_error = error;
        }
        self.metrics
            .evaluations
            .with_label_values(&[&group_name])
            .inc();
        for (rule, transition) in &transitions {
            log_transition(&group, rule, transition);
        }
        let mut for_alertmanager = Vec::new();
        {
            let mut log = lock(&self.log);
            let interval = group.interval_ms;
            for rule in &mut group.rules {
                // A failed evaluation changed nothing, so it announces nothing.
                if let (Kind::Alerting(a), None) = (&mut rule.kind, &rule.health.last_error) {
                    log.dispatch(a, t, &self.policy);
                    if self.config.notify.alertmanager.is_some() {
                        let url = self.external_url.get().map_or("", String::as_str);
                        for_alertmanager
                            .extend(notify::alertmanager::batch(a, t, interval, &external, url));
                    }
                }
            }
        }
        if let (Some(url), false) = (
            &self.config.notify.alertmanager,
            for_alertmanager.is_empty(),
        ) {
            let (client, url) = (self.client.clone(), url.clone());
            tokio::spawn(async move {
                if let Err(e) = notify::alertmanager::post(&client, &url, &for_alertmanager).await {
                    tracing::error!({ channel = "alertmanager", error = %e }, "cannot send alerts to Alertmanager");
                }
            });
        }
        drop(group);
        self.save_state(t);
        self.wake.notify_waiters();
    }

    fn save_state(&self, t: i64) {
        let _saving = lock(&self.save_lock);
        let alerts = self
            .groups
            .iter()
            .flat_map(|g| state::snapshot([&*lock(g)]))
            .collect();
        let saved = state::Saved {
            alerts,
            notifications: lock(&self.log).clone(),
        };
        if let Err(e) = state::save(&self.state_path, saved, t) {
            tracing::error!({ state.file = %self.state_path.display(), error = %e }, "cannot save alert state");
        }
    }

    /// The delivery loop of channel `index`: oldest queued message first, retries when due,
    /// at most one message per second.
    async fn deliver(self: Arc<Self>, index: usize) {
        let channel = &self.channels[index];
        let name = channel.name();
        let mut last_send: Option<std::time::Instant> = None;
        loop {
            let next = lock(&self.log)
                .next_for(name)
                .map(|e| (e.id, e.next_attempt_ms, e.message.clone(), e.plain_text));
            let Some((id, due, message, plain_text)) = next else {
                let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
                continue;
            };
            let now = now_ms();
            if due > now {
                tokio::time::sleep(Duration::from_millis((due - now).min(1000) as u64)).await;
                continue;
            }
            if let Some(wait) = last_send.and_then(|l| notify::MIN_SPACING.checked_sub(l.elapsed()))
            {
                tokio::time::sleep(wait).await;
            }
            if !lock(&self.log).ready(id, now) {
                self.save_state(now_ms());
                continue;
            }
            let result = channel.send(&message, plain_text).await;
            last_send = Some(std::time::Instant::now());
            let fields = (
                name,
                &message.alertname,
                &message.job,
                format!("{:?}", message.status).to_lowercase(),
            );
            let outcome = match &result {
                Ok(()) => {
                    tracing::info!({ channel = fields.0, alertname = %fields.1, job = %fields.2, status = %fields.3 }, "notification sent");
                    "delivered"
                }
                Err(notify::SendError::Retry { reason, .. }) => {
                    tracing::warn!({ channel = fields.0, alertname = %fields.1, job = %fields.2, error = %reason }, "notification failed; will retry");
                    "retried"
                }
                Err(notify::SendError::RejectedBlocks(reason)) if !plain_text => {
                    tracing::warn!({ channel = fields.0, alertname = %fields.1, error = %reason }, "blocks rejected; retrying as plain text");
                    "retried"
                }
                Err(
                    notify::SendError::Permanent(reason)
                    | notify::SendError::RejectedBlocks(reason),
                ) => {
                    tracing::error!({ channel = fields.0, alertname = %fields.1, job = %fields.2, error = %reason }, "notification failed permanently");
                    "failed"
                }
            };
            self.metrics
                .notifications
                .with_label_values(&[name, outcome])
                .inc();
            lock(&self.log).record(id, result, now_ms(), jitter());
            self.save_state(now_ms());
        }
    }

    async fn housekeeping(self: Arc<Self>) {
        loop {
            {
                let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
                store.compact(now_ms());
                self.metrics.series.set(store.series_count() as i64);
                self.metrics.samples.set(store.sample_count() as i64);
                self.metrics.store_bytes.set(store.memory_bytes() as i64);
            }
            tokio::time::sleep(Duration::from_secs(15)).await;
        }
    }
}

fn log_transition(group: &Group, rule: &str, transition: &Transition) {
    let find = |labels: &Labels| {
        group.rules.iter().find_map(|r| match &r.kind {
            Kind::Alerting(a) if a.name == rule => a.active.get(labels).cloned(),
            _ => None,
        })
    };
    match transition {
        Transition::Pending(l) => tracing::info!({ alertname = rule, alert = %l }, "alert pending"),
        Transition::PendingReset(l) => {
            tracing::info!({ alertname = rule, alert = %l }, "alert pending reset: condition no longer true")
        }
        Transition::Firing(l) => {
            let (value, description) = find(l).map_or((f64::NAN, String::new()), |a| {
                let d = a
                    .annotations
                    .iter()
                    .find(|(k, _)| k == "description")
                    .map(|(_, v)| v.clone());
                (a.value, d.unwrap_or_default())
            });
            tracing::warn!({ alertname = rule, alert = %l, value, description = %description }, "alert firing")
        }
        Transition::Resolved(l) => {
            tracing::info!({ alertname = rule, alert = %l }, "alert resolved")
        }
    }
}

/// How long samples are kept: the longest range any rule reads plus two scrape intervals of
/// margin (the newest sample of each series is always kept for instant selectors' lookback).
fn retention_ms(config: &Config, groups: &[Group]) -> i64 {
    let longest = groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .map(|r| r.expr().max_range_ms())
        .max()
        .unwrap_or(0);
    longest + 2 * config.max_scrape_interval_ms().max(15_000)
}

/// A number in [0, 1) for retry jitter.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_ms());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn hash(labels: &Labels) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    labels.hash(&mut h);
    h.finish()
}
