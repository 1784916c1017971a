//! Timing behaviour on an injected clock: the collector's stages driven step by step in
//! process ([`Collector::scrape_target`], [`Collector::evaluate`], [`Collector::deliver_next`])
//! on a [`ManualClock`], with a real metrics target and a Slack stand-in on loopback. Nothing
//! here sleeps (but one test of the spawned tasks, which gives them 300 ms to do what they must
//! not): each boundary is checked one millisecond before and at the moment it passes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use obs_collector::collector::{Collector, Step};
use obs_collector::config::Config;
use obs_collector::rules::{self, State};
use obs_collector::scrape::TargetSeries;
use obs_collector::time::ManualClock;
use obs_testkit::slack::{header, Reply, Slack};

mod common;

use common::{fake_target, temp_dir, write_config};

/// A whole second, as the schedule's slots are.
const T0: i64 = 1_800_000_000_000;

/// A route whose groups are due at every (1 s) evaluation, for the tests that drive only the
/// evaluations: a new group is sent at once, its changes at the next evaluation.
const AT_EVALUATIONS: &str = "route:\n  group_wait: 0s\n  group_interval: 1s\n";

/// The collector of `config` on a manual clock at `start`, posting to `slack`.
fn collector(
    config: &Path,
    state: &Path,
    slack: &Slack,
    start: i64,
) -> (Arc<Collector>, Arc<ManualClock>) {
    let url = slack.url();
    let env = |k: &str| (k == "SLACK_WEBHOOK_URL").then(|| url.clone());
    let config = Config::load(config, &env).unwrap();
    let groups = rules::load_all(&config.rule_files, config.evaluation_interval, false).unwrap();
    let clock = ManualClock::new(start);
    let collector = Collector::with_clock(
        config,
        groups,
        state.to_owned(),
        &obs::prometheus::Registry::new(),
        Arc::clone(&clock) as _,
    );
    (collector, clock)
}

/// One tick of the schedule at `t`: the clock moves there, the target is scraped, the group
/// evaluated.
async fn tick(c: &Collector, clock: &ManualClock, previous: &mut TargetSeries, t: i64) {
    tick_all(c, clock, std::slice::from_mut(previous), t).await;
}

/// [`tick`] over every target (`previous` holds each target's last scrape, in order).
async fn tick_all(c: &Collector, clock: &ManualClock, previous: &mut [TargetSeries], t: i64) {
    clock.set(t);
    for (i, p) in previous.iter_mut().enumerate() {
        c.scrape_target(i, p, t).await;
    }
    c.evaluate(0, t).await;
}

/// A fleet in `dir`: `write_config`'s rule with its group evaluated every `rule_interval`, one
/// fake target per `(job, first page)` scraped every 15 s, alerts grouped by alert name with
/// `route`'s further lines. The config's path, and each job's page to change.
fn fleet(
    dir: &Path,
    jobs: &[(&str, &str)],
    rule_interval: &str,
    route: &str,
) -> (PathBuf, Vec<Arc<Mutex<String>>>) {
    let pages: Vec<_> = jobs
        .iter()
        .map(|(_, page)| Arc::new(Mutex::new((*page).to_owned())))
        .collect();
    write_config(dir, fake_target(Arc::clone(&pages[0])), "0s", "");
    let rules = std::fs::read_to_string(dir.join("rules.yml")).unwrap();
    let rules = rules.replace("interval: 1s", &format!("interval: {rule_interval}"));
    std::fs::write(dir.join("rules.yml"), rules).unwrap();
    let mut text = format!("global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\nrule_files: [rules.yml]\nroute:\n  group_by: [alertname]\n{route}scrape_configs:\n");
    for ((job, _), page) in jobs.iter().zip(&pages) {
        let target = fake_target(Arc::clone(page));
        text.push_str(&format!(
            "  - job_name: {job}\n    static_configs: [{{ targets: ['{target}'] }}]\n"
        ));
    }
    let config = dir.join("collector.yml");
    std::fs::write(&config, text).unwrap();
    (config, pages)
}

/// The state of rule `Flag`.
fn state(c: &Collector) -> State {
    c.alert_state("Flag").unwrap()
}

