//! Exemplars from the service to Prometheus: the demo service exports its spans to a local
//! OTLP receiver and is scraped by a real Prometheus with `--enable-feature=exemplar-storage`.
//! Prometheus asks for OpenMetrics, stores the exemplars of the latency histogram, and
//! `/api/v1/query_exemplars` returns trace ids that are spans the receiver got: with status
//! code 500 on the 5xx series, longer than 2 s in the buckets above 2. Both formats of the page
//! pass `promtool check metrics` (OpenMetrics once its own syntax is taken out: promtool 2.42
//! reads text 0.0.4 only); with `OTEL_TRACES_SAMPLER=always_off` there are no exemplars. In
//! remote mode the collector's HighErrorRate and HighLatencyP95 messages (and its status page)
//! name a failing and a slow request's trace from Prometheus' exemplars.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use obs_testkit::client;
use obs_testkit::process::DemoService;
use obs_testkit::prometheus::{check_metrics, Prometheus};
use obs_testkit::receivers::{attributes, display, hex, Behavior, OtlpReceiver, Span};
use serde_json::Value;

const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

fn start(env: &[(&str, &str)]) -> DemoService {
    DemoService::start(env!("CARGO_BIN_EXE_demo-service").as_ref(), env)
        .expect("demo-service starts")
}

fn metrics(admin: std::net::SocketAddr, accept: &str) -> client::Response {
    client::request(admin, "GET", "/metrics", &[("accept", accept.as_bytes())]).unwrap()
}

