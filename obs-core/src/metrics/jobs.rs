//! The job recorder behind `obs.job(..)`: `messaging_process_duration_seconds`, one histogram
//! series per (system, job name, error type), bounded like the RED series.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounter};

use super::names;
use crate::sync::{read, write};

const HELP: &str = "Duration of jobs processed (obs.job), in seconds.";

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    system: Arc<str>,
    name: Arc<str>,
    error_type: Option<&'static str>,
}

/// The job recorder: a read-locked lookup and an atomic histogram update per job.
pub(crate) struct Jobs {
    desc: Desc,
    max_label_sets: usize,
    series: RwLock<HashMap<Key, Histogram, rustc_hash::FxBuildHasher>>,
    overflow: IntCounter,
    overflow_name: Arc<str>,
}

impl Jobs {
    /// A recorder holding at most `max_label_sets` series; `overflow` counts what is folded.
    pub fn new(max_label_sets: usize, overflow: IntCounter) -> Self {
        let desc = Desc::new(
            names::MESSAGING_PROCESS_DURATION.to_owned(),
            HELP.to_owned(),
            vec![],
            HashMap::new(),
        )
        .expect("valid metric");
        Self {
            desc,
            max_label_sets,
            series: RwLock::default(),
            overflow,
            overflow_name: Arc::from(names::ROUTE_OVERFLOW),
        }
    }

    /// Records one finished job. Past the cap, a new job name is recorded as `_overflow`.
    pub fn observe(
        &self,
        system: &Arc<str>,
        name: &Arc<str>,
        error_type: Option<&'static str>,
        secs: f64,
    ) {
        let mut key = Key {
            system: Arc::clone(system),
            name: Arc::clone(name),
            error_type,
        };
        {
            let series = read(&self.series);
            if let Some(h) = series.get(&key) {
                h.observe(secs);
                return;
            }
            if series.len() >= self.max_label_sets {
                self.overflow.inc();
                key.name = Arc::clone(&self.overflow_name);
                if let Some(h) = series.get(&key) {
                    h.observe(secs);
                    return;
                }
            }
        }
        write(&self.series)
            .entry(key)
            .or_insert_with_key(histogram)
            .observe(secs);
    }
}

fn histogram(key: &Key) -> Histogram {
    let mut labels = HashMap::from([
        (names::MESSAGING_SYSTEM.to_owned(), key.system.to_string()),
        (
            names::MESSAGING_DESTINATION_NAME.to_owned(),
            key.name.to_string(),
        ),
        (
            names::MESSAGING_OPERATION_NAME.to_owned(),
            "process".to_owned(),
        ),
    ]);
    if let Some(error_type) = key.error_type {
        labels.insert(names::ERROR_TYPE.to_owned(), error_type.to_owned());
    }
    let opts = HistogramOpts::new(names::MESSAGING_PROCESS_DURATION, HELP)
        .const_labels(labels)
        .buckets(names::JOB_DURATION_BUCKETS.to_vec());
    Histogram::with_opts(opts).expect("valid buckets")
}

impl Jobs {
    pub fn desc(&self) -> &Desc {
        &self.desc
    }

    /// One family holding every series (only failures have `error_type`).
    pub fn collect(&self) -> Vec<MetricFamily> {
        let series = read(&self.series);
        let mut family: Option<MetricFamily> = None;
        for h in series.values() {
            for mut f in h.collect() {
                match &mut family {
                    None => family = Some(f),
                    Some(all) => all.mut_metric().extend(f.take_metric()),
                }
            }
        }
        family.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(jobs: &Jobs) -> String {
        let mut out = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &jobs.collect(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn jobs_are_counted_per_name_and_outcome() {
        let overflow = IntCounter::new("o", "o").unwrap();
        let jobs = Jobs::new(100, overflow);
        let (redis, email) = (Arc::from("redis"), Arc::from("send_email"));
        jobs.observe(&redis, &email, None, 0.2);
        jobs.observe(&redis, &email, None, 0.3);
        jobs.observe(&redis, &email, Some("panic"), 0.1);
        let page = text(&jobs);
        assert!(page.contains(
            r#"messaging_process_duration_seconds_count{messaging_destination_name="send_email",messaging_operation_name="process",messaging_system="redis"} 2"#
        ), "{page}");
        assert!(page.contains(
            r#"messaging_process_duration_seconds_count{error_type="panic",messaging_destination_name="send_email",messaging_operation_name="process",messaging_system="redis"} 1"#
        ), "{page}");
        assert!(page.contains(r#"le="600"} 2"#), "{page}");
    }

    #[test]
    fn ten_thousand_names_fold_into_overflow() {
        let overflow = IntCounter::new("o", "o").unwrap();
        let jobs = Jobs::new(50, overflow.clone());
        let system = Arc::from("obs");
        for i in 0..10_000 {
            jobs.observe(&system, &Arc::from(format!("job-{i}")), None, 0.01);
        }
        let page = text(&jobs);
        let series = page
            .lines()
            .filter(|l| l.starts_with("messaging_process_duration_seconds_count"))
            .count();
        assert_eq!(series, 51, "50 names and _overflow");
        assert!(page.contains(r#"messaging_destination_name="_overflow""#));
        assert_eq!(overflow.get(), 10_000 - 50);
    }
}
