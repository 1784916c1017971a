//! Blocks: the samples of a time range, written once, read many times, as Prometheus' `tsdb/`
//! persists its head. A block is one file, `blocks/<min>-<max>-<resolution>.block` (times in
//! ms, `max` exclusive, resolution 0 for raw samples), laid out as
//!
//! ```text
//! "OBSBLK1\n"
//! column frames: [length: u32 LE][CRC-32: u32 LE][pco column]...    (see `chunk`)
//! series frames: the same framing, one per metric name: its series
//! index frame:   the same framing around the index below
//! footer:        [index frame offset: u64 LE]"OBSEND1\n"
//! ```
//!
//! A series frame (varints) lists a metric name's series: per series its labels, its
//! timestamp column and its value column (offset, length). The index: min, max (zigzag),
//! resolution, the timestamp columns (offset, length of each frame), and per metric name where
//! its series frame is. Only the index stays in memory (the names and a few numbers a block):
//! the series are read from disk when a query names them, so memory does not grow with the
//! history kept. A block is written to `*.tmp`, synced and renamed, so a crash leaves either no
//! block or a whole one. Opening a block reads every frame and checks its CRC; a block that
//! does not check out is renamed `*.corrupt` by the store and the rest is served.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::chunk::{self, Undecodable};
use super::encoding::{
    frame, get_bytes, get_labels, get_varint, put_bytes, put_labels, put_varint, split_labels,
    unframe, unzigzag, zigzag, Strings,
};
use crate::labels::Labels;

const MAGIC: &[u8; 8] = b"OBSBLK1\n";
const END: &[u8; 8] = b"OBSEND1\n";
/// A column frame larger than this is corruption (a day of one series at 1 s is ~1 MB).
const MAX_FRAME: u32 = 64 << 20;

/// The time range a block covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Meta {
    /// First millisecond covered.
    pub min_t: i64,
    /// First millisecond not covered.
    pub max_t: i64,
    /// 0 for raw samples; else the downsampling step in ms.
    pub resolution_ms: i64,
}

impl Meta {
    /// The block's file name; `n` tells apart blocks of the same range (an import over
    /// existing data), which compaction then merges.
    fn file_name(&self, n: u32) -> String {
        let (min, max, res) = (self.min_t, self.max_t, self.resolution_ms);
        match n {
            0 => format!("{min}-{max}-{res}.block"),
            n => format!("{min}-{max}-{res}.{n}.block"),
        }
    }

    /// The meta a block's file name states, if it is a block's name.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(".block")?;
        let stem = match stem.split_once('.') {
            Some((stem, n)) => n.parse::<u32>().is_ok().then_some(stem)?,
            None => stem,
        };
        let mut parts = stem.split('-');
        let meta = Self {
            min_t: parts.next()?.parse().ok()?,
            max_t: parts.next()?.parse().ok()?,
            resolution_ms: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(meta)
    }
}

/// Why a block cannot be read.
#[derive(Debug)]
pub enum BlockError {
    Io(io::Error),
    /// The file is not a whole block: `what` says where it stops checking out.
    Corrupt {
        what: String,
    },
    Undecodable(Undecodable),
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read the block: {e}"),
            Self::Corrupt { what } => write!(f, "the block does not check out: {what}"),
            Self::Undecodable(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BlockError {}

impl From<io::Error> for BlockError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

fn corrupt(what: impl Into<String>) -> BlockError {
    BlockError::Corrupt { what: what.into() }
}

/// Where a column's frame is in the file.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    len: u32,
}

/// A series of a block: its labels and where its columns are.
#[derive(Debug, Clone)]
pub struct Entry {
    pub labels: Labels,
    pub at: Locator,
}

/// Where a series' columns are in its block: what a read that found the series keeps until it
/// reads its samples (a long read over every series of weeks of blocks would otherwise hold
/// every block's labels at once).
#[derive(Debug, Clone, Copy)]
pub struct Locator {
    /// The value column's span, flattened (16 bytes where nested spans would take 24).
    offset: u64,
    len: u32,
    /// The timestamp column's number.
    times: u32,
}

impl Locator {
    /// The series' place in its block (unique in the block).
    pub fn key(&self) -> u64 {
        self.offset
    }

