//! The time-series store, divided as Prometheus' `tsdb/`: the head (this file: one bounded
//! ring of samples per series, in memory), its write-ahead log ([`wal`]), the blocks on disk
//! ([`block`]: a file's layout and index; [`chunk`]: the compressed columns; [`blocks`]: the
//! set of them, its lock and retention), compaction and downsampling ([`compact`]), and what
//! readers see ([`querier::Select`], over the head and the blocks alike, or over a
//! [`snapshot::Snapshot`] that long reads take so that they hold no lock).
//!
//! Without a directory the head is all there is: a series keeps the samples its longest rule
//! range needs (plus a margin). With one, the head is cut into a block every few minutes and
//! keeps only the part of the rules' ranges that is recent; older ranges read blocks. A series
//! always keeps its newest sample, which instant selectors look back to for up to 5 minutes; a
//! series whose newest sample is older than that (and in a block) leaves the head. Label
//! strings are interned, label sets shared. A series that disappears from its target gets a
//! stale marker, as in Prometheus, so instant queries stop returning it at once.

pub mod block;
pub mod blocks;
pub mod chunk;
pub mod compact;
mod encoding;
pub mod querier;
pub mod snapshot;
pub mod wal;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use crate::labels::Labels;
use block::{Block, Meta, Samples};
use blocks::{Blocks, Finished, Job, OpenError};
use compact::{cut_window, Retention};
use querier::Select;
use wal::{Record, Replay, Wal};

/// With blocks on disk, the head keeps at most this much of a rule's range in memory (beyond,
/// the range is read from blocks).
const HEAD_KEEP_MS: i64 = 10 * 60_000;

/// A head block is written in parts of at most this many series.
const CUT_PART: usize = 20_000;

/// How often the log starts a new segment (the oldest are deleted once the head no longer
/// covers them).
const LOG_SEGMENT_MS: i64 = 3_600_000;

/// Prometheus' StaleNaN: a NaN with a specific payload, distinct from an ordinary NaN value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// How far back an instant selector looks for a sample (Prometheus' default lookback delta).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Whether `v` is a stale marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The stale marker value.
pub fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// One series: its labels and its samples, oldest first.
#[derive(Debug)]
pub struct Series {
    pub labels: Labels,
    pub samples: VecDeque<(i64, f64)>,
    id: u64,
}

/// A handle to a series that stays cheap to use across scrapes (checked against removal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesRef {
    slot: usize,
    id: u64,
}

impl SeriesRef {
    /// No series: the store was at its series limit. Appending through it does nothing.
    const REFUSED: Self = Self {
        slot: usize::MAX,
        id: 0,
    };

    /// Whether the store refused to create the series (its limit was reached).
    pub fn is_refused(self) -> bool {
        self == Self::REFUSED
    }
}

/// The default of [`Store::set_max_series`]: at about 1.4 KB a series in memory, some 700 MB
/// before the limit holds.
pub const DEFAULT_MAX_SERIES: usize = 500_000;

/// All series, with indexes by label set and by metric name.
#[derive(Debug)]
pub struct Store {
    slots: Vec<Option<Series>>,
    free: Vec<usize>,
    index: HashMap<Labels, usize>,
    by_name: HashMap<Arc<str>, Vec<usize>>,
    interner: HashSet<Arc<str>>,
    range_retention_ms: i64,
    samples: usize,
    next_id: u64,
    /// Prometheus 2.x selection: ranges and the lookback closed on the left too.
    pub left_closed: bool,
    /// At most this many series: a label that churns (a request id, a timestamp in a label)
    /// is bounded here rather than by the machine's memory.
    max_series: usize,
    /// New series refused since the start because the limit was reached.
    refused_series: u64,
    /// The write-ahead log, when the head is kept on disk.
    log: Option<Wal>,
    /// Writes to the log that failed (a full disk): the head kept those samples.
    log_failures: u64,
    /// The blocks on disk, when history is kept.
    disk: Option<Blocks>,
    /// The head holds every sample after this time that the collector took (older ones left
    /// it for blocks): a range that starts later needs no block. `i64::MIN` until a sample
    /// leaves.
    head_from: i64,
    /// The head's slot where the next part of the window being cut starts.
    cut_next: usize,
}

