//! Persistence of alert state: written atomically (temporary file, fsync, rename) after every
//! evaluation, read at start. A restart (even `kill -9`) keeps each alert's `ActiveAt`, so a
//! `for` timer is neither reset nor restarted (Prometheus itself skips this for `for` < 10m).

mod persister;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::changes::verdict::Verdicts;
use crate::deploys::DeployLog;
use crate::notify::Log;
use crate::rules::{Alert, Group, Kind};
use crate::silence::Silence;

pub use persister::Persister;

const VERSION: u32 = 1;

/// One alert with the rule it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SavedAlert {
    pub group: String,
    pub rule: String,
    pub alert: Alert,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    saved_at_ms: i64,
    alerts: Vec<SavedAlert>,
    #[serde(default)]
    notifications: Log,
    #[serde(default)]
    silences: Vec<Silence>,
    #[serde(default)]
    deploys: DeployLog,
    #[serde(default)]
    verdicts: Verdicts,
    /// The weekly report's last slot sent.
    #[serde(default)]
    report_sent_ms: Option<i64>,
}

/// Everything persisted: alert state, the notification log and the silences.
#[derive(Debug, Default, PartialEq)]
pub struct Saved {
    pub alerts: Vec<SavedAlert>,
    pub notifications: Log,
    pub silences: Vec<Silence>,
    pub deploys: DeployLog,
    pub verdicts: Verdicts,
    pub report_sent_ms: Option<i64>,
}

/// Collects the active alerts of `groups`.
pub fn snapshot<'a>(groups: impl IntoIterator<Item = &'a Group>) -> Vec<SavedAlert> {
    let mut out = Vec::new();
    for g in groups {
        for r in &g.rules {
            if let Kind::Alerting(a) = &r.kind {
                out.extend(a.active.values().map(|alert| SavedAlert {
                    group: g.name.clone(),
                    rule: a.name.clone(),
                    alert: alert.clone(),
                }));
            }
        }
    }
    out
}