    fn values(&self) -> Span {
        Span {
            offset: self.offset,
            len: self.len,
        }
    }
}

/// What reads of many series reuse: the bytes of the last frame read, the last value column
/// decoded, the timestamp columns decoded so far (the series of one target share theirs,
/// so a read of a target's thousand series decodes its timestamps once a block), and per block
/// the bytes read ahead of the last value column (by [`Scratch::reading_ahead`] only: a read
/// of one series would read 64 KiB for its 2). Timestamp columns are dropped past 2 MiB of
/// timestamps, to bound what it holds.
#[derive(Default)]
pub struct Scratch {
    bytes: Vec<u8>,
    values: Vec<f64>,
    times: HashMap<(u64, u32), Vec<i64>>,
    times_held: usize,
    /// Per block, where the bytes read ahead start, and them: a block's value columns are
    /// written one after another in the order its series are read, so one read of 64 KiB
    /// serves dozens of columns (a read of a week of 16,000 series made 160,000 reads a
    /// column at a time).
    ahead: HashMap<u64, (u64, Vec<u8>)>,
    /// Bytes read at once past a value column (0: none).
    ahead_bytes: u64,
}

impl Scratch {
    /// A scratch for reads of many series in a block's order (a query's, a compaction's):
    /// value columns are read 64 KiB at a time.
    pub fn reading_ahead() -> Scratch {
        Scratch {
            ahead_bytes: Self::AHEAD,
            ..Scratch::default()
        }
    }

    /// 2 MiB of timestamps.
    const TIMES_HELD: usize = 1 << 18;
    /// Bytes read ahead at once, per block.
    const AHEAD: u64 = 64 << 10;
    /// Blocks read ahead at once (4 MiB).
    const AHEAD_BLOCKS: usize = 64;
}

/// An open block: its index in memory, its columns read on demand.
#[derive(Debug)]
pub struct Block {
    /// Unique in the process (caches of decoded series key on it).
    id: u64,
    path: PathBuf,
    file: File,
    meta: Meta,
    bytes: u64,
    times: Vec<Span>,
    /// Each metric name's series frame.
    names: HashMap<String, Span>,
}

/// Samples of one series, in time order.
pub type Samples = Vec<(i64, f64)>;

/// Writes a block of `series` (each sorted by time, none empty) into `dir`, atomically.
pub fn write(
    dir: &Path,
    meta: Meta,
    series: impl IntoIterator<Item = (Labels, Samples)>,
) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = (0..)
        .map(|n| dir.join(meta.file_name(n)))
        .find(|p| !p.exists())
        .expect("a free name");
    let tmp = path.with_extension("tmp");
    let mut out = io::BufWriter::new(File::create(&tmp)?);
    out.write_all(MAGIC)?;
    let mut offset = MAGIC.len() as u64;
    let mut put = |out: &mut io::BufWriter<File>, column: &[u8]| -> io::Result<Span> {
        let mut framed = Vec::with_capacity(column.len() + 8);
        frame(&mut framed, column);
        out.write_all(&framed)?;
        let span = Span {
            offset,
            len: column.len() as u32,
        };
        offset += framed.len() as u64;
        Ok(span)
    };
    let mut time_columns: HashMap<Vec<i64>, usize> = HashMap::new();
    let mut times = Vec::new();
    let mut by_name: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (labels, samples) in series {
        let (ts, vs): (Vec<i64>, Vec<f64>) = samples.into_iter().unzip();
        let t = match time_columns.get(&ts) {
            Some(&t) => t,
            None => {
                times.push(put(&mut out, &chunk::encode_times(&ts))?);
                time_columns.insert(ts, times.len() - 1);
                times.len() - 1
            }
        };
        let values = put(&mut out, &chunk::encode_values(&vs))?;
        let frame = by_name
            .entry(labels.name().unwrap_or_default().to_owned())
            .or_default();
        put_labels(frame, &labels);
        put_varint(frame, t as u64);
        put_varint(frame, values.offset);
        put_varint(frame, u64::from(values.len));
    }
    let mut names = Vec::with_capacity(by_name.len());
    for (name, frame) in by_name {
        names.push((name, put(&mut out, &frame)?));
    }
    let mut index = Vec::new();
    put_varint(&mut index, zigzag(meta.min_t));
    put_varint(&mut index, zigzag(meta.max_t));
    put_varint(&mut index, meta.resolution_ms as u64);
    put_varint(&mut index, times.len() as u64);
    for span in &times {
        put_varint(&mut index, span.offset);
        put_varint(&mut index, u64::from(span.len));
    }
    put_varint(&mut index, names.len() as u64);
    for (name, span) in &names {
        put_bytes(&mut index, name.as_bytes());
        put_varint(&mut index, span.offset);
        put_varint(&mut index, u64::from(span.len));
    }
    let index_at = offset;
    let mut framed = Vec::with_capacity(index.len() + 8);
    frame(&mut framed, &index);
    out.write_all(&framed)?;
    out.write_all(&index_at.to_le_bytes())?;
    out.write_all(END)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(path)
}

