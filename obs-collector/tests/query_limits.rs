//! The query API's limits protect the collector's own work (Prometheus' `--query.timeout`,
//! `--query.max-samples`, `--query.max-concurrency`): over two imported days, a query that
//! reads too many samples answers 422, one that runs too long 503 `timeout`, and a flood of
//! heavy queries beyond the slots (and series API calls, which take the same slots) gets
//! answers or 503s while the rules are evaluated every second throughout (their evaluation
//! timestamps show no gap).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use obs_testkit::client;
use obs_testkit::process::CollectorProcess;
use serde_json::Value;

mod common;

use common::{fake_target, temp_dir, write_config, write_days, BIN};

const DAY_S: i64 = 86_400;

/// Two days of a histogram of 20 routes every minute, ending at `end`, a chunk a day.
fn days(end: i64) -> Vec<String> {
    let start = end - 2 * DAY_S;
    let mut chunks = vec![String::new(), String::new()];
    for i in 0..(2 * DAY_S / 60) {
        let t = start + i * 60 + 7;
        let day = &mut chunks[((t - start) / DAY_S) as usize];
        for r in 0..20 {
            for le in ["0.1", "+Inf"] {
                day.push_str(&format!(
                    "http_server_request_duration_seconds_bucket{{job=\"shop\",http_route=\"/r{r}\",le=\"{le}\"}} {i} {t}\n"
                ));
            }
        }
    }
    chunks
}

fn openmetrics(body: &str) -> String {
    format!("# TYPE http_server_request_duration_seconds histogram\n{body}# EOF\n")
}

/// `clients` threads, each asking again as soon as it is answered until `until`: every answer,
/// once they are all done.
fn flood<T: Send + 'static>(
    clients: usize,
    until: std::time::Instant,
    ask: impl Fn() -> T + Send + Sync + 'static,
) -> std::thread::JoinHandle<Vec<T>> {
    let ask = Arc::new(ask);
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let ask = Arc::clone(&ask);
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while std::time::Instant::now() < until {
                    answers.push(ask());
                }
                answers
            })
        })
        .collect();
    std::thread::spawn(move || {
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

fn range(addr: std::net::SocketAddr, query: &str, start: i64, end: i64) -> (u16, Value) {
    let form = serde_urlencoded::to_string([
        ("query", query),
        ("start", &start.to_string()),
        ("end", &end.to_string()),
        ("step", "60"),
    ])
    .unwrap();
    let r = client::post(
        addr,
        "/api/v1/query_range",
        &[("content-type", b"application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .unwrap();
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

#[test]
fn limits_answer_422_and_503_and_the_rules_keep_their_interval() {
    let dir = temp_dir("query-limits");
    let now = common::now_s();
    let end = now / 60 * 60 - 120;
    let (whole, _) = write_days(&dir, &days(end), openmetrics);
    common::import(&whole, &dir.join("state.data"));
    let target = fake_target(Arc::new(Mutex::new("flag 0\n".to_owned())));
    let config = write_config(&dir, target, "0s", "");
    let heavy = "sum by (http_route) (rate(http_server_request_duration_seconds_bucket[1h]))";
    let (start, stop) = (end - 2 * DAY_S + 3600, end);

    // Too many samples at once (a day of 40 series is 57,600 at every step): 422, with
    // Prometheus' message; a query under the cap answers.
    {
        let c = CollectorProcess::start_with_args(
            BIN.as_ref(),
            &config,
            &dir.join("state.json"),
            &[],
            &["--query.max-samples", "10000"],
        );
        let day = "sum(rate(http_server_request_duration_seconds_bucket[1d]))";
        let (status, v) = range(c.addr, day, stop - 3600, stop);
        assert_eq!(status, 422, "{v}");
        assert_eq!(v["errorType"], "execution");
        assert!(
            v["error"].as_str().unwrap().contains("too many samples"),
            "{v}"
        );
        let (status, v) = range(c.addr, heavy, stop - 3600, stop);
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["data"]["result"].as_array().map(Vec::len),
            Some(20),
            "{v}"
        );
    }
    // Too long: 503 timeout.
    {
        let c = CollectorProcess::start_with_args(
            BIN.as_ref(),
            &config,
            &dir.join("state.json"),
            &[],
            &["--query.timeout", "1ms"],
        );
        let (status, v) = range(c.addr, heavy, start, stop);
        assert_eq!(status, 503, "{v}");
        assert_eq!(v["errorType"], "timeout");
    }
    // A flood: one slot, a 1 s timeout, 40 clients asking for the two days (each query reads
    // every sample once, tens of milliseconds here, unoptimised: the slot answers some, the
    // rest wait out the timeout).
    let c = CollectorProcess::start_with_args(
        BIN.as_ref(),
        &config,
        &dir.join("state.json"),
        &[],
        &["--query.max-concurrency", "1", "--query.timeout", "1s"],
    );
    c.wait_evaluations(2);
    let evaluations = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (evaluations, done, addr) = (Arc::clone(&evaluations), Arc::clone(&done), c.addr);
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(r) = client::get(addr, "/api/v1/rules") {
                    let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                    if let Some(t) = v["data"]["groups"][0]["rules"][0]["lastEvaluation"].as_str() {
                        let mut seen = evaluations.lock().unwrap();
                        if seen.last().map(String::as_str) != Some(t) {
                            seen.push(t.to_owned());
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let addr = c.addr;
    // 40 clients, each asking again as soon as it is answered, for 4 s (several evaluations);
    // 10 more ask the series API over the two days, which takes the same slot.
    let until = std::time::Instant::now() + Duration::from_secs(4);
    let queries = flood(40, until, move || range(addr, heavy, start, stop).0);
    let series_path = format!(
        "/api/v1/series?match[]=http_server_request_duration_seconds_bucket&start={start}&end={stop}"
    );
    let series = flood(10, until, move || {
        let r = client::get(addr, &series_path).unwrap();
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        (r.status, v["errorType"].as_str().map(str::to_owned))
    });
    let statuses: Vec<u16> = queries.join().unwrap();
    let series_answers: Vec<(u16, Option<String>)> = series.join().unwrap();
    // Answered, or timed out waiting for the slot (a 503 `timeout`, as a query's).
    assert!(
        series_answers
            .iter()
            .all(|a| a.0 == 200 || (a.0 == 503 && a.1.as_deref() == Some("timeout"))),
        "{series_answers:?}"
    );
    // They waited for the slot behind the queries (38 of 40 timed out in one run): on the web
    // server's workers they were all answered at once.
    assert!(
        series_answers.iter().any(|a| a.0 == 503),
        "{series_answers:?}"
    );
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&503),
        "the queue overflowed into 503s: {statuses:?}"
    );
    assert!(statuses.contains(&200), "some were answered: {statuses:?}");
    // The rule group (every 1 s) was evaluated throughout: no gap of 2 s or more.
    let times: Vec<i64> = evaluations
        .lock()
        .unwrap()
        .iter()
        .map(|t| obs_collector::time::parse_rfc3339(t).unwrap())
        .collect();
    assert!(times.len() >= 3, "{times:?}");
    let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        gap < 2_000,
        "a rule evaluation was missed: a gap of {gap} ms in {times:?}"
    );
}
