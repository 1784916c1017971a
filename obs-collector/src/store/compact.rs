//! Compaction, downsampling and retention: which blocks to write, merge, thin out or delete,
//! decided from the blocks' time ranges alone (pure functions, time passed in), and the
//! rewriting itself, done outside the store's lock.
//!
//! - The head is cut into a block every [`HEAD_BLOCK_MS`] (aligned), a grace period after the
//!   window ends (30 s); the head then keeps about 5 minutes of samples, as much memory as
//!   a rule range of that length needed before.
//! - Blocks are merged into 30-minute, 2-hour, then 1-day blocks once their window is complete: bigger
//!   columns compress better, and a 35-day query opens 35 files rather than 5,000.
//! - Raw blocks older than [`Retention::raw_ms`] are downsampled to [`DOWNSAMPLE_STEP_MS`]:
//!   per step, a series keeps its last sample, and a counter (`_total`, `_count`, `_sum`,
//!   `_bucket`) also the sample before each reset, so that `rate()` and `increase()` over
//!   several steps see the same increase as over the raw samples (see [`downsample`]).
//! - Blocks that end before the retention time go, then the oldest until the size fits.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::block::{self, Block, BlockError, Entry, Meta, Samples, Scratch};
use super::querier::merge;
use crate::labels::Labels;

/// The head's block length.
pub const HEAD_BLOCK_MS: i64 = 5 * 60_000;
/// How long after a head window ends it is cut (a late scrape or rule evaluation lands first).
pub const CUT_GRACE_MS: i64 = 30_000;
/// Merged block lengths, smallest first.
/// Each merge reads at most 12 blocks of a window (times the parts a head window was cut in),
/// which bounds what a merge holds: one metric name's series of those blocks.
pub const LEVELS: [i64; 3] = [30 * 60_000, 2 * 3_600_000, 24 * 3_600_000];
/// The resolution of downsampled blocks (as Thanos' first level).
pub const DOWNSAMPLE_STEP_MS: i64 = 5 * 60_000;

const DAY_MS: i64 = 24 * 3_600_000;

/// How long history is kept, and at which resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Blocks that end this long before now are deleted (`--storage.retention`).
    pub time_ms: i64,
    /// The oldest blocks are deleted while history takes more bytes (`--storage.retention-size`;
    /// `u64::MAX`: no limit, what `config::parse_size` makes of `0`).
    pub bytes: u64,
    /// Raw samples are kept this long, then downsampled (`--storage.raw-retention`).
    pub raw_ms: i64,
}

impl Default for Retention {
    /// 35 days (a 4-week trend and a week-over-week comparison), raw for 8 (a 7-day view and
    /// last week's same hours read raw samples), no size limit.
    fn default() -> Self {
        Self {
            time_ms: 35 * DAY_MS,
            bytes: u64::MAX,
            raw_ms: 8 * DAY_MS,
        }
    }
}

/// The head window to cut at `now`, if one is due: from where the blocks end (or the head's
/// oldest sample's window) to the last whole window a grace period ago, one window at a time.
pub fn cut_window(persisted_ms: Option<i64>, head_min_t: Option<i64>, now: i64) -> Option<Meta> {
    let start = match persisted_ms {
        Some(p) => p.max(align(head_min_t?, HEAD_BLOCK_MS)),
        None => align(head_min_t?, HEAD_BLOCK_MS),
    };
    let end = start + HEAD_BLOCK_MS;
    (end + CUT_GRACE_MS <= now).then_some(Meta {
        min_t: start,
        max_t: end,
        resolution_ms: 0,
    })
}

fn align(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

/// A rewrite due at `now`: a raw block past the raw retention to downsample, else the blocks
/// of one complete level window to merge. `persisted_ms` is where the head's blocks end: a
/// window after it may still get blocks.
pub fn plan_rewrite(
    blocks: &[Arc<Block>],
    persisted_ms: i64,
    now: i64,
    retention: &Retention,
) -> Option<(Meta, Vec<Arc<Block>>)> {
    if let Some(old) = blocks
        .iter()
        .find(|b| b.meta().resolution_ms == 0 && b.meta().max_t <= now - retention.raw_ms)
    {
        let meta = Meta {
            resolution_ms: DOWNSAMPLE_STEP_MS,
            ..old.meta()
        };
        return Some((meta, vec![Arc::clone(old)]));
    }
    for level in LEVELS {
        let mut windows: HashMap<(i64, i64), Vec<Arc<Block>>> = HashMap::new();
        for b in blocks {
            let m = b.meta();
            let w = align(m.min_t, level);
            if m.max_t <= w + level && w + level <= persisted_ms.max(now - DAY_MS) {
                windows
                    .entry((w, m.resolution_ms))
                    .or_default()
                    .push(Arc::clone(b));
            }
        }
        let due = windows
            .into_iter()
            .filter(|(_, group)| group.len() > 1)
            .min_by_key(|((w, _), _)| *w);
        if let Some(((w, resolution_ms), group)) = due {
            let meta = Meta {
                min_t: w,
                max_t: w + level,
                resolution_ms,
            };
            return Some((meta, group));
        }
    }
    None
}

/// Indexes of the blocks retention deletes at `now` (`others_bytes`: what the head's log
/// takes): those ending before the retention time, then the oldest while over the size.
pub fn expired(
    blocks: &[Arc<Block>],
    now: i64,
    retention: &Retention,
    others_bytes: u64,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&i| blocks[i].meta().min_t);
    let mut total: u64 = others_bytes + blocks.iter().map(|b| b.bytes()).sum::<u64>();
    let mut gone = Vec::new();
    for i in order {
        let too_old = blocks[i].meta().max_t <= now - retention.time_ms;
        let too_big = total > retention.bytes;
        if !(too_old || too_big) {
            break;
        }
        total -= blocks[i].bytes();
        gone.push(i);
    }
    gone
}

