//! The non-blocking, bounded log writer.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::json::LineSink;
use crate::sync::lock;

/// How long the writer lets lines accumulate after a wake-up before writing them.
const LINGER: Duration = Duration::from_millis(2);
/// Batch buffers larger than this are not kept between batches.
const KEEP_CAPACITY: usize = 1 << 20;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    flush_requested: u64,
    closed: bool,
}

struct Inner {
    state: Mutex<State>,
    wake: Condvar,
    flushed: Mutex<u64>,
    flushed_cv: Condvar,
    max_bytes: usize,
    dropped: AtomicU64,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// Stops the writer thread (after a last write) when the last handle is dropped.
struct Handle(Arc<Inner>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.state().closed = true;
        self.0.wake.notify_one();
    }
}

/// A cloneable handle to the writer thread.
///
/// Lines are appended to a shared buffer (a lock and a copy: no allocation, no system call) and
/// a writer thread writes the buffer out in batches. The thread is woken only when the buffer
/// goes from empty to non-empty, then lingers briefly so that a busy service pays one wake-up
/// per batch instead of one per line. A full buffer drops the line and counts it; the caller
/// never waits. [`LogWriter::flush`] waits, up to a deadline, until every line appended before
/// it is written.
///
/// ```
/// use obs::logs::{LineSink, LogWriter};
/// use std::time::Duration;
///
/// let writer = LogWriter::spawn(std::io::sink(), 1 << 20);
/// writer.write_line(b"{\"message\":\"hi\"}\n");
/// assert!(writer.flush(Duration::from_secs(1)));
/// assert_eq!(writer.dropped(), 0);
/// ```
#[derive(Clone)]
pub struct LogWriter {
    inner: Arc<Inner>,
    _handle: Arc<Handle>,
}

impl LogWriter {
    /// Starts the writer thread for `out`, buffering at most `max_bytes` bytes of lines
    /// (plus the batch being written).
    ///
    /// ```
    /// let _writer = obs::logs::LogWriter::spawn(std::io::stdout(), 16 << 20);
    /// ```
    pub fn spawn<O: Write + Send + 'static>(out: O, max_bytes: usize) -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::default(),
            wake: Condvar::new(),
            flushed: Mutex::new(0),
            flushed_cv: Condvar::new(),
            max_bytes,
            dropped: AtomicU64::new(0),
        });
        let worker = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("obs-log-writer".into())
            .spawn(move || run(out, &worker))
            .expect("spawn the obs log writer thread");
        Self {
            _handle: Arc::new(Handle(Arc::clone(&inner))),
            inner,
        }
    }

    /// Lines dropped so far because the buffer was full or the output failed.
    ///
    /// ```
    /// let writer = obs::logs::LogWriter::spawn(std::io::sink(), 1024);
    /// assert_eq!(writer.dropped(), 0);
    /// ```
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Waits until all lines appended before this call are written and flushed, at most
    /// `timeout`. Returns whether that happened in time.
    ///
    /// ```
    /// let writer = obs::logs::LogWriter::spawn(std::io::sink(), 1024);
    /// assert!(writer.flush(std::time::Duration::from_millis(500)));
    /// ```
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let target = {
            let mut state = self.inner.state();
            state.flush_requested += 1;
            state.flush_requested
        };
        self.inner.wake.notify_one();
        let mut flushed = lock(&self.inner.flushed);
        while *flushed < target {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            flushed = self
                .inner
                .flushed_cv
                .wait_timeout(flushed, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl LineSink for LogWriter {
    fn write_line(&self, line: &[u8]) {
        let mut state = self.inner.state();
        if state.buf.len() + line.len() > self.inner.max_bytes {
            drop(state);
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let was_empty = state.buf.is_empty();
        state.buf.extend_from_slice(line);
        drop(state);
        if was_empty {
            self.inner.wake.notify_one();
        }
    }
}

/// The writer thread: waits for lines, lingers, swaps the buffer out, writes it in one call.
fn run<O: Write>(mut out: O, inner: &Inner) {
    let mut batch = Vec::new();
    let mut flushed = 0;
    loop {
        let mut state = inner.state();
        while state.buf.is_empty() && state.flush_requested == flushed && !state.closed {
            state = inner
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.flush_requested == flushed && !state.closed {
            drop(state);
            std::thread::sleep(LINGER);
            state = inner.state();
        }
        let (flush_to, closed) = (state.flush_requested, state.closed);
        std::mem::swap(&mut state.buf, &mut batch);
        drop(state);
        if !batch.is_empty() && out.write_all(&batch).is_err() {
            let lines = batch.iter().filter(|&&b| b == b'\n').count();
            inner.dropped.fetch_add(lines as u64, Ordering::Relaxed);
        }
        let _ = out.flush();
        batch.clear();
        if batch.capacity() > KEEP_CAPACITY {
            batch = Vec::new();
        }
        if flush_to > flushed {
            flushed = flush_to;
            *lock(&inner.flushed) = flushed;
            inner.flushed_cv.notify_all();
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// An output that blocks until released, to fill the buffer.
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
    fn flush_writes_everything_appended_before_it_in_order() {
        let out = Shared::default();
        let writer = LogWriter::spawn(out.clone(), 1 << 30);
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
    fn lines_are_written_without_a_flush() {
        let out = Shared::default();
        let writer = LogWriter::spawn(out.clone(), 1 << 20);
        writer.write_line(b"soon\n");
        let deadline = Instant::now() + Duration::from_secs(2);
        while out.0.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the line was never written");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_full_buffer_drops_and_counts_without_blocking() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let writer = LogWriter::spawn(Gate(Arc::clone(&gate)), 100);
        // The writer takes the first line and blocks writing it.
        writer.write_line(b"first\n");
        std::thread::sleep(Duration::from_millis(200));
        let start = Instant::now();
        for _ in 0..1000 {
            writer.write_line(b"123456789\n");
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "write_line blocked"
        );
        // The buffer holds 100 bytes: 10 lines; the other 990 are dropped and counted.
        assert_eq!(writer.dropped(), 990);
        // A flush against a stuck output gives up at its deadline.
        let t = Instant::now();
        assert!(!writer.flush(Duration::from_millis(200)));
        assert!(t.elapsed() < Duration::from_secs(2));
        drop(held);
        assert!(writer.flush(Duration::from_secs(5)));
    }

    #[test]
    fn a_failing_output_counts_its_lines_as_dropped() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let writer = LogWriter::spawn(Broken, 1 << 20);
        writer.write_line(b"a\n");
        writer.write_line(b"b\n");
        assert!(writer.flush(Duration::from_secs(2)));
        assert_eq!(writer.dropped(), 2);
    }
}
