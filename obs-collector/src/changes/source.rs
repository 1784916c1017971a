//! Where verdicts and reports read their numbers: PromQL text through [`Source`], answered by
//! the collector's own store or by a Prometheus-compatible backend (remote mode, `--from`), so
//! both give the same report from the same samples. Every read is a handful of whole-window
//! queries (an `increase` over the window at its end), never per-route or per-instance ones:
//! [`read_windows`] is 2 queries, whatever the number of routes.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::stats::Window;
use crate::labels::Labels;
use crate::promql::remote::{RangeSeries, Remote};
use crate::promql::{quote, QueryError, RangeValue, Sample, Series, Steps, Value};

/// The histogram obs' middleware records (OpenTelemetry's semantic conventions).
pub const HISTOGRAM: &str = "http_server_request_duration_seconds";
/// Routes read per job and window, the busiest first: a service with thousands of route
/// templates costs a bounded report.
pub const MAX_ROUTES: usize = 1000;

/// A boxed answer.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, QueryError>> + Send + 'a>>;

/// Evaluates PromQL text: an instant vector at a time, or a range.
pub trait Source: Send + Sync {
    fn instant<'a>(&'a self, query: &'a str, t_ms: i64) -> Answer<'a, Vec<Sample>>;
    fn range<'a>(
        &'a self,
        query: &'a str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Answer<'a, Vec<RangeSeries>>;
}

impl<S: Source + ?Sized> Source for &S {
    fn instant<'a>(&'a self, query: &'a str, t_ms: i64) -> Answer<'a, Vec<Sample>> {
        (**self).instant(query, t_ms)
    }

    fn range<'a>(
        &'a self,
        query: &'a str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Answer<'a, Vec<RangeSeries>> {
        (**self).range(query, start_ms, end_ms, step_ms)
    }
}

/// A source that evaluates locally: the function evaluates a compiled expression over steps
/// (over the collector's store, or a store opened by the `report` command); an instant is one
/// step, a range is evaluated in one pass (each sample read once).
pub struct Evaluated<F>(pub F);

impl<F> Evaluated<F>
where
    F: Fn(&crate::promql::Expr, Steps) -> Result<RangeValue, QueryError> + Send + Sync,
{
    fn matrix(&self, query: &str, steps: Steps) -> Result<Vec<Series>, QueryError> {
        let expr = crate::promql::compile(query).map_err(|e| QueryError::Eval(e.0))?;
        match (self.0)(&expr, steps)? {
            RangeValue::Matrix(m) => Ok(m),
            RangeValue::Scalar(_) => Err(QueryError::Eval(format!("{query}: not a vector"))),
        }
    }
}

impl<F> Source for Evaluated<F>
where
    F: Fn(&crate::promql::Expr, Steps) -> Result<RangeValue, QueryError> + Send + Sync,
{
    fn instant<'a>(&'a self, query: &'a str, t_ms: i64) -> Answer<'a, Vec<Sample>> {
        let vector = self.matrix(query, Steps::instant(t_ms)).map(|m| {
            m.into_iter()
                .filter_map(|s| {
                    Some(Sample {
                        value: s.points[0]?,
                        labels: s.labels,
                    })
                })
                .collect()
        });
        Box::pin(std::future::ready(vector))
    }

    fn range<'a>(
        &'a self,
        query: &'a str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Answer<'a, Vec<RangeSeries>> {
        let steps = Steps {
            start: start_ms,
            end: end_ms,
            step: step_ms.max(1),
        };
        let series = self.matrix(query, steps).map(|m| {
            m.into_iter()
                .map(|s| {
                    let points = s
                        .points
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| Some((steps.time(i), (*p)?)))
                        .collect();
                    (s.labels, points)
                })
                .collect()
        });
        Box::pin(std::future::ready(series))
    }
}

impl Source for Remote {
    fn instant<'a>(&'a self, query: &'a str, t_ms: i64) -> Answer<'a, Vec<Sample>> {
        Box::pin(async move {
            match Remote::instant(self, query, t_ms).await? {
                Value::Vector(v) => Ok(v),
                Value::Scalar(_) => Err(QueryError::Eval(format!("{query}: not a vector"))),
            }
        })
    }

    fn range<'a>(
        &'a self,
        query: &'a str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Answer<'a, Vec<RangeSeries>> {
        let step = std::time::Duration::from_millis(step_ms.max(1) as u64);
        Box::pin(Remote::range(self, query, start_ms, end_ms, step))
    }
}

/// A source that counts the queries sent through it (the closing line of a report, and the
/// bound tests hold it to).
pub struct Counted<'s> {
    inner: &'s dyn Source,
    queries: AtomicUsize,
}

impl<'s> Counted<'s> {
    pub fn new(inner: &'s dyn Source) -> Self {
        Self {
            inner,
            queries: AtomicUsize::new(0),
        }
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Source for Counted<'_> {
    fn instant<'a>(&'a self, query: &'a str, t_ms: i64) -> Answer<'a, Vec<Sample>> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.inner.instant(query, t_ms)
    }

    fn range<'a>(
        &'a self,
        query: &'a str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Answer<'a, Vec<RangeSeries>> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.inner.range(query, start_ms, end_ms, step_ms)
    }
}

