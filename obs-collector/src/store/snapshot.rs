//! Reading blocks one series at a time, and the [`Snapshot`] long reads take: the blocks of a
//! range (shared and immutable: a block deleted meanwhile stays readable through its open file)
//! and a copy of the head's samples, taken under the store's lock in one short step and read
//! without it, as Prometheus' queriers read blocks while the head takes appends.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::block::{Block, Locator, Samples, Scratch};
use super::blocks::Blocks;
use super::encoding::{get_labels, put_labels, Strings};
use super::querier::{between, merge, Select, Visit};
use crate::labels::{Labels, NAME};

/// How blocks are read: through the set's caches, or directly.
pub trait Read {
    /// The block's frame of the series named `name` ([`Block::series_frame`]; nothing when
    /// the read fails: it is counted).
    fn series_frame(&self, block: &Block, name: &str) -> Option<Arc<Vec<u8>>>;
    /// Appends the samples of the series at `at` from `min_t` to `max_t` to `out` (nothing
    /// when the read fails: it is counted).
    fn append(&self, block: &Block, at: Locator, range: (i64, i64), out: &mut Samples);
}

impl Read for Blocks {
    fn series_frame(&self, block: &Block, name: &str) -> Option<Arc<Vec<u8>>> {
        Blocks::series_frame(self, block, name)
    }

    fn append(&self, block: &Block, at: Locator, (min_t, max_t): (i64, i64), out: &mut Samples) {
        if let Some(decoded) = self.samples(block, at) {
            out.extend_from_slice(between(&decoded, min_t, max_t));
        }
    }
}

/// Reads straight from the files (a snapshot has no caches to share), counting failures,
/// decoding through one [`Scratch`].
struct Direct<'a> {
    read_errors: &'a AtomicU64,
    scratch: RefCell<Scratch>,
}

impl<'a> Direct<'a> {
    fn new(read_errors: &'a AtomicU64) -> Self {
        Direct {
            read_errors,
            scratch: RefCell::new(Scratch::reading_ahead()),
        }
    }

    fn counted<T>(&self, read: Result<T, super::block::BlockError>) -> Option<T> {
        read.map_err(|_| self.read_errors.fetch_add(1, Ordering::Relaxed))
            .ok()
    }
}

impl Read for Direct<'_> {
    fn series_frame(&self, block: &Block, name: &str) -> Option<Arc<Vec<u8>>> {
        self.counted(block.series_frame(name)).map(Arc::new)
    }

    fn append(&self, block: &Block, at: Locator, range: (i64, i64), out: &mut Samples) {
        let read = block.append(at, range, &mut self.scratch.borrow_mut(), out);
        self.counted(read);
    }
}

/// Label sets by their bytes, each once, with a number: all their bytes in one buffer (a read
/// of thousands of series makes a few allocations, not one a series, and gives them all back
/// when it ends).
#[derive(Default)]
struct ByBytes<S = std::hash::RandomState> {
    bytes: Vec<u8>,
    /// Per set: where its bytes start and end, its number, and the next set with the same hash.
    sets: Vec<(usize, usize, u32, Option<u32>)>,
    /// The first set of each hash.
    first: HashMap<u64, u32>,
    hasher: S,
}

impl<S: std::hash::BuildHasher> ByBytes<S> {
    fn bytes(&self, set: usize) -> &[u8] {
        let (from, to, _, _) = self.sets[set];
        &self.bytes[from..to]
    }

    /// The number of the set `raw`, if it is known.
    fn get(&self, raw: &[u8]) -> Option<u32> {
        let mut at = self.first.get(&self.hasher.hash_one(raw)).copied();
        while let Some(set) = at {
            let (from, to, number, next) = self.sets[set as usize];
            if &self.bytes[from..to] == raw {
                return Some(number);
            }
            at = next;
        }
        None
    }

    /// Adds `raw` (not known yet) with `number`; its set's index.
    fn insert(&mut self, raw: &[u8], number: u32) -> usize {
        let set = self.sets.len();
        let next = self.first.insert(self.hasher.hash_one(raw), set as u32);
        let from = self.bytes.len();
        self.bytes.extend_from_slice(raw);
        self.sets.push((from, self.bytes.len(), number, next));
        set
    }
}

