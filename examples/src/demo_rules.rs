//! The demo's rules: `alerts/obs-red.rules.yml` with demo-speed durations (seconds, not
//! minutes) and nothing else changed, so the demo shows the real rules' behaviour in a minute.
//!
//! ```
//! let fast = obs_examples::demo_rules::demo_speed(obs_collector::config::DEFAULT_RULES);
//! assert!(fast.contains("[10s]") && !fast.contains("[1m]"));
//! ```

/// The replacements, in order: windows, `for` durations, the group interval, and the words of
/// the annotations that name them.
const REPLACEMENTS: [(&str, &str); 6] = [
    ("[1m]", "[10s]"),
    ("for: 2m", "for: 10s"),
    ("for: 1m", "for: 5s"),
    ("interval: 15s", "interval: 2s"),
    ("over the last minute", "over the last 10 seconds"),
    ("for 1 minute", "for 5 seconds"),
];

/// The collector's `route:` at demo speed: Alertmanager's 30 s wait and 5 min between updates
/// would not fit a one-minute demo.
const DEMO_ROUTE: &str = "route:\n  group_wait: 2s\n  group_interval: 4s\n";

/// The Slack headers of one full pass through the demo's incidents, in order: each alert
/// fires once and resolves once, for job `demo`.
pub const STORY_HEADERS: [&str; 4] = [
    "FIRING: HighErrorRate — demo",
    "RESOLVED: HighErrorRate — demo",
    "FIRING: HighLatencyP95 — demo",
    "RESOLVED: HighLatencyP95 — demo",
];

/// Where a demo collector's data comes from.
pub enum Source {
    /// It scrapes these `host:port`s every second as job `demo` (the instances of one
    /// service).
    Scrape(Vec<std::net::SocketAddr>),
    /// Remote mode: this Prometheus-compatible API evaluates the rules.
    Query(std::net::SocketAddr),
}

/// Writes a demo collector's files into `dir` (made if missing): `demo.rules.yml`, the shipped
/// rules at demo speed, and `collector.yml`, evaluating them every 2 s with the demo-speed
/// route over `source`; returns the configuration's path.
pub fn write_config(dir: &std::path::Path, source: Source) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("demo.rules.yml"),
        demo_speed(obs_collector::config::DEFAULT_RULES),
    )?;
    let source = match source {
        Source::Scrape(targets) => {
            let listed: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
            format!(
                "scrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: [{}]\n",
                listed.join(", ")
            )
        }
        Source::Query(api) => format!("query:\n  url: http://{api}\n"),
    };
    let config = dir.join("collector.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 2s\nrule_files: [demo.rules.yml]\n{source}{DEMO_ROUTE}"),
    )?;
    Ok(config)
}

/// A demo-speed collector (the `obs-collector` binary next to the running one) scraping
/// `targets` as job `demo`, with its files in a fresh temporary folder named by `tag`, and
/// `env` (`SLACK_WEBHOOK_URL`, say); returns it and the folder (the caller's to remove).
pub fn start_collector(
    tag: &str,
    targets: Vec<std::net::SocketAddr>,
    env: &[(&str, &str)],
) -> std::io::Result<(obs_testkit::process::CollectorProcess, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("obs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = write_config(&dir, Source::Scrape(targets))?;
    let bin = obs_testkit::process::sibling_binary("obs-collector");
    let collector =
        obs_testkit::process::CollectorProcess::start(&bin, &config, &dir.join("state.json"), env);
    Ok((collector, dir))
}

/// `rules` with demo-speed durations.
pub fn demo_speed(rules: &str) -> String {
    REPLACEMENTS
        .iter()
        .fold(rules.to_owned(), |text, (from, to)| text.replace(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_durations_change_and_the_rules_still_load() {
        let original = obs_collector::config::DEFAULT_RULES;
        let fast = demo_speed(original);
        for (from, _) in REPLACEMENTS {
            assert!(
                original.contains(from),
                "{from:?} no longer in the rule file: update the demo"
            );
            assert!(!fast.contains(from));
        }
        let groups = obs_collector::rules::load(
            "demo.rules.yml",
            &fast,
            std::time::Duration::from_secs(2),
            false,
        )
        .unwrap();
        assert_eq!(groups[0].interval, std::time::Duration::from_secs(2));
        // The same rules as shipped, in the same order.
        let shipped = obs_collector::rules::load(
            "obs-red.rules.yml",
            original,
            std::time::Duration::from_secs(15),
            false,
        )
        .unwrap();
        let names = |g: &obs_collector::rules::Group| -> Vec<String> {
            g.rules.iter().map(|r| r.name().to_owned()).collect()
        };
        assert_eq!(names(&groups[0]), names(&shipped[0]));
        assert_eq!(groups[0].rules.len(), 4);
        // Same expressions but for the windows.
        let strip = |t: &str| {
            t.lines()
                .filter(|l| l.contains("expr") || l.contains("sum by"))
                .map(|l| l.replace("[10s]", "[1m]"))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&fast), strip(original));
    }
}
