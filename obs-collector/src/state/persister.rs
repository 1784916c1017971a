//! [`Persister`]: the one thread that writes the state file, so no async worker ever waits on
//! `fsync`. Saves are coalesced: while a write is in progress, newer snapshots replace each
//! other and the next write takes the newest; every waiter is answered once its snapshot (or a
//! newer one) is durable.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::{save, Saved};

/// The newest snapshot not yet written, with everyone waiting for it.
#[derive(Default)]
struct Pending {
    next: Option<(Saved, i64)>,
    waiters: Vec<oneshot::Sender<()>>,
    closed: bool,
}

type Slot = Arc<(Mutex<Pending>, Condvar)>;

/// Writes snapshots of the state to one file from its own thread.
pub struct Persister {
    slot: Slot,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Persister {
    /// Starts the writer thread for `path`.
    pub fn start(path: PathBuf) -> Self {
        let slot: Slot = Arc::default();
        let thread = {
            let slot = Arc::clone(&slot);
            std::thread::Builder::new()
                .name("obs-collector-state".into())
                .spawn(move || run(&path, &slot))
                .expect("spawn the state writer thread")
        };
        Self {
            slot,
            thread: Some(thread),
        }
    }

    /// Hands `saved` (taken at `now_ms`) to the writer; resolves when it, or a newer snapshot,
    /// is on disk (or could not be written: the error is logged by the writer).
    pub fn save(&self, saved: Saved, now_ms: i64) -> impl std::future::Future<Output = ()> {
        let (done, written) = oneshot::channel();
        {
            let (lock, wake) = &*self.slot;
            let mut pending = lock.lock().unwrap_or_else(PoisonError::into_inner);
            pending.next = Some((saved, now_ms));
            pending.waiters.push(done);
            wake.notify_one();
        }
        async move {
            let _ = written.await;
        }
    }
}

impl Drop for Persister {
    /// Writes what is pending, then stops the thread.
    fn drop(&mut self) {
        {
            let (lock, wake) = &*self.slot;
            lock.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
            wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(path: &std::path::Path, slot: &Slot) {
    let (lock, wake) = &**slot;
    loop {
        let (next, waiters) = {
            let mut pending = lock.lock().unwrap_or_else(PoisonError::into_inner);
            while pending.next.is_none() && !pending.closed {
                pending = wake.wait(pending).unwrap_or_else(PoisonError::into_inner);
            }
            match pending.next.take() {
                Some(next) => (next, std::mem::take(&mut pending.waiters)),
                None => return, // closed, nothing left
            }
        };
        let (saved, now_ms) = next;
        if let Err(e) = save(path, saved, now_ms) {
            tracing::error!({ state.file = %path.display(), error = %e }, "cannot save alert state");
        }
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_save_resolves_once_the_file_holds_it_and_drop_writes_the_last_one() {
        let dir = std::env::temp_dir().join(format!("obs-persister-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let persister = Persister::start(path.clone());
        let mut saved = Saved::default();
        saved.notifications.next_id = 7;
        persister.save(saved, 1_000).await;
        assert_eq!(super::super::load(&path).unwrap().notifications.next_id, 7);
        let mut last = Saved::default();
        last.notifications.next_id = 9;
        drop(persister.save(last, 2_000)); // not awaited: the drop must still write it
        drop(persister);
        assert_eq!(super::super::load(&path).unwrap().notifications.next_id, 9);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
