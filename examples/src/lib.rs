//! Shared pieces of the obs demos: the demo's shortened rules and the fuzz properties (both
//! need obs-collector), and the demo service's deploys with their traffic. Test support lives
//! in `obs-testkit`.

pub mod demo_rules;
pub mod fuzz_checks;
pub mod rollout;
