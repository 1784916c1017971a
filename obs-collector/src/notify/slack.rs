//! The Slack incoming-webhook notifier: Block Kit in a coloured attachment, the runbook,
//! dashboard and silence links as buttons, with a plain-text fallback.
//!
//! Limits enforced on every message (Slack rejects larger ones): header 150 characters,
//! section text 3000, section fields 2000 and at most 10, at most 50 blocks. User-controlled
//! text is escaped for mrkdwn (`&`, `<`, `>`), so a label value such as `<!channel>` cannot
//! ping anyone or break a link.

use std::time::Duration;

use serde_json::{json, Value};

use super::{Entry, Message, Notifier, SendError, Status};
use crate::config::Secret;

pub const HEADER_MAX: usize = 150;
pub const SECTION_MAX: usize = 3000;
pub const FIELD_MAX: usize = 2000;
pub const BLOCKS_MAX: usize = 50;
/// Alerts listed one by one before "... and N more".
const ALERTS_LISTED: usize = 10;
const TIMEOUT: Duration = Duration::from_secs(10);
/// A button's URL at most (Slack's limit).
pub const URL_MAX: usize = 3000;
/// The attachment's bar: red while firing, green once resolved.
pub const FIRING_COLOUR: &str = "#d1242f";
pub const RESOLVED_COLOUR: &str = "#1a7f37";
/// A notice's bar: informational blue, not a page.
pub const NOTICE_COLOUR: &str = "#0969da";
/// At most one message per second (Slack's webhook limit).
pub const MIN_SPACING: Duration = Duration::from_secs(1);

/// Posts to one incoming webhook.
pub struct Slack {
    webhook: Secret,
    client: reqwest::Client,
}

impl Slack {
    pub fn new(webhook: Secret, client: reqwest::Client) -> Self {
        Self { webhook, client }
    }
}

/// `&`, `<`, `>` escaped as Slack requires; control characters dropped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() && c != '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    crate::text::cut(s, max).into_owned()
}

/// A label value inside inline code (no formatting applies there); backticks replaced.
/// Text for a `plain_text` object (the header): Slack does not unescape entities there, so `<`
/// and `>` become look-alikes that can never form a mention (`<@U123>`) or a broadcast.
fn plain(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .map(|c| match c {
            '<' => '‹',
            '>' => '›',
            c => c,
        })
        .collect()
}

fn code(s: &str) -> String {
    format!("`{}`", escape(s).replace('`', "ʼ"))
}

/// The message's link buttons: Runbook, Dashboard and, while it fires, Silence 1h and an
/// example trace; only links a browser opens, short enough for a button.
fn links(m: &Message) -> Vec<(&'static str, &str)> {
    let silence = m
        .silence_url
        .as_ref()
        .filter(|_| m.status == Status::Firing);
    [
        ("Runbook", m.runbook_url.as_ref()),
        ("Dashboard", m.dashboard_url.as_ref()),
        ("Silence 1h", silence),
        ("Example trace", m.trace_url.as_ref()),
    ]
    .into_iter()
    .filter_map(|(name, url)| Some((name, url?.as_str())))
    .filter(|(_, url)| url.starts_with("http") && url.chars().count() <= URL_MAX)
    .collect()
}

/// The plain-text message (also the fallback when blocks are refused), its links last.
pub fn text(m: &Message) -> String {
    let head = match m.status {
        Status::Firing => "FIRING",
        Status::Resolved => "RESOLVED",
        Status::Notice => return notice_text(m),
    };
    let mut t = format!("[{head}] {} — {}", m.alertname, m.job);
    if let Some(d) = &m.description {
        t.push_str(": ");
        t.push_str(d);
    }
    if m.status == Status::Firing {
        t.push_str(&format!(" (value {}", m.value_text));
        if let Some(th) = &m.threshold_text {
            t.push_str(&format!(", threshold {th}"));
        }
        t.push(')');
        if !m.resolved.is_empty() {
            t.push_str(&format!(" ({} resolved)", m.resolved.len()));
        }
        if let Some(id) = m.example_traces.first() {
            t.push_str(&format!(" (example trace {id})"));
        }
    } else if let Some(ms) = m.fired_for_ms {
        t.push_str(&format!(" (fired for {})", super::duration_text(ms)));
    }
    if let Some(peak) = &m.peak_text {
        t.push_str(&format!(" (peak {peak})"));
    }
    if let Some(deploy) = &m.deploy {
        t.push_str(&format!(" (deploy: {deploy})"));
    }
    for (name, part) in super::context_parts(m) {
        t.push_str(&format!(" ({name}: {part})"));
    }
    let links: String = links(m)
        .iter()
        .map(|(name, url)| format!(" <{}|{name}>", escape(url)))
        .collect();
    let room = SECTION_MAX - links.chars().count();
    truncate(&escape(&t), room) + &links
}

