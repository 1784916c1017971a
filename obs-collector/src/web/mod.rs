//! HTTP: the status page, Prometheus-compatible `/api/v1/alerts`, `/api/v1/rules`,
//! `/api/v1/query` and `/api/v1/query_range` (`query_api`), the
//! collector's own `/metrics`, and `/-/healthy`, `/-/ready`. Served through `obs.layer()`, as
//! any service obs instruments: request ids, a JSON line per request, the collector's own RED
//! metrics, and `/metrics` negotiated as obs' admin server does (OpenMetrics for Prometheus).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

mod alertmanager_api;
mod forms;
mod query_api;
pub mod report_page;
pub mod runbook;
mod series_api;
pub mod status_page;

use crate::collector::Collector;
use crate::config::Secret;
use crate::labels::Labels;
use crate::rules::{Alert, Kind, Rule, State as AlertState};
use crate::time::rfc3339;

#[derive(Clone)]
struct App {
    collector: Arc<Collector>,
    obs: Arc<obs::Obs>,
    access: Arc<Access>,
}

/// Who may read the pages (the probes stay open): nobody needs credentials when both are unset;
/// else `Authorization: Bearer <token>` or `Authorization: Basic` with `user:password` will do.
#[derive(Debug, Default)]
pub struct Access {
    /// `OBS_COLLECTOR_TOKEN`.
    pub bearer: Option<Secret>,
    /// `OBS_COLLECTOR_BASIC_AUTH` (`user:password`).
    pub basic: Option<Secret>,
}

impl Access {
    /// From `OBS_COLLECTOR_TOKEN` and `OBS_COLLECTOR_BASIC_AUTH`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| {
            env(k)
                .filter(|v| !v.trim().is_empty())
                .map(|v| Secret::new(v.trim()))
        };
        Self {
            bearer: get("OBS_COLLECTOR_TOKEN"),
            basic: get("OBS_COLLECTOR_BASIC_AUTH").filter(|b| b.expose().contains(':')),
        }
    }

    /// Whether no credentials are required.
    pub fn is_open(&self) -> bool {
        self.bearer.is_none() && self.basic.is_none()
    }

    fn allows(&self, headers: &axum::http::HeaderMap) -> bool {
        self.is_open()
            || self
                .bearer
                .as_ref()
                .is_some_and(|t| obs::http::bearer_token_matches(headers, t.expose()))
            || self.basic.as_ref().is_some_and(|b| {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(b.expose());
                let want = format!("Basic {encoded}");
                let given = headers
                    .get(header::AUTHORIZATION)
                    .map_or(&b""[..], |v| v.as_bytes());
                obs::http::constant_time_eq(given, want.as_bytes())
            })
    }
}

/// The router for `--listen`. With credentials in `access`, every page but the probes needs
/// them.
pub fn router(collector: Arc<Collector>, obs: Arc<obs::Obs>, access: Access) -> Router {
    let layer = obs.layer();
    let app = App {
        collector,
        obs,
        access: Arc::new(access),
    };
    // The query API takes larger forms: a query of Grafana's multi-value variables is a long
    // regex, and a form triples it (`%7C` for `|`).
    let queries = Router::new()
        .route(
            "/api/v1/query",
            get(query_api::instant).post(query_api::instant),
        )
        .route(
            "/api/v1/query_range",
            get(query_api::range).post(query_api::range),
        )
        .route(
            "/api/v1/series",
            get(series_api::series).post(series_api::series),
        )
        .route(
            "/api/v1/labels",
            get(series_api::labels).post(series_api::labels),
        )
        .route("/api/v1/label/{name}/values", get(series_api::label_values))
        .route(
            "/api/v1/query_exemplars",
            get(series_api::exemplars).post(series_api::exemplars),
        )
        .layer(axum::extract::DefaultBodyLimit::max(query_api::BODY_MAX));
    let protected = Router::new()
        .merge(queries)
        .route("/api/v1/status/buildinfo", get(series_api::buildinfo))
        .route("/api/v1/metadata", get(series_api::metadata))
        .route("/", get(status_page::page))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/deploys", get(deploys))
        .route("/api/v1/report", get(report_page::api))
        .route("/report", get(report_page::page))
        .route("/metrics", get(metrics))
        .route(
            "/api/v2/silences",
            get(alertmanager_api::list_silences).post(alertmanager_api::post_silence),
        )
        .route(
            "/api/v2/silence/{id}",
            get(alertmanager_api::get_silence).delete(alertmanager_api::delete_silence),
        )
        .route("/api/v2/alerts", get(alertmanager_api::list_alerts))
        .route(
            "/silences/{action}",
            get(forms::confirm_page).post(forms::silence_form),
        )
        .route("/alerts/RUNBOOK.md", get(runbook::page))
        .layer(axum::extract::DefaultBodyLimit::max(
            alertmanager_api::BODY_MAX,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_access,
        ));
    Router::new()
        .merge(protected)
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready))
        .with_state(app)
        // Last, so that it sees the matched route templates and answers for every page.
        .layer(layer)
}

async fn require_access(
    State(app): State<App>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if app.access.allows(request.headers()) {
        return next.run(request).await;
    }
    let challenge = if app.access.basic.is_some() {
        "Basic realm=\"obs-collector\""
    } else {
        "Bearer"
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        "unauthorized\n",
    )
        .into_response()
}

async fn metrics(State(app): State<App>, headers: axum::http::HeaderMap) -> Response {
    let (content_type, page) = app.obs.metrics_response(&headers);
    ([(header::CONTENT_TYPE, content_type)], page).into_response()
}

