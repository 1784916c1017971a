//! The alert says what broke, as real processes on loopback: job `demo` of two demo-service
//! instances (version in `OTEL_RESOURCE_ATTRIBUTES`, the build's fault in `DEMO_FAULT`) behind
//! obs-collector at demo speed and the Slack stand-in, or (remote mode) behind a real
//! Prometheus that the collector queries, with a real Alertmanager next to Slack.
//!
//! The story: a canary of 1.1.0 on one instance fails `GET /users/{id}`; the firing message
//! names the route, the version, the deploy before the onset and the per-version values; the
//! rollback resolves it, and the resolution says so, with the value now. Then 1.2.0 on both
//! makes `GET /search` slow: named with its p95; 1.2.1 fixes it ("after the deploy of 1.2.1").

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use obs_examples::rollout::{steady_traffic, Build, Instance};
use obs_testkit::process::{sibling_binary, CollectorProcess};
use obs_testkit::prometheus::{Alertmanager, Prometheus};
use obs_testkit::slack::{assert_block_kit, buttons, header, Slack};
use serde_json::Value;

const DASHBOARD: &str = "http://grafana.example/";

/// Every text of a Slack message's blocks, one per line.
fn texts(m: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    match (k.as_str(), x) {
                        ("text", Value::String(s)) => {
                            out.push_str(s);
                            out.push('\n');
                        }
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(&m["attachments"], &mut out);
    out
}

/// The percentage after `prefix` in `text` (`*Now*\n0.5% errors` -> 0.5).
fn percent_after(text: &str, prefix: &str) -> f64 {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"));
    let rest = &text[at + prefix.len()..];
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?} in {text}"))
}

/// The Slack message number `n` (0-based) once delivered, checked as Block Kit.
fn message(slack: &Slack, n: usize, expected_header: &str) -> (Value, String) {
    let m = slack.wait_delivered(n + 1, Duration::from_secs(90))[n].clone();
    assert_block_kit(&m);
    assert_eq!(header(&m), expected_header, "{m:#}");
    let t = texts(&m);
    (m, t)
}

/// The firing message's dashboard link opens the incident: `from` an hour before the alert
/// started (the message's "Since"), `to` the time of the message, on the route behind it.
fn assert_pinned(m: &Value, route: &str, panel: &str) {
    let (_, url) = buttons(m)
        .into_iter()
        .find(|(name, _)| name == "Dashboard")
        .unwrap_or_else(|| panic!("no dashboard button: {m:#}"));
    let url = reqwest::Url::parse(&url).unwrap();
    let q = |k: &str| -> String {
        url.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {k} in {url}"))
    };
    let since_s: i64 = {
        let t = m.to_string();
        let at = t.find("<!date^").expect("the since field") + "<!date^".len();
        t[at..].split('^').next().unwrap().parse().unwrap()
    };
    let (from, to): (i64, i64) = (q("from").parse().unwrap(), q("to").parse().unwrap());
    assert!(
        (from - (since_s * 1000 - 3_600_000)).abs() < 1000,
        "from {from} is not an hour before the onset {since_s}: {url}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(to >= since_s * 1000 && to <= now, "to {to}: {url}");
    assert_eq!(q("var-route"), route, "{url}");
    assert_eq!(q("viewPanel"), panel, "{url}");
    assert_eq!(q("var-job"), "demo", "{url}");
}

enum Mode<'a> {
    /// The collector scrapes the instances.
    Scrape,
    /// A real Prometheus scrapes them; the collector queries it and also notifies this
    /// Alertmanager.
    Remote(&'a Prometheus, &'a Alertmanager),
}

/// The collector's configuration in `dir`, over the two instances, `mode`'s way.
fn collector_config(dir: &Path, instances: &[&Instance], mode: &Mode) -> std::path::PathBuf {
    use obs_examples::demo_rules::{write_config, Source};
    let source = match mode {
        Mode::Scrape => Source::Scrape(instances.iter().map(|i| i.admin).collect()),
        Mode::Remote(prom, _) => Source::Query(prom.addr),
    };
    let config = write_config(dir, source).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("links:\n  dashboard: {DASHBOARD}\n"));
    if let Mode::Remote(_, am) = mode {
        text.push_str(&format!(
            "notifiers:\n  alertmanager:\n    url: http://{}\n",
            am.addr
        ));
    }
    std::fs::write(&config, text).unwrap();
    config
}

