//! The collector's own metrics (`obs_collector_*`): the store's size, scrapes, evaluations,
//! remote queries and notification attempts, in obs' registry (served at the collector's
//! `/metrics` with its RED metrics).

use obs::prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The collector's own metrics, registered in obs's registry (served at its `/metrics`).
pub struct SelfMetrics {
    pub(super) series: IntGauge,
    pub(super) samples: IntGauge,
    pub(super) store_bytes: IntGauge,
    pub(super) log_bytes: IntGauge,
    pub(super) max_series: IntGauge,
    pub(super) refused_series: IntCounter,
    pub(super) log_write_failures: IntCounter,
    pub(super) scrapes: IntCounterVec,
    pub(super) evaluations: IntCounterVec,
    pub(super) evaluation_failures: IntCounterVec,
    pub(super) notifications: IntCounterVec,
    pub(super) remote_query_seconds: Histogram,
    pub(super) context_seconds: Histogram,
}

impl SelfMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let total = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let histogram = |name: &str, help: &str| {
            let h = Histogram::with_opts(obs::prometheus::HistogramOpts::new(name, help))
                .expect("valid metric");
            let _ = registry.register(Box::new(h.clone()));
            h
        };
        Self {
            series: gauge("obs_collector_series", "Series in the in-memory store."),
            samples: gauge("obs_collector_samples", "Samples in the in-memory store."),
            store_bytes: gauge(
                "obs_collector_store_bytes",
                "Approximate heap bytes of the in-memory store.",
            ),
            max_series: gauge(
                "obs_collector_series_limit",
                "At most this many series are kept (--storage.max-series).",
            ),
            refused_series: total(
                "obs_collector_series_refused_total",
                "Samples of new series refused because the series limit was reached.",
            ),
            log_bytes: gauge(
                "obs_collector_wal_bytes",
                "Bytes of the write-ahead log on disk (--storage.path).",
            ),
            log_write_failures: total(
                "obs_collector_wal_write_failures_total",
                "Writes to the write-ahead log that failed (a full disk): those samples stay in memory only.",
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
            remote_query_seconds: histogram(
                "obs_collector_remote_query_duration_seconds",
                "Duration of rule queries sent to the remote backend (remote mode).",
            ),
            context_seconds: histogram(
                "obs_collector_incident_context_duration_seconds",
                "Time an evaluation spent reading its alerts' incident context (routes, versions) at their transitions, before the messages are queued.",
            ),
            notifications: counter(
                "obs_collector_notifications_total",
                "Notification attempts by channel and outcome (delivered, retried, failed).",
                &["channel", "outcome"],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_registered_under_its_name() {
        let registry = Registry::new();
        let metrics = SelfMetrics::new(&registry);
        metrics.scrapes.with_label_values(&["api", "success"]).inc();
        metrics
            .notifications
            .with_label_values(&["slack", "retried"])
            .inc();
        metrics.remote_query_seconds.observe(0.1);
        metrics.context_seconds.observe(0.01);
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        for name in [
            "obs_collector_series",
            "obs_collector_samples",
            "obs_collector_store_bytes",
            "obs_collector_wal_bytes",
            "obs_collector_wal_write_failures_total",
            "obs_collector_series_limit",
            "obs_collector_series_refused_total",
            "obs_collector_scrapes_total",
            "obs_collector_notifications_total",
            "obs_collector_remote_query_duration_seconds",
            "obs_collector_incident_context_duration_seconds",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        // A second collector in the same registry (tests build several) is not an error.
        let _again = SelfMetrics::new(&registry);
    }
}
