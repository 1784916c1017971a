//! Test support shared by every crate's tests (and the demo's harnesses): a tiny blocking HTTP/1.1
//! client, headless Chromium over the DevTools protocol, local OTLP and Sentry receivers, a Slack stand-in, a real Prometheus runner, process
//! harnesses for the demo service and the collector, and the exposition-format helpers. It
//! depends on no crate of the workspace, so any of them can dev-depend on it without a cycle.

pub mod browser;
pub mod client;
pub mod dashboard;
pub mod exposition;
pub mod floor_plan;
pub mod process;
pub mod prometheus;
pub mod receivers;
pub mod slack;
pub mod traffic;

/// Serves `router` on a free loopback port from the current tokio runtime; returns the address.
pub async fn serve(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Polls `probe` every 50 ms until it gives a value, and returns it; after `timeout`, panics
/// with `what()` (which can show the last state). The one place tests wait for something to
/// happen: a fixed sleep would either waste time or be too short on a loaded machine.
///
/// ```
/// let mut n = 0;
/// let three = obs_testkit::eventually(std::time::Duration::from_secs(1), || "never 3".into(), || {
///     n += 1;
///     (n == 3).then_some(n)
/// });
/// assert_eq!(three, 3);
/// ```
pub fn eventually<T>(
    timeout: std::time::Duration,
    what: impl Fn() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe_before(deadline, &what, &mut probe) {
            return value;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// One probe of a wait: its value, or `None` to probe again; panics with `what()` once past
/// `deadline`.
fn probe_before<T>(
    deadline: std::time::Instant,
    what: &impl Fn() -> String,
    probe: &mut impl FnMut() -> Option<T>,
) -> Option<T> {
    let value = probe();
    assert!(
        value.is_some() || std::time::Instant::now() < deadline,
        "{}",
        what()
    );
    value
}

/// [`eventually`] for a test whose runtime also serves what it waits for (a current-thread
/// runtime): polls `probe` every 10 ms without blocking the runtime.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
/// let set = std::sync::Arc::clone(&ready);
/// tokio::spawn(async move { set.store(true, std::sync::atomic::Ordering::SeqCst) });
/// obs_testkit::eventually_async(std::time::Duration::from_secs(1), || "never set".into(), || {
///     ready.load(std::sync::atomic::Ordering::SeqCst).then_some(())
/// })
/// .await;
/// # });
/// ```
pub async fn eventually_async<T>(
    timeout: std::time::Duration,
    what: impl Fn() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe_before(deadline, &what, &mut probe) {
            return value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A collector `route:` that sends a new group at once and its changes 1.5 s later: for the
/// tests of other things than grouping (Alertmanager's defaults wait 30 s and 5 min). Between
/// two evaluations of a 1 s group, so the collector's flush timer sends the changes.
pub const PROMPT_ROUTE: &str = "route:\n  group_wait: 0s\n  group_interval: 1500ms\n";