/// The canary story (and, with `latency`, the slow version's) on two instances at these
/// addresses, against `mode`; returns the Slack messages.
fn story(dir: &Path, [mut a, mut b]: [Instance; 2], mode: Mode, latency: bool) -> Vec<Value> {
    let build = |version, fault| Build { version, fault };
    a.deploy(build("1.0.0", "")).unwrap();
    b.deploy(build("1.0.0", "")).unwrap();
    let slack = Slack::start();
    let config = collector_config(dir, &[&a, &b], &mode);
    let collector = CollectorProcess::start(
        &sibling_binary("obs-collector"),
        &config,
        &dir.join("state.json"),
        &[("SLACK_WEBHOOK_URL", &slack.url())],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let threads = steady_traffic(&[a.app, b.app], &stop);
    // Healthy: the windows fill and the collector sees what each instance serves.
    match &mode {
        Mode::Scrape => drop(collector.wait_page(&a.admin.to_string(), Duration::from_secs(20))),
        Mode::Remote(prom, _) => drop(
            prom.wait_until("count(target_info) == 2", Duration::from_secs(20), |r| {
                !r.is_empty()
            })
            .unwrap(),
        ),
    }
    collector.wait_evaluations(4);

    // The canary: instance b as 1.1.0, whose GET /users/{id} fails 4 times in 5.
    b.deploy(build("1.1.0", "errors")).unwrap();
    let (firing, text) = message(&slack, 0, "FIRING: HighErrorRate — demo");
    let b_instance = b.admin.to_string();
    assert!(
        text.contains("*Routes*\n• GET /users/{id}: ") && text.contains("of its requests failed"),
        "the failing route: {text}"
    );
    assert!(
        !text.contains("GET /search:"),
        "a healthy route is named: {text}"
    );
    // The canary verdict: 1.1.0 is worst, 1.0.0 is fine.
    let canary = percent_after(&text, "*By version*\n1.1.0: ");
    let stable = percent_after(&text, "% errors; 1.0.0: ");
    assert!(canary > 10.0 && stable < 1.0, "{text}");
    assert!(
        text.contains(&format!("deployed 1.1.0 on {b_instance} at "))
            && text.contains("before the onset")
            && text.contains("serving 1.0.0 on 1 of 2, 1.1.0 on 1 of 2"),
        "the deploy: {text}"
    );
    assert!(text.contains("*Window*\n10s"), "{text}");
    assert_pinned(&firing, "/users/{id}", "2");
    // The status page shows the same routes under the firing alert.
    let page = collector.wait_page("by version: 1.1.0: ", Duration::from_secs(10));
    assert!(page.contains("<li>GET /users/{id}: "), "{page}");

    if let Mode::Remote(_, am) = &mode {
        // Alertmanager receives the same context as annotations.
        let alert = wait_am_alert(am, "HighErrorRate");
        let annotations = &alert["annotations"];
        assert!(
            annotations["routes"]
                .as_str()
                .is_some_and(|r| r.starts_with("GET /users/{id}: ")),
            "{alert:#}"
        );
        assert!(
            annotations["by_version"]
                .as_str()
                .is_some_and(|v| v.starts_with("1.1.0: ")),
            "{alert:#}"
        );
        assert!(
            annotations["deploy"]
                .as_str()
                .is_some_and(|d| d.contains("deployed 1.1.0 on")),
            "{alert:#}"
        );
    }

    // The rollback: the resolution says so, with the value now (not the last firing one).
    b.deploy(build("1.0.0", "")).unwrap();
    let (_, text) = message(&slack, 1, "RESOLVED: HighErrorRate — demo");
    assert!(
        text.contains("*Fix*\nafter the rollback to 1.0.0"),
        "{text}"
    );
    let now = percent_after(&text, "*Now*\n");
    assert!(now < 5.0, "the value now is under the threshold: {text}");
    assert!(text.contains("*Peak*\n"), "{text}");

    if latency {
        // 1.2.0 on both: GET /search takes 3 s.
        a.deploy(build("1.2.0", "slow")).unwrap();
        b.deploy(build("1.2.0", "slow")).unwrap();
        let (firing, text) = message(&slack, 2, "FIRING: HighLatencyP95 — demo");
        assert!(
            text.contains("*Routes*\n• GET /search: p95 ")
                && text.contains("of the requests over 2s"),
            "the slow route: {text}"
        );
        assert!(
            !text.contains("GET /users/{id}:"),
            "a fast route is named: {text}"
        );
        assert!(
            !text.contains("*By version*"),
            "one version serves: no verdict to give: {text}"
        );
        assert!(text.contains("serving 1.2.0 on 2 of 2"), "{text}");
        assert_pinned(&firing, "/search", "3");
        // The fix: 1.2.1 on both.
        a.deploy(build("1.2.1", "")).unwrap();
        b.deploy(build("1.2.1", "")).unwrap();
        let (_, text) = message(&slack, 3, "RESOLVED: HighLatencyP95 — demo");
        assert!(text.contains("*Fix*\nafter the deploy of 1.2.1"), "{text}");
        assert!(text.contains("*Now*\np95 "), "{text}");
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    drop((a, b, collector));
    slack.wait_delivered(0, Duration::ZERO)
}

/// Two instances of job `demo`, not started.
fn instances() -> [Instance; 2] {
    let bin = env!("CARGO_BIN_EXE_demo-service");
    let env = [
        ("OTEL_SERVICE_NAME", "demo"),
        ("OTEL_TRACES_EXPORTER", "none"),
    ];
    [0, 1].map(|_| Instance::new(bin.as_ref(), &env).unwrap())
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("obs-incident-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The first alert named `name` Alertmanager holds that carries the incident's routes.
fn wait_am_alert(am: &Alertmanager, name: &str) -> Value {
    let alerts = || -> Value {
        let body = obs_testkit::client::get(am.addr, "/api/v2/alerts")
            .map(|r| r.body)
            .unwrap_or_default();
        serde_json::from_str(&body).unwrap_or(Value::Null)
    };
    obs_testkit::eventually(
        Duration::from_secs(30),
        || format!("Alertmanager has no {name} with routes: {}", alerts()),
        || {
            alerts()
                .as_array()?
                .iter()
                .find(|x| {
                    x["labels"]["alertname"] == name && x["annotations"]["routes"].is_string()
                })
                .cloned()
        },
    )
}

#[test]
fn the_alerts_name_the_route_and_the_deploy_that_broke_them() {
    let dir = temp_dir("scrape");
    let messages = story(&dir, instances(), Mode::Scrape, true);
    let headers: Vec<String> = messages.iter().map(header).collect();
    assert_eq!(
        headers,
        obs_examples::demo_rules::STORY_HEADERS,
        "one message each way per incident"
    );
}

/// Remote mode: the same context from a real Prometheus, and in Alertmanager's annotations.
#[test]
fn remote_mode_gives_the_same_context_and_alertmanager_gets_it() {
    let dir = temp_dir("remote");
    let instances = instances();
    let listed: Vec<String> = instances.iter().map(|i| format!("'{}'", i.admin)).collect();
    let prom = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: [{}]\n",
        listed.join(", ")
    ))
    .unwrap();
    let am = Alertmanager::start(
        &dir,
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
    );
    let messages = story(&dir, instances, Mode::Remote(&prom, &am), false);
    let headers: Vec<String> = messages.iter().map(header).collect();
    assert_eq!(
        headers,
        [
            "FIRING: HighErrorRate — demo",
            "RESOLVED: HighErrorRate — demo"
        ]
    );
}
