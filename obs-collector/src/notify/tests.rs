use super::*;
use crate::config::route::GroupBy;
use crate::labels::Labels;
use crate::links::Links;
use crate::rules::Alert;

const S: i64 = 1000;
const M: i64 = 60 * S;

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

fn resolve(rule: &mut AlertingRule, instance: &str) {
    rule.active
        .retain(|l, _| l.get("instance") != Some(instance));
}

/// Alertmanager's defaults: group_wait 30s, group_interval 5m, repeat_interval 4h.
fn policy() -> Policy {
    Policy {
        channels: vec!["slack".into()],
        send_resolved: true,
        route: Route::default(),
    }
}

/// Sends at once: the unit tests of the queue and the payload.
fn immediate() -> Policy {
    let mut p = policy();
    p.route.group_wait = Duration::ZERO;
    p
}

/// An evaluation at `t` with the default policy: the rule's alerts join their groups, due
/// groups flush.
fn eval(log: &mut Log, r: &AlertingRule, t: i64, policy: &Policy, muted: &dyn Fn(&Labels) -> bool) {
    log.insert(r, t, &policy.route, &|_| Context::default());
    log.flush(t, policy, &Links::default(), muted);
}

fn step(log: &mut Log, r: &AlertingRule, t: i64, muted: &dyn Fn(&Labels) -> bool) {
    eval(log, r, t, &immediate(), muted);
}

