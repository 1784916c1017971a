//! The running collector wires the stages, each behind a narrow interface, as Prometheus'
//! rule manager does: a schedule on an injected [`Clock`] runs the scrapes (which fill the
//! store) and the group evaluations (over a [`Querier`]: the store, or a remote backend); an
//! evaluation puts its alerts into the notification groups and flushes those due, a flush task
//! flushes the groups that fall due between evaluations, one delivery task per channel (Slack,
//! console, Alertmanager) sends and retries the queued messages, and one [`Persister`] thread
//! writes the state.
//!
//! Each stage's step is a method that takes its time explicitly ([`Collector::scrape_target`],
//! [`Collector::evaluate`], [`Collector::flush_due`], [`Collector::deliver_next`]), so tests
//! drive them on a [`crate::time::ManualClock`] instead of sleeping.

mod changes;
mod context;
mod deliver;
mod metrics;
mod queries;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use obs::prometheus::{Histogram, Registry};

use deliver::Delivery;
pub use deliver::Step;
pub use metrics::SelfMetrics;
pub use queries::QueryLimits;

use crate::config::{Config, Job, Target};
use crate::deploys::DeployLog;
use crate::exemplars::{self, Exemplar};
use crate::history::History;
use crate::incident::Plan;
use crate::labels::Labels;
use crate::links::Links;
use crate::mute::Mutes;
use crate::notify::{self, Channel, Notifier};
use crate::promql::remote::Remote;
use crate::promql::{Local, Querier, Query, QueryFuture};
use crate::rules::{self, Group, Kind, Transition};
use crate::scrape::metadata::Metadata;
use crate::scrape::{self, TargetSeries, TargetStatus};
use crate::silence::{self, NewSilence, Silence, Silences};
use crate::state::{self, Persister};
use crate::store::Store;
use crate::time::{millis, next_slot, Clock, SystemClock};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One scrape target with its job and status.
struct TargetEntry {
    job: Job,
    target: Target,
    status: Mutex<TargetStatus>,
    /// The exemplars of its last page.
    exemplars: Mutex<Vec<Exemplar>>,
    /// What its last page says of its metric families (a leaf lock).
    metadata: Mutex<Arc<BTreeMap<String, Metadata>>>,
}

/// A scrape target as the pages and the API show it: its job, its configuration and a copy
/// of its state.
pub struct TargetView<'a> {
    pub job: &'a Job,
    pub target: &'a Target,
    pub status: TargetStatus,
}

/// Everything the tasks and the web server share. The web server reads it only through
/// accessors that copy or visit under the lock (Prometheus' `RulesRetriever`), never its fields.
///
/// Lock order: a task that holds several locks takes them in this order, and takes none of
/// the earlier ones while it holds a later one (each other lock is a leaf, held alone):
/// `snapshot_lock` -> a `groups` entry -> `store` (a recording rule's write) and the targets'
/// `exemplars` -> `log` -> `silences` -> `firing` -> `examples` -> `deploys` -> `verdicts` ->
/// `report_sent` -> an `incidents` entry.
pub struct Collector {
    config: Config,
    store: RwLock<Store>,
    groups: Vec<Mutex<Group>>,
    targets: Vec<TargetEntry>,
    ready: AtomicBool,
    client: reqwest::Client,
    /// The notification log (with every channel's queue).
    log: Mutex<notify::Log>,
    /// The base URLs of messages' links; `external` is this collector's URL (also
    /// Alertmanager's `generatorURL`), from `links.external_url` or else the listen address.
    links: std::sync::OnceLock<Links>,
    /// The status page's chart points.
    history: History,
    /// Silences (Alertmanager's API v2 at `/api/v2/silences`).
    silences: Mutex<Silences>,
    /// What each instance serves, and the changes seen (persisted).
    deploys: Mutex<DeployLog>,
    /// The deploys judged (persisted).
    verdicts: Mutex<crate::changes::verdict::Verdicts>,
    /// The weekly report's last slot sent (persisted).
    report_sent: Mutex<Option<i64>>,
    /// The example traces of the firing alerts, by their labels.
    examples: Mutex<HashMap<Labels, Vec<String>>>,
    /// Per group, the incident contexts read for its alerts ([`context`]).
    incidents: Vec<Mutex<HashMap<Labels, context::Known>>>,
    /// The firing alerts of each group at its last evaluation: the sources of inhibition.
    firing: Mutex<Vec<Vec<Labels>>>,
    deliveries: Vec<Delivery>,
    policy: notify::Policy,
    wake: tokio::sync::Notify,
    remote: Option<Remote>,
    clock: Arc<dyn Clock>,
    persister: Persister,
    /// Held while a snapshot is taken and handed to the persister, so snapshots reach it in
    /// the order they were taken.
    snapshot_lock: Mutex<()>,
    metrics: SelfMetrics,
    /// The query API's limits (`--query.*`), and its slots.
    query_limits: std::sync::OnceLock<QueryLimits>,
    query_slots: std::sync::OnceLock<queries::Slots>,
}

