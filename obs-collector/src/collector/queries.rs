//! The query API's evaluations, within limits that protect the collector's own work, as
//! Prometheus' `--query.timeout`, `--query.max-samples` and `--query.max-concurrency` do (with
//! their defaults but one): at most that many evaluations at once (a request waits for a slot
//! until its timeout, then answers 503 `timeout`), by default as many as the machine has cores
//! (see [`cores`]); each on a query thread of the collector's own, over snapshots of the
//! store (no lock held while it reads), so scrapes, rule evaluations and notifications go on;
//! a query that would hold more samples than the cap (as Prometheus counts them: the results
//! it has gathered plus what one step reads) stops and answers 422; one that runs past the
//! timeout stops at its next series and answers 503. The engine enforces both
//! ([`crate::promql::Limits`]); the errors are [`QueryError::TooManySamples`] and
//! [`QueryError::Timeout`].

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::Collector;
use crate::promql::{Expr, Limits, QueryError, RangeValue, Steps, Value};
use crate::store::querier::Select;

/// The query API's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    pub timeout: Duration,
    pub max_samples: usize,
    pub max_concurrency: usize,
}

impl Default for QueryLimits {
    /// Prometheus' defaults, but evaluations at once: the machine's cores (see the module).
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_concurrency: cores(),
        }
    }
}

/// An evaluation, run on a query thread.
type Job = Box<dyn FnOnce() + Send>;

/// The query API's slots: a request holds one while its query waits for a thread and runs,
/// and as many threads of their own as slots, which live as long as the collector. Threads
/// made per query (a blocking pool's) would each take a heap of their own from the allocator,
/// which keeps what it frees: the dashboard over a week added 85 MiB that way, against 52 on
/// two threads that live on.
pub(super) struct Slots {
    free: Arc<tokio::sync::Semaphore>,
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

impl Slots {
    fn new(n: usize) -> Slots {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let mut started = 0;
        for i in 0..n {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("query-{i}"))
                .spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(job) = job else {
                        // The collector is gone.
                        return;
                    };
                    // A panic fails that query (its answer is dropped), not the thread.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                });
            match spawned {
                Ok(_) => started += 1,
                // Fewer slots (none: every query waits out its timeout and answers 503).
                Err(e) => tracing::error!(error = %e, "a query thread could not start"),
            }
        }
        Slots {
            free: Arc::new(tokio::sync::Semaphore::new(started)),
            jobs: std::sync::Mutex::new(tx),
        }
    }
}