impl Store {
    /// A store keeping `range_retention_ms` of samples per series (the newest one always).
    pub fn new(range_retention_ms: i64) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            by_name: HashMap::new(),
            interner: HashSet::new(),
            range_retention_ms,
            samples: 0,
            next_id: 0,
            left_closed: false,
            max_series: DEFAULT_MAX_SERIES,
            refused_series: 0,
            log: None,
            log_failures: 0,
            disk: None,
            head_from: i64::MIN,
            cut_next: 0,
        }
    }

    /// A store kept in `root`: its blocks (`root/blocks`, kept as `retention` says) and its
    /// head's log (`root/wal`), replayed first (samples older than the head keeps are dropped
    /// as they arrive), then appends are logged.
    pub fn open(
        root: &Path,
        range_retention_ms: i64,
        max_series: usize,
        retention: Retention,
        now_ms: i64,
    ) -> Result<(Self, Replay), OpenError> {
        let mut store = Self::new(range_retention_ms);
        store.set_max_series(max_series);
        store.disk = Some(Blocks::open(root, retention)?);
        // A segment's ids are its process' own: each segment defines every id it uses.
        let mut ids: HashMap<u64, SeriesRef> = HashMap::new();
        let (mut log, replay) = Wal::open(&root.join("wal"), now_ms, |record| match record {
            Record::Series { id, labels } => {
                let labels = store.intern_labels(&labels);
                ids.insert(id, store.get_or_create(&labels));
            }
            Record::Samples { t, samples } => {
                // Nothing is removed during the replay: every handle stays valid.
                for (id, v) in samples {
                    if let Some(&r) = ids.get(&id) {
                        store.append_ref(r, t, v);
                    }
                }
            }
        })?;
        store.compact(now_ms);
        // The new segment stands alone: it starts with every series the head holds.
        for series in store.slots.iter().flatten() {
            log.series(series.id, &series.labels);
        }
        log.commit()?;
        store.log = Some(log);
        Ok((store, replay))
    }

    /// The blocks on disk, when history is kept.
    pub fn disk(&self) -> Option<&Blocks> {
        self.disk.as_ref()
    }

    /// Samples older than this leave the head (but a series' newest): what the rules' ranges
    /// need, and with blocks, no more than [`HEAD_KEEP_MS`] and nothing not yet in a block.
    fn head_cutoff(&self, t: i64) -> i64 {
        match &self.disk {
            None => t - self.range_retention_ms,
            // Samples at or after `persisted` are not in a block yet.
            Some(d) => (t - self.range_retention_ms.min(HEAD_KEEP_MS))
                .min(d.persisted_ms().map_or(i64::MIN, |p| p - 1)),
        }
    }

    /// The work on blocks due at `now` (deleting what retention drops is done here): the head's
    /// next window to write, else a merge or downsampling. Run the job without the store's
    /// lock, then give its outcome to [`Store::finish`].
    pub fn plan(&mut self, now: i64) -> Option<Job> {
        let log_bytes = self.log_bytes();
        let disk = self.disk.as_mut()?;
        disk.apply_retention(now, log_bytes);
        loop {
            let head_min_t = self
                .slots
                .iter()
                .flatten()
                .filter_map(|s| s.samples.front().map(|f| f.0))
                .min();
            let Some(meta) = cut_window(disk.persisted_ms(), head_min_t, now) else {
                return disk.plan_rewrite(now);
            };
            // In parts of at most CUT_PART series: a part's copy of the head is what a cut
            // adds to memory while it is written.
            let mut series: Vec<(Labels, Samples)> = Vec::new();
            let mut resume = None;
            for (slot, s) in self.slots.iter().enumerate().skip(self.cut_next) {
                if series.len() == CUT_PART {
                    resume = Some(slot);
                    break;
                }
                let Some(s) = s else { continue };
                let window = s.window(meta.min_t, meta.max_t - 1);
                if !window.is_empty() {
                    series.push((s.labels.clone(), window));
                }
            }
            if !series.is_empty() {
                return Some(disk.cut(meta, series, resume));
            }
            // Nothing (left) in the window: it is done.
            self.cut_next = 0;
            disk.skip_to(meta.max_t);
        }
    }

    /// Installs a job's outcome; the error says why a block could not be written (counted;
    /// the head keeps the samples and the cut is tried again).
    pub fn finish(&mut self, finished: Finished) -> Result<Meta, block::BlockError> {
        let resume = finished.cut_resume();
        let disk = self
            .disk
            .as_mut()
            .expect("a job comes from a store with blocks");
        let done = disk.finish(finished);
        if let (Ok(_), Some(resume)) = (&done, resume) {
            self.cut_next = resume.unwrap_or(0);
        }
        done
    }

    /// `labels` with their strings shared with the store's.
    fn intern_labels(&mut self, labels: &Labels) -> Labels {
        let pairs = labels
            .iter()
            .map(|(k, v)| (self.intern(k), self.intern(v)))
            .collect();
        Labels::from_arcs(pairs)
    }

    /// Writes what the log took since the last call (a scrape's samples: one write). A
    /// failure (a full disk) is counted and the samples stay in the head; the next commit
    /// tries again with its own.
    pub fn commit(&mut self) {
        if let Some(log) = &mut self.log {
            if log.commit().is_err() {
                self.log_failures += 1;
            }
        }
    }

    /// Holds at most `max` series from now on (new ones beyond are refused and counted;
    /// existing ones are kept until they go stale).
    pub fn set_max_series(&mut self, max: usize) {
        self.max_series = max;
    }

    /// The series limit.
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// New series refused since the start because the limit was reached.
    pub fn refused_series(&self) -> u64 {
        self.refused_series
    }

    /// How long series keep their samples.
    pub fn range_retention_ms(&self) -> i64 {
        self.range_retention_ms
    }

    /// Log writes that failed so far.
    pub fn log_failures(&self) -> u64 {
        self.log_failures
    }

    /// Bytes the log holds on disk (0 without one).
    pub fn log_bytes(&self) -> u64 {
        self.log.as_ref().map_or(0, Wal::disk_bytes)
    }

    /// The shared copy of `s`.
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(existing) = self.interner.get(s) {
            return Arc::clone(existing);
        }
        let shared: Arc<str> = Arc::from(s);
        self.interner.insert(Arc::clone(&shared));
        shared
    }

    /// The series for `labels`, created if needed; [`SeriesRef::is_refused`] when it would be
    /// new and the store holds [`Store::set_max_series`] series already (counted).
    pub fn get_or_create(&mut self, labels: &Labels) -> SeriesRef {
        if let Some(&slot) = self.index.get(labels) {
            let id = self.slots[slot].as_ref().map_or(0, |s| s.id);
            return SeriesRef { slot, id };
        }
        if self.index.len() >= self.max_series {
            self.refused_series += 1;
            return SeriesRef::REFUSED;
        }
        self.next_id += 1;
        let id = self.next_id;
        let series = Series {
            labels: labels.clone(),
            samples: VecDeque::with_capacity(4),
            id,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(series);
                slot
            }
            None => {
                self.slots.push(Some(series));
                self.slots.len() - 1
            }
        };
        self.index.insert(labels.clone(), slot);
        let name = self.intern(labels.name().unwrap_or_default());
        self.by_name.entry(name).or_default().push(slot);
        if let Some(log) = &mut self.log {
            log.series(id, labels);
        }
        SeriesRef { slot, id }
    }

    /// Appends a sample through a handle; `false` if the series was removed since.
    /// Timestamps must not go backwards within a series; older samples are ignored, as
    /// Prometheus rejects out-of-order samples.
    pub fn append_ref(&mut self, r: SeriesRef, t: i64, v: f64) -> bool {
        let cutoff = self.head_cutoff(t);
        self.head_from = self.head_from.max(cutoff);
        let Some(series) = self
            .slots
            .get_mut(r.slot)
            .and_then(Option::as_mut)
            .filter(|s| s.id == r.id)
        else {
            return false;
        };
        if let Some(&(last_t, last_v)) = series.samples.back() {
            if t < last_t || (t == last_t && (is_stale(v) || last_v.to_bits() == v.to_bits())) {
                return true;
            }
            if t == last_t {
                series.samples.pop_back();
                self.samples -= 1;
            }
        }
        series.samples.push_back((t, v));
        self.samples += 1;
        if let Some(log) = &mut self.log {
            log.sample(series.id, t, v);
        }
        while series.samples.len() > 1
            && series.samples.front().is_some_and(|&(st, _)| st <= cutoff)
        {
            series.samples.pop_front();
            self.samples -= 1;
        }
        true
    }

    /// Appends a sample to the series `labels` (a stale marker for an unknown series is dropped).
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) {
        if is_stale(v) && !self.index.contains_key(labels) {
            return;
        }
        let r = self.get_or_create(labels);
        self.append_ref(r, t, v);
    }

    /// Drops old samples, series whose newest sample is beyond the lookback, and unused
    /// interned strings.
    pub fn compact(&mut self, now: i64) {
        let cutoff = self.head_cutoff(now);
        self.head_from = self.head_from.max(cutoff);
        let persisted = self
            .disk
            .as_ref()
            .map_or(i64::MAX, |d| d.persisted_ms().unwrap_or(i64::MIN));
        // Gone from the head once beyond the lookback, the rules' ranges, and in a block.
        let gone_before =
            (now - LOOKBACK_MS - self.range_retention_ms).min(persisted.saturating_sub(1));
        let mut removed = Vec::new();
        for (slot, entry) in self.slots.iter_mut().enumerate() {
            let Some(series) = entry else { continue };
            while series.samples.len() > 1
                && series.samples.front().is_some_and(|&(t, _)| t <= cutoff)
            {
                series.samples.pop_front();
                self.samples -= 1;
            }
            if series.samples.back().is_none_or(|&(t, _)| t <= gone_before) {
                self.samples -= series.samples.len();
                self.index.remove(&series.labels);
                removed.push((slot, series.labels.name().unwrap_or_default().to_owned()));
                *entry = None;
            }
        }
        for (slot, name) in removed {
            if let Some(slots) = self.by_name.get_mut(name.as_str()) {
                slots.retain(|&s| s != slot);
                if slots.is_empty() {
                    self.by_name.remove(name.as_str());
                }
            }
            self.free.push(slot);
        }
        self.interner.retain(|s| Arc::strong_count(s) > 1);
        self.commit();
        if let Some(log) = &mut self.log {
            if now - log.segment_started_ms() >= LOG_SEGMENT_MS {
                // The head covers samples from `gone_before` on, and the blocks what is older
                // than `persisted`: older segments can go.
                let live = self.slots.iter().flatten().map(|s| (s.id, &s.labels));
                if log.rotate(now, gone_before, live).is_err() {
                    self.log_failures += 1;
                }
            }
        }
    }

    /// Series whose name is `name` (all series when `None`).
    pub fn series<'a>(&'a self, name: Option<&str>) -> Box<dyn Iterator<Item = &'a Series> + 'a> {
        match name {
            Some(n) => Box::new(
                self.by_name
                    .get(n)
                    .into_iter()
                    .flatten()
                    .filter_map(|&slot| self.slots[slot].as_ref()),
            ),
            None => Box::new(self.slots.iter().flatten()),
        }
    }

    pub fn series_count(&self) -> usize {
        self.index.len()
    }

    pub fn sample_count(&self) -> usize {
        self.samples
    }

    /// Approximate heap bytes held by the store.
    pub fn memory_bytes(&self) -> usize {
        let strings: usize = self.interner.iter().map(|s| s.len() + 32).sum();
        let series: usize = self
            .slots
            .iter()
            .flatten()
            .map(|s| s.labels.heap_bytes() + s.samples.capacity() * 16 + 120)
            .sum();
        strings + series + self.index.capacity() * 24
    }
}

