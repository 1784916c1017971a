//! The blocks on disk as a set (Prometheus' `DB` over its blocks): opening them at start and
//! setting aside those that do not check out, where the head's blocks end (a small mark file,
//! so a restart knows which of the replayed head's samples are already in blocks), retention,
//! and the jobs that write, merge and downsample blocks outside the store's lock.
//!
//! One process holds a storage directory at a time (an advisory lock on `DIR/lock`): a second
//! collector, or an import while the collector runs, is refused rather than interleaved.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::block::{self, Block, BlockError, Locator, Meta, Samples, Scratch};
use super::compact::{self, Retention};
use crate::labels::Labels;

/// A file found at start that is not a readable block, renamed `*.corrupt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub path: PathBuf,
    pub reason: String,
}

/// The blocks of a storage directory.
#[derive(Debug)]
pub struct Blocks {
    dir: PathBuf,
    mark: PathBuf,
    list: Vec<Arc<Block>>,
    persisted_ms: Option<i64>,
    retention: Retention,
    read_errors: Arc<AtomicU64>,
    write_failures: u64,
    deleted: u64,
    set_aside: Vec<SetAside>,
    decoded: Mutex<Decoded>,
    _lock: File,
}

/// What was recently read from blocks: a range query asks for the same block's series at
/// every step.
#[derive(Debug)]
struct Decoded {
    /// A block's frame of the series of a metric name; weighed by bytes (at most 32 MiB).
    frames: Bounded<(u64, String), Vec<u8>>,
    /// A series' samples; weighed by samples (16 bytes each: at most 32 MiB).
    series: Bounded<(u64, u64), Samples>,
}

impl Default for Decoded {
    fn default() -> Self {
        Self {
            frames: Bounded::new(32 << 20),
            series: Bounded::new(2 << 20),
        }
    }
}

/// A map that is cleared when what it holds would weigh more than its limit.
#[derive(Debug)]
struct Bounded<K, V> {
    map: HashMap<K, Arc<V>>,
    weight: usize,
    limit: usize,
}

impl<K: std::hash::Hash + Eq, V> Bounded<K, V> {
    fn new(limit: usize) -> Self {
        Self {
            map: HashMap::new(),
            weight: 0,
            limit,
        }
    }

    fn insert(&mut self, key: K, value: Arc<V>, weight: usize) {
        if self.weight + weight > self.limit {
            self.map.clear();
            self.weight = 0;
        }
        self.weight += weight;
        self.map.insert(key, value);
    }
}

/// Why a storage directory cannot be opened.
#[derive(Debug)]
pub enum OpenError {
    Io(io::Error),
    /// Another process holds the directory.
    InUse(PathBuf),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => e.fmt(f),
            Self::InUse(dir) => write!(
                f,
                "{} is in use by another process (a running collector?)",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl Blocks {
    /// Opens the blocks under `root` (`root/blocks`), taking the directory's lock; files that
    /// do not check out are renamed `*.corrupt` and listed in [`Blocks::set_aside`].
    pub fn open(root: &Path, retention: Retention) -> Result<Self, OpenError> {
        fs::create_dir_all(root)?;
        let lock = File::create(root.join("lock"))?;
        if lock.try_lock().is_err() {
            return Err(OpenError::InUse(root.to_path_buf()));
        }
        let dir = root.join("blocks");
        fs::create_dir_all(&dir)?;
        let mut list = Vec::new();
        let mut set_aside = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            match path.extension().and_then(|e| e.to_str()) {
                // A block whose writing did not finish.
                Some("tmp") => fs::remove_file(&path)?,
                Some("block") => match Block::open(&path) {
                    Ok(b) => list.push(Arc::new(b)),
                    Err(e) => {
                        let aside = path.with_extension("corrupt");
                        fs::rename(&path, &aside)?;
                        set_aside.push(SetAside {
                            path: aside,
                            reason: e.to_string(),
                        });
                    }
                },
                _ => {}
            }
        }
        sort(&mut list);
        let mark = root.join("head");
        let persisted_ms = fs::read_to_string(&mark)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Ok(Self {
            dir,
            mark,
            list,
            persisted_ms,
            retention,
            read_errors: Arc::default(),
            write_failures: 0,
            deleted: 0,
            set_aside,
            decoded: Mutex::default(),
            _lock: lock,
        })
    }

    /// Where the head's blocks end: the head's samples before it are in blocks.
    pub fn persisted_ms(&self) -> Option<i64> {
        self.persisted_ms
    }

    fn mark_persisted(&mut self, t: i64) -> io::Result<()> {
        let tmp = self.mark.with_extension("tmp");
        fs::write(&tmp, t.to_string())?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, &self.mark)?;
        self.persisted_ms = Some(t);
        Ok(())
    }