/// An OpenMetrics page as text 0.0.4, mechanically: no `# EOF`, no exemplars, `\"` in HELP
/// unescaped, and counters' metadata under their sample's name (`_total`).
fn as_text_format(page: &str) -> String {
    let counters: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::new();
    for line in page.lines().filter(|l| *l != "# EOF") {
        let line = line.split(" # {").next().unwrap_or(line);
        let line = match line
            .strip_prefix("# HELP ")
            .or(line.strip_prefix("# TYPE "))
        {
            Some(rest) => {
                let (kind, name_and_rest) = (&line[..7], rest);
                let (name, tail) = name_and_rest.split_once(' ').unwrap_or((name_and_rest, ""));
                let name = if counters.contains(&name) {
                    format!("{name}_total")
                } else {
                    name.to_owned()
                };
                format!("{kind}{name} {}", tail.replace("\\\"", "\""))
            }
            None => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The demo service exporting its spans to a local OTLP receiver, scraped every second by a
/// real Prometheus that keeps exemplars.
fn exported_and_scraped() -> (OtlpReceiver, DemoService, Prometheus) {
    let otlp = OtlpReceiver::start(Behavior::Ok);
    let endpoint = otlp.endpoint();
    let demo = start(&[
        ("OTEL_SERVICE_NAME", "demo"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]);
    let admin = demo.admin.expect("an admin address");
    let prom = Prometheus::start_with(
        &format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: demo\n    static_configs: [{{ targets: ['{admin}'] }}]\n"),
        &["--enable-feature=exemplar-storage"],
    )
    .unwrap();
    (otlp, demo, prom)
}

/// Prometheus' exemplars of the latency buckets since `start`: (series labels, exemplar).
fn query_exemplars(prom: &Prometheus, start: f64) -> Vec<(Value, Value)> {
    let path = format!(
        "/api/v1/query_exemplars?query={}&start={start:.3}&end={:.3}",
        client::encode_query("http_server_request_duration_seconds_bucket"),
        now_s() + 1.0
    );
    let body: Value = serde_json::from_str(&client::get(prom.addr, &path).unwrap().body).unwrap();
    assert_eq!(body["status"], "success", "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|series| {
            let labels = series["seriesLabels"].clone();
            series["exemplars"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |e| (labels.clone(), e.clone()))
        })
        .collect()
}

#[test]
fn prometheus_stores_exemplars_that_open_the_exported_spans() {
    let (otlp, demo, prom) = exported_and_scraped();
    let (addr, admin) = (demo.addr, demo.admin.expect("an admin address"));
    let start = now_s() - 1.0;
    // Two slow requests at once (2.1 s: the bucket above 2), five failures, five fine ones.
    let slow: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || client::get(addr, "/slow?ms=2100").unwrap().status))
        .collect();
    for _ in 0..5 {
        assert_eq!(client::get(addr, "/fail").unwrap().status, 500);
    }
    for i in 0..5 {
        assert_eq!(
            client::get(addr, &format!("/users/{i}")).unwrap().status,
            200
        );
    }
    for s in slow {
        assert_eq!(s.join().unwrap(), 200);
    }

    // The page in both formats, clean for promtool; exemplars only in OpenMetrics.
    let om = metrics(admin, OPENMETRICS);
    assert_eq!(
        om.header("content-type"),
        Some(obs::metrics::openmetrics::CONTENT_TYPE)
    );
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om.body.contains(" # {trace_id=\""), "{}", om.body);
    let text = metrics(admin, "text/plain;version=0.0.4");
    assert_eq!(
        text.header("content-type"),
        Some(obs::metrics::CONTENT_TYPE)
    );
    assert!(!text.body.contains("trace_id"));
    assert_eq!(check_metrics(&text.body), "", "text format");
    // promtool (2.42) parses text 0.0.4 only: it lints the OpenMetrics page's families once
    // what only OpenMetrics has is taken back out. Prometheus' own OpenMetrics parser, which
    // rejects a malformed page or exemplar, is the check below: the scrape succeeds and the
    // exemplars arrive.
    let families_only = as_text_format(&om.body);
    assert_eq!(check_metrics(&families_only), "", "OpenMetrics");

    // Prometheus scraped them; each opens an exported span that tells the same story.
    prom.wait_until("up{job=\"demo\"} == 1", Duration::from_secs(15), |r| {
        !r.is_empty()
    })
    .expect("Prometheus scrapes the OpenMetrics page");
    let exemplars = obs_testkit::eventually(
        Duration::from_secs(20),
        || {
            format!(
                "no 5xx and slow exemplars in Prometheus: {:#?}",
                query_exemplars(&prom, start)
            )
        },
        || {
            let all = query_exemplars(&prom, start);
            let failed = all
                .iter()
                .any(|(l, _)| l["http_response_status_code"] == "500");
            let slow = all
                .iter()
                .any(|(l, _)| l["le"].as_str().and_then(|le| le.parse::<f64>().ok()) > Some(2.0));
            (failed && slow).then_some(all)
        },
    );
    let spans = otlp.wait_for_spans(12, Duration::from_secs(10));
    let span = |trace: &str, id: &str| -> Option<Span> {
        spans
            .iter()
            .find(|s| hex(&s.trace_id) == trace && hex(&s.span_id) == id)
            .cloned()
    };
    let (mut failed, mut slow) = (0, 0);
    for (series, e) in &exemplars {
        let (trace, id) = (
            e["labels"]["trace_id"].as_str().unwrap(),
            e["labels"]["span_id"].as_str().unwrap(),
        );
        let s = span(trace, id).unwrap_or_else(|| panic!("exemplar {e} is no exported span"));
        let attrs: BTreeMap<String, String> = attributes(&s.attributes)
            .iter()
            .map(|(k, v)| (k.clone(), display(v)))
            .collect();
        assert_eq!(
            attrs.get("http.response.status_code").map(String::as_str),
            series["http_response_status_code"].as_str(),
            "{series} {e}"
        );
        if series["http_response_status_code"] == "500" {
            failed += 1;
            assert_eq!(
                s.status.as_ref().map(|st| st.code),
                Some(2),
                "status Error: {s:?}"
            );
        }
        let value: f64 = e["value"].as_str().unwrap().parse().unwrap();
        let le: f64 = match series["le"].as_str().unwrap() {
            "+Inf" => f64::INFINITY,
            le => le.parse().unwrap(),
        };
        assert!(value <= le, "{series} {e}");
        if le > 2.0 {
            slow += 1;
            assert!(value > 2.0, "{e}");
            let nanos = s.end_time_unix_nano - s.start_time_unix_nano;
            assert!(nanos > 2_000_000_000, "the span took {nanos} ns");
        }
    }
    assert!(failed >= 1 && slow >= 1, "{exemplars:#?}");
}