impl Collector {
    /// Builds the collector on the system clock; restores alert state from `state_path`.
    pub fn new(
        config: Config,
        groups: Vec<Group>,
        state_path: PathBuf,
        registry: &Registry,
    ) -> Arc<Self> {
        Self::with_clock(config, groups, state_path, registry, Arc::new(SystemClock))
    }

    /// Builds the collector on `clock`; restores alert state from `state_path`.
    pub fn with_clock(
        config: Config,
        mut groups: Vec<Group>,
        state_path: PathBuf,
        registry: &Registry,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let mut log = notify::Log::default();
        let mut silences = Silences::default();
        let mut deploys = DeployLog::default();
        let mut verdicts = crate::changes::verdict::Verdicts::default();
        let mut report_sent = None;
        match state::load(&state_path) {
            Ok(saved) => {
                silences = Silences::restore(saved.silences);
                deploys = saved.deploys;
                verdicts = saved.verdicts;
                report_sent = saved.report_sent_ms;
                // Two scrape intervals for every target to be scraped again after the restart.
                let margin = 2 * config.max_scrape_interval();
                let n = state::restore(&mut groups, saved.alerts, clock.now_ms(), margin);
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
        // No idle connections between scrapes: with thousands of targets, each pooled
        // connection would hold its buffers (tens of KiB) for the whole interval.
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
        let policy = notify::Policy {
            channels: channels.iter().map(|c| c.name().to_owned()).collect(),
            send_resolved: config.notify.send_resolved,
            route: config.route.clone(),
        };
        // Alertmanager gets Prometheus' batches, not the grouped messages: not in the policy.
        if let Some(url) = &config.notify.alertmanager {
            channels.push(Channel::Alertmanager(
                notify::alertmanager::Alertmanager::new(url, client.clone()),
            ));
        }
        let remote = config
            .remote
            .clone()
            .map(|q| Remote::new(q, client.clone()));
        let store = Store::new(retention_ms(&config, &groups));
        let group_count = groups.len();
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
                    exemplars: Mutex::default(),
                    metadata: Mutex::default(),
                })
            })
            .collect();
        Arc::new(Self {
            config,
            store: RwLock::new(store),
            groups: groups.into_iter().map(Mutex::new).collect(),
            targets,
            persister: Persister::start(state_path),
            ready: AtomicBool::new(false),
            client,
            log: Mutex::new(log),
            links: std::sync::OnceLock::new(),
            history: History::default(),
            silences: Mutex::new(silences),
            deploys: Mutex::new(deploys),
            verdicts: Mutex::new(verdicts),
            report_sent: Mutex::new(report_sent),
            firing: Mutex::new(vec![Vec::new(); group_count]),
            examples: Mutex::default(),
            incidents: (0..group_count).map(|_| Mutex::default()).collect(),
            deliveries: channels.into_iter().map(Delivery::new).collect(),
            policy,
            wake: tokio::sync::Notify::new(),
            remote,
            clock,
            snapshot_lock: Mutex::new(()),
            metrics: SelfMetrics::new(registry),
            query_limits: std::sync::OnceLock::new(),
            query_slots: std::sync::OnceLock::new(),
        })
    }

    /// Starts the scrape, evaluation, delivery and housekeeping tasks on the current runtime.
    pub fn spawn(self: &Arc<Self>) {
        for i in 0..self.targets.len() {
            tokio::spawn(Arc::clone(self).scrape_loop(i));
        }
        for i in 0..self.groups.len() {
            tokio::spawn(Arc::clone(self).eval_loop(i));
        }
        tokio::spawn(Arc::clone(self).flush_loop());
        if self.remote.is_some() {
            tokio::spawn(Arc::clone(self).remote_deploys_loop());
        }
        tokio::spawn(Arc::clone(self).housekeeping());
        tokio::spawn(Arc::clone(self).changes_loop());
        for i in 0..self.deliveries.len() {
            tokio::spawn(Arc::clone(self).deliver_loop(i));
        }
        self.ready.store(true, Ordering::SeqCst);
    }

    async fn scrape_loop(self: Arc<Self>, index: usize) {
        let entry = &self.targets[index];
        let interval = millis(entry.job.interval);
        // Spread targets over the interval, as Prometheus does, instead of scraping all at once.
        let offset = (entry.target.labels.fingerprint() % interval as u64) as i64;
        let mut previous = TargetSeries::default();
        loop {
            let next = next_slot(self.clock.now_ms(), interval, offset);
            self.clock.sleep_until(next).await;
            self.scrape_target(index, &mut previous, next).await;
        }
    }

    /// Scrapes target `index` once, at `t`.
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
        let mut deployed = false;
        if result.is_ok() {
            *lock(&entry.exemplars) = std::mem::take(&mut previous.exemplars);
            *lock(&entry.metadata) = Arc::clone(&previous.metadata);
            let instance = entry.target.labels.get("instance").unwrap_or_default();
            let version = previous.version.as_deref();
            let mut deploys = lock(&self.deploys);
            if let Some(d) =
                deploys.observe(&entry.job.name, instance, version, previous.started_s, t)
            {
                log_deploy(d);
                deployed = true;
            }
        }
        {
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
        // A deploy is kept as alert state is: on disk before the next one can be missed.
        if deployed {
            self.persist(t).await;
        }
    }

    /// Remote mode: the backend scrapes, so the deploy log is read from its `target_info` and
    /// `process_start_time_seconds`, as often as the rules are evaluated (the shortest group
    /// interval), so the deploy log is as fresh as what the rules read.
    async fn remote_deploys_loop(self: Arc<Self>) {
        let every = self
            .groups
            .iter()
            .map(|g| millis(lock(g).interval))
            .min()
            .unwrap_or(REMOTE_DEPLOYS_EVERY_MS)
            .max(1_000);
        loop {
            let next = next_slot(self.clock.now_ms(), every, 0);
            self.clock.sleep_until(next).await;
            self.read_remote_deploys(next).await;
        }
    }

    /// Reads what each instance serves from the remote backend at `t` (two instant queries)
    /// into the deploy log; persists it when something changed. A failed query changes
    /// nothing (the next one reads again).
    pub async fn read_remote_deploys(&self, t: i64) {
        let Some(remote) = &self.remote else {
            return;
        };
        let vector = |value| match value {
            Ok(crate::promql::Value::Vector(samples)) => Some(samples),
            Ok(crate::promql::Value::Scalar(_)) => None,
            Err(e) => {
                tracing::debug!({ error = %e }, "deploys not read from the backend");
                None
            }
        };
        // With its sample's time: after a deploy, the old and the new version's series can both
        // be within the lookback (OTLP ingestion writes no staleness markers); the newest wins,
        // as Prometheus' `info()` decides.
        let Some(infos) = vector(remote.instant("timestamp(target_info)", t).await) else {
            return;
        };
        let starts =
            vector(remote.instant("process_start_time_seconds", t).await).unwrap_or_default();
        let key = |l: &Labels| {
            (
                l.get("job").unwrap_or_default().to_owned(),
                l.get("instance").unwrap_or_default().to_owned(),
            )
        };
        let started: HashMap<_, f64> = starts.iter().map(|s| (key(&s.labels), s.value)).collect();
        let mut newest: HashMap<(String, String), &crate::promql::Sample> = HashMap::new();
        for info in &infos {
            let slot = newest.entry(key(&info.labels)).or_insert(info);
            if info.value > slot.value {
                *slot = info;
            }
        }
        let mut changed = false;
        {
            let mut deploys = lock(&self.deploys);
            for (key, info) in &newest {
                let (job, instance) = key;
                let version = info.labels.get("service_version");
                let start = started.get(key).copied();
                if let Some(d) = deploys.observe(job, instance, version, start, t) {
                    log_deploy(d);
                    changed = true;
                }
            }
        }
        if changed {
            self.persist(t).await;
        }
    }

    async fn eval_loop(self: Arc<Self>, index: usize) {
        let interval = millis(lock(&self.groups[index]).interval);
        loop {
            // On multiples of the interval, as promtool and Prometheus' slots do.
            let next = next_slot(self.clock.now_ms(), interval, 0);
            self.clock.sleep_until(next).await;
            self.evaluate(index, next).await;
        }
    }

    /// Evaluates group `index` at `t` (over the store, or the remote backend), logs the
    /// transitions, queues the notifications and persists the state.
    pub async fn evaluate(&self, index: usize, t: i64) {
        let external = self.config.external_labels.clone();
        let local = Local(&self.store);
        let timed;
        let querier: &dyn Querier = match &self.remote {
            Some(remote) => {
                timed = Timed(remote, &self.metrics.remote_query_seconds);
                &timed
            }
            None => &local,
        };
        let evaluation =
            rules::evaluate(&self.groups[index], t, querier, &self.store, &external).await;
        self.read_incidents(index, &evaluation, querier, t).await;
        let remote_exemplars = self.remote_exemplars(index, t).await;
        {
            let group = lock(&self.groups[index]);
            let group_name = group.name.clone();
            self.metrics
                .evaluations
                .with_label_values(&[&group_name])
                .inc();
            if evaluation.failures > 0 {
                self.metrics
                    .evaluation_failures
                    .with_label_values(&[&group_name])
                    .inc_by(evaluation.failures as u64);
            }
            for (rule, transition) in &evaluation.transitions {
                log_transition(&group, rule, transition);
            }
            for (rule, point) in &evaluation.charts {
                self.history.record(&group_name, rule, t, *point);
            }
            self.dispatch(index, group, t, &external, &remote_exemplars);
        }
        self.persist(t).await;
        self.wake.notify_waiters();
    }

    /// In remote mode, the backend's exemplars for the group's rules that fire
    /// (`/api/v1/query_exemplars` over the incident's window); a failure only means no
    /// example traces.
    async fn remote_exemplars(&self, index: usize, t: i64) -> HashMap<String, Vec<Exemplar>> {
        let Some(remote) = &self.remote else {
            return HashMap::new();
        };
        // Per firing rule: the queries that select where its exemplars are (the histogram
        // buckets behind its selectors; the whole expression when it has no local plan).
        let firing = exemplars::remote_queries(&lock(&self.groups[index]));
        let mut out: HashMap<String, Vec<Exemplar>> = HashMap::new();
        for (name, queries, since) in firing {
            for query in queries {
                match remote.exemplars(&query, since, t).await {
                    Ok(found) => out.entry(name.clone()).or_default().extend(found),
                    Err(e) => {
                        tracing::debug!({ rule = %name, error = %e }, "no exemplars from the backend")
                    }
                }
            }
        }
        out
    }

    /// Puts the group's alerts into their notification groups and flushes every notification
    /// group that is due (silenced and inhibited alerts say nothing). Firing alerts get their
    /// example traces from the scraped exemplars, or `remote`'s.
    fn dispatch(
        &self,
        index: usize,
        mut group: MutexGuard<'_, Group>,
        t: i64,
        external: &Labels,
        remote: &HashMap<String, Vec<Exemplar>>,
    ) {
        lock(&self.silences).collect_garbage(t);
        lock(&self.firing)[index] = firing_alerts(&group);
        let examples = exemplars::of_group(&group, remote, || {
            self.targets.iter().map(|t| lock(&t.exemplars)).collect()
        });
        let deploys = self.deploy_context(&group, t);
        let incidents = self.incidents_of(index, &group);
        let context = |labels: &Labels| notify::Context {
            example_traces: examples.get(labels).cloned().unwrap_or_default(),
            deploy: deploys.get(labels).cloned(),
            incident: incidents.get(labels).cloned(),
        };
        let mut log = lock(&self.log);
        let interval = group.interval;
        let links = self.links();
        let generator_url = links.external.as_ref().map_or("", |u| u.as_str());
        for rule in &mut group.rules {
            // A failed evaluation changed nothing, so it announces nothing.
            if let (Kind::Alerting(a), None) = (&mut rule.kind, &rule.health.last_error) {
                log.insert(a, t, &self.policy.route, &context);
                if self.config.notify.alertmanager.is_some() {
                    let alerts = notify::alertmanager::batch(
                        a,
                        t,
                        interval,
                        external,
                        generator_url,
                        &context,
                    );
                    log.dispatch_alerts(a, alerts, t, "alertmanager");
                }
            }
        }
        self.flush(&mut log, t);
        let mut known = lock(&self.examples);
        for alert in group.alerting_rules().flat_map(|a| a.alerts()) {
            known.remove(&alert.labels);
        }
        known.extend(examples);
    }

    /// The deploy line of each firing alert of `group` that has a `job` and whose rule reads
    /// obs' RED histogram, by its labels: what the job serves at `t`, its last deploy before
    /// the alert's onset and the deploys since. Another rule's alert gets none: nothing ties
    /// it to a deploy.
    fn deploy_context(&self, group: &Group, t: i64) -> HashMap<Labels, String> {
        let deploys = lock(&self.deploys);
        group
            .alerting_rules()
            // The plan is read off a rule only when it has firing alerts.
            .filter(|a| {
                a.alerts().any(|x| x.state == rules::State::Firing)
                    && Plan::of(a).is_some_and(|p| p.reads_red())
            })
            .flat_map(|a| a.alerts().filter(|x| x.state == rules::State::Firing))
            .filter_map(|x| {
                let line = deploys.context(x.labels.get("job")?, x.active_at, t)?;
                Some((x.labels.clone(), line))
            })
            .collect()
    }

    /// Flushes the notification groups of `log` due at `t`, leaving out the alerts then
    /// silenced or inhibited.
    fn flush(&self, log: &mut notify::Log, t: i64) {
        let mutes = self.mutes_at(t);
        log.flush(t, &self.policy, self.links(), &|labels| {
            mutes.is_muted(labels)
        });
    }

    /// The flush task: flushes each notification group when it falls due, on Alertmanager's
    /// timers rather than at the next evaluation. A group due at an evaluation's slot is left
    /// to that evaluation, so the alerts it evaluates are in the message (as when the stages
    /// are driven by hand, and whichever task the runtime wakes first).
    async fn flush_loop(self: Arc<Self>) {
        // Groups already overdue at the start (restored from the state file) are flushed by the
        // first evaluation, with fresh alerts, not in a burst at past times.
        let started = self.clock.now_ms();
        loop {
            let changed = self.wake.notified();
            tokio::pin!(changed);
            // Registered before the log is read, so a group made meanwhile still wakes us.
            changed.as_mut().enable();
            match self.next_flush().filter(|&due| due >= started) {
                Some(due) => tokio::select! {
                    () = self.clock.sleep_until(due) => self.flush_due(due).await,
                    () = changed => {}
                },
                None => changed.await,
            }
        }
    }

    /// When the flush task flushes next: the time the first notification group falls due,
    /// unless a rule group evaluates then (its slots are the multiples of its interval) and
    /// flushes it itself.
    pub fn next_flush(&self) -> Option<i64> {
        let due = lock(&self.log).next_flush_ms()?;
        let evaluated = self
            .groups
            .iter()
            .any(|g| due.rem_euclid(millis(lock(g).interval).max(1)) == 0);
        (!evaluated).then_some(due)
    }

    /// Flushes the notification groups due at `t` between evaluations, queues their messages
    /// and persists the log.
    pub async fn flush_due(&self, t: i64) {
        self.flush(&mut lock(&self.log), t);
        self.persist(t).await;
        self.wake.notify_waiters();
    }

    /// The exemplars of the targets' last pages on the series any of `selectors` selects, in
    /// `[start, end]`: what `/api/v1/query_exemplars` answers (the collector keeps each
    /// target's latest exemplars, not their history).
    pub fn exemplars_matching(
        &self,
        selectors: &[&crate::promql::Selector],
        (start, end): (i64, i64),
    ) -> Vec<Exemplar> {
        self.targets
            .iter()
            .flat_map(|t| lock(&t.exemplars).clone())
            .filter(|e| (start..=end).contains(&e.timestamp_ms))
            .filter(|e| {
                selectors.iter().any(|s| {
                    s.matches(&e.series)
                        && s.name
                            .as_deref()
                            .is_none_or(|n| e.series.get(crate::labels::NAME) == Some(n))
                })
            })
            .collect()
    }

    /// What the targets' last pages say of their metric families (`/api/v1/metadata`): each
    /// family's distinct metadata, at most `per_metric` of them, of `metric` alone if given.
    /// Remote mode scrapes nothing: its error says where the backend is.
    pub fn metric_metadata(
        &self,
        metric: Option<&str>,
        per_metric: usize,
    ) -> Result<BTreeMap<String, BTreeSet<Metadata>>, crate::promql::QueryError> {
        if self.remote.is_some() {
            return Err(self.remote_query_error());
        }
        let mut families: BTreeMap<String, BTreeSet<Metadata>> = BTreeMap::new();
        for target in &self.targets {
            let page = Arc::clone(&lock(&target.metadata));
            let wanted = page
                .iter()
                .filter(|(name, _)| metric.is_none_or(|m| m == name.as_str()));
            for (name, m) in wanted {
                let set = families.entry(name.clone()).or_default();
                if set.len() < per_metric {
                    set.insert(m.clone());
                }
            }
        }
        Ok(families)
    }

    /// The example traces of the firing alert with `labels` (the status page's).
    pub fn examples_of(&self, labels: &Labels) -> Vec<String> {
        lock(&self.examples)
            .get(labels)
            .cloned()
            .unwrap_or_default()
    }

    /// Hands a snapshot of the alert state and the log to the persister; resolves once it is
    /// on disk (the writing is on the persister's thread, never on an async worker).
    async fn persist(&self, t: i64) {
        let written = {
            let _ordered = lock(&self.snapshot_lock);
            let alerts = self
                .groups
                .iter()
                .flat_map(|g| state::snapshot([&*lock(g)]))
                .collect();
            let saved = state::Saved {
                alerts,
                notifications: lock(&self.log).clone(),
                silences: lock(&self.silences).all().cloned().collect(),
                deploys: lock(&self.deploys).clone(),
                verdicts: lock(&self.verdicts).clone(),
                report_sent_ms: *lock(&self.report_sent),
            };
            self.persister.save(saved, t)
        };
        written.await;
    }

    /// Sets the URL this collector is reached at (its listen address) unless
    /// `links.external_url` says otherwise; call it before [`Collector::spawn`]. Without either, messages
    /// carry only absolute links and Alertmanager's `generatorURL` is empty.
    pub fn set_external_url(&self, url: &str) {
        let mut links = self.config.links.clone();
        if links.external.is_none() {
            links.external = crate::links::base("external URL", url).ok();
        }
        let _ = self.links.set(links);
    }

    /// The base URLs of messages' links (the configured ones until
    /// [`Collector::set_external_url`] is called, and from the first use on, fixed).
    pub fn links(&self) -> &Links {
        self.links.get_or_init(|| self.config.links.clone())
    }

    /// Calls `f` with each rule group in turn, under that group's lock (take no other lock
    /// of the collector's before `f` returns, but the ones after `groups` in the lock order).
    pub fn for_each_group(&self, mut f: impl FnMut(&Group)) {
        for group in &self.groups {
            f(&lock(group));
        }
    }

    /// The scrape targets, each with a copy of its state.
    pub fn targets(&self) -> Vec<TargetView<'_>> {
        self.targets
            .iter()
            .map(|t| TargetView {
                job: &t.job,
                target: &t.target,
                status: lock(&t.status).clone(),
            })
            .collect()
    }

    /// Whether the tasks run (`/-/ready`).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The notification log's latest `n` entries, newest first.
    pub fn recent_notifications(&self, n: usize) -> Vec<notify::Entry> {
        lock(&self.log)
            .entries
            .iter()
            .rev()
            .take(n)
            .cloned()
            .collect()
    }

    /// A copy of the deploy log: every instance's version and the changes seen.
    pub fn deploys(&self) -> DeployLog {
        lock(&self.deploys).clone()
    }

    /// A copy of the notification log: every channel's queue and delivery history.
    pub fn notifications(&self) -> notify::Log {
        lock(&self.log).clone()
    }

    /// The state of alerting rule `rule` (the first of that name), if there is one.
    pub fn alert_state(&self, rule: &str) -> Option<rules::State> {
        self.groups.iter().find_map(|g| {
            lock(g).rules.iter().find_map(|r| match &r.kind {
                Kind::Alerting(a) if a.name == rule => Some(a.state()),
                _ => None,
            })
        })
    }

    /// `expr` over `[from, to]`, at `points + 1` evenly spaced times, from the store, each
    /// range widened to the step (so a 30-day chart reads every sample once, downsampled days
    /// included); a point is the worst of the vector (`above`: the largest), NaN for none.
    /// `None` in remote mode (the backend holds the history).
    pub fn chart_over(
        &self,
        expr: &crate::promql::Expr,
        above: bool,
        (from, to): (i64, i64),
        points: i64,
    ) -> Option<Vec<(i64, f64)>> {
        if self.remote.is_some() {
            return None;
        }
        let step = ((to - from) / points.max(1)).max(1);
        let widened = expr.widened(step);
        let value = |t| crate::rules::chart_point(self.query_at(&widened, t), above);
        Some(
            (0..=points)
                .map(|i| from + i * step)
                .map(|t| (t, value(t).unwrap_or(f64::NAN)))
                .collect(),
        )
    }

    /// The status page's chart points of rule `rule` of group `group`, oldest first.
    pub fn chart(&self, group: &str, rule: &str) -> Vec<(i64, f64)> {
        self.history.points(group, rule)
    }

    /// The silences, oldest first.
    pub fn silences(&self) -> Vec<Silence> {
        lock(&self.silences).all().cloned().collect()
    }

    /// Creates or updates a silence; answers once it is on disk.
    pub async fn upsert_silence(&self, new: NewSilence) -> Result<String, silence::Refused> {
        let now = self.clock.now_ms();
        let id = lock(&self.silences).upsert(new, now, silence::new_id)?;
        tracing::info!({ silence.id = %id }, "silence saved");
        self.persist(now).await;
        Ok(id)
    }

    /// Expires silence `id`; answers once that is on disk.
    pub async fn expire_silence(&self, id: &str) -> Result<(), silence::Refused> {
        let now = self.clock.now_ms();
        lock(&self.silences).expire(id, now)?;
        tracing::info!({ silence.id = %id }, "silence expired");
        self.persist(now).await;
        Ok(())
    }

    /// What mutes alerts now; take it once, then ask it about every alert.
    pub fn mutes(&self) -> Mutes<'_> {
        self.mutes_at(self.clock.now_ms())
    }

    fn mutes_at(&self, t: i64) -> Mutes<'_> {
        Mutes::new(
            lock(&self.silences).clone(),
            lock(&self.firing).concat(),
            &self.config.inhibit_rules,
            t,
        )
    }

    /// Keeps history in `dir`: the blocks (kept as `retention` says) and the head's
    /// write-ahead log, replayed into the store so that rules evaluate over the samples from
    /// before a restart, and every sample logged from now on. Call before
    /// [`Collector::spawn`].
    pub fn open_storage(
        &self,
        dir: &std::path::Path,
        retention: crate::store::compact::Retention,
    ) -> Result<crate::store::wal::Replay, crate::store::blocks::OpenError> {
        let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
        let max_series = store.max_series();
        let (opened, replay) = Store::open(
            dir,
            store.range_retention_ms(),
            max_series,
            retention,
            self.clock.now_ms(),
        )?;
        let left_closed = store.left_closed;
        *store = opened;
        store.left_closed = left_closed;
        Ok(replay)
    }

    /// What the store keeps on disk, for the status page: its blocks' range and bytes, its
    /// retention, and the files set aside at start.
    pub fn history(&self) -> Option<HistoryStatus> {
        let store = self.store.read().unwrap_or_else(PoisonError::into_inner);
        let disk = store.disk()?;
        let blocks = disk.all();
        Some(HistoryStatus {
            oldest_ms: disk.oldest_ms(),
            blocks: blocks.len(),
            bytes: disk.bytes() + store.log_bytes(),
            retention: disk.retention(),
            set_aside: disk.set_aside().to_vec(),
        })
    }

    /// Holds at most `max` series (`--storage.max-series`): new series beyond are refused and
    /// counted, and the status page says so.
    /// Evaluates as Prometheus 2.x does (ranges and the lookback closed on the left, its
    /// extrapolation order in `rate`, no tolerance in `histogram_quantile`), rules and queries
    /// alike; Prometheus 3's by default.
    pub fn set_prometheus_2(&self, on: bool) {
        let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
        store.left_closed = on;
    }

    pub fn set_max_series(&self, max: usize) {
        let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
        store.set_max_series(max);
    }

    /// The series limit and the new series it refused since the start.
    pub fn series_limit(&self) -> (usize, u64) {
        let store = self.store.read().unwrap_or_else(PoisonError::into_inner);
        (store.max_series(), store.refused_series())
    }

    /// Evaluates `expr` at `t` over the store, as the query API asks. The store is read for
    /// this one evaluation: a range query, one evaluation per step, lets scrapes in between.
    /// In remote mode the collector holds no samples: an error says where they are.
    pub fn query_at(
        &self,
        expr: &crate::promql::Expr,
        t: i64,
    ) -> Result<crate::promql::Value, crate::promql::QueryError> {
        if self.remote.is_some() {
            return Err(self.remote_query_error());
        }
        let store = self.store.read().unwrap_or_else(PoisonError::into_inner);
        crate::promql::eval(expr, &*store, t)
    }

    /// `expr` over `steps`, over a snapshot of the store ([`Store::snapshot`]): the store's
    /// lock is held only while the snapshot is taken, so a long read (weeks of history, a
    /// report) holds up no scrape and no rule evaluation.
    pub fn query_detached(
        &self,
        expr: &crate::promql::Expr,
        steps: crate::promql::Steps,
    ) -> Result<crate::promql::RangeValue, crate::promql::QueryError> {
        if self.remote.is_some() {
            return Err(self.remote_query_error());
        }
        let snapshot = self.snapshot_for(expr, steps.start, steps.end);
        crate::promql::eval_range(expr, &snapshot, steps, crate::promql::Limits::NONE)
    }

    /// The label sets of the series any of `selectors` selects (every series when there are
    /// none) with samples in `[start, end]`, sorted: what the series and label APIs answer. Read from the blocks' indexes and the
    /// head, over a snapshot (no lock held meanwhile).
    pub fn series_matching(
        &self,
        selectors: &[crate::promql::Selector],
        (start, end): (i64, i64),
    ) -> Result<Vec<Labels>, crate::promql::QueryError> {
        use crate::store::querier::Select as _;
        if self.remote.is_some() {
            return Err(crate::promql::QueryError::Eval(
                "remote mode: this collector keeps no samples; ask the backend it evaluates against (query.url)".into(),
            ));
        }
        let names: Option<Vec<String>> = if selectors.is_empty() {
            None
        } else {
            selectors.iter().map(|s| s.name.clone()).collect()
        };
        let snapshot = self
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot(names.as_deref(), start, end);
        let mut found = std::collections::BTreeSet::new();
        let mut add = |labels: &Labels| {
            found.insert(labels.clone());
        };
        if selectors.is_empty() {
            snapshot.series(None, &|_| true, start, end, &mut add);
        }
        for sel in selectors {
            snapshot.series(
                sel.name.as_deref(),
                &|l| sel.matches(l),
                start,
                end,
                &mut add,
            );
        }
        Ok(found.into_iter().collect())
    }

    /// The collector's clock reading.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The channel names, in delivery-task order (the index [`Collector::deliver_next`] takes).
    pub fn channels(&self) -> Vec<&'static str> {
        self.deliveries.iter().map(|d| d.channel.name()).collect()
    }

    async fn housekeeping(self: Arc<Self>) {
        let writer = BlockWriter::start();
        loop {
            let job = {
                let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
                store.compact(self.clock.now_ms());
                let job = store.plan(self.clock.now_ms());
                self.metrics.observe_store(&store);
                job
            };
            // Blocks are written without the store's lock: scrapes and rules go on meanwhile.
            if let Some(job) = job {
                let (kind, meta) = (job.kind(), job.meta());
                let finished = writer.run(job).await;
                let written = finished.is_some_and(|finished| {
                    let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
                    let outcome = store.finish(finished);
                    self.metrics.observe_store(&store);
                    match outcome {
                        Ok(meta) => {
                            tracing::debug!(
                                { block.kind = kind, block.min_t = meta.min_t, block.max_t = meta.max_t },
                                "block written"
                            );
                            true
                        }
                        Err(e) => {
                            tracing::error!(
                                { block.kind = kind, block.min_t = meta.min_t, block.max_t = meta.max_t },
                                "cannot write a block ({e}): the samples stay where they are and it is tried again"
                            );
                            false
                        }
                    }
                });
                if written {
                    // More may be due (after a long stop, or an import): go on at once.
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            let next = self.clock.now_ms() + 15_000;
            self.clock.sleep_until(next).await;
        }
    }
}

/// Block jobs run on one thread of their own, one at a time: what a job allocates stays in one
/// allocator arena (on the blocking pool, each thread kept its own, and the collector's memory
/// grew with the threads a cut happened to use).
struct BlockWriter(std::sync::mpsc::Sender<BlockJob>);

type BlockJob = (
    crate::store::blocks::Job,
    tokio::sync::oneshot::Sender<crate::store::blocks::Finished>,
);

impl BlockWriter {
    fn start() -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<BlockJob>();
        std::thread::Builder::new()
            .name("obs-collector-blocks".into())
            .spawn(move || {
                // Ends when the housekeeping task (the sender) goes.
                for (job, reply) in queue {
                    let _ = reply.send(job.run());
                }
            })
            .expect("a thread for writing blocks");
        Self(jobs)
    }

    async fn run(&self, job: crate::store::blocks::Job) -> Option<crate::store::blocks::Finished> {
        let (reply, finished) = tokio::sync::oneshot::channel();
        self.0.send((job, reply)).ok()?;
        finished.await.ok()
    }
}

