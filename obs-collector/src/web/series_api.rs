//! Prometheus' series and label APIs over the collector's history, as Grafana's data source
//! calls them for its variables and its query editor: `/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/{name}/values` (GET query strings or POST form bodies, `match[]` repeated,
//! `start`/`end` as RFC 3339 or Unix seconds, `limit`), and `/api/v1/status/buildinfo`,
//! shaped as a Prometheus that has the label-match API (2.24 and later), so Grafana uses it;
//! and `/api/v1/query_exemplars` from the exemplars the collector keeps (each target's last
//! page), and `/api/v1/metadata` from the `# TYPE`, `# HELP` and `# UNIT` of each target's
//! last page. Series come from the blocks' indexes and the head: no sample is read.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value as Json};

use super::query_api::{
    error, failure, format_value, metric, pairs, params, success, time, BadData,
};
use super::App;
use crate::labels::Labels;
use crate::promql::{self, Expr, Selector};

/// What a series or label request asks.
struct Asked {
    selectors: Vec<Selector>,
    start: i64,
    end: i64,
    limit: usize,
}

/// The request's `match[]` (every one, from the query string and the form body), `start`,
/// `end` (all of history by default) and `limit` (0 or none: no limit).
fn asked(query: Option<&str>, body: &[u8]) -> Result<Asked, BadData> {
    let all = pairs(query, body);
    let params: std::collections::BTreeMap<String, String> = all.iter().cloned().collect();
    let selectors = all
        .into_iter()
        .filter(|(k, _)| k == "match[]")
        .map(|(_, text)| match promql::compile(&text) {
            Ok(Expr::Selector(s)) => Ok(s),
            Ok(_) => Err(BadData(format!(
                "invalid parameter \"match[]\": {text:?} is not a series selector"
            ))),
            Err(e) => Err(BadData(format!("invalid parameter \"match[]\": {e}"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start = time(&params, "start")?.unwrap_or(i64::MIN);
    let end = time(&params, "end")?.unwrap_or(i64::MAX);
    if end < start {
        return Err(BadData(
            "end timestamp must not be before start time".into(),
        ));
    }
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => usize::MAX,
        Some(Ok(0)) => usize::MAX,
        Some(Ok(l)) => l,
        Some(Err(_)) => {
            return Err(BadData("invalid parameter \"limit\": not a number".into()));
        }
    };
    Ok(Asked {
        selectors,
        start,
        end,
        limit,
    })
}

/// The series asked.
async fn series_of(app: &App, asked: &Asked) -> Result<Vec<Labels>, crate::promql::QueryError> {
    app.collector
        .series_api(asked.selectors.clone(), (asked.start, asked.end))
        .await
}

/// `data`, with Prometheus' warning when `limit` cut it.
fn limited(data: Json, cut: bool) -> Response {
    if !cut {
        return success(data);
    }
    axum::response::IntoResponse::into_response(axum::Json(json!({
        "status": "success",
        "data": data,
        "warnings": ["results truncated due to limit"],
    })))
}

/// `GET|POST /api/v1/series`.
pub(super) async fn series(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let asked = match asked(query.as_deref(), &body) {
        Ok(a) if a.selectors.is_empty() => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                "no match[] parameter provided",
            )
        }
        Ok(a) => a,
        Err(BadData(m)) => return error(StatusCode::BAD_REQUEST, "bad_data", &m),
    };
    let series = match series_of(&app, &asked).await {
        Ok(found) => found,
        Err(e) => return failure(&e),
    };
    let cut = series.len() > asked.limit;
    let data: Vec<Json> = series.iter().take(asked.limit).map(metric).collect();
    limited(Json::Array(data), cut)
}

/// `GET|POST /api/v1/labels`.
pub(super) async fn labels(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let asked = match asked(query.as_deref(), &body) {
        Ok(a) => a,
        Err(BadData(m)) => return error(StatusCode::BAD_REQUEST, "bad_data", &m),
    };
    let series = match series_of(&app, &asked).await {
        Ok(found) => found,
        Err(e) => return failure(&e),
    };
    let names: BTreeSet<&str> = series
        .iter()
        .flat_map(|l| l.iter().map(|(k, _)| k))
        .collect();
    let cut = names.len() > asked.limit;
    limited(
        json!(names.into_iter().take(asked.limit).collect::<Vec<_>>()),
        cut,
    )
}

/// `GET /api/v1/label/{name}/values`.
pub(super) async fn label_values(
    State(app): State<App>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if !crate::labels::valid_name(&name) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            &format!("invalid label name: {name:?}"),
        );
    }
    let asked = match asked(query.as_deref(), &[]) {
        Ok(a) => a,
        Err(BadData(m)) => return error(StatusCode::BAD_REQUEST, "bad_data", &m),
    };
    let series = match series_of(&app, &asked).await {
        Ok(found) => found,
        Err(e) => return failure(&e),
    };
    let values: BTreeSet<&str> = series.iter().filter_map(|l| l.get(&name)).collect();
    let cut = values.len() > asked.limit;
    limited(
        json!(values.into_iter().take(asked.limit).collect::<Vec<_>>()),
        cut,
    )
}

