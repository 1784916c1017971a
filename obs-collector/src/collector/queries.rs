//! The query API's evaluations, within limits that protect the collector's own work, as
//! Prometheus' `--query.timeout`, `--query.max-samples` and `--query.max-concurrency` do (with
//! their defaults): at most that many evaluations at once (a request waits for a slot until
//! its timeout, then answers 503 `timeout`); each on a blocking thread, over snapshots of the
//! store (no lock held while it reads), so scrapes, rule evaluations and notifications go on;
//! a query whose evaluation at one time reads more samples than the cap (Prometheus counts the
//! samples a query holds at once: for a range query, one step's) stops reading and answers
//! 422; one that runs past the timeout stops at its next step and answers 503.

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
    ) -> Result<Value, QueryFailure> {
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
    ) -> Result<RangeValue, QueryFailure> {
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
    ) -> Result<T, QueryFailure> {
        if self.remote.is_some() {
            // Remote mode keeps no samples: the error says where they are.
            return Err(QueryFailure::Execution(self.remote_query_error()));
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
            let snapshot = me.snapshot_for(&expr, start, end);
            let limits = Limits {
                max_samples: limits.max_samples,
                deadline: Some(started + limits.timeout),
            };
            evaluate(&expr, &snapshot, limits).map_err(|e| match e {
                QueryError::TooManySamples => QueryFailure::TooManySamples,
                QueryError::Timeout => QueryFailure::Timeout("expression evaluation"),
                e => QueryFailure::Execution(e),
            })
        })
        .await
        .unwrap_or_else(|e| {
            Err(QueryFailure::Execution(QueryError::Eval(format!(
                "the evaluation failed: {e}"
            ))))
        })
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
