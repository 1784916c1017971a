//! Bounded text: a value from a target or a rule cut to a number of characters, with an
//! ellipsis that says it was cut.

use std::borrow::Cow;

/// `s` in at most `max` characters (`max` ≥ 1): as it is when it fits (borrowed), else its
/// first `max - 1` characters and `…`.
///
/// ```
/// use obs_collector::text::cut;
/// assert_eq!(cut("1.0.0", 8), "1.0.0");
/// assert_eq!(cut("abcdef", 4), "abc…");
/// ```
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max {
        return Cow::Borrowed(s);
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    Cow::Owned(out)
}
