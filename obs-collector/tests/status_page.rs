//! The status page in headless Chromium (Debian `chromium`, driven over the DevTools protocol):
//! at 1280 px and on a phone (390 px) nothing overflows, no word breaks in the middle, every
//! button and link can be reached, times read "… ago"; and the silence forms work by clicking:
//! silence an alert, see it listed and the alert silenced, expire it, and confirm the form a
//! Slack "Silence 1h" button opens. Screenshots are kept in the target directory
//! (`status-page-1280.png`, `status-page-390.png`).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fake_target, temp_dir, write_config, Collector};
use obs_testkit::browser::Browser;

/// The layout problems of the page as the browser laid it out: horizontal overflow, words
/// broken over two lines (outside the long values marked `wrap`), interactive elements that
/// are invisible or covered.
const LAYOUT_PROBLEMS: &str = r#"(() => {
  const problems = [];
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > width) problems.push(`the page is ${document.documentElement.scrollWidth}px wide in ${width}px`);
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > width + 1) problems.push(`${el.tagName}.${el.className} ends at ${Math.round(r.right)}px: ${el.textContent.slice(0, 60)}`);
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.closest('.wrap, style, script, svg')) continue;
    const re = /\S+/g;
    for (let m = re.exec(n.textContent); m; m = re.exec(n.textContent)) {
      range.setStart(n, m.index);
      range.setEnd(n, m.index + m[0].length);
      const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (lines.size > 1) problems.push(`"${m[0]}" breaks over ${lines.size} lines`);
    }
  }
  for (const el of document.querySelectorAll('a, button, input:not([type=hidden]), select, textarea')) {
    el.scrollIntoView({block: 'center', inline: 'center'});
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) { problems.push(`invisible: ${el.outerHTML}`); continue; }
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (!hit || !(hit === el || el.contains(hit))) problems.push(`covered: ${el.outerHTML}`);
  }
  window.scrollTo(0, 0);
  return problems;
})()"#;

#[test]
fn the_status_page_reads_well_at_1280_and_390_px_and_its_forms_work() {
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
    collector.wait_evaluations(3);
    let url = format!("http://{}/", collector.addr);

    for width in [1280, 390] {
        let mut browser =
            Browser::start(&dir.join(format!("browser-{width}")), width, 900).unwrap();
        browser.open(&url).unwrap();
        let text = browser.eval("document.body.innerText").unwrap();
        let text = text.as_str().unwrap();
        for needle in [
            "1 firing",
            "1 of 2 targets down",
            "Flag",
            "connection failed",
            "delivered",
            "threshold 0",
        ] {
            assert!(
                text.contains(needle),
                "{needle:?} not on the page at {width}px:\n{text}"
            );
        }
        // Relative times read "... ago" with the exact time on hover; a chart's ends read as
        // times. Both in the reader's time zone (the page's script), from UTC `datetime`s.
        let times = browser
            .eval("[...document.querySelectorAll('time')].map(t => [t.textContent, t.title, t.getAttribute('datetime'), t.className])")
            .unwrap();
        let times = times.as_array().unwrap();
        assert!(!times.is_empty());
        assert!(
            times.iter().any(|t| t[3] == "local"),
            "no chart times: {times:?}"
        );
        for t in times {
            let (text, title, utc) = (
                t[0].as_str().unwrap(),
                t[1].as_str().unwrap(),
                t[2].as_str().unwrap(),
            );
            assert!(utc.ends_with('Z'), "{t}");
            assert!(
                !title.ends_with('Z') && title.contains(':'),
                "local time on hover: {t}"
            );
            if t[3] == "local" {
                assert_eq!(text, title, "{t}");
            } else {
                assert!(text.ends_with("ago") || text == "just now", "{t}");
            }
        }
        let svg = browser
            .eval("document.querySelectorAll('#rule-Flag svg polyline').length")
            .unwrap();
        assert!(svg.as_u64().unwrap() >= 1, "the chart has a line");
        let problems = browser.eval(LAYOUT_PROBLEMS).unwrap();
        assert_eq!(problems, serde_json::json!([]), "at {width}px");

        let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("status-page-{width}.png"));
        let png = browser.screenshot(&shot).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), width);
        assert!(
            png.len() > 10_000,
            "a blank page would be tiny: {} bytes",
            png.len()
        );
    }

    // The forms, by clicking, on the phone.
    let mut browser = Browser::start(&dir.join("browser-forms"), 390, 900).unwrap();
    browser.open(&url).unwrap();
    browser
        .click_and_wait("#rule-Flag form.act button[value='1h']")
        .unwrap();
    let silenced = |b: &mut Browser| {
        b.eval("[document.querySelector('#rule-Flag .badge.silenced') !== null, [...document.querySelectorAll('table')].pop().innerText]")
            .unwrap()
    };
    let state = silenced(&mut browser);
    assert_eq!(state[0], true, "the alert shows as silenced: {state}");
    let table = state[1].as_str().unwrap();
    // Until an hour after it was made: read a moment later, "in 59 min".
    let until_an_hour = table.contains("in 59 min") || table.contains("in 1 h");
    assert!(
        table.contains("alertname=\"Flag\"") && table.contains("active") && until_an_hour,
        "{table}"
    );
    let api = obs_testkit::client::get(collector.addr, "/api/v2/silences").unwrap();
    assert!(api.body.contains("\"state\":\"active\""), "{}", api.body);

    browser
        .click_and_wait("form[action='/silences/expire'] button")
        .unwrap();
    let state = silenced(&mut browser);
    assert_eq!(state[0], false, "no longer silenced: {state}");
    assert!(state[1].as_str().unwrap().contains("expired"), "{state}");

    // The page a Slack "Silence 1h" button opens: the form filled in, to confirm.
    browser
        .open(&format!(
            "{url}silences/new?label.alertname=Flag&label.job=svc&for=4h"
        ))
        .unwrap();
    let problems = browser.eval(LAYOUT_PROBLEMS).unwrap();
    assert_eq!(problems, serde_json::json!([]), "the confirmation page");
    let chosen = browser
        .eval("document.querySelector('button.chosen').textContent")
        .unwrap();
    assert_eq!(chosen, "Silence for 4h");
    let before = obs_testkit::client::get(collector.addr, "/api/v2/silences")
        .unwrap()
        .body;
    assert_eq!(before.matches("\"state\":\"active\"").count(), 0);
    browser.click_and_wait("button.chosen").unwrap();
    let after = obs_testkit::client::get(collector.addr, "/api/v2/silences")
        .unwrap()
        .body;
    assert_eq!(after.matches("\"state\":\"active\"").count(), 1, "{after}");
    assert!(
        after.contains("\"name\":\"job\",\"value\":\"svc\""),
        "{after}"
    );
}