impl Series {
    /// The value an instant selector sees at `t` (see [`querier::Instants`]).
    pub fn instant(&self, t: i64, left_closed: bool) -> Option<f64> {
        let end = self.samples.partition_point(|&(st, _)| st <= t);
        querier::visible(*self.samples.get(end.checked_sub(1)?)?, t, left_closed)
    }

    /// The samples with `min_t <= t <= max_t`.
    pub fn window(&self, min_t: i64, max_t: i64) -> Vec<(i64, f64)> {
        self.window_in(min_t, max_t, &mut Vec::new()).to_vec()
    }

    /// [`Series::window`] as a slice of the ring, without a copy unless the window wraps
    /// around its end (then copied into `scratch`): what every rule evaluation reads.
    fn window_in<'a>(
        &'a self,
        min_t: i64,
        max_t: i64,
        scratch: &'a mut Vec<(i64, f64)>,
    ) -> &'a [(i64, f64)] {
        let start = self.samples.partition_point(|&(st, _)| st < min_t);
        let end = self
            .samples
            .partition_point(|&(st, _)| st <= max_t)
            .max(start);
        let (front, back) = self.samples.as_slices();
        let split = front.len();
        if end <= split {
            &front[start..end]
        } else if start >= split {
            &back[start - split..end - split]
        } else {
            scratch.clear();
            scratch.extend(self.samples.range(start..end));
            scratch
        }
    }
}

