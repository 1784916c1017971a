//! The part of Alertmanager's API v2 that `amtool` uses for silences and alerts:
//! `GET/POST /api/v2/silences`, `GET/DELETE /api/v2/silence/{id}`, `GET /api/v2/alerts`, with
//! Alertmanager's shapes, so `amtool --alertmanager.url=http://collector:9465 silence add|query|
//! expire` and `amtool alert query` work unchanged. Bad input answers 400 with the reason and
//! changes nothing; an unknown silence is a 404.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{label_map, pairs_map, App};
use crate::rules::{Kind, State as AlertState};
use crate::silence::{self, Matcher, NewSilence, Refused, Silence};
use crate::time::{parse_rfc3339, rfc3339};

/// The largest request body read (a silence is a few hundred bytes; larger ones up to this
/// get the reason, `comment is ... bytes`, not a bare 413).
pub const BODY_MAX: usize = 256 * 1024;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(Value::String(message.to_string()))).into_response()
}

/// The status a refused silence change answers with.
pub(super) fn refused_status(e: &Refused) -> StatusCode {
    match e {
        Refused::Invalid(_) => StatusCode::BAD_REQUEST,
        Refused::NotFound(_) => StatusCode::NOT_FOUND,
    }
}

fn silence_json(s: &Silence, now: i64) -> Value {
    json!({
        "id": s.id,
        "status": { "state": s.state(now).as_str() },
        "updatedAt": rfc3339(s.updated_ms),
        "matchers": s.matchers,
        "startsAt": rfc3339(s.starts_ms),
        "endsAt": rfc3339(s.ends_ms),
        "createdBy": s.created_by,
        "comment": s.comment,
    })
}

/// The `filter` parameters of a query string (`?filter=a%3D%22b%22&filter=...`).
fn filters(query: Option<&str>) -> Result<Vec<Matcher>, silence::Invalid> {
    let pairs = query.map(url_pairs).unwrap_or_default();
    pairs
        .iter()
        .filter(|(k, _)| k == "filter")
        .map(|(_, v)| silence::parse_filter(v))
        .collect()
}

/// `application/x-www-form-urlencoded` pairs (a query string or a form body), decoded by
/// serde_urlencoded (what axum's `Query` uses); repeated keys such as `filter` are all kept.
pub(super) fn url_pairs(encoded: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(encoded).unwrap_or_default()
}

pub(super) async fn list_silences(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    let filter = match filters(query.as_deref()) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let now = app.collector.now_ms();
    let listed: Vec<Value> = app
        .collector
        .silences()
        .iter()
        .filter(|s| silence::passes_filter(s, &filter))
        .map(|s| silence_json(s, now))
        .collect();
    Json(Value::Array(listed)).into_response()
}

pub(super) async fn get_silence(State(app): State<App>, Path(id): Path<String>) -> Response {
    let now = app.collector.now_ms();
    match app.collector.silences().iter().find(|s| s.id == id) {
        Some(s) => Json(silence_json(s, now)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("silence {id} not found")),
    }
}

/// `PostableSilence`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Postable {
    id: Option<String>,
    matchers: Vec<Matcher>,
    starts_at: String,
    ends_at: String,
    created_by: String,
    comment: String,
}

pub(super) async fn post_silence(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let posted: Postable = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid silence: {e}")),
    };
    let time = |what: &str, text: &str| {
        parse_rfc3339(text).ok_or_else(|| format!("{what} {text:?} is not an RFC 3339 time"))
    };
    let (starts_ms, ends_ms) = match (
        time("startsAt", &posted.starts_at),
        time("endsAt", &posted.ends_at),
    ) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let new = NewSilence {
        id: posted.id.filter(|id| !id.is_empty()),
        matchers: posted.matchers,
        starts_ms,
        ends_ms,
        created_by: posted.created_by,
        comment: posted.comment,
    };
    match app.collector.upsert_silence(new).await {
        Ok(id) => Json(json!({ "silenceID": id })).into_response(),
        Err(e) => error(refused_status(&e), e),
    }
}

pub(super) async fn delete_silence(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.collector.expire_silence(&id).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error(refused_status(&e), e),
    }
}

/// `GettableAlerts`: the firing alerts, with the silences and alerts that mute them.
/// `active=false`, `silenced=false` and `inhibited=false` leave out unmuted, silenced and
/// inhibited alerts (`amtool alert query` shows muted ones with `--silenced`, `--inhibited`).
pub(super) async fn list_alerts(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    let filter = match filters(query.as_deref()) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let pairs = query.as_deref().map(url_pairs).unwrap_or_default();
    let flag = |name: &str| !pairs.iter().any(|(k, v)| k == name && v == "false");
    let (show_active, show_silenced, show_inhibited) =
        (flag("active"), flag("silenced"), flag("inhibited"));
    let mut alerts = Vec::new();
    let mutes = app.collector.mutes();
    app.collector.for_each_group(|g| {
        for r in &g.rules {
            let Kind::Alerting(a) = &r.kind else { continue };
            for alert in a.alerts().filter(|x| x.state == AlertState::Firing) {
                if !silence::matches_all(&filter, &alert.labels) {
                    continue;
                }
                let silenced_by = mutes.silenced_by(&alert.labels);
                let inhibited_by: Vec<String> = mutes
                    .inhibited_by(&alert.labels)
                    .iter()
                    .map(|source| format!("{:016x}", source.fingerprint()))
                    .collect();
                let shown = match (silenced_by.is_empty(), inhibited_by.is_empty()) {
                    (true, true) => show_active,
                    (false, _) => show_silenced,
                    (true, false) => show_inhibited,
                };
                if !shown {
                    continue;
                }
                let state = if silenced_by.is_empty() && inhibited_by.is_empty() {
                    "active"
                } else {
                    "suppressed"
                };
                alerts.push(json!({
                    "labels": label_map(&alert.labels),
                    "annotations": pairs_map(&alert.annotations),
                    "startsAt": rfc3339(alert.fired_at.unwrap_or(alert.active_at)),
                    "endsAt": rfc3339(app.collector.now_ms() + 4 * 60_000),
                    "updatedAt": rfc3339(app.collector.now_ms()),
                    "fingerprint": format!("{:016x}", alert.labels.fingerprint()),
                    "receivers": [{ "name": "obs-collector" }],
                    "status": { "state": state, "silencedBy": silenced_by, "inhibitedBy": inhibited_by },
                }));
            }
        }
        });
    Json(Value::Array(alerts)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_form_pairs_keep_repeated_keys_and_decode() {
        let pairs = url_pairs("filter=alertname%3D%22A%22&filter=job%3Dx+y&silenced=false&bare");
        let want = [
            ("filter", "alertname=\"A\""),
            ("filter", "job=x y"),
            ("silenced", "false"),
            ("bare", ""),
        ];
        let got: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want);
    }
}
