//! RED metrics in Prometheus exposition format.
//!
//! `obs.layer()` records every request in [`names::HTTP_SERVER_REQUEST_DURATION`] (rate and
//! errors come from its `_count`) and tracks [`names::HTTP_SERVER_ACTIVE_REQUESTS`]; the admin
//! server renders them at `/metrics`. Labels are bounded: routes are templates, methods a closed
//! set, and a cap on label sets folds the excess into `http_route="_overflow"`.
//!
//! Your own metrics can live in the same registry:
//!
//! ```
//! let obs = obs::test::init();
//! let jobs = obs::prometheus::IntCounter::new("jobs_done_total", "Jobs done.").unwrap();
//! obs.registry().register(Box::new(jobs.clone())).unwrap();
//! jobs.inc();
//! assert!(obs.metrics_text().contains("jobs_done_total 1"));
//! ```

mod bounded;
mod exemplar;
pub mod openmetrics;
mod red;
mod settings;

/// The metric and label names obs emits (also at [`crate::semconv`]).
pub use crate::semconv as names;

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Gauge, IntGaugeVec, Opts, Registry, TextEncoder};

pub(crate) use bounded::Bounded;
#[cfg(test)]
pub(crate) use bounded::DB;
pub(crate) use red::{ActiveGuard, Labels, Red};
pub use settings::DEFAULT_MAX_LABEL_SETS;
pub(crate) use settings::{MetricsConfig, MetricsSettings};

use crate::resource::Service;

/// The Content-Type of [`crate::Obs::metrics_text`]: Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A scrape request's `Accept` header ("" without one), which decides the page's format.
pub(crate) fn accept(headers: &http::HeaderMap) -> &str {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// A self-metric counter read at scrape time (drops in the log, span and Sentry queues).
pub(crate) struct DropCounter {
    pub name: &'static str,
    pub help: &'static str,
    pub read: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// All metrics of one `Obs`: the RED recorder plus the registry that renders them.
pub(crate) struct Metrics {
    pub registry: Registry,
    pub red: Arc<Red>,
    /// `obs.job(..)` runs.
    pub jobs: Arc<Bounded<2>>,
    /// sqlx's queries.
    pub db: Arc<Bounded<3>>,
}

impl Metrics {
    pub fn new(settings: &MetricsSettings, service: &Service, drops: Vec<DropCounter>) -> Self {
        let registry = Registry::new();
        let active = IntGaugeVec::new(
            Opts::new(
                names::HTTP_SERVER_ACTIVE_REQUESTS,
                "Number of HTTP server requests in flight.",
            ),
            &[names::HTTP_REQUEST_METHOD, names::URL_SCHEME],
        )
        .expect("valid metric");
        let red = Arc::new(Red::new(settings, active.clone()));
        let max = settings.max_label_sets;
        let jobs = Arc::new(Bounded::new(&bounded::JOBS, max, red.overflow_counter()));
        let db = Arc::new(Bounded::new(&bounded::DB, max, red.overflow_counter()));
        let mut target_labels = vec![(names::SERVICE_NAME.to_owned(), service.name.clone())];
        if let Some(v) = &service.version {
            target_labels.push((names::SERVICE_VERSION.to_owned(), v.clone()));
        }
        for (k, v) in &service.attributes {
            let name = sanitize_label_name(k);
            if !target_labels.iter().any(|(n, _)| *n == name) {
                target_labels.push((name, v.clone()));
            }
        }
        let info = |name: &str, help: &str, labels: Vec<(String, String)>| {
            let gauge =
                Gauge::with_opts(Opts::new(name, help).const_labels(labels.into_iter().collect()))
                    .expect("valid metric");
            gauge.set(1.0);
            Box::new(gauge)
        };
        let mut collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(active),
            Box::new(RedCollector(Arc::clone(&red))),
            Box::new(BoundedCollector(Arc::clone(&jobs))),
            Box::new(BoundedCollector(Arc::clone(&db))),
            info(names::TARGET_INFO, "Target metadata.", target_labels),
            Box::new(start_time()),
            info(
                names::OBS_BUILD_INFO,
                "The obs version that instruments this service.",
                vec![(
                    names::VERSION.to_owned(),
                    env!("CARGO_PKG_VERSION").to_owned(),
                )],
            ),
            Box::new(red.overflow_counter()),
        ];
        for d in drops {
            collectors.push(Box::new(CounterFn::new(d.name, d.help, d.read)));
        }
        for c in collectors {
            registry.register(c).expect("obs metric names are unique");
        }
        Self {
            registry,
            red,
            jobs,
            db,
        }
    }

    /// obs' registry and the process' default one (`prometheus::register_*!`), sorted by
    /// name; a family in both is obs' (one family per name, as the formats require).
    fn families(&self) -> Vec<MetricFamily> {
        let mut families = self.registry.gather();
        let ours = families.len();
        for family in prometheus::gather() {
            if !families[..ours].iter().any(|f| f.name() == family.name()) {
                families.push(family);
            }
        }
        families.sort_by(|a, b| a.name().cmp(b.name()));
        families
    }

    /// The page and its Content-Type for a scraper's `Accept` header: OpenMetrics 1.0 with
    /// exemplars when it asks for it (Prometheus does), else text format 0.0.4.
    pub fn negotiate(&self, accept: &str) -> (&'static str, String) {
        if openmetrics::accepts(accept) {
            (openmetrics::CONTENT_TYPE, self.render_openmetrics())
        } else {
            (CONTENT_TYPE, self.render())
        }
    }

    /// The registries in OpenMetrics 1.0 text, the RED histogram's buckets with exemplars.
    pub fn render_openmetrics(&self) -> String {
        let exemplars = self.red.exemplars();
        openmetrics::encode(&self.families(), &|family, metric, bucket| {
            if family != names::HTTP_SERVER_REQUEST_DURATION || exemplars.is_empty() {
                return None;
            }
            *exemplars.get(&red::label_key(metric))?.get(bucket)?
        })
    }

    /// The registries rendered in Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let families = self.families();
        let mut out = Vec::with_capacity(4096);
        // Encoding into a Vec cannot fail; an invalid family would have failed registration.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `process_start_time_seconds`: now, when obs is built (at the process' start), so that a
/// scraper sees a restart as a new value.
fn start_time() -> Gauge {
    let gauge = Gauge::new(
        names::PROCESS_START_TIME_SECONDS,
        "Start time of the process since unix epoch in seconds.",
    )
    .expect("valid metric");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    // Whole milliseconds: a restart is a change of more than rounding.
    gauge.set((now * 1000.0).round() / 1000.0);
    gauge
}

/// `a.b-c` -> `a_b_c`: a valid Prometheus label name.
fn sanitize_label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Exposes the RED histograms, whose label sets differ (absent labels stay absent).
struct RedCollector(Arc<Red>);

impl Collector for RedCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![self.0.desc()]
    }
    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect().into_iter().collect()
    }
}

