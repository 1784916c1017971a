//! Hostile input end to end, against the real collector process: an oversized config and too
//! many rules are refused with a clear error; scrapes of 100 MB, never-ending and 1-byte-per-
//! second pages are cut or time out without memory growth; label values built to ping a Slack
//! channel, break Block Kit or run a script reach Slack escaped and within limits, and the status
//! page escaped (checked in headless Chromium).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{chromium, fake_target, temp_dir, write_config_with_rules, Collector, BIN};
use obs_testkit::slack::{assert_block_kit, Slack};
use obs_testkit::{client, eventually};

fn check(file: &std::path::Path) -> (i32, String, Duration) {
    let started = Instant::now();
    let out = Command::new(BIN).arg("check").arg(file).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text, started.elapsed())
}

#[test]
fn a_1_gb_config_and_10_000_rules_are_refused_clearly() {
    let dir = temp_dir("hostile-files");
    // A 1 GB file (sparse: costs no disk), refused before it is read.
    let huge = dir.join("huge.yml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let (code, text, took) = check(&huge);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("1073741824 bytes") && text.contains("limit"),
        "{text}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");

    // 10,000 rules.
    let mut rules = String::from("groups:\n  - name: many\n    rules:\n");
    for i in 0..10_000 {
        rules.push_str(&format!("      - alert: A{i}\n        expr: up == 0\n"));
    }
    std::fs::write(dir.join("many.rules.yml"), rules).unwrap();
    let config = dir.join("many.yml");
    std::fs::write(&config, "rule_files: [many.rules.yml]\n").unwrap();
    let (code, text, _) = check(&config);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("more than 5000 rules"), "{text}");
}

