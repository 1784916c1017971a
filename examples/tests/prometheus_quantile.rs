//! A real Prometheus scrapes two demo services and `histogram_quantile(0.95, ...)` over what
//! it scraped lands on the side of 2 s that the traffic pattern dictates.

use std::time::Duration;

use obs_testkit::client;
use obs_testkit::process::DemoService;
use obs_testkit::prometheus::Prometheus;

fn start() -> DemoService {
    DemoService::start(env!("CARGO_BIN_EXE_demo-service").as_ref(), &[])
        .expect("demo-service starts")
}

/// `fast` requests of ~5 ms and `slow` ones of 3 s (the slow ones concurrently).
fn drive(demo: &DemoService, fast: usize, slow: usize) -> Vec<std::thread::JoinHandle<()>> {
    let addr = demo.addr;
    let mut handles: Vec<_> = (0..slow)
        .map(|_| {
            std::thread::spawn(move || {
                assert_eq!(client::get(addr, "/slow?ms=3000").unwrap().status, 200)
            })
        })
        .collect();
    handles.push(std::thread::spawn(move || {
        for _ in 0..fast {
            assert_eq!(client::get(addr, "/slow?ms=5").unwrap().status, 200);
        }
    }));
    handles
}

#[test]
fn p95_from_real_prometheus_matches_the_traffic() {
    let (a, b) = (start(), start());
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n\
         - job_name: p95-below\n  static_configs: [{{ targets: ['{}'] }}]\n\
         - job_name: p95-above\n  static_configs: [{{ targets: ['{}'] }}]\n",
        a.admin.unwrap(),
        b.admin.unwrap()
    );
    let prom = Prometheus::start(&config).expect("prometheus starts");
    let count = "sum by (job) (http_server_request_duration_seconds_count)";

    // One request each, scraped before the traffic: the series exist, so rate() sees all of it.
    for demo in [&a, &b] {
        assert_eq!(client::get(demo.addr, "/slow?ms=5").unwrap().status, 200);
    }
    prom.wait_until(count, Duration::from_secs(30), |r| {
        r.len() == 2 && r.iter().all(|s| s["value"][1] == "1")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", prom.log()));

    // 96% fast / 4% at 3 s below 2 s; 90% / 10% above.
    let mut handles = drive(&a, 96, 4);
    handles.extend(drive(&b, 90, 10));
    for h in handles {
        h.join().unwrap();
    }
    prom.wait_until(count, Duration::from_secs(30), |r| {
        r.len() == 2 && r.iter().all(|s| s["value"][1] == "101")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", prom.log()));

    let p95 = prom
        .query_by(
            "histogram_quantile(0.95, sum by (job, le) (http_server_request_duration_seconds_bucket))",
            "job",
        )
        .unwrap();
    let get = |job: &str| p95.iter().find(|(j, _)| j == job).map(|(_, v)| *v).unwrap();
    let (below, above) = (get("p95-below"), get("p95-above"));
    assert!(below <= 0.25, "96/4: p95 = {below} (well below 2)");
    // 91 fast (with the warm-up), 10 in (2.5, 5]: rank 0.95 x 101 = 95.95 falls 4.95 into the
    // 10 of that bucket: 2.5 + 2.5 x 4.95 / 10.
    assert!((above - 3.7375).abs() < 1e-9, "90/10: p95 = {above}");

    // The rate-based form used by the alert rule sees the same split.
    let rated = prom
        .query_by(
            "histogram_quantile(0.95, sum by (job, le) (rate(http_server_request_duration_seconds_bucket[1m])))",
            "job",
        )
        .unwrap();
    for (job, v) in rated {
        match job.as_str() {
            "p95-below" => assert!(v < 2.0, "rate form, 96/4: {v}"),
            "p95-above" => assert!(v > 2.0, "rate form, 90/10: {v}"),
            other => panic!("unexpected job {other}"),
        }
    }
}
