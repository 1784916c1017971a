//! The status page (`/`): what fires, what is silenced or inhibited, the targets, the
//! notifications and the silences, readable at 1280 px and on a phone.
//!
//! Words never break in the middle: names, states and times keep to one line, and only long
//! values (label values, URLs, errors), marked `wrap`, may break where they do not fit. Times
//! read as "2 min ago" with the exact time on hover. Each rule has an anchor (`#rule-<name>`),
//! the Dashboard link of messages when no Grafana is set.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Html;

use super::{escape_html, forms, health, live_alerts, App};
use crate::labels::Labels;
use crate::notify::{Outcome, Status};
use crate::rules::Kind;
use crate::silence::SilenceState;
use crate::time::rfc3339;

const STYLE: &str = "\
*{box-sizing:border-box}body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:80rem;padding:1rem;color:#1f2328}\
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}\
.summary{display:flex;flex-wrap:wrap;gap:.2rem .9rem;margin:0}.summary span{white-space:nowrap}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}\
th{font-weight:600;color:#57606a;white-space:nowrap}.nowrap,time,.badge,b.name{white-space:nowrap}\
.wrap{overflow-wrap:anywhere}code{font:12px ui-monospace,monospace;background:#f6f8fa;border-radius:4px;padding:0 .25em}\
.labels code{display:inline-block;margin:0 .2em .2em 0;max-width:100%;overflow-wrap:anywhere}\
.badge{display:inline-block;border-radius:1em;padding:0 .55em;font-size:12px;font-weight:600;background:#eaeef2;color:#57606a}\
.firing,.down,.failed{background:#ffebe9;color:#cf222e}.pending,.queued{background:#fff8c5;color:#9a6700}\
.inactive,.up,.ok,.delivered,.resolved{background:#dafbe1;color:#1a7f37}.silenced,.inhibited,.expired{background:#eaeef2;color:#57606a}\
.active{background:#ddf4ff;color:#0969da}\
.rule{border:1px solid #d0d7de;border-radius:6px;padding:.6rem .8rem;margin-bottom:.7rem}\
.rule header{display:flex;flex-wrap:wrap;gap:.2rem .6rem;align-items:baseline}.rule ul{margin:.4rem 0 0;padding-left:1.1rem}\
.rule li{margin-bottom:.3rem}.chart{margin-top:.4rem}svg{width:100%;max-width:320px;height:auto;display:block}\
.empty{color:#57606a;font-style:italic}small{color:#57606a}\
form.act{display:inline-flex;gap:.3rem;margin:0 0 0 .3rem;vertical-align:baseline}form.act button{font-size:12px;white-space:nowrap}\
:target{outline:2px solid #0969da}\
@media (max-width:640px){table,tbody,tr,td{display:block;width:100%}tr:first-child{display:none}\
tr{border-bottom:1px solid #d0d7de;padding:.4rem 0}td{border:0;padding:.1rem 0}\
td[data-label]::before{content:attr(data-label) \": \";font-weight:600;color:#57606a}}";

/// How long ago (or until) `t_ms` is at `now_ms`, in words.
///
/// ```
/// use obs_collector::web::status_page::ago;
/// assert_eq!(ago(100_000, 100_000), "just now");
/// assert_eq!(ago(100_000, 58_000), "42 s ago");
/// assert_eq!(ago(10_000_000, 10_000_000 - 125_000), "2 min ago");
/// assert_eq!(ago(0, 3 * 3_600_000 + 1), "in 3 h");
/// ```
pub fn ago(now_ms: i64, t_ms: i64) -> String {
    let d = (now_ms - t_ms).abs() / 1000;
    let text = match d {
        0..=4 => return "just now".into(),
        5..=59 => format!("{d} s"),
        60..=3599 => format!("{} min", d / 60),
        3600..=172_799 => format!("{} h", d / 3600),
        _ => format!("{} d", d / 86_400),
    };
    if t_ms > now_ms {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A `<time>` that reads as [`ago`] and shows the exact time on hover.
fn time(now_ms: i64, t_ms: i64) -> String {
    let exact = rfc3339(t_ms);
    format!(
        "<time datetime=\"{exact}\" title=\"{exact}\">{}</time>",
        ago(now_ms, t_ms)
    )
}

fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"badge {class}\">{}</span>", escape_html(text))
}

