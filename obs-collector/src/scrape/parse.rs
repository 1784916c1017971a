//! Parser for the Prometheus text format 0.0.4 and OpenMetrics 1.0 text.
//!
//! Strict where ingestion would otherwise go wrong (names, label syntax, escapes, values,
//! duplicate labels) and tolerant of what does not matter to rule evaluation (`# HELP`,
//! `# TYPE`, `# UNIT`, exemplars, timestamps). Any error fails the whole page with the line
//! number and the reason, as Prometheus does.

use std::fmt;

/// One parsed sample: name, labels in page order, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Why a page was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: Malformed,
}

impl std::error::Error for ParseError {}

/// What is wrong with a line, a series or an exemplar (a [`ParseError`] adds the line). The
/// texts it quotes are cut to 80 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    MetricName(String),
    UnterminatedLabelSet(String),
    NoSpaceBeforeValue(String),
    MissingValue(String),
    Value(String),
    Timestamp(String),
    AfterTimestamp(String),
    AfterLabels(String),
    LabelName(String),
    /// No `=` after this label's name.
    NoEquals(String),
    /// No `"` opening this label's value.
    NoQuote(String),
    UnterminatedValue(String),
    Escape {
        label: String,
        found: Option<char>,
    },
    DuplicateLabel(String),
    /// Neither `,` nor `}` after this label.
    NoSeparator(String),
    ContentAfterEof,
    ExemplarStart(String),
    ExemplarValue(String),
    ExemplarTimestamp(String),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MetricName(t) => write!(f, "invalid metric name in {t:?}"),
            Self::UnterminatedLabelSet(t) => write!(f, "unterminated label set in {t:?}"),
            Self::NoSpaceBeforeValue(t) => write!(f, "expected a space before the value in {t:?}"),
            Self::MissingValue(t) => write!(f, "missing value in {t:?}"),
            Self::Value(t) => write!(f, "invalid value {t:?}"),
            Self::Timestamp(t) => write!(f, "invalid timestamp {t:?}"),
            Self::AfterTimestamp(t) => write!(f, "unexpected {t:?} after the timestamp"),
            Self::AfterLabels(t) => write!(f, "unexpected {t:?} after the labels"),
            Self::LabelName(t) => write!(f, "invalid label name at {t:?}"),
            Self::NoEquals(name) => write!(f, "expected = after label {name}"),
            Self::NoQuote(name) => write!(f, "expected \" to open the value of {name}"),
            Self::UnterminatedValue(name) => write!(f, "unterminated value of label {name}"),
            Self::Escape { label, found } => {
                write!(f, "invalid escape {found:?} in label {label}")
            }
            Self::DuplicateLabel(name) => write!(f, "duplicate label {name}"),
            Self::NoSeparator(name) => write!(f, "expected , or }} after label {name}"),
            Self::ContentAfterEof => f.write_str("content after # EOF"),
            Self::ExemplarStart(t) => write!(f, "an exemplar starts with {{: {t:?}"),
            Self::ExemplarValue(t) => write!(f, "an exemplar without a value: {t:?}"),
            Self::ExemplarTimestamp(t) => write!(f, "invalid exemplar timestamp {t:?}"),
        }
    }
}

impl std::error::Error for Malformed {}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// One sample line, not yet split into labels: the series text (`name{labels}`) and value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawSample<'a> {
    pub series: &'a str,
    pub value: f64,
    pub line: usize,
    /// An OpenMetrics exemplar after ` # `, unparsed ([`parse_exemplar`]).
    pub exemplar: Option<&'a str>,
    /// The sample's own timestamp, as written (seconds in OpenMetrics, ms in Prometheus' text
    /// format): a scrape ignores it, an import needs it.
    pub timestamp: Option<f64>,
}

/// A page split into its sample lines and its comments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawPage<'a> {
    pub samples: Vec<RawSample<'a>>,
    /// The text after each comment's `#` (`# HELP`, `# TYPE` and `# UNIT` among them: what
    /// [`super::metadata`] reads), `# EOF` excepted.
    pub comments: Vec<&'a str>,
    /// Whether the page ends with `# EOF`, as OpenMetrics pages do (where help texts escape `"`).
    pub openmetrics: bool,
}