/// Calls `each` with the labels (as written) and place of every series of `block` named `name`
/// (every series when `None`), in the block's order; a frame that does not parse is counted
/// as a failed read and ends that name.
fn walk_series(
    block: &Block,
    read: &dyn Read,
    name: Option<&str>,
    each: &mut dyn FnMut(&[u8], Locator),
) {
    let names: Vec<&str> = match name {
        Some(n) => vec![n],
        None => block.names().collect(),
    };
    for n in names {
        let Some(frame) = read.series_frame(block, n) else {
            continue;
        };
        let mut b = frame.as_slice();
        while let Ok(Some((raw, at))) = block.next_series(&mut b) {
            each(raw, at);
        }
    }
}

/// Every series named `name` (every series when `None`) that `keep` accepts, in `blocks` and
/// `head` (its windows of those series), merged one series at a time within `(min_t, max_t)`
/// and handed to `each`. Where each series is comes first from the blocks' indexes, so a read
/// over weeks of every series holds one series' samples at a time, not all of them; a series
/// is known across blocks by its labels' bytes: its labels are made when it is first met (for
/// `keep`, then dropped) and again when it is handed on, and what is held meanwhile is those
/// bytes and 24 bytes a block.
pub fn select_blocks(
    blocks: &[&Arc<Block>],
    read: &dyn Read,
    head: Vec<(&Labels, Samples)>,
    name: Option<&str>,
    keep: &dyn Fn(&Labels) -> bool,
    (min_t, max_t): (i64, i64),
    each: &mut Visit,
) {
    /// A series `keep` refused.
    const REFUSED: u32 = u32::MAX;
    let mut strings = Strings::new();
    // Each series met, by its labels' bytes: its number, or REFUSED.
    let mut known = ByBytes::<std::hash::RandomState>::default();
    // The series kept: their labels' bytes in `known`.
    let mut series: Vec<usize> = Vec::new();
    // (series, block, place), in block order.
    let mut places: Vec<(u32, u32, Locator)> = Vec::new();
    let mut number = |raw: &[u8], strings: &mut Strings| -> u32 {
        if let Some(n) = known.get(raw) {
            return n;
        }
        let kept = get_labels(&mut &raw[..], strings).is_some_and(|l| keep(&l));
        let n = if kept { series.len() as u32 } else { REFUSED };
        let set = known.insert(raw, n);
        if kept {
            series.push(set);
        }
        n
    };
    for (i, b) in blocks.iter().enumerate() {
        walk_series(b, read, name, &mut |raw, at| {
            let n = number(raw, &mut strings);
            if n != REFUSED {
                places.push((n, i as u32, at));
            }
        });
    }
    let mut head_of: HashMap<u32, Samples> = HashMap::with_capacity(head.len());
    let mut raw = Vec::new();
    for (labels, window) in head {
        raw.clear();
        put_labels(&mut raw, labels);
        let n = number(&raw, &mut strings);
        if n != REFUSED {
            head_of.insert(n, window);
        }
    }
    // Grouped by series, each series' places in block order.
    places.sort_unstable_by_key(|&(n, i, _)| (n, i));
    let mut places = places.as_slice();
    let mut samples: Samples = Vec::new();
    for (n, &set) in series.iter().enumerate() {
        let n = n as u32;
        let raw = known.bytes(set);
        let mine = places.partition_point(|p| p.0 == n);
        samples.clear();
        for &(_, i, at) in &places[..mine] {
            read.append(blocks[i as usize], at, (min_t, max_t), &mut samples);
        }
        places = &places[mine..];
        if let Some(window) = head_of.get(&n) {
            samples.extend_from_slice(window);
        }
        merge(&mut samples);
        let labels = get_labels(&mut &raw[..], &mut strings);
        if let (Some(labels), false) = (labels, samples.is_empty()) {
            each(&labels, &samples);
        }
    }
}

/// The labels of every series named `name` (every series when `None`) that `keep` accepts with
/// samples in `[min_t, max_t]`, in `blocks` and `head` (already of that range), each once. A
/// block inside the range answers from its index; only a block across one of its ends has the
/// series' samples read, to leave out those whose samples there are all outside it.
pub fn series_in_blocks<'h>(
    blocks: &[&Arc<Block>],
    read: &dyn Read,
    head: impl Iterator<Item = &'h Labels>,
    name: Option<&str>,
    keep: &dyn Fn(&Labels) -> bool,
    (min_t, max_t): (i64, i64),
    each: &mut dyn FnMut(&Labels),
) {
    let mut seen: HashSet<Labels> = HashSet::new();
    let mut strings = Strings::new();
    let mut found = Vec::new();
    for b in blocks {
        // Block ranges end before `max_t` (they are half open).
        let inside = b.meta().min_t >= min_t && b.meta().max_t <= max_t.saturating_add(1);
        walk_series(b, read, name, &mut |mut raw, at| {
            let Some(labels) = get_labels(&mut raw, &mut strings) else {
                return;
            };
            if !keep(&labels) || seen.contains(&labels) {
                return;
            }
            let in_range = inside || {
                found.clear();
                read.append(b, at, (min_t, max_t), &mut found);
                !found.is_empty()
            };
            if in_range {
                each(&labels);
                seen.insert(labels);
            }
        });
    }
    for labels in head {
        if keep(labels) && seen.insert(labels.clone()) {
            each(labels);
        }
    }
}

