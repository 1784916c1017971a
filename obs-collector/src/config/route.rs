//! The `route:` section: how alerts are grouped into notifications and when a group is sent,
//! in Alertmanager's words and with its semantics (`group_by`, `group_wait`, `group_interval`,
//! `repeat_interval`). One route: the collector has one set of channels.

use std::time::Duration;

use serde::Deserialize;

use super::{Dur, Invalid};
use crate::labels::{valid_name, Labels};

/// Which labels make a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// These label names (an alert without one of them groups on the others).
    Labels(Vec<String>),
    /// Every label: one group per alert (Alertmanager's `group_by: ['...']`).
    All,
}

impl GroupBy {
    /// The labels of `alert` that name its group.
    ///
    /// ```
    /// use obs_collector::config::route::GroupBy;
    /// use obs_collector::labels::Labels;
    /// let alert = Labels::from_pairs(&[("alertname", "HighErrorRate"), ("instance", "a:1"), ("job", "api")]);
    /// let by = GroupBy::Labels(vec!["alertname".into(), "job".into()]);
    /// assert_eq!(by.group_labels(&alert).to_string(), r#"{alertname="HighErrorRate", job="api"}"#);
    /// ```
    pub fn group_labels(&self, alert: &Labels) -> Labels {
        match self {
            GroupBy::All => alert.clone(),
            GroupBy::Labels(names) => {
                let mut labels = alert.clone();
                labels.retain(|name| names.iter().any(|n| n == name));
                labels
            }
        }
    }
}

/// Grouping and timing of notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub group_by: GroupBy,
    /// How long a new group waits for more alerts before its first message.
    pub group_wait: Duration,
    /// How long a group waits after a message before it sends another about changes (alerts
    /// joining or resolving).
    pub group_interval: Duration,
    /// How long a group that has not changed waits before it repeats its message.
    pub repeat_interval: Duration,
}

/// Alertmanager's defaults, but `group_by`: Alertmanager's root route puts every alert in one
/// group, which pages a team with one message about unrelated services; per alert name and job
/// is the collector's default (the grouping it always had).
impl Default for Route {
    fn default() -> Self {
        Route {
            group_by: GroupBy::Labels(vec!["alertname".into(), "job".into()]),
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(5 * 60),
            repeat_interval: Duration::from_secs(4 * 3600),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    group_by: Option<Vec<String>>,
    group_wait: Option<Dur>,
    group_interval: Option<Dur>,
    repeat_interval: Option<Dur>,
}

impl Route {
    /// The route of `raw`; `legacy_repeat` is `notifiers.repeat_interval`, where the setting was
    /// before there was a route.
    pub(super) fn resolve(raw: RawRoute, legacy_repeat: Option<Duration>) -> Result<Self, Invalid> {
        let defaults = Route::default();
        let group_by = match raw.group_by {
            None => defaults.group_by,
            Some(names) if names.iter().any(|n| n == "...") => {
                if names.len() > 1 {
                    return Err(
                        "route.group_by: '...' groups by every label and stands alone".into(),
                    );
                }
                GroupBy::All
            }
            Some(names) => {
                for (i, name) in names.iter().enumerate() {
                    if !valid_name(name) {
                        return Err(format!("route.group_by: {name:?} is not a label name").into());
                    }
                    if names[..i].contains(name) {
                        return Err(format!("route.group_by: {name:?} is listed twice").into());
                    }
                }
                GroupBy::Labels(names)
            }
        };
        let repeat_interval = match (raw.repeat_interval, legacy_repeat) {
            (Some(_), Some(_)) => {
                return Err("repeat_interval is set twice: keep route.repeat_interval and remove notifiers.repeat_interval".into())
            }
            (Some(d), None) => d.0,
            (None, Some(d)) => d,
            (None, None) => defaults.repeat_interval,
        };
        let route = Route {
            group_by,
            group_wait: raw.group_wait.map_or(defaults.group_wait, |d| d.0),
            group_interval: raw.group_interval.map_or(defaults.group_interval, |d| d.0),
            repeat_interval,
        };
        if route.group_interval.is_zero() {
            return Err("route.group_interval must be positive".into());
        }
        if route.repeat_interval.is_zero() {
            return Err("route.repeat_interval must be positive".into());
        }
        Ok(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Route, crate::config::ConfigError> {
        Config::parse(text, "c.yml", Path::new("."), &|_| None).map(|c| c.route)
    }

    #[test]
    fn alertmanager_defaults_but_group_by() {
        let r = parse("").unwrap();
        assert_eq!(r, Route::default());
        assert_eq!(
            (r.group_wait, r.group_interval, r.repeat_interval),
            (
                Duration::from_secs(30),
                Duration::from_secs(300),
                Duration::from_secs(14_400)
            )
        );
    }

    #[test]
    fn every_setting_and_the_old_place_of_repeat_interval() {
        let r = parse("route:\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 10s\n  repeat_interval: 1h\n").unwrap();
        assert_eq!(r.group_by, GroupBy::Labels(vec!["alertname".into()]));
        assert_eq!(r.group_wait, Duration::ZERO);
        assert_eq!(r.group_interval, Duration::from_secs(10));
        assert_eq!(r.repeat_interval, Duration::from_secs(3600));
        assert_eq!(
            parse("route:\n  group_by: ['...']\n").unwrap().group_by,
            GroupBy::All
        );
        let old = parse("notifiers:\n  repeat_interval: 2h\n").unwrap();
        assert_eq!(old.repeat_interval, Duration::from_secs(7200));
    }

    #[test]
    fn bad_routes_are_refused_with_their_line() {
        for (text, expected) in [
            (
                "route:\n  group_interval: 0s\n",
                "c.yml:2: route.group_interval must be positive",
            ),
            (
                "route:\n  repeat_interval: 0s\n",
                "c.yml:2: route.repeat_interval must be positive",
            ),
            ("route:\n  group_by: ['...', job]\n", "stands alone"),
            (
                "route:\n  group_by: [job, job]\n",
                "\"job\" is listed twice",
            ),
            (
                "route:\n  group_by: ['a-b']\n",
                "\"a-b\" is not a label name",
            ),
            ("route:\n  group_wait: soon\n", "c.yml:2"),
            ("route:\n  receiver: slack\n", "receiver"),
            (
                "notifiers:\n  repeat_interval: 1h\nroute:\n  repeat_interval: 2h\n",
                "set twice",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }
}