/// Writes the state to `path` atomically.
pub fn save(path: &Path, saved: Saved, now_ms: i64) -> std::io::Result<()> {
    let file = StateFile {
        version: VERSION,
        saved_at_ms: now_ms,
        alerts: saved.alerts,
        notifications: saved.notifications,
        silences: saved.silences,
        deploys: saved.deploys,
        verdicts: saved.verdicts,
        report_sent_ms: saved.report_sent_ms,
    };
    let json = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    let tmp = temp_path(path);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Reads the saved state; a missing file is an empty state, a corrupt one an error (the
/// caller logs it and starts fresh).
pub fn load(path: &Path) -> Result<Saved, LoadError> {
    let at = || path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
        Err(e) => return Err(LoadError::Read(at(), e.kind())),
    };
    let file: StateFile =
        serde_json::from_slice(&bytes).map_err(|e| LoadError::Invalid(at(), e.to_string()))?;
    if file.version != VERSION {
        return Err(LoadError::Version(at(), file.version));
    }
    Ok(Saved {
        alerts: file.alerts,
        notifications: file.notifications,
        silences: file.silences,
        deploys: file.deploys,
        verdicts: file.verdicts,
        report_sent_ms: file.report_sent_ms,
    })
}

/// Why a state file was not loaded (the collector then starts with empty state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The file exists but cannot be read.
    Read(String, std::io::ErrorKind),
    /// The file is not a state file (JSON error).
    Invalid(String, String),
    /// A state file of another version.
    Version(String, u32),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Read(path, kind) => write!(f, "cannot read {path}: {kind}"),
            LoadError::Invalid(path, why) => write!(f, "{path} is not a valid state file: {why}"),
            LoadError::Version(path, v) => write!(f, "{path}: unsupported state version {v}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Puts saved alerts back into the rules they belong to (matched by group and rule name);
/// returns how many were restored. Until `now_ms + margin` plus the longest range the rule
/// reads, a restored alert missing from the result is left as it is (its data is still being
/// scraped again), so a restart neither resets a `for` timer nor resolves a firing alert.
pub fn restore(
    groups: &mut [Group],
    saved: Vec<SavedAlert>,
    now_ms: i64,
    margin: std::time::Duration,
) -> usize {
    let mut restored = 0;
    for s in saved {
        let rule = groups
            .iter_mut()
            .filter(|g| g.name == s.group)
            .flat_map(|g| g.rules.iter_mut())
            .find_map(|r| match &mut r.kind {
                Kind::Alerting(a) if a.name == s.rule => Some(a),
                _ => None,
            });
        if let Some(rule) = rule {
            rule.warmup_until_ms = now_ms + crate::time::millis(margin) + rule.expr.max_range_ms();
            let mut alert = s.alert;
            alert.restored = true;
            rule.active.insert(alert.labels.clone(), alert);
            restored += 1;
        }
    }
    restored
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::rules::{self, State};
    use crate::store::Store;

    #[test]
    fn a_restart_keeps_active_at_and_fires_on_time() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: m > 0\n        for: 60s\n";
        let mut groups =
            rules::load("r.yml", text, std::time::Duration::from_secs(15), false).unwrap();
        let mut store = Store::new(600_000);
        let m = Labels::from_pairs(&[("__name__", "m"), ("job", "x")]);
        for t in [0, 15_000, 30_000] {
            store.append(&m, t, 1.0);
            let Kind::Alerting(a) = &mut groups[0].rules[0].kind else {
                panic!()
            };
            a.eval(t, &store, &Labels::default()).unwrap();
        }
        let dir = std::env::temp_dir().join(format!("obs-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        save(
            &path,
            Saved {
                alerts: snapshot(&groups),
                ..Saved::default()
            },
            30_000,
        )
        .unwrap();

        // "Restart": fresh rules, restored state, evaluation continues at 60 s.
        let mut fresh =
            rules::load("r.yml", text, std::time::Duration::from_secs(15), false).unwrap();
        assert_eq!(
            restore(
                &mut fresh,
                load(&path).unwrap().alerts,
                45_000,
                std::time::Duration::from_secs(30)
            ),
            1
        );
        // Restarted with an empty store: the alert is missing from the first results, which
        // is missing data during the warm-up, not a reset.
        let empty = Store::new(600_000);
        let Kind::Alerting(a) = &mut fresh[0].rules[0].kind else {
            panic!()
        };
        a.eval(45_000, &empty, &Labels::default()).unwrap();
        assert_eq!(a.active.values().next().unwrap().state, State::Pending);
        store.append(&m, 60_000, 1.0);
        let Kind::Alerting(a) = &mut fresh[0].rules[0].kind else {
            panic!()
        };
        a.eval(60_000, &store, &Labels::default()).unwrap();
        let alert = a.active.values().next().unwrap();
        assert_eq!(
            (alert.state, alert.active_at),
            (State::Firing, 0),
            "fires 60 s after the original ActiveAt"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn after_the_warm_up_a_missing_restored_alert_resets() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: m > 0\n        for: 60s\n";
        let mut groups =
            rules::load("r.yml", text, std::time::Duration::from_secs(15), false).unwrap();
        let labels = Labels::from_pairs(&[("alertname", "A"), ("job", "x")]);
        let alert = Alert {
            labels: labels.clone(),
            annotations: vec![],
            state: State::Pending,
            value: 1.0,
            active_at: 0,
            fired_at: None,
            resolved_at: None,
            keep_firing_since: None,
            restored: false,
            last_sent_at: None,
        };
        restore(
            &mut groups,
            vec![SavedAlert {
                group: "g".into(),
                rule: "A".into(),
                alert,
            }],
            100_000,
            std::time::Duration::from_secs(30),
        );
        let Kind::Alerting(a) = &mut groups[0].rules[0].kind else {
            panic!()
        };
        let empty = Store::new(600_000);
        a.eval(129_000, &empty, &Labels::default()).unwrap();
        assert!(a.active.contains_key(&labels), "still warming up");
        a.eval(130_000, &empty, &Labels::default()).unwrap();
        assert!(
            !a.active.contains_key(&labels),
            "warm-up over: a missing pending alert resets"
        );
    }

    #[test]
    fn missing_and_corrupt_files() {
        let dir = std::env::temp_dir().join(format!("obs-state-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(load(&dir.join("nope.json")), Ok(Saved::default()));
        std::fs::write(dir.join("bad.json"), b"{not json").unwrap();
        let e = load(&dir.join("bad.json")).unwrap_err();
        assert!(matches!(e, LoadError::Invalid(..)), "{e}");
        assert!(e.to_string().contains("not a valid state file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
