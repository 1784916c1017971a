//! What a page says of its metric families (`# TYPE`, `# HELP`, `# UNIT`), kept per target for
//! `/api/v1/metadata` as Prometheus' scrape cache keeps it: the families of the last page that
//! has one of these comments, each with type `unknown`, no help and no unit unless they say
//! otherwise. A comment that is none of them, or is malformed, is ignored (it changes no
//! sample).

use std::collections::BTreeMap;

use crate::labels::valid_metric_name;

/// One metric family's metadata, as `/api/v1/metadata` answers it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Metadata {
    /// `counter`, `gauge`, `histogram`, `summary`, `gaugehistogram`, `info`, `stateset` or
    /// `unknown` (the text format's `untyped`, and a family with no `# TYPE`).
    pub kind: &'static str,
    pub help: String,
    pub unit: String,
}

impl Default for Metadata {
    fn default() -> Self {
        Self {
            kind: UNKNOWN,
            help: String::new(),
            unit: String::new(),
        }
    }
}

const UNKNOWN: &str = "unknown";

/// The types of both formats, as Prometheus names them.
fn kind(text: &str) -> Option<&'static str> {
    Some(match text {
        "counter" => "counter",
        "gauge" => "gauge",
        "histogram" => "histogram",
        "summary" => "summary",
        "gaugehistogram" => "gaugehistogram",
        "info" => "info",
        "stateset" => "stateset",
        "untyped" | "unknown" => UNKNOWN,
        _ => return None,
    })
}

/// The metadata of a page's metric families, by family name, from its comments (the text
/// after each `#`, as [`super::parse::parse_page`] gives them) and its format.
pub fn of_comments(comments: &[&str], openmetrics: bool) -> BTreeMap<String, Metadata> {
    let mut families: BTreeMap<String, Metadata> = BTreeMap::new();
    for comment in comments {
        let Some((keyword, rest)) = comment.trim_start().split_once(' ') else {
            continue;
        };
        if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
            continue;
        }
        let rest = rest.trim_start();
        let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
        if !valid_metric_name(name) {
            continue;
        }
        let update = |m: &mut Metadata| match keyword {
            "HELP" => m.help = unescape(text, openmetrics),
            "UNIT" => m.unit = text.trim().to_owned(),
            _ => m.kind = kind(text.trim()).unwrap_or(m.kind),
        };
        match families.get_mut(name) {
            Some(m) => update(m),
            None => {
                let mut m = Metadata::default();
                update(&mut m);
                families.insert(name.to_owned(), m);
            }
        }
    }
    families
}

/// A help text's escapes, as Prometheus reads them: `\\` and `\n`, and `\"` in OpenMetrics
/// (the text format keeps it as written, as it keeps any other backslash).
fn unescape(text: &str, openmetrics: bool) -> String {
    if !text.contains('\\') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('"') if openmetrics => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::parse::parse_page;

    fn metadata(page: &str) -> BTreeMap<String, Metadata> {
        let page = parse_page(page).unwrap();
        of_comments(&page.comments, page.openmetrics)
    }

    #[test]
    fn text_format_families() {
        let m = metadata(
            "# HELP http_requests_total Requests, by \\\"route\\\".\\nOne line more \\\\.\n\
             # TYPE http_requests_total counter\n\
             http_requests_total{route=\"/\"} 3\n\
             # TYPE temperature untyped\n\
             # just a comment\n\
             # HELP 9bad not a name\n\
             # TYPE q gauge extra\n\
             # TYPE w strange\n\
             temperature 21\n",
        );
        assert_eq!(
            m["http_requests_total"],
            Metadata {
                kind: "counter",
                help: "Requests, by \\\"route\\\".\nOne line more \\.".into(),
                unit: String::new(),
            }
        );
        assert_eq!(m["temperature"], Metadata::default());
        assert_eq!(m["w"].kind, "unknown", "an unknown type is not taken");
        assert_eq!(m["q"].kind, "unknown", "neither is one with more after it");
        assert_eq!(m.len(), 4, "{m:?}");
    }

    #[test]
    fn openmetrics_families_and_units() {
        let m = metadata(
            "# TYPE foo_seconds histogram\n# UNIT foo_seconds seconds\n# HELP foo_seconds \\\"Time\\\".\n\
             foo_seconds_count 1\n# TYPE build info\nbuild_info{v=\"1\"} 1\n# EOF\n",
        );
        assert_eq!(
            m["foo_seconds"],
            Metadata {
                kind: "histogram",
                help: "\"Time\".".into(),
                unit: "seconds".into(),
            }
        );
        assert_eq!(m["build"].kind, "info");
    }
}
