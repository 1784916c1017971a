//! Label sets: sorted `(name, value)` pairs, as Prometheus keeps them.

use std::fmt;

/// The metric-name label.
pub const NAME: &str = "__name__";

/// A sorted label set (including `__name__` for stored series).
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// Builds a label set from pairs in any order; empty values are dropped (Prometheus treats
    /// an empty label as absent). Later duplicates win.
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 = std::mem::take(&mut later.1);
                true
            } else {
                false
            }
        });
        Self(pairs)
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
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    pub fn name(&self) -> Option<&str> {
        self.get(NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets (or, with an empty value, removes) a label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = value.to_owned(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name.to_owned(), value.to_owned())),
        }
    }

    /// Keeps only the labels `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|(n, _)| keep(n));
    }

    /// A copy without `__name__`.
    pub fn without_name(&self) -> Self {
        let mut l = self.clone();
        l.retain(|n| n != NAME);
        l
    }

    /// Approximate heap bytes, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.0
            .iter()
            .map(|(k, v)| k.capacity() + v.capacity() + 48)
            .sum()
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
    }
}
