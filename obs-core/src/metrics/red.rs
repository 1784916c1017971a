//! The RED recorder behind `obs.layer()`: one histogram series per label set, bounded.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec};

use super::exemplar::{Exemplar, Slot, SpanIds};
use super::names;
use super::settings::MetricsSettings;
use crate::request::{Method, Outcome, RequestInfo, Scheme};
use crate::sync::{read, write};

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    method: Method,
    scheme: Scheme,
    outcome: Outcome,
    route: Option<Arc<str>>,
}

/// The labels a request is recorded under: its method, scheme and route template.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Labels<'a> {
    pub method: Method,
    pub scheme: Scheme,
    pub route: Option<&'a str>,
}

impl<'a> Labels<'a> {
    /// The labels of a request the middleware handles.
    pub fn of(info: &'a RequestInfo) -> Self {
        Self {
            method: info.method,
            scheme: info.scheme,
            route: info.route.as_deref(),
        }
    }
}

/// Requests in flight; decrements when dropped, so a cancelled request cannot leak.
pub(crate) struct ActiveGuard(IntGauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

const ACTIVE_SLOTS: usize = (names::KNOWN_METHODS.len() + 1) * 2;

/// One label set's histogram and, per bucket (`+Inf` last), its latest exemplar.
struct Series {
    histogram: Histogram,
    exemplars: Box<[Slot]>,
}

impl Series {
    fn observe(&self, buckets: &[f64], secs: f64, exemplar: Option<(SpanIds, u64)>) {
        self.histogram.observe(secs);
        if let Some((ids, timestamp_ms)) = exemplar {
            // The bucket the value counts in first: the lowest upper bound at or above it.
            let bucket = buckets.partition_point(|b| *b < secs);
            self.exemplars[bucket].store(&Exemplar {
                ids,
                value: secs,
                timestamp_ms,
            });
        }
    }
}

/// The label pairs of a collected metric, as exemplars are looked up by them.
pub(crate) type LabelKey = Vec<(String, String)>;

/// The RED recorder. Hot path: two read-locked hash lookups, an atomic histogram update and,
/// for a sampled request when spans are exported, a lock-free exemplar write.
pub(crate) struct Red {
    desc: Desc,
    buckets: Vec<f64>,
    /// Exemplars are kept only when spans are exported: an exemplar must open a trace.
    exemplars: bool,
    /// A fixed monotonic origin and the wall clock's offset from it (milliseconds), to date
    /// exemplars from a monotonic reading; the offset is taken again at every scrape, so a
    /// stepped or slewed wall clock (NTP, a resumed VM) is followed within one scrape.
    origin: Instant,
    wall_offset_ms: AtomicI64,
    max_label_sets: usize,
    routes: RwLock<HashSet<Arc<str>, FastHash>>,
    series: RwLock<HashMap<Key, Series, FastHash>>,
    overflow: IntCounter,
    overflow_route: Arc<str>,
    active_vec: IntGaugeVec,
    active: [OnceLock<IntGauge>; ACTIVE_SLOTS],
}

impl Red {
    pub fn new(settings: &MetricsSettings, active_vec: IntGaugeVec) -> Self {
        let desc = Desc::new(
            names::HTTP_SERVER_REQUEST_DURATION.to_owned(),
            HELP.to_owned(),
            vec![],
            HashMap::new(),
        )
        .expect("valid metric");
        let overflow = IntCounter::new(
            names::OBS_METRICS_OVERFLOW_TOTAL,
            "Requests and jobs recorded under http_route or messaging_destination_name \"_overflow\" because the label-set cap was reached.",
        )
        .expect("valid metric");
        Self {
            desc,
            buckets: settings.buckets.clone(),
            exemplars: settings.exemplars,
            origin: Instant::now(),
            wall_offset_ms: AtomicI64::new(epoch_ms(SystemTime::now()) as i64),
            max_label_sets: settings.max_label_sets,
            routes: RwLock::default(),
            series: RwLock::default(),
            overflow,
            overflow_route: Arc::from(names::ROUTE_OVERFLOW),
            active_vec,
            active: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    pub fn desc(&self) -> &Desc {
        &self.desc
    }

    pub fn overflow_counter(&self) -> IntCounter {
        self.overflow.clone()
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn active(&self, method: Method, scheme: Scheme) -> ActiveGuard {
        let slot = method.index() * 2 + scheme as usize;
        let gauge = self.active[slot].get_or_init(|| {
            self.active_vec
                .with_label_values(&[method.as_str(), scheme.as_str()])
        });
        gauge.inc();
        ActiveGuard(gauge.clone())
    }

    /// Records one finished request; inside its span, the span's ids become the bucket's
    /// exemplar when the trace is sampled and exported. `ended` is when it ended, if the caller
    /// read the clock already (a clock read costs tens of nanoseconds on some machines).
    pub fn observe(
        &self,
        labels: &Labels<'_>,
        outcome: Outcome,
        secs: f64,
        ended: Option<Instant>,
    ) {
        let exemplar = if self.exemplars {
            SpanIds::current_sampled().map(|ids| (ids, self.wall_ms(ended)))
        } else {
            None
        };
        let (route, mut folded) = match labels.route.map(|r| self.intern(r)) {
            Some((r, folded)) => (Some(r), folded),
            None => (None, false),
        };
        let mut key = Key {
            method: labels.method,
            scheme: labels.scheme,
            outcome,
            route,
        };
        let recorded = 'read: {
            let series = read(&self.series);
            if let Some(s) = series.get(&key) {
                s.observe(&self.buckets, secs, exemplar);
                break 'read true;
            }
            if series.len() >= self.max_label_sets {
                folded = true;
                key.route = Some(Arc::clone(&self.overflow_route));
                if let Some(s) = series.get(&key) {
                    s.observe(&self.buckets, secs, exemplar);
                    break 'read true;
                }
            }
            false
        };
        if !recorded {
            let mut series = write(&self.series);
            series
                .entry(key)
                .or_insert_with_key(|key| self.series(key))
                .observe(&self.buckets, secs, exemplar);
        }
        if folded {
            self.overflow.inc();
        }
    }

    /// The shared `Arc<str>` for a route template, and whether it was folded into `_overflow`
    /// because the cap on distinct routes was reached.
    fn intern(&self, route: &str) -> (Arc<str>, bool) {
        if let Some(r) = read(&self.routes).get(route) {
            return (Arc::clone(r), false);
        }
        let mut routes = write(&self.routes);
        if let Some(r) = routes.get(route) {
            return (Arc::clone(r), false);
        }
        if routes.len() >= self.max_label_sets {
            return (Arc::clone(&self.overflow_route), true);
        }
        let r: Arc<str> = Arc::from(route);
        routes.insert(Arc::clone(&r));
        (r, false)
    }

    fn series(&self, key: &Key) -> Series {
        Series {
            histogram: self.histogram(key),
            exemplars: (0..=self.buckets.len()).map(|_| Slot::default()).collect(),
        }
    }

    fn histogram(&self, key: &Key) -> Histogram {
        let opts = HistogramOpts::new(names::HTTP_SERVER_REQUEST_DURATION, HELP)
            .const_labels(label_pairs(key).into_iter().collect())
            .buckets(self.buckets.clone());
        Histogram::with_opts(opts).expect("buckets validated by config")
    }

    /// One family holding every series (series differ in which labels they have).
    pub fn collect(&self) -> Option<MetricFamily> {
        let series = read(&self.series);
        let mut family: Option<MetricFamily> = None;
        for s in series.values() {
            for mut f in s.histogram.collect() {
                match &mut family {
                    Some(all) => all.mut_metric().extend(f.take_metric()),
                    None => family = Some(f),
                }
            }
        }
        family
    }

    /// The wall-clock time of `ended` (its monotonic reading plus the last offset), or now.
    fn wall_ms(&self, ended: Option<Instant>) -> u64 {
        match ended {
            Some(at) => {
                let since_origin = at.saturating_duration_since(self.origin).as_millis() as i64;
                (since_origin + self.wall_offset_ms.load(Ordering::Relaxed)).max(0) as u64
            }
            None => epoch_ms(SystemTime::now()),
        }
    }

    /// Takes the wall clock's offset from the monotonic origin again.
    fn resync_wall_clock(&self) {
        let now = Instant::now()
            .saturating_duration_since(self.origin)
            .as_millis() as i64;
        let offset = epoch_ms(SystemTime::now()) as i64 - now;
        self.wall_offset_ms.store(offset, Ordering::Relaxed);
    }

    /// Each series' exemplars (per bucket, `+Inf` last), by the series' label pairs.
    pub fn exemplars(&self) -> HashMap<LabelKey, Vec<Option<Exemplar>>> {
        // Once per scrape: the exemplars written from now on follow the wall clock.
        self.resync_wall_clock();
        let series = read(&self.series);
        series
            .iter()
            .filter_map(|(key, s)| {
                let slots: Vec<Option<Exemplar>> = s.exemplars.iter().map(Slot::load).collect();
                let any = slots.iter().any(Option::is_some);
                any.then(|| (label_pairs(key), slots))
            })
            .collect()
    }
}

/// The labels of a series, sorted by name as the registry's metrics have them.
fn label_pairs(key: &Key) -> LabelKey {
    let mut pairs = vec![
        (
            names::HTTP_REQUEST_METHOD.to_owned(),
            key.method.as_str().to_owned(),
        ),
        (names::URL_SCHEME.to_owned(), key.scheme.as_str().to_owned()),
    ];
    if let Some(route) = &key.route {
        pairs.push((names::HTTP_ROUTE.to_owned(), route.to_string()));
    }
    if let Some(status) = key.outcome.status() {
        pairs.push((
            names::HTTP_RESPONSE_STATUS_CODE.to_owned(),
            status.to_string(),
        ));
    }
    if let Some(error) = key.outcome.error_type() {
        pairs.push((names::ERROR_TYPE.to_owned(), error.to_string()));
    }
    pairs.sort();
    pairs
}

/// The label pairs of a collected `metric` (sorted by name, as [`label_pairs`]).
pub(crate) fn label_key(metric: &prometheus::proto::Metric) -> LabelKey {
    metric
        .get_label()
        .iter()
        .map(|l| (l.name().to_owned(), l.value().to_owned()))
        .collect()
}

/// Milliseconds since the epoch of `at` (an exemplar's time), now without it.
fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

const HELP: &str = "Duration of HTTP server requests.";

/// The Fx hash (rustc's): the keys are route templates and small enums chosen by the service,
/// not by clients, so hash flooding is not a concern and SipHash's cost is not needed.
type FastHash = rustc_hash::FxBuildHasher;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn red_of(config: Config) -> Red {
        let settings = config.resolve(&|_| None);
        let active = IntGaugeVec::new(prometheus::Opts::new("a", "a"), &["m", "s"]).unwrap();
        Red::new(&settings.metrics, active)
    }

    fn red(max: usize) -> Red {
        red_of(Config::new().max_label_sets(max))
    }

    #[test]
    fn methods_are_normalised() {
        assert_eq!(Method::of(&http::Method::GET).as_str(), "GET");
        assert_eq!(
            Method::of(&http::Method::from_bytes(b"QUERY").unwrap()).as_str(),
            "QUERY"
        );
        assert_eq!(
            Method::of(&http::Method::from_bytes(b"BREW").unwrap()).as_str(),
            "_OTHER"
        );
        assert_eq!(
            Method::of(&http::Method::from_bytes(b"get").unwrap()).as_str(),
            "_OTHER"
        );
    }

    #[test]
    fn outcomes_map_to_status_and_error_type() {
        let s = |o: Outcome| (o.status(), o.error_type().map(|e| e.to_string()));
        assert_eq!(s(Outcome::Status(200)), (Some(200), None));
        assert_eq!(s(Outcome::Status(404)), (Some(404), None));
        assert_eq!(s(Outcome::Status(503)), (Some(503), Some("503".into())));
        assert_eq!(s(Outcome::Panic), (Some(500), Some("panic".into())));
        assert_eq!(s(Outcome::Cancelled), (None, Some("cancelled".into())));
        assert_eq!(s(Outcome::ServiceError), (None, Some("_OTHER".into())));
    }

    #[test]
    fn the_cap_folds_new_label_sets_into_overflow() {
        let red = red(3);
        let get = Method::of(&http::Method::GET);
        for i in 0..10 {
            let route = format!("/r{i}");
            let labels = Labels {
                method: get,
                scheme: Scheme::Http,
                route: Some(&route),
            };
            red.observe(&labels, Outcome::Status(200), 0.01, None);
        }
        let family = red.collect().unwrap();
        let routes: HashSet<String> = family
            .get_metric()
            .iter()
            .flat_map(|m| {
                m.get_label()
                    .iter()
                    .filter(|l| l.name() == "http_route")
                    .map(|l| l.value().to_owned())
            })
            .collect();
        assert_eq!(
            routes,
            ["/r0", "/r1", "/r2", "_overflow"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        assert_eq!(red.overflow.get(), 7);
        let total: u64 = family
            .get_metric()
            .iter()
            .map(|m| m.get_histogram().get_sample_count())
            .sum();
        assert_eq!(total, 10, "no request is lost by folding");
    }

    /// Records a 500 of `secs`, inside a span with ids `n` and `flags` when `span` is given.
    fn observe_500(red: &Red, span: Option<(u128, opentelemetry::trace::TraceFlags)>, secs: f64) {
        use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceId, TraceState};
        let _cx = span.map(|(n, flags)| {
            let ids = SpanContext::new(
                TraceId::from(n),
                SpanId::from(n as u64),
                flags,
                true,
                TraceState::NONE,
            );
            opentelemetry::Context::new()
                .with_remote_span_context(ids)
                .attach()
        });
        let get = Method::of(&http::Method::GET);
        let labels = Labels {
            method: get,
            scheme: Scheme::Http,
            route: Some("/a"),
        };
        red.observe(&labels, Outcome::Status(500), secs, None);
    }

    #[test]
    fn sampled_requests_become_their_buckets_exemplars() {
        use opentelemetry::trace::TraceFlags;
        let exported = red_of(Config::new().otlp_endpoint("http://127.0.0.1:1"));
        observe_500(&exported, Some((1, TraceFlags::SAMPLED)), 3.0);
        observe_500(&exported, Some((2, TraceFlags::SAMPLED)), 0.001);
        observe_500(&exported, Some((3, TraceFlags::default())), 0.0011); // not sampled
        observe_500(&exported, None, 20.0); // no span
        let all = exported.exemplars();
        assert_eq!(all.len(), 1, "one series");
        let slots = all.values().next().unwrap();
        let buckets = &exported.buckets;
        assert_eq!(slots.len(), buckets.len() + 1);
        let at = |v: f64| buckets.partition_point(|b| *b < v);
        assert_eq!(slots[at(3.0)].unwrap().ids.trace_id, 1);
        assert_eq!(slots[at(3.0)].unwrap().value, 3.0);
        assert_eq!(
            slots[at(0.001)].unwrap().ids.span_id,
            2,
            "the sampled request, not the later unsampled one"
        );
        assert!(slots[buckets.len()].is_none(), "+Inf: no sampled request");
        assert_eq!(slots.iter().flatten().count(), 2);

        // Spans not exported: no exemplar, however sampled.
        let unexported = red(10);
        observe_500(&unexported, Some((9, TraceFlags::SAMPLED)), 0.1);
        assert!(unexported.exemplars().is_empty());
    }

    #[test]
    fn exemplar_times_follow_the_wall_clock() {
        let red = red(10);
        let wall = |red: &Red| red.wall_ms(Some(Instant::now())) as i64;
        let now = || epoch_ms(SystemTime::now()) as i64;
        assert!((wall(&red) - now()).abs() < 1_000);
        // As if the wall clock had been stepped back an hour since the origin was taken.
        red.wall_offset_ms.fetch_sub(3_600_000, Ordering::Relaxed);
        assert!((wall(&red) - now()).abs() > 3_500_000);
        red.exemplars(); // a scrape
        assert!((wall(&red) - now()).abs() < 1_000, "resynced at the scrape");
    }

    #[test]
    fn active_guard_decrements_on_drop() {
        let red = red(10);
        let g1 = red.active(Method::of(&http::Method::GET), Scheme::Http);
        let g2 = red.active(Method::of(&http::Method::GET), Scheme::Http);
        assert_eq!(red.active_vec.with_label_values(&["GET", "http"]).get(), 2);
        drop(g1);
        drop(g2);
        assert_eq!(red.active_vec.with_label_values(&["GET", "http"]).get(), 0);
    }
}