/// Keeps, per `step` window, the last sample, and for a counter the sample before each drop
/// (a reset). `rate()` adds the value before a reset to the increase, so the increase between
/// any two kept samples is the raw one; what changes is only where a range's first and last
/// samples fall (at most one step from the raw ones), which is what the README's error
/// figures measure.
pub fn downsample(labels: &Labels, samples: &[(i64, f64)], step: i64) -> Samples {
    let counter = labels.name().is_some_and(|n| {
        ["_total", "_count", "_sum", "_bucket"]
            .iter()
            .any(|s| n.ends_with(s))
    });
    let mut kept = Vec::with_capacity(samples.len() / 4 + 1);
    for (i, &(t, v)) in samples.iter().enumerate() {
        let next = samples.get(i + 1);
        let last_of_step = next.is_none_or(|&(nt, _)| align(nt, step) != align(t, step));
        let before_reset = counter && next.is_some_and(|&(_, nv)| nv < v);
        if last_of_step || before_reset {
            kept.push((t, v));
        }
    }
    kept
}

/// Writes `meta`'s block from `sources` (series merged by labels; downsampled when `meta` has
/// a resolution) into `dir` and opens it.
pub fn rewrite(dir: &Path, meta: Meta, sources: &[Arc<Block>]) -> Result<Block, BlockError> {
    // One metric name at a time, and one copy of each label set: memory stays near what one
    // name's series take, however many blocks are merged.
    let mut names: Vec<&str> = sources.iter().flat_map(|b| b.names()).collect();
    names.sort_unstable();
    names.dedup();
    let failed = RefCell::new(None);
    let scratch = RefCell::new(Scratch::reading_ahead());
    let series = names.into_iter().flat_map(|name| {
        let mut order: Vec<Labels> = Vec::new();
        let mut at: HashMap<Labels, Vec<(usize, Entry)>> = HashMap::new();
        for (s, b) in sources.iter().enumerate() {
            match b.entries(name) {
                Ok(entries) => {
                    for e in entries {
                        if !at.contains_key(&e.labels) {
                            order.push(e.labels.clone());
                        }
                        at.entry(e.labels.clone()).or_default().push((s, e));
                    }
                }
                Err(e) => *failed.borrow_mut() = Some(e),
            }
        }
        // Lazily, series by series: a name's samples are never all in memory at once.
        let (failed, scratch) = (&failed, &scratch);
        order.into_iter().filter_map(move |labels| {
            let mut samples = Vec::new();
            for (s, e) in &at[&labels] {
                let range = (meta.min_t, meta.max_t - 1);
                let read = sources[*s].append(e.at, range, &mut scratch.borrow_mut(), &mut samples);
                if let Err(e) = read {
                    *failed.borrow_mut() = Some(e);
                }
            }
            merge(&mut samples);
            if meta.resolution_ms > 0 {
                samples = downsample(&labels, &samples, meta.resolution_ms);
            }
            (!samples.is_empty()).then_some((labels, samples))
        })
    });
    let path = block::write(dir, meta, series)?;
    if let Some(e) = failed.into_inner() {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Block::open(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn counter() -> Labels {
        Labels::from_pairs(&[("__name__", "req_total")])
    }

    #[test]
    fn the_head_is_cut_window_by_window_after_a_grace() {
        const W: i64 = HEAD_BLOCK_MS;
        assert_eq!(cut_window(None, None, 1_000_000), None, "an empty head");
        let at = |min_t| Meta {
            min_t,
            max_t: min_t + W,
            resolution_ms: 0,
        };
        assert_eq!(cut_window(None, Some(3 * MIN), W + CUT_GRACE_MS - 1), None);
        assert_eq!(
            cut_window(None, Some(3 * MIN), W + CUT_GRACE_MS),
            Some(at(0))
        );
        assert_eq!(cut_window(Some(W), Some(3 * MIN), W + CUT_GRACE_MS), None);
        assert_eq!(cut_window(Some(W), Some(3 * MIN), 60 * MIN), Some(at(W)));
        // After a long stop, the head's oldest sample decides, not the last block.
        assert_eq!(
            cut_window(Some(W), Some(9 * W + 1), 20 * W),
            Some(at(9 * W))
        );
    }

    #[test]
    fn downsampling_keeps_the_last_sample_per_step_and_what_precedes_a_reset() {
        // A counter at 15 s: +1 a scrape, reset to 0 at 7 min.
        let raw: Vec<(i64, f64)> = (0..40)
            .map(|i| {
                let t = i * 15_000;
                let v = if t < 7 * MIN {
                    i as f64
                } else {
                    (i - 28) as f64
                };
                (t, v)
            })
            .collect();
        let kept = downsample(&counter(), &raw, 5 * MIN);
        assert_eq!(kept, [(285_000, 19.0), (405_000, 27.0), (585_000, 11.0)]);
        // The increase over the kept samples is the raw increase: 27 + 11 - 0 ... - 19 + 19.
        let increase = |s: &[(i64, f64)]| {
            s.windows(2)
                .map(|w| {
                    if w[1].1 < w[0].1 {
                        w[1].1
                    } else {
                        w[1].1 - w[0].1
                    }
                })
                .sum::<f64>()
        };
        assert_eq!(increase(&kept), increase(&raw[19..]));
        // A gauge keeps the last of each step only.
        let gauge = Labels::from_pairs(&[("__name__", "in_flight")]);
        assert_eq!(downsample(&gauge, &raw, 5 * MIN).len(), 2);
    }
}
