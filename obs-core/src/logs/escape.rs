//! JSON string escaping: no input can break a log line in two or leave it invalid.

use std::fmt;

use crate::ids::HEX;

/// Appends `s` as a quoted JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_str_body(out, s);
    out.push(b'"');
}

/// Appends the escaped body of a JSON string (no quotes). Control characters (including ANSI
/// escapes and newlines), quotes and backslashes are escaped; everything else is UTF-8 as is.
pub(crate) fn write_str_body(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Fast path: most values need no escaping. The check runs over fixed-size chunks without
    // an early exit inside a chunk, which the compiler vectorizes.
    let clean = bytes.chunks(16).all(|chunk| {
        !chunk
            .iter()
            .fold(false, |dirty, &b| dirty | needs_escape(b))
    });
    if clean {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f
}

/// A `fmt::Write` that escapes what is written into it, for `Debug` and `Display` values.
pub(crate) struct Escaper<'a>(pub &'a mut Vec<u8>);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_str_body(self.0, s);
        Ok(())
    }
}

/// Appends any `Debug` value as a quoted, escaped JSON string.
pub(crate) fn write_debug(out: &mut Vec<u8>, value: &dyn fmt::Debug) {
    out.push(b'"');
    let _ = fmt::write(&mut Escaper(out), format_args!("{value:?}"));
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_what_json_requires() {
        assert_eq!(esc("plain"), r#""plain""#);
        assert_eq!(esc("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(esc("line\nbreak\r\t"), r#""line\nbreak\r\t""#);
        assert_eq!(esc("\u{1b}[31mred\u{7f}"), r#""\u001b[31mred\u007f""#);
        assert_eq!(esc("héllo ✓"), "\"héllo ✓\"");
    }

    #[test]
    fn every_char_round_trips_through_a_json_parser() {
        let all: String = (0u32..0x800).filter_map(char::from_u32).collect();
        let encoded = esc(&all);
        assert!(!encoded.contains('\n'));
        let back: String = serde_json::from_str(&encoded).unwrap();
        assert_eq!(back, all);
    }
}
