//! What every HTTP client of the collector (scrapes, remote queries, notifiers) says about a
//! failed request. A leaf: the stages import it, it imports none of them.

/// A transport error without the URL (which may carry credentials) and with its cause.
pub fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}
