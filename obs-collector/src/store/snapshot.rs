//! Reading blocks one series at a time, and the [`Snapshot`] long reads take: the blocks of a
//! range (shared and immutable: a block deleted meanwhile stays readable through its open file)
//! and a copy of the head's samples, taken under the store's lock in one short step and read
//! without it, as Prometheus' queriers read blocks while the head takes appends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::block::{Block, Entry, Locator, Samples, Scratch};
use super::blocks::Blocks;
use super::querier::{merge, Select, Visit};
use crate::labels::{Labels, NAME};

/// How blocks are read: through the set's caches, or directly.
pub trait Read {
    fn entries(&self, block: &Block, name: &str) -> Option<Arc<Vec<Entry>>>;
    /// Appends the samples of the series at `at` from `min_t` to `max_t` to `out` (nothing
    /// when the read fails: it is counted).
    fn append(&self, block: &Block, at: Locator, range: (i64, i64), out: &mut Samples);
}

impl Read for Blocks {
    fn entries(&self, block: &Block, name: &str) -> Option<Arc<Vec<Entry>>> {
        Blocks::entries(self, block, name)
    }

    fn append(&self, block: &Block, at: Locator, (min_t, max_t): (i64, i64), out: &mut Samples) {
        if let Some(decoded) = self.samples(block, at) {
            let from = decoded.partition_point(|s| s.0 < min_t);
            let to = decoded.partition_point(|s| s.0 <= max_t);
            out.extend_from_slice(&decoded[from..to.max(from)]);
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
            scratch: RefCell::default(),
        }
    }

    fn counted<T>(&self, read: Result<T, super::block::BlockError>) -> Option<T> {
        read.map_err(|_| self.read_errors.fetch_add(1, Ordering::Relaxed))
            .ok()
    }
}

impl Read for Direct<'_> {
    fn entries(&self, block: &Block, name: &str) -> Option<Arc<Vec<Entry>>> {
        self.counted(block.entries(name)).map(Arc::new)
    }

    fn append(&self, block: &Block, at: Locator, range: (i64, i64), out: &mut Samples) {
        let mut scratch = self.scratch.borrow_mut();
        let before = out.len();
        if self
            .counted(block.append(at, range, &mut scratch, out))
            .is_none()
        {
            out.truncate(before);
        }
    }
}

/// Every series named `name` (every series when `None`) that `keep` accepts, in `blocks` and
/// `head` (its windows of those series), merged one series at a time within `(min_t, max_t)`
/// and handed to `each`. Where each series is comes first from the blocks' indexes, so a read
/// over weeks of every series holds one series' samples at a time, not all of them.
pub fn select_blocks(
    blocks: &[&Arc<Block>],
    read: &dyn Read,
    head: Vec<(&Labels, Samples)>,
    name: Option<&str>,
    keep: &dyn Fn(&Labels) -> bool,
    (min_t, max_t): (i64, i64),
    each: &mut Visit,
) {
    // Each series' labels (as the first block that has it gives them), and where it is: a
    // block's number and the place in it (24 bytes a series and block).
    let mut parts: Vec<(Labels, Vec<(u32, Locator)>)> = Vec::new();
    let mut at: HashMap<Labels, usize> = HashMap::new();
    for (i, b) in blocks.iter().enumerate() {
        let names: Vec<&str> = match name {
            Some(n) => vec![n],
            None => b.names().collect(),
        };
        for n in names {
            let Some(entries) = read.entries(b, n) else {
                continue;
            };
            for entry in entries.iter().filter(|e| keep(&e.labels)) {
                let slot = *at.entry(entry.labels.clone()).or_insert_with(|| {
                    parts.push((entry.labels.clone(), Vec::new()));
                    parts.len() - 1
                });
                parts[slot].1.push((i as u32, entry.at));
            }
        }
    }
    let mut head_of: HashMap<&Labels, Samples> = HashMap::with_capacity(head.len());
    for (labels, window) in head {
        if !at.contains_key(labels) {
            at.insert(labels.clone(), parts.len());
            parts.push((labels.clone(), Vec::new()));
        }
        head_of.insert(labels, window);
    }
    drop(at);
    let mut samples: Samples = Vec::new();
    for (labels, found) in &parts {
        samples.clear();
        for &(i, place) in found {
            read.append(blocks[i as usize], place, (min_t, max_t), &mut samples);
        }
        if let Some(window) = head_of.get(labels) {
            samples.extend_from_slice(window);
        }
        merge(&mut samples);
        if !samples.is_empty() {
            each(labels, &samples);
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
    let mut seen: std::collections::HashSet<Labels> = std::collections::HashSet::new();
    for b in blocks {
        let names: Vec<&str> = match name {
            Some(n) => vec![n],
            None => b.names().collect(),
        };
        // Block ranges end before `max_t` (they are half open).
        let inside = b.meta().min_t >= min_t && b.meta().max_t <= max_t.saturating_add(1);
        let mut found = Vec::new();
        let mut in_range = |entry: &Entry| {
            inside || {
                found.clear();
                read.append(b, entry.at, (min_t, max_t), &mut found);
                !found.is_empty()
            }
        };
        for n in names {
            for entry in read.entries(b, n).iter().flat_map(|e| e.iter()) {
                if keep(&entry.labels) && !seen.contains(&entry.labels) && in_range(entry) {
                    seen.insert(entry.labels.clone());
                    each(&entry.labels);
                }
            }
        }
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
            .map(|(l, s)| {
                let from = s.partition_point(|p| p.0 < min_t);
                let to = s.partition_point(|p| p.0 <= max_t);
                (l, s[from..to.max(from)].to_vec())
            })
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
