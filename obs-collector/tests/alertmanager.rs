//! The Alertmanager notifier against the real Debian `prometheus-alertmanager`: a firing alert
//! arrives with Prometheus' fields and `amtool` lists it; resolving it ends it there.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fake_target, temp_dir, write_config, Collector};
use obs_testkit::prometheus::Alertmanager;
use obs_testkit::{client, eventually};
use serde_json::Value;

fn am_alerts(addr: std::net::SocketAddr) -> Vec<Value> {
    let r = client::get(addr, "/api/v2/alerts").unwrap();
    serde_json::from_str::<Value>(&r.body)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn alerts_reach_a_real_alertmanager_and_resolve_there() {
    let dir = temp_dir("alertmanager");
    let am = Alertmanager::start(
        &dir,
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    );
    let am_addr = am.addr;

    let page = Arc::new(Mutex::new("flag 3\n".to_owned()));
    let target = fake_target(Arc::clone(&page));
    let extra =
        format!("notifiers:\n  console: false\n  alertmanager:\n    url: http://{am_addr}\n");
    let config = write_config(&dir, target, "0s", &extra);
    let collector = Collector::start(&config, &dir.join("state.json"), &[]);

    let deadline = Instant::now() + Duration::from_secs(20);
    let alert = eventually(
        deadline - Instant::now(),
        || "the alert never reached Alertmanager".into(),
        || {
            am_alerts(am_addr)
                .into_iter()
                .find(|a| a["labels"]["alertname"] == "Flag")
        },
    );
    assert_eq!(alert["labels"]["job"], "svc");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(
        alert["annotations"]["description"],
        format!("flag is 3 on {target}")
    );
    assert_eq!(alert["status"]["state"], "active");
    assert!(alert["generatorURL"]
        .as_str()
        .unwrap()
        .starts_with(&format!("http://{}", collector.addr)));
    let ours = collector.wait_alert("firing", Duration::from_secs(5));
    assert_eq!(
        alert["startsAt"].as_str().unwrap()[..19],
        ours["activeAt"].as_str().unwrap()[..19]
    );

    let amtool = Command::new("amtool")
        .args([
            "alert",
            "query",
            "--alertmanager.url",
            &format!("http://{am_addr}"),
            "alertname=Flag",
        ])
        .output()
        .expect("amtool");
    let listed = String::from_utf8_lossy(&amtool.stdout);
    assert!(
        amtool.status.success() && listed.contains("Flag"),
        "{listed}"
    );

    *page.lock().unwrap() = "flag 0\n".to_owned();
    eventually(
        Duration::from_secs(20),
        || {
            format!(
                "the alert never resolved in Alertmanager: {:#?}",
                am_alerts(am_addr)
            )
        },
        || {
            (!am_alerts(am_addr)
                .iter()
                .any(|a| a["labels"]["alertname"] == "Flag"))
            .then_some(())
        },
    );
}
