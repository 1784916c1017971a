//! The query API's evaluations, within limits that protect the collector's own work, as
//! Prometheus' `--query.timeout`, `--query.max-samples` and `--query.max-concurrency` do (with
//! their defaults): at most that many evaluations at once (a request waits for a slot until
//! its timeout, then answers 503 `timeout`); each on a blocking thread, over snapshots of the
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
    /// Prometheus' defaults.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_concurrency: 20,
        }
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

    /// `evaluate` on a blocking thread over a snapshot of what `expr` reads from `start` to
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
        let limits = self.query_limits();
        let started = Instant::now();
        let slots = Arc::clone(self.query_slots(limits.max_concurrency));
        let permit = tokio::time::timeout(limits.timeout, slots.acquire_owned())
            .await
            .map_err(|_| QueryError::Timeout("the queue"))?
            .map_err(|_| QueryError::Timeout("the queue"))?;
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let snapshot = me.snapshot_for(&expr, start, end);
            let limits = Limits {
                max_samples: limits.max_samples,
                deadline: Some(started + limits.timeout),
            };
            evaluate(&expr, &snapshot, limits)
        })
        .await
        .unwrap_or_else(|e| Err(QueryError::Eval(format!("the evaluation failed: {e}"))))
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
    fn query_slots(&self, n: usize) -> &Arc<tokio::sync::Semaphore> {
        self.query_slots
            .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(n.max(1))))
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
