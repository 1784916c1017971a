use super::*;
use crate::labels::Labels;
use crate::rules::Alert;

fn rule() -> AlertingRule {
    AlertingRule::for_test("HighErrorRate", "x > 0.05", 0)
}

fn firing(rule: &mut AlertingRule, job: &str, instance: &str, value: f64, t: i64) {
    let labels = Labels::from_pairs(&[
        ("alertname", "HighErrorRate"),
        ("job", job),
        ("instance", instance),
    ]);
    rule.active.insert(
        labels.clone(),
        Alert {
            labels,
            annotations: vec![("description".into(), format!("{job} is failing"))],
            state: State::Firing,
            value,
            active_at: t,
            fired_at: Some(t),
            resolved_at: None,
            keep_firing_since: None,
            restored: false,
            last_sent_at: None,
        },
    );
}

fn policy() -> Policy {
    Policy {
        channels: vec!["slack".into()],
        send_resolved: true,
        repeat_interval: std::time::Duration::from_secs(4 * 3600),
    }
}

fn statuses(log: &Log) -> Vec<(String, Status)> {
    log.entries
        .iter()
        .map(|e| (e.group.clone(), e.message.status))
        .collect()
}

#[test]
fn firing_once_then_resolved_once_per_group() {
    let mut r = rule();
    let mut log = Log::default();
    firing(&mut r, "api", "a:1", 0.5, 0);
    for t in [0, 15_000, 30_000] {
        log.dispatch(&r, t, &policy(), &|_| false);
    }
    assert_eq!(
        statuses(&log),
        [("HighErrorRate/api".into(), Status::Firing)]
    );
    let m = &log.entries[0].message;
    assert_eq!(
        (m.value_text.as_str(), m.threshold_text.as_deref()),
        ("0.5", Some("0.05"))
    );
    assert_eq!(m.description.as_deref(), Some("api is failing"));
    r.active.clear();
    log.dispatch(&r, 45_000, &policy(), &|_| false);
    log.dispatch(&r, 60_000, &policy(), &|_| false);
    assert_eq!(
        statuses(&log)[1],
        ("HighErrorRate/api".into(), Status::Resolved)
    );
    assert_eq!(log.entries.len(), 2);
}

#[test]
fn grouped_per_rule_and_job_new_alerts_renotify_and_repeat_interval() {
    let mut r = rule();
    let mut log = Log::default();
    firing(&mut r, "api", "a:1", 0.5, 0);
    firing(&mut r, "api", "a:2", 0.7, 0);
    firing(&mut r, "web", "w:1", 0.9, 0);
    log.dispatch(&r, 0, &policy(), &|_| false);
    assert_eq!(log.entries.len(), 2, "one message per job");
    assert_eq!(log.entries[0].message.alerts.len(), 2);
    firing(&mut r, "api", "a:3", 0.6, 15_000);
    log.dispatch(&r, 15_000, &policy(), &|_| false);
    assert_eq!(
        log.entries.len(),
        3,
        "a new alert in the group is announced"
    );
    log.dispatch(&r, 4 * 3_600_000 - 1, &policy(), &|_| false);
    assert_eq!(log.entries.len(), 3);
    log.dispatch(&r, 4 * 3_600_000 + 15_000, &policy(), &|_| false);
    assert_eq!(
        log.entries.len(),
        5,
        "both groups repeat after repeat_interval"
    );
}

#[test]
fn the_retry_stage() {
    let mut log = Log::default();
    let mut r = rule();
    firing(&mut r, "api", "a:1", 0.5, 0);
    log.dispatch(&r, 0, &policy(), &|_| false);
    let id = log.entries[0].id;
    log.record(
        id,
        Err(SendError::Retry {
            reason: "HTTP 500".into(),
            after: None,
        }),
        1000,
        0.5,
    );
    assert_eq!(
        log.entries[0].next_attempt_ms,
        1000 + 1000,
        "1 s backoff at 0.5 jitter"
    );
    log.record(
        id,
        Err(SendError::Retry {
            reason: "rate limited".into(),
            after: Some(Duration::from_secs(30)),
        }),
        2000,
        0.5,
    );
    assert_eq!(log.entries[0].next_attempt_ms, 32_000, "Retry-After wins");
    log.record(
        id,
        Err(SendError::RejectedBlocks("invalid_blocks".into())),
        3000,
        0.5,
    );
    assert!(
        log.entries[0].plain_text && log.entries[0].outcome == Outcome::Queued,
        "falls back to text once"
    );
    log.record(
        id,
        Err(SendError::RejectedBlocks("invalid_payload".into())),
        4000,
        0.5,
    );
    assert!(
        matches!(&log.entries[0].outcome, Outcome::Failed { reason, .. } if reason.contains("invalid_payload"))
    );

    // Resolved is not sent when its firing message failed.
    r.active.clear();
    log.dispatch(&r, 5000, &policy(), &|_| false);
    let resolved = log.next_for("slack").unwrap().id;
    assert!(!log.ready(resolved, 5000));
    assert!(
        matches!(&log.entries[1].outcome, Outcome::Failed { reason, .. } if reason.contains("never delivered"))
    );
}