/// `(status, firing instances, resolved instances)` of each queued message.
fn sent(log: &Log) -> Vec<(Status, Vec<String>, Vec<String>)> {
    let names = |alerts: &[AlertInfo]| {
        alerts
            .iter()
            .map(|a| a.labels.get("instance").unwrap_or_default().to_owned())
            .collect()
    };
    log.entries
        .iter()
        .map(|e| {
            (
                e.message.status,
                names(&e.message.alerts),
                names(&e.message.resolved),
            )
        })
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_new_group_waits_group_wait_unless_its_alert_started_earlier() {
    let (mut r, mut log, p) = (rule(), Log::default(), policy());
    firing(&mut r, "api", "a:1", 0.5, 0);
    eval(&mut log, &r, 0, &p, &|_| false);
    // A second alert of the group within group_wait joins the first message.
    firing(&mut r, "api", "a:2", 0.7, 15 * S);
    eval(&mut log, &r, 15 * S, &p, &|_| false);
    eval(&mut log, &r, 30 * S - 1, &p, &|_| false);
    assert!(log.entries.is_empty(), "group_wait not over");
    eval(&mut log, &r, 30 * S, &p, &|_| false);
    assert_eq!(
        sent(&log),
        [(Status::Firing, strings(&["a:1", "a:2"]), vec![])]
    );
    let m = &log.entries[0].message;
    assert_eq!(
        (m.alertname.as_str(), m.job.as_str()),
        ("HighErrorRate", "api")
    );
    assert_eq!(
        (m.value_text.as_str(), m.threshold_text.as_deref()),
        ("0.7", Some("0.05"))
    );
    assert_eq!(
        m.description.as_deref(),
        Some("api is failing"),
        "the first alert's"
    );
    assert_eq!(
        log.entries[0].group,
        r#"{alertname="HighErrorRate", job="api"}"#
    );

    // An alert that fired long before its group was made (a restart) is sent at once.
    let (mut r, mut log) = (rule(), Log::default());
    firing(&mut r, "api", "a:1", 0.5, 0);
    eval(&mut log, &r, 10 * M, &p, &|_| false);
    assert_eq!(log.entries.len(), 1);
}

#[test]
fn changes_wait_for_group_interval_and_nothing_new_waits_for_repeat_interval() {
    let (mut r, mut log, p) = (rule(), Log::default(), policy());
    firing(&mut r, "api", "a:1", 0.5, 0);
    for t in (0..=30 * S).step_by(15_000) {
        eval(&mut log, &r, t, &p, &|_| false);
    }
    assert_eq!(log.entries.len(), 1);
    // Joins 15 s after the first message: told at the next tick, 5 min after the first flush.
    firing(&mut r, "api", "a:2", 0.7, 45 * S);
    let mut t = 45 * S;
    while t < 30 * S + 5 * M {
        eval(&mut log, &r, t, &p, &|_| false);
        t += 15 * S;
    }
    assert_eq!(log.entries.len(), 1, "not before group_interval");
    eval(&mut log, &r, 30 * S + 5 * M, &p, &|_| false);
    assert_eq!(
        sent(&log)[1],
        (Status::Firing, strings(&["a:1", "a:2"]), vec![])
    );
    // Unchanged: silent until repeat_interval (4 h after the last message) has passed, then
    // once, at the next flush (Alertmanager's 4h05m).
    let last = 30 * S + 5 * M;
    let mut t = last + 5 * M;
    while t <= last + 4 * 60 * M {
        eval(&mut log, &r, t, &p, &|_| false);
        t += 5 * M;
    }
    assert_eq!(log.entries.len(), 2, "not at 4h itself");
    eval(&mut log, &r, last + 4 * 60 * M + 5 * M, &p, &|_| false);
    eval(&mut log, &r, last + 4 * 60 * M + 10 * M, &p, &|_| false);
    assert_eq!(log.entries.len(), 3, "one repeat");
    assert_eq!(log.entries[2].created_ms, last + 4 * 60 * M + 5 * M);
}

#[test]
fn between_evaluations_groups_flush_in_time_order_each_at_its_own_time() {
    let (mut r, mut log, mut p) = (rule(), Log::default(), policy());
    p.route.group_wait = Duration::from_secs(10);
    p.route.group_interval = Duration::from_secs(25);
    firing(&mut r, "api", "a:1", 0.5, 0);
    log.insert(&r, 0, &p.route, &|_| Context::default());
    firing(&mut r, "web", "w:1", 0.5, 5 * S);
    log.insert(&r, 5 * S, &p.route, &|_| Context::default());
    assert_eq!(log.next_flush_ms(), Some(10 * S));
    // Until 40 s: api at 10 s and 35 s, web at 15 s (its second flush, at 40 s, is not before).
    log.flush_before(40 * S, &p, &Links::default(), &|_| false);
    let created: Vec<(i64, &str)> = log
        .entries
        .iter()
        .map(|e| (e.created_ms, e.message.job.as_str()))
        .collect();
    assert_eq!(created, [(10 * S, "api"), (15 * S, "web")]);
    assert_eq!(log.next_flush_ms(), Some(40 * S));
}

#[test]
fn resolution_at_the_next_tick_and_flapping_inside_one_says_nothing() {
    let (mut r, mut log, p) = (rule(), Log::default(), policy());
    firing(&mut r, "api", "a:1", 0.5, 0);
    firing(&mut r, "api", "a:2", 0.5, 0);
    eval(&mut log, &r, 0, &p, &|_| false);
    eval(&mut log, &r, 30 * S, &p, &|_| false);
    // a:2 flaps (resolves, fires again) between two ticks: no message.
    resolve(&mut r, "a:2");
    eval(&mut log, &r, M, &p, &|_| false);
    firing(&mut r, "api", "a:2", 0.5, 2 * M);
    eval(&mut log, &r, 2 * M, &p, &|_| false);
    eval(&mut log, &r, 30 * S + 5 * M, &p, &|_| false);
    assert_eq!(
        log.entries.len(),
        1,
        "a flap inside group_interval is not news"
    );
    // a:1 resolves: the next tick says so, listing it as resolved next to the firing a:2.
    resolve(&mut r, "a:1");
    eval(&mut log, &r, 6 * M, &p, &|_| false);
    assert_eq!(log.entries.len(), 1);
    eval(&mut log, &r, 30 * S + 10 * M, &p, &|_| false);
    assert_eq!(
        sent(&log)[1],
        (Status::Firing, strings(&["a:2"]), strings(&["a:1"]))
    );
    // All resolved: one resolved message at the next tick, with how long the group fired.
    resolve(&mut r, "a:2");
    eval(&mut log, &r, 11 * M, &p, &|_| false);
    eval(&mut log, &r, 30 * S + 15 * M, &p, &|_| false);
    assert_eq!(sent(&log)[2], (Status::Resolved, vec![], strings(&["a:2"])));
    let m = &log.entries[2].message;
    assert_eq!(
        m.fired_for_ms,
        Some(11 * M - 2 * M),
        "a:2 fired from 2 min to 11 min"
    );
    // The resolution does not repeat the firing text (its value is the last firing one), and
    // says the peak instead.
    assert_eq!(m.description, None);
    assert!(m.peak_text.is_some());
    assert!(log.groups.is_empty(), "an empty group is forgotten");
    // Firing again later is a new group: announced after group_wait.
    firing(&mut r, "api", "a:1", 0.5, 20 * M);
    eval(&mut log, &r, 20 * M, &p, &|_| false);
    eval(&mut log, &r, 20 * M + 30 * S, &p, &|_| false);
    assert_eq!(sent(&log)[3].0, Status::Firing);
}

#[test]
fn group_by_names_the_groups() {
    let mut r = rule();
    for (job, instance) in [("api", "a:1"), ("web", "w:1"), ("db", "d:1")] {
        firing(&mut r, job, instance, 0.5, 0);
    }
    // The default: per alert name and job.
    let mut log = Log::default();
    step(&mut log, &r, 0, &|_| false);
    assert_eq!(log.entries.len(), 3);
    // By alert name: one message listing the three jobs.
    let mut p = immediate();
    p.route.group_by = GroupBy::Labels(vec!["alertname".into()]);
    let mut log = Log::default();
    eval(&mut log, &r, 0, &p, &|_| false);
    assert_eq!(
        sent(&log),
        [(Status::Firing, strings(&["a:1", "d:1", "w:1"]), vec![])]
    );
    assert_eq!(log.entries[0].message.job, "api, db, web");
    // A fourth joining after group_interval: one update listing four.
    firing(&mut r, "queue", "q:1", 0.5, M);
    eval(&mut log, &r, M, &p, &|_| false);
    eval(&mut log, &r, 5 * M, &p, &|_| false);
    assert_eq!(log.entries.len(), 2);
    assert_eq!(log.entries[1].message.alerts.len(), 4);
    // Every label: one group per alert.
    p.route.group_by = GroupBy::All;
    let mut log = Log::default();
    eval(&mut log, &r, 0, &p, &|_| false);
    assert_eq!(log.entries.len(), 4);
}

#[test]
fn without_send_resolved_resolutions_are_recorded_not_sent() {
    let (mut r, mut log) = (rule(), Log::default());
    let mut p = immediate();
    p.send_resolved = false;
    firing(&mut r, "api", "a:1", 0.5, 0);
    firing(&mut r, "api", "a:2", 0.5, 0);
    eval(&mut log, &r, 0, &p, &|_| false);
    resolve(&mut r, "a:1");
    eval(&mut log, &r, 5 * M, &p, &|_| false);
    assert_eq!(log.entries.len(), 1, "a resolved alert alone is not news");
    resolve(&mut r, "a:2");
    eval(&mut log, &r, 10 * M, &p, &|_| false);
    assert_eq!(log.entries.len(), 1);
    assert!(log.groups.is_empty());
}

#[test]
fn the_retry_stage() {
    let mut log = Log::default();
    let mut r = rule();
    firing(&mut r, "api", "a:1", 0.5, 0);
    step(&mut log, &r, 0, &|_| false);
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
    step(&mut log, &r, 5 * M, &|_| false);
    let resolved = log.next_for("slack").unwrap().id;
    assert!(!log.ready(resolved, 5 * M));
    assert!(
        matches!(&log.entries[1].outcome, Outcome::Failed { reason, .. } if reason.contains("never delivered"))
    );
}

#[test]
fn gives_up_after_max_attempts_and_backoff_is_bounded() {
    let mut log = Log::default();
    let mut r = rule();
    firing(&mut r, "api", "a:1", 0.5, 0);
    step(&mut log, &r, 0, &|_| false);
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
    step(&mut log, &r, 0, &|_| false);
    let payload = slack::payload(&log.entries[0].message);
    // Everything Slack parses as mrkdwn (all but the plain_text header) is escaped.
    let mut parsed = payload.clone();
    parsed["attachments"][0]["blocks"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let text = parsed.to_string();
    assert!(
        !text.contains("<!channel>") && !text.contains("<@U123>"),
        "no mass ping"
    );
    assert!(text.contains("&lt;!channel&gt;"));
    let blocks = payload["attachments"][0]["blocks"].as_array().unwrap();
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
    step(&mut log, &r, 0, &silenced);
    assert!(log.entries.is_empty(), "silenced while firing");
    // Another alert of the group is announced alone.
    firing(&mut r, "api", "a:2", 0.7, 15 * S);
    step(&mut log, &r, 5 * M, &silenced);
    assert_eq!(sent(&log), [(Status::Firing, strings(&["a:2"]), vec![])]);
    // Both resolve: the unsilenced one's resolution is announced (the group had it firing).
    r.active.clear();
    step(&mut log, &r, 10 * M, &silenced);
    assert_eq!(sent(&log)[1], (Status::Resolved, vec![], strings(&["a:2"])));
    // A group announced, then silenced, then resolved while silenced: no resolved message.
    let mut log = Log::default();
    firing(&mut r, "web", "a:1", 0.5, 0);
    step(&mut log, &r, 0, &|_| false);
    assert_eq!(log.entries.len(), 1);
    step(&mut log, &r, 5 * M, &silenced);
    assert_eq!(log.entries.len(), 1, "silenced: no repeat, no resolution");
    r.active.clear();
    step(&mut log, &r, 10 * M, &silenced);
    assert_eq!(log.entries.len(), 1, "resolved while silenced: nothing");
    assert!(log.groups.is_empty());
}

#[test]
fn a_log_saved_before_routes_loads_and_nan_values_survive_the_round_trip() {
    // A state file of the previous release: groups named `rule/job` with their firing set.
    let old = r#"{"next_id":1,"groups":{"HighErrorRate/api":{"firing":[{"alertname":"HighErrorRate","job":"api"}],"last_sent_ms":5}},"entries":[]}"#;
    let mut log: Log = serde_json::from_str(old).unwrap();
    assert_eq!(log.groups["HighErrorRate/api"].notified_firing.len(), 1);
    log.flush(10, &policy(), &Links::default(), &|_| false);
    assert!(
        log.groups.is_empty(),
        "an old group without alerts is dropped"
    );

    let mut r = rule();
    firing(&mut r, "api", "a:1", f64::NAN, 0);
    step(&mut log, &r, 0, &|_| false);
    let json = serde_json::to_string(&log).unwrap();
    let back: Log = serde_json::from_str(&json).unwrap();
    assert!(back.entries[0].message.alerts[0].value.is_nan());
    assert!(back.groups.values().next().unwrap().alerts[0]
        .value
        .is_nan());
}

#[test]
fn slack_buttons_and_colours_by_state() {
    let links = Links {
        external: Some(crate::links::base("e", "http://obs.example:9465/").unwrap()),
        trace: Some(
            crate::links::trace_template("http://jaeger.example/trace/{{ trace_id }}").unwrap(),
        ),
        ..Links::default()
    };
    let mut r = rule();
    firing(&mut r, "api", "a:1", 0.5, 0);
    if let Some(a) = r.active.values_mut().next() {
        a.annotations
            .push(("runbook_url".into(), "RUNBOOK.md#higherrorrate".into()));
    }
    let mut log = Log::default();
    let p = immediate();
    let example = |_: &Labels| Context {
        example_traces: vec!["4bf92f3577b34da6a3ce929d0e0e4736".to_owned()],
        deploy: Some("serving 1.1.0 <!channel> on 1 of 2".to_owned()),
        incident: Some(Incident {
            routes: vec![
                "POST /<!channel>: 80% of its requests failed, 100% of the failures".into(),
            ],
            by_version: Some("1.1.0: 80% errors; 1.0.0: 0.2% errors".into()),
            window: "1m".into(),
            ..Incident::default()
        }),
    };
    log.insert(&r, 0, &p.route, &example);
    log.flush(0, &p, &links, &|_| false);
    resolve(&mut r, "a:1");
    let resolution = |_: &Labels| Context {
        incident: Some(Incident {
            value: Some("0.2% errors".into()),
            window: "1m".into(),
            change: Some("after the rollback to 1.0.0".into()),
            ..Incident::default()
        }),
        ..Context::default()
    };
    log.insert(&r, 5 * M, &p.route, &resolution);
    log.flush(5 * M, &p, &links, &|_| false);
    let [firing, resolved] = [0, 1].map(|i| slack::payload(&log.entries[i].message));
    let buttons = obs_testkit::slack::buttons;
    assert_eq!(
        buttons(&firing),
        [
            ("Runbook".to_owned(), "http://obs.example:9465/alerts/RUNBOOK.md#higherrorrate".to_owned()),
            ("Dashboard".to_owned(), "http://obs.example:9465/#rule-HighErrorRate".to_owned()),
            (
                "Silence 1h".to_owned(),
                "http://obs.example:9465/silences/new?label.alertname=HighErrorRate&label.job=api&for=1h".to_owned()
            ),
            (
                "Example trace".to_owned(),
                "http://jaeger.example/trace/4bf92f3577b34da6a3ce929d0e0e4736".to_owned()
            ),
        ]
    );
    assert!(
        firing
            .to_string()
            .contains("*Example trace*\\n`4bf92f3577b34da6a3ce929d0e0e4736`"),
        "{firing}"
    );
    // The deploy line, escaped for mrkdwn, in the blocks and the fallback text.
    assert!(
        firing
            .to_string()
            .contains("*Deploy*\\nserving 1.1.0 &lt;!channel&gt; on 1 of 2"),
        "{firing}"
    );
    assert!(
        firing["text"]
            .as_str()
            .unwrap()
            .contains("(deploy: serving 1.1.0 &lt;!channel&gt;"),
        "{firing}"
    );
    // The routes and the canary verdict, escaped, in the blocks and the fallback; the
    // resolution's value now and its fix.
    let blocks = firing.to_string();
    assert!(
        blocks.contains("*Routes*\\n• POST /&lt;!channel&gt;: 80% of its requests failed")
            && blocks.contains("*By version*\\n1.1.0: 80% errors; 1.0.0: 0.2% errors")
            && blocks.contains("*Window*\\n1m"),
        "{firing}"
    );
    assert!(!blocks.contains("<!channel>"), "{firing}");
    let fallback = firing["text"].as_str().unwrap();
    assert!(
        fallback.contains("(routes: POST /&lt;!channel&gt;: 80%")
            && fallback.contains("(by version: 1.1.0: 80% errors"),
        "{fallback}"
    );
    let done = resolved.to_string();
    assert!(
        done.contains("*Now*\\n0.2% errors over 1m")
            && done.contains("*Fix*\\nafter the rollback to 1.0.0")
            && !done.contains("Routes"),
        "{resolved}"
    );
    let line = console::line(&log.entries[1].message);
    assert!(
        line.contains("now: 0.2% errors over 1m resolved: after the rollback to 1.0.0"),
        "{line}"
    );
    assert_eq!(firing["attachments"][0]["color"], slack::FIRING_COLOUR);
    assert_eq!(resolved["attachments"][0]["color"], slack::RESOLVED_COLOUR);
    let names: Vec<String> = buttons(&resolved).into_iter().map(|b| b.0).collect();
    assert_eq!(
        names,
        ["Runbook", "Dashboard"],
        "nothing to silence once resolved"
    );
    // The plain-text fallback keeps the links, and the console line the same facts.
    let text = slack::text(&log.entries[0].message);
    assert!(
        text.contains("(example trace 4bf92f3577b34da6a3ce929d0e0e4736)"),
        "{text}"
    );
    assert!(text.ends_with("|Example trace>"), "{text}");
    let line = console::line(&log.entries[0].message);
    assert!(
        line.contains("http://obs.example:9465/#rule-HighErrorRate"),
        "{line}"
    );
    assert!(
        line.contains("silence: http://obs.example:9465/silences/new?"),
        "{line}"
    );
}

#[test]
fn the_dashboard_link_is_pinned_to_the_incident() {
    let links = Links {
        external: Some(crate::links::base("e", "http://obs.example:9465/").unwrap()),
        dashboard: Some(crate::links::base("d", "https://grafana.example/").unwrap()),
        ..Links::default()
    };
    let mut r = rule();
    let start = 3 * 60 * M;
    firing(&mut r, "api", "a:1", 0.5, start);
    if let Some(a) = r.active.values_mut().next() {
        a.annotations.push((
            "dashboard_url".into(),
            "d/obs-red/obs-red?var-job=api&viewPanel=2".into(),
        ));
    }
    let mut log = Log::default();
    let p = immediate();
    let at = start + 2 * M;
    let routed = |_: &Labels| Context {
        incident: Some(Incident {
            top_route: Some("/users/{id}".into()),
            ..Incident::default()
        }),
        ..Context::default()
    };
    log.insert(&r, at, &p.route, &routed);
    log.flush(at, &p, &links, &|_| false);
    resolve(&mut r, "a:1");
    let end = start + 9 * M;
    log.insert(&r, end, &p.route, &|_| Context::default());
    log.flush(end, &p, &links, &|_| false);
    let urls: Vec<String> = log
        .entries
        .iter()
        .map(|e| e.message.dashboard_url.clone().unwrap())
        .collect();
    let base = "https://grafana.example/d/obs-red/obs-red?var-job=api&viewPanel=2";
    assert_eq!(
        urls,
        [
            // Firing: from an hour before the start to the time of the message, on the
            // route behind it.
            format!(
                "{base}&from={}&to={at}&var-route=%2Fusers%2F%7Bid%7D",
                start - 60 * M
            ),
            // Resolved: to ten minutes after the end, on the same route.
            format!(
                "{base}&from={}&to={}&var-route=%2Fusers%2F%7Bid%7D",
                start - 60 * M,
                end + 10 * M
            ),
        ]
    );
}

#[test]
fn the_resolution_reports_the_peak_not_the_last_firing_value() {
    let mut r = rule();
    let mut log = Log::default();
    for (t, value) in [(0, 0.3), (M, 0.9), (2 * M, 0.4)] {
        firing(&mut r, "api", "a:1", value, 0);
        step(&mut log, &r, t, &|_| false);
    }
    resolve(&mut r, "a:1");
    step(&mut log, &r, 3 * M, &|_| false);
    // The group's next flush, a group_interval after its last message.
    step(&mut log, &r, 10 * M, &|_| false);
    let resolved = log.entries.last().unwrap();
    assert_eq!(resolved.message.status, Status::Resolved);
    assert_eq!(resolved.message.peak_text.as_deref(), Some("0.9"));
    let text = slack::text(&resolved.message);
    assert!(
        text.contains("(peak 0.9)") && !text.contains("api is failing"),
        "{text}"
    );
}

/// A notice (a deploy's verdict, the weekly report) carries route names, which are user text:
/// `<!channel>` cannot broadcast, and hundreds of lines stay within Slack's limits with the
/// link's button kept and the colour informational.
#[test]
fn a_notice_is_escaped_bounded_and_not_a_page() {
    let lines: Vec<String> = (0..500)
        .map(|i| format!("• GET /<!channel>/{i}: p95 410 ms vs 290 ms (+41%)"))
        .collect();
    let m = Message::notice(
        "DeployVerdict",
        "shop",
        "Deploy regression: shop <!here> 1.3.0".into(),
        lines,
        Some("https://grafana.example/d/obs-red/obs-red?var-job=shop".into()),
        0,
    );
    let payload = slack::payload(&m);
    let json = payload.to_string();
    assert!(
        !json.contains("<!channel>") && !json.contains("<!here>"),
        "{json}"
    );
    assert!(json.contains("&lt;!channel&gt;"));
    let blocks = payload["attachments"][0]["blocks"].as_array().unwrap();
    assert!(blocks.len() <= slack::BLOCKS_MAX);
    assert_eq!(
        blocks.last().unwrap()["type"],
        "actions",
        "the link's button is kept"
    );
    for b in blocks {
        if let Some(text) = b["text"]["text"].as_str() {
            assert!(text.chars().count() <= slack::SECTION_MAX);
        }
    }
    assert_eq!(payload["attachments"][0]["color"], slack::NOTICE_COLOUR);
    assert!(slack::text(&m).chars().count() <= slack::SECTION_MAX);
    assert!(console::line(&m).starts_with("ℹ️  NOTICE   Deploy regression: shop"));
}
