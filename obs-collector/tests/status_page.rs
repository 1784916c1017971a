//! The status page in headless Chromium (Debian `chromium`), at a phone's width: it renders the
//! targets, the rules with their chart and the notifications; a screenshot is kept in the
//! target directory (`status-page.png`).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{chromium, fake_target, temp_dir, write_config, Collector};

#[test]
fn the_status_page_renders_on_a_phone() {
    let dir = temp_dir("status-page");
    let page = Arc::new(Mutex::new("flag 7\n".to_owned()));
    let target = fake_target(Arc::clone(&page));
    // A second target that is down, to show both states.
    let extra = "  - job_name: down\n    static_configs:\n      - targets: ['127.0.0.1:1']\n";
    let collector = Collector::start(
        &write_config(&dir, target, "0s", extra),
        &dir.join("state.json"),
        &[],
    );
    collector.wait_alert("firing", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3)); // a few chart points and the notification

    let url = format!("http://{}/", collector.addr);
    let dom = chromium(
        &["--dump-dom", "--window-size=390,844"],
        &url,
        &dir.join("profile-dom"),
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    for needle in [
        "<h2>Targets</h2>",
        "<h2>Rules</h2>",
        "<h2>Notifications</h2>",
        "Flag",
        "class=\"firing\"",
        "<svg",
        "polyline",
        "connection failed",
        "delivered",
        "threshold 0",
    ] {
        assert!(
            dom.contains(needle),
            "{needle:?} missing from the rendered page:\n{dom}"
        );
    }
    assert!(dom.contains("name=\"viewport\""), "readable on a phone");
    assert!(dom.contains("http-equiv=\"refresh\""), "refreshes itself");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=390,1200",
        ],
        &url,
        &dir.join("profile-shot"),
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 390);
    assert!(
        png.len() > 10_000,
        "a blank page would be tiny: {} bytes",
        png.len()
    );
}