impl Store {
    /// What a long read of `names` (every name when `None`) over `[min_t, max_t]` needs,
    /// taken in one short step under the store's lock: the blocks (shared, immutable) and a
    /// copy of the head's samples. The read then runs over it without the lock, so scrapes
    /// and rule evaluations go on meanwhile.
    pub fn snapshot(&self, names: Option<&[String]>, min_t: i64, max_t: i64) -> snapshot::Snapshot {
        let mut head = Vec::new();
        let mut copy = |name: Option<&str>| {
            for s in self.series(name) {
                let window = s.window(min_t, max_t);
                if !window.is_empty() {
                    head.push((s.labels.clone(), window));
                }
            }
        };
        match names {
            Some(names) => {
                // Each name once: an expression may select one twice (`x / sum(x)`).
                let mut once: Vec<&String> = names.iter().collect();
                once.sort();
                once.dedup();
                once.into_iter().for_each(|n| copy(Some(n)));
            }
            None => copy(None),
        }
        snapshot::Snapshot::new(
            self.left_closed,
            self.head_from,
            self.disk.as_ref(),
            (min_t, max_t),
            head,
        )
    }
}

impl Select for Store {
    fn left_closed(&self) -> bool {
        self.left_closed
    }

    fn select(
        &self,
        name: Option<&str>,
        keep: &dyn Fn(&Labels) -> bool,
        min_t: i64,
        max_t: i64,
        each: &mut querier::Visit,
    ) {
        let blocks: Vec<&Arc<Block>> = self
            .disk
            .iter()
            // Before the head first drops a sample it is complete from nothing on.
            .filter(|_| self.head_from == i64::MIN || min_t <= self.head_from)
            .flat_map(|d| d.overlapping(min_t, max_t))
            .collect();
        if blocks.is_empty() {
            // The usual case (a rule's recent range): the head alone.
            let mut scratch = Vec::new();
            for s in self.series(name).filter(|s| keep(&s.labels)) {
                let window = s.window_in(min_t, max_t, &mut scratch);
                if !window.is_empty() {
                    each(&s.labels, window);
                }
            }
            return;
        }
        let disk = self
            .disk
            .as_ref()
            .expect("blocks come from a store with a disk");
        let head: Vec<(&Labels, Samples)> = self
            .series(name)
            .filter(|s| keep(&s.labels))
            .map(|s| (&s.labels, s.window(min_t, max_t)))
            .collect();
        snapshot::select_blocks(&blocks, disk, head, name, keep, (min_t, max_t), each);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Labels {
        Labels::from_pairs(&[("__name__", "up"), ("job", "a")])
    }

    /// An empty directory of this test's own.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("obs-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn instant_lookback_and_staleness() {
        let mut s = Store::new(10 * 60_000);
        s.append(&up(), 0, 1.0);
        s.append(&up(), 10_000, 2.0);
        let series = s.series(Some("up")).next().unwrap();
        assert_eq!(series.instant(9_999, false), Some(1.0));
        assert_eq!(series.instant(10_000, false), Some(2.0));
        assert_eq!(series.instant(10_000 + LOOKBACK_MS - 1, false), Some(2.0));
        assert_eq!(
            series.instant(10_000 + LOOKBACK_MS, false),
            None,
            "lookback is left-open"
        );
        s.append(&up(), 20_000, stale());
        let series = s.series(Some("up")).next().unwrap();
        assert_eq!(
            series.instant(20_000, false),
            None,
            "a stale marker ends the series at once"
        );
        // What range functions read: the samples without stale markers, then the range.
        let mut samples = Vec::new();
        querier::without_stale_into(&series.window(i64::MIN, i64::MAX), &mut samples);
        let range = |t, range_ms, left_closed| {
            samples[querier::Windows::new(&samples, range_ms, left_closed).at(t)].to_vec()
        };
        assert_eq!(
            range(20_000, 60_000, false),
            vec![(0, 1.0), (10_000, 2.0)],
            "range skips stale markers"
        );
        assert_eq!(
            range(10_000, 10_000, false),
            vec![(10_000, 2.0)],
            "range is left-open"
        );
        assert_eq!(
            range(10_000, 10_000, true),
            vec![(0, 1.0), (10_000, 2.0)],
            "2.x: closed"
        );
    }

