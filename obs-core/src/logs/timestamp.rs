//! RFC 3339 UTC timestamps with microseconds, without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `now` as `2026-11-27T13:29:12.123456Z`.
pub(crate) fn write_rfc3339_micros(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let (hh, mm, ss) = (rem / 3600, rem / 60 % 60, rem % 60);
    let micros = since.subsec_micros();
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    put(&mut b[0..4], y as u64);
    put(&mut b[5..7], m as u64);
    put(&mut b[8..10], d as u64);
    put(&mut b[11..13], hh);
    put(&mut b[14..16], mm);
    put(&mut b[17..19], ss);
    put(&mut b[20..26], u64::from(micros));
    out.extend_from_slice(&b);
}

/// Writes `v` as zero-padded decimal digits filling `dst`.
fn put(dst: &mut [u8], mut v: u64) {
    for slot in dst.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fmt(secs: u64, micros: u32) -> String {
        let mut out = Vec::new();
        write_rfc3339_micros(&mut out, UNIX_EPOCH + Duration::new(secs, micros * 1000));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn known_instants() {
        assert_eq!(fmt(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(fmt(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(fmt(1_798_378_152, 123_456), "2026-12-27T13:29:12.123456Z");
        assert_eq!(fmt(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
    }
}
