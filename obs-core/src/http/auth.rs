//! The bearer-token check of obs' admin `/metrics` (`OBS_METRICS_TOKEN`), public for a service
//! that guards its own `/metrics` (or another internal page) the same way, as obs-collector does.

/// Whether `headers` carry `Authorization: Bearer <token>`, compared in constant time. Used by
/// the admin `/metrics` (`OBS_METRICS_TOKEN`) and the collector's pages.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", "Bearer s3cret".parse().unwrap());
/// assert!(obs::http::bearer_token_matches(&headers, "s3cret"));
/// assert!(!obs::http::bearer_token_matches(&headers, "s3cre"));
/// assert!(!obs::http::bearer_token_matches(&http::HeaderMap::new(), "s3cret"));
/// ```
pub fn bearer_token_matches(headers: &http::HeaderMap, token: &str) -> bool {
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else { return false };
    constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// Whether `a` and `b` are equal, in a time that depends only on their lengths (for secrets:
/// tokens, credentials).
///
/// ```
/// assert!(obs::http::constant_time_eq(b"s3cret", b"s3cret"));
/// assert!(!obs::http::constant_time_eq(b"s3cret", b"s3creT"));
/// assert!(!obs::http::constant_time_eq(b"s3cret", b"s3cre"));
/// ```
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
