//! The status page's forms: an alert's "silence 1h / 4h / 24h" and a silence's "expire"
//! (posted to `/silences/new` and `/silences/expire`, from this site only), and the page a
//! message's "Silence 1h" link opens (`GET /silences/new?label.alertname=...&for=1h`): the same
//! form, filled in, for a person to confirm (a link must not change anything by itself).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::{alertmanager_api, App};
use crate::labels::Labels;

/// The silence lengths the forms offer, with their hours.
const LENGTHS: [(&str, i64); 3] = [("1h", 1), ("4h", 4), ("24h", 24)];

/// The labels a silence form carries, as hidden `label.<name>` fields.
fn hidden_labels(labels: &Labels) -> Markup {
    html! {
        @for (k, v) in labels.iter() {
            input type="hidden" name={ "label." (k) } value=(v);
        }
    }
}

/// The "silence 1h / 4h / 24h" form of one alert: a silence matching all its labels.
pub(super) fn silence_buttons(labels: &Labels) -> Markup {
    html! {
        " "
        form.act method="post" action="/silences/new" {
            (hidden_labels(labels))
            @for (d, _) in LENGTHS { button name="for" value=(d) { "silence " (d) } }
        }
    }
}

/// Whether a form post comes from this site (a cross-site page must not create or expire
/// silences with the browser's credentials).
fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if get("sec-fetch-site").is_some_and(|s| s != "same-origin" && s != "none") {
        return false;
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host)
        }
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// Back to the status page after a form (303: the browser loads it with GET).
fn see_status_page() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response()
}

/// `POST /silences/new` (fields `label.<name>`, `for`) and `/silences/expire` (field `id`).
pub(super) async fn silence_form(
    State(app): State<App>,
    axum::extract::Path(action): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-site form\n").into_response();
    }
    let fields = alertmanager_api::url_pairs(&String::from_utf8_lossy(&body));
    let done = match action.as_str() {
        "new" => create_from_form(&app, &fields).await,
        "expire" => match fields.iter().find(|(k, _)| k == "id") {
            Some((_, id)) => app.collector.expire_silence(id).await,
            None => Err(crate::silence::Invalid("id is required".into()).into()),
        },
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match done {
        Ok(()) => see_status_page(),
        Err(e) => (alertmanager_api::refused_status(&e), format!("{e}\n")).into_response(),
    }
}

/// A silence of all the labels the form carries (`label.<name>`), for `for` (1h, 4h, 24h).
async fn create_from_form(
    app: &App,
    fields: &[(String, String)],
) -> Result<(), crate::silence::Refused> {
    let matchers: Vec<crate::silence::Matcher> = fields
        .iter()
        .filter_map(|(k, v)| {
            Some(crate::silence::Matcher {
                name: k.strip_prefix("label.")?.to_owned(),
                value: v.clone(),
                is_regex: false,
                is_equal: true,
            })
        })
        .collect();
    let chosen = fields
        .iter()
        .find(|(k, _)| k == "for")
        .map(|(_, v)| v.as_str());
    let Some((_, hours)) = LENGTHS.iter().find(|(name, _)| Some(*name) == chosen) else {
        return Err(crate::silence::Invalid("for: 1h, 4h or 24h".into()).into());
    };
    let now = app.collector.now_ms();
    let new = crate::silence::NewSilence {
        id: None,
        matchers,
        starts_ms: now,
        ends_ms: now + hours * 3_600_000,
        created_by: "status page".into(),
        comment: format!("silenced for {hours}h from the status page"),
    };
    app.collector.upsert_silence(new).await.map(|_| ())
}

/// `GET /silences/new`: the silence form filled in from the query (`label.<name>=value`,
/// `for=1h|4h|24h`), to be confirmed with a click; nothing changes until it is posted.
pub(super) async fn confirm_page(
    axum::extract::Path(action): axum::extract::Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    if action != "new" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let fields = alertmanager_api::url_pairs(query.as_deref().unwrap_or_default());
    let labels = Labels::new(
        fields
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("label.")?.to_owned(), v.clone())))
            .collect(),
    );
    if labels.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "no label.<name>=<value> in the query: nothing to silence\n",
        )
            .into_response();
    }
    let chosen = fields
        .iter()
        .find(|(k, _)| k == "for")
        .map_or("1h", |(_, v)| v.as_str());
    let page = html! {
        (DOCTYPE)
        html {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Silence · obs-collector" }
                style { (PreEscaped(CONFIRM_STYLE)) }
            }
            body {
                p { a href="/" { "← status page" } }
                h1 { "Silence these alerts?" }
                p { "Matching every alert with" }
                ul { @for (k, v) in labels.iter() { li { code { (k) "=\"" (v) "\"" } } } }
                form #silence method="post" action="/silences/new" {
                    (hidden_labels(&labels))
                    @for (d, _) in LENGTHS {
                        @if d == chosen {
                            button name="for" value=(d) class="chosen" autofocus { "Silence for " (d) }
                        } @else {
                            button name="for" value=(d) { "Silence for " (d) }
                        }
                    }
                }
                p { "Silenced alerts send nothing until the silence ends or is expired on the status page." }
            }
        }
    };
    Html(page.into_string()).into_response()
}

const CONFIRM_STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:1rem auto;max-width:40rem;padding:0 1rem}\
code{background:#f3f4f6;padding:0 .2em;border-radius:3px}button{font-size:1em;margin-right:.5em;padding:.3em .8em}\
button.chosen{font-weight:bold}";
