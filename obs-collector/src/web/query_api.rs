//! Prometheus' query API over the collector's store: `/api/v1/query` (instant) and
//! `/api/v1/query_range`, with Prometheus' parameters (GET query strings or POST form bodies,
//! times as RFC 3339 or Unix seconds, steps as durations or seconds), result shapes
//! (`vector`, `scalar`, `matrix`; values as strings) and errors (`bad_data` 400, `execution`
//! 422). It answers the PromQL the collector evaluates (the rules' subset) over what the store
//! holds; anything else is refused with its name, never answered with a different number.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value as Json_};

use super::alertmanager_api::url_pairs;
use super::App;
use crate::labels::Labels;
use crate::promql::{self, QueryError, RangeValue, Series, Steps, Value};

/// Prometheus' limit on the points of one series in a range query.
const MAX_POINTS: i64 = 11_000;

/// The largest form the query API reads (the other pages: [`super::alertmanager_api::BODY_MAX`]).
/// Read only once the credentials are checked.
pub const BODY_MAX: usize = 1024 * 1024;

/// A request that cannot be answered as asked: `bad_data`, 400.
#[derive(Debug)]
pub(super) struct BadData(pub(super) String);

/// Every parameter, repeated ones included (`match[]`): the query string's, then the form
/// body's (POST).
pub(super) fn pairs(query: Option<&str>, body: &[u8]) -> Vec<(String, String)> {
    let mut out = url_pairs(query.unwrap_or_default());
    out.extend(url_pairs(&String::from_utf8_lossy(body)));
    out
}

/// The parameters, one value each; the body wins, as in Prometheus' `r.FormValue`.
pub(super) fn params(query: Option<&str>, body: &[u8]) -> BTreeMap<String, String> {
    pairs(query, body).into_iter().collect()
}

/// A time parameter: RFC 3339 or Unix seconds, in milliseconds.
pub(super) fn time(params: &BTreeMap<String, String>, name: &str) -> Result<Option<i64>, BadData> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    crate::time::parse_api_time(text).map(Some).ok_or_else(|| {
        BadData(format!(
            "invalid parameter \"{name}\": cannot parse {text:?} to a valid timestamp"
        ))
    })
}

/// The step: a duration (`15s`) or seconds (`15`, `0.5`), in milliseconds.
fn step(text: &str) -> Result<i64, BadData> {
    let ms = match text.parse::<f64>() {
        Ok(s) if s.is_finite() => (s * 1000.0).round() as i64,
        _ => crate::config::parse_duration(text)
            .map(|d| d.as_millis() as i64)
            .map_err(|_| {
                BadData(format!(
                    "invalid parameter \"step\": cannot parse {text:?} to a valid duration"
                ))
            })?,
    };
    if ms <= 0 {
        return Err(BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    Ok(ms)
}

/// `GET|POST /api/v1/query`: `query`, `time` (default now).
pub(super) async fn instant(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let answer = (|| {
        let params = params(query.as_deref(), &body);
        let text = params
            .get("query")
            .ok_or_else(|| BadData("invalid parameter \"query\": no query given".into()))?;
        let t = time(&params, "time")?.unwrap_or_else(|| app.collector.now_ms());
        let expr = promql::compile(text).map_err(|e| BadData(e.to_string()))?;
        Ok((expr, t))
    })();
    let (expr, t) = match answer {
        Ok(asked) => asked,
        Err(BadData(message)) => return error(StatusCode::BAD_REQUEST, "bad_data", &message),
    };
    match app.collector.query_instant_api(expr, t).await {
        Ok(Value::Scalar(v)) => success(json!({
            "resultType": "scalar",
            "result": point(t, v),
        })),
        Ok(Value::Vector(samples)) => success(json!({
            "resultType": "vector",
            "result": samples.iter().map(|s| json!({
                "metric": metric(&s.labels),
                "value": point(t, s.value),
            })).collect::<Vec<_>>(),
        })),
        Err(e) => failure(&e),
    }
}

/// `GET|POST /api/v1/query_range`: `query`, `start`, `end`, `step`.
pub(super) async fn range(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let asked = (|| {
        let params = params(query.as_deref(), &body);
        let text = params
            .get("query")
            .ok_or_else(|| BadData("invalid parameter \"query\": no query given".into()))?;
        let required = |name: &str| {
            time(&params, name)?
                .ok_or_else(|| BadData(format!("invalid parameter \"{name}\": missing")))
        };
        let (start, end) = (required("start")?, required("end")?);
        if end < start {
            return Err(BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        let step = step(params.get("step").map_or("", String::as_str))?;
        if (end - start) / step > MAX_POINTS {
            return Err(BadData(format!(
                "exceeded maximum resolution of {MAX_POINTS} points per timeseries. Try decreasing the query resolution (?step=XX)"
            )));
        }
        let expr = promql::compile(text).map_err(|e| BadData(e.to_string()))?;
        Ok((expr, start, end, step))
    })();
    let (expr, start, end, step) = match asked {
        Ok(asked) => asked,
        Err(BadData(message)) => return error(StatusCode::BAD_REQUEST, "bad_data", &message),
    };
    let steps = Steps { start, end, step };
    // A matrix in label order; a scalar is one series without labels, as Prometheus returns it.
    let series = match app.collector.query_range_api(expr, steps).await {
        Ok(RangeValue::Scalar(values)) => vec![Series {
            labels: Labels::default(),
            points: values.into_iter().map(Some).collect(),
        }],
        Ok(RangeValue::Matrix(series)) => series,
        Err(e) => return failure(&e),
    };
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        matrix_body(&series, steps),
    )
        .into_response()
}

/// A matrix answer, written straight out a point at a time (a week of a thousand series is
/// millions of points: a JSON tree of them all would take ten times the bytes it writes). The
/// same bytes as [`success`] with the same answer built as a tree.
fn matrix_body(series: &[Series], steps: Steps) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + series.len() * 256);
    out.extend_from_slice(br#"{"data":{"result":["#);
    for (k, s) in series.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"metric":"#);
        serde_json::to_writer(&mut out, &metric(&s.labels)).expect("writes to a Vec");
        out.extend_from_slice(br#","values":["#);
        let present = s
            .points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, (*p)?)));
        for (j, (i, v)) in present.enumerate() {
            if j > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &point(steps.time(i), v)).expect("writes to a Vec");
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(br#"],"resultType":"matrix"},"status":"success"}"#);
    out
}

pub(super) fn metric(labels: &Labels) -> Json_ {
    Json_::Object(
        labels
            .iter()
            .map(|(k, v)| (k.to_owned(), Json_::String(v.to_owned())))
            .collect(),
    )
}

/// `[seconds, "value"]`, both as Prometheus writes them: the time the shortest way (`12`,
/// `12.5`), the value as a string.
fn point(t_ms: i64, v: f64) -> Json_ {
    let t = if t_ms % 1000 == 0 {
        json!(t_ms / 1000)
    } else {
        json!(t_ms as f64 / 1000.0)
    };
    json!([t, format_value(v)])
}

pub(super) use crate::promql::format_value;

pub(super) fn success(data: Json_) -> Response {
    Json(json!({ "status": "success", "data": data })).into_response()
}

pub(super) fn error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "status": "error", "errorType": error_type, "error": message })),
    )
        .into_response()
}

