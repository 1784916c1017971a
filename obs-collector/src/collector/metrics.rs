//! The collector's own metrics (`obs_collector_*`): the store's size, scrapes, evaluations,
//! remote queries and notification attempts, in obs' registry (served at the collector's
//! `/metrics` with its RED metrics).

use obs::prometheus::{
    Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::store::Store;

/// The collector's own metrics, registered in obs's registry (served at its `/metrics`).
pub struct SelfMetrics {
    pub(super) series: IntGauge,
    pub(super) samples: IntGauge,
    pub(super) store_bytes: IntGauge,
    pub(super) log_bytes: IntGauge,
    pub(super) max_series: IntGauge,
    pub(super) refused_series: IntCounter,
    pub(super) log_write_failures: IntCounter,
    blocks: IntGaugeVec,
    blocks_bytes: IntGauge,
    oldest: IntGauge,
    retention_seconds: IntGauge,
    retention_bytes: IntGauge,
    blocks_set_aside: IntGauge,
    block_write_failures: IntCounter,
    block_read_errors: IntCounter,
    blocks_deleted: IntCounter,
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
            blocks: {
                let opts = Opts::new(
                    "obs_collector_blocks",
                    "Blocks of history on disk, by resolution (raw, or the downsampling step).",
                );
                let g = IntGaugeVec::new(opts, &["resolution"]).expect("valid metric");
                let _ = registry.register(Box::new(g.clone()));
                g
            },
            blocks_bytes: gauge(
                "obs_collector_blocks_bytes",
                "Bytes of the blocks of history on disk (the write-ahead log apart).",
            ),
            oldest: gauge(
                "obs_collector_history_oldest_timestamp_seconds",
                "Start of the oldest block of history (0: none yet).",
            ),
            retention_seconds: gauge(
                "obs_collector_history_retention_seconds",
                "How long history is kept (--storage.retention).",
            ),
            retention_bytes: gauge(
                "obs_collector_history_retention_bytes",
                "At most this many bytes of history are kept (--storage.retention-size; 0: no limit).",
            ),
            blocks_set_aside: gauge(
                "obs_collector_blocks_set_aside",
                "Files found at start that were not whole blocks, renamed *.corrupt.",
            ),
            block_write_failures: total(
                "obs_collector_block_write_failures_total",
                "Blocks that could not be written (a full disk): the samples stay in the head and the write is tried again.",
            ),
            block_read_errors: total(
                "obs_collector_block_read_errors_total",
                "Reads of a block that failed (a file damaged after start): those series' samples were missing from a query.",
            ),
            blocks_deleted: total(
                "obs_collector_blocks_deleted_total",
                "Blocks deleted by retention (time or size).",
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

impl SelfMetrics {
    /// Reads the store's figures (under its lock, at housekeeping).
    pub(super) fn observe_store(&self, store: &Store) {
        let to =
            |counter: &IntCounter, total: u64| counter.inc_by(total.saturating_sub(counter.get()));
        self.series.set(store.series_count() as i64);
        self.samples.set(store.sample_count() as i64);
        self.store_bytes.set(store.memory_bytes() as i64);
        self.log_bytes.set(store.log_bytes() as i64);
        self.max_series.set(store.max_series() as i64);
        to(&self.refused_series, store.refused_series());
        to(&self.log_write_failures, store.log_failures());
        if let Some(disk) = store.disk() {
            let blocks = disk.all();
            for (resolution, step) in [
                ("raw", 0),
                ("5m", crate::store::compact::DOWNSAMPLE_STEP_MS),
            ] {
                let n = blocks
                    .iter()
                    .filter(|b| b.meta().resolution_ms == step)
                    .count();
                self.blocks.with_label_values(&[resolution]).set(n as i64);
            }
            self.blocks_bytes.set(disk.bytes() as i64);
            self.oldest.set(disk.oldest_ms().unwrap_or(0) / 1000);
            let retention = disk.retention();
            self.retention_seconds.set(retention.time_ms / 1000);
            let limit = Some(retention.bytes).filter(|&b| b != u64::MAX);
            self.retention_bytes.set(limit.unwrap_or(0) as i64);
            self.blocks_set_aside.set(disk.set_aside().len() as i64);
            to(&self.block_write_failures, disk.write_failures());
            to(&self.block_read_errors, disk.read_errors());
            to(&self.blocks_deleted, disk.deleted());
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
        let dir = std::env::temp_dir().join(format!("obs-metrics-{}", std::process::id()));
        let (store, _) = Store::open(&dir, 60_000, 10, Default::default(), 0).unwrap();
        metrics.observe_store(&store);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
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
            "obs_collector_blocks",
            "obs_collector_blocks_bytes",
            "obs_collector_history_oldest_timestamp_seconds",
            "obs_collector_history_retention_seconds",
            "obs_collector_history_retention_bytes",
            "obs_collector_blocks_set_aside",
            "obs_collector_block_write_failures_total",
            "obs_collector_block_read_errors_total",
            "obs_collector_blocks_deleted_total",
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
