//! What changed: a verdict on every deploy and a weekly report that catches the slow drift no
//! threshold sees. Both read through one seam ([`source::Source`]: the collector's store or a
//! Prometheus-compatible backend) and compare with one judge.
//!
//! | file | owns |
//! |---|---|
//! | `stats.rs` | a route's window (buckets, requests, 5xx), its quantiles, the proportion test |
//! | `judge.rs` | a route against its baseline: which metric got worse, by the minimum effect, beyond chance |
//! | `source.rs` | PromQL text to numbers, locally or remotely; a window's routes in 2 queries |
//! | `verdict.rs` | releases from the deploy log, canary or rollout comparison, the verdict record |
//! | `report.rs` | the weekly report: weeks per route, drift, the week's deploys |
//! | `format.rs` | numbers as messages write them |

pub mod format;
pub mod judge;
pub mod report;
pub mod source;
pub mod stats;
pub mod verdict;
