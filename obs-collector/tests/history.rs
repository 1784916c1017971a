//! History against a real Prometheus holding the same samples: one OpenMetrics file, 35 days of
//! a RED histogram scraped every minute (a diurnal load, a latency that creeps up, a restart
//! that resets the counters), imported into the collector (`obs-collector import`) and, with
//! `promtool tsdb create-blocks-from openmetrics`, into Prometheus. The same range queries go to
//! both: over the raw days the answers are equal (to 1e-9); over the downsampled days
//! (5-minute resolution past 8 days) they are within the error the README states.
//!
//! The samples sit 7.5 s after each minute and the queries' steps on whole minutes, so no
//! sample falls on a window's edge: Prometheus 2.x (the Debian package, ranges closed on the
//! left) and 3.x (open) agree, and so must the collector (3.x semantics). promtool 2.42 re-reads
//! its whole input for every 2-hour block it writes, so it is given the same file a day at a
//! time (cut at whole lines: the same samples).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use obs_testkit::prometheus::Prometheus;
use obs_testkit::{client, eventually};

mod common;

use common::{fake_target, temp_dir, try_import, write_config_with_rules, write_days, Collector};

const DAY_S: i64 = 86_400;
const DAYS: i64 = 35;
const FAMILY: &str = "http_server_request_duration_seconds";
const LABELS: &str =
    r#"job="shop",instance="shop-1:9464",http_request_method="GET",http_route="/users/{id}""#;
const LES: [&str; 5] = ["0.1", "0.25", "0.5", "1", "+Inf"];

/// `days` of samples, minute by minute up to `end_s`, as OpenMetrics lines (no header, no
/// EOF), one chunk per day.
fn days_of_samples(end_s: i64, days: i64) -> Vec<String> {
    let minutes = days * DAY_S / 60;
    let start = end_s - minutes * 60;
    let (mut buckets, mut sum) = ([0u64; 5], 0.0f64);
    let mut chunks = Vec::new();
    let mut day = String::new();
    for i in 0..minutes {
        if i > 0 && i % (DAY_S / 60) == 0 {
            chunks.push(std::mem::take(&mut day));
        }
        if i == 20 * DAY_S / 60 + 333 {
            // The service restarted: its counters start again from 0.
            (buckets, sum) = ([0; 5], 0.0);
        }
        // A diurnal load (40 to 120 a minute) and a latency creeping up over the 35 days.
        let phase = (i % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
        let n = (80.0 + 40.0 * phase.sin()) as u64 + (i as u64 * 7919) % 13;
        let slow = i as f64 / minutes as f64; // 0 -> 1
        let shares = [
            0.55 - 0.2 * slow,
            0.8 - 0.2 * slow,
            0.92 - 0.1 * slow,
            0.97 - 0.03 * slow,
            1.0,
        ];
        let mut below = 0;
        for (b, share) in buckets.iter_mut().zip(shares) {
            below = ((n as f64 * share) as u64).max(below);
            *b += below;
        }
        sum += n as f64 * (0.12 + 0.1 * slow);
        let t = format!("{}.5", start + i * 60 + 7);
        for (le, count) in LES.iter().zip(buckets) {
            day.push_str(&format!(
                "{FAMILY}_bucket{{{LABELS},le=\"{le}\"}} {count} {t}\n"
            ));
        }
        day.push_str(&format!("{FAMILY}_count{{{LABELS}}} {} {t}\n", buckets[4]));
        day.push_str(&format!("{FAMILY}_sum{{{LABELS}}} {sum:.4} {t}\n"));
    }
    chunks.push(day);
    chunks
}

fn openmetrics(body: &str) -> String {
    format!("# TYPE {FAMILY} histogram\n{body}# EOF\n")
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `days` of samples ending a minute ago, imported into `dir/state.data` (where the test's
/// collector keeps its history); returns that directory.
fn imported(dir: &Path, days: i64) -> std::path::PathBuf {
    let end = now_s() / 60 * 60 - 60;
    let file = dir.join(format!("{days}d.om"));
    std::fs::write(&file, openmetrics(&days_of_samples(end, days).concat())).unwrap();
    let storage = dir.join("state.data");
    let (code, said) = try_import(&file, &storage);
    assert_eq!(code, Some(0), "{said}");
    storage
}

/// A range query's answer: series (by their labels) -> (time, value) points.
type Matrix = BTreeMap<String, Vec<(f64, f64)>>;

fn range(addr: std::net::SocketAddr, query: &str, start: i64, end: i64, step: i64) -> Matrix {
    let form = serde_urlencoded::to_string([
        ("query", query.to_owned()),
        ("start", start.to_string()),
        ("end", end.to_string()),
        ("step", step.to_string()),
    ])
    .unwrap();
    let r = client::get(addr, &format!("/api/v1/query_range?{form}")).unwrap();
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap(),
                        p[1].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect();
            (s["metric"].to_string(), points)
        })
        .collect()
}

/// The largest relative difference between two answers that have the same series at the
/// same times.
fn largest_difference(query: &str, ours: &Matrix, theirs: &Matrix) -> f64 {
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "{query}: the series differ"
    );
    let mut largest = 0.0f64;
    for (series, points) in ours {
        let other = &theirs[series];
        let times = |p: &[(f64, f64)]| p.iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(
            times(points),
            times(other),
            "{query} {series}: the timestamps differ"
        );
        for ((t, a), (_, b)) in points.iter().zip(other) {
            let d = if a == b {
                0.0
            } else {
                (a - b).abs() / b.abs().max(1e-12)
            };
            assert!(d.is_finite(), "{query} {series} at {t}: {a} vs {b}");
            largest = largest.max(d);
        }
    }
    assert!(
        !ours.is_empty() && ours.values().all(|p| !p.is_empty()),
        "{query}: empty"
    );
    largest
}

