//! Inhibition with the collector process: a job's target is down, so `TargetDown` fires and
//! inhibits that job's other alert; only `TargetDown` reaches Slack (stand-in on loopback), and
//! after the recovery nothing stale is sent for the inhibited alert.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use obs_testkit::eventually;
use obs_testkit::slack::{header, Slack};
use serde_json::Value;

mod common;

use common::{fake_target, temp_dir, Collector};

const RULES: &str = "groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: TargetDown\n        expr: up == 0\n      - alert: Flag\n        expr: flag > 0\n";

#[test]
fn target_down_inhibits_the_jobs_other_alerts_and_nothing_stale_follows() {
    let slack = Slack::start();
    let flag = Arc::new(Mutex::new("flag 0\n".to_owned()));
    let broken = Arc::new(Mutex::new("flag{oops 1\n".to_owned()));
    let (a, b) = (
        fake_target(Arc::clone(&flag)),
        fake_target(Arc::clone(&broken)),
    );
    let dir = temp_dir("inhibition");
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    let config = dir.join("collector.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: svc\n    static_configs:\n      - targets: ['{a}', '{b}']\ninhibit_rules:\n  - source_matchers: ['alertname=\"TargetDown\"']\n    target_matchers: ['alertname=\"Flag\"']\n    equal: [job]\n{}",
            obs_testkit::PROMPT_ROUTE
        ),
    )
    .unwrap();
    let url = slack.url();
    let collector = Collector::start(
        &config,
        &dir.join("state.json"),
        &[("SLACK_WEBHOOK_URL", url.as_str())],
    );

    // b cannot be scraped: TargetDown. Then a's flag goes up: Flag fires, inhibited.
    let delivered = slack.wait_delivered(1, Duration::from_secs(15));
    assert!(header(&delivered[0]).starts_with("FIRING: TargetDown — svc"));
    *flag.lock().unwrap() = "flag 1\n".to_owned();
    let firing = eventually(
        Duration::from_secs(10),
        || "Flag never fired".into(),
        || {
            collector
                .alerts()
                .into_iter()
                .find(|x| x["labels"]["alertname"] == "Flag" && x["state"] == "firing")
        },
    );
    assert_eq!(
        firing["inhibitedBy"][0]["alertname"], "TargetDown",
        "{firing}"
    );
    let amtool = Command::new("amtool")
        .arg(format!("--alertmanager.url=http://{}", collector.addr))
        .args(["alert", "query", "-i", "-o", "json", "alertname=Flag"])
        .output()
        .expect("amtool (Debian prometheus-alertmanager) must be installed");
    let shown: Value = serde_json::from_slice(&amtool.stdout).unwrap();
    assert_eq!(shown[0]["status"]["state"], "suppressed", "{shown}");
    assert_eq!(
        shown[0]["status"]["inhibitedBy"].as_array().unwrap().len(),
        1
    );
    collector.wait_evaluations(2);
    assert_eq!(slack.received().len(), 1, "only TargetDown was notified");

    // Recovery: a's flag is down, then b is scraped again (in that order: with b back first,
    // Flag would be uninhibited for an evaluation and rightly notified). TargetDown
    // resolves; Flag, never announced, sends nothing.
    *flag.lock().unwrap() = "flag 0\n".to_owned();
    eventually(
        Duration::from_secs(10),
        || "Flag never resolved".into(),
        || {
            let alerts = collector.alerts();
            (!alerts.iter().any(|x| x["labels"]["alertname"] == "Flag")).then_some(())
        },
    );
    *broken.lock().unwrap() = "flag 0\n".to_owned();
    let delivered = slack.wait_delivered(2, Duration::from_secs(15));
    assert!(header(&delivered[1]).starts_with("RESOLVED: TargetDown — svc"));
    collector.wait_evaluations(2);
    let all = slack.received();
    assert_eq!(all.len(), 2, "nothing stale after the recovery: {all:#?}");
}