/// One line per alert, its labels as code, at most [`ALERTS_LISTED`].
fn alert_list(title: &str, alerts: &[super::AlertInfo]) -> String {
    let mut listed = format!("*{title}*");
    for a in alerts.iter().take(ALERTS_LISTED) {
        listed.push('\n');
        let labels: Vec<String> = a
            .labels
            .iter()
            .map(|(k, v)| code(&format!("{k}={v}")))
            .collect();
        listed.push_str(&labels.join(" "));
    }
    if alerts.len() > ALERTS_LISTED {
        listed.push_str(&format!("\n… and {} more", alerts.len() - ALERTS_LISTED));
    }
    truncate(&listed, SECTION_MAX)
}

/// The Block Kit payload: the blocks inside one attachment, for the colour bar (red firing,
/// green resolved), the links as buttons.
pub fn payload(m: &Message) -> Value {
    let (emoji, head, colour) = match m.status {
        Status::Firing => (":rotating_light:", "FIRING", FIRING_COLOUR),
        Status::Resolved => (":white_check_mark:", "RESOLVED", RESOLVED_COLOUR),
        Status::Notice => return notice_payload(m),
    };
    let header = truncate(
        &plain(&format!("{head}: {} — {}", m.alertname, m.job)),
        HEADER_MAX,
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}}),
    ];
    let mut summary = format!(
        "{emoji} *{}*",
        escape(m.summary.as_deref().unwrap_or(&m.alertname))
    );
    if let Some(d) = &m.description {
        summary.push('\n');
        summary.push_str(&escape(d));
    }
    blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&summary, SECTION_MAX)}}));
    let mut fields = Vec::new();
    let value = match &m.threshold_text {
        Some(th) => format!(
            "*Value*\n{} (threshold {})",
            escape(&m.value_text),
            escape(th)
        ),
        None => format!("*Value*\n{}", escape(&m.value_text)),
    };
    fields.push(value);
    let since_label = if m.status == Status::Firing {
        "Since"
    } else {
        "Resolved"
    };
    fields.push(format!(
        "*{since_label}*\n<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        m.since_ms / 1000,
        escape(&m.since_text)
    ));
    if let Some(ms) = m.fired_for_ms {
        fields.push(format!("*Fired for*\n{}", super::duration_text(ms)));
    }
    if let Some(peak) = &m.peak_text {
        fields.push(format!("*Peak*\n{}", escape(peak)));
    }
    if let Some(i) = &m.incident {
        match (m.status, &i.value) {
            (Status::Resolved, Some(now)) => {
                fields.push(format!("*Now*\n{} over {}", escape(now), escape(&i.window)));
            }
            (Status::Firing, _) if !i.window.is_empty() => {
                fields.push(format!("*Window*\n{}", escape(&i.window)));
            }
            _ => {}
        }
    }
    if let Some(sev) = &m.severity {
        fields.push(format!("*Severity*\n{}", escape(sev)));
    }
    if let Some(id) = m.example_traces.first() {
        fields.push(format!("*Example trace*\n{}", code(id)));
    }
    fields.push(format!("*Alerts*\n{}", m.alerts.len()));
    if !m.resolved.is_empty() {
        fields.push(format!("*Resolved*\n{}", m.resolved.len()));
    }
    let fields: Vec<Value> = fields
        .into_iter()
        .map(|f| json!({"type": "mrkdwn", "text": truncate(&f, FIELD_MAX)}))
        .collect();
    blocks.push(json!({"type": "section", "fields": fields}));
    let mut section = |title: &str, body: &str| {
        let text = truncate(&format!("*{title}*\n{body}"), SECTION_MAX);
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
    };
    if let Some(i) = m.incident.as_ref().filter(|_| m.status == Status::Firing) {
        if !i.routes.is_empty() {
            let lines: Vec<String> = i
                .routes
                .iter()
                .map(|r| format!("• {}", escape(r)))
                .collect();
            section("Routes", &lines.join("\n"));
        }
        if let Some(v) = &i.by_version {
            section("By version", &escape(v));
        }
    }
    if let Some(deploy) = &m.deploy {
        section("Deploy", &escape(deploy));
    }
    if let Some(change) = m.incident.as_ref().and_then(|i| i.change.as_ref()) {
        section("Fix", &escape(change));
    }
    if !m.alerts.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": alert_list("Labels", &m.alerts)}}));
    }
    if !m.resolved.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": alert_list("Resolved", &m.resolved)}}));
    }
    let buttons: Vec<Value> = links(m)
        .into_iter()
        .map(|(name, url)| json!({"type": "button", "text": {"type": "plain_text", "text": name}, "url": url}))
        .collect();
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    blocks.truncate(BLOCKS_MAX);
    json!({"text": text(m), "attachments": [{"color": colour, "blocks": blocks}]})
}