#[test]
fn thirty_five_days_imported_answer_as_prometheus_does() {
    let dir = temp_dir("history");
    let now_s = now_s();
    let end = now_s / 60 * 60 - 60;
    let days = days_of_samples(end, DAYS);
    let (whole, per_day) = write_days(&dir, &days, openmetrics);

    let storage = dir.join("state.data");
    let (code, said) = try_import(&whole, &storage);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("{} samples of 7 series", DAYS * 1440 * 7)),
        "{said}"
    );
    // A file that goes wrong at its last line imports nothing.
    let blocks = || std::fs::read_dir(storage.join("blocks")).unwrap().count();
    let before = blocks();
    let bad = dir.join("bad.om");
    let tail = format!("{FAMILY}_count{{{LABELS}}} 1 {end}\nnot a sample\n");
    std::fs::write(&bad, openmetrics(&(days[3].clone() + &tail))).unwrap();
    let (code, said) = try_import(&bad, &storage);
    let bad_line = days[3].lines().count() + 3;
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(&format!("line {bad_line}:")) && said.contains("nothing imported"),
        "{said}"
    );
    assert_eq!(blocks(), before, "nothing half-imported");

    let prom = Prometheus::start_backfilled(
        "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
        &["--storage.tsdb.retention.time=60d"],
        &per_day,
    )
    .unwrap();
    let target = fake_target(Arc::new(Mutex::new("other 1\n".to_owned())));
    let config = write_config_with_rules(&dir, target, "groups: []\n", "");
    let collector = Collector::start(&config, &dir.join("state.json"), &[]);
    // Days that ended 8 days ago are downsampled once the collector has started.
    let old_days = (end - DAYS * DAY_S) / DAY_S..(now_s - 8 * DAY_S) / DAY_S;
    let downsampled = format!(
        "obs_collector_blocks{{resolution=\"5m\"}} {}",
        old_days.count()
    );
    eventually(
        Duration::from_secs(60),
        || format!("never {downsampled}"),
        || {
            client::get(collector.addr, "/metrics")
                .ok()?
                .body
                .contains(&downsampled)
                .then_some(())
        },
    );

    let rate = format!("rate({FAMILY}_count[5m])");
    let p95 =
        |w: &str| format!("histogram_quantile(0.95, sum by (le) (rate({FAMILY}_bucket[{w}])))");
    // Raw: the last 7 days, every 5 minutes; and a week back from the last day.
    let raw_from = end - 7 * DAY_S;
    for (query, start, step) in [
        (rate.clone(), raw_from, 300),
        (p95("5m"), raw_from, 300),
        (format!("increase({FAMILY}_count[1h])"), raw_from, 300),
        (
            format!(
                "sum(rate({FAMILY}_sum[5m] offset 7d)) / sum(rate({FAMILY}_count[5m] offset 7d))"
            ),
            end - DAY_S + 3600,
            300,
        ),
    ] {
        let ours = range(collector.addr, &query, start, end, step);
        let theirs = range(prom.addr, &query, start, end, step);
        let d = largest_difference(&query, &ours, &theirs);
        assert!(d <= 1e-9, "{query}: raw samples differ by {d:e}");
    }
    // Downsampled: 9 to 35 days ago, hourly, over windows of several 5-minute steps.
    let coarse_to = end - 9 * DAY_S;
    let coarse_from = end - DAYS * DAY_S + DAY_S;
    let mut report = Vec::new();
    for (query, bound) in [
        // Measured: 0.75%, 0.40%, 0.14%, 0.75% (the README states them).
        (format!("rate({FAMILY}_count[1h])"), 0.02),
        (p95("1h"), 0.02),
        (format!("increase({FAMILY}_count[1d])"), 0.005),
        (format!("rate({FAMILY}_count[1h] offset 7d)"), 0.02),
    ] {
        let ours = range(collector.addr, &query, coarse_from, coarse_to, 3600);
        let theirs = range(prom.addr, &query, coarse_from, coarse_to, 3600);
        let d = largest_difference(&query, &ours, &theirs);
        report.push(format!("{query}: {:.3}%", d * 100.0));
        assert!(
            d <= bound,
            "{query}: downsampled answers differ by {d} (bound {bound})"
        );
    }
    eprintln!(
        "downsampled vs raw, largest relative difference: {}",
        report.join("; ")
    );
}

