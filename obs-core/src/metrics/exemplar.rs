//! Exemplars: per histogram bucket, the latest sampled request that fell into it (its trace and
//! span ids, its duration, when it ended), so that a dashboard's dot or an alert opens the
//! trace of a real slow or failing request.
//!
//! A slot is written on the request path without a lock and without allocating: a sequence
//! number makes the five words one consistent record. A writer that finds the slot being
//! written by another request of the same bucket at that very instant skips (the other one is
//! just as recent); a reader that sees a write in progress reads again.

use std::sync::atomic::{AtomicU64, Ordering};

/// A sampled request's ids, as the exported span has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanIds {
    pub trace_id: u128,
    pub span_id: u64,
}

impl SpanIds {
    /// The ids of the active OpenTelemetry span, when it is sampled (exported); `None`
    /// otherwise, so that no exemplar points at a trace that does not exist.
    pub fn current_sampled() -> Option<Self> {
        crate::trace::context::with_current(|sc| {
            sc.is_sampled().then(|| SpanIds {
                trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
                span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
            })
        })
        .flatten()
    }
}

/// One exemplar, read out of its slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exemplar {
    pub ids: SpanIds,
    /// The observed value (seconds).
    pub value: f64,
    /// When the request ended, milliseconds since the epoch.
    pub timestamp_ms: u64,
}

/// The latest exemplar of one bucket.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Even: stable; odd: being written; 0: never written.
    seq: AtomicU64,
    trace_hi: AtomicU64,
    trace_lo: AtomicU64,
    span: AtomicU64,
    value: AtomicU64,
    timestamp_ms: AtomicU64,
}

impl Slot {
    /// Records `exemplar` unless another request is writing this slot right now.
    pub fn store(&self, exemplar: &Exemplar) {
        let seq = self.seq.load(Ordering::Relaxed);
        if seq % 2 == 1
            || self
                .seq
                .compare_exchange(seq, seq + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // The odd sequence is visible before any field changes (a reader that sees a new field
        // sees the write in progress on its second look).
        std::sync::atomic::fence(Ordering::Release);
        self.trace_hi
            .store((exemplar.ids.trace_id >> 64) as u64, Ordering::Relaxed);
        self.trace_lo
            .store(exemplar.ids.trace_id as u64, Ordering::Relaxed);
        self.span.store(exemplar.ids.span_id, Ordering::Relaxed);
        self.value
            .store(exemplar.value.to_bits(), Ordering::Relaxed);
        self.timestamp_ms
            .store(exemplar.timestamp_ms, Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
    }

    /// The slot's exemplar, if it ever got one.
    pub fn load(&self) -> Option<Exemplar> {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let exemplar = Exemplar {
                ids: SpanIds {
                    trace_id: u128::from(self.trace_hi.load(Ordering::Relaxed)) << 64
                        | u128::from(self.trace_lo.load(Ordering::Relaxed)),
                    span_id: self.span.load(Ordering::Relaxed),
                },
                value: f64::from_bits(self.value.load(Ordering::Relaxed)),
                timestamp_ms: self.timestamp_ms.load(Ordering::Relaxed),
            };
            std::sync::atomic::fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return Some(exemplar);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exemplar(n: u64) -> Exemplar {
        Exemplar {
            ids: SpanIds {
                trace_id: u128::from(n) << 64 | u128::from(n),
                span_id: n,
            },
            value: n as f64,
            timestamp_ms: n,
        }
    }

    #[test]
    fn the_latest_wins_and_a_read_is_never_torn() {
        let slot = Slot::default();
        assert_eq!(slot.load(), None);
        slot.store(&exemplar(1));
        slot.store(&exemplar(2));
        assert_eq!(slot.load(), Some(exemplar(2)));
        let slot = std::sync::Arc::new(slot);
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let slot = std::sync::Arc::clone(&slot);
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        slot.store(&exemplar(w * 100_000 + i));
                    }
                })
            })
            .collect();
        for _ in 0..20_000 {
            let e = slot.load().unwrap();
            let n = e.ids.span_id;
            assert_eq!(e, exemplar(n), "every field from the same write");
        }
        for w in writers {
            w.join().unwrap();
        }
    }
}