/// A notice as plain text: its title, then its lines, then its link.
fn notice_text(m: &Message) -> String {
    let title = m.summary.as_deref().unwrap_or(&m.alertname);
    let link = links(m)
        .first()
        .map(|(name, url)| format!(" <{}|{name}>", escape(url)))
        .unwrap_or_default();
    let body = std::iter::once(title)
        .chain(m.lines.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("\n");
    truncate(&escape(&body), SECTION_MAX - link.chars().count()) + &link
}

/// A notice as Block Kit: its title as the header, its lines in sections of at most
/// [`SECTION_MAX`] characters (at most [`BLOCKS_MAX`] blocks in all), its link as a button, in
/// an informational colour.
fn notice_payload(m: &Message) -> Value {
    let title = m.summary.as_deref().unwrap_or(&m.alertname);
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&plain(title), HEADER_MAX), "emoji": true}}),
    ];
    let mut section = String::new();
    let mut sections = Vec::new();
    for line in &m.lines {
        let line = truncate(&escape(line), SECTION_MAX);
        if !section.is_empty() && section.chars().count() + 1 + line.chars().count() > SECTION_MAX {
            sections.push(std::mem::take(&mut section));
        }
        if !section.is_empty() {
            section.push('\n');
        }
        section.push_str(&line);
    }
    if !section.is_empty() {
        sections.push(section);
    }
    for text in sections {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
    }
    let buttons: Vec<Value> = links(m)
        .into_iter()
        .map(|(name, url)| json!({"type": "button", "text": {"type": "plain_text", "text": name}, "url": url}))
        .collect();
    // The button stays when the lines fill the message.
    blocks.truncate(BLOCKS_MAX - usize::from(!buttons.is_empty()));
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    json!({"text": notice_text(m), "attachments": [{"color": NOTICE_COLOUR, "blocks": blocks}]})
}

impl Notifier for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn min_spacing(&self) -> Duration {
        MIN_SPACING
    }

    async fn send(&self, entry: &Entry) -> Result<(), SendError> {
        let m = &entry.message;
        let body = if entry.plain_text {
            json!({ "text": text(m) })
        } else {
            payload(m)
        };
        let response = self
            .client
            .post(self.webhook.expose())
            .timeout(TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(super::transport)?;
        let reply = super::Reply::read(response).await;
        if reply.status == 400 && !entry.plain_text {
            return Err(SendError::RejectedBlocks(format!(
                "HTTP 400: {}",
                reply.reason
            )));
        }
        reply.outcome()
    }
}
