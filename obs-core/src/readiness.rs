//! What `/readyz` says: a small state machine, so that "ready" means "serving".
//!
//! ```text
//!            first poll of a ShutdownSignal, or set_ready(true)
//! Starting ──────────────────────────────────────────────────────▶ Ready ◀─┐
//!    │ set_ready(false)                            set_ready(false) │       │ set_ready(true)
//!    ▼                                                              ▼       │
//! NotReady ◀────────────────────────────────────────────────────── NotReady ┘
//!
//! any state ── the shutdown signal, Obs::shutdown ──▶ Draining (final)
//! ```
//!
//! A service starts not ready: it may be migrating, warming or still binding. A server polls
//! its graceful-shutdown future only once it serves (axum's `serve(..).with_graceful_shutdown`
//! after the listener is bound, actix' spawned stop task after `bind` and `run`), so the first
//! poll of [`crate::ShutdownSignal`] is the moment it serves, with no code of the user's. A
//! service that said `set_ready(false)` itself (warming caches) stays not ready until it says
//! `set_ready(true)`. Once draining, nothing makes it ready again: a load balancer must not send
//! new requests to a process that is going away.

use std::sync::atomic::{AtomicU8, Ordering};

const STARTING: u8 = 0;
const READY: u8 = 1;
const NOT_READY: u8 = 2;
const DRAINING: u8 = 3;

/// The service's readiness, shared by the guard, the shutdown signal and the admin server.
#[derive(Debug, Default)]
pub(crate) struct Readiness(AtomicU8);

impl Readiness {
    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst) == READY
    }

    /// The server serves (its shutdown future was first polled): ready, unless the service
    /// decided otherwise itself or is already draining.
    pub fn serving(&self) {
        let _ = self
            .0
            .compare_exchange(STARTING, READY, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The service's own word (`Obs::set_ready`); ignored once draining.
    pub fn set(&self, ready: bool) {
        let to = if ready { READY } else { NOT_READY };
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                (now != DRAINING).then_some(to)
            });
    }

    /// Shutdown began: not ready, for good.
    pub fn drain(&self) {
        self.0.store(DRAINING, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn starts_not_ready_and_serving_makes_it_ready() {
        let r = Readiness::default();
        assert!(!r.is_ready());
        r.serving();
        assert!(r.is_ready());
        r.serving();
        assert!(r.is_ready());
    }

    #[test]
    fn the_services_own_not_ready_outlasts_the_first_poll() {
        let r = Readiness::default();
        r.set(false);
        r.serving();
        assert!(!r.is_ready(), "still warming");
        r.set(true);
        assert!(r.is_ready());
        r.set(false);
        assert!(!r.is_ready());
    }

    #[test]
    fn draining_is_final() {
        let r = Readiness::default();
        r.serving();
        r.drain();
        assert!(!r.is_ready());
        r.set(true);
        r.serving();
        assert!(!r.is_ready(), "no way back from draining");
    }
}