/// A target that answers every connection with `serve`.
fn evil_target(serve: fn(std::net::TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n";

fn hundred_megabytes(mut s: std::net::TcpStream) {
    let _ = s.write_all(HEAD);
    let line = b"some_metric{label=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"} 1\n";
    for _ in 0..(100 << 20) / line.len() {
        if s.write_all(line).is_err() {
            return; // the collector hung up: good
        }
    }
}

fn never_ending(mut s: std::net::TcpStream) {
    let _ = s.write_all(HEAD);
    let chunk = vec![b'#'; 64 * 1024];
    while s.write_all(&chunk).is_ok() {}
}

fn one_byte_per_second(mut s: std::net::TcpStream) {
    for b in HEAD.iter().chain(b"flag 1\n") {
        if s.write_all(&[*b]).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn huge_endless_and_slow_pages_are_cut_or_time_out() {
    let dir = temp_dir("hostile-scrapes");
    let targets = [
        evil_target(hundred_megabytes),
        evil_target(never_ending),
        evil_target(one_byte_per_second),
    ];
    let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    std::fs::write(
        dir.join("collector.yml"),
        format!("global:\n  scrape_interval: 3s\n  scrape_timeout: 2s\nscrape_configs:\n  - job_name: evil\n    static_configs:\n      - targets: [{}]\n", list.join(", ")),
    )
    .unwrap();
    let collector = Collector::start(&dir.join("collector.yml"), &dir.join("state.json"), &[]);
    // Each target's row shows its own failure (the slow one needs its 2 s timeout).
    let wants = [
        "body size limit exceeded",
        "body size limit exceeded",
        "timeout",
    ];
    let shows = |page: &str| {
        let rows: Vec<&str> = page.split("<tr>").collect();
        targets.iter().zip(wants).all(|(target, want)| {
            rows.iter().any(|r| {
                r.contains(&target.to_string())
                    && r.contains("class=\"badge down\"")
                    && r.contains(want)
            })
        })
    };
    eventually(
        Duration::from_secs(20),
        || {
            format!(
                "not every failure shown: {}",
                client::get(collector.addr, "/").unwrap().body
            )
        },
        || shows(&client::get(collector.addr, "/").unwrap().body).then_some(()),
    );
    // Still responsive, and the 16 MiB limit bounds memory (not 100 MB, not unbounded).
    assert_eq!(
        client::get(collector.addr, "/-/healthy").unwrap().status,
        200
    );
    let peak = obs_testkit::process::status_kib(collector.pid(), "VmHWM").unwrap() as f64 / 1024.0;
    assert!(peak < 120.0, "peak RSS {peak:.1} MiB");
}

#[test]
fn hostile_label_values_are_escaped_in_slack_and_on_the_page() {
    let dir = temp_dir("hostile-labels");
    let slack = Slack::start();
    let evil = format!(
        "<!channel> <@U123> *bold* & < > <script>document.title='pwned'</script>{}",
        "x".repeat(5000)
    );
    let page = Arc::new(Mutex::new(format!("flag{{evil=\"{evil}\"}} 1\n")));
    let target = fake_target(Arc::clone(&page));
    let (collector, message) = first_message(&dir, target, &slack, "groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: Evil\n        expr: flag > 0\n        annotations:\n          summary: '{{ $labels.evil }}'\n          description: 'value {{ $value }} for {{ $labels.evil }}'\n", 20);
    let raw = message.to_string();
    for ping in ["<!channel>", "<@U123>", "<script>"] {
        assert!(!raw.contains(ping), "{ping} reached Slack unescaped: {raw}");
    }
    assert!(
        raw.contains("&lt;!channel&gt;") && raw.contains("&amp;"),
        "{raw}"
    );

    // The page: escaped text, no script ran (the title is unchanged).
    let url = format!("http://{}/", collector.addr);
    let dom = chromium(&["--dump-dom"], &url, &dir.join("profile"));
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("<title>obs-collector</title>"), "{dom}");
    assert!(!dom.contains("pwned</title>"));
    assert!(
        dom.contains("&lt;script&gt;document.title"),
        "escaped text shown"
    );
    assert!(!dom.contains("<script>document.title"), "no script element");
}

/// The incident context with a hostile service: a failing route named `<!channel>`, a 10 KB
/// version and 10,000 routes. The message names at most three routes, escaped; the version
/// is cut; the payload stays valid Block Kit.
#[test]
fn hostile_routes_and_versions_in_the_incident_context_are_escaped_and_bounded() {
    let dir = temp_dir("hostile-context");
    let slack = Slack::start();
    let version = "9".repeat(10_240);
    let page_at = move |n: u64| {
        let count = "http_server_request_duration_seconds_count";
        let mut page = format!(
            "target_info{{service_name=\"svc\",service_version=\"{version}\"}} 1\nprocess_start_time_seconds 1000\n\
             {count}{{http_request_method=\"GET\",http_route=\"<!channel>\",http_response_status_code=\"500\"}} {}\n",
            n * 50
        );
        for i in 0..10_000 {
            page.push_str(&format!(
                "{count}{{http_request_method=\"GET\",http_route=\"/r/{i}\",http_response_status_code=\"200\"}} {n}\n"
            ));
        }
        page
    };
    let page = Arc::new(Mutex::new(page_at(0)));
    let target = fake_target(Arc::clone(&page));
    let grow = Arc::clone(&page);
    std::thread::spawn(move || {
        for n in 1.. {
            std::thread::sleep(Duration::from_millis(500));
            *grow.lock().unwrap() = page_at(n);
        }
    });
    let (_collector, message) = first_message(&dir, target, &slack, "groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: Errors\n        expr: (sum by (job) (rate(http_server_request_duration_seconds_count{http_response_status_code=~\"5..\"}[5s])) / sum by (job) (rate(http_server_request_duration_seconds_count[5s]))) > 0.0001\n        labels:\n          severity: page\n", 40);
    let raw = message.to_string();
    assert!(
        !raw.contains("<!channel>"),
        "a broadcast reached Slack: {raw}"
    );
    assert!(
        raw.contains("• GET &lt;!channel&gt;: "),
        "the failing route, escaped: {raw}"
    );
    let routes = raw.matches("• GET ").count();
    assert!((1..=3).contains(&routes), "{routes} routes named: {raw}");
    assert!(!raw.contains(&"9".repeat(65)), "the version is cut: {raw}");
    assert!(raw.len() < 40_000, "{} bytes", raw.len());
}

/// A collector with `rules` over `target`, and the first message it delivered to `slack`
/// (valid Block Kit).
fn first_message(
    dir: &std::path::Path,
    target: std::net::SocketAddr,
    slack: &Slack,
    rules: &str,
    within_secs: u64,
) -> (obs_testkit::process::CollectorProcess, serde_json::Value) {
    let config = write_config_with_rules(dir, target, rules, "");
    let collector = Collector::start(
        &config,
        &dir.join("state.json"),
        &[("SLACK_WEBHOOK_URL", &slack.url())],
    );
    let message = slack
        .wait_delivered(1, Duration::from_secs(within_secs))
        .remove(0);
    assert_block_kit(&message);
    (collector, message)
}
