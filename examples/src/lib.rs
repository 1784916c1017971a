//! Shared pieces of the obs demos: the demo's shortened rules and the fuzz properties (both
//! need obs-collector), the demo service's deploys with their traffic, and its job queue
//! (Redis) with the jobs the worker runs, and the benchmarks' flags. Test support lives in `obs-testkit`.

pub mod cli;
pub mod demo_rules;
pub mod fuzz_checks;
pub mod jobs;
pub mod outgoing;
pub mod queue;
pub mod rollout;