#[test]
fn gives_up_after_max_attempts_and_backoff_is_bounded() {
    let mut log = Log::default();
    let mut r = rule();
    firing(&mut r, "api", "a:1", 0.5, 0);
    log.dispatch(&r, 0, &policy(), &|_| false);
    let id = log.entries[0].id;
    for i in 0..MAX_ATTEMPTS {
        log.record(
            id,
            Err(SendError::Retry {
                reason: "connection refused".into(),
                after: None,
            }),
            i as i64,
            0.99,
        );
    }
    assert!(
        matches!(&log.entries[0].outcome, Outcome::Failed { reason, .. } if reason.starts_with("gave up after 12 attempts"))
    );
    for n in 1..30 {
        for jitter in [0.0, 0.999] {
            let b = backoff(n, jitter);
            assert!(
                b >= Duration::from_millis(500) && b <= Duration::from_secs(90),
                "{n}: {b:?}"
            );
        }
    }
}

#[test]
fn slack_payload_is_escaped_and_within_limits() {
    let mut r = rule();
    let hostile = format!("<!channel> <@U123> *bold* & {}", "x".repeat(5000));
    let labels = Labels::from_pairs(&[("alertname", "HighErrorRate"), ("job", &hostile)]);
    r.active.insert(
        labels.clone(),
        Alert {
            labels,
            annotations: vec![
                ("description".into(), hostile.clone()),
                ("runbook_url".into(), "https://r.example/x".into()),
            ],
            state: State::Firing,
            value: 0.5,
            active_at: 0,
            fired_at: Some(0),
            resolved_at: None,
            keep_firing_since: None,
            restored: false,
            last_sent_at: None,
        },
    );
    let mut log = Log::default();
    log.dispatch(&r, 0, &policy(), &|_| false);
    let payload = slack::payload(&log.entries[0].message);
    // Everything Slack parses as mrkdwn (all but the plain_text header) is escaped.
    let mut parsed = payload.clone();
    parsed["blocks"].as_array_mut().unwrap().remove(0);
    let text = parsed.to_string();
    assert!(
        !text.contains("<!channel>") && !text.contains("<@U123>"),
        "no mass ping"
    );
    assert!(text.contains("&lt;!channel&gt;"));
    let blocks = payload["blocks"].as_array().unwrap();
    assert!(blocks.len() <= slack::BLOCKS_MAX);
    assert_eq!(blocks[0]["type"], "header");
    // The header (plain_text, the job is in it) cannot form a mention either (a fuzz finding).
    let header = blocks[0]["text"]["text"].as_str().unwrap();
    assert!(
        !header.contains('<') && header.contains("‹!channel›"),
        "{header}"
    );
    assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= slack::HEADER_MAX);
    for b in blocks {
        if let Some(t) = b["text"]["text"].as_str() {
            assert!(t.chars().count() <= slack::SECTION_MAX);
        }
        for f in b["fields"].as_array().into_iter().flatten() {
            assert!(f["text"].as_str().unwrap().chars().count() <= slack::FIELD_MAX);
        }
    }
    assert!(payload["text"].as_str().unwrap().chars().count() <= slack::SECTION_MAX);
    assert!(text.contains("<https://r.example/x|Runbook>"));
}

#[test]
fn silenced_alerts_send_neither_firing_nor_resolved() {
    let mut r = rule();
    let mut log = Log::default();
    let silenced = |l: &Labels| l.get("instance") == Some("a:1");
    firing(&mut r, "api", "a:1", 0.5, 0);
    log.dispatch(&r, 0, &policy(), &silenced);
    assert!(log.entries.is_empty(), "silenced while firing");
    // Another alert of the group is announced alone.
    firing(&mut r, "api", "a:2", 0.7, 15_000);
    log.dispatch(&r, 15_000, &policy(), &silenced);
    assert_eq!(log.entries.len(), 1);
    assert_eq!(log.entries[0].message.alerts.len(), 1);
    // Both resolve: the unsilenced one's resolution is announced (the group had it firing).
    r.active.clear();
    log.dispatch(&r, 30_000, &policy(), &silenced);
    assert_eq!(statuses(&log)[1].1, Status::Resolved);
    // A group announced, then silenced, then resolved while silenced: no resolved message.
    let mut log = Log::default();
    firing(&mut r, "web", "a:1", 0.5, 0);
    log.dispatch(&r, 0, &policy(), &|_| false);
    assert_eq!(log.entries.len(), 1);
    log.dispatch(&r, 15_000, &policy(), &silenced);
    assert_eq!(log.entries.len(), 1, "silenced: no repeat, no resolution");
    r.active.clear();
    log.dispatch(&r, 30_000, &policy(), &silenced);
    assert_eq!(log.entries.len(), 1, "resolved while silenced: nothing");
}