async fn ready(State(app): State<App>) -> Response {
    if app.collector.is_ready() {
        (StatusCode::OK, "OK\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, as Prometheus renders alert values.
fn go_e(v: f64) -> String {
    if !v.is_finite() {
        return crate::rules::template::go_float(v);
    }
    let s = format!("{v:e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

fn label_map(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect(),
    )
}

fn pairs_map(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

fn alert_json(a: &Alert) -> Value {
    let mut v = json!({
        "labels": label_map(&a.labels),
        "annotations": pairs_map(&a.annotations),
        "state": a.state.as_str(),
        "activeAt": rfc3339(a.active_at),
        "value": go_e(a.value),
    });
    if let Some(since) = a.keep_firing_since {
        v["keepFiringSince"] = Value::String(rfc3339(since));
    }
    v
}

/// Pending and firing alerts of a rule (resolved ones are not listed, as in Prometheus).
fn live_alerts(rule: &Rule) -> Vec<&Alert> {
    match &rule.kind {
        Kind::Alerting(a) => {
            let mut v: Vec<&Alert> = a
                .active
                .values()
                .filter(|x| x.state != AlertState::Inactive)
                .collect();
            v.sort_by(|x, y| x.labels.cmp(&y.labels));
            v
        }
        Kind::Recording(_) => Vec::new(),
    }
}

async fn alerts(State(app): State<App>) -> Json<Value> {
    let mut all = Vec::new();
    let mutes = app.collector.mutes();
    app.collector.for_each_group(|g| {
        all.extend(g.rules.iter().flat_map(live_alerts).map(|a| {
            let mut v = alert_json(a);
            let silenced_by = mutes.silenced_by(&a.labels);
            if !silenced_by.is_empty() {
                v["silencedBy"] = json!(silenced_by);
            }
            let inhibited_by = mutes.inhibited_by(&a.labels);
            if !inhibited_by.is_empty() {
                v["inhibitedBy"] = inhibited_by.into_iter().map(label_map).collect();
            }
            v
        }));
    });
    Json(json!({ "status": "success", "data": { "alerts": all } }))
}

/// The scrape targets in Prometheus' shape (`activeTargets`; with static configs nothing is
/// dropped). Empty in remote mode, where the backend scrapes.
async fn targets(State(app): State<App>) -> Json<Value> {
    let active: Vec<Value> = app
        .collector
        .targets()
        .iter()
        .map(|t| {
            let s = &t.status;
            // What a static config "discovers", before relabelling, as Prometheus lists it.
            let discovered = json!({
                "__address__": t.target.address,
                "__metrics_path__": t.job.metrics_path,
                "__scheme__": t.job.scheme,
                "job": t.job.name,
            });
            json!({
                "discoveredLabels": discovered,
                "labels": label_map(&s.labels),
                "scrapePool": s.job,
                "scrapeUrl": s.url,
                "globalUrl": s.url,
                "lastError": s.last_error.clone().unwrap_or_default(),
                "lastScrape": s.last_scrape_ms.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "lastScrapeDuration": s.last_duration_s,
                "health": s.health(),
            })
        })
        .collect();
    Json(json!({ "status": "success", "data": { "activeTargets": active, "droppedTargets": [] } }))
}

/// The deploy log, newest first: each change of an instance's version (or restart) with when
/// the collector saw it, and what every instance serves now.
async fn deploys(State(app): State<App>) -> Json<Value> {
    let log = app.collector.deploys();
    let deploys: Vec<Value> = log
        .entries()
        .rev()
        .map(|d| {
            json!({
                "job": d.job,
                "instance": d.instance,
                "time": rfc3339(d.at_ms),
                "change": d.change,
                "version": d.version,
                "previous": d.previous,
            })
        })
        .collect();
    Json(
        json!({ "status": "success", "data": { "deploys": deploys, "serving": log.serving_all(), "verdicts": app.collector.verdicts() } }),
    )
}

fn health(rule: &Rule) -> &'static str {
    match (&rule.health.last_eval_ms, &rule.health.last_error) {
        (None, _) => "unknown",
        (Some(_), Some(_)) => "err",
        (Some(_), None) => "ok",
    }
}

async fn rules(State(app): State<App>) -> Json<Value> {
    let mut groups = Vec::new();
    app.collector.for_each_group(|g| {
        let rules: Vec<Value> = g
            .rules
            .iter()
            .map(|r| {
                let mut v = json!({
                    "name": r.name(),
                    "health": health(r),
                    "lastError": r.health.last_error.clone().unwrap_or_default(),
                    "evaluationTime": r.health.last_duration_s,
                    "lastEvaluation": r.health.last_eval_ms.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                });
                match &r.kind {
                    Kind::Alerting(a) => {
                        v["type"] = "alerting".into();
                        v["query"] = a.expr_text.clone().into();
                        v["duration"] = a.for_duration.as_secs_f64().into();
                        v["keepFiringFor"] = a.keep_firing_for.as_secs_f64().into();
                        v["labels"] = pairs_map(&a.raw_labels);
                        v["annotations"] = pairs_map(&a.raw_annotations);
                        v["state"] = a.state().as_str().into();
                        v["alerts"] = live_alerts(r).into_iter().map(alert_json).collect();
                    }
                    Kind::Recording(rec) => {
                        v["type"] = "recording".into();
                        v["query"] = rec.expr_text.clone().into();
                        v["labels"] = pairs_map(&rec.labels);
                    }
                }
                v
            })
            .collect();
        groups.push(json!({
            "name": g.name,
            "file": g.file,
            "interval": g.interval.as_secs_f64(),
            "limit": 0,
            "rules": rules,
        }));
        });
    Json(json!({ "status": "success", "data": { "groups": groups } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(go_e(0.15), "1.5e-01");
        assert_eq!(go_e(1.0), "1e+00");
        assert_eq!(go_e(12345.0), "1.2345e+04");
    }
}
