//! Test support: obs without global state, capturing log lines and metrics.
//!
//! [`init`] builds the same logs, middleware and metrics as [`crate::init`], but never installs a
//! global: its subscriber is the default of the calling thread and, inside a multi-thread tokio
//! runtime (`#[tokio::test(flavor = "multi_thread")]`), of each of the runtime's worker
//! threads, so the lines of spawned tasks are captured too and the lines of other tests (each
//! on its own runtime) never are, whatever global subscriber another test installed. It never
//! binds the admin port and ignores the environment. Threads of your own (and `spawn_blocking`)
//! capture with [`TestObs::dispatch`].
//!
//! ```
//! let obs = obs::test::init();
//! tracing::info!(user = 42, "signed in");
//! let line = &obs.logs()[0];
//! assert!(line.contains(r#""message":"signed in""#) && line.contains(r#""user":42"#));
//! ```

use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt;

use crate::config::Config;
use crate::logs::LineSink;
use crate::obs::Obs;
use crate::sync::lock;

/// An [`Obs`] whose logs are captured in memory. Derefs to [`Obs`].
pub struct TestObs {
    obs: Obs,
    lines: Capture,
    dispatch: tracing::Dispatch,
    _default: DefaultGuard,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl LineSink for Capture {
    fn write_line(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line)).into_owned();
        lock(&self.0).push(line);
    }
}

/// A test `Obs` with the default configuration. See the [module docs](self).
///
/// ```
/// let obs = obs::test::init();
/// assert!(obs.logs().is_empty());
/// ```
pub fn init() -> TestObs {
    init_with(Config::new())
}

/// A test `Obs` with `config` (the environment is ignored; the admin server never starts).
///
/// ```
/// let obs = obs::test::init_with(obs::Config::new().service_name("svc").log_filter("debug"));
/// tracing::debug!("visible");
/// assert!(obs.logs()[0].contains(r#""service.name":"svc""#));
/// ```
pub fn init_with(config: Config) -> TestObs {
    let settings = config.disable_admin().resolve(&|_| None);
    let lines = Capture::default();
    let (obs, layers) = Obs::build(&settings, lines.clone(), None, false);
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layers));
    let default = tracing::dispatcher::set_default(&dispatch);
    capture_workers(&dispatch);
    // `log` records reach the capture too (a logger installed before is kept).
    crate::logs::install_log_bridge(None);
    TestObs {
        obs,
        lines,
        dispatch,
        _default: default,
    }
}

/// A context inside a sampled trace (a remote parent with fixed ids: trace
/// `4bf92f3577b34da6a3ce929d0e0e4736`, span `00f067aa0ba902b7`). While it is attached, a
/// recorded request is one of a sampled trace, as inside `obs.layer()`'s span: with spans
/// exported, its latency bucket keeps it as the exemplar.
///
/// ```
/// let obs = obs::test::init_with(obs::Config::new().otlp_endpoint("http://127.0.0.1:9"));
/// {
///     let _active = obs::test::sampled_context().attach();
///     obs.record_request(&http::Method::GET, Some("/users/{id}"), 500, std::time::Duration::from_millis(30));
/// }
/// let (_, page) = obs.metrics_page("application/openmetrics-text");
/// assert!(page.contains(r#"# {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"} 0.03"#));
/// ```
pub fn sampled_context() -> opentelemetry::Context {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736u128),
        SpanId::from(0x00f067aa0ba902b7u64),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    ))
}

/// How long [`capture_workers`] waits for every worker to take its task.
const RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Makes `dispatch` the default of every worker thread of the current multi-thread runtime. One
/// task per worker sets it; each waits until all have started, which (a waiting task holds
/// its worker) puts exactly one on each worker. The defaults last as long as the runtime's
/// threads, as a test's runtime does.
fn capture_workers(dispatch: &tracing::Dispatch) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let Ok(handle) = Handle::try_current() else {
        return;
    };
    if handle.runtime_flavor() == RuntimeFlavor::CurrentThread {
        return;
    }
    let workers = handle.metrics().num_workers();
    let arrived = Arc::new((Mutex::new(0usize), Condvar::new()));
    for _ in 0..workers {
        let dispatch = dispatch.clone();
        let arrived = Arc::clone(&arrived);
        handle.spawn(async move {
            std::mem::forget(tracing::dispatcher::set_default(&dispatch));
            let (count, all) = &*arrived;
            let mut count = lock(count);
            *count += 1;
            all.notify_all();
            let _ = all.wait_timeout_while(count, RENDEZVOUS_TIMEOUT, |n| *n < workers);
        });
    }
    // Called from a worker itself, one task cannot start until the others time out: bounded.
    let (count, all) = &*arrived;
    let count = lock(count);
    let (arrived, _) = all
        .wait_timeout_while(count, RENDEZVOUS_TIMEOUT, |n| *n < workers)
        .unwrap_or_else(PoisonError::into_inner);
    if *arrived < workers {
        // Test output, where the user looks when a line is missing.
        eprintln!(
            "obs::test: {} of the runtime's {workers} worker threads capture (the others were busy)",
            *arrived
        );
    }
}

impl TestObs {
    /// Every log line so far, without the trailing newline.
    ///
    /// ```
    /// let obs = obs::test::init();
    /// tracing::warn!("careful");
    /// assert_eq!(obs.logs().len(), 1);
    /// ```
    pub fn logs(&self) -> Vec<String> {
        lock(&self.lines.0).clone()
    }

    /// The subscriber, for code running on other threads
    /// (`tracing::dispatcher::with_default(&obs.dispatch(), || ...)`).
    ///
    /// ```
    /// let obs = obs::test::init();
    /// let dispatch = obs.dispatch();
    /// std::thread::spawn(move || tracing::dispatcher::with_default(&dispatch, || tracing::info!("from a thread")))
    ///     .join()
    ///     .unwrap();
    /// assert_eq!(obs.logs().len(), 1);
    /// ```
    pub fn dispatch(&self) -> tracing::Dispatch {
        self.dispatch.clone()
    }
}

impl Deref for TestObs {
    type Target = Obs;
    fn deref(&self) -> &Obs {
        &self.obs
    }
}
