//! `/alerts/RUNBOOK.md`: the shipped runbook, rendered, one anchor per alert (GitHub's: the
//! heading in lower case, spaces as `-`), so that the rules' relative `runbook_url`
//! (`RUNBOOK.md#higherrorrate`) opens on the collector itself as on a Git host's copy.

use axum::response::Html;
use pulldown_cmark::{Event, Parser, Tag, TagEnd};

/// The runbook shipped next to the default rules.
pub const RUNBOOK: &str = include_str!("../../../alerts/RUNBOOK.md");

/// GitHub's anchor of a heading: lower case, spaces as `-`, other punctuation dropped.
///
/// ```
/// assert_eq!(obs_collector::web::runbook::anchor("HighLatencyP95"), "highlatencyp95");
/// assert_eq!(obs_collector::web::runbook::anchor("Runbook for obs' alerts"), "runbook-for-obs-alerts");
/// ```
pub fn anchor(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// `markdown` as HTML, each heading with its [`anchor`] as id.
pub fn render(markdown: &str) -> String {
    let mut events: Vec<Event> = Parser::new(markdown).collect();
    for i in 0..events.len() {
        if !matches!(events[i], Event::Start(Tag::Heading { .. })) {
            continue;
        }
        let text: String = events[i + 1..]
            .iter()
            .take_while(|e| !matches!(e, Event::End(TagEnd::Heading(_))))
            .filter_map(|e| match e {
                Event::Text(t) | Event::Code(t) => Some(t.as_ref()),
                _ => None,
            })
            .collect();
        if let Event::Start(Tag::Heading { id, .. }) = &mut events[i] {
            *id = Some(anchor(&text).into());
        }
    }
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    html
}

pub async fn page() -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>Runbook · obs-collector</title><style>body{{font:15px/1.5 system-ui,sans-serif;margin:1rem auto;max-width:46rem;padding:0 1rem}}\
         code{{background:#f3f4f6;padding:0 .2em;border-radius:3px}}h2{{border-top:1px solid #ddd;padding-top:1rem}}:target{{background:#fff8c5}}</style></head>\
         <body><p><a href=\"/\">← status page</a></p>{}</body></html>",
        render(RUNBOOK)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_rule_has_its_anchor() {
        let html = render(RUNBOOK);
        for rules in [
            crate::config::DEFAULT_RULES,
            include_str!("../../../alerts/obs-slo.rules.yml"),
        ] {
            for line in rules.lines().filter(|l| l.contains("runbook_url:")) {
                let fragment = line
                    .split('#')
                    .nth(1)
                    .expect("a runbook_url with an anchor");
                assert!(
                    html.contains(&format!("id=\"{fragment}\"")),
                    "{fragment} is not an anchor of the runbook"
                );
            }
        }
        assert!(
            html.contains("<h2 id=\"higherrorrate\">HighErrorRate</h2>"),
            "{html}"
        );
    }
}