/// `GET|POST /api/v1/query_exemplars`: `query`, `start`, `end`. Grafana asks `query=test` when
/// a data source loads and counts exemplars as supported when that succeeds.
pub(super) async fn exemplars(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = params(query.as_deref(), &body);
    let asked = (|| {
        let text = params
            .get("query")
            .ok_or_else(|| BadData("invalid parameter \"query\": no query given".into()))?;
        let expr = promql::compile(text).map_err(|e| BadData(e.to_string()))?;
        let start = time(&params, "start")?.unwrap_or(i64::MIN);
        let end = time(&params, "end")?.unwrap_or(i64::MAX);
        Ok((expr, start, end))
    })();
    let (expr, start, end) = match asked {
        Ok(asked) => asked,
        Err(BadData(m)) => return error(StatusCode::BAD_REQUEST, "bad_data", &m),
    };
    let found = app
        .collector
        .exemplars_matching(&expr.selectors(), (start, end));
    let mut by_series: std::collections::BTreeMap<Labels, Vec<Json>> = Default::default();
    for e in found {
        by_series.entry(e.series.clone()).or_default().push(json!({
            "labels": { "trace_id": e.trace_id },
            "value": format_value(e.value),
            "timestamp": e.timestamp_ms as f64 / 1000.0,
        }));
    }
    let data: Vec<Json> = by_series
        .into_iter()
        .map(|(series, exemplars)| json!({ "seriesLabels": metric(&series), "exemplars": exemplars }))
        .collect();
    success(Json::Array(data))
}

/// A count parameter as Prometheus reads `/api/v1/metadata`'s: absent or negative, no limit.
fn count(
    params: &std::collections::BTreeMap<String, String>,
    name: &str,
) -> Result<usize, BadData> {
    match params.get(name).map(|text| text.parse::<i64>()) {
        None => Ok(usize::MAX),
        Some(Ok(n)) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(Err(_)) => Err(BadData(format!("{name} must be a number"))),
    }
}

/// `GET /api/v1/metadata`: `metric`, `limit` (families), `limit_per_metric`; from what the
/// targets' last pages say (`# TYPE`, `# HELP`, `# UNIT`), as Prometheus answers from its
/// active targets. Grafana's query editor shows it beside the metric names.
pub(super) async fn metadata(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    let params = params(query.as_deref(), &[]);
    let asked = count(&params, "limit").and_then(|limit| {
        // Prometheus takes 0 per metric as no limit, and 0 families as none.
        let per_metric = count(&params, "limit_per_metric")?;
        Ok((
            limit,
            if per_metric == 0 {
                usize::MAX
            } else {
                per_metric
            },
        ))
    });
    let (limit, per_metric) = match asked {
        Ok(asked) => asked,
        Err(BadData(m)) => return error(StatusCode::BAD_REQUEST, "bad_data", &m),
    };
    let metric = params
        .get("metric")
        .map(String::as_str)
        .filter(|m| !m.is_empty());
    let families = match app.collector.metric_metadata(metric, per_metric) {
        Ok(found) => found,
        Err(e) => return failure(&e),
    };
    let data: serde_json::Map<String, Json> = families
        .into_iter()
        .take(limit)
        .map(|(name, set)| {
            let entries = set
                .into_iter()
                .map(|m| json!({ "type": m.kind, "help": m.help, "unit": m.unit }))
                .collect();
            (name, Json::Array(entries))
        })
        .collect();
    success(Json::Object(data))
}

/// The Prometheus API version this collector answers as: at least 2.24, so Grafana uses the
/// label-match API (`/api/v1/label/{name}/values?match[]=`); no `features`, so it is taken for
/// a Prometheus (a `features` map reads as Mimir).
pub const API_VERSION: &str = "2.53.0";

/// `GET /api/v1/status/buildinfo`.
pub(super) async fn buildinfo() -> Response {
    success(json!({
        "version": API_VERSION,
        "revision": concat!("obs-collector ", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "obs",
        "buildDate": "",
        "goVersion": "none (obs-collector is written in Rust)",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_repeated_in_the_query_and_the_form() {
        let a = asked(
            Some("match[]=up&start=1.5&limit=2"),
            b"match%5B%5D=%7Bjob%3D%22x%22%7D&end=2026-12-07T00:00:00Z",
        )
        .unwrap_or_else(|BadData(m)| panic!("{m}"));
        assert_eq!(a.selectors.len(), 2);
        assert_eq!((a.start, a.limit), (1500, 2));
        assert_eq!(
            a.end,
            crate::time::parse_rfc3339("2026-12-07T00:00:00Z").unwrap()
        );
        assert!(asked(Some("match[]=rate(up[1m])"), &[]).is_err());
        assert!(asked(Some("start=2&end=1"), &[]).is_err());
    }
}