impl Block {
    /// Opens the block at `path`, checking its index and every column's CRC.
    pub fn open(path: &Path) -> Result<Self, BlockError> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let named = Meta::from_file_name(name).ok_or_else(|| corrupt("not a block's name"))?;
        let file = File::open(path)?;
        let bytes = file.metadata()?.len();
        if bytes < (MAGIC.len() + 16) as u64 {
            return Err(corrupt(format!("{bytes} bytes: shorter than a block")));
        }
        let mut head = [0; 8];
        file.read_exact_at(&mut head, 0)?;
        let mut footer = [0; 16];
        file.read_exact_at(&mut footer, bytes - 16)?;
        if &head != MAGIC || &footer[8..] != END {
            return Err(corrupt("no block header or footer (a truncated file?)"));
        }
        let index_at = u64::from_le_bytes(footer[..8].try_into().expect("8 bytes"));
        if index_at >= bytes - 16 {
            return Err(corrupt("the footer points past the file"));
        }
        let mut index = vec![0; (bytes - 16 - index_at) as usize];
        file.read_exact_at(&mut index, index_at)?;
        let mut rest = index.as_slice();
        let payload = unframe(&mut rest).ok_or_else(|| corrupt("the index's CRC"))?;
        let block = Self::parse_index(payload, path, file, bytes)
            .ok_or_else(|| corrupt("the index does not parse"))?;
        if block.meta != named {
            return Err(corrupt("the index and the file name disagree"));
        }
        let inside = |s: &Span| s.offset + 8 + u64::from(s.len) <= index_at;
        if !block.times.iter().chain(block.names.values()).all(inside) {
            return Err(corrupt("a frame points past the columns"));
        }
        for span in &block.times {
            block.frame(*span)?;
        }
        let mut bytes = Vec::new();
        for name in block.names.keys() {
            for entry in block.entries(name)? {
                if !inside(&entry.at.values()) {
                    return Err(corrupt("a column points past the columns"));
                }
                block.frame_into(entry.at.values(), &mut bytes)?;
            }
        }
        Ok(block)
    }

    fn parse_index(mut b: &[u8], path: &Path, file: File, bytes: u64) -> Option<Self> {
        let meta = Meta {
            min_t: unzigzag(get_varint(&mut b)?),
            max_t: unzigzag(get_varint(&mut b)?),
            resolution_ms: i64::try_from(get_varint(&mut b)?).ok()?,
        };
        let span = |b: &mut &[u8]| -> Option<Span> {
            let offset = get_varint(b)?;
            let len = u32::try_from(get_varint(b)?)
                .ok()
                .filter(|&l| l <= MAX_FRAME)?;
            Some(Span { offset, len })
        };
        let n = usize::try_from(get_varint(&mut b)?).ok()?;
        let mut times = Vec::with_capacity(n.min(b.len()));
        for _ in 0..n {
            times.push(span(&mut b)?);
        }
        let n = usize::try_from(get_varint(&mut b)?).ok()?;
        let mut names = HashMap::with_capacity(n.min(b.len()));
        for _ in 0..n {
            let name = String::from_utf8(get_bytes(&mut b)?.to_vec()).ok()?;
            names.insert(name, span(&mut b)?);
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        b.is_empty().then(|| Self {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            path: path.to_path_buf(),
            file,
            meta,
            bytes,
            times,
            names,
        })
    }

    /// Reads and checks a frame.
    fn frame(&self, span: Span) -> Result<Vec<u8>, BlockError> {
        let mut framed = Vec::new();
        self.frame_into(span, &mut framed)?;
        framed.drain(..8);
        Ok(framed)
    }

    /// Reads and checks a frame into `buf` (its allocation reused); the payload.
    fn frame_into<'b>(&self, span: Span, buf: &'b mut Vec<u8>) -> Result<&'b [u8], BlockError> {
        buf.clear();
        buf.resize(span.len as usize + 8, 0);
        self.file.read_exact_at(buf, span.offset)?;
        let mut rest = buf.as_slice();
        unframe(&mut rest).ok_or_else(|| corrupt(format!("the column at byte {}", span.offset)))
    }

    /// Reads and checks a frame through the bytes read ahead in this block (see [`Scratch`]),
    /// reading `ahead_bytes` at once when they do not hold it; the payload.
    fn frame_ahead<'s>(
        &self,
        span: Span,
        ahead_bytes: u64,
        ahead: &'s mut HashMap<u64, (u64, Vec<u8>)>,
    ) -> Result<&'s [u8], BlockError> {
        let need = u64::from(span.len) + 8;
        if ahead.len() >= Scratch::AHEAD_BLOCKS && !ahead.contains_key(&self.id) {
            ahead.clear();
        }
        let (at, bytes) = ahead.entry(self.id).or_default();
        let held = *at..*at + bytes.len() as u64;
        if !(held.contains(&span.offset) && span.offset + need <= held.end) {
            let len = need
                .max(ahead_bytes)
                .min(self.bytes.saturating_sub(span.offset))
                .max(need);
            bytes.clear();
            bytes.resize(len as usize, 0);
            self.file.read_exact_at(bytes, span.offset)?;
            *at = span.offset;
        }
        let from = (span.offset - *at) as usize;
        let mut frame = &bytes[from..from + need as usize];
        unframe(&mut frame).ok_or_else(|| corrupt(format!("the column at byte {}", span.offset)))
    }

    pub fn meta(&self) -> Meta {
        self.meta
    }

    /// This open block's number in the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The metric names of the block's series.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    /// The series named `name` (none when the block has no such name), read from disk.
    pub fn entries(&self, name: &str) -> Result<Vec<Entry>, BlockError> {
        let frame = self.series_frame(name)?;
        let mut b = frame.as_slice();
        let mut entries = Vec::new();
        let mut strings = Strings::new();
        while let Some((mut raw, at)) = self.next_series(&mut b)? {
            let labels = get_labels(&mut raw, &mut strings)
                .ok_or_else(|| corrupt(format!("the series of {name:?} do not parse")))?;
            entries.push(Entry { labels, at });
        }
        Ok(entries)
    }

    /// The frame listing the series named `name` (empty when the block has none), read from
    /// disk; [`Block::next_series`] walks it.
    pub fn series_frame(&self, name: &str) -> Result<Vec<u8>, BlockError> {
        match self.names.get(name) {
            Some(&span) => self.frame(span),
            None => Ok(Vec::new()),
        }
    }

    /// The next series of a frame of [`Block::series_frame`]: its labels as written
    /// (`encoding::put_labels`) and where it is; none at the frame's end.
    pub fn next_series<'f>(
        &self,
        b: &mut &'f [u8],
    ) -> Result<Option<(&'f [u8], Locator)>, BlockError> {
        if b.is_empty() {
            return Ok(None);
        }
        (|| {
            let labels = split_labels(b)?;
            let times = u32::try_from(get_varint(b)?)
                .ok()
                .filter(|&t| (t as usize) < self.times.len())?;
            let offset = get_varint(b)?;
            let len = u32::try_from(get_varint(b)?)
                .ok()
                .filter(|&l| l <= MAX_FRAME)?;
            Some(Some((labels, Locator { offset, len, times })))
        })()
        .ok_or_else(|| corrupt("a series frame does not parse"))
    }

    /// The samples of the series at `at` (one of this block's).
    pub fn samples(&self, at: Locator, scratch: &mut Scratch) -> Result<Samples, BlockError> {
        let mut samples = Vec::new();
        self.append(at, (i64::MIN, i64::MAX), scratch, &mut samples)?;
        Ok(samples)
    }

    /// Appends the samples of the series at `at` (one of this block's) from `min_t` to `max_t`
    /// to `out`, decoding through `scratch`; on an error `out` is left as it was.
    pub fn append(
        &self,
        at: Locator,
        (min_t, max_t): (i64, i64),
        scratch: &mut Scratch,
        out: &mut Samples,
    ) -> Result<(), BlockError> {
        let undecodable = BlockError::Undecodable;
        if !scratch.times.contains_key(&(self.id, at.times)) {
            let span = self.times[at.times as usize];
            let mut ts = Vec::new();
            chunk::decode_into(self.frame_into(span, &mut scratch.bytes)?, &mut ts)
                .map_err(undecodable)?;
            if scratch.times_held + ts.len() > Scratch::TIMES_HELD {
                scratch.times.clear();
                scratch.times_held = 0;
            }
            scratch.times_held += ts.len();
            scratch.times.insert((self.id, at.times), ts);
        }
        let ts = &scratch.times[&(self.id, at.times)];
        let from = ts.partition_point(|&t| t < min_t);
        let to = ts.partition_point(|&t| t <= max_t).max(from);
        let bytes = self.frame_ahead(at.values(), scratch.ahead_bytes, &mut scratch.ahead)?;
        chunk::decode_into(bytes, &mut scratch.values).map_err(undecodable)?;
        if scratch.values.len() != ts.len() {
            return Err(corrupt(
                "a value column and its timestamps differ in length",
            ));
        }
        out.extend(
            ts[from..to]
                .iter()
                .copied()
                .zip(scratch.values[from..to].iter().copied()),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("obs-block-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn series(job: &str, n: i64) -> (Labels, Samples) {
        let labels = Labels::from_pairs(&[("__name__", "up"), ("job", job)]);
        (labels, (0..n).map(|i| (i * 15_000, i as f64)).collect())
    }

    const META: Meta = Meta {
        min_t: 0,
        max_t: 7_200_000,
        resolution_ms: 0,
    };

    #[test]
    fn a_block_round_trips_and_shares_timestamp_columns() {
        let d = dir("round-trip");
        let path = write(
            &d,
            META,
            [series("a", 480), series("b", 480), series("c", 3)],
        )
        .unwrap();
        let block = Block::open(&path).unwrap();
        assert_eq!(block.meta(), META);
        assert_eq!(block.times.len(), 2, "a and b share one timestamp column");
        let found = block.entries("up").unwrap();
        assert_eq!(found.len(), 3);
        let mut scratch = Scratch::default();
        assert_eq!(found[1].labels.get("job"), Some("b"));
        assert_eq!(
            block.samples(found[1].at, &mut scratch).unwrap(),
            series("b", 480).1
        );
        let mut part = vec![(0, 0.5)];
        block
            .append(found[0].at, (15_000, 45_000), &mut scratch, &mut part)
            .unwrap();
        assert_eq!(
            part,
            [(0, 0.5), (15_000, 1.0), (30_000, 2.0), (45_000, 3.0)]
        );
        // Read ahead, in the block's order and back: the same samples.
        let mut ahead = Scratch::reading_ahead();
        for e in found.iter().chain(found.iter().rev()) {
            let job = e.labels.get("job").unwrap();
            let n = if job == "c" { 3 } else { 480 };
            assert_eq!(block.samples(e.at, &mut ahead).unwrap(), series(job, n).1);
        }
        assert!(block.entries("down").unwrap().is_empty());
        assert_eq!(block.names().collect::<Vec<_>>(), ["up"]);
        assert!(!d.join(META.file_name(0)).with_extension("tmp").exists());
        let again = write(&d, META, [series("a", 2)]).unwrap();
        assert_eq!(
            again,
            d.join("0-7200000-0.1.block"),
            "a second block of the same range"
        );
        assert_eq!(Block::open(&again).unwrap().meta(), META);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn truncation_and_flipped_bytes_are_caught_at_open() {
        let d = dir("damage");
        let path = write(&d, META, [series("a", 480), series("b", 100)]).unwrap();
        let whole = fs::read(&path).unwrap();
        for (what, bytes) in [
            ("truncated in the middle", whole[..whole.len() / 2].to_vec()),
            ("empty", Vec::new()),
            ("a flipped byte in a column", {
                let mut b = whole.clone();
                b[40] ^= 0x10;
                b
            }),
            ("a flipped byte in the index", {
                let mut b = whole.clone();
                let at = b.len() - 30;
                b[at] ^= 0x10;
                b
            }),
        ] {
            fs::write(&path, &bytes).unwrap();
            assert!(Block::open(&path).is_err(), "{what}: not caught");
        }
        assert!(Meta::from_file_name("0-1-0.block").is_some());
        assert!(Meta::from_file_name("0-1.block").is_none());
        assert!(Meta::from_file_name("0-1-0.x.block").is_none());
        let _ = fs::remove_dir_all(&d);
    }
}
