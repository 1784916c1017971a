//! The Alertmanager notifier against the real Debian `prometheus-alertmanager`: a firing alert
//! arrives with Prometheus' fields and `amtool` lists it; resolving it ends it there.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fake_target, temp_dir, write_config, Collector};
use obs_examples::client;
use obs_examples::prometheus::free_port;
use serde_json::Value;

struct Alertmanager(Child);

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    std::fs::write(
        dir.join("am.yml"),
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let am_addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let _am = Alertmanager(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", dir.join("am.yml").display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address={am_addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager (Debian package) must be installed"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client::get(am_addr, "/-/ready").is_ok_and(|r| r.status == 200) {
        assert!(Instant::now() < deadline, "alertmanager not ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    let page = Arc::new(Mutex::new("flag 3\n".to_owned()));
    let target = fake_target(Arc::clone(&page));
    let extra =
        format!("notifiers:\n  console: false\n  alertmanager:\n    url: http://{am_addr}\n");
    let config = write_config(&dir, target, "0s", &extra);
    let collector = Collector::start(&config, &dir.join("state.json"), &[]);

    let deadline = Instant::now() + Duration::from_secs(20);
    let alert = loop {
        if let Some(a) = am_alerts(am_addr)
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "Flag")
        {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "the alert never reached Alertmanager"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while am_alerts(am_addr)
        .iter()
        .any(|a| a["labels"]["alertname"] == "Flag")
    {
        assert!(
            Instant::now() < deadline,
            "the alert never resolved in Alertmanager: {:#?}",
            am_alerts(am_addr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
