//! Remote evaluation: the same rule expressions sent to a Prometheus-compatible HTTP API
//! (Prometheus, Thanos, Mimir, VictoriaMetrics) with `GET /api/v1/query`, at the evaluation
//! time minus `query_offset`. An HTTP, transport or API error is an evaluation error: the rule's
//! state is left as it is, as Prometheus does.

use serde_json::Value as Json;

use super::eval::{Sample, Value};
use super::QueryError;
use crate::config::{QueryAuth, RemoteQuery};
use crate::labels::Labels;

/// One series of a range query: its labels and its `(milliseconds, value)` points.
pub type RangeSeries = (Labels, Vec<(i64, f64)>);

/// A query client for one backend.
pub struct Remote {
    client: reqwest::Client,
    config: RemoteQuery,
}

impl Remote {
    pub fn new(config: RemoteQuery, client: reqwest::Client) -> Self {
        Self { client, config }
    }

    /// The backend's address without credentials or query string: where to point Grafana.
    pub fn address(&self) -> String {
        let url = self.config.url.split(['?', '#']).next().unwrap_or_default();
        match url.split_once("://") {
            Some((scheme, rest)) => {
                let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{rest}")
            }
            None => url.to_owned(),
        }
    }

    /// Evaluates `expr` at `t_ms - query_offset`.
    pub async fn instant(&self, expr: &str, t_ms: i64) -> Result<Value, QueryError> {
        let at = seconds(t_ms - crate::time::millis(self.config.offset));
        let (status, body) = self.get("query", &[("query", expr), ("time", &at)]).await?;
        parse_response(status, &body)
    }

    /// `expr` over `[start_ms, end_ms]` every `step` (`/api/v1/query_range`): each series with
    /// its points, timestamps in milliseconds.
    pub async fn range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step: std::time::Duration,
    ) -> Result<Vec<RangeSeries>, QueryError> {
        let offset = crate::time::millis(self.config.offset);
        let (start, end) = (seconds(start_ms - offset), seconds(end_ms - offset));
        let step = format!("{:.3}", step.as_secs_f64());
        let params = [
            ("query", expr),
            ("start", &start),
            ("end", &end),
            ("step", &step),
        ];
        let (status, body) = self.get("query_range", &params).await?;
        parse_matrix(status, &body, offset)
    }

    /// The exemplars of the series `expr` selects over `[start_ms, end_ms]`
    /// (`/api/v1/query_exemplars`), those with a trace id.
    pub async fn exemplars(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<super::Exemplar>, QueryError> {
        let offset = crate::time::millis(self.config.offset);
        let (start, end) = (seconds(start_ms - offset), seconds(end_ms - offset));
        let params = [
            ("query", expr),
            ("start", start.as_str()),
            ("end", end.as_str()),
        ];
        let (status, body) = self.get("query_exemplars", &params).await?;
        parse_exemplars(status, &body)
    }

    /// GET `/api/v1/<endpoint>` with `params` and the configured credentials: (status, body).
    async fn get(
        &self,
        endpoint: &str,
        params: &[(&str, &str)],
    ) -> Result<(u16, String), QueryError> {
        let url = format!(
            "{}/api/v1/{endpoint}",
            self.config.url.trim_end_matches('/')
        );
        let mut request = self
            .client
            .get(&url)
            .query(params)
            .timeout(self.config.timeout);
        request = match &self.config.auth {
            None => request,
            Some(QueryAuth::Bearer(token)) => request.bearer_auth(token.expose()),
            Some(QueryAuth::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose()))
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| QueryError::Transport(crate::transport::describe(e)))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| QueryError::Transport(crate::transport::describe(e)))?;
        Ok((status, body))
    }
}

