//! [`RuleError`]: why one evaluation of a rule changed nothing.

use std::fmt;

use crate::promql::QueryError;

/// Why one evaluation of a rule changed nothing: its alert state is kept, as Prometheus keeps
/// it, and the error is the rule's health until an evaluation succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// The query gave no value (locally or from the backend).
    Query(QueryError),
    /// An alerting rule's expression returned a scalar.
    Scalar,
    /// Two output series have the same labels once the rule's labels are applied (`what`: the
    /// kind of rule, `alert` or `rule`, as in Prometheus' message).
    DuplicateLabelset { what: &'static str },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::Query(e) => e.fmt(f),
            RuleError::Scalar => f.write_str("the expression returned a scalar, not a vector"),
            RuleError::DuplicateLabelset { what } => write!(
                f,
                "vector contains metrics with the same labelset after applying {what} labels"
            ),
        }
    }
}

impl std::error::Error for RuleError {}

impl From<QueryError> for RuleError {
    fn from(e: QueryError) -> Self {
        RuleError::Query(e)
    }
}