/// A query the limits or the evaluation stopped: 503 `timeout`, else 422 `execution`, as
/// Prometheus answers.
pub(super) fn failure(e: &QueryError) -> Response {
    match e {
        QueryError::Timeout(_) => error(StatusCode::SERVICE_UNAVAILABLE, "timeout", &e.to_string()),
        _ => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "execution",
            &e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_from_the_query_string_and_the_form_body() {
        let p = params(Some("query=up&time=1"), b"time=2&step=15s");
        assert_eq!(p["query"], "up");
        assert_eq!(p["time"], "2", "the body wins");
        assert_eq!(time(&p, "time").unwrap(), Some(2_000));
        assert_eq!(
            time(&params(Some("time=1970-01-01T00:00:01.5Z"), b""), "time").unwrap(),
            Some(1_500)
        );
        assert!(time(&params(Some("time=soon"), b""), "time").is_err());
        assert_eq!(time(&p, "start").unwrap(), None);
    }

    #[test]
    fn steps_as_durations_or_seconds() {
        assert_eq!(step("15s").unwrap(), 15_000);
        assert_eq!(step("1m30s").unwrap(), 90_000);
        assert_eq!(step("0.5").unwrap(), 500);
        assert_eq!(step("60").unwrap(), 60_000);
        assert!(step("0").is_err());
        assert!(step("-1").is_err());
        assert!(step("fast").is_err());
    }

    #[test]
    fn values_are_written_as_prometheus_writes_them() {
        for (v, text) in [
            (1.0, "1"),
            (0.1, "0.1"),
            (1e-7, "0.0000001"),
            (1_765_000_000.5, "1765000000.5"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(format_value(v), text);
        }
        assert_eq!(point(1_500, 2.0).to_string(), r#"[1.5,"2"]"#);
        // The matrix written straight out is the tree's bytes.
        let labels = Labels::from_pairs(&[("__name__", "up"), ("job", "a\"b")]);
        let steps = Steps {
            start: 1_500,
            end: 4_500,
            step: 1_000,
        };
        let series = [
            Series {
                labels: labels.clone(),
                points: vec![Some(1.0), None, Some(f64::NAN), Some(-0.5)],
            },
            Series {
                labels: Labels::default(),
                points: vec![None, Some(2e300), None, None],
            },
        ];
        let tree = json!({ "status": "success", "data": {
            "resultType": "matrix",
            "result": series.iter().map(|s| json!({
                "metric": metric(&s.labels),
                "values": s.points.iter().enumerate().filter_map(|(i, p)| Some(point(steps.time(i), (*p)?))).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }});
        assert_eq!(
            String::from_utf8(matrix_body(&series, steps)).unwrap(),
            tree.to_string()
        );
        let empty = matrix_body(&[], steps);
        assert_eq!(
            serde_json::from_slice::<Json_>(&empty).unwrap(),
            json!({ "status": "success", "data": { "resultType": "matrix", "result": [] } })
        );
        assert_eq!(point(2_000, 2.0).to_string(), r#"[2,"2"]"#);
    }
}
