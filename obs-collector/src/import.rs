//! `obs-collector import FILE`: OpenMetrics text with timestamps, the input of
//! `promtool tsdb create-blocks-from openmetrics` (so the same file backfills a Prometheus),
//! into the store's blocks.
//!
//! As promtool: every sample needs a timestamp (seconds), the file ends with `# EOF`, and a
//! malformed line fails the import with its line number. The whole file is read and checked
//! before anything is written, so a failed import writes nothing. Samples of a series may
//! come in any order (they are sorted); the same timestamp twice with the same value counts
//! once, with different values is an error naming both lines (Prometheus: "duplicate sample
//! for timestamp"). Data overlapping what the store holds is written beside it and merged by
//! compaction; until then queries merge it.

use std::collections::HashMap;
use std::fmt;

use crate::labels::{Labels, NAME};
use crate::scrape::parse::{parse_raw, parse_series, ParseError};
use crate::store::block::Samples;

/// Why a file cannot be imported.
#[derive(Debug, PartialEq)]
pub enum ImportError {
    Parse(ParseError),
    /// A sample without a timestamp (line).
    NoTimestamp(usize),
    /// The file does not end with `# EOF`.
    NoEof,
    /// Two values for one series at one time (the lines).
    Duplicate {
        first: usize,
        second: usize,
    },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parse(e) => e.fmt(f),
            Self::NoTimestamp(line) => write!(f, "line {line}: a sample without a timestamp"),
            Self::NoEof => write!(f, "the file does not end with \"# EOF\" (OpenMetrics)"),
            Self::Duplicate { first, second } => write!(
                f,
                "line {second}: another value for the series and time of line {first}"
            ),
        }
    }
}

impl std::error::Error for ImportError {}

/// A sample and the line it came from.
type Lined = (i64, f64, usize);

/// The series of an OpenMetrics file, each with its samples sorted by time (ms).
pub fn read(text: &str) -> Result<Vec<(Labels, Samples)>, ImportError> {
    let last = text.lines().rev().find(|l| !l.trim().is_empty());
    if last.map(str::trim) != Some("# EOF") {
        return Err(ImportError::NoEof);
    }
    let raw = parse_raw(text).map_err(ImportError::Parse)?;
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut series: Vec<(Labels, Vec<Lined>)> = Vec::new();
    let mut by_labels: HashMap<Labels, usize> = HashMap::new();
    for sample in raw {
        let t = sample
            .timestamp
            .ok_or(ImportError::NoTimestamp(sample.line))?;
        let i = match at.get(sample.series) {
            Some(&i) => i,
            None => {
                let (name, pairs) = parse_series(sample.series).map_err(|reason| {
                    ImportError::Parse(ParseError {
                        line: sample.line,
                        reason,
                    })
                })?;
                let mut all = vec![(NAME.to_owned(), name)];
                all.extend(pairs);
                let labels = Labels::new(all);
                // `a{x="1",y="2"}` and `a{y="2",x="1"}` are one series.
                let next = series.len();
                let i = *by_labels.entry(labels.clone()).or_insert(next);
                if i == next {
                    series.push((labels, Vec::new()));
                }
                at.insert(sample.series, i);
                i
            }
        };
        // Milliseconds as Prometheus' OpenMetrics parser takes them (`int64(ts * 1000)`,
        // truncated), so that one file gives promtool and the collector the same samples.
        series[i]
            .1
            .push(((t * 1000.0) as i64, sample.value, sample.line));
    }
    series
        .into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|s| (s.0, s.2));
            let mut out: Samples = Vec::with_capacity(samples.len());
            for pair in samples.chunk_by(|a, b| a.0 == b.0) {
                let (t, v, first) = pair[0];
                if let Some(&(_, _, second)) = pair.iter().find(|s| s.1.to_bits() != v.to_bits()) {
                    return Err(ImportError::Duplicate { first, second });
                }
                out.push((t, v));
            }
            Ok((labels, out))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_gathered_sorted_and_deduplicated() {
        let text = "# TYPE req counter\nreq_total{b=\"2\",a=\"1\"} 3 20\nreq_total{a=\"1\",b=\"2\"} 1 10.5\nreq_total{a=\"1\",b=\"2\"} 1 10.5\nup 1 10\n# EOF\n";
        let series = read(text).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].0.get("a"), Some("1"));
        assert_eq!(series[0].1, [(10_500, 1.0), (20_000, 3.0)]);
        assert_eq!(series[1].1, [(10_000, 1.0)]);
    }

    #[test]
    fn what_promtool_refuses_is_refused_with_its_line() {
        assert_eq!(read("up 1 10\n"), Err(ImportError::NoEof));
        assert_eq!(
            read("up 1 10\nup 1\n# EOF\n"),
            Err(ImportError::NoTimestamp(2))
        );
        assert_eq!(
            read("up 1 10\nup 2 10\n# EOF\n"),
            Err(ImportError::Duplicate {
                first: 1,
                second: 2
            })
        );
        let err = read("up 1 10\nup{a=} 1 10\n# EOF\n").unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
    }
}