    /// Records that the head's window up to `t` had no samples: nothing to write.
    pub fn skip_to(&mut self, t: i64) {
        if self.mark_persisted(t).is_err() {
            self.write_failures += 1;
        }
    }

    /// Where the oldest block starts.
    pub fn oldest_ms(&self) -> Option<i64> {
        self.list.first().map(|b| b.meta().min_t)
    }

    /// The blocks holding samples in `[min_t, max_t]`, oldest first.
    pub fn overlapping(&self, min_t: i64, max_t: i64) -> impl Iterator<Item = &Arc<Block>> {
        self.list
            .iter()
            .filter(move |b| b.meta().max_t > min_t && b.meta().min_t <= max_t)
    }

    pub fn all(&self) -> &[Arc<Block>] {
        &self.list
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Bytes the blocks take on disk.
    pub fn bytes(&self) -> u64 {
        self.list.iter().map(|b| b.bytes()).sum()
    }

    /// Files set aside at start.
    pub fn set_aside(&self) -> &[SetAside] {
        &self.set_aside
    }

    /// Block writes that failed (a full disk): the head keeps the samples and tries again.
    pub fn write_failures(&self) -> u64 {
        self.write_failures
    }

    /// Reads of a block that failed since the start (a file damaged after it was opened).
    pub fn read_errors(&self) -> u64 {
        self.read_errors.load(Ordering::Relaxed)
    }

    /// The counter of failed reads, for a snapshot's reads to count in.
    pub fn read_errors_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.read_errors)
    }

    /// The frame of the series of `block` named `name` ([`Block::series_frame`]), read once
    /// for a while (a bounded cache); a read that fails is counted.
    pub fn series_frame(&self, block: &Block, name: &str) -> Option<Arc<Vec<u8>>> {
        self.cached(
            |d| &mut d.frames,
            (block.id(), name.to_owned()),
            || block.series_frame(name),
            Vec::len,
        )
    }

    /// The samples of the series at `at`, one of `block`'s, decoded once for a while; a read
    /// that fails is counted.
    pub fn samples(&self, block: &Block, at: Locator) -> Option<Arc<Samples>> {
        self.cached(
            |d| &mut d.series,
            (block.id(), at.key()),
            || block.samples(at, &mut Scratch::default()),
            Vec::len,
        )
    }

    /// `key` from the cache `pick` chooses, else `read` (without the cache's lock) and kept.
    fn cached<K: std::hash::Hash + Eq, V>(
        &self,
        pick: impl Fn(&mut Decoded) -> &mut Bounded<K, V>,
        key: K,
        read: impl FnOnce() -> Result<V, BlockError>,
        weigh: impl FnOnce(&V) -> usize,
    ) -> Option<Arc<V>> {
        if let Some(found) = pick(&mut self.decoded()).map.get(&key) {
            return Some(Arc::clone(found));
        }
        let Ok(value) = read() else {
            self.read_errors.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let weight = weigh(&value);
        let value = Arc::new(value);
        pick(&mut self.decoded()).insert(key, Arc::clone(&value), weight);
        Some(value)
    }

    fn decoded(&self) -> std::sync::MutexGuard<'_, Decoded> {
        self.decoded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks deleted by retention since the start.
    pub fn deleted(&self) -> u64 {
        self.deleted
    }

    /// Deletes the blocks past the retention at `now` (`log_bytes`: the head's log, which
    /// counts toward the size).
    pub fn apply_retention(&mut self, now: i64, log_bytes: u64) {
        let mut gone = compact::expired(&self.list, now, &self.retention, log_bytes);
        gone.sort_unstable_by(|a, b| b.cmp(a));
        for i in gone {
            let block = self.list.remove(i);
            // An open reader keeps its file handle: deleting under it is safe on Unix.
            if fs::remove_file(block.path()).is_ok() {
                self.deleted += 1;
            }
        }
    }

    /// A job writing part of the head's window `meta` from `series`; `resume` is the head's
    /// slot where the next part starts (`None`: this part ends the window).
    pub fn cut(&self, meta: Meta, series: Vec<(Labels, Samples)>, resume: Option<usize>) -> Job {
        Job {
            dir: self.dir.clone(),
            meta,
            work: Work::Cut(series, resume),
        }
    }

    /// Writes `series` (samples sorted) as raw blocks, one per day, beside what is there
    /// (compaction merges overlaps). All or nothing: on an error, the blocks this import
    /// wrote are deleted.
    pub fn import(
        &mut self,
        series: impl IntoIterator<Item = (Labels, Samples)>,
    ) -> Result<Vec<Meta>, BlockError> {
        let day = compact::LEVELS[compact::LEVELS.len() - 1];
        let mut days: BTreeMap<i64, Vec<(Labels, Samples)>> = BTreeMap::new();
        for (labels, samples) in series {
            for part in samples.chunk_by(|a, b| a.0.div_euclid(day) == b.0.div_euclid(day)) {
                let d = part[0].0.div_euclid(day) * day;
                days.entry(d)
                    .or_default()
                    .push((labels.clone(), part.to_vec()));
            }
        }
        let mut written: Vec<Arc<Block>> = Vec::new();
        for (d, part) in days {
            let meta = Meta {
                min_t: d,
                max_t: d + day,
                resolution_ms: 0,
            };
            let opened = block::write(&self.dir, meta, part)
                .map_err(BlockError::Io)
                .and_then(|path| Block::open(&path));
            match opened {
                Ok(b) => written.push(Arc::new(b)),
                Err(e) => {
                    for b in written {
                        let _ = fs::remove_file(b.path());
                    }
                    return Err(e);
                }
            }
        }
        let metas = written.iter().map(|b| b.meta()).collect();
        self.list.extend(written);
        sort(&mut self.list);
        Ok(metas)
    }

    /// The merge or downsampling due at `now`, if any.
    pub fn plan_rewrite(&self, now: i64) -> Option<Job> {
        let persisted = self.persisted_ms.unwrap_or(i64::MIN);
        let (meta, sources) = compact::plan_rewrite(&self.list, persisted, now, &self.retention)?;
        Some(Job {
            dir: self.dir.clone(),
            meta,
            work: Work::Rewrite(sources),
        })
    }

    /// Installs what a job wrote: the new block in, the blocks it replaces out (their files
    /// deleted), and for the last part of a cut of the head, the mark moved past it.
    pub fn finish(&mut self, finished: Finished) -> Result<Meta, BlockError> {
        let block = match finished.result {
            Ok(block) => block,
            Err(e) => {
                self.write_failures += 1;
                return Err(e);
            }
        };
        let meta = block.meta();
        if finished.cut == Some(None) {
            if let Err(e) = self.mark_persisted(meta.max_t) {
                // Without the mark a restart would cut the window again: harmless (merged).
                self.write_failures += 1;
                self.list.push(Arc::new(block));
                return Err(BlockError::Io(e));
            }
        }
        for old in &finished.replaces {
            self.list.retain(|b| !Arc::ptr_eq(b, old));
            let _ = fs::remove_file(old.path());
        }
        self.list.push(Arc::new(block));
        sort(&mut self.list);
        Ok(meta)
    }
}

