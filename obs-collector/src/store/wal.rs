//! The write-ahead log: every series and sample the head takes, in order, so that a restart
//! (a deploy, a crash, `kill -9`) replays what the head held instead of starting empty.
//!
//! The log is a folder of segments named by their number (`00000001`, ...). A segment is a
//! sequence of records, each `[payload length: u32 LE][CRC-32 of the payload: u32 LE][payload]`,
//! and starts with a series record for every series the head holds, so that a segment never
//! needs an older one and the oldest can be deleted once the head no longer covers them.
//! Payloads:
//!
//! - `1` series: `ref` (varint), the label count (varint), then each name and value
//!   (varint length, bytes);
//! - `2` samples: the time in ms (zigzag varint), the sample count (varint), then per sample
//!   `ref` (varint) and the value's bits (u64 LE): a scrape is one record, one time.
//!
//! Records are written with one `write` per scrape: a process killed at any moment leaves
//! whole records in the page cache and, at worst, one torn record at the end, which the
//! replay drops. A record whose CRC does not match before the end (a flipped byte) ends that
//! segment's replay; the segment is renamed `*.corrupt` and the newer ones are still read.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::encoding::{
    frame, get_labels, get_varint, put_labels, put_varint, unzigzag, zigzag, Strings,
};
use crate::labels::Labels;

const SERIES: u8 = 1;
const SAMPLES: u8 = 2;
/// A record larger than this is corruption, not data (a scrape has at most a few MB).
const MAX_RECORD: usize = 256 << 20;

/// What a replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replay {
    pub segments: usize,
    pub records: usize,
    /// A torn record at a segment's end (the last write of a killed process): dropped.
    pub torn_tails: usize,
    /// Segments renamed `*.corrupt` after a record that does not check out.
    pub set_aside: Vec<PathBuf>,
    /// Samples naming a series their segment never defined (after corruption): skipped.
    pub orphan_samples: usize,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Series { id: u64, labels: Labels },
    Samples { t: i64, samples: Vec<(u64, f64)> },
}

/// The open log: appends go to the newest segment.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    file: File,
    segment: u64,
    /// The segment's length after the last write that succeeded.
    written: u64,
    /// A write failed part-way: the segment is cut back to `written` before the next one.
    dirty: bool,
    /// Series records not yet written. They outlive a failed write: the samples after it
    /// refer to them.
    pending_series: Vec<u8>,
    /// Samples records encoded since the last [`Wal::commit`].
    pending: Vec<u8>,
    /// The samples record being built: its time and the samples so far.
    batch: Option<(i64, Vec<(u64, f64)>)>,
    /// Numbers of the segments on disk, oldest first, with the time each one was started.
    segments: Vec<(u64, i64)>,
}

impl Wal {
    /// Replays every segment in `dir` (made if missing) through `apply`, then opens a new
    /// segment for appends, started at `now_ms`.
    pub fn open(
        dir: &Path,
        now_ms: i64,
        mut apply: impl FnMut(Record),
    ) -> io::Result<(Self, Replay)> {
        fs::create_dir_all(dir)?;
        let mut numbers: Vec<u64> = fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let mut replay = Replay::default();
        let mut segments = Vec::with_capacity(numbers.len() + 1);
        for &n in &numbers {
            let path = segment_path(dir, n);
            let bytes = fs::read(&path)?;
            replay.segments += 1;
            let mut defined = HashSet::new();
            let mut first_t = None;
            let outcome = read_records(&bytes, |record| {
                replay.records += 1;
                match &record {
                    Record::Series { id, .. } => {
                        defined.insert(*id);
                    }
                    Record::Samples { t, samples } => {
                        first_t.get_or_insert(*t);
                        let orphans = samples.iter().filter(|(id, _)| !defined.contains(id));
                        replay.orphan_samples += orphans.count();
                    }
                }
                apply(record);
            });
            match outcome {
                End::Clean => segments.push((n, first_t.unwrap_or(now_ms))),
                End::Torn => {
                    replay.torn_tails += 1;
                    segments.push((n, first_t.unwrap_or(now_ms)));
                }
                End::Corrupt => {
                    let aside = path.with_extension("corrupt");
                    fs::rename(&path, &aside)?;
                    replay.set_aside.push(aside);
                }
            }
        }
        let segment = numbers.last().map_or(1, |n| n + 1);
        let file = create_segment(dir, segment)?;
        segments.push((segment, now_ms));
        let wal = Self {
            dir: dir.to_path_buf(),
            file,
            segment,
            written: 0,
            dirty: false,
            pending_series: Vec::new(),
            pending: Vec::new(),
            batch: None,
            segments,
        };
        Ok((wal, replay))
    }

    /// Logs a new series.
    pub fn series(&mut self, id: u64, labels: &Labels) {
        let mut payload = vec![SERIES];
        put_varint(&mut payload, id);
        put_labels(&mut payload, labels);
        frame(&mut self.pending_series, &payload);
    }

