//! The properties the fuzz targets in `fuzz/` check, one function per target. The committed
//! corpora are replayed through the same functions by `tests/fuzz_corpus.rs`, so CI re-checks
//! every input the fuzzer kept. A violated property panics (a crash for the fuzzer).

use std::path::Path;

use obs_collector::notify::{slack, AlertInfo, Message, Status};

/// The exposition parser (text 0.0.4 and OpenMetrics, exemplars included): never panics; the
/// two-stage parse the scraper uses (lines first, each series' labels when first seen) accepts
/// exactly what the one-stage parse accepts, with the same samples.
pub fn exposition(data: &[u8]) {
    use obs_collector::scrape::parse;
    let Ok(page) = std::str::from_utf8(data) else {
        return;
    };
    match (parse::parse_raw(page), parse::parse(page)) {
        (Err(_), Err(_)) => {}
        (Err(e), Ok(_)) => panic!("lines rejected ({e}) but the page parsed: {page:?}"),
        (Ok(raw), parsed) => {
            // An exemplar is parsed or refused without a panic (the samples are checked below).
            for e in raw.iter().filter_map(|r| r.exemplar) {
                let _ = parse::parse_exemplar(e);
            }
            let series_ok = raw.iter().all(|r| parse::parse_series(r.series).is_ok());
            assert_eq!(series_ok, parsed.is_ok(), "{page:?}");
            if let Ok(samples) = parsed {
                assert_eq!(samples.len(), raw.len());
            }
        }
    }
}

/// The rule loader: never panics, whatever the YAML.
pub fn rules(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = obs_collector::rules::load(
            "fuzz.rules.yml",
            text,
            std::time::Duration::from_secs(15),
            false,
        );
    }
}

/// The configuration loader: never panics; every error names the file.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let parsed = obs_collector::config::Config::parse(
            text,
            "fuzz.yml",
            Path::new("/nonexistent"),
            &|_| None,
        );
        if let Err(e) = parsed {
            assert!(e.to_string().contains("fuzz.yml"), "{e}");
        }
    }
}

/// Request-id validation: an id is kept exactly when it is 1..=128 bytes of
/// `[A-Za-z0-9._:-]`, and then kept byte for byte.
pub fn request_id(data: &[u8]) {
    let valid = !data.is_empty()
        && data.len() <= 128
        && data
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b));
    assert_eq!(obs::http::is_valid_request_id(data), valid);
    match obs::RequestId::from_incoming(Some(data)) {
        Some(id) => assert!(valid && id.as_str().as_bytes() == data),
        None => assert!(!valid),
    }
}

/// `traceparent`/`tracestate` extraction as obs' middleware does it (the OpenTelemetry SDK's
/// W3C propagator): never panics; a valid result is never the all-zero trace, keeps a bounded
/// `tracestate`, and its `traceparent` (as obs renders it) extracts back to the same span.
pub fn traceparent(data: &[u8]) {
    use obs::otel::opentelemetry::propagation::TextMapPropagator;
    use obs::otel::opentelemetry::trace::TraceContextExt;
    use std::collections::HashMap;
    let propagator = obs::otel::opentelemetry_sdk::propagation::TraceContextPropagator::new();
    let (tp, ts) = data.split_at(data.iter().position(|b| *b == b'\n').unwrap_or(data.len()));
    let mut headers = HashMap::new();
    for (name, value) in [("traceparent", tp), ("tracestate", ts)] {
        if let Ok(v) = std::str::from_utf8(value) {
            headers.insert(name.to_owned(), v.to_owned());
        }
    }
    let cx = propagator.extract(&headers);
    let span = cx.span().span_context().clone();
    if !span.is_valid() {
        return;
    }
    let ctx = obs::TraceContext::from(span.clone());
    assert_eq!(ctx.trace_id().len(), 32);
    assert_ne!(ctx.trace_id(), "0".repeat(32));
    if let Some(state) = ctx.tracestate() {
        assert!(state.len() <= data.len());
    }
    let next = HashMap::from([("traceparent".to_owned(), ctx.traceparent())]);
    let again = propagator.extract(&next);
    assert_eq!(again.span().span_context().trace_id(), span.trace_id());
    assert_eq!(again.span().span_context().span_id(), span.span_id());
}

/// The Slack message builder: whatever the alert's text and labels, the payload is valid Block
/// Kit within Slack's limits, and no user text can ping (`<!channel>`, `<@U123>`) or link.
pub fn slack_message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1}').map(str::to_owned);
    let mut next = || parts.next().unwrap_or_default();
    let (alertname, job, summary, description, value_text) =
        (next(), next(), next(), next(), next());
    let labels: Vec<(String, String)> = (0..4)
        .map(|_| (next(), next()))
        .filter(|(k, _)| !k.is_empty())
        .collect();
    let message = Message {
        // Alerts, and notices (a deploy's verdict, the weekly report: route names are user
        // text there too).
        status: match data.first().map(|b| b % 3) {
            Some(0) => Status::Firing,
            Some(1) => Status::Resolved,
            _ => Status::Notice,
        },
        alertname: if alertname.is_empty() {
            "A".into()
        } else {
            alertname
        },
        job,
        summary: Some(summary),
        description: Some(description),
        value_text,
        threshold_text: Some(next()),
        since_ms: 1_800_000_000_000,
        since_text: next(),
        severity: Some(next()),
        runbook_url: Some(next()),
        dashboard_url: Some(next()),
        silence_url: Some(next()),
        example_traces: vec![next()],
        trace_url: Some(next()),
        deploy: Some(next()).filter(|d| !d.is_empty()),
        peak_text: Some(next()).filter(|p| !p.is_empty()),
        incident: Some(obs_collector::incident::Incident {
            routes: (0..usize::from(data.len() % 5 == 1) * 40)
                .map(|_| next())
                .collect(),
            top_route: Some(next()),
            by_version: Some(next()),
            value: Some(next()),
            window: next(),
            change: Some(next()),
        }),
        alerts: (0..usize::from(data.len().is_multiple_of(13)) * 15 + 1)
            .map(|i| AlertInfo {
                labels: obs_collector::labels::Labels::new(labels.clone()),
                value: i as f64,
            })
            .collect(),
        resolved: (0..usize::from(data.len().is_multiple_of(3)) * 12)
            .map(|_| AlertInfo {
                labels: obs_collector::labels::Labels::new(labels.clone()),
                value: f64::NAN,
            })
            .collect(),
        fired_for_ms: data.last().map(|b| i64::from(*b) * 61_000),
        lines: (0..1 + usize::from(data.len().is_multiple_of(7)) * 300)
            .map(|_| next())
            .collect(),
    };
    let payload = slack::payload(&message);
    obs_testkit::slack::assert_block_kit(&payload);
    let json = payload.to_string();
    assert!(!json.contains("<@"), "a user mention got through: {json}");
    assert!(
        json.matches("<!").count() == json.matches("<!date^").count(),
        "a broadcast got through: {json}"
    );
    let plain = slack::text(&message);
    assert!(
        !plain.contains("<@") && plain.matches("<!").count() == plain.matches("<!date^").count()
    );
}

/// A property checked on one input.
pub type Check = fn(&[u8]);

/// Every target, by name (the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*`).
pub const TARGETS: [(&str, Check); 6] = [
    ("exposition", exposition),
    ("rules", rules),
    ("config", config),
    ("request_id", request_id),
    ("traceparent", traceparent),
    ("slack_message", slack_message),
];
