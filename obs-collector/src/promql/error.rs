//! [`QueryError`]: why a query gave no value, from the local evaluator and a remote backend
//! alike, so that a rule's evaluation does not care which one answered.

use std::fmt;

/// Why a query gave no value. A rule whose query fails keeps its alert state (as Prometheus
/// does) and shows the error as its health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// The expression cannot be evaluated here (`many-to-many matching not allowed`, a function
    /// only the remote backend evaluates, ...).
    Eval(String),
    /// The backend could not be reached, or did not answer in time.
    Transport(String),
    /// The backend answered with an API error.
    Api {
        status: u16,
        error_type: String,
        message: String,
    },
    /// The backend's answer is not a Prometheus API response, or not one a rule can use.
    BadResponse { status: u16, detail: String },
    /// The evaluation would hold more samples than the query may (`--query.max-samples`).
    TooManySamples,
    /// The query waited for a slot (`"the queue"`) or ran (`"expression evaluation"`) past its
    /// deadline (`--query.timeout`).
    Timeout(&'static str),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Eval(message) => f.write_str(message),
            QueryError::Transport(why) => write!(f, "query failed: {why}"),
            QueryError::Api {
                status,
                error_type,
                message,
            } => write!(f, "HTTP {status}: {error_type}: {message}"),
            QueryError::BadResponse { status, detail } => write!(f, "HTTP {status}: {detail}"),
            QueryError::TooManySamples => f.write_str(
                "query processing would load too many samples into memory in query execution",
            ),
            QueryError::Timeout(what) => write!(f, "query timed out in {what}"),
        }
    }
}

impl std::error::Error for QueryError {}

/// The evaluator's messages (`many-to-many matching not allowed`, ...).
impl From<String> for QueryError {
    fn from(message: String) -> Self {
        QueryError::Eval(message)
    }
}

impl From<&str> for QueryError {
    fn from(message: &str) -> Self {
        QueryError::Eval(message.to_owned())
    }
}