/// Exposes a bounded histogram (jobs, database calls).
struct BoundedCollector<const N: usize>(Arc<Bounded<N>>);

impl<const N: usize> Collector for BoundedCollector<N> {
    fn desc(&self) -> Vec<&Desc> {
        vec![self.0.desc()]
    }
    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

/// A counter whose value is read at scrape time (e.g. from a writer's atomic).
struct CounterFn {
    desc: Desc,
    read: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl CounterFn {
    fn new(name: &str, help: &str, read: Box<dyn Fn() -> u64 + Send + Sync>) -> Self {
        let desc = Desc::new(name.to_owned(), help.to_owned(), vec![], Default::default())
            .expect("valid metric");
        Self { desc, read }
    }
}

impl Collector for CounterFn {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }
    fn collect(&self) -> Vec<MetricFamily> {
        let mut counter = Counter::default();
        counter.set_value((self.read)() as f64);
        let mut metric = Metric::default();
        metric.set_counter(counter);
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(vec![metric]);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_sanitized() {
        assert_eq!(
            sanitize_label_name("deployment.environment.name"),
            "deployment_environment_name"
        );
        assert_eq!(sanitize_label_name("9lives"), "_9lives");
        assert_eq!(sanitize_label_name(""), "_");
    }

    #[test]
    fn target_info_says_what_is_deployed_and_the_start_time_is_served() {
        let obs = crate::test::init_with(
            crate::Config::new()
                .service_name("shop")
                .service_version("1.1.0"),
        );
        let page = obs.metrics_text();
        let info = page
            .lines()
            .find(|l| l.starts_with("target_info{"))
            .unwrap();
        assert!(
            info.contains(r#"service_name="shop""#) && info.contains(r#"service_version="1.1.0""#),
            "{info}"
        );
        let started: f64 = page
            .lines()
            .find_map(|l| l.strip_prefix("process_start_time_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Rounded to the millisecond, so up to half of one after the clock read below.
        assert!(
            (now - 60.0..=now + 0.001).contains(&started),
            "{started} vs {now}"
        );
    }

    #[test]
    fn the_default_registry_is_served_too_and_each_family_once() {
        let obs = crate::test::init();
        let shadow = prometheus::register_int_counter!(
            names::OBS_LOG_LINES_DROPPED_TOTAL,
            "A family obs serves itself."
        )
        .unwrap();
        shadow.inc_by(99);
        let mine = prometheus::register_int_gauge!("queue_depth", "Jobs waiting.").unwrap();
        mine.set(7);
        let page = obs.metrics_text();
        assert!(page.contains("\nqueue_depth 7\n"), "{page}");
        let family = format!("# TYPE {} ", names::OBS_LOG_LINES_DROPPED_TOTAL);
        assert_eq!(page.matches(&family).count(), 1, "{page}");
        assert!(!page.contains(" 99"), "obs' own family wins: {page}");
        // Families stay sorted by name across the two registries.
        let order: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    }
}