/// The evaluations at once by default: the machine's cores, where Prometheus' default is 20.
/// An evaluation is all CPU on a thread of its own; Go multiplexes Prometheus' 20 onto as many
/// threads as cores, where 20 threads here would each take longer and hold their memory (and
/// a heap of their own in the allocator) together: a dashboard's six panels at once on 2 cores
/// took as long in all and held three times the memory. The others wait their turn in order.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Collector {
    /// Sets the query API's limits (before the server starts).
    pub fn set_query_limits(&self, limits: QueryLimits) {
        let _ = self.query_limits.set(limits);
    }

    fn query_limits(&self) -> QueryLimits {
        self.query_limits.get().copied().unwrap_or_default()
    }

    /// `expr` at `t`, for the query API, within its limits (see the module).
    pub async fn query_instant_api(
        self: &Arc<Self>,
        expr: Expr,
        t: i64,
    ) -> Result<Value, QueryError> {
        self.limited(expr, (t, t), move |expr, store, limits| {
            crate::promql::eval_instant(expr, store, t, limits)
        })
        .await
    }

    /// `expr` at each of `steps`, for the query API, within its limits (see the module).
    pub async fn query_range_api(
        self: &Arc<Self>,
        expr: Expr,
        steps: Steps,
    ) -> Result<RangeValue, QueryError> {
        self.limited(
            expr,
            (steps.start, steps.end),
            move |expr, store, limits| crate::promql::eval_range(expr, store, steps, limits),
        )
        .await
    }

    /// `evaluate` on a query thread over a snapshot of what `expr` reads from `start` to
    /// `end`, once a slot is free, within the limits.
    async fn limited<T: Send + 'static>(
        self: &Arc<Self>,
        expr: Expr,
        (start, end): (i64, i64),
        evaluate: impl FnOnce(&Expr, &dyn Select, Limits) -> Result<T, QueryError> + Send + 'static,
    ) -> Result<T, QueryError> {
        if self.remote.is_some() {
            // Remote mode keeps no samples: the error says where they are.
            return Err(self.remote_query_error());
        }
        self.on_query_thread(move |me, limits| {
            let snapshot = me.snapshot_for(&expr, start, end);
            evaluate(&expr, &snapshot, limits)
        })
        .await
    }

    /// The series any of `selectors` selects with samples in `[start, end]`, for the series
    /// and label APIs ([`Collector::series_matching`]), on a query thread once a slot is free:
    /// weeks of every series' index is a query's work too.
    pub async fn series_api(
        self: &Arc<Self>,
        selectors: Vec<crate::promql::Selector>,
        range: (i64, i64),
    ) -> Result<Vec<crate::labels::Labels>, QueryError> {
        self.on_query_thread(move |me, _| me.series_matching(&selectors, range))
            .await
    }

    /// `work` on a query thread once a slot is free (waiting at most the timeout), with the
    /// limits it runs within.
    async fn on_query_thread<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Collector, Limits) -> Result<T, QueryError> + Send + 'static,
    ) -> Result<T, QueryError> {
        let limits = self.query_limits();
        let started = Instant::now();
        let slots = self.query_slots(limits.max_concurrency);
        let permit = tokio::time::timeout(limits.timeout, Arc::clone(&slots.free).acquire_owned())
            .await
            .map_err(|_| QueryError::Timeout("the queue"))?
            .map_err(|_| QueryError::Timeout("the queue"))?;
        let me = Arc::clone(self);
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The slot goes with the work: a request given up (a closed dashboard) frees it only
        // when its evaluation stops.
        let job: Job = Box::new(move || {
            let _permit = permit;
            let limits = Limits {
                max_samples: limits.max_samples,
                deadline: Some(started + limits.timeout),
            };
            let _ = tx.send(work(&me, limits));
        });
        let sent = slots
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job);
        match sent {
            Ok(()) => rx.await.unwrap_or_else(|_| {
                Err(QueryError::Eval(
                    "the evaluation failed (a bug: it panicked)".into(),
                ))
            }),
            Err(_) => Err(QueryError::Eval("the query threads are gone".into())),
        }
    }

    /// Why the query API does not answer in remote mode, and where to ask instead.
    pub(super) fn remote_query_error(&self) -> QueryError {
        let address = self
            .remote
            .as_ref()
            .map(|r| r.address())
            .unwrap_or_default();
        QueryError::Eval(format!(
            "remote mode: this collector keeps no samples; point Grafana (and queries) at the backend it evaluates against: {address}"
        ))
    }

    /// The slots of the query API, made with `n` the first time.
    fn query_slots(&self, n: usize) -> &Slots {
        self.query_slots.get_or_init(|| Slots::new(n.max(1)))
    }

    /// What evaluating `expr` from `start` to `end` reads, as a snapshot of the store: the
    /// names its selectors read, from as far back as its ranges, offsets, subqueries, `@` and
    /// the lookback reach.
    pub(super) fn snapshot_for(
        &self,
        expr: &Expr,
        start: i64,
        end: i64,
    ) -> crate::store::snapshot::Snapshot {
        let names: Option<Vec<String>> = expr.selectors().iter().map(|s| s.name.clone()).collect();
        let min_t = expr.earliest(start, end);
        self.store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot(names.as_deref(), min_t, i64::MAX)
    }
}
