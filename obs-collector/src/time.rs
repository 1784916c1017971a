//! Time as the collector shows it. A leaf: every stage may import it, it imports none.

use std::time::{Duration, UNIX_EPOCH};

/// A millisecond timestamp as RFC 3339 UTC (the API's, the page's and the messages' format).
///
/// ```
/// assert_eq!(obs_collector::time::rfc3339(1_000), "1970-01-01T00:00:01.000000Z");
/// ```
pub fn rfc3339(ms: i64) -> String {
    obs::logs::format_rfc3339(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}
