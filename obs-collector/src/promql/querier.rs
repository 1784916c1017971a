//! [`Querier`]: where a rule's expression is evaluated, Prometheus' `QueryFunc`. The local
//! store and a remote backend sit behind it, so the rule evaluator does not know which one
//! answered and tests give it scripted answers.

use std::future::Future;
use std::pin::Pin;
use std::sync::{PoisonError, RwLock};

use super::{eval, Expr, QueryError, Value};
use crate::store::Store;

/// One expression to evaluate: compiled, and as the rule file wrote it when it is a whole rule
/// expression (a sub-expression, such as the value charted against a threshold, has no text).
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub expr: &'a Expr,
    pub text: Option<&'a str>,
}

/// The answer of a [`Querier`], to be awaited.
pub type QueryFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, QueryError>> + Send + 'a>>;

/// Evaluates expressions at a time (milliseconds since the epoch).
pub trait Querier: Send + Sync {
    fn query<'a>(&'a self, query: Query<'a>, t_ms: i64) -> QueryFuture<'a>;
}

/// The in-memory store the scrapes fill.
pub struct Local<'s>(pub &'s RwLock<Store>);

impl Querier for Local<'_> {
    fn query<'a>(&'a self, query: Query<'a>, t_ms: i64) -> QueryFuture<'a> {
        let store = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let value = eval(query.expr, &*store, t_ms);
        Box::pin(std::future::ready(value))
    }
}

impl Querier for super::remote::Remote {
    fn query<'a>(&'a self, query: Query<'a>, t_ms: i64) -> QueryFuture<'a> {
        Box::pin(async move {
            match query.text {
                Some(text) => self.instant(text, t_ms).await,
                None => Err(QueryError::Eval(
                    "a remote backend evaluates whole rule expressions only".to_owned(),
                )),
            }
        })
    }
}