/// Splits a page into sample lines, validating everything but the label contents (checked
/// by [`parse_series`] the first time a series text is seen).
pub fn parse_raw(page: &str) -> Result<Vec<RawSample<'_>>, ParseError> {
    parse_page(page).map(|page| page.samples)
}

/// [`parse_raw`], with the page's comments.
pub fn parse_page(page: &str) -> Result<RawPage<'_>, ParseError> {
    let mut out = RawPage::default();
    let mut saw_eof = false;
    for (i, raw) in page.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let err = |reason: Malformed| ParseError {
            line: i + 1,
            reason,
        };
        if saw_eof {
            if !line.is_empty() {
                return Err(err(Malformed::ContentAfterEof));
            }
            continue;
        }
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            if comment.trim() == "EOF" {
                saw_eof = true;
            } else {
                out.comments.push(comment);
            }
            continue;
        }
        let (series, value, timestamp, exemplar) = split_sample(trimmed).map_err(err)?;
        out.samples.push(RawSample {
            series,
            value,
            line: i + 1,
            exemplar,
            timestamp,
        });
    }
    out.openmetrics = saw_eof;
    Ok(out)
}

/// Parses a whole page into samples with labels.
pub fn parse(page: &str) -> Result<Vec<Sample>, ParseError> {
    parse_raw(page)?
        .into_iter()
        .map(|raw| {
            let (name, labels) = parse_series(raw.series).map_err(|reason| ParseError {
                line: raw.line,
                reason,
            })?;
            Ok(Sample {
                name,
                labels,
                value: raw.value,
            })
        })
        .collect()
}

/// A sample line's parts: `name{labels}`, value, timestamp, exemplar.
type Split<'a> = (&'a str, f64, Option<f64>, Option<&'a str>);

/// `name{labels} value [timestamp] [# exemplar]` -> its [`Split`].
fn split_sample(line: &str) -> Result<Split<'_>, Malformed> {
    let name_end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    if name_end == 0 {
        return Err(Malformed::MetricName(shorten(line)));
    }
    let mut end = name_end;
    if line[name_end..].starts_with('{') {
        end = closing_brace(line, name_end + 1)
            .ok_or_else(|| Malformed::UnterminatedLabelSet(shorten(line)))?
            + 1;
    }
    let (series, rest) = line.split_at(end);
    if !rest.starts_with([' ', '\t']) {
        return Err(Malformed::NoSpaceBeforeValue(shorten(line)));
    }
    // Exemplar (OpenMetrics) after " # ": kept as text, parsed by who wants it.
    let (rest, exemplar) = match rest.split_once(" # ") {
        Some((rest, exemplar)) => (rest, Some(exemplar.trim())),
        None => (rest, None),
    };
    let mut fields = rest.split_ascii_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| Malformed::MissingValue(shorten(line)))?;
    let value = parse_value(value).ok_or_else(|| Malformed::Value(shorten(value)))?;
    let timestamp = match fields.next() {
        Some(ts) => Some(
            ts.parse::<f64>()
                .ok()
                .filter(|t| t.is_finite())
                .ok_or_else(|| Malformed::Timestamp(shorten(ts)))?,
        ),
        None => None,
    };
    if let Some(extra) = fields.next() {
        return Err(Malformed::AfterTimestamp(shorten(extra)));
    }
    Ok((series, value, timestamp, exemplar))
}

/// An OpenMetrics exemplar: `{trace_id="…",span_id="…"} value [timestamp]` -> (labels, value,
/// timestamp in seconds).
pub fn parse_exemplar(text: &str) -> Result<(LabelPairs, f64, Option<f64>), Malformed> {
    let after = text
        .strip_prefix('{')
        .ok_or_else(|| Malformed::ExemplarStart(shorten(text)))?;
    let (labels, rest) = parse_labels(after)?;
    let mut fields = rest.split_ascii_whitespace();
    let value = fields
        .next()
        .and_then(parse_value)
        .ok_or_else(|| Malformed::ExemplarValue(shorten(text)))?;
    let timestamp = match fields.next() {
        Some(ts) => Some(
            ts.parse::<f64>()
                .map_err(|_| Malformed::ExemplarTimestamp(shorten(ts)))?,
        ),
        None => None,
    };
    Ok((labels, value, timestamp))
}