    #[test]
    fn windows_read_the_ring_where_it_wraps_around() {
        let mut s = Store::new(60_000);
        let wraps = |s: &Store| {
            !s.series(Some("up"))
                .next()
                .unwrap()
                .samples
                .as_slices()
                .1
                .is_empty()
        };
        let mut i = 0;
        while i < 4 || !wraps(&s) {
            assert!(i < 1000, "the ring never wrapped");
            s.append(&up(), i * 15_000, i as f64);
            i += 1;
        }
        let series = s.series(Some("up")).next().unwrap();
        let held: Vec<(i64, f64)> = series.samples.iter().copied().collect();
        assert_eq!(held.len(), 4);
        let (front, back) = series.samples.as_slices();
        assert!(!front.is_empty() && !back.is_empty(), "{front:?} {back:?}");
        for from in 0..4 {
            for to in from..4 {
                let (min_t, max_t) = (held[from].0, held[to].0);
                assert_eq!(
                    series.window(min_t, max_t),
                    held[from..=to],
                    "{from}..={to}"
                );
            }
        }
        assert!(series.window(0, 1).is_empty());
    }

    #[test]
    fn retention_bounds_memory() {
        let mut s = Store::new(60_000);
        for i in 0..1000 {
            s.append(&up(), i * 15_000, i as f64);
        }
        assert_eq!(s.sample_count(), 4, "only samples newer than 60 s are kept");
        s.compact(999 * 15_000 + 60_000);
        assert_eq!(
            s.sample_count(),
            1,
            "the newest sample stays for instant lookback"
        );
        assert_eq!(s.series_count(), 1);
        s.compact(999 * 15_000 + LOOKBACK_MS + 60_000);
        assert_eq!(
            (s.series_count(), s.sample_count()),
            (0, 0),
            "beyond the lookback the series goes"
        );
        s.append(&up(), 2_000_000_000, 1.0);
        assert_eq!(
            s.series(Some("up")).count(),
            1,
            "a removed slot is reused cleanly"
        );
    }

