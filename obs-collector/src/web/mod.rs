//! HTTP: the status page, Prometheus-compatible `/api/v1/alerts` and `/api/v1/rules`, the
//! collector's own `/metrics`, and `/-/healthy`, `/-/ready`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

mod alertmanager_api;
mod forms;
pub mod runbook;

use crate::collector::Collector;
use crate::config::Secret;
use crate::labels::Labels;
use crate::notify::{Outcome, Status};
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
                let want = format!("Basic {}", base64(b.expose().as_bytes()));
                let given = headers
                    .get(header::AUTHORIZATION)
                    .map_or(&b""[..], |v| v.as_bytes());
                obs::http::constant_time_eq(given, want.as_bytes())
            })
    }
}

/// Standard base64 with padding (for the Basic credentials to compare against).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The router for `--listen`. With credentials in `access`, every page but the probes needs
/// them.
pub fn router(collector: Arc<Collector>, obs: Arc<obs::Obs>, access: Access) -> Router {
    let app = App {
        collector,
        obs,
        access: Arc::new(access),
    };
    let protected = Router::new()
        .route("/", get(status_page))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/rules", get(rules))
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

async fn metrics(State(app): State<App>) -> Response {
    (
        [(header::CONTENT_TYPE, obs::metrics::CONTENT_TYPE)],
        app.obs.metrics_text(),
    )
        .into_response()
}

async fn ready(State(app): State<App>) -> Response {
    if app.collector.ready.load(Ordering::SeqCst) {
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
    for g in &app.collector.groups {
        let g = g.lock().unwrap_or_else(PoisonError::into_inner);
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
    }
    Json(json!({ "status": "success", "data": { "alerts": all } }))
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
    for g in &app.collector.groups {
        let g = g.lock().unwrap_or_else(PoisonError::into_inner);
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
    }
    Json(json!({ "status": "success", "data": { "groups": groups } }))
}

/// Escapes text for HTML content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn status_page(State(app): State<App>) -> Html<String> {
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=utf-8><meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=refresh content=5><title>obs-collector</title><style>\
         body{font:14px system-ui,sans-serif;margin:1rem;max-width:70rem}table{border-collapse:collapse;width:100%;margin-bottom:1.5rem}\
         td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
         svg{width:100%;max-width:240px;height:auto}\
         @media (max-width:640px){table,tbody,tr,td{display:block;width:100%}tr:first-child{display:none}\
         tr{border-bottom:1px solid #ddd;padding:.4rem 0}td{border:0;padding:.1rem 0}\
         td[data-label]::before{content:attr(data-label) \": \";font-weight:600;color:#57606a}}\
         .up,.inactive,.resolved{color:#1a7f37}.down,.firing{color:#cf222e;font-weight:bold}.pending{color:#9a6700}form.act{display:inline;margin:0}form.act button{font-size:.8em;margin-left:.3em}</style></head><body>\
         <h1>obs-collector</h1><h2>Targets</h2><table><tr><th>job</th><th>instance</th><th>state</th><th>last scrape</th><th>error</th></tr>",
    );
    for t in &app.collector.targets {
        let s = t
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let state = match s.up {
            Some(true) => "<span class=up>up</span>",
            Some(false) => "<span class=down>down</span>",
            None => "unknown",
        };
        let _ =
            write!(
            page,
            "<tr><td data-label=job>{}</td><td data-label=instance title=\"{}\">{}</td><td data-label=state>{state}</td><td data-label=\"last scrape\">{}</td><td data-label=error>{}</td></tr>",
            escape_html(&s.job),
            escape_html(&s.url),
            escape_html(s.labels.get("instance").unwrap_or_default()),
            s.last_scrape_ms.map(rfc3339).unwrap_or_else(|| "never".into()),
            escape_html(s.last_error.as_deref().unwrap_or_default()),
        );
    }
    page.push_str("</table><h2>Rules</h2><table><tr><th>rule</th><th>state</th><th>value vs threshold (last hour)</th><th>alerts (value, since)</th><th>health</th></tr>");
    let mutes = app.collector.mutes();
    for g in &app.collector.groups {
        let g = g.lock().unwrap_or_else(PoisonError::into_inner);
        for r in &g.rules {
            let Kind::Alerting(a) = &r.kind else { continue };
            let state = a.state().as_str();
            let alerts: Vec<String> = live_alerts(r)
                .iter()
                .map(|x| {
                    let silenced = if !mutes.silenced_by(&x.labels).is_empty() {
                        " <i class=silenced>silenced</i>".to_owned()
                    } else if !mutes.inhibited_by(&x.labels).is_empty() {
                        " <i class=inhibited>inhibited</i>".to_owned()
                    } else {
                        forms::silence_buttons(&x.labels)
                    };
                    format!(
                        "{} <b>{}</b>{silenced} = {} since {}",
                        escape_html(&x.labels.to_string()),
                        x.state.as_str(),
                        escape_html(&crate::rules::template::go_float(x.value)),
                        rfc3339(x.active_at)
                    )
                })
                .collect();
            let _ = write!(
                page,
                "<tr id=\"rule-{}\"><td data-label=rule><b>{}</b></td><td data-label=state class={state}>{state}</td><td data-label=value>{}</td><td data-label=alerts>{}</td><td data-label=health>{}</td></tr>",
                escape_html(&a.name),
                escape_html(&a.name),
                chart(&app.collector.history.points(&g.name, &a.name), a.expr.threshold()),
                alerts.join("<br>"),
                escape_html(r.health.last_error.as_deref().unwrap_or(health(r))),
            );
        }
    }
    page.push_str("</table><h2>Notifications</h2><table><tr><th>created</th><th>channel</th><th>message</th><th>outcome</th></tr>");
    let log = app
        .collector
        .log
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for e in log.entries.iter().rev().take(20) {
        let outcome = match &e.outcome {
            Outcome::Queued => format!(
                "queued (attempt {}{})",
                e.attempts + 1,
                e.last_error
                    .as_deref()
                    .map(|r| format!(", last error: {r}"))
                    .unwrap_or_default()
            ),
            Outcome::Delivered { at_ms } => format!("delivered {}", rfc3339(*at_ms)),
            Outcome::Failed { at_ms, reason } => format!("failed {}: {reason}", rfc3339(*at_ms)),
        };
        let status = match e.message.status {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        };
        let _ = write!(
            page,
            "<tr><td data-label=created>{}</td><td data-label=channel>{}</td><td data-label=message class={status}>{status} {}</td><td data-label=outcome>{}</td></tr>",
            rfc3339(e.created_ms),
            escape_html(&e.channel),
            escape_html(&e.group),
            escape_html(&outcome),
        );
    }
    page.push_str("</table><h2>Silences</h2><table><tr><th>matchers</th><th>state</th><th>from</th><th>until</th><th>by</th><th>comment</th></tr>");
    let now = app.collector.now_ms();
    for s in app.collector.silences().iter().rev() {
        let matchers: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
        let silence_state = s.state(now);
        let state = silence_state.as_str();
        let expire = if silence_state == crate::silence::SilenceState::Expired {
            String::new()
        } else {
            format!(
                " <form class=act method=post action=/silences/expire><input type=hidden name=id value=\"{}\"><button>expire</button></form>",
                escape_html(&s.id)
            )
        };
        let _ = write!(
            page,
            "<tr><td data-label=matchers>{}</td><td data-label=state class={state}>{state}{expire}</td><td data-label=from>{}</td><td data-label=until>{}</td><td data-label=by>{}</td><td data-label=comment>{}</td></tr>",
            escape_html(&matchers.join(", ")),
            rfc3339(s.starts_ms),
            rfc3339(s.ends_ms),
            escape_html(&s.created_by),
            escape_html(&s.comment),
        );
    }
    page.push_str("</table></body></html>");
    Html(page)
}

/// A small SVG line chart of `points` with the threshold as a dashed red line.
fn chart(points: &[(i64, f64)], threshold: Option<f64>) -> String {
    const W: f64 = 240.0;
    const H: f64 = 48.0;
    let values: Vec<f64> = points
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .chain(threshold)
        .collect();
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return "<span>no evaluations yet</span>".into();
    };
    let lo = values.iter().copied().fold(0.0f64, f64::min);
    let hi = values
        .iter()
        .copied()
        .fold(f64::MIN, f64::max)
        .max(lo + f64::EPSILON)
        * 1.1;
    let span_t = (last.0 - first.0).max(1) as f64;
    let x = |t: i64| (t - first.0) as f64 / span_t * W;
    let y = |v: f64| H - (v - lo) / (hi - lo) * H;
    let mut svg = format!("<svg width={W} height={H} viewBox=\"0 0 {W} {H}\" role=img aria-label=\"value chart\" style=\"background:#f6f8fa\">");
    // Gaps (no value) split the line into segments.
    let mut segment = Vec::new();
    let flush = |segment: &mut Vec<String>, svg: &mut String| {
        if !segment.is_empty() {
            let _ = write!(
                svg,
                "<polyline fill=none stroke=#0969da stroke-width=1.5 points=\"{}\"/>",
                segment.join(" ")
            );
            segment.clear();
        }
    };
    for &(t, v) in points {
        if v.is_finite() {
            segment.push(format!("{:.1},{:.1}", x(t), y(v)));
        } else {
            flush(&mut segment, &mut svg);
        }
    }
    flush(&mut segment, &mut svg);
    if let Some(th) = threshold {
        let _ = write!(
            svg,
            "<line x1=0 x2={W} y1={0:.1} y2={0:.1} stroke=#cf222e stroke-dasharray=4 />",
            y(th)
        );
    }
    let latest = points
        .iter()
        .rev()
        .find(|p| p.1.is_finite())
        .map(|p| crate::rules::template::go_g(p.1, 4));
    let _ = write!(
        svg,
        "</svg><br><small>now {} · threshold {}</small>",
        latest.unwrap_or_else(|| "-".into()),
        threshold
            .map(|t| crate::rules::template::go_g(t, 4))
            .unwrap_or_else(|| "-".into())
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("user:pa ss", "dXNlcjpwYSBzcw=="),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }

    #[test]
    fn formats() {
        assert_eq!(go_e(0.15), "1.5e-01");
        assert_eq!(go_e(1.0), "1e+00");
        assert_eq!(go_e(12345.0), "1.2345e+04");
        assert_eq!(
            escape_html("<script>\"&'"),
            "&lt;script&gt;&quot;&amp;&#39;"
        );
    }

    #[test]
    fn chart_draws_gaps_and_the_threshold() {
        let points = [(0, 0.01), (15_000, 0.02), (30_000, f64::NAN), (45_000, 0.2)];
        let svg = chart(&points, Some(0.05));
        assert_eq!(
            svg.matches("<polyline").count(),
            2,
            "the gap splits the line: {svg}"
        );
        assert!(
            svg.contains("stroke-dasharray") && svg.contains("now 0.2 · threshold 0.05"),
            "{svg}"
        );
        assert!(chart(&[], None).contains("no evaluations"));
    }
}
