//! Label sets: sorted `(name, value)` pairs, as Prometheus keeps them.
//!
//! A label set is immutable and shared (`Arc`): the store, the scrape cache and query results
//! hold the same allocation, and label strings are interned by the store, so 100,000 series
//! cost a few hundred bytes of labels each instead of kilobytes.

use std::fmt;
use std::sync::Arc;

/// The metric-name label.
pub const NAME: &str = "__name__";

type Pair = (Arc<str>, Arc<str>);

/// A sorted label set (including `__name__` for stored series).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<[Pair]>);

impl Default for Labels {
    fn default() -> Self {
        Self(Arc::from(Vec::new()))
    }
}

/// Prometheus' label name syntax: `[a-zA-Z_][a-zA-Z0-9_]*`.
///
/// ```
/// use obs_collector::labels::valid_name;
/// assert!(valid_name("http_route") && valid_name("_x1"));
/// assert!(!valid_name("1x") && !valid_name("a-b") && !valid_name(""));
/// ```
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Prometheus' metric name syntax: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
///
/// ```
/// use obs_collector::labels::valid_metric_name;
/// assert!(valid_metric_name("job:http_requests:rate5m") && valid_metric_name("up"));
/// assert!(!valid_metric_name("5xx") && !valid_metric_name("a-b") && !valid_metric_name(""));
/// ```
pub fn valid_metric_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

impl Labels {
    /// Builds a label set from pairs in any order; empty values are dropped (Prometheus treats
    /// an empty label as absent). Later duplicates win.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self::from_arcs(
            pairs
                .into_iter()
                .map(|(k, v)| (Arc::from(k), Arc::from(v)))
                .collect(),
        )
    }

    /// Like [`Labels::new`], from already shared strings.
    pub fn from_arcs(mut pairs: Vec<Pair>) -> Self {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                std::mem::swap(&mut earlier.1, &mut later.1);
                true
            } else {
                false
            }
        });
        Self(Arc::from(pairs))
    }

    /// From string pairs (tests, literals).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| (**n).cmp(name))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    pub fn name(&self) -> Option<&str> {
        self.get(NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The shared pairs, for building derived label sets without copying strings.
    pub fn pairs(&self) -> &[Pair] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets (or, with an empty value, removes) a label.
    pub fn set(&mut self, name: &str, value: &str) {
        let mut pairs: Vec<Pair> = self
            .0
            .iter()
            .filter(|(n, _)| &**n != name)
            .cloned()
            .collect();
        if !value.is_empty() {
            pairs.push((Arc::from(name), Arc::from(value)));
        }
        *self = Self::from_arcs(pairs);
    }

    /// Keeps only the labels `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        if self.0.iter().all(|(n, _)| keep(n)) {
            return;
        }
        self.0 = self
            .0
            .iter()
            .filter(|(n, _)| keep(n))
            .cloned()
            .collect::<Vec<_>>()
            .into();
    }

    /// A copy without `__name__`.
    pub fn without_name(&self) -> Self {
        let mut l = self.clone();
        l.retain(|n| n != NAME);
        l
    }

    /// A stable hash of the set, the same in every run (it spreads scrapes over the interval
    /// and is the API's alert fingerprint).
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    /// Bytes of the pair array (the strings are interned and shared).
    pub fn heap_bytes(&self) -> usize {
        self.0.len() * std::mem::size_of::<Pair>() + 16
    }
}

impl fmt::Display for Labels {
    /// `name{a="b", c="d"}` as Prometheus prints series.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.name() {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, String>::deserialize(d)?;
        Ok(Self::new(map.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_deduped_and_empty_values_dropped() {
        let l = Labels::from_pairs(&[
            ("job", "a"),
            ("__name__", "up"),
            ("empty", ""),
            ("job", "b"),
        ]);
        assert_eq!(
            l.iter().collect::<Vec<_>>(),
            [("__name__", "up"), ("job", "b")]
        );
        assert_eq!(l.to_string(), "up{job=\"b\"}");
        let mut l = l;
        l.set("instance", "x:1");
        l.set("job", "");
        assert_eq!(l.to_string(), "up{instance=\"x:1\"}");
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, r#"{"__name__":"up","instance":"x:1"}"#);
        assert_eq!(serde_json::from_str::<Labels>(&json).unwrap(), l);
    }
}
