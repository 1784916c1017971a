//! The demo's traffic: healthy -> 30% errors -> healthy -> 20% of requests at 3 s -> healthy,
//! at 20 requests per second, so that `HighErrorRate` and then `HighLatencyP95` go pending, fire
//! and resolve under the demo-speed rules. Used by the end-to-end test (the demo tells a story
//! of deploys instead: `obs_examples::rollout`).

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client;

/// (title, seconds, share of `/fail`, share of 3 s requests)
pub const PHASES: [(&str, u64, f64, f64); 5] = [
    ("healthy traffic", 15, 0.0, 0.0),
    (
        "30% of requests fail (HighErrorRate: pending after ~10 s of data, firing 10 s later)",
        30,
        0.3,
        0.0,
    ),
    ("healthy again (HighErrorRate resolves)", 20, 0.0, 0.0),
    ("20% of requests take 3 s (HighLatencyP95)", 30, 0.0, 0.2),
    ("healthy again (HighLatencyP95 resolves)", 20, 0.0, 0.0),
];
/// Requests started per second.
pub const REQUESTS_PER_SECOND: u64 = 20;

/// One request sent and what came back.
#[derive(Clone, Debug)]
pub struct Sent {
    /// The path requested.
    pub path: String,
    /// The status, or `None` when the request failed.
    pub status: Option<u16>,
    /// The `x-request-id` the service answered.
    pub request_id: Option<String>,
}

/// Sends the phases' traffic to `addr` (printing each phase), until done or `stop`; slow
/// requests run on their own threads to keep the rate. Returns every request sent.
pub fn drive(addr: SocketAddr, stop: &AtomicBool) -> Vec<Sent> {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let record = move |sent: &Mutex<Vec<Sent>>, path: String| {
        let response = client::get(addr, &path).ok();
        let entry = Sent {
            status: response.as_ref().map(|r| r.status),
            request_id: response
                .as_ref()
                .and_then(|r| r.header("x-request-id"))
                .map(str::to_owned),
            path,
        };
        sent.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
    };
    let started = Instant::now();
    let mut slow_threads = Vec::new();
    'phases: for (title, seconds, fail, slow) in PHASES {
        println!("[{:>3}s] {title}", started.elapsed().as_secs());
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut i: u64 = 0;
        while Instant::now() < end {
            if stop.load(Ordering::SeqCst) {
                break 'phases;
            }
            i += 1;
            let pick = (i % 10) as f64 / 10.0;
            let path = if pick < fail {
                "/fail".to_owned()
            } else if pick < slow {
                "/slow?ms=3000".to_owned()
            } else {
                format!("/users/{i}")
            };
            if path.starts_with("/slow") {
                let sent = Arc::clone(&sent);
                slow_threads.push(std::thread::spawn(move || record(&sent, path)));
            } else {
                record(&sent, path);
            }
            std::thread::sleep(Duration::from_millis(1000 / REQUESTS_PER_SECOND));
        }
    }
    for t in slow_threads {
        let _ = t.join();
    }
    let sent = std::mem::take(&mut *sent.lock().unwrap_or_else(|e| e.into_inner()));
    println!(
        "[{:>3}s] done: {} requests",
        started.elapsed().as_secs(),
        sent.len()
    );
    sent
}

/// Paced background traffic: calls `step(0)`, `step(1)`, ... one every `period` until a step
/// breaks, and returns what it broke with. A pace, not a wait: a test that needs something to
/// have happened waits for that condition ([`crate::eventually`]).
///
/// ```
/// use std::ops::ControlFlow;
/// let sent = obs_testkit::traffic::every(std::time::Duration::ZERO, |i| {
///     if i == 3 { ControlFlow::Break(i) } else { ControlFlow::Continue(()) }
/// });
/// assert_eq!(sent, 3);
/// ```
pub fn every<T>(period: Duration, mut step: impl FnMut(u64) -> ControlFlow<T>) -> T {
    let mut i = 0;
    loop {
        if let ControlFlow::Break(value) = step(i) {
            return value;
        }
        i += 1;
        std::thread::sleep(period);
    }
}