/// What a long read sees: see the module's documentation. Made by
/// [`super::Store::snapshot`].
pub struct Snapshot {
    left_closed: bool,
    /// Where the head's samples start (blocks are read only for ranges reaching before it).
    head_from: i64,
    blocks: Vec<Arc<Block>>,
    /// The head's samples of the names asked, in the range asked.
    head: Vec<(Labels, Samples)>,
    read_errors: Arc<AtomicU64>,
}

impl Snapshot {
    pub(super) fn new(
        left_closed: bool,
        head_from: i64,
        disk: Option<&Blocks>,
        (min_t, max_t): (i64, i64),
        head: Vec<(Labels, Samples)>,
    ) -> Self {
        Self {
            left_closed,
            head_from,
            blocks: disk
                .into_iter()
                .flat_map(|d| d.overlapping(min_t, max_t).cloned())
                .collect(),
            head,
            read_errors: disk.map(Blocks::read_errors_counter).unwrap_or_default(),
        }
    }
}

impl Snapshot {
    /// The blocks a read of `[min_t, max_t]` reads (those before the head, overlapping it).
    fn blocks_for(&self, min_t: i64, max_t: i64) -> Vec<&Arc<Block>> {
        self.blocks
            .iter()
            .filter(|_| self.head_from == i64::MIN || min_t <= self.head_from)
            .filter(|b| b.meta().max_t > min_t && b.meta().min_t <= max_t)
            .collect()
    }
}

impl Select for Snapshot {
    fn series(
        &self,
        name: Option<&str>,
        keep: &dyn Fn(&Labels) -> bool,
        min_t: i64,
        max_t: i64,
        each: &mut dyn FnMut(&Labels),
    ) {
        let head = self
            .head
            .iter()
            .filter(|(l, s)| {
                name.is_none_or(|n| l.get(NAME) == Some(n))
                    && s.iter().any(|p| (min_t..=max_t).contains(&p.0))
            })
            .map(|(l, _)| l);
        series_in_blocks(
            &self.blocks_for(min_t, max_t),
            &Direct::new(&self.read_errors),
            head,
            name,
            keep,
            (min_t, max_t),
            each,
        );
    }

    fn left_closed(&self) -> bool {
        self.left_closed
    }

    fn select(
        &self,
        name: Option<&str>,
        keep: &dyn Fn(&Labels) -> bool,
        min_t: i64,
        max_t: i64,
        each: &mut Visit,
    ) {
        let blocks = self.blocks_for(min_t, max_t);
        let head: Vec<(&Labels, Samples)> = self
            .head
            .iter()
            .filter(|(l, _)| name.is_none_or(|n| l.get(NAME) == Some(n)) && keep(l))
            .map(|(l, s)| (l, between(s, min_t, max_t).to_vec()))
            .filter(|(_, s)| !s.is_empty())
            .collect();
        select_blocks(
            &blocks,
            &Direct::new(&self.read_errors),
            head,
            name,
            keep,
            (min_t, max_t),
            each,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_are_found_by_their_bytes_when_their_hashes_collide() {
        /// Every set the same hash.
        #[derive(Default)]
        struct Zero;
        impl std::hash::Hasher for Zero {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, _: &[u8]) {}
        }
        let mut known: ByBytes<std::hash::BuildHasherDefault<Zero>> = ByBytes::default();
        assert_eq!(known.get(b"a"), None);
        let sets = [
            known.insert(b"a", 7),
            known.insert(b"bb", 8),
            known.insert(b"", 9),
        ];
        assert_eq!(known.get(b"a"), Some(7));
        assert_eq!(known.get(b"bb"), Some(8));
        assert_eq!(known.get(b""), Some(9));
        assert_eq!(known.get(b"b"), None);
        assert_eq!(sets.map(|s| known.bytes(s)), [&b"a"[..], b"bb", b""]);
        // And with a real hasher.
        let mut real = ByBytes::<std::hash::RandomState>::default();
        real.insert(b"x", 1);
        assert_eq!((real.get(b"x"), real.get(b"y")), (Some(1), None));
    }
}