/// Which requests a read covers: a job (every job when `None`), and some of its instances
/// (all when `None`).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub job: Option<&'a str>,
    pub instances: Option<&'a [String]>,
}

impl Scope<'_> {
    /// The selector's matchers, inside `{}`.
    fn matchers(&self) -> String {
        let mut m = Vec::new();
        if let Some(job) = self.job {
            m.push(format!("job={}", quote(job)));
        }
        if let Some(instances) = self.instances {
            let alternatives: Vec<String> = instances.iter().map(|i| regex::escape(i)).collect();
            m.push(format!("instance=~{}", quote(&alternatives.join("|"))));
        }
        m.join(",")
    }
}

/// A route's key: the job it belongs to, and `METHOD template`.
pub type RouteKey = (String, String);

/// The [`RouteKey`] of a series of the RED histogram (or of a result grouped by its labels).
pub fn route_key(labels: &Labels) -> RouteKey {
    (
        labels.get("job").unwrap_or_default().to_owned(),
        format!(
            "{} {}",
            labels.get("http_request_method").unwrap_or("_OTHER"),
            labels.get("http_route").unwrap_or("")
        ),
    )
}

/// Each route's requests in `(from_ms, to_ms]` within `scope`, by (job, `METHOD template`):
/// two queries (the buckets, the 5xx count), the [`MAX_ROUTES`] busiest routes per job.
pub async fn read_windows(
    source: &dyn Source,
    scope: Scope<'_>,
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<RouteKey, Window>, QueryError> {
    let range = format!("{}s", ((to_ms - from_ms) / 1000).max(1));
    let sel = scope.matchers();
    let sep = if sel.is_empty() { "" } else { "," };
    let buckets = format!(
        "sum by (job, http_request_method, http_route, le) (increase({HISTOGRAM}_bucket{{{sel}}}[{range}]))"
    );
    let errors = format!(
        "sum by (job, http_request_method, http_route) (increase({HISTOGRAM}_count{{{sel}{sep}http_response_status_code=~\"5..\"}}[{range}]))"
    );
    let mut windows: BTreeMap<RouteKey, Window> = BTreeMap::new();
    for s in source.instant(&buckets, to_ms).await? {
        let Some(le) = s.labels.get("le").and_then(parse_le) else {
            continue;
        };
        if !s.value.is_finite() {
            continue;
        }
        let w = windows.entry(route_key(&s.labels)).or_default();
        w.buckets.push((le, s.value));
        if le == f64::INFINITY {
            w.requests = s.value;
        }
    }
    for s in source.instant(&errors, to_ms).await? {
        if let Some(w) = windows.get_mut(&route_key(&s.labels)) {
            w.errors = s.value.max(0.0);
        }
    }
    for w in windows.values_mut() {
        w.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(busiest(windows))
}

/// The [`MAX_ROUTES`] busiest routes of each job.
fn busiest(windows: BTreeMap<RouteKey, Window>) -> BTreeMap<RouteKey, Window> {
    let mut by_job: BTreeMap<String, Vec<(RouteKey, Window)>> = BTreeMap::new();
    for (k, w) in windows {
        by_job.entry(k.0.clone()).or_default().push((k, w));
    }
    by_job
        .into_values()
        .flat_map(|mut routes| {
            routes.sort_by(|a, b| b.1.requests.total_cmp(&a.1.requests));
            routes.truncate(MAX_ROUTES);
            routes
        })
        .collect()
}

/// A bucket bound as the exposition writes it (`+Inf`, `0.25`, `2.5e-1`).
fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        s => s.parse().ok().filter(|v: &f64| !v.is_nan()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_routes_are_cut_to_the_busiest() {
        let mut windows = BTreeMap::new();
        for i in 0..10_000 {
            let w = Window {
                buckets: vec![(f64::INFINITY, i as f64)],
                requests: i as f64,
                errors: 0.0,
            };
            windows.insert(("shop".to_owned(), format!("GET /r{i}")), w.clone());
            if i < 10 {
                windows.insert(("other".to_owned(), format!("GET /r{i}")), w);
            }
        }
        let kept = busiest(windows);
        assert_eq!(kept.keys().filter(|k| k.0 == "shop").count(), MAX_ROUTES);
        assert_eq!(kept.keys().filter(|k| k.0 == "other").count(), 10);
        assert!(kept
            .values()
            .all(|w| w.requests >= (10_000 - MAX_ROUTES) as f64 || w.requests < 10.0));
    }

    #[test]
    fn a_scope_quotes_what_it_selects() {
        let instances = vec!["10.0.0.1:9464".to_owned(), "a\"b|c".to_owned()];
        let scope = Scope {
            job: Some("shop\"x"),
            instances: Some(&instances),
        };
        let m = scope.matchers();
        assert_eq!(
            m,
            r#"job="shop\"x",instance=~"10\\.0\\.0\\.1:9464|a\"b\\|c""#
        );
        // The text compiles, and selects exactly those instances.
        let q = format!("{HISTOGRAM}_count{{{m}}}");
        assert!(crate::promql::compile(&q).is_ok(), "{q}");
    }
}
