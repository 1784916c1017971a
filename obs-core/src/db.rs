//! The database in the trace: sqlx logs each statement as a `sqlx::query` event (its summary,
//! its text, the rows, how long it took) and opens no span. This layer reads those events,
//! whatever `RUST_LOG` says about `sqlx`, and turns each into:
//!
//! - a CLIENT span under the current span (the request's, a handler's, a job's; none outside
//!   any span), started at the event's time minus the statement's duration, with the database
//!   conventions:
//!   `db.system.name` (from `Config::db_system`), `db.operation.name` (`SELECT`, ...),
//!   `db.collection.name` (the table, when the statement names one plainly),
//!   `db.query.summary` (`SELECT users`, also the span's name) and
//!   `db.response.returned_rows`. The statement's text is not recorded: it may hold literal
//!   values, and parameters never reach it (sqlx logs the text with its placeholders);
//! - an observation of `db_client_operation_duration_seconds{db_system_name,
//!   db_operation_name, db_collection_name}` (tables fold into `_overflow` past the cap).
//!
//! Spans are made only when they are exported. `Config::disable_sqlx()` turns all of it off;
//! sqlx's `log_statements(LevelFilter::Off)` on a connection does too (no event, nothing to
//! read), and statements logged at TRACE are not read.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::KeyValue;
use tracing::field::{Field, Visit};
use tracing_subscriber::filter::{FilterFn, LevelFilter};
use tracing_subscriber::layer::{Context, Layer};

use crate::config::DbSettings;
use crate::metrics::Bounded;
use crate::semconv;
use crate::sync::{read, write};

/// The `tracing` target of sqlx's statement events.
pub(crate) const SQLX_TARGET: &str = "sqlx::query";

/// The statement operations kept as they are; any other is `_OTHER`.
const OPERATIONS: [&str; 24] = [
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "WITH",
    "REPLACE",
    "MERGE",
    "UPSERT",
    "CREATE",
    "DROP",
    "ALTER",
    "TRUNCATE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "SET",
    "SHOW",
    "EXPLAIN",
    "PRAGMA",
    "VACUUM",
    "ANALYZE",
    "COPY",
];

/// The longest table name kept (longer: none).
const MAX_TABLE_LEN: usize = 64;

/// sqlx's statement events -> CLIENT spans and the DB histogram.
pub(crate) struct DbLayer {
    /// `None` when spans are not exported: nobody would see them.
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    histogram: Arc<Bounded<3>>,
    system: Arc<str>,
    operations: Vec<Arc<str>>,
    other: Arc<str>,
    none: Arc<str>,
    /// Table names seen, shared by their series; at most `max_tables` are kept.
    tables: RwLock<HashSet<Arc<str>, rustc_hash::FxBuildHasher>>,
    max_tables: usize,
}

impl DbLayer {
    /// `max_tables`: the label-set cap, past which the histogram folds new tables anyway.
    pub fn new(
        settings: &DbSettings,
        max_tables: usize,
        histogram: Arc<Bounded<3>>,
        tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    ) -> Self {
        Self {
            tracer,
            histogram,
            system: Arc::clone(&settings.system),
            operations: OPERATIONS.iter().map(|o| Arc::from(*o)).collect(),
            other: Arc::from(semconv::METHOD_OTHER),
            none: Arc::from(""),
            tables: RwLock::default(),
            max_tables,
        }
    }

    /// The layer with its own filter: it sees sqlx's statement events, and only them, whatever
    /// the log filter lets through.
    pub fn filtered<S>(self) -> impl Layer<S> + Send + Sync
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        // sqlx logs statements at DEBUG (slow ones at WARN) unless told otherwise, after asking
        // `tracing::enabled!`, whose metadata is a hint, not an event: only spans are refused.
        let filter = FilterFn::new(|m| !m.is_span() && m.target() == SQLX_TARGET)
            .with_max_level_hint(LevelFilter::DEBUG);
        self.with_filter(filter)
    }

    fn table(&self, name: &str) -> Arc<str> {
        if let Some(t) = read(&self.tables).get(name) {
            return Arc::clone(t);
        }
        let table: Arc<str> = Arc::from(name);
        let mut tables = write(&self.tables);
        // Past the cap a name is used once, not kept: statements may name tables without end
        // (one per tenant, per day), and the histogram folds them into `_overflow` anyway.
        if tables.len() < self.max_tables {
            tables.insert(Arc::clone(&table));
        }
        table
    }

    fn record(&self, query: &Query) {
        let now = SystemTime::now();
        let elapsed = Duration::try_from_secs_f64(query.elapsed_secs).unwrap_or_default();
        let sql = if query.statement.trim().is_empty() {
            &query.summary
        } else {
            &query.statement
        };
        let statement = Statement::read(sql);
        let operation = match statement.operation {
            Some(i) => &self.operations[i],
            None => &self.other,
        };
        let table = statement.table.map(|t| self.table(t));
        self.histogram.observe(
            [
                &self.system,
                operation,
                table.as_ref().unwrap_or(&self.none),
            ],
            None,
            elapsed.as_secs_f64(),
        );
        // A span only under a span: a statement outside any request or job (a migration at
        // start-up) would be a trace of its own per statement.
        let parent = opentelemetry::Context::current();
        let Some(tracer) = self.tracer.as_ref().filter(|_| parent.has_active_span()) else {
            return;
        };
        let summary = match &table {
            Some(t) => format!("{operation} {t}"),
            None => operation.to_string(),
        };
        let mut attributes = vec![
            KeyValue::new("db.system.name", self.system.to_string()),
            KeyValue::new("db.operation.name", operation.to_string()),
            KeyValue::new("db.query.summary", summary.clone()),
        ];
        if let Some(t) = &table {
            attributes.push(KeyValue::new("db.collection.name", t.to_string()));
        }
        if let Some(rows) = query.rows_returned {
            attributes.push(KeyValue::new("db.response.returned_rows", rows as i64));
        }
        // The current span (activated by tracing-opentelemetry when its `tracing` span was
        // entered) is the parent.
        let mut span = tracer
            .span_builder(summary)
            .with_kind(SpanKind::Client)
            .with_start_time(now.checked_sub(elapsed).unwrap_or(now))
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        span.end_with_timestamp(now);
    }
}

