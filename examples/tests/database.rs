//! The database in the trace: demo-service's `GET /accounts/{id}` runs three statements
//! through sqlx, on its own SQLite file and on a real PostgreSQL (Debian's, started here as an
//! unprivileged user). Decoded from OTLP: three CLIENT spans under the SERVER span, named and
//! attributed by the database conventions; the note (a bound parameter) is nowhere in the
//! spans, the log lines or `/metrics`; the DB histogram counts the three, and the pool's
//! connection set-up apart; `RUST_LOG=info` (sqlx logs statements at DEBUG) changes none of it.

use std::collections::HashMap;
use std::time::Duration;

use obs_testkit::client;
use obs_testkit::process::{DemoService, PostgresServer};
use obs_testkit::receivers::{attributes, display, Behavior, OtlpReceiver, Span};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

const NOTE: &str = "SECRETNOTE4711";

fn attrs(span: &Span) -> HashMap<String, String> {
    attributes(&span.attributes)
        .into_iter()
        .map(|(k, v)| (k, display(&v)))
        .collect()
}

/// What sqlx runs when its pool opens a connection (SQLite: one `PRAGMA ...;` batch; nothing
/// on PostgreSQL): not the request's statements, though the request waits for them when the
/// pool opens a connection for it (sqlx returns a connection to the pool in a task of its own,
/// so the next statement may find none idle).
const SETUP_OPERATION: &str = "PRAGMA";

fn is_connection_setup(labels: &str) -> bool {
    labels.contains(&format!(r#"db_operation_name="{SETUP_OPERATION}""#))
}

/// The `_count`s of `db_client_operation_duration_seconds`, by their label set.
fn db_counts(page: &str) -> HashMap<String, u64> {
    page.lines()
        .filter_map(|l| l.strip_prefix("db_client_operation_duration_seconds_count{"))
        .filter_map(|l| {
            let (labels, n) = l.rsplit_once("} ")?;
            Some((labels.to_owned(), n.parse().ok()?))
        })
        .collect()
}

fn three_statements_are_three_client_spans(database: Option<&str>, system: &str) {
    let otlp = OtlpReceiver::start(Behavior::Ok);
    let endpoint = otlp.endpoint();
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("RUST_LOG", "info"),
    ];
    if let Some(url) = database {
        env.push(("DATABASE_URL", url));
    }
    let service = DemoService::start(env!("CARGO_BIN_EXE_demo-service").as_ref(), &env).unwrap();
    let before = db_counts(
        &client::get(service.admin.unwrap(), "/metrics")
            .unwrap()
            .body,
    );
    let r = client::get(service.addr, &format!("/accounts/3?note={NOTE}")).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"orders\":1"), "{}", r.body);
    let page = client::get(service.admin.unwrap(), "/metrics")
        .unwrap()
        .body;
    let after = db_counts(&page);

    // The histogram: one more of each of the request's three statements, exactly.
    let grew: HashMap<&String, u64> = after
        .iter()
        .map(|(labels, n)| (labels, n - before.get(labels).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let mut own = 0;
    for (op, table) in [
        ("SELECT", "users"),
        ("SELECT", "orders"),
        ("UPDATE", "users"),
    ] {
        let labels = format!(
            r#"db_collection_name="{table}",db_operation_name="{op}",db_system_name="{system}""#
        );
        assert_eq!(grew.get(&labels), Some(&1), "{labels}: {page}");
        own += 1;
    }
    // Anything else that grew is the pool opening a connection for the request (SQLite's
    // PRAGMA batch): real work the request waited for, counted under its own operation.
    let setup: u64 = grew
        .iter()
        .filter(|(labels, _)| is_connection_setup(labels))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(grew.values().sum::<u64>(), own + setup, "{page}");
    eprintln!("{system}: the request's 3 statements, and {setup} connection set-up statement(s)");

    // The spans: three CLIENT children of the request's SERVER span, in order, inside it.
    // The SERVER span ends after its children, so they were exported with it or before.
    let spans: Vec<Span> = obs_testkit::eventually(
        Duration::from_secs(10),
        || format!("no server span: {:#?}", otlp.spans()),
        || {
            let spans: Vec<Span> = otlp.spans().into_iter().map(|(_, s)| s).collect();
            spans
                .iter()
                .any(|s| s.name == "GET /accounts/{id}")
                .then_some(spans)
        },
    );
    let server = spans
        .iter()
        .find(|s| s.name == "GET /accounts/{id}")
        .expect("found above");
    assert_eq!(server.kind, SpanKind::Server as i32);
    let (setup_spans, mut queries): (Vec<&Span>, Vec<&Span>) = spans
        .iter()
        .filter(|s| s.parent_span_id == server.span_id && s.kind == SpanKind::Client as i32)
        .partition(|s| s.name == SETUP_OPERATION);
    // The connection set-up the histogram counted happened in the request, under its span.
    assert_eq!(setup_spans.len() as u64, setup, "{spans:#?}");
    queries.sort_by_key(|s| s.start_time_unix_nano);
    let names: Vec<&str> = queries.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["SELECT users", "SELECT orders", "UPDATE users"],
        "{spans:#?}"
    );
    for q in &queries {
        assert_eq!(q.trace_id, server.trace_id);
        assert!(q.start_time_unix_nano >= server.start_time_unix_nano);
        assert!(q.end_time_unix_nano <= server.end_time_unix_nano);
        assert!(q.end_time_unix_nano >= q.start_time_unix_nano);
        let a = attrs(q);
        assert_eq!(a["db.system.name"], system);
        assert_eq!(a["db.query.summary"], q.name);
        assert!(!a.contains_key("db.query.text") && !a.contains_key("db.statement"));
    }
    let first = attrs(queries[0]);
    assert_eq!(first["db.operation.name"], "SELECT");
    assert_eq!(first["db.collection.name"], "users");
    assert_eq!(first["db.response.returned_rows"], "1");
    assert_eq!(attrs(queries[2])["db.operation.name"], "UPDATE");

    // The bound note is nowhere: not in a span, a log line or /metrics.
    let lines = service.stop_json();
    let everything = format!("{spans:?}{lines:?}{page}");
    assert!(!everything.contains(NOTE), "a parameter value leaked");
    // RUST_LOG=info: sqlx's DEBUG statement lines are read, not written.
    assert!(!lines.iter().any(|l| l["target"] == "sqlx::query"));
}

#[test]
fn sqlite_statements_are_client_spans_under_the_request() {
    three_statements_are_three_client_spans(None, "sqlite");
}

#[test]
fn postgresql_statements_are_client_spans_under_the_request() {
    let postgres = PostgresServer::start().expect("PostgreSQL (Debian's postgresql package)");
    three_statements_are_three_client_spans(Some(&postgres.url), "postgresql");
}
