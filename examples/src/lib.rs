//! Shared pieces of the obs demos: the demo's shortened rules and the fuzz properties (both
//! need obs-collector). Test support lives in `obs-testkit`.

pub mod demo_rules;
pub mod fuzz_checks;
