//! Shared pieces of the obs examples: a tiny blocking HTTP/1.1 client (used by the tests, the
//! load harness and the demo's traffic driver) and helpers to run the demo service as a child
//! process.

pub mod client;
pub mod demo_rules;
pub mod exposition;
pub mod fuzz_checks;
pub mod process;
pub mod prometheus;
pub mod receivers;
pub mod slack;
pub mod traffic;
