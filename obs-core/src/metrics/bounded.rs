//! Histograms of units that are not requests: jobs (`messaging_process_duration_seconds`) and
//! database calls (`db_client_operation_duration_seconds`). One series per label set, capped
//! like the RED series: past the cap, a new label set is recorded with its foldable label
//! (the job name, the table) as `_overflow`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounter};

use super::names;
use crate::sync::{read, write};

/// What a bounded histogram is: its name, its `N` label names (an empty value leaves the
/// label out), the label that folds into `_overflow`, labels every series has, its buckets.
pub(crate) struct Schema<const N: usize> {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: [&'static str; N],
    pub fold: usize,
    pub constant: &'static [(&'static str, &'static str)],
    pub buckets: &'static [f64],
}

/// The jobs of `obs.job(..)`: system, name (folds), and `messaging_operation_name="process"`.
pub(crate) const JOBS: Schema<2> = Schema {
    name: names::MESSAGING_PROCESS_DURATION,
    help: "Duration of jobs processed (obs.job), in seconds.",
    labels: [names::MESSAGING_SYSTEM, names::MESSAGING_DESTINATION_NAME],
    fold: 1,
    constant: &[(names::MESSAGING_OPERATION_NAME, "process")],
    buckets: &names::JOB_DURATION_BUCKETS,
};

/// The database calls read from sqlx: system, operation, table (folds).
pub(crate) const DB: Schema<3> = Schema {
    name: names::DB_CLIENT_OPERATION_DURATION,
    help: "Duration of database operations (sqlx queries), in seconds.",
    labels: [
        names::DB_SYSTEM_NAME,
        names::DB_OPERATION_NAME,
        names::DB_COLLECTION_NAME,
    ],
    fold: 2,
    constant: &[],
    buckets: &names::DB_DURATION_BUCKETS,
};

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key<const N: usize> {
    values: [Arc<str>; N],
    error_type: Option<&'static str>,
}

/// A bounded histogram: a read-locked lookup and an atomic histogram update per observation.
pub(crate) struct Bounded<const N: usize> {
    schema: &'static Schema<N>,
    desc: Desc,
    max_label_sets: usize,
    series: RwLock<HashMap<Key<N>, Histogram, rustc_hash::FxBuildHasher>>,
    overflow: IntCounter,
    overflow_value: Arc<str>,
}

impl<const N: usize> Bounded<N> {
    /// A recorder holding at most `max_label_sets` series; `overflow` counts what is folded.
    pub fn new(schema: &'static Schema<N>, max_label_sets: usize, overflow: IntCounter) -> Self {
        let desc = Desc::new(
            schema.name.to_owned(),
            schema.help.to_owned(),
            vec![],
            HashMap::new(),
        )
        .expect("valid metric");
        Self {
            schema,
            desc,
            max_label_sets,
            series: RwLock::default(),
            overflow,
            overflow_value: Arc::from(names::ROUTE_OVERFLOW),
        }
    }

    /// Records one observation under `values` (the schema's labels, in order).
    pub fn observe(&self, values: [&Arc<str>; N], error_type: Option<&'static str>, secs: f64) {
        let mut key = Key {
            values: values.map(Arc::clone),
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
                key.values[self.schema.fold] = Arc::clone(&self.overflow_value);
                if let Some(h) = series.get(&key) {
                    h.observe(secs);
                    return;
                }
            }
        }
        write(&self.series)
            .entry(key)
            .or_insert_with_key(|key| self.histogram(key))
            .observe(secs);
    }

    fn histogram(&self, key: &Key<N>) -> Histogram {
        let mut labels: HashMap<String, String> = self
            .schema
            .constant
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        for (name, value) in self.schema.labels.iter().zip(&key.values) {
            if !value.is_empty() {
                labels.insert((*name).to_owned(), value.to_string());
            }
        }
        if let Some(error_type) = key.error_type {
            labels.insert(names::ERROR_TYPE.to_owned(), error_type.to_owned());
        }
        let opts = HistogramOpts::new(self.schema.name, self.schema.help)
            .const_labels(labels)
            .buckets(self.schema.buckets.to_vec());
        Histogram::with_opts(opts).expect("valid buckets")
    }

    pub fn desc(&self) -> &Desc {
        &self.desc
    }

    /// One family holding every series (their label sets differ).
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

    fn text<const N: usize>(h: &Bounded<N>) -> String {
        let mut out = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &h.collect(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn jobs_are_counted_per_name_and_outcome() {
        let jobs = Bounded::new(&JOBS, 100, IntCounter::new("o", "o").unwrap());
        let (redis, email) = (Arc::from("redis"), Arc::from("send_email"));
        jobs.observe([&redis, &email], None, 0.2);
        jobs.observe([&redis, &email], None, 0.3);
        jobs.observe([&redis, &email], Some("panic"), 0.1);
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
    fn an_empty_value_leaves_its_label_out() {
        let db = Bounded::new(&DB, 100, IntCounter::new("o", "o").unwrap());
        let (sqlite, begin, none) = (Arc::from("sqlite"), Arc::from("BEGIN"), Arc::from(""));
        db.observe([&sqlite, &begin, &none], None, 0.001);
        let page = text(&db);
        assert!(page.contains(
            r#"db_client_operation_duration_seconds_count{db_operation_name="BEGIN",db_system_name="sqlite"} 1"#
        ), "{page}");
    }

    #[test]
    fn ten_thousand_names_fold_into_overflow() {
        let overflow = IntCounter::new("o", "o").unwrap();
        let jobs = Bounded::new(&JOBS, 50, overflow.clone());
        let system = Arc::from("obs");
        for i in 0..10_000 {
            jobs.observe([&system, &Arc::from(format!("job-{i}"))], None, 0.01);
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