/// Blocks in time order, raw before downsampled: what the store reads first wins a duplicate
/// timestamp, and [`Blocks::oldest_ms`] is the first.
fn sort(list: &mut [Arc<Block>]) {
    list.sort_by_key(|b| (b.meta().min_t, b.meta().resolution_ms));
}

enum Work {
    Cut(Vec<(Labels, Samples)>, Option<usize>),
    Rewrite(Vec<Arc<Block>>),
}

/// Writing a block, done without the store's lock (it reads only its own data and immutable
/// blocks); [`Blocks::finish`] installs the result.
pub struct Job {
    dir: PathBuf,
    meta: Meta,
    work: Work,
}

/// A job's outcome.
pub struct Finished {
    /// For a cut of the head: where its next part starts (`None`: the window is done).
    cut: Option<Option<usize>>,
    replaces: Vec<Arc<Block>>,
    result: Result<Block, BlockError>,
}

impl Finished {
    /// For a cut of the head that was written: where its next part starts.
    pub fn cut_resume(&self) -> Option<Option<usize>> {
        self.cut.filter(|_| self.result.is_ok())
    }
}

impl Job {
    pub fn meta(&self) -> Meta {
        self.meta
    }

    /// What the job does, for a log line.
    pub fn kind(&self) -> &'static str {
        match (&self.work, self.meta.resolution_ms) {
            (Work::Cut(..), _) => "head block",
            (Work::Rewrite(_), 0) => "merge",
            (Work::Rewrite(_), _) => "downsampling",
        }
    }

    pub fn run(self) -> Finished {
        match self.work {
            Work::Cut(series, resume) => Finished {
                cut: Some(resume),
                replaces: Vec::new(),
                result: block::write(&self.dir, self.meta, series)
                    .map_err(BlockError::Io)
                    .and_then(|path| Block::open(&path)),
            },
            Work::Rewrite(sources) => Finished {
                cut: None,
                result: compact::rewrite(&self.dir, self.meta, &sources),
                replaces: sources,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_of_a_directory_is_refused_until_the_first_goes() {
        let dir = std::env::temp_dir().join(format!("obs-blocks-lock-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let first = Blocks::open(&dir, Retention::default()).unwrap();
        let second = Blocks::open(&dir, Retention::default()).unwrap_err();
        assert!(matches!(second, OpenError::InUse(_)), "{second}");
        assert!(second.to_string().contains("in use by another process"));
        drop(first);
        assert!(Blocks::open(&dir, Retention::default()).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }
}