/// Milliseconds as the API's seconds.
fn seconds(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// A `query_exemplars` answer: each exemplar that names a trace, with its series.
pub fn parse_exemplars(status: u16, body: &str) -> Result<Vec<super::Exemplar>, QueryError> {
    let data = api_data(status, body)?;
    let mut out = Vec::new();
    for series in data.as_array().into_iter().flatten() {
        let labels = metric(&series["seriesLabels"]);
        for e in series["exemplars"].as_array().into_iter().flatten() {
            let trace = ["trace_id", "traceID"]
                .iter()
                .find_map(|k| e["labels"][k].as_str())
                .filter(|t| !t.is_empty());
            let value = e["value"].as_str().and_then(|v| v.parse::<f64>().ok());
            let at = e["timestamp"].as_f64();
            if let (Some(trace), Some(value), Some(at)) = (trace, value, at) {
                out.push(super::Exemplar {
                    series: labels.clone(),
                    trace_id: trace.to_owned(),
                    value,
                    timestamp_ms: (at * 1000.0).round() as i64,
                });
            }
        }
    }
    Ok(out)
}

/// A `query_range` answer: each series and its points (timestamps moved forward by `offset_ms`,
/// back to the evaluation times they answer for).
pub fn parse_matrix(
    status: u16,
    body: &str,
    offset_ms: i64,
) -> Result<Vec<RangeSeries>, QueryError> {
    let bad = |detail: String| QueryError::BadResponse { status, detail };
    let data = api_data(status, body)?;
    if data["resultType"] != "matrix" {
        return Err(bad(format!(
            "expected a matrix, got {}",
            data["resultType"]
        )));
    }
    let point = |p: &Json| -> Result<(i64, f64), QueryError> {
        let t = p[0]
            .as_f64()
            .ok_or_else(|| bad(format!("bad timestamp {p}")))?;
        let v = p[1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad sample value {p}")))?;
        Ok(((t * 1000.0).round() as i64 + offset_ms, v))
    };
    data["result"]
        .as_array()
        .ok_or_else(|| bad("missing result".to_owned()))?
        .iter()
        .map(|r| {
            let points = r["values"]
                .as_array()
                .ok_or_else(|| bad("a series without values".to_owned()))?
                .iter()
                .map(point)
                .collect::<Result<Vec<_>, _>>()?;
            Ok((metric(&r["metric"]), points))
        })
        .collect()
}

fn metric(m: &Json) -> Labels {
    Labels::new(
        m.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// The `data` of a successful API answer, or the API's error.
fn api_data(status: u16, body: &str) -> Result<Json, QueryError> {
    let json: Json = serde_json::from_str(body).map_err(|_| QueryError::BadResponse {
        status,
        detail: format!(
            "not a Prometheus API response: {:?}",
            body.chars().take(120).collect::<String>()
        ),
    })?;
    if json["status"] != "success" {
        return Err(QueryError::Api {
            status,
            error_type: json["errorType"].as_str().unwrap_or("error").to_owned(),
            message: json["error"]
                .as_str()
                .unwrap_or("no error message")
                .to_owned(),
        });
    }
    Ok(json["data"].clone())
}

pub fn parse_response(status: u16, body: &str) -> Result<Value, QueryError> {
    let bad = |detail: String| QueryError::BadResponse { status, detail };
    let data = api_data(status, body)?;
    let number = |v: &Json| -> Result<f64, QueryError> {
        v[1].as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad sample value {v}")))
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .ok_or_else(|| bad("missing result".to_owned()))?
            .iter()
            .map(|r| {
                Ok(Sample {
                    labels: metric(&r["metric"]),
                    value: number(&r["value"])?,
                })
            })
            .collect::<Result<Vec<_>, QueryError>>()
            .map(Value::Vector),
        Some("scalar") => number(&data["result"]).map(Value::Scalar),
        other => Err(bad(format!("unsupported result type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_vectors_scalars_and_errors() {
        let v = parse_response(200, r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a"},"value":[1700000000,"0.25"]}]}}"#).unwrap();
        let Value::Vector(v) = v else { panic!() };
        assert_eq!((v[0].labels.get("job"), v[0].value), (Some("a"), 0.25));
        assert_eq!(
            parse_response(
                200,
                r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#
            ),
            Ok(Value::Scalar(2.0))
        );
        let e = parse_response(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            QueryError::Api {
                status: 400,
                error_type: "bad_data".into(),
                message: "parse error".into()
            }
        );
        assert_eq!(e.to_string(), "HTTP 400: bad_data: parse error");
        let e = parse_response(502, "<html>Bad Gateway</html>").unwrap_err();
        assert!(
            matches!(e, QueryError::BadResponse { status: 502, .. })
                && e.to_string()
                    .starts_with("HTTP 502: not a Prometheus API response"),
            "{e}"
        );
        assert!(parse_response(
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#
        )
        .is_err());
    }
}
