//! The non-blocking, bounded log writer.
//!
//! Lines go through a bounded queue to one writer thread. A full queue (by lines or by bytes)
//! drops the line and counts it; the caller never waits. [`LogWriter::flush`] waits, up to a
//! deadline, until every line queued before it is written.
//!
//! ```
//! use obs::logs::{LineSink, LogWriter};
//! use std::time::Duration;
//!
//! let writer = LogWriter::spawn(std::io::sink(), 1024, 1 << 20);
//! writer.write_line(b"{\"message\":\"hi\"}\n");
//! assert!(writer.flush(Duration::from_secs(1)));
//! assert_eq!(writer.dropped(), 0);
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::json::LineSink;

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

struct Counters {
    queued_bytes: AtomicUsize,
    dropped: AtomicU64,
}

/// A cloneable handle to the writer thread. See the [module docs](self).
#[derive(Clone)]
pub struct LogWriter {
    tx: SyncSender<Msg>,
    max_bytes: usize,
    counters: Arc<Counters>,
}

/// Largest batch written with one `write` call.
const BATCH_BYTES: usize = 64 * 1024;

impl LogWriter {
    /// Starts the writer thread for `out`, holding at most `max_lines` lines and `max_bytes`
    /// bytes in flight.
    ///
    /// ```
    /// let _writer = obs::logs::LogWriter::spawn(std::io::stdout(), 16 * 1024, 16 << 20);
    /// ```
    pub fn spawn<O: Write + Send + 'static>(out: O, max_lines: usize, max_bytes: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel(max_lines.max(1));
        let counters = Arc::new(Counters {
            queued_bytes: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        });
        let worker = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("obs-log-writer".into())
            .spawn(move || run(out, rx, &worker))
            .expect("spawn the obs log writer thread");
        Self {
            tx,
            max_bytes,
            counters,
        }
    }

    /// Lines dropped so far because the queue was full or the output failed.
    ///
    /// ```
    /// let writer = obs::logs::LogWriter::spawn(std::io::sink(), 8, 1024);
    /// assert_eq!(writer.dropped(), 0);
    /// ```
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Waits until all lines queued before this call are written and flushed, at most `timeout`.
    /// Returns whether that happened in time.
    ///
    /// ```
    /// let writer = obs::logs::LogWriter::spawn(std::io::sink(), 8, 1024);
    /// assert!(writer.flush(std::time::Duration::from_millis(500)));
    /// ```
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let mut msg = Msg::Flush(ack_tx);
        // The queue may be full: retry until there is room or time is up, never block past it.
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    msg = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        ack_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

impl LineSink for LogWriter {
    fn write_line(&self, line: &[u8]) {
        let c = &self.counters;
        let queued = c.queued_bytes.fetch_add(line.len(), Ordering::Relaxed);
        if queued + line.len() > self.max_bytes {
            c.queued_bytes.fetch_sub(line.len(), Ordering::Relaxed);
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.tx.try_send(Msg::Line(line.to_vec())).is_err() {
            c.queued_bytes.fetch_sub(line.len(), Ordering::Relaxed);
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer thread: drains the queue in batches, one `write_all` per batch.
fn run<O: Write>(mut out: O, rx: Receiver<Msg>, counters: &Counters) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let mut acks = Vec::new();
    let mut lines = 0u64;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => {
                    counters
                        .queued_bytes
                        .fetch_sub(line.len(), Ordering::Relaxed);
                    batch.extend_from_slice(&line);
                    lines += 1;
                }
                Msg::Flush(ack) => acks.push(ack),
            }
            if batch.len() < BATCH_BYTES && acks.is_empty() {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if out.write_all(&batch).is_err() {
                counters.dropped.fetch_add(lines, Ordering::Relaxed);
            }
            batch.clear();
            lines = 0;
        }
        let _ = out.flush();
        for ack in acks.drain(..) {
            let _ = ack.try_send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// An output that blocks until released, to fill the queue.
    struct Gate(Arc<Mutex<()>>);
    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _held = self.0.lock().unwrap();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn flush_writes_everything_queued_before_it_in_order() {
        let out = Shared::default();
        let writer = LogWriter::spawn(out.clone(), 100_000, 1 << 30);
        for i in 0..10_000 {
            writer.write_line(format!("{i}\n").as_bytes());
        }
        assert!(writer.flush(Duration::from_secs(5)));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let got: Vec<usize> = text.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(got, (0..10_000).collect::<Vec<_>>());
        assert_eq!(writer.dropped(), 0);
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let writer = LogWriter::spawn(Gate(Arc::clone(&gate)), 4, 1 << 20);
        // The writer takes the first line and blocks writing it.
        writer.write_line(b"first\n");
        std::thread::sleep(Duration::from_millis(200));
        let start = Instant::now();
        for _ in 0..1000 {
            writer.write_line(b"x\n");
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "write_line blocked"
        );
        // The queue holds 4; the other 996 are dropped and counted.
        assert_eq!(writer.dropped(), 996);
        // A flush against a stuck output gives up at its deadline.
        let t = Instant::now();
        assert!(!writer.flush(Duration::from_millis(200)));
        assert!(t.elapsed() < Duration::from_secs(2));
        drop(held);
        assert!(writer.flush(Duration::from_secs(5)));
    }

    #[test]
    fn the_byte_bound_drops_huge_lines() {
        let out = Shared::default();
        let writer = LogWriter::spawn(out.clone(), 1000, 1000);
        writer.write_line(&vec![b'x'; 5000]);
        writer.write_line(b"small\n");
        assert!(writer.flush(Duration::from_secs(5)));
        assert_eq!(writer.dropped(), 1);
        assert_eq!(&*out.0.lock().unwrap(), b"small\n");
    }
}
