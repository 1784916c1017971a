//! Slack notifications end to end: the real collector process posts to a Slack stand-in on
//! loopback that validates Block Kit and answers as scripted (200, 429 + Retry-After, 500,
//! 400 invalid_blocks, 404, a hang), including a restart in the middle of a retry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use obs_testkit::slack::{assert_block_kit, header, Reply, Slack};
use obs_testkit::{client, eventually};

mod common;

use common::{fake_target, temp_dir, write_config, Collector};

#[test]
fn firing_then_resolved_with_retries_and_fallbacks_and_no_secret_leaks() {
    let slack = Slack::start();
    // firing: 500, then 429 (Retry-After 2), then 400 invalid_blocks, then plain text 200.
    slack.script(&common::RETRIES_THEN_PLAIN_TEXT);
    let page = Arc::new(Mutex::new("flag 1\n".to_owned()));
    let target = fake_target(Arc::clone(&page));
    let dir = temp_dir("main");
    let collector = Collector::start(
        &write_config(&dir, target, "0s", ""),
        &dir.join("state.json"),
        &[("SLACK_WEBHOOK_URL", &slack.url())],
    );

    let delivered = slack.wait_delivered(1, Duration::from_secs(20));
    let all = slack.received();
    assert_eq!(
        all.len(),
        4,
        "500, 429, 400, then the plain-text retry: {all:#?}"
    );
    let gap = all[2].0.duration_since(all[1].0);
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After 2 honoured, waited {gap:?}"
    );
    for (_, body, _) in &all {
        assert_block_kit(body);
    }
    assert!(
        obs_testkit::slack::blocks(&all[0].1).is_some(),
        "Block Kit first"
    );
    assert!(
        obs_testkit::slack::blocks(&delivered[0]).is_none(),
        "plain text after invalid_blocks"
    );
    let text = delivered[0]["text"].as_str().unwrap();
    assert!(
        text.contains("[FIRING] Flag — svc")
            && text.contains("value 1")
            && text.contains("threshold 0"),
        "{text}"
    );
    for pair in all.windows(2) {
        assert!(
            pair[1].0.duration_since(pair[0].0) >= Duration::from_millis(950),
            "at most 1 message per second"
        );
    }

    // It resolves: one resolved message. (The repeat interval and exact retry timing are
    // tested on an injected clock in `timing.rs`.)
    *page.lock().unwrap() = "flag 0\n".to_owned();
    let delivered = slack.wait_delivered(2, Duration::from_secs(10));
    assert_block_kit(&delivered[1]);
    assert!(
        header(&delivered[1]).starts_with("RESOLVED: Flag — svc"),
        "{}",
        header(&delivered[1])
    );
    assert_eq!(
        slack.received().len(),
        5,
        "exactly one firing and one resolved delivery"
    );

    // The status page shows the notifications; nothing ever shows the webhook.
    let page_html = client::get(collector.addr, "/").unwrap().body;
    assert!(
        page_html.contains("Notifications") && page_html.contains("delivered"),
        "{page_html}"
    );
    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
    let metrics = client::get(collector.addr, "/metrics").unwrap().body;
    let output = collector.output.lock().unwrap().clone();
    for (what, text) in [
        ("page", &page_html),
        ("metrics", &metrics),
        ("output", &output),
        ("state", &state),
    ] {
        assert!(
            !text.contains("SECRETWEBHOOKTOKEN"),
            "the webhook leaked into the {what}"
        );
    }
    assert!(
        output.contains("notification failed; will retry") && output.contains("internal_error"),
        "{output}"
    );
}

#[test]
fn permanent_failures_are_reported_with_slacks_reason() {
    let slack = Slack::start();
    slack.script(&[Reply::Status(404, "channel_not_found", None)]);
    let page = Arc::new(Mutex::new("flag 1\n".to_owned()));
    let target = fake_target(Arc::clone(&page));
    let dir = temp_dir("permanent");
    let collector = Collector::start(
        &write_config(&dir, target, "0s", ""),
        &dir.join("state.json"),
        &[("SLACK_WEBHOOK_URL", &slack.url())],
    );
    let html = collector.wait_page("channel_not_found", Duration::from_secs(15));
    assert!(html.contains("failed"), "{html}");
    // That a 404 is never retried is tested on an injected clock in `timing.rs`.
    eventually(
        Duration::from_secs(5),
        || "Slack's reason is not in the log".into(),
        || {
            collector
                .output
                .lock()
                .unwrap()
                .contains("channel_not_found")
                .then_some(())
        },
    );
}

#[test]
fn a_message_being_retried_when_the_process_dies_is_delivered_after_restart_once() {
    let slack = Slack::start();
    // The first attempt hangs (the collector times out after 10 s); it is killed meanwhile.
    slack.script(&[
        Reply::Hang(Duration::from_secs(3)),
        Reply::Status(500, "oops", None),
        Reply::Status(500, "oops", None),
    ]);
    let page = Arc::new(Mutex::new("flag 1\n".to_owned()));
    let target = fake_target(Arc::clone(&page));
    let dir = temp_dir("restart");
    let mut first = Collector::start(
        &write_config(&dir, target, "0s", ""),
        &dir.join("state.json"),
        &[("SLACK_WEBHOOK_URL", &slack.url())],
    );
    eventually(
        Duration::from_secs(20),
        || format!("no retries seen: {:#?}", slack.received()),
        || (slack.received().len() >= 2).then_some(()),
    );
    first.kill9();
    let attempts_before = slack.received().len();
    let second = Collector::start(
        &write_config(&dir, target, "0s", ""),
        &dir.join("state.json"),
        &[("SLACK_WEBHOOK_URL", &slack.url())],
    );
    let delivered = slack.wait_delivered(1, Duration::from_secs(30));
    assert_eq!(delivered.len(), 1);
    assert!(header(&delivered[0]).starts_with("FIRING: Flag — svc"));
    // Nothing more: three more evaluations dispatched whatever they would send.
    second.wait_evaluations(3);
    let total = slack.received();
    assert_eq!(
        total.iter().filter(|r| r.2 == Some(200)).count(),
        1,
        "delivered once, not repeated after the restart"
    );
    assert!(total.len() > attempts_before, "retried after the restart");
}
