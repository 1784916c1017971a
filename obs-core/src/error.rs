//! The errors of `obs`: [`Error`] (init) and [`ParseError`] (a configuration value).

use std::fmt;

/// Why [`crate::init`] (or [`crate::Config::init`]) could not install obs.
///
/// Bad configuration values are never an error: they produce a warning line and the default.
///
/// ```
/// let first = obs::Config::new().disable_admin().init();
/// assert!(first.is_ok());
/// let second = obs::Config::new().disable_admin().init();
/// assert!(matches!(second, Err(obs::Error::AlreadyInitialized)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `init()` was already called successfully in this process.
    AlreadyInitialized,
    /// Another global `tracing` subscriber was installed before obs.
    SubscriberAlreadySet,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AlreadyInitialized => f.write_str("obs is already initialized in this process"),
            Error::SubscriberAlreadySet => f.write_str(
                "a global tracing subscriber was set before obs::init(): add your layers to \
                 obs' subscriber with Config::with_layer, or build your subscriber from obs' \
                 layers with Config::into_layers",
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Why a configuration value did not parse (`"xml".parse::<obs::LogFormat>()`): it says what
/// was expected. obs itself never fails on one: the environment's bad values become warnings.
///
/// ```
/// let why = "xml".parse::<obs::LogFormat>().unwrap_err();
/// assert_eq!(why.to_string(), r#"expected "json" or "pretty""#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub(crate) &'static str);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ParseError {}
