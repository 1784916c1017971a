//! Test support: obs without global state, capturing log lines and metrics.
//!
//! [`init`] builds the same logs, middleware and metrics as [`crate::init`], but installs the
//! subscriber only as the *current thread's* default (so run async tests on a current-thread
//! runtime, as `#[tokio::test]` does), never binds the admin port and ignores the environment.
//!
//! ```
//! let obs = obs::test::init();
//! tracing::info!(user = 42, "signed in");
//! let line = &obs.logs()[0];
//! assert!(line.contains(r#""message":"signed in""#) && line.contains(r#""user":42"#));
//! ```

use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::subscriber::DefaultGuard;

use crate::logs::LineSink;
use crate::{Config, Obs};

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
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
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
    let (obs, subscriber) = Obs::build(&settings, lines.clone(), None, false);
    let dispatch = tracing::Dispatch::new(subscriber);
    let default = tracing::dispatcher::set_default(&dispatch);
    TestObs {
        obs,
        lines,
        dispatch,
        _default: default,
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
        self.lines
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
