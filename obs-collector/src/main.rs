mod config;
mod labels;
mod promql;
mod rules;
mod scrape {
    pub mod parse;
}
mod store;
fn main() {}
