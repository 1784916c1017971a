//! obs-collector's pipeline, stage by stage: [`scrape`] -> [`store`] -> [`promql`] ->
//! [`rules`] -> [`notify`] (with [`state`] persistence) -> [`web`]. The binary wires them in [`collector`].
#![forbid(unsafe_code)]

pub mod collector;
pub mod config;
pub mod history;
pub mod labels;
pub mod notify;
pub mod promql;
pub mod rules;
pub mod scrape;
pub mod state;
pub mod store;
pub mod time;
pub mod web;
