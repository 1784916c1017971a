//! The console notifier: one readable line per message on stderr (stdout carries the JSON
//! logs), used when no webhook is configured.

use std::io::Write;

use super::{Entry, Message, Notifier, SendError, Status};

pub struct Console;

/// The line printed for `m`.
pub fn line(m: &Message) -> String {
    let mut s = match m.status {
        Status::Firing => format!("🔥 FIRING   {} [{}]", m.alertname, m.job),
        Status::Resolved => format!("✅ RESOLVED {} [{}]", m.alertname, m.job),
        Status::Notice => {
            let title = m.summary.as_deref().unwrap_or(&m.alertname);
            let mut s = format!("ℹ️  NOTICE   {title}");
            for line in &m.lines {
                s.push_str(" | ");
                s.push_str(line);
            }
            if let Some(url) = &m.dashboard_url {
                s.push_str(&format!(" ({url})"));
            }
            return s.chars().filter(|c| !c.is_control()).collect();
        }
    };
    if m.status == Status::Firing {
        s.push_str(&format!(" value {}", m.value_text));
        if let Some(th) = &m.threshold_text {
            s.push_str(&format!(" > {th}"));
        }
        s.push_str(&format!(" since {}", m.since_text));
        if let Some(d) = &m.description {
            s.push_str(&format!(" — {d}"));
        }
        if !m.resolved.is_empty() {
            s.push_str(&format!(" ({} resolved)", m.resolved.len()));
        }
        if let Some(id) = m.example_traces.first() {
            s.push_str(&format!(" example trace {id}"));
        }
        if let Some(deploy) = &m.deploy {
            s.push_str(&format!(" deploy: {deploy}"));
        }
        for (name, part) in super::context_parts(m) {
            s.push_str(&format!(" {name}: {part}"));
        }
        let links: Vec<String> = [
            ("runbook", &m.runbook_url),
            ("dashboard", &m.dashboard_url),
            ("silence", &m.silence_url),
            ("trace", &m.trace_url),
        ]
        .into_iter()
        .filter_map(|(name, url)| Some(format!("{name}: {}", url.as_ref()?)))
        .collect();
        if !links.is_empty() {
            s.push_str(&format!(" ({})", links.join(", ")));
        }
    } else {
        s.push_str(&format!(" at {}", m.since_text));
        if let Some(ms) = m.fired_for_ms {
            s.push_str(&format!(" after firing for {}", super::duration_text(ms)));
        }
        if let Some(peak) = &m.peak_text {
            s.push_str(&format!(" (peak {peak})"));
        }
        if let Some(deploy) = &m.deploy {
            s.push_str(&format!(" deploy: {deploy}"));
        }
        for (name, part) in super::context_parts(m) {
            s.push_str(&format!(" {name}: {part}"));
        }
    }
    s.chars().filter(|c| !c.is_control()).collect()
}

impl Notifier for Console {
    fn name(&self) -> &'static str {
        "console"
    }
    async fn send(&self, entry: &Entry) -> Result<(), SendError> {
        let mut err = std::io::stderr().lock();
        writeln!(err, "{}", line(&entry.message)).map_err(|e| SendError::Retry {
            reason: e.to_string(),
            after: None,
        })
    }
}
