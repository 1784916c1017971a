//! Remote evaluation: the same rule expressions sent to a Prometheus-compatible HTTP API
//! (Prometheus, Thanos, Mimir, VictoriaMetrics) with `GET /api/v1/query`, at the evaluation
//! time minus `query_offset`. An HTTP, transport or API error is an evaluation error: the rule's
//! state is left as it is, as Prometheus does.

use serde_json::Value as Json;

use super::eval::{Sample, Value};
use super::QueryError;
use crate::config::{QueryAuth, RemoteQuery};
use crate::labels::Labels;

/// A query client for one backend.
pub struct Remote {
    client: reqwest::Client,
    config: RemoteQuery,
}

impl Remote {
    pub fn new(config: RemoteQuery, client: reqwest::Client) -> Self {
        Self { client, config }
    }

    /// Evaluates `expr` at `t_ms - query_offset`.
    pub async fn instant(&self, expr: &str, t_ms: i64) -> Result<Value, QueryError> {
        let at = (t_ms - crate::time::millis(self.config.offset)) as f64 / 1000.0;
        let url = format!("{}/api/v1/query", self.config.url.trim_end_matches('/'));
        let mut request = self
            .client
            .get(&url)
            .query(&[("query", expr), ("time", &format!("{at:.3}"))])
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
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| QueryError::Transport(crate::transport::describe(e)))?;
        parse_response(status.as_u16(), &body)
    }
}

/// Decodes a `/api/v1/query` answer (an instant vector or a scalar).
pub fn parse_response(status: u16, body: &str) -> Result<Value, QueryError> {
    let bad = |detail: String| QueryError::BadResponse { status, detail };
    let json: Json = serde_json::from_str(body).map_err(|_| {
        bad(format!(
            "not a Prometheus API response: {:?}",
            body.chars().take(120).collect::<String>()
        ))
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
    let data = &json["data"];
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
                let labels = r["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Sample {
                    labels: Labels::new(labels),
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
