//! The OpenMetrics 1.0 text format, with exemplars: what Prometheus asks for first
//! (`Accept: application/openmetrics-text`) and the only format that carries exemplars.
//!
//! Written here because the `prometheus` crate, whose registry obs and its users share, encodes
//! text format 0.0.4 and protobuf only, and its histograms have no exemplars. The families are
//! the registry's own; only the encoding is obs'. Sample names and `le` values are the ones the
//! 0.0.4 encoder writes, so a series keeps its identity when a scraper switches format; a counter
//! family is named without `_total` and its sample with it, as the format requires.

use std::fmt::Write as _;

use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};

use super::exemplar::Exemplar;

/// The Content-Type of the OpenMetrics page.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (Prometheus' does, before text 0.0.4).
pub fn accepts(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let mut params = part.split(';').map(str::trim);
        params.next() == Some("application/openmetrics-text")
            && !params.any(|p| p.replace(' ', "") == "q=0")
    })
}

/// `families` in OpenMetrics text; `exemplar(family, metric, bucket)` gives a histogram
/// bucket's exemplar (bucket = the index of its upper bound, `+Inf` last).
pub(crate) fn encode(
    families: &[MetricFamily],
    exemplar: &dyn Fn(&str, &Metric, usize) -> Option<Exemplar>,
) -> String {
    let mut out = String::with_capacity(4096);
    for family in families {
        let full = family.name();
        let (name, kind) = match family.get_field_type() {
            MetricType::COUNTER => (full.strip_suffix("_total").unwrap_or(full), "counter"),
            MetricType::GAUGE => (full, "gauge"),
            MetricType::HISTOGRAM => (full, "histogram"),
            MetricType::SUMMARY => (full, "summary"),
            // The registry's text encoder cannot write these either; none is ever registered.
            MetricType::UNTYPED => continue,
        };
        let _ = writeln!(out, "# TYPE {name} {kind}");
        if !family.help().is_empty() {
            let _ = writeln!(out, "# HELP {name} {}", escape(family.help()));
        }
        // The sample names of the family, made once.
        let [total, bucket_name, sum, count] =
            ["_total", "_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}"));
        for metric in family.get_metric() {
            let labels = metric.get_label();
            match family.get_field_type() {
                MetricType::COUNTER => sample(
                    &mut out,
                    &total,
                    labels,
                    None,
                    metric.get_counter().get_value(),
                ),
                MetricType::GAUGE => {
                    sample(&mut out, name, labels, None, metric.get_gauge().get_value())
                }
                MetricType::UNTYPED => {}
                MetricType::SUMMARY => {
                    let s = metric.get_summary();
                    for q in s.get_quantile() {
                        let quantile = number(q.quantile());
                        sample(
                            &mut out,
                            name,
                            labels,
                            Some(("quantile", &quantile)),
                            q.value(),
                        );
                    }
                    sample(&mut out, &sum, labels, None, s.sample_sum());
                    sample(&mut out, &count, labels, None, s.sample_count() as f64);
                }
                MetricType::HISTOGRAM => {
                    let h = metric.get_histogram();
                    let bounds = h
                        .get_bucket()
                        .iter()
                        .map(|b| (b.upper_bound(), b.cumulative_count()));
                    // The `+Inf` bucket is implicit in the registry's histograms.
                    let has_inf = h
                        .get_bucket()
                        .last()
                        .is_some_and(|b| b.upper_bound().is_infinite());
                    let inf = (!has_inf).then_some((f64::INFINITY, h.get_sample_count()));
                    for (b, (bound, cumulative)) in bounds.chain(inf).enumerate() {
                        let le = number(bound);
                        sample(
                            &mut out,
                            &bucket_name,
                            labels,
                            Some(("le", &le)),
                            cumulative as f64,
                        );
                        if let Some(e) = exemplar(full, metric, b) {
                            out.pop(); // the newline: the exemplar goes on the same line
                            let _ = writeln!(
                                out,
                                " # {{trace_id=\"{:032x}\",span_id=\"{:016x}\"}} {} {}.{:03}",
                                e.ids.trace_id,
                                e.ids.span_id,
                                number(e.value),
                                e.timestamp_ms / 1000,
                                e.timestamp_ms % 1000
                            );
                        }
                    }
                    sample(&mut out, &sum, labels, None, h.get_sample_sum());
                    sample(&mut out, &count, labels, None, h.get_sample_count() as f64);
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// One sample line: `name{labels,extra} value`.
fn sample(
    out: &mut String,
    name: &str,
    labels: &[LabelPair],
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.push_str(name);
    let pairs = labels.iter().map(|l| (l.name(), l.value())).chain(extra);
    for (i, (k, v)) in pairs.enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        let _ = write!(out, "{k}=\"{}\"", escape(v));
    }
    if !labels.is_empty() || extra.is_some() {
        out.push('}');
    }
    out.push(' ');
    out.push_str(&number(value));
    out.push('\n');
}

/// A number as both formats write it: `+Inf`, `-Inf`, `NaN`, else the shortest exact decimal.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

/// Label values and help: backslash, double quote and newline escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exemplar::SpanIds;
    use prometheus::core::Collector;

    #[test]
    fn accept_headers() {
        assert!(accepts("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
        assert!(!accepts("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
        assert!(!accepts("application/openmetrics-text; q=0"));
        assert!(!accepts(""));
    }

    #[test]
    fn every_type_with_exemplars_on_buckets() {
        let counter = prometheus::IntCounter::new("jobs_total", "Jobs \"done\".\nAll.").unwrap();
        counter.inc_by(3);
        let plain = prometheus::Counter::new("retries", "Retries.").unwrap();
        let gauge = prometheus::Gauge::with_opts(
            prometheus::Opts::new("queue", "Queue.").const_label("path", "a\\b\"c"),
        )
        .unwrap();
        gauge.set(-1.5);
        let h = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("d_seconds", "D.").buckets(vec![0.5, 2.0]),
        )
        .unwrap();
        h.observe(0.1);
        h.observe(3.0);
        let mut families: Vec<MetricFamily> = [
            counter.collect(),
            plain.collect(),
            gauge.collect(),
            h.collect(),
        ]
        .concat();
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let slow = Exemplar {
            ids: SpanIds {
                trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
                span_id: 0x00f067aa0ba902b7,
            },
            value: 3.0,
            timestamp_ms: 1_700_000_000_123,
        };
        let text = encode(&families, &|family, _, bucket| {
            (family == "d_seconds" && bucket == 2).then_some(slow)
        });
        assert_eq!(
            text,
            "# TYPE d_seconds histogram\n# HELP d_seconds D.\n\
             d_seconds_bucket{le=\"0.5\"} 1\nd_seconds_bucket{le=\"2\"} 1\n\
             d_seconds_bucket{le=\"+Inf\"} 2 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\",span_id=\"00f067aa0ba902b7\"} 3 1700000000.123\n\
             d_seconds_sum 3.1\nd_seconds_count 2\n\
             # TYPE jobs counter\n# HELP jobs Jobs \\\"done\\\".\\nAll.\njobs_total 3\n\
             # TYPE queue gauge\n# HELP queue Queue.\nqueue{path=\"a\\\\b\\\"c\"} -1.5\n\
             # TYPE retries counter\n# HELP retries Retries.\nretries_total 0\n# EOF\n"
        );
    }
}