/// What the store keeps on disk (see [`Collector::history`]).
#[derive(Debug, Clone)]
pub struct HistoryStatus {
    /// The oldest block's start.
    pub oldest_ms: Option<i64>,
    pub blocks: usize,
    /// Blocks and the head's log.
    pub bytes: u64,
    pub retention: crate::store::compact::Retention,
    pub set_aside: Vec<crate::store::blocks::SetAside>,
}

/// The remote backend, with each query's duration observed.
struct Timed<'a>(&'a Remote, &'a Histogram);

impl Querier for Timed<'_> {
    fn query<'a>(&'a self, query: Query<'a>, t_ms: i64) -> QueryFuture<'a> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let value = self.0.query(query, t_ms).await;
            if query.text.is_some() {
                self.1.observe(started.elapsed().as_secs_f64());
            }
            value
        })
    }
}

/// How often remote mode reads the deploy log from the backend without rule groups.
const REMOTE_DEPLOYS_EVERY_MS: i64 = 15_000;

fn log_deploy(d: &crate::deploys::Deploy) {
    tracing::info!(
        {
            job = %d.job,
            instance = %d.instance,
            change = ?d.change,
            version = d.version.as_deref().unwrap_or("none"),
            previous = d.previous.as_deref().unwrap_or("none"),
        },
        "deploy seen"
    );
}

/// The labels of the group's firing alerts.
fn firing_alerts(group: &Group) -> Vec<Labels> {
    group
        .alerting_rules()
        .flat_map(|a| a.alerts().filter(|x| x.state == rules::State::Firing))
        .map(|x| x.labels.clone())
        .collect()
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
    longest + 2 * millis(config.max_scrape_interval().max(Duration::from_secs(15)))
}
