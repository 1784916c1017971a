//! Silences with the real `amtool` (Debian `prometheus-alertmanager`) against the collector
//! process: add, query and expire; a silenced firing alert sends nothing to Slack (stand-in on
//! loopback); the silence survives `kill -9`; after expiry the notification goes out. Bad input
//! is refused with Alertmanager's 400 and changes nothing.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use obs_testkit::client;
use obs_testkit::slack::{header, Slack};
use serde_json::Value;

mod common;

use common::{fake_target, temp_dir, write_config, Collector};

fn amtool(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new("amtool")
        .arg(format!("--alertmanager.url=http://{addr}"))
        .args(args)
        .output()
        .expect("amtool (Debian prometheus-alertmanager) must be installed")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn amtool_silences_mute_slack_survive_kill9_and_expire() {
    let slack = Slack::start();
    let page = Arc::new(Mutex::new("flag 0\n".to_owned()));
    let target = fake_target(Arc::clone(&page));
    let dir = temp_dir("silences");
    let config = write_config(&dir, target, "0s", "");
    let state = dir.join("state.json");
    let env = [("SLACK_WEBHOOK_URL", slack.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = Collector::start(&config, &state, &env);

    let added = amtool(
        first.addr,
        &[
            "silence",
            "add",
            "alertname=Flag",
            "job=svc",
            "-d",
            "2h",
            "-c",
            "deploy",
            "-a",
            "tester",
        ],
    );
    assert!(added.status.success(), "{}", text(&added));
    let id = String::from_utf8_lossy(&added.stdout).trim().to_owned();
    assert_eq!(id.len(), 36, "a silence id: {id:?}");
    let listed = amtool(first.addr, &["silence", "query", "-o", "json"]);
    let silences: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(silences[0]["id"], id.as_str(), "{silences}");
    assert_eq!(silences[0]["status"]["state"], "active");
    assert_eq!(silences[0]["comment"], "deploy");
    assert_eq!(silences[0]["createdBy"], "tester");

    // The alert fires while silenced: nothing reaches Slack, the API says why.
    *page.lock().unwrap() = "flag 1\n".to_owned();
    let firing = first.wait_alert("firing", Duration::from_secs(10));
    assert_eq!(firing["silencedBy"][0], id.as_str(), "{firing}");
    let hidden = amtool(
        first.addr,
        &["alert", "query", "-o", "json", "alertname=Flag"],
    );
    assert_eq!(
        String::from_utf8_lossy(&hidden.stdout).trim(),
        "[]",
        "silenced: hidden by default"
    );
    let alerts = amtool(
        first.addr,
        &["alert", "query", "-s", "-o", "json", "alertname=Flag"],
    );
    let alerts: Value = serde_json::from_slice(&alerts.stdout).unwrap();
    assert_eq!(alerts[0]["status"]["state"], "suppressed", "{alerts}");
    first.wait_evaluations(2);
    assert!(
        slack.received().is_empty(),
        "silenced, yet Slack got a message"
    );

    // kill -9: the silence is in the state file, the restarted collector keeps it.
    first.kill9();
    let second = Collector::start(&config, &state, &env);
    let listed = amtool(second.addr, &["silence", "query", "-q"]);
    assert_eq!(text(&listed).trim(), id, "the silence survived the restart");
    second.wait_alert("firing", Duration::from_secs(10));
    second.wait_evaluations(2);
    assert!(
        slack.received().is_empty(),
        "still silenced after the restart"
    );

    // Expired: the next evaluation notifies.
    let expired = amtool(second.addr, &["silence", "expire", &id]);
    assert!(expired.status.success(), "{}", text(&expired));
    let delivered = slack.wait_delivered(1, Duration::from_secs(15));
    assert!(header(&delivered[0]).starts_with("FIRING: Flag — svc"));
    let active = amtool(second.addr, &["silence", "query", "-q"]);
    assert_eq!(text(&active).trim(), "", "expired silences are not listed");
    let all = amtool(second.addr, &["silence", "query", "--expired", "-q"]);
    assert_eq!(text(&all).trim(), id);
    let again = amtool(second.addr, &["silence", "expire", &id]);
    assert!(!again.status.success(), "expiring twice is an error");
}

#[test]
fn bad_silences_are_refused_with_a_reason_and_change_nothing() {
    let page = Arc::new(Mutex::new("flag 0\n".to_owned()));
    let dir = temp_dir("silences-bad");
    let config = write_config(&dir, fake_target(page), "0s", "");
    let collector = Collector::start(&config, &dir.join("state.json"), &[]);
    // amtool checks quoting, regexes and the time order itself; the API checks them too.
    let post = |matchers: &str, comment: &str, starts: &str, ends: &str| {
        client::post_json(
            collector.addr,
            "/api/v2/silences",
            &format!(
                r#"{{"matchers":{matchers},"startsAt":"{starts}","endsAt":"{ends}","createdBy":"t","comment":"{comment}"}}"#
            ),
        )
        .unwrap()
    };
    let job = r#"[{"name":"job","value":"svc","isRegex":false}]"#;
    let long_comment = "x".repeat(100 * 1024);
    for (matchers, comment, starts, ends, why) in [
        (
            r#"[{"name":"job","value":"a(","isRegex":true}]"#,
            "c",
            "2030-01-01T00:00:00Z",
            "2030-01-02T00:00:00Z",
            "invalid regular expression",
        ),
        (
            r#"[{"name":"job","value":".*","isRegex":true}]"#,
            "c",
            "2030-01-01T00:00:00Z",
            "2030-01-02T00:00:00Z",
            "empty string",
        ),
        (
            r#"[]"#,
            "c",
            "2030-01-01T00:00:00Z",
            "2030-01-02T00:00:00Z",
            "at least one matcher",
        ),
        (
            job,
            long_comment.as_str(),
            "2030-01-01T00:00:00Z",
            "2030-01-02T00:00:00Z",
            "at most 4096",
        ),
        (
            job,
            "c",
            "2030-01-02T00:00:00Z",
            "2030-01-01T00:00:00Z",
            "after the start",
        ),
        (
            job,
            "c",
            "2020-01-01T00:00:00Z",
            "2020-01-02T00:00:00Z",
            "in the past",
        ),
        (
            job,
            "c",
            "tomorrow",
            "2030-01-02T00:00:00Z",
            "not an RFC 3339 time",
        ),
    ] {
        let r = post(matchers, comment, starts, ends);
        assert_eq!(r.status, 400, "{why}: {}", r.body);
        assert!(r.body.contains(why), "{why}: {}", r.body);
    }
    let garbage = client::post_json(collector.addr, "/api/v2/silences", "{not json").unwrap();
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    // The same mistakes from amtool: the API's 400 (empty-matching matchers) and amtool's own
    // check (time order) both reach the user.
    for (args, why) in [
        (
            vec!["silence", "add", "job=~\".*\"", "-c", "c", "-a", "a"],
            "empty string",
        ),
        (
            vec![
                "silence",
                "add",
                "job=svc",
                "-c",
                "c",
                "-a",
                "a",
                "--start",
                "2030-01-02T00:00:00Z",
                "--end",
                "2030-01-01T00:00:00Z",
            ],
            "cannot start after it ends",
        ),
    ] {
        let out = amtool(collector.addr, &args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(text(&out).contains(why), "{args:?}: {}", text(&out));
    }
    let unknown = amtool(
        collector.addr,
        &["silence", "expire", "00000000-0000-4000-8000-000000000000"],
    );
    assert!(!unknown.status.success());
    assert_eq!(
        client::get(
            collector.addr,
            "/api/v2/silence/00000000-0000-4000-8000-000000000000"
        )
        .unwrap()
        .status,
        404
    );
    let listed = client::get(collector.addr, "/api/v2/silences").unwrap();
    assert_eq!(listed.body.trim(), "[]", "nothing was created");
}

#[test]
fn the_status_page_silences_an_alert_and_expires_the_silence() {
    let page = Arc::new(Mutex::new("flag 1\n".to_owned()));
    let target = fake_target(page);
    let dir = temp_dir("silences-page");
    let config = write_config(&dir, target, "0s", "");
    let collector = Collector::start(&config, &dir.join("state.json"), &[]);
    collector.wait_alert("firing", Duration::from_secs(10));

    // The buttons are clicked in a real browser in `status_page.rs`; here the form posts
    // themselves, as a browser and as a cross-site page would send them.
    // What the browser sends for "silence 4h": the alert's labels and the button's value.
    let host = collector.addr.to_string();
    let origin = format!("http://{host}");
    let form = format!(
        "label.alertname=Flag&label.instance={}&label.job=svc&label.severity=page&for=4h",
        target.to_string().replace(':', "%3A")
    );
    let same_site: &[(&str, &[u8])] = &[
        ("content-type", b"application/x-www-form-urlencoded"),
        ("origin", origin.as_bytes()),
    ];
    let cross_site: &[(&str, &[u8])] = &[
        ("content-type", b"application/x-www-form-urlencoded"),
        ("origin", b"http://evil.example"),
    ];
    let refused =
        client::post(collector.addr, "/silences/new", cross_site, form.as_bytes()).unwrap();
    assert_eq!(refused.status, 403, "a cross-site form is refused");
    assert!(amtool(collector.addr, &["silence", "query", "-q"])
        .stdout
        .is_empty());
    let created =
        client::post(collector.addr, "/silences/new", same_site, form.as_bytes()).unwrap();
    assert_eq!(
        (created.status, created.header("location")),
        (303, Some("/"))
    );
    let id = text(&amtool(collector.addr, &["silence", "query", "-q"]))
        .trim()
        .to_owned();
    assert_eq!(id.len(), 36, "one silence: {id:?}");
    let silence: Value = serde_json::from_str(
        &client::get(collector.addr, &format!("/api/v2/silence/{id}"))
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(silence["createdBy"], "status page");
    assert_eq!(
        silence["matchers"].as_array().unwrap().len(),
        4,
        "{silence}"
    );
    let html = client::get(collector.addr, "/").unwrap().body;
    assert!(
        html.contains("class=\"badge silenced\"") && html.contains("<h2>Silences</h2>"),
        "{html}"
    );

    // "expire" on the silence's row.
    let expire = format!("id={id}");
    let expired = client::post(
        collector.addr,
        "/silences/expire",
        same_site,
        expire.as_bytes(),
    )
    .unwrap();
    assert_eq!(expired.status, 303, "{}", expired.body);
    assert!(text(&amtool(collector.addr, &["silence", "query", "-q"]))
        .trim()
        .is_empty());
    let again = client::post(
        collector.addr,
        "/silences/expire",
        same_site,
        expire.as_bytes(),
    )
    .unwrap();
    assert_eq!(again.status, 400, "already expired: {}", again.body);
}
