mod labels;
mod promql;
mod scrape {
    pub mod parse;
}
mod store;
fn main() {}
