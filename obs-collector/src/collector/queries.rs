//! The query API's evaluations, within limits that protect the collector's own work, as
//! Prometheus' `--query.timeout`, `--query.max-samples` and `--query.max-concurrency` do (with
//! their defaults): at most that many evaluations at once (a request waits for a slot until
//! its timeout, then answers 503 `timeout`); each on a blocking thread, over snapshots of the
//! store (no lock held while it reads), so scrapes, rule evaluations and notifications go on;
//! a query whose evaluation at one time reads more samples than the cap (Prometheus counts the
//! samples a query holds at once: for a range query, one step's) stops reading and answers
//! 422; one that runs past the timeout stops at its next step and answers 503.

use std::cell::Cell;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::Collector;
use crate::labels::Labels;
use crate::promql::{Expr, QueryError, Value};
use crate::store::querier::{Select, Visit};

/// The query API's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    pub timeout: Duration,
    pub max_samples: usize,
    pub max_concurrency: usize,
}

impl Default for QueryLimits {
    /// Prometheus' defaults.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_concurrency: 20,
        }
    }
}

/// Why the query API gives no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryFailure {
    /// The evaluation failed (422 `execution`).
    Execution(QueryError),
    /// It read more samples than `--query.max-samples` (422 `execution`).
    TooManySamples,
    /// It waited for a slot or ran longer than `--query.timeout` (503 `timeout`).
    Timeout(&'static str),
}

impl std::fmt::Display for QueryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryFailure::Execution(e) => write!(f, "{e}"),
            QueryFailure::TooManySamples => f.write_str(
                "query processing would load too many samples into memory in query execution",
            ),
            QueryFailure::Timeout(what) => write!(f, "query timed out in {what}"),
        }
    }
}

/// A [`Select`] that counts the samples it hands on and hands on none past `max`.
struct Counted<'a> {
    inner: &'a dyn Select,
    read: Cell<usize>,
    max: usize,
}

impl Select for Counted<'_> {
    fn left_closed(&self) -> bool {
        self.inner.left_closed()
    }

    fn select(
        &self,
        name: Option<&str>,
        keep: &dyn Fn(&Labels) -> bool,
        min_t: i64,
        max_t: i64,
        each: &mut Visit,
    ) {
        if self.read.get() > self.max {
            return;
        }
        self.inner
            .select(name, keep, min_t, max_t, &mut |labels, samples| {
                let read = self.read.get() + samples.len();
                self.read.set(read);
                if read <= self.max {
                    each(labels, samples);
                }
            });
    }
}

impl Collector {
    /// Sets the query API's limits (before the server starts).
    pub fn set_query_limits(&self, limits: QueryLimits) {
        let _ = self.query_limits.set(limits);
    }

    fn query_limits(&self) -> QueryLimits {
        self.query_limits.get().copied().unwrap_or_default()
    }

    /// `expr` at each of `times`, for the query API, within its limits (see the module).
    pub async fn query_api(
        self: &Arc<Self>,
        expr: Expr,
        times: Vec<i64>,
    ) -> Result<Vec<(i64, Value)>, QueryFailure> {
        if self.remote.is_some() {
            // Remote mode keeps no samples: the error says where they are.
            return self
                .query_at(&expr, times.first().copied().unwrap_or_default())
                .map(|_| Vec::new())
                .map_err(QueryFailure::Execution);
        }
        let limits = self.query_limits();
        let started = Instant::now();
        let slots = Arc::clone(self.query_slots(limits.max_concurrency));
        let permit = tokio::time::timeout(limits.timeout, slots.acquire_owned())
            .await
            .map_err(|_| QueryFailure::Timeout("the queue"))?
            .map_err(|_| QueryFailure::Timeout("the queue"))?;
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let deadline = started + limits.timeout;
            // One snapshot for every step (a range query's steps read one view of the store,
            // and the head is copied once, not once a step).
            let first = times.iter().copied().min().unwrap_or_default();
            let snapshot = me.snapshot_for(&expr, first);
            let mut out = Vec::with_capacity(times.len());
            for t in times {
                if Instant::now() > deadline {
                    return Err(QueryFailure::Timeout("expression evaluation"));
                }
                let counted = Counted {
                    inner: &snapshot,
                    read: Cell::new(0),
                    max: limits.max_samples,
                };
                let value = crate::promql::eval(&expr, &counted, t);
                if counted.read.get() > limits.max_samples {
                    return Err(QueryFailure::TooManySamples);
                }
                out.push((t, value.map_err(QueryFailure::Execution)?));
            }
            Ok(out)
        })
        .await
        .unwrap_or_else(|e| {
            Err(QueryFailure::Execution(QueryError::Eval(format!(
                "the evaluation failed: {e}"
            ))))
        })
    }

    /// The slots of the query API, made with `n` the first time.
    fn query_slots(&self, n: usize) -> &Arc<tokio::sync::Semaphore> {
        self.query_slots
            .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(n.max(1))))
    }

    /// What evaluating `expr` at `t` (or at any later time) reads, as a snapshot of the store:
    /// the names its selectors read, from as far back as its ranges, offsets and the lookback
    /// reach from `t`.
    pub(super) fn snapshot_for(&self, expr: &Expr, t: i64) -> crate::store::snapshot::Snapshot {
        let selectors = expr.selectors();
        let names: Option<Vec<String>> = selectors.iter().map(|s| s.name.clone()).collect();
        let offset = selectors
            .iter()
            .map(|s| s.offset_ms)
            .max()
            .unwrap_or(0)
            .max(0);
        let min_t = t - expr.max_range_ms() - crate::store::LOOKBACK_MS - offset;
        self.store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot(names.as_deref(), min_t, i64::MAX)
    }
}