    /// Logs a sample (samples of one time go into one record).
    pub fn sample(&mut self, id: u64, t: i64, v: f64) {
        if self.batch.as_ref().is_some_and(|(bt, _)| *bt != t) {
            self.close_batch();
        }
        self.batch
            .get_or_insert_with(|| (t, Vec::new()))
            .1
            .push((id, v));
    }

    /// Writes what was logged since the last commit, in one write, series first. On failure
    /// (a full disk) the samples are dropped and the error returned: the head keeps them, the
    /// log misses them. The series are kept for the next write, and what a failed write left
    /// of a record is cut off, so that the records after it still replay.
    pub fn commit(&mut self) -> io::Result<()> {
        self.close_batch();
        if self.pending_series.is_empty() && self.pending.is_empty() {
            return Ok(());
        }
        let samples = std::mem::take(&mut self.pending);
        if self.dirty {
            self.file.set_len(self.written)?;
            self.dirty = false;
        }
        let mut bytes = std::mem::take(&mut self.pending_series);
        let series_len = bytes.len();
        bytes.extend_from_slice(&samples);
        match self.file.write_all(&bytes) {
            Ok(()) => {
                self.written += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                bytes.truncate(series_len);
                self.pending_series = bytes;
                self.dirty = self.file.set_len(self.written).is_err();
                Err(e)
            }
        }
    }

    /// Starts a new segment at `now_ms` beginning with `live` (every series the head holds),
    /// and deletes the segments that hold only samples older than `keep_from_ms`.
    pub fn rotate<'a>(
        &mut self,
        now_ms: i64,
        keep_from_ms: i64,
        live: impl Iterator<Item = (u64, &'a Labels)>,
    ) -> io::Result<()> {
        self.commit()?;
        self.file.sync_data()?;
        let next = self.segment + 1;
        self.file = create_segment(&self.dir, next)?;
        self.segment = next;
        self.written = 0;
        self.dirty = false;
        self.segments.push((next, now_ms));
        for (id, labels) in live {
            self.series(id, labels);
        }
        self.commit()?;
        // A segment's samples end where the next one starts.
        while self.segments.len() > 1 && self.segments[1].1 <= keep_from_ms {
            let (old, _) = self.segments.remove(0);
            fs::remove_file(segment_path(&self.dir, old))?;
        }
        Ok(())
    }

    /// When the newest segment was started.
    pub fn segment_started_ms(&self) -> i64 {
        self.segments.last().map_or(0, |s| s.1)
    }