/// Damage at rest: a block cut in the middle, a block with a flipped byte, and a "block" that
/// cannot be read as a file. The collector starts, sets each aside (renamed `*.corrupt`), says
/// so (an ERROR line, a self-metric, the status page) and serves the intact days.
#[test]
fn damaged_blocks_are_set_aside_and_the_rest_is_served() {
    let dir = temp_dir("damaged-blocks");
    let storage = imported(&dir, 4);
    let blocks_dir = storage.join("blocks");
    let mut blocks: Vec<_> = std::fs::read_dir(&blocks_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    blocks.sort();
    assert!(
        blocks.len() >= 4,
        "4 days of samples, one block per UTC day: {blocks:?}"
    );
    let truncated = &blocks[1];
    let bytes = std::fs::read(truncated).unwrap();
    std::fs::write(truncated, &bytes[..bytes.len() / 2]).unwrap();
    let flipped = &blocks[2];
    let mut bytes = std::fs::read(flipped).unwrap();
    bytes[100] ^= 0x20;
    std::fs::write(flipped, bytes).unwrap();
    let unreadable = blocks_dir.join("1000-2000-0.block");
    std::fs::create_dir(&unreadable).unwrap();

    let target = fake_target(Arc::new(Mutex::new("other 1\n".to_owned())));
    let config = write_config_with_rules(&dir, target, "groups: []\n", "");
    let collector = Collector::start(&config, &dir.join("state.json"), &[]);
    let metrics = client::get(collector.addr, "/metrics").unwrap().body;
    assert!(
        metrics.contains("obs_collector_blocks_set_aside 3"),
        "{metrics}"
    );
    for damaged in [truncated, flipped, &unreadable] {
        assert!(!damaged.exists(), "{} still in place", damaged.display());
        let aside = damaged.with_extension("corrupt");
        assert!(aside.exists(), "{} not set aside", aside.display());
        let name = aside.file_name().unwrap().to_str().unwrap().to_owned();
        let page = client::get(collector.addr, "/").unwrap().body;
        assert!(page.contains(&name), "the status page does not name {name}");
    }
    eventually(
        Duration::from_secs(5),
        || format!("not 3 ERROR lines: {}", collector.output.lock().unwrap()),
        || {
            let said = collector.output.lock().unwrap();
            (said.matches("a block does not check out").count() == 3).then_some(())
        },
    );
    // The intact days answer; the damaged ones are missing, not made up.
    let count = |t: i64| {
        let q = format!("/api/v1/query?query={FAMILY}_count&time={t}");
        let body = client::get(collector.addr, &q).unwrap().body;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"].as_array().unwrap().len()
    };
    let day_of = |path: &Path| -> i64 {
        let name = path.file_name().unwrap().to_str().unwrap();
        name.split('-').next().unwrap().parse::<i64>().unwrap() / 1000
    };
    assert_eq!(count(day_of(&blocks[3]) + 43_200), 1, "an intact day");
    assert_eq!(count(day_of(truncated) + 43_200), 0, "a day set aside");
}

/// A tmpfs mounted for one test, unmounted (lazily: the collector may still hold files) at
/// the end.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill a disk (it needs root, as CI runs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A sample value from a `/metrics` page (0 when absent).
fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A disk that fills up (a 1 MiB tmpfs, nearly full from the start): history writes fail and
/// are counted, scraping and alerting go on, the head keeps the samples; once space is freed
/// the log resumes, and what was logged after that survives `kill -9`.
#[test]
fn a_full_disk_stops_history_not_scraping_or_alerting() {
    let dir = temp_dir("full-disk");
    let disk = dir.join("disk");
    let _tmpfs = Tmpfs::mount(&disk, "1m");
    let ballast = disk.join("ballast");
    std::fs::write(&ballast, vec![0u8; 960 << 10]).unwrap();
    let page = Arc::new(Mutex::new(String::new()));
    let scrape_page = |n: u64| -> String {
        let load: String = (0..2000)
            .map(|i| format!("load{{i=\"{i}\"}} {}\n", n * 7 + i))
            .collect();
        format!("flag 1\nround {n}\n{load}")
    };
    *page.lock().unwrap() = scrape_page(0);
    let target = fake_target(Arc::clone(&page));
    let config = common::write_config(&dir, target, "0s", "");
    let state = disk.join("state.json");
    let mut collector = Collector::start(&config, &state, &[]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rounds = {
        let (page, stop) = (Arc::clone(&page), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                *page.lock().unwrap() = scrape_page(n);
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let page_of = |c: &common::CollectorProcess| client::get(c.addr, "/metrics").unwrap().body;
    let wal_failures = |c: &common::CollectorProcess| {
        metric(&page_of(c), "obs_collector_wal_write_failures_total")
    };
    let failures = eventually(
        Duration::from_secs(30),
        || "the full disk never failed a write".into(),
        || {
            let f = wal_failures(&collector);
            (f >= 3.0).then_some(f)
        },
    );
    // Scraping and rules go on, and the head keeps what the log could not.
    let scraped = |c: &common::CollectorProcess| {
        metric(
            &page_of(c),
            "obs_collector_scrapes_total{job=\"svc\",result=\"success\"}",
        )
    };
    let before = scraped(&collector);
    eventually(
        Duration::from_secs(10),
        || "scraping stopped on a full disk".into(),
        || (scraped(&collector) >= before + 2.0).then_some(()),
    );
    collector.wait_alert("firing", Duration::from_secs(10));
    // The `round` gauge's value now, or at `time` (Unix seconds).
    let round_at = |c: &common::CollectorProcess, time: Option<i64>| -> f64 {
        let at = time.map(|t| format!("&time={t}")).unwrap_or_default();
        let body = client::get(c.addr, &format!("/api/v1/query?query=round{at}"))
            .unwrap()
            .body;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(round_at(&collector, None) > 0.0);
    // Space again: the log resumes (its failures stop growing) and takes the new samples.
    std::fs::remove_file(&ballast).unwrap();
    let resumed_at = eventually(
        Duration::from_secs(20),
        || "the log never resumed".into(),
        || {
            let a = wal_failures(&collector);
            collector.wait_evaluations(3);
            let b = wal_failures(&collector);
            (a == b && b >= failures).then(|| round_at(&collector, None))
        },
    );
    collector.wait_evaluations(2);
    let killed_at = now_s();
    collector.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    rounds.join().unwrap();
    // After the restart, samples from after the space came back are there (asked at the time
    // of the kill: what the new process scrapes comes later).
    let collector = Collector::start(&config, &state, &[]);
    let logged = round_at(&collector, Some(killed_at));
    assert!(
        logged >= resumed_at,
        "the log kept samples up to round {logged}, the space came back at round {resumed_at}"
    );
}

/// The status page shows the past: with three days imported for job `shop`, its request rate,
/// 5xx ratio and p95, and the default rules' charts, are drawn over 24 h, 7 d and 30 d from
/// the store (the last hour from the evaluations).
#[test]
fn the_status_page_charts_the_past_from_history() {
    let dir = temp_dir("status-past");
    imported(&dir, 3);
    let target = fake_target(Arc::new(Mutex::new("other 1\n".to_owned())));
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../alerts/obs-red.rules.yml");
    let config = dir.join("collector.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: shop\n    static_configs:\n      - targets: ['{target}']\n{}",
            rules.display(),
            obs_testkit::PROMPT_ROUTE
        ),
    )
    .unwrap();
    let collector = Collector::start(&config, &dir.join("state.json"), &[]);
    let charts_of = |page: &str, id: &str| -> usize {
        let at = page
            .find(id)
            .unwrap_or_else(|| panic!("{id} not on the page"));
        let article = &page[at..page[at..].find("</article>").unwrap() + at];
        article.matches("<polyline").count()
    };
    for range in ["24h", "7d", "30d"] {
        let started = std::time::Instant::now();
        let page = client::get(collector.addr, &format!("/?range={range}"))
            .unwrap()
            .body;
        eprintln!("/?range={range}: {:?}", started.elapsed());
        assert!(
            page.contains(&format!("<b>{range}</b>")),
            "{range} is not the range shown"
        );
        // Three charts for the job, each with a line drawn from the imported days.
        let drawn = charts_of(&page, "<b class=\"name\">shop</b>");
        assert_eq!(drawn, 3, "{range}: {drawn} lines for the job");
        assert!(
            charts_of(&page, "id=\"rule-HighLatencyP95\"") >= 1,
            "{range}: no p95 rule chart"
        );
    }
}
