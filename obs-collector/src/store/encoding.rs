//! The bytes the log and the blocks share: varints (LEB128), zigzag for signed numbers,
//! length-prefixed strings, label sets, and checksummed frames.

use std::collections::HashMap;
use std::sync::Arc;

use crate::labels::Labels;

/// Appends `[payload length: u32 LE][CRC-32 of the payload: u32 LE][payload]`.
pub fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Splits a frame written by [`frame`] off the front of `bytes`: its payload, whether it checks
/// out.
pub fn unframe<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let (crc, rest) = rest.split_first_chunk::<4>()?;
    let payload = rest.get(..u32::from_le_bytes(*len) as usize)?;
    if crc32fast::hash(payload) != u32::from_le_bytes(*crc) {
        return None;
    }
    *bytes = &rest[payload.len()..];
    Some(payload)
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn get_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub fn get_bytes<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = usize::try_from(get_varint(bytes)?).ok()?;
    let (b, rest) = (bytes.get(..n)?, bytes.get(n..)?);
    *bytes = rest;
    Some(b)
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends a label set: its pair count, then each name and value.
pub fn put_labels(out: &mut Vec<u8>, labels: &Labels) {
    put_varint(out, labels.len() as u64);
    for (name, value) in labels.iter() {
        put_bytes(out, name.as_bytes());
        put_bytes(out, value.as_bytes());
    }
}

/// Label names and values read so far, each once: the series of a block share a few
/// hundred distinct strings, so a read of thousands of series holds each once.
pub type Strings = HashMap<Vec<u8>, Arc<str>>;

/// Reads a label set written by [`put_labels`], its strings shared through `strings`.
pub fn get_labels(bytes: &mut &[u8], strings: &mut Strings) -> Option<Labels> {
    let n = usize::try_from(get_varint(bytes)?).ok()?;
    let mut pairs = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let name = intern(get_bytes(bytes)?, strings)?;
        let value = intern(get_bytes(bytes)?, strings)?;
        pairs.push((name, value));
    }
    Some(Labels::from_arcs(pairs))
}

/// Splits a label set written by [`put_labels`] off the front of `bytes`, undecoded: the same
/// labels are the same bytes, so a read that meets a series in many blocks compares bytes
/// instead of making its labels again.
pub fn split_labels<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let all: &'a [u8] = bytes;
    let n = get_varint(bytes)?;
    for _ in 0..n.saturating_mul(2) {
        get_bytes(bytes)?;
    }
    Some(&all[..all.len() - bytes.len()])
}

fn intern(raw: &[u8], strings: &mut Strings) -> Option<Arc<str>> {
    if let Some(known) = strings.get(raw) {
        return Some(Arc::clone(known));
    }
    let s: Arc<str> = Arc::from(std::str::from_utf8(raw).ok()?);
    strings.insert(raw.to_vec(), Arc::clone(&s));
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_round_trip() {
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(get_varint(&mut b.as_slice()), Some(v));
        }
        for v in [0, -1, 1, i64::MIN, i64::MAX, 1_765_000_000_000] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(get_varint(&mut [0x80u8; 11].as_slice()), None);
    }

    #[test]
    fn frames_and_labels_round_trip_and_a_flipped_byte_is_seen() {
        let labels = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        let mut payload = Vec::new();
        put_labels(&mut payload, &labels);
        let mut framed = Vec::new();
        frame(&mut framed, &payload);
        let mut rest = framed.as_slice();
        let back = unframe(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            get_labels(&mut &back[..], &mut Strings::new()),
            Some(labels)
        );
        let mut rest = back;
        assert_eq!(split_labels(&mut rest), Some(back));
        assert!(rest.is_empty());
        assert_eq!(split_labels(&mut &back[..back.len() - 1]), None);
        framed[9] ^= 1;
        assert_eq!(unframe(&mut framed.as_slice()), None);
        assert_eq!(unframe(&mut &framed[..5]), None);
    }
}