fn slack_index(c: &Collector) -> usize {
    c.channels().iter().position(|n| *n == "slack").unwrap()
}

#[tokio::test]
async fn for_boundary_repeat_interval_and_resolution_to_the_millisecond() {
    let slack = Slack::start();
    let page = Arc::new(Mutex::new("flag 1\n".to_owned()));
    let dir = temp_dir("timing-for");
    let config = write_config(
        &dir,
        fake_target(Arc::clone(&page)),
        "2s",
        &format!("notifiers:\n  repeat_interval: 1m\n{AT_EVALUATIONS}"),
    );
    let (c, clock) = collector(&config, &dir.join("state.json"), &slack, T0);
    let slack_at = slack_index(&c);
    let mut previous = TargetSeries::default();

    tick(&c, &clock, &mut previous, T0).await;
    assert_eq!(state(&c), State::Pending);
    tick(&c, &clock, &mut previous, T0 + 1_999).await;
    assert_eq!(state(&c), State::Pending, "for: 2s not yet over");
    assert_eq!(
        c.deliver_next(slack_at).await,
        Step::Idle,
        "pending sends nothing"
    );
    tick(&c, &clock, &mut previous, T0 + 2_000).await;
    assert_eq!(
        state(&c),
        State::Firing,
        "fires exactly when `for` has passed"
    );
    assert_eq!(c.deliver_next(slack_at).await, Step::Progress);
    assert_eq!(c.deliver_next(slack_at).await, Step::Idle);
    let delivered = slack.wait_delivered(1, std::time::Duration::ZERO);
    assert!(header(&delivered[0]).starts_with("FIRING: Flag — svc"));

    // Still firing: repeated by the group's flush (every group_interval, 1 s here, at the
    // evaluations) once repeat_interval has passed, strictly as Alertmanager's dedup stage
    // says: not at 1m itself, at the flush after it.
    let fired = T0 + 2_000;
    tick(&c, &clock, &mut previous, fired + 59_000).await;
    assert_eq!(
        c.deliver_next(slack_at).await,
        Step::Idle,
        "no repeat before 1m"
    );
    tick(&c, &clock, &mut previous, fired + 60_000).await;
    assert_eq!(
        c.deliver_next(slack_at).await,
        Step::Idle,
        "no repeat at 1m itself"
    );
    tick(&c, &clock, &mut previous, fired + 61_000).await;
    assert_eq!(
        c.deliver_next(slack_at).await,
        Step::Progress,
        "repeat at the flush after 1m"
    );
    assert_eq!(slack.received().len(), 2);

    // Resolved at the next evaluation without the condition; announced once.
    *page.lock().unwrap() = "flag 0\n".to_owned();
    tick(&c, &clock, &mut previous, fired + 62_000).await;
    assert_eq!(state(&c), State::Inactive);
    assert_eq!(c.deliver_next(slack_at).await, Step::Progress);
    tick(&c, &clock, &mut previous, fired + 63_000).await;
    assert_eq!(c.deliver_next(slack_at).await, Step::Idle);
    let all = slack.received();
    assert_eq!(all.len(), 3, "firing, repeat, resolved: {all:#?}");
    // The status page's chart: one point per evaluation, the compared value `flag`.
    let chart = c.chart("t", "Flag");
    let values: Vec<f64> = chart.iter().map(|p| p.1).collect();
    assert_eq!(values, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    assert_eq!(chart.last().unwrap().0, fired + 63_000);
    assert!(header(&all[2].1).starts_with("RESOLVED: Flag — svc"));
    // It fired from `fired` until the evaluation at +62 s that found it resolved.
    let text = all[2].1["text"].as_str().unwrap();
    assert!(text.contains("(fired for 1m 2s)"), "{text}");
    assert!(
        all[2].1.to_string().contains("*Fired for*\\n1m 2s"),
        "{}",
        all[2].1
    );
}

#[tokio::test]
async fn retry_backoff_retry_after_spacing_and_plain_text_fallback() {
    let slack = Slack::start();
    slack.script(&common::RETRIES_THEN_PLAIN_TEXT);
    let page = Arc::new(Mutex::new("flag 1\n".to_owned()));
    let dir = temp_dir("timing-retry");
    let config = write_config(&dir, fake_target(page), "0s", AT_EVALUATIONS);
    let (c, clock) = collector(&config, &dir.join("state.json"), &slack, T0);
    let slack_at = slack_index(&c);
    tick(&c, &clock, &mut TargetSeries::default(), T0).await;

    assert_eq!(c.deliver_next(slack_at).await, Step::Progress, "500");
    // Backoff 1 s ±50%, and never sooner than Slack's one message per second.
    let Step::WaitUntil(first_retry) = c.deliver_next(slack_at).await else {
        panic!("a retry is due later")
    };
    assert!(
        (T0 + 1_000..=T0 + 1_500).contains(&first_retry),
        "{}",
        first_retry - T0
    );
    clock.set(first_retry - 1);
    assert_eq!(c.deliver_next(slack_at).await, Step::WaitUntil(first_retry));
    assert_eq!(
        slack.received().len(),
        1,
        "nothing sent before the retry is due"
    );

    clock.set(first_retry);
    assert_eq!(c.deliver_next(slack_at).await, Step::Progress, "429");
    assert_eq!(
        c.deliver_next(slack_at).await,
        Step::WaitUntil(first_retry + 2_000),
        "Retry-After: 2 honoured to the millisecond"
    );
    clock.set(first_retry + 2_000);
    assert_eq!(c.deliver_next(slack_at).await, Step::Progress, "400");
    assert_eq!(
        c.deliver_next(slack_at).await,
        Step::WaitUntil(first_retry + 3_000),
        "plain text at once, but one message per second"
    );
    clock.set(first_retry + 3_000);
    assert_eq!(c.deliver_next(slack_at).await, Step::Progress, "200");
    assert_eq!(c.deliver_next(slack_at).await, Step::Idle);

    let all = slack.received();
    assert_eq!(all.len(), 4);
    assert!(
        obs_testkit::slack::blocks(&all[2].1).is_some()
            && obs_testkit::slack::blocks(&all[3].1).is_none()
    );
    let log = c.notifications();
    assert!(matches!(
        log.entries[0].outcome,
        obs_collector::notify::Outcome::Delivered { at_ms } if at_ms == first_retry + 3_000
    ));
}

#[tokio::test]
async fn a_permanent_failure_is_not_retried() {
    let slack = Slack::start();
    slack.script(&[Reply::Status(404, "channel_not_found", None)]);
    let dir = temp_dir("timing-permanent");
    let page = Arc::new(Mutex::new("flag 1\n".to_owned()));
    let config = write_config(&dir, fake_target(page), "0s", AT_EVALUATIONS);
    let (c, clock) = collector(&config, &dir.join("state.json"), &slack, T0);
    let slack_at = slack_index(&c);
    tick(&c, &clock, &mut TargetSeries::default(), T0).await;
    assert_eq!(c.deliver_next(slack_at).await, Step::Progress);
    clock.set(T0 + 3_600_000);
    assert_eq!(
        c.deliver_next(slack_at).await,
        Step::Idle,
        "404 is permanent"
    );
    assert_eq!(slack.received().len(), 1);
    let log = c.notifications();
    assert!(
        matches!(&log.entries[0].outcome, obs_collector::notify::Outcome::Failed { reason, .. } if reason.contains("channel_not_found")),
        "{:?}",
        log.entries[0].outcome
    );
}

#[tokio::test]
async fn after_a_restart_a_firing_alert_waits_for_fresh_data_before_it_resolves() {
    let slack = Slack::start();
    let page = Arc::new(Mutex::new("flag 1\n".to_owned()));
    let dir = temp_dir("timing-restart");
    let config = write_config(&dir, fake_target(Arc::clone(&page)), "0s", AT_EVALUATIONS);
    let state_file = dir.join("state.json");
    {
        let (c, clock) = collector(&config, &state_file, &slack, T0);
        tick(&c, &clock, &mut TargetSeries::default(), T0).await;
        assert_eq!(c.deliver_next(slack_index(&c)).await, Step::Progress);
    } // dropped: the state file holds the firing alert and the delivered message

    // Back 10 s later; the target has not been scraped yet (its page is empty for now).
    *page.lock().unwrap() = String::new();
    let restart = T0 + 10_000;
    let (c, clock) = collector(&config, &state_file, &slack, restart);
    let slack_at = slack_index(&c);
    let mut previous = TargetSeries::default();
    // Warm-up: two scrape intervals (2 x 1 s) plus the rule's longest range (none).
    for t in [restart, restart + 1_000, restart + 1_999] {
        tick(&c, &clock, &mut previous, t).await;
        assert_eq!(
            state(&c),
            State::Firing,
            "missing data during warm-up at +{}",
            t - restart
        );
        assert_eq!(
            c.deliver_next(slack_at).await,
            Step::Idle,
            "nothing repeated or resolved"
        );
    }
    tick(&c, &clock, &mut previous, restart + 2_000).await;
    assert_eq!(
        state(&c),
        State::Inactive,
        "still absent after the warm-up: resolved"
    );
    assert_eq!(c.deliver_next(slack_at).await, Step::Progress);
    let all = slack.received();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(header(&all[1].1).starts_with("RESOLVED: Flag — svc"));
}

#[tokio::test]
async fn grouped_by_alertname_three_jobs_make_one_message_and_a_fourth_one_update() {
    let slack = Slack::start();
    let dir = temp_dir("timing-group");
    // Four jobs, three of them failing, on Alertmanager's timing (group_wait 30s,
    // group_interval 5m).
    let jobs = [
        ("checkout", "flag 1\n"),
        ("search", "flag 1\n"),
        ("payments", "flag 1\n"),
        ("accounts", "flag 0\n"),
    ];
    let (config, pages) = fleet(&dir, &jobs, "1s", "");
    let (c, clock) = collector(&config, &dir.join("state.json"), &slack, T0);
    let slack_at = slack_index(&c);
    let mut previous: Vec<TargetSeries> = (0..4).map(|_| TargetSeries::default()).collect();
    // Three jobs fail together: one message after group_wait, listing the three.
    tick_all(&c, &clock, &mut previous, T0).await;
    tick_all(&c, &clock, &mut previous, T0 + 15_000).await;
    assert_eq!(c.deliver_next(slack_at).await, Step::Idle, "group_wait");
    tick_all(&c, &clock, &mut previous, T0 + 30_000).await;
    assert_eq!(c.deliver_next(slack_at).await, Step::Progress);
    let first = &slack.wait_delivered(1, std::time::Duration::ZERO)[0];
    assert_eq!(header(first), "FIRING: Flag — checkout, payments, search");
    assert!(first.to_string().contains("*Alerts*\\n3"), "{first}");

    // A fourth joins 30 s later: one update at the group's next flush, 5 min after the first.
    *pages[3].lock().unwrap() = "flag 1\n".to_owned();
    let mut t = T0 + 45_000;
    while t < T0 + 30_000 + 300_000 {
        tick_all(&c, &clock, &mut previous, t).await;
        assert_eq!(c.deliver_next(slack_at).await, Step::Idle, "at +{}", t - T0);
        t += 15_000;
    }
    tick_all(&c, &clock, &mut previous, t).await;
    assert_eq!(c.deliver_next(slack_at).await, Step::Progress);
    let all = slack.wait_delivered(2, std::time::Duration::ZERO);
    assert_eq!(
        header(&all[1]),
        "FIRING: Flag — accounts, checkout, payments, search"
    );
    assert!(all[1].to_string().contains("*Alerts*\\n4"), "{}", all[1]);
    tick_all(&c, &clock, &mut previous, t + 15_000).await;
    assert_eq!(c.deliver_next(slack_at).await, Step::Idle, "one update");
}

#[tokio::test]
async fn groups_are_flushed_on_their_own_timers_between_evaluations() {
    let slack = Slack::start();
    let dir = temp_dir("timing-flush");
    // The rule evaluated every 15 s, two jobs, and group timers that are not multiples of
    // 15 s: the first message is due 10 s after the first evaluation, updates every 25 s
    // after that.
    let jobs = [("checkout", "flag 1\n"), ("search", "flag 0\n")];
    let route = "  group_wait: 10s\n  group_interval: 25s\n";
    let (config, pages) = fleet(&dir, &jobs, "15s", route);
    let (c, clock) = collector(&config, &dir.join("state.json"), &slack, T0);
    let slack_at = slack_index(&c);
    let mut previous: Vec<TargetSeries> = (0..2).map(|_| TargetSeries::default()).collect();

    tick_all(&c, &clock, &mut previous, T0).await;
    assert_eq!(
        c.next_flush(),
        Some(T0 + 10_000),
        "group_wait, not the next evaluation"
    );
    clock.set(T0 + 9_999);
    c.flush_due(T0 + 9_999).await;
    assert_eq!(
        c.deliver_next(slack_at).await,
        Step::Idle,
        "before group_wait"
    );
    clock.set(T0 + 10_000);
    c.flush_due(T0 + 10_000).await;
    assert_eq!(c.deliver_next(slack_at).await, Step::Progress);
    let first = &slack.wait_delivered(1, std::time::Duration::ZERO)[0];
    assert_eq!(header(first), "FIRING: Flag — checkout");
    assert_eq!(
        c.next_flush(),
        Some(T0 + 35_000),
        "group_interval after the flush"
    );

    // The second job fails at the next evaluation: the update goes out at the group's timer
    // (35 s), not at the evaluation after it (45 s).
    *pages[1].lock().unwrap() = "flag 1\n".to_owned();
    tick_all(&c, &clock, &mut previous, T0 + 15_000).await;
    tick_all(&c, &clock, &mut previous, T0 + 30_000).await;
    assert_eq!(
        c.deliver_next(slack_at).await,
        Step::Idle,
        "evaluations do not flush"
    );
    clock.set(T0 + 34_999);
    c.flush_due(T0 + 34_999).await;
    assert_eq!(c.deliver_next(slack_at).await, Step::Idle);
    clock.set(T0 + 35_000);
    c.flush_due(T0 + 35_000).await;
    assert_eq!(c.deliver_next(slack_at).await, Step::Progress);
    let all = slack.wait_delivered(2, std::time::Duration::ZERO);
    assert_eq!(header(&all[1]), "FIRING: Flag — checkout, search");
    // Due at 60 s, an evaluation's slot: that evaluation flushes it, with what it found.
    assert_eq!(c.next_flush(), None);
    *pages[1].lock().unwrap() = "flag 0\n".to_owned();
    tick_all(&c, &clock, &mut previous, T0 + 45_000).await;
    tick_all(&c, &clock, &mut previous, T0 + 60_000).await;
    assert_eq!(c.deliver_next(slack_at).await, Step::Progress);
    let all = slack.wait_delivered(3, std::time::Duration::ZERO);
    assert!(all[2].to_string().contains("Resolved"), "{}", all[2]);
}

// Spawned tasks run on the workers while the test blocks on the Slack stand-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_an_overdue_group_waits_for_the_first_evaluation() {
    let slack = Slack::start();
    let page = Arc::new(Mutex::new("flag 1\n".to_owned()));
    let dir = temp_dir("timing-overdue");
    // Flushes between evaluations (61.5 s apart), a repeat after 1 min.
    let route = "route:\n  group_wait: 0s\n  group_interval: 61500ms\n  repeat_interval: 1m\n";
    let config = write_config(&dir, fake_target(Arc::clone(&page)), "0s", route);
    let state_file = dir.join("state.json");
    {
        let (c, clock) = collector(&config, &state_file, &slack, T0);
        tick(&c, &clock, &mut TargetSeries::default(), T0).await;
        assert_eq!(c.deliver_next(slack_index(&c)).await, Step::Progress);
    } // the state file: the group, announced at T0, due again at T0 + 61.5 s

    // Back two hours later, every task running on the stopped clock: the overdue group is not
    // flushed at its past times (that would send a repeat before anything was evaluated).
    let restart = T0 + 2 * 3_600_000;
    let (c, clock) = collector(&config, &state_file, &slack, restart);
    c.spawn();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(slack.received().len(), 1, "nothing before an evaluation");
    // The first evaluation finds the alert still firing and flushes the group: the repeat.
    clock.set(restart + 1_000);
    let all = slack.wait_delivered(2, std::time::Duration::from_secs(5));
    assert!(
        header(&all[1]).starts_with("FIRING: Flag — svc"),
        "{all:#?}"
    );
    assert_eq!(c.next_flush(), Some(restart + 1_000 + 61_500));
}