    /// Bytes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.segments
            .iter()
            .filter_map(|(n, _)| fs::metadata(segment_path(&self.dir, *n)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Writes go to `file` from now on; returns the one they went to (a test's full disk).
    #[cfg(test)]
    pub(super) fn swap_file(&mut self, file: File) -> File {
        std::mem::replace(&mut self.file, file)
    }

    fn close_batch(&mut self) {
        if let Some((t, samples)) = self.batch.take() {
            let mut payload = Vec::with_capacity(samples.len() * 10 + 12);
            payload.push(SAMPLES);
            put_varint(&mut payload, zigzag(t));
            put_varint(&mut payload, samples.len() as u64);
            for (id, v) in samples {
                put_varint(&mut payload, id);
                payload.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            frame(&mut self.pending, &payload);
        }
    }
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:08}"))
}

fn create_segment(dir: &Path, n: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(segment_path(dir, n))?;
    // The new name must survive a crash too.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// How a segment's bytes ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Clean,
    /// The last record is cut short: a write the process did not finish.
    Torn,
    /// A record does not check out (CRC, framing or contents) with more bytes after it.
    Corrupt,
}

/// Calls `each` on the records of a segment, in order, up to where they stop checking out.
fn read_records(mut bytes: &[u8], mut each: impl FnMut(Record)) -> End {
    // A segment's series share their label strings.
    let mut strings = Strings::new();
    while !bytes.is_empty() {
        if bytes.len() < 8 {
            return End::Torn;
        }
        let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            return End::Corrupt;
        }
        let Some(payload) = bytes.get(8..8 + len) else {
            return End::Torn;
        };
        if crc32fast::hash(payload) != crc {
            // The last record, cut and padded by the file system, or a flipped byte.
            return if bytes.len() == 8 + len {
                End::Torn
            } else {
                End::Corrupt
            };
        }
        match decode(payload, &mut strings) {
            Some(record) => each(record),
            None => return End::Corrupt,
        }
        bytes = &bytes[8 + len..];
    }
    End::Clean
}

fn decode(payload: &[u8], strings: &mut Strings) -> Option<Record> {
    let (&kind, mut rest) = payload.split_first()?;
    match kind {
        SERIES => {
            let id = get_varint(&mut rest)?;
            let labels = get_labels(&mut rest, strings)?;
            rest.is_empty().then_some(Record::Series { id, labels })
        }
        SAMPLES => {
            let t = unzigzag(get_varint(&mut rest)?);
            let n = usize::try_from(get_varint(&mut rest)?).ok()?;
            let mut samples = Vec::with_capacity(n.min(rest.len() / 9 + 1));
            for _ in 0..n {
                let id = get_varint(&mut rest)?;
                let (bits, tail) = rest.split_first_chunk::<8>()?;
                rest = tail;
                samples.push((id, f64::from_bits(u64::from_le_bytes(*bits))));
            }
            rest.is_empty().then_some(Record::Samples { t, samples })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("obs-wal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn up(job: &str) -> Labels {
        Labels::from_pairs(&[("__name__", "up"), ("job", job)])
    }

    fn replay(d: &Path) -> (Vec<Record>, Replay) {
        let mut records = Vec::new();
        let (_, report) = Wal::open(d, 0, |r| records.push(r)).unwrap();
        (records, report)
    }

    /// A log with two series and three scrapes, committed.
    fn written(d: &Path) {
        let (mut wal, report) = Wal::open(d, 0, |_| {}).unwrap();
        assert_eq!(report, Replay::default());
        wal.series(1, &up("a"));
        wal.series(2, &up("b"));
        for t in [1_000, 2_000, 3_000] {
            wal.sample(1, t, t as f64);
            wal.sample(2, t, f64::NAN);
        }
        wal.commit().unwrap();
    }

    #[test]
    fn what_was_committed_is_replayed_in_order() {
        let d = dir("roundtrip");
        written(&d);
        let (records, report) = replay(&d);
        assert_eq!(report.records, 5);
        assert_eq!(report.torn_tails + report.set_aside.len(), 0);
        assert_eq!(
            records[0],
            Record::Series {
                id: 1,
                labels: up("a")
            }
        );
        let Record::Samples { t, samples } = &records[4] else {
            panic!("{records:?}")
        };
        assert_eq!(*t, 3_000);
        assert_eq!(samples[0], (1, 3_000.0));
        assert!(samples[1].1.is_nan(), "values keep their bits");
        // Each open starts a segment of its own.
        let segments = fs::read_dir(&d).unwrap().count();
        assert_eq!(segments, 2);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_the_rest_kept() {
        let d = dir("torn");
        written(&d);
        let first = segment_path(&d, 1);
        let bytes = fs::read(&first).unwrap();
        for cut in 1..20 {
            fs::write(&first, &bytes[..bytes.len() - cut]).unwrap();
            let (records, report) = replay(&d);
            assert_eq!(
                records.len(),
                4,
                "cut {cut}: the last scrape is lost, not the others"
            );
            assert_eq!(report.torn_tails, 1);
            assert!(report.set_aside.is_empty());
            // Replaying made new (empty) segments: the test reads only the first.
            for entry in fs::read_dir(&d).unwrap().flatten() {
                if entry.path() != first {
                    fs::remove_file(entry.path()).unwrap();
                }
            }
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_flipped_byte_sets_the_segment_aside_and_later_segments_are_read() {
        let d = dir("flipped");
        written(&d);
        // A second process' segment, after the first.
        let (mut wal, _) = Wal::open(&d, 0, |_| {}).unwrap();
        wal.series(7, &up("c"));
        wal.sample(7, 9_000, 1.0);
        wal.commit().unwrap();
        drop(wal);
        let first = segment_path(&d, 1);
        let mut bytes = fs::read(&first).unwrap();
        bytes[20] ^= 0x40;
        fs::write(&first, &bytes).unwrap();
        let (records, report) = replay(&d);
        assert_eq!(report.set_aside, [first.with_extension("corrupt")]);
        assert!(first.with_extension("corrupt").exists() && !first.exists());
        assert!(
            records.contains(&Record::Samples {
                t: 9_000,
                samples: vec![(7, 1.0)]
            }),
            "{records:?}"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn rotation_restates_the_series_and_deletes_what_the_head_no_longer_covers() {
        let d = dir("rotate");
        let (mut wal, _) = Wal::open(&d, 0, |_| {}).unwrap();
        let a = up("a");
        wal.series(1, &a);
        wal.sample(1, 1_000, 1.0);
        wal.rotate(10_000, 0, [(1, &a)].into_iter()).unwrap();
        wal.sample(1, 11_000, 2.0);
        wal.commit().unwrap();
        assert_eq!(fs::read_dir(&d).unwrap().count(), 2);
        // The head now keeps samples from 10 s on: the first segment holds only older ones.
        wal.rotate(20_000, 10_000, [(1, &a)].into_iter()).unwrap();
        drop(wal);
        let (records, _) = replay(&d);
        assert_eq!(
            records,
            [
                Record::Series {
                    id: 1,
                    labels: a.clone()
                },
                Record::Samples {
                    t: 11_000,
                    samples: vec![(1, 2.0)]
                },
                Record::Series { id: 1, labels: a },
            ]
        );
        let _ = fs::remove_dir_all(&d);
    }
}
