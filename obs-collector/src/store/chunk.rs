//! Chunk encoding: a block keeps each series' values, and each distinct run of timestamps,
//! as one column compressed by pco (pcodec).
//!
//! Why pco rather than a Gorilla encoder written here: 35 days of a RED histogram scraped every
//! minute take 0.57 bytes a sample in blocks (indexes included; BENCHMARKS.md), where Gorilla's
//! XOR/delta-of-delta averages 1.37 (its paper; Prometheus 1-2), and pco is kept (1.x, 34
//! releases) while the one Gorilla crate (tsz) is not. The series of one target
//! share their timestamps, so a block stores each distinct timestamp column once.

use std::fmt;

use pco::data_types::Number;
use pco::standalone::{simple_compress, DecompressorItem, FileDecompressor};
use pco::ChunkConfig;

/// A column that does not decode (its bytes passed their checksum, so this is a bug or a
/// file written by something else).
#[derive(Debug)]
pub struct Undecodable(String);

impl fmt::Display for Undecodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a column does not decode: {}", self.0)
    }
}

impl std::error::Error for Undecodable {}

/// Compresses timestamps (milliseconds, ascending).
pub fn encode_times(times: &[i64]) -> Vec<u8> {
    simple_compress(times, &ChunkConfig::default()).expect("pco compresses any i64 column")
}

/// Compresses values, bit for bit (stale markers keep their payload).
pub fn encode_values(values: &[f64]) -> Vec<u8> {
    simple_compress(values, &ChunkConfig::default()).expect("pco compresses any f64 column")
}

/// Decodes a column into `out` (cleared first), reusing its allocation: a read of thousands
/// of series decodes one column after another into the same buffer.
pub fn decode_into<T: Number + Default>(bytes: &[u8], out: &mut Vec<T>) -> Result<(), Undecodable> {
    let undecodable = |e: pco::errors::PcoError| Undecodable(e.to_string());
    out.clear();
    let (file, mut src) = FileDecompressor::new(bytes).map_err(undecodable)?;
    while let DecompressorItem::Chunk(mut chunk) =
        file.chunk_decompressor(src).map_err(undecodable)?
    {
        let from = out.len();
        out.resize(from + chunk.n(), T::default());
        chunk.read(&mut out[from..]).map_err(undecodable)?;
        src = chunk.into_src();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::STALE_NAN_BITS;

    /// A column decoded into a new buffer.
    fn decoded<T: Number + Default>(bytes: &[u8]) -> Result<Vec<T>, Undecodable> {
        let mut out = Vec::new();
        decode_into(bytes, &mut out)?;
        Ok(out)
    }

    #[test]
    fn columns_round_trip_bit_for_bit() {
        let times: Vec<i64> = (0..500)
            .map(|i| 1_700_000_000_000 + i * 15_000 + i % 3)
            .collect();
        let mut values: Vec<f64> = (0..500).map(|i| (i * 7) as f64 + 0.25).collect();
        values[10] = f64::from_bits(STALE_NAN_BITS);
        values[11] = f64::NAN;
        values[12] = f64::INFINITY;
        values[13] = -0.0;
        assert_eq!(decoded::<i64>(&encode_times(&times)).unwrap(), times);
        let back = decoded::<f64>(&encode_values(&values)).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&values));
        assert_eq!(
            decoded::<i64>(&encode_times(&[])).unwrap(),
            Vec::<i64>::new()
        );
        // Into a buffer that held another column: cleared first.
        let mut reused = vec![9.0; 3];
        decode_into(&encode_values(&values[..5]), &mut reused).unwrap();
        assert_eq!(bits(&reused), bits(&values[..5]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decoded::<f64>(&[0xff; 40]).is_err());
        assert!(decoded::<i64>(&[]).is_err());
    }
}