    #[test]
    fn an_opened_store_finds_its_head_again_after_a_restart() {
        let dir = scratch("reopen");
        let minute = 60_000;
        {
            let (mut s, replay) = Store::open(
                &dir,
                10 * minute,
                DEFAULT_MAX_SERIES,
                Retention::default(),
                0,
            )
            .unwrap();
            assert_eq!(replay.records, 0);
            for i in 0..20 {
                s.append(&up(), i * 15_000, i as f64);
                s.commit(); // one scrape
            }
            s.append(&up(), 20 * 15_000, 99.0); // never committed: a kill before the write
        } // dropped without a shutdown, as kill -9 leaves it
        let (s, replay) = Store::open(
            &dir,
            10 * minute,
            DEFAULT_MAX_SERIES,
            Retention::default(),
            20 * 15_000,
        )
        .unwrap();
        assert_eq!(replay.torn_tails, 0);
        let series = s.series(Some("up")).next().expect("the series is back");
        let samples: Vec<(i64, f64)> = series.samples.iter().copied().collect();
        assert_eq!(samples.len(), 20, "{samples:?}");
        assert_eq!(samples[19], (19 * 15_000, 19.0));
        assert_eq!(s.log_failures(), 0);
        assert!(s.log_bytes() > 0);
        drop(s);
        // A third start finds the same: the second wrote the series into its own segment.
        let (s, _) = Store::open(
            &dir,
            10 * minute,
            DEFAULT_MAX_SERIES,
            Retention::default(),
            20 * 15_000,
        )
        .unwrap();
        assert_eq!(s.sample_count(), 20);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_disk_is_counted_the_head_keeps_its_samples_and_logging_resumes() {
        let dir = scratch("full");
        let (mut s, _) =
            Store::open(&dir, 600_000, DEFAULT_MAX_SERIES, Retention::default(), 0).unwrap();
        s.append(&up(), 1_000, 1.0);
        s.commit();
        // The disk fills up: every write fails with ENOSPC, as /dev/full does.
        let log = s.log.as_mut().unwrap();
        let real = log.swap_file(
            std::fs::OpenOptions::new()
                .append(true)
                .open("/dev/full")
                .unwrap(),
        );
        // A series first seen while the disk is full: its definition must not be lost.
        let other = Labels::from_pairs(&[("__name__", "up"), ("job", "other")]);
        s.append(&up(), 2_000, 2.0);
        s.append(&other, 2_000, 20.0);
        s.commit();
        assert_eq!(s.log_failures(), 1);
        assert_eq!(
            s.sample_count(),
            3,
            "the head kept the samples the log could not"
        );
        // Space again: the next scrape is logged.
        s.log.as_mut().unwrap().swap_file(real);
        s.append(&up(), 3_000, 3.0);
        s.append(&other, 3_000, 30.0);
        s.commit();
        assert_eq!(s.log_failures(), 1);
        drop(s);
        let (s, replay) = Store::open(
            &dir,
            600_000,
            DEFAULT_MAX_SERIES,
            Retention::default(),
            3_000,
        )
        .unwrap();
        assert_eq!(replay.orphan_samples, 0);
        let kept = |job: &str| -> Vec<(i64, f64)> {
            let series = s
                .series(Some("up"))
                .find(|x| x.labels.get("job") == Some(job));
            series.unwrap().samples.iter().copied().collect()
        };
        assert_eq!(
            kept("a"),
            [(1_000, 1.0), (3_000, 3.0)],
            "what failed is missing, nothing else"
        );
        assert_eq!(kept("other"), [(3_000, 30.0)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_series_limit_refuses_new_series_and_frees_up_as_old_ones_go() {
        let mut s = Store::new(60_000);
        s.set_max_series(3);
        let churn = |i: usize| Labels::from_pairs(&[("__name__", "req"), ("id", &i.to_string())]);
        for i in 0..10 {
            s.append(&churn(i), 1_000, 1.0);
        }
        assert_eq!(s.series_count(), 3);
        assert_eq!(s.refused_series(), 7);
        assert!(s.get_or_create(&churn(99)).is_refused());
        // A series already held still takes samples at the limit.
        let held = s.get_or_create(&churn(0));
        assert!(!held.is_refused());
        assert!(s.append_ref(held, 2_000, 2.0));
        assert!(!s.append_ref(SeriesRef::REFUSED, 2_000, 2.0));
        // Once the old ones are gone, new ones are taken again.
        s.compact(2_000 + LOOKBACK_MS + 60_000);
        assert_eq!(s.series_count(), 0);
        s.append(&churn(42), 3_000_000, 1.0);
        assert_eq!(s.series_count(), 1);
    }

    #[test]
    fn out_of_order_and_duplicate_samples_are_ignored() {
        let mut s = Store::new(60_000);
        s.append(&up(), 10, 1.0);
        s.append(&up(), 5, 9.0);
        s.append(&up(), 10, 1.0);
        assert_eq!(s.sample_count(), 1);
        let mut fresh = Store::new(60_000);
        fresh.append(&up(), 10, stale());
        assert_eq!(
            fresh.series_count(),
            0,
            "a stale marker alone creates nothing"
        );
    }

    /// What the collector's housekeeping does at `now`: compact the head, run the block jobs.
    fn housekeeping(s: &mut Store, now: i64) {
        s.compact(now);
        while let Some(job) = s.plan(now) {
            s.finish(job.run()).unwrap();
        }
    }

    /// `got` equals `want`, or the first difference (not the whole of both).
    fn same(got: &[Vec<(i64, f64)>], want: &[(i64, f64)]) {
        assert_eq!(got.len(), 1, "one series");
        let first = got[0].iter().zip(want).position(|(g, w)| g != w);
        assert!(
            got[0].len() == want.len() && first.is_none(),
            "{} samples for {}; first difference at {first:?}: {:?}",
            got[0].len(),
            want.len(),
            first.map(|i| (got[0][i], want[i]))
        );
    }

    fn everything(s: &dyn Select, name: &str) -> Vec<Vec<(i64, f64)>> {
        let mut out = Vec::new();
        s.select(
            Some(name),
            &|_| true,
            i64::MIN,
            i64::MAX,
            &mut |_, samples| out.push(samples.to_vec()),
        );
        out
    }

    #[test]
    fn history_goes_to_blocks_the_head_stays_small_and_a_restart_reads_it_all() {
        let dir = scratch("history");
        let (mut s, _) =
            Store::open(&dir, 90_000, DEFAULT_MAX_SERIES, Retention::default(), 0).unwrap();
        let steps = 5 * 3600 / 15; // five hours at 15 s
        let mut max_head = 0;
        for i in 0..steps {
            let t = i * 15_000;
            s.append(&up(), t, i as f64);
            s.commit();
            housekeeping(&mut s, t);
            max_head = max_head.max(s.sample_count());
        }
        let expected: Vec<(i64, f64)> = (0..steps).map(|i| (i * 15_000, i as f64)).collect();
        same(&everything(&s, "up"), &expected);
        assert!(
            max_head <= 24,
            "the head held {max_head} samples: at most ~6 minutes"
        );
        let disk = s.disk().unwrap();
        let windows: Vec<(i64, i64)> = disk
            .all()
            .iter()
            .map(|b| (b.meta().min_t, b.meta().max_t))
            .collect();
        assert_eq!(
            windows[0],
            (0, 7_200_000),
            "two hours of head blocks merged: {windows:?}"
        );
        assert_eq!(windows[1], (7_200_000, 14_400_000));
        // A rule's recent range reads the head only; an old one reads a block.
        let mut seen = Vec::new();
        s.select(Some("up"), &|_| true, 3_600_000, 3_660_000, &mut |_, w| {
            seen.extend_from_slice(w)
        });
        assert_eq!(seen, expected[240..=244]);
        // A snapshot reads the same, blocks and head, without the store.
        // A name asked twice (`x / sum(x)`) is still one series.
        let names = ["up".to_owned(), "up".to_owned()];
        let snapshot = s.snapshot(Some(&names), i64::MIN, i64::MAX);
        same(&everything(&snapshot, "up"), &expected);
        let recent = s.snapshot(Some(&names), 3_600_000, 3_660_000);
        let mut seen = Vec::new();
        recent.select(Some("up"), &|_| true, 3_600_000, 3_660_000, &mut |_, w| {
            seen.extend_from_slice(w)
        });
        assert_eq!(seen, expected[240..=244]);
        drop(s);
        let now = (steps - 1) * 15_000;
        let (s, _) =
            Store::open(&dir, 90_000, DEFAULT_MAX_SERIES, Retention::default(), now).unwrap();
        same(&everything(&s, "up"), &expected);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn old_blocks_are_downsampled_then_deleted() {
        let dir = scratch("retention");
        let day = 24 * 3_600_000;
        let retention = Retention {
            time_ms: 3 * day,
            bytes: u64::MAX,
            raw_ms: day,
        };
        let counter = Labels::from_pairs(&[("__name__", "req_total")]);
        let raw: Vec<(i64, f64)> = (0..4 * day / 60_000)
            .map(|i| (i * 60_000, i as f64))
            .collect();
        {
            let mut blocks = Blocks::open(&dir, retention).unwrap();
            let written = blocks.import([(counter.clone(), raw.clone())]).unwrap();
            assert_eq!(written.len(), 4, "one block per day");
        }
        let (mut s, _) = Store::open(&dir, 90_000, DEFAULT_MAX_SERIES, retention, 0).unwrap();
        housekeeping(&mut s, 4 * day + 3_600_000);
        let metas: Vec<Meta> = s.disk().unwrap().all().iter().map(|b| b.meta()).collect();
        let res: Vec<(i64, i64)> = metas
            .iter()
            .map(|m| (m.min_t / day, m.resolution_ms))
            .collect();
        assert_eq!(
            res,
            [(1, 300_000), (2, 300_000), (3, 0)],
            "day 0 gone, days 1-2 at 5 minutes"
        );
        let kept = &everything(&s, "req_total")[0];
        assert_eq!(
            kept.first(),
            Some(&(day + 4 * 60_000, (day / 60_000 + 4) as f64))
        );
        assert_eq!(kept.len(), 2 * 288 + day as usize / 60_000);
        assert_eq!(s.disk().unwrap().deleted(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_block_that_cannot_be_written_is_counted_and_written_later_with_nothing_lost() {
        let dir = scratch("nowrite");
        let (mut s, _) =
            Store::open(&dir, 90_000, DEFAULT_MAX_SERIES, Retention::default(), 0).unwrap();
        // The blocks' folder becomes a file: every block write fails, as on a full disk.
        let blocks = dir.join("blocks");
        std::fs::remove_dir(&blocks).unwrap();
        std::fs::write(&blocks, "").unwrap();
        let mut failures = 0;
        for i in 0..(20 * 60 / 15) {
            let t = i * 15_000;
            s.append(&up(), t, i as f64);
            s.compact(t);
            if let Some(job) = s.plan(t) {
                failures += usize::from(s.finish(job.run()).is_err());
            }
        }
        assert!(failures >= 3, "{failures} failed writes");
        assert_eq!(s.disk().unwrap().write_failures(), failures as u64);
        assert_eq!(s.sample_count(), 80, "the head kept all 20 minutes");
        // Space again: the head's windows are written one after another.
        std::fs::remove_file(&blocks).unwrap();
        std::fs::create_dir(&blocks).unwrap();
        housekeeping(&mut s, 20 * 60_000);
        assert_eq!(s.disk().unwrap().all().len(), 3);
        s.compact(20 * 60_000);
        assert!(
            s.sample_count() <= 24,
            "{} samples in the head",
            s.sample_count()
        );
        let expected: Vec<(i64, f64)> = (0..80).map(|i| (i * 15_000, i as f64)).collect();
        same(&everything(&s, "up"), &expected);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_size_limit_deletes_the_oldest_blocks_first() {
        let dir = scratch("size");
        let day = 24 * 3_600_000;
        let counter = Labels::from_pairs(&[("__name__", "req_total")]);
        let raw: Vec<(i64, f64)> = (0..4 * day / 60_000)
            .map(|i| (i * 60_000, i as f64))
            .collect();
        let mut blocks = Blocks::open(&dir, Retention::default()).unwrap();
        blocks.import([(counter, raw)]).unwrap();
        let sizes: Vec<u64> = blocks.all().iter().map(|b| b.bytes()).collect();
        // Room for the two newest days only.
        let limit = sizes[2] + sizes[3] + 10;
        drop(blocks);
        let retention = Retention {
            bytes: limit,
            ..Retention::default()
        };
        let (mut s, _) = Store::open(&dir, 90_000, DEFAULT_MAX_SERIES, retention, 4 * day).unwrap();
        let log = s.log_bytes();
        housekeeping(&mut s, 4 * day);
        let left: Vec<i64> = s
            .disk()
            .unwrap()
            .all()
            .iter()
            .map(|b| b.meta().min_t / day)
            .collect();
        let expected: &[i64] = if log + sizes[2] + sizes[3] <= limit {
            &[2, 3]
        } else {
            &[3]
        };
        assert_eq!(left, expected, "the oldest went first ({log} bytes of log)");
        assert!(s.disk().unwrap().bytes() + s.log_bytes() <= limit);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_large_head_is_cut_in_parts_and_nothing_is_missed() {
        let dir = scratch("parts");
        let (mut s, _) =
            Store::open(&dir, 60_000, DEFAULT_MAX_SERIES, Retention::default(), 0).unwrap();
        let n = CUT_PART + CUT_PART / 4;
        let labels: Vec<Labels> = (0..n)
            .map(|i| Labels::from_pairs(&[("__name__", "up"), ("i", &i.to_string())]))
            .collect();
        for t in (0..=6).map(|m| m * 60_000) {
            for (i, l) in labels.iter().enumerate() {
                s.append(l, t, i as f64);
            }
            s.commit();
        }
        housekeeping(&mut s, 6 * 60_000);
        let metas: Vec<Meta> = s.disk().unwrap().all().iter().map(|b| b.meta()).collect();
        assert_eq!(metas.len(), 2, "two parts of one window: {metas:?}");
        assert_eq!(metas[0], metas[1]);
        assert_eq!(
            s.disk().unwrap().persisted_ms(),
            Some(compact::HEAD_BLOCK_MS)
        );
        // Every series' samples of the window, once, from the two parts (the head no longer
        // holds them).
        s.compact(6 * 60_000);
        assert_eq!(s.sample_count(), 2 * n);
        let mut seen = 0;
        s.select(
            Some("up"),
            &|_| true,
            0,
            compact::HEAD_BLOCK_MS - 1,
            &mut |_, w| {
                assert_eq!(w.len(), 5);
                seen += 1;
            },
        );
        assert_eq!(seen, n);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
