//! Inhibition, in Alertmanager's shape (`inhibit_rules`: `source_matchers`, `target_matchers`,
//! `equal`): while an alert matching a rule's source matchers fires, alerts matching its target
//! matchers and carrying the same values of the `equal` labels send nothing. The shipped
//! default: `TargetDown` inhibits `HighErrorRate` and `HighLatencyP95` of the same job, so a
//! dead service pages once, for being down.

use crate::labels::Labels;
use crate::silence::{matches_all, Matcher};

/// One inhibition rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    /// Labels whose values must be equal in source and target (both absent counts as equal).
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// The rules used when the configuration has no `inhibit_rules`.
    pub fn defaults() -> Vec<Self> {
        let m = |name: &str, value: &str, is_regex: bool| Matcher {
            name: name.into(),
            value: value.into(),
            is_regex,
            is_equal: true,
        };
        vec![InhibitRule {
            source: vec![m("alertname", "TargetDown", false)],
            target: vec![m("alertname", "HighErrorRate|HighLatencyP95", true)],
            equal: vec!["job".into()],
        }]
    }

    /// Whether `source` (firing) inhibits `target` under this rule. An alert never inhibits
    /// itself.
    fn inhibits(&self, source: &Labels, target: &Labels) -> bool {
        source != target
            && matches_all(&self.target, target)
            && matches_all(&self.source, source)
            && self.equal.iter().all(|l| source.get(l) == target.get(l))
    }
}

/// Whether any of `firing` inhibits `target` under any of `rules`.
pub fn is_inhibited(rules: &[InhibitRule], firing: &[Labels], target: &Labels) -> bool {
    !inhibited_by(rules, firing, target).is_empty()
}

/// The alerts of `firing` that inhibit `target` under any of `rules`.
pub fn inhibited_by<'a>(
    rules: &[InhibitRule],
    firing: &'a [Labels],
    target: &Labels,
) -> Vec<&'a Labels> {
    firing
        .iter()
        .filter(|source| rules.iter().any(|rule| rule.inhibits(source, target)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_down_inhibits_the_same_jobs_error_and_latency_alerts() {
        let rules = InhibitRule::defaults();
        let down = Labels::from_pairs(&[("alertname", "TargetDown"), ("job", "api")]);
        let errors = Labels::from_pairs(&[("alertname", "HighErrorRate"), ("job", "api")]);
        let latency = Labels::from_pairs(&[("alertname", "HighLatencyP95"), ("job", "api")]);
        let other_job = Labels::from_pairs(&[("alertname", "HighErrorRate"), ("job", "web")]);
        let firing = [down.clone()];
        assert!(is_inhibited(&rules, &firing, &errors));
        assert!(is_inhibited(&rules, &firing, &latency));
        assert!(!is_inhibited(&rules, &firing, &other_job), "another job");
        assert!(!is_inhibited(&rules, &firing, &down), "not itself");
        assert!(!is_inhibited(&rules, &[], &errors), "no source firing");
        // Anchored: "HighErrorRateX" is not a target.
        let x = Labels::from_pairs(&[("alertname", "HighErrorRateX"), ("job", "api")]);
        assert!(!is_inhibited(&rules, &firing, &x));
    }
}
