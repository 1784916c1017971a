//! Reading samples out of a Prometheus text exposition page, for assertions.
//!
//! ```
//! use obs_testkit::exposition::sample;
//! let page = "m_count{a=\"1\",b=\"x\"} 3\nm_count{a=\"1\"} 5\n";
//! assert_eq!(sample(page, "m_count", &[("a", "1")]), Some(5.0));
//! assert_eq!(sample(page, "m_count", &[("a", "1"), ("b", "x")]), Some(3.0));
//! assert_eq!(sample(page, "m_count", &[]), None);
//! ```

/// One sample line: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`/`_count`/... suffix).
    pub name: String,
    /// Labels in page order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of the page (comments skipped). Label values must not contain `",`.
pub fn samples(page: &str) -> Vec<Sample> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once("=\"")?;
                    Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
                })
                .collect();
            Some(Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// The value of the sample named `name` whose labels are exactly `labels` (any order).
pub fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(page)
        .into_iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.label(k) == Some(v))
        })
        .map(|s| s.value)
}