/// The weekly report comes once a week at 09:00 in Berlin, over three weeks that cross the
/// change to summer time: every minute is looked at, the report is built from the history
/// scraped hourly, and each report is queued at 09:00 local (08:00 UTC in winter, 07:00 UTC in
/// summer). The collector is down over the second Monday's 09:00: started again at 12:00
/// local, it sends the missed report then (its last sent slot is in its state), and once more
/// restarted right after, sends nothing twice.
#[tokio::test]
async fn the_weekly_report_comes_once_a_week_across_a_restart_and_a_daylight_saving_change() {
    let dir = temp_dir("weekly-report");
    let page = Arc::new(Mutex::new(String::new()));
    let target = fake_target(Arc::clone(&page));
    let config = dir.join("collector.yml");
    std::fs::write(
        &config,
        format!(
            "scrape_configs:\n  - job_name: shop\n    static_configs:\n      - targets: ['{target}']\n\
             report:\n  schedule: Mon 09:00\n  timezone: Europe/Berlin\n"
        ),
    )
    .unwrap();
    let slack = Slack::start();
    let state = dir.join("state.json");
    let ms = |s: &str| obs_collector::time::parse_rfc3339(s).unwrap();
    let start = ms("2027-03-20T12:00:00Z"); // a Saturday; summer time starts on the 28th
    let (down, up) = (ms("2027-03-29T04:00:00Z"), ms("2027-03-29T10:00:00Z"));
    let again = up + 60_000;
    let end = ms("2027-04-06T00:00:00Z");
    let set_page = |requests: u64| {
        *page.lock().unwrap() = format!(
            "# TYPE http_server_request_duration_seconds histogram\n\
             http_server_request_duration_seconds_bucket{{http_request_method=\"GET\",http_route=\"/\",http_response_status_code=\"200\",le=\"0.1\"}} {requests}\n\
             http_server_request_duration_seconds_bucket{{http_request_method=\"GET\",http_route=\"/\",http_response_status_code=\"200\",le=\"+Inf\"}} {requests}\n\
             http_server_request_duration_seconds_count{{http_request_method=\"GET\",http_route=\"/\",http_response_status_code=\"200\"}} {requests}\n\
             http_server_request_duration_seconds_sum{{http_request_method=\"GET\",http_route=\"/\",http_response_status_code=\"200\"}} 1\n"
        );
    };
    // With history on disk, as the binary runs: the report reads weeks of it.
    let retention = obs_collector::store::compact::Retention {
        time_ms: 35 * 86_400_000,
        bytes: u64::MAX,
        raw_ms: 8 * 86_400_000,
    };
    let (mut c, mut clock) = collector(&config, &state, &slack, start);
    c.open_storage(&dir.join("data"), retention).unwrap();
    c.start_report_schedule(start);
    let mut previous = TargetSeries::default();
    let mut t = start;
    while t < end {
        if t == down {
            t = up; // stopped: nothing is scraped or looked at meanwhile
        }
        if t == up || t == again {
            // The state is saved at every report; a new process reads it.
            drop(c);
            (c, clock) = collector(&config, &state, &slack, t);
            c.open_storage(&dir.join("data"), retention).unwrap();
            c.start_report_schedule(t);
            previous = TargetSeries::default();
        }
        clock.set(t);
        if t % 3_600_000 == 0 {
            set_page(((t - start) / 1000) as u64);
            c.scrape_target(0, &mut previous, t).await;
        }
        c.send_report_if_due(t).await;
        t += 60_000;
    }
    let reports: Vec<i64> = c
        .notifications()
        .entries
        .iter()
        .filter(|e| e.message.alertname == "WeeklyReport")
        .map(|e| e.created_ms)
        .collect();
    assert_eq!(
        reports,
        vec![ms("2027-03-22T08:00:00Z"), up, ms("2027-04-05T07:00:00Z")],
        "one report a week, at 09:00 in Berlin (the missed one once the collector is up)"
    );
}
