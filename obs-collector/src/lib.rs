//! obs-collector's pipeline, stage by stage, divided as Prometheus' rule manager and
//! Alertmanager's `notify/` divide it. Each module owns one thing and imports only modules
//! listed above it (no import cycles):
//!
//! | module | owns | imports |
//! |---|---|---|
//! | [`time`] | the [`time::Clock`] (system, manual), the schedule's slots, RFC 3339 | - |
//! | [`transport`] | what a failed HTTP request is reported as (never its URL) | - |
//! | [`labels`] | label sets | - |
//! | [`history`] | the status page's chart points | - |
//! | [`text`] | bounded text: a value cut to a number of characters, marked | - |
//! | [`schedule`] | the weekly report's weekday and local time in a time zone, across daylight-saving changes | time |
//! | [`deploys`] | the deploy log: each instance's version, its changes and restarts; the alerts' deploy line | text, time |
//! | [`links`] | where a message's links go (runbook, dashboard, silence form) | labels |
//! | [`silence`] | silences: matchers, states, validation | labels |
//! | [`inhibit`] | inhibition rules | labels, silence |
//! | [`mute`] | the mute stage (Alertmanager's `Muter`): silences and inhibition asked as one | inhibit, labels, silence |
//! | [`store`] | the time-series store: the head, its write-ahead log, blocks on disk (layout, compressed columns, the set and its retention), compaction and downsampling, the [`store::querier::Select`] readers use | labels |
//! | [`config`] | the configuration file, its defaults and errors (with the parser's lines) | inhibit, labels, links, schedule, silence |
//! | [`promql`] | the PromQL subset, its evaluator, the [`promql::Querier`] (store or remote API), exemplars | config, labels, store, time, transport |
//! | [`scrape`] | scraping a target, parsing its page into the store (and its exemplars) | config, labels, promql, store, transport |
//! | [`rules`] | rule files, the alert state machine, a group's evaluation over a `Querier` | config, labels, promql, store, time |
//! | [`exemplars`] | example traces: the exemplars behind an alert's numbers, picked per firing alert | labels, promql, rules |
//! | [`incident`] | an alert's context from its rule's data: the routes behind it, its value per served version, its value now | labels, promql, rules, text, time |
//! | [`notify`] | grouping into messages, the notification log (queue and retry stage), the notifiers | config, incident, labels, links, rules, text, time, transport |
//! | [`import`] | reading an OpenMetrics file with timestamps (promtool's backfill input) into series for the store | labels, scrape, store |
//! | [`backtest`] | replaying the rules over a backend's history (range queries) | config, labels, links, notify, promql, rules, store, time |
//! | [`changes`] | what changed: a verdict on every deploy (canary or rollout, route by route) and the weekly report (weeks, drift, deploys), read through one `Source` (store or backend) | config, deploys, labels, promql, time |
//! | [`state`] | the state file, the [`state::Persister`] thread | changes, deploys, labels, notify, rules, silence, store, time |
//! | [`collector`] | the wiring: the schedule's tasks and each stage's step; the retry stage (`collector::deliver`) and the self-metrics (`collector::metrics`) in their own files | all of the above |
//! | [`web`] | the status page (maud templates), its silence forms, the runbook page, the API (with Prometheus' query API), Alertmanager's silence API | changes, collector, config, deploys, labels, mute, notify, promql, rules, silence, time |
#![forbid(unsafe_code)]

pub mod backtest;
pub mod changes;
pub mod collector;
pub mod config;
pub mod deploys;
pub mod exemplars;
pub mod history;
pub mod import;
pub mod incident;
pub mod inhibit;
pub mod labels;
pub mod links;
pub mod mute;
pub mod notify;
pub mod promql;
pub mod rules;
pub mod schedule;
pub mod scrape;
pub mod silence;
pub mod state;
pub mod store;
pub mod text;
pub mod time;
pub mod transport;
pub mod web;