/// Label pairs as chips, each on one line where it fits.
fn labels(l: &Labels) -> String {
    let chips: String = l
        .iter()
        .map(|(k, v)| format!("<code>{}=\"{}\"</code>", escape_html(k), escape_html(v)))
        .collect();
    format!("<span class=labels>{chips}</span>")
}

pub(super) async fn page(State(app): State<App>) -> Html<String> {
    let collector = &app.collector;
    let now = collector.now_ms();
    let mutes = collector.mutes();
    let (mut firing, mut pending) = (0, 0);
    let mut rules = String::new();
    collector.for_each_group(|g| {
        for r in &g.rules {
            let Kind::Alerting(a) = &r.kind else { continue };
            let state = a.state().as_str();
            let mut alerts = String::new();
            for x in live_alerts(r) {
                match x.state.as_str() {
                    "firing" => firing += 1,
                    _ => pending += 1,
                }
                let muted = if !mutes.silenced_by(&x.labels).is_empty() {
                    badge("silenced", "silenced")
                } else if !mutes.inhibited_by(&x.labels).is_empty() {
                    badge("inhibited", "inhibited")
                } else {
                    forms::silence_buttons(&x.labels)
                };
                let example = match collector.examples_of(&x.labels).first() {
                    Some(id) => {
                        let id_html = format!("<code class=wrap>{}</code>", escape_html(id));
                        match collector.links().trace(id) {
                            Some(url) => format!(
                                " <span>example trace <a href=\"{}\">{id_html}</a></span>",
                                escape_html(&url)
                            ),
                            None => format!(" <span>example trace {id_html}</span>"),
                        }
                    }
                    None => String::new(),
                };
                let _ = write!(
                    alerts,
                    "<li>{} {} <span class=nowrap>= {}</span> <span class=nowrap>since {}</span>{example}{muted}</li>",
                    labels(&x.labels),
                    badge(x.state.as_str(), x.state.as_str()),
                    escape_html(&crate::rules::template::go_float(x.value)),
                    time(now, x.active_at),
                );
            }
            let health = match &r.health.last_error {
                Some(e) => format!(
                    "{} <small class=wrap>{}</small>",
                    badge("failed", "err"),
                    escape_html(e)
                ),
                None => badge(health(r), health(r)),
            };
            let _ = write!(
                rules,
                "<article class=rule id=\"rule-{name}\"><header><b class=name>{name}</b> {} {health} <small class=wrap>{}</small></header><div class=chart>{}</div>{}</article>",
                badge(state, state),
                escape_html(&a.expr_text),
                chart(&collector.chart(&g.name, &a.name), a.expr.threshold()),
                if alerts.is_empty() {
                    String::new()
                } else {
                    format!("<ul>{alerts}</ul>")
                },
                name = escape_html(&a.name),
            );
        }
        });
    let mut targets = String::new();
    let mut down = 0;
    let all_targets = collector.targets();
    for t in &all_targets {
        let s = &t.status;
        let health = s.health();
        down += usize::from(s.up == Some(false));
        // Unknown (not scraped yet) gets the plain badge.
        let state = badge(if s.up.is_some() { health } else { "" }, health);
        let _ = write!(
            targets,
            "<tr><td data-label=job class=nowrap>{}</td><td data-label=instance class=wrap title=\"{}\">{}</td><td data-label=state>{state}</td><td data-label=\"last scrape\">{}</td><td data-label=error class=wrap>{}</td></tr>",
            escape_html(&s.job),
            escape_html(&s.url),
            escape_html(s.labels.get("instance").unwrap_or_default()),
            s.last_scrape_ms.map_or_else(|| "never".into(), |t| time(now, t)),
            escape_html(s.last_error.as_deref().unwrap_or_default()),
        );
    }
    let mut notifications = String::new();
    {
        for e in &collector.recent_notifications(20) {
            let outcome = match &e.outcome {
                Outcome::Queued => format!(
                    "{} attempt {}{}",
                    badge("queued", "queued"),
                    e.attempts + 1,
                    e.last_error
                        .as_deref()
                        .map(|r| format!(
                            ", last error: <span class=wrap>{}</span>",
                            escape_html(r)
                        ))
                        .unwrap_or_default()
                ),
                Outcome::Delivered { at_ms } => {
                    format!("{} {}", badge("delivered", "delivered"), time(now, *at_ms))
                }
                Outcome::Failed { at_ms, reason } => format!(
                    "{} {}: <span class=wrap>{}</span>",
                    badge("failed", "failed"),
                    time(now, *at_ms),
                    escape_html(reason)
                ),
            };
            let status = match e.message.status {
                Status::Firing => "firing",
                Status::Resolved => "resolved",
            };
            let _ = write!(
                notifications,
                "<tr><td data-label=created>{}</td><td data-label=channel class=nowrap>{}</td><td data-label=message>{} <b class=name>{}</b> <span class=wrap>{}</span></td><td data-label=outcome>{outcome}</td></tr>",
                time(now, e.created_ms),
                escape_html(&e.channel),
                badge(status, status),
                escape_html(&e.message.alertname),
                escape_html(&e.message.job),
            );
        }
    }
    let mut silences = String::new();
    let mut active_silences = 0;
    for s in collector.silences().iter().rev() {
        let matchers: String = s
            .matchers
            .iter()
            .map(|m| format!("<code>{}</code>", escape_html(&m.to_string())))
            .collect();
        let silence_state = s.state(now);
        let state = silence_state.as_str();
        let expire = if silence_state == SilenceState::Expired {
            String::new()
        } else {
            if silence_state == SilenceState::Active {
                active_silences += 1;
            }
            format!(
                "<form class=act method=post action=/silences/expire><input type=hidden name=id value=\"{}\"><button>expire</button></form>",
                escape_html(&s.id)
            )
        };
        let _ = write!(
            silences,
            "<tr><td data-label=matchers><span class=labels>{matchers}</span></td><td data-label=state>{}{expire}</td><td data-label=from>{}</td><td data-label=until>{}</td><td data-label=by class=wrap>{}</td><td data-label=comment class=wrap>{}</td></tr>",
            badge(state, state),
            time(now, s.starts_ms),
            time(now, s.ends_ms),
            escape_html(&s.created_by),
            escape_html(&s.comment),
        );
    }
    let empty = |rows: &str, columns: usize, what: &str| {
        if rows.is_empty() {
            format!("<tr><td colspan={columns} class=empty>{what}</td></tr>")
        } else {
            rows.to_owned()
        }
    };
    let page = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=refresh content=10><title>obs-collector</title><style>{STYLE}</style></head><body>\
         <header><h1>obs-collector</h1><p class=summary><span>{firing} firing</span><span>{pending} pending</span>\
         <span>{down} of {} targets down</span><span>{active_silences} active silences</span></p></header>\
         <h2>Rules</h2>{rules}\
         <h2>Targets</h2><table><tr><th>job</th><th>instance</th><th>state</th><th>last scrape</th><th>error</th></tr>{}</table>\
         <h2>Notifications</h2><table><tr><th>created</th><th>channel</th><th>message</th><th>outcome</th></tr>{}</table>\
         <h2>Silences</h2><table><tr><th>matchers</th><th>state</th><th>from</th><th>until</th><th>by</th><th>comment</th></tr>{}</table>\
         </body></html>",
        all_targets.len(),
        empty(&targets, 5, "no targets (remote mode: the backend scrapes)"),
        empty(&notifications, 4, "nothing sent yet"),
        empty(&silences, 6, "no silences: silence an alert above, or with amtool"),
    );
    Html(page)
}