/// The index of the `}` closing a label set that starts at `from`, skipping quoted values.
fn closing_brace(s: &str, from: usize) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in s.bytes().enumerate().skip(from) {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Parses `name{a="b",...}` into the name and labels (page order).
pub fn parse_series(series: &str) -> Result<(String, LabelPairs), Malformed> {
    let name_end = series
        .find(|c: char| !is_name_char(c))
        .unwrap_or(series.len());
    let name = &series[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(Malformed::MetricName(shorten(series)));
    }
    let labels = match series[name_end..].strip_prefix('{') {
        Some(after) => {
            let (labels, rest) = parse_labels(after)?;
            if !rest.is_empty() {
                return Err(Malformed::AfterLabels(shorten(rest)));
            }
            labels
        }
        None => Vec::new(),
    };
    Ok((name.to_owned(), labels))
}

/// Label pairs in page order.
pub type LabelPairs = Vec<(String, String)>;

/// Parses `a="b",c="d"}` (after the `{`); returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Result<(LabelPairs, &str), Malformed> {
    let mut labels: Vec<(String, String)> = Vec::new();
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let end = s.find(|c: char| !is_label_char(c)).unwrap_or(s.len());
        let name = &s[..end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(Malformed::LabelName(shorten(s)));
        }
        s = s[end..].trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('=')
            .ok_or_else(|| Malformed::NoEquals(name.to_owned()))?;
        s = s.trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('"')
            .ok_or_else(|| Malformed::NoQuote(name.to_owned()))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err(Malformed::UnterminatedValue(name.to_owned())),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => {
                        return Err(Malformed::Escape {
                            label: name.to_owned(),
                            found: other.map(|(_, c)| c),
                        })
                    }
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.iter().any(|(n, _)| n == name) {
            return Err(Malformed::DuplicateLabel(name.to_owned()));
        }
        labels.push((name.to_owned(), value));
        s = s[close + 1..].trim_start_matches([' ', '\t']);
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err(Malformed::NoSeparator(name.to_owned()));
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_format_0_0_4() {
        let page = "# HELP x_total Things.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"u\\\\o\\nte\"} 3 1700000000000\nup 1\nh_bucket{le=\"+Inf\"} +Inf\nnan_metric NaN\n";
        let s = parse(page).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "x_total");
        assert_eq!(
            s[0].labels,
            vec![("a".into(), "1".into()), ("b".into(), "q\"u\\o\nte".into())]
        );
        assert_eq!(s[0].value, 3.0);
        assert_eq!((s[1].name.as_str(), s[1].value), ("up", 1.0));
        assert_eq!(s[2].value, f64::INFINITY);
        assert!(s[3].value.is_nan());
    }

    #[test]
    fn openmetrics_with_exemplars_and_eof() {
        let page = "# TYPE foo counter\n# UNIT foo seconds\nfoo_total 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67\nfoo_created 1520430000.123\n# EOF\n";
        let s = parse(page).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].value, 17.0);
        assert!(parse("a 1\n# EOF\nb 2\n").is_err());
    }

    #[test]
    fn malformed_pages_fail_with_the_line() {
        for (page, line) in [
            ("ok 1\nbad{a=\"1\" 2\n", 2),
            ("1bad 1\n", 1),
            ("x{a=\"1\",a=\"2\"} 1\n", 1),
            ("x{a=\"\\q\"} 1\n", 1),
            ("x notanumber\n", 1),
            ("x 1 2 3\n", 1),
            ("x{a=\"open} 1\n", 1),
            ("x\n", 1),
            ("<html><body>502 Bad Gateway</body></html>\n", 1),
        ] {
            let e = parse(page).unwrap_err();
            assert_eq!(e.line, line, "{page:?}: {e}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(page in ".{0,400}") {
            let _ = parse(&page);
        }

        #[test]
        fn label_values_round_trip(value in "\\PC{0,40}", v in -1e12f64..1e12) {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let page = format!("m{{l=\"{escaped}\"}} {v}\n");
            let s = parse(&page).unwrap();
            prop_assert_eq!(&s[0].labels[0].1, &value);
            prop_assert_eq!(s[0].value, v);
        }
    }
}