impl<S: tracing::Subscriber> Layer<S> for DbLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut query = Query::default();
        event.record(&mut query);
        self.record(&query);
    }
}

/// The fields of one `sqlx::query` event.
#[derive(Default)]
struct Query {
    summary: String,
    /// The whole statement when it is longer than the summary (else empty).
    statement: String,
    rows_returned: Option<u64>,
    elapsed_secs: f64,
}

impl Visit for Query {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => value.clone_into(&mut self.summary),
            "db.statement" => value.clone_into(&mut self.statement),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "rows_returned" {
            self.rows_returned = Some(value);
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }
    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

/// What a statement's words say: its operation (an index into [`OPERATIONS`]) and the table
/// it names plainly (`FROM t`, `INTO t`, `UPDATE t`, `TABLE t`), if any.
#[derive(Debug, PartialEq)]
struct Statement<'a> {
    operation: Option<usize>,
    table: Option<&'a str>,
}

impl<'a> Statement<'a> {
    fn read(sql: &'a str) -> Self {
        let mut words = sql
            .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';'))
            .filter(|w| !w.is_empty());
        let operation = words.next().and_then(|first| {
            OPERATIONS
                .iter()
                .position(|o| o.eq_ignore_ascii_case(first))
        });
        let mut table = None;
        let mut previous = operation.map(|i| OPERATIONS[i]).unwrap_or_default();
        for word in words {
            let after = ["FROM", "INTO", "TABLE", "JOIN"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(previous))
                || (previous == "UPDATE");
            let keyword = ["IF", "NOT", "EXISTS", "ONLY", "OR"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(word));
            if after && !keyword {
                // A subquery (`FROM (SELECT ...`) names no table of its own.
                let subquery = OPERATIONS.iter().any(|o| o.eq_ignore_ascii_case(word));
                table = if subquery { None } else { identifier(word) };
                break;
            }
            if !keyword {
                previous = word;
            }
        }
        Self { operation, table }
    }
}

/// `word` as a table name: quotes taken off, only identifier characters, not too long.
fn identifier(word: &str) -> Option<&str> {
    let name = word.trim_matches(|c| matches!(c, '"' | '`' | '[' | ']'));
    let plain = !name.is_empty()
        && name.len() <= MAX_TABLE_LEN
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$'));
    plain.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(sql: &str) -> (Option<&'static str>, Option<&str>) {
        let s = Statement::read(sql);
        (s.operation.map(|i| OPERATIONS[i]), s.table)
    }

    #[test]
    fn statements_give_their_operation_and_table() {
        assert_eq!(
            read("SELECT id, name FROM users WHERE id = $1"),
            (Some("SELECT"), Some("users"))
        );
        assert_eq!(
            read("insert into \"orders\" (id, total) values (?, ?)"),
            (Some("INSERT"), Some("orders"))
        );
        assert_eq!(
            read("UPDATE accounts SET balance = balance - $1"),
            (Some("UPDATE"), Some("accounts"))
        );
        assert_eq!(
            read("DELETE FROM sessions"),
            (Some("DELETE"), Some("sessions"))
        );
        assert_eq!(
            read("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY)"),
            (Some("CREATE"), Some("users"))
        );
        assert_eq!(read("SELECT 1"), (Some("SELECT"), None));
        assert_eq!(read("BEGIN"), (Some("BEGIN"), None));
        assert_eq!(read("frobnicate the database"), (None, None));
        assert_eq!(read(""), (None, None));
    }

    #[test]
    fn the_tables_kept_are_bounded() {
        let overflow = prometheus::IntCounter::new("o", "o").unwrap();
        let histogram = Arc::new(Bounded::new(&crate::metrics::DB, 50, overflow));
        let settings = DbSettings {
            sqlx: true,
            system: Arc::from("postgresql"),
        };
        let layer = DbLayer::new(&settings, 50, histogram, None);
        for i in 0..10_000 {
            let query = Query {
                summary: format!("SELECT * FROM events_{i}"),
                elapsed_secs: 0.001,
                ..Query::default()
            };
            layer.record(&query);
        }
        assert_eq!(crate::sync::read(&layer.tables).len(), 50);
        // A name kept before the cap is still shared.
        assert!(crate::sync::read(&layer.tables).contains("events_0"));
    }

    #[test]
    fn a_literal_is_never_taken_for_a_table() {
        assert_eq!(
            read("SELECT * FROM 'secret@example.com'"),
            (Some("SELECT"), None)
        );
        assert_eq!(read("SELECT * FROM (SELECT 1)"), (Some("SELECT"), None));
        let long = format!("SELECT * FROM {}", "t".repeat(10_000));
        assert_eq!(read(&long), (Some("SELECT"), None));
    }
}
