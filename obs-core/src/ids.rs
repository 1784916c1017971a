//! Fast identifiers: UUIDv7 request ids from a per-thread generator, and hex encoding.
//!
//! Request ids are correlation handles, not secrets, so a per-thread wyrand seeded from the
//! standard library's random hash keys is enough and costs nanoseconds, not a syscall.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static STATE: Cell<u64> = Cell::new({
        let mut h = RandomState::new().build_hasher();
        h.write_u64(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64);
        h.finish()
    });
}

/// 64 random bits (wyrand).
pub(crate) fn random_u64() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    })
}

/// A new UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, 74 random bits, variant 10.
pub(crate) fn uuid_v7() -> [u8; 36] {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let (r1, r2) = (random_u64(), random_u64());
    let hi = (ms << 16) | 0x7000 | (r1 & 0x0fff);
    let lo = (r2 & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&hi.to_be_bytes());
    raw[8..].copy_from_slice(&lo.to_be_bytes());
    let mut out = [b'-'; 36];
    let mut pos = 0;
    for (i, byte) in raw.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            pos += 1;
        }
        out[pos] = HEX[usize::from(byte >> 4)];
        out[pos + 1] = HEX[usize::from(byte & 0xf)];
        pos += 2;
    }
    out
}

/// Lowercase hex digits (ids, and `\u00XX` escapes in the logs).
pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as lowercase hex (trace and span ids on log lines).
pub(crate) fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v7_layout() {
        let id = uuid_v7();
        let s = std::str::from_utf8(&id).unwrap();
        let parts: Vec<&str> = s.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('7'), "version nibble in {s}");
        assert!(
            matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "variant in {s}"
        );
        let ms = u64::from_str_radix(&(parts[0].to_owned() + parts[1]), 16).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now - ms < 5_000);
    }

    #[test]
    fn ids_are_distinct_and_time_ordered_across_milliseconds() {
        let a = uuid_v7();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = uuid_v7();
        assert!(a < b);
        let many: std::collections::HashSet<[u8; 36]> = (0..10_000).map(|_| uuid_v7()).collect();
        assert_eq!(many.len(), 10_000);
    }
}
