//! The one-command demo end to end (two service instances, collector, console notifications):
//! the canary's errors and the slow release's latency fire and resolve, in order; each firing
//! line names the route, the deploy and an example trace, each resolution the rollback or the
//! fix; the last release, 40% slower, fires nothing and gets a verdict naming the route, the
//! versions and the change; the summary says which deploy broke what; and nothing is left
//! running.

use std::process::Command;

#[test]
fn the_demo_fires_and_resolves_both_alerts() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .env_remove("SLACK_WEBHOOK_URL")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let alerts: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("FIRING") || l.contains("RESOLVED"))
        .collect();
    let expected = [
        "FIRING   HighErrorRate",
        "RESOLVED HighErrorRate",
        "FIRING   HighLatencyP95",
        "RESOLVED HighLatencyP95",
    ];
    assert_eq!(alerts.len(), 4, "{stderr}");
    for (line, want) in alerts.iter().zip(expected) {
        assert!(line.contains(want), "{line:?} should be {want:?}\n{stderr}");
    }
    // What broke and which deploy: the route, the canary's version, the way back.
    let expected: [&[&str]; 4] = [
        &[
            "of requests answered 5xx",
            "routes: GET /users/{id}: ",
            "deployed 1.1.0 on ",
            "by version: 1.1.0: ",
        ],
        &["resolved: after the rollback to 1.0.0"],
        &["p95 latency", "routes: GET /search: p95 ", "1.2.0"],
        &["resolved: after the deploy of 1.2.1"],
    ];
    for (alert, parts) in alerts.iter().zip(expected) {
        for part in parts {
            assert!(alert.contains(part), "{part:?} not in {alert}");
        }
    }
    let summary = &stdout[stdout.find("\nsummary:").expect("a summary")..];
    assert!(
        summary.contains("route    GET /users/{id}: ")
            && summary.contains("resolved after the rollback to 1.0.0")
            && summary.contains("route    GET /search: ")
            && summary.contains("resolved after the deploy of 1.2.1"),
        "{summary}"
    );
    // Each firing line names an example trace, and the summary shows what it was: the failing
    // request for the error rate, a slow one for the latency.
    for firing in [alerts[0], alerts[2]] {
        assert!(firing.contains(" example trace "), "{firing}");
    }
    let examples: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("example trace "))
        .collect();
    assert_eq!(examples.len(), 2, "{stdout}");
    assert!(
        examples[0].contains(": GET /users/{id},"),
        "{}",
        examples[0]
    );
    let slow_ms: u64 = examples[1]
        .rsplit(", ")
        .next()
        .and_then(|t| t.strip_suffix(" ms"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {}", examples[1]));
    assert!(slow_ms > 2000, "{}", examples[1]);
    assert!(
        stdout.contains("\"request_id\"") && stdout.contains("\"trace_id\""),
        "JSON logs with ids are shown: {stdout}"
    );
    let delivered_alerts = stdout
        .lines()
        .filter(|l| l.contains("delivered at") && !l.contains(" notice "))
        .count();
    assert_eq!(delivered_alerts, 4, "{stdout}");
    // The last release: no alert, a verdict.
    let verdict = stderr
        .lines()
        .find(|l| l.contains("NOTICE   Deploy regression: demo 1.3.0"))
        .unwrap_or_else(|| panic!("no verdict for 1.3.0: {stderr}"));
    assert!(
        verdict.contains("demo 1.3.0 (full rollout): GET /users/{id} ")
            && verdict.contains(" on 1.2.1 (+"),
        "{verdict}"
    );
    // The state changes are shown: pending before firing, for the error-rate alert.
    let pending = stdout
        .find("alert HighErrorRate is pending")
        .expect("pending shown");
    let firing = stdout
        .find("alert HighErrorRate is firing")
        .expect("firing shown");
    assert!(pending < firing, "{stdout}");
}

#[test]
fn ctrl_c_stops_the_demo_and_leaves_no_process_behind() {
    use std::io::{BufRead, BufReader};
    use std::time::Duration;

    // Alone in a directory, as `cargo run --bin demo` leaves it on a fresh clone: the demo
    // needs no other binary (it once looked for a `demo-service` next to it).
    let alone = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-alone");
    let _ = std::fs::remove_dir_all(&alone);
    std::fs::create_dir_all(&alone).unwrap();
    let bin = alone.join("demo");
    std::fs::hard_link(env!("CARGO_BIN_EXE_demo"), &bin)
        .or_else(|_| std::fs::copy(env!("CARGO_BIN_EXE_demo"), &bin).map(drop))
        .unwrap();
    let mut demo = Command::new(&bin)
        .env_remove("SLACK_WEBHOOK_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the demo");
    let mut out = BufReader::new(demo.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).is_ok_and(|n| n > 0) && !line.contains("healthy traffic") {
        line.clear();
    }
    if !line.contains("healthy traffic") {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut demo.stderr.take().unwrap(), &mut err).unwrap();
        panic!("the demo stopped before its traffic: {err}");
    }
    // The demo service is the demo's child.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", demo.id())).unwrap();
    let service: u32 = children
        .split_whitespace()
        .next()
        .expect("the demo service runs")
        .parse()
        .unwrap();
    let err = demo.stderr.take().unwrap();
    std::thread::spawn(move || for _ in out.lines() {}); // keep draining stdout
    std::thread::spawn(move || for _ in BufReader::new(err).lines() {}); // and stderr
    Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .unwrap();
    let status = obs_testkit::eventually(
        Duration::from_secs(15),
        || "the demo did not stop on Ctrl-C".into(),
        || demo.try_wait().unwrap(),
    );
    assert!(status.success(), "{status}");
    obs_testkit::eventually(
        Duration::from_secs(5),
        || format!("the demo service {service} is still running"),
        || {
            let gone = !std::path::Path::new(&format!("/proc/{service}")).exists()
                || std::fs::read_to_string(format!("/proc/{service}/stat"))
                    .is_ok_and(|s| s.contains(") Z "));
            gone.then_some(())
        },
    );
}
