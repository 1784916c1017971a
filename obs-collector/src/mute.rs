//! The mute stage, Alertmanager's `Muter`: silences and inhibition asked as one. A message
//! leaves out what is muted, and the pages and APIs show why an alert is.

use crate::inhibit;
use crate::labels::Labels;
use crate::silence::Silences;

/// What mutes alerts at one moment: the silences then active, and the firing alerts (of every
/// group's last evaluation) that may inhibit. Notifications and the pages ask the same one.
pub struct Mutes<'a> {
    silences: Silences,
    firing: Vec<Labels>,
    rules: &'a [inhibit::InhibitRule],
    t: i64,
}

impl<'a> Mutes<'a> {
    /// What mutes at `t`: `silences`, and `rules` over the `firing` alerts that may inhibit.
    pub fn new(
        silences: Silences,
        firing: Vec<Labels>,
        rules: &'a [inhibit::InhibitRule],
        t: i64,
    ) -> Self {
        Self {
            silences,
            firing,
            rules,
            t,
        }
    }
}

impl Mutes<'_> {
    /// The ids of the active silences that match `labels`.
    pub fn silenced_by(&self, labels: &Labels) -> Vec<String> {
        self.silences.silenced_by(labels, self.t)
    }

    /// The firing alerts that inhibit an alert with `labels`.
    pub fn inhibited_by(&self, labels: &Labels) -> Vec<&Labels> {
        inhibit::inhibited_by(self.rules, &self.firing, labels)
    }

    /// Whether an alert with `labels` sends nothing (silenced or inhibited).
    pub fn is_muted(&self, labels: &Labels) -> bool {
        self.silences.is_silenced(labels, self.t)
            || inhibit::is_inhibited(self.rules, &self.firing, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::silence::{Matcher, NewSilence};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs)
    }

    fn matcher(name: &str, value: &str) -> Matcher {
        Matcher {
            name: name.into(),
            value: value.into(),
            is_regex: false,
            is_equal: true,
        }
    }

    #[test]
    fn silenced_or_inhibited_is_muted_and_says_by_what() {
        let mut silences = Silences::default();
        let new = NewSilence {
            id: None,
            matchers: vec![matcher("alertname", "HighLatencyP95")],
            starts_ms: 0,
            ends_ms: 3_600_000,
            created_by: "test".into(),
            comment: "deploy".into(),
        };
        let id = silences.upsert(new, 0, || "s1".to_owned()).unwrap();
        let rules = vec![inhibit::InhibitRule {
            source: vec![matcher("alertname", "TargetDown")],
            target: vec![matcher("severity", "warning")],
            equal: vec!["job".into()],
        }];
        let down = labels(&[("alertname", "TargetDown"), ("job", "api")]);
        let mutes = Mutes::new(silences, vec![down.clone()], &rules, 60_000);
        let slow = labels(&[("alertname", "HighLatencyP95"), ("job", "api")]);
        assert_eq!(mutes.silenced_by(&slow), [id]);
        assert!(mutes.is_muted(&slow));
        let errors = labels(&[
            ("alertname", "HighErrorRate"),
            ("job", "api"),
            ("severity", "warning"),
        ]);
        assert_eq!(mutes.inhibited_by(&errors), [&down]);
        assert!(mutes.is_muted(&errors));
        let other_job = labels(&[
            ("alertname", "HighErrorRate"),
            ("job", "web"),
            ("severity", "warning"),
        ]);
        assert!(
            !mutes.is_muted(&other_job),
            "inhibition needs the equal labels"
        );
        // After the silence ends, the alert speaks again.
        let later = Mutes::new(mutes.silences.clone(), Vec::new(), &rules, 3_600_001);
        assert!(!later.is_muted(&slow));
    }
}
