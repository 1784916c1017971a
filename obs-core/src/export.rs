//! The export stage shared by OTLP spans and Sentry events: a bounded queue in front of a
//! background thread with its own single-threaded tokio runtime.
//!
//! The request path only calls [`Queue::push`]: a `try_send` that never waits; a full queue
//! drops the item and counts it. The thread owns the HTTP client, so a dead, slow or hanging
//! backend stalls only that thread, whatever runtime flavour (or none) the service uses.
//! [`Worker::shutdown`] asks for a final flush and waits for it, never past its deadline.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{mpsc as queue, Notify};

/// The sending side of a worker's queue; cheap to clone.
pub(crate) struct Queue<T> {
    tx: queue::Sender<T>,
    pub dropped: Arc<AtomicU64>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            dropped: Arc::clone(&self.dropped),
        }
    }
}

impl<T> Queue<T> {
    /// Enqueues `item`, or drops and counts it when the queue is full or the worker is gone.
    pub fn push(&self, item: T) {
        if self.tx.try_send(item).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the worker's loop gets: its queue, the shutdown signal and the shared drop counter.
pub(crate) struct Inbox<T> {
    pub rx: queue::Receiver<T>,
    pub stop: Arc<Notify>,
    pub dropped: Arc<AtomicU64>,
}

/// Handle to the background thread.
pub(crate) struct Worker {
    stop: Arc<Notify>,
    done: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Worker {
    /// Runs `run` on a new thread named `name`, fed by a queue of `capacity` items.
    pub fn spawn<T, F, Fut>(name: &str, capacity: usize, run: F) -> (Queue<T>, Worker)
    where
        T: Send + 'static,
        F: FnOnce(Inbox<T>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let (tx, rx) = queue::channel(capacity.max(1));
        let stop = Arc::new(Notify::new());
        let dropped = Arc::new(AtomicU64::new(0));
        let (done_tx, done_rx) = mpsc::channel();
        let inbox = Inbox {
            rx,
            stop: Arc::clone(&stop),
            dropped: Arc::clone(&dropped),
        };
        // Without a thread the receiver is dropped: every push is then dropped and counted.
        let _ = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(run(inbox));
                }
                let _ = done_tx.send(());
            });
        (
            Queue { tx, dropped },
            Worker {
                stop,
                done: Mutex::new(Some(done_rx)),
            },
        )
    }

    /// Signals the worker to flush what it holds and stop (idempotent, returns at once).
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    /// Waits until the worker finished its final flush, or `deadline`; returns whether it did.
    pub fn wait(&self, deadline: Instant) -> bool {
        let done = self
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        done.is_some_and(|rx| {
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_ok()
        })
    }
}