/// A small SVG line chart of `points` with the threshold as a dashed red line; until there are
/// two points, a line saying data is being collected.
pub(super) fn chart(points: &[(i64, f64)], threshold: Option<f64>) -> String {
    const W: f64 = 320.0;
    const H: f64 = 56.0;
    let values: Vec<f64> = points
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .chain(threshold)
        .collect();
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return "<small class=empty>collecting data: one point per evaluation</small>".into();
    };
    if points.len() < 2 {
        return "<small class=empty>collecting data: one point per evaluation</small>".into();
    }
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
    let mut svg = format!("<svg width={W} height={H} viewBox=\"0 0 {W} {H}\" role=img aria-label=\"value over the last hour\" style=\"background:#f6f8fa;border-radius:4px\">");
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
        "</svg><small class=nowrap>now {} · threshold {}</small>",
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
        assert!(chart(&[], None).contains("collecting data"));
        assert!(chart(&[(0, 1.0)], None).contains("collecting data"));
    }

    #[test]
    fn times_in_words() {
        assert_eq!(ago(0, -59_999), "59 s ago");
        assert_eq!(ago(0, -3_600_000), "1 h ago");
        assert_eq!(ago(0, -3 * 86_400_000), "3 d ago");
        assert_eq!(ago(0, 4 * 3_600_000), "in 4 h");
        assert!(time(0, 0).contains("title=\"1970-01-01T00:00:00"));
    }
}