#[test]
fn unsampled_requests_leave_no_exemplars() {
    let otlp = OtlpReceiver::start(Behavior::Ok);
    let endpoint = otlp.endpoint();
    let demo = start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_TRACES_SAMPLER", "always_off"),
    ]);
    for _ in 0..3 {
        assert_eq!(client::get(demo.addr, "/fail").unwrap().status, 500);
    }
    let om = metrics(demo.admin.unwrap(), OPENMETRICS);
    assert!(
        om.body
            .contains("http_server_request_duration_seconds_bucket{"),
        "{}",
        om.body
    );
    assert!(
        !om.body.contains("trace_id"),
        "no exemplar without a trace: {}",
        om.body
    );
}

#[test]
fn in_remote_mode_the_alerts_name_traces_from_prometheus_exemplars() {
    let (otlp, demo, prom) = exported_and_scraped();
    // The collector evaluates the shipped rules (at demo speed) against that Prometheus.
    let dir = std::env::temp_dir().join(format!("obs-exemplars-remote-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = obs_examples::demo_rules::write_config(
        &dir,
        obs_examples::demo_rules::Source::Query(prom.addr),
    )
    .unwrap();
    let slack = obs_testkit::slack::Slack::start();
    let collector = obs_testkit::process::CollectorProcess::start(
        &obs_testkit::process::sibling_binary("obs-collector"),
        &config,
        &dir.join("state.json"),
        &[("SLACK_WEBHOOK_URL", &slack.url())],
    );
    // Half of the fast requests (10/s) fail, and four clients keep 2.5 s requests going (about
    // 14% of all, well above the 5% that moves p95): both alerts fire (10 s windows,
    // `for: 10s`).
    let addr = demo.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..5)
        .map(|c| {
            let stop = std::sync::Arc::clone(&stop);
            let period = Duration::from_millis(if c == 0 { 100 } else { 0 });
            std::thread::spawn(move || {
                obs_testkit::traffic::every(period, |i| {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return std::ops::ControlFlow::Break(());
                    }
                    let path = match (c, i.is_multiple_of(2)) {
                        (0, true) => "/fail",
                        (0, false) => "/users/1",
                        _ => "/slow?ms=2500",
                    };
                    let _ = client::get(addr, path);
                    std::ops::ControlFlow::Continue(())
                })
            })
        })
        .collect();
    let firing = |alert: &str| {
        let header = format!("FIRING: {alert}");
        obs_testkit::eventually(
            Duration::from_secs(90),
            || format!("no {alert} message: {:#?}", slack.received()),
            || {
                slack
                    .received()
                    .into_iter()
                    .map(|r| r.1)
                    .find(|m| obs_testkit::slack::header(m).starts_with(&header))
            },
        )
    };
    let (errors, latency) = (firing("HighErrorRate"), firing("HighLatencyP95"));
    // While they fire, the status page shows each alert's example trace.
    let page = client::get(collector.addr, "/").unwrap().body;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    // The exported SERVER span of trace `id`.
    let server_span = |id: &str| {
        obs_testkit::eventually(
            Duration::from_secs(10),
            || format!("trace {id} was not exported"),
            || {
                otlp.spans()
                    .into_iter()
                    .map(|(_, s)| s)
                    .find(|s| hex(&s.trace_id) == id && s.name.starts_with("GET "))
            },
        )
    };
    let span_of = |message: &Value| server_span(&obs_testkit::slack::example_trace(message));
    // The page names each firing alert's current example (a newer exemplar may have replaced
    // the message's by then): a trace that was exported too.
    let on_page: Vec<String> = page
        .split(r#"example trace <code class="wrap">"#)
        .skip(1)
        .map(|rest| rest[..32].to_owned())
        .collect();
    assert_eq!(
        on_page.len(),
        2,
        "one example per firing alert on the status page"
    );
    for id in &on_page {
        server_span(id);
    }
    let failing = span_of(&errors);
    assert_eq!(failing.name, "GET /fail");
    assert_eq!(
        failing.status.clone().unwrap_or_default().code,
        2,
        "status Error"
    );
    let slow = span_of(&latency);
    let took = slow.end_time_unix_nano - slow.start_time_unix_nano;
    assert!(took > 2_000_000_000, "{} took {took} ns", slow.name);
    let _ = std::fs::remove_dir_all(&dir);
}
