//! Structured logs for `mission-bus serve`, with `tracing`.
//!
//! Every request logs one line, so the line must not cost a request its
//! own `write` to stderr: each line is formatted on the thread that logs it
//! and handed, through a bounded queue, to one log thread that writes the
//! lines it finds queued in one `write`. A full queue makes the logger wait
//! (lines are never dropped); [`flush_logs`] waits until every line logged
//! so far is written (`serve` calls it before returning).

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::OnceLock;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use crate::error::{Error, Result};

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Lines that may wait for the log thread before loggers wait too.
const QUEUE_LINES: usize = 16 * 1024;
/// Most bytes the log thread gathers into one `write`.
const BATCH_BYTES: usize = 256 * 1024;
/// After a write that carried several lines (logging is busy), the log
/// thread lets the next batch gather this long, so that loggers find it
/// awake and need not wake it.
const BATCH_PAUSE: Duration = Duration::from_millis(1);

enum Msg {
    Line(Vec<u8>),
    /// Answer once everything queued before it is written.
    Flush(SyncSender<()>),
}

/// The queue to the log thread of this process, once logging is set up.
static QUEUE: OnceLock<SyncSender<Msg>> = OnceLock::new();

/// Install the process's log subscriber: `level` is a `tracing` filter
/// (`info`, `warn`, `mission_bus=debug,info`, ...), `format` text or JSON.
/// Each request is one INFO event with its request id, method, route,
/// mission, status and latency; tokens are never logged. Lines reach
/// stderr through the log thread (see the module docs). Fails if the
/// filter does not parse; a second call in one process is a no-op.
pub fn init_logging(level: &str, format: LogFormat) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| Error::invalid("log level", format!("'{level}': {e}")))?;
    let Some(writer) = Batched::start(|| Box::new(io::stderr())) else {
        // No log thread: write each line to stderr directly.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(io::stderr);
        let _ = match format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
        };
        return Ok(());
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

/// Wait (at most 5 s) until every line logged so far is written. Does
/// nothing when [`init_logging`] was not called.
pub fn flush_logs() {
    if let Some(tx) = QUEUE.get() {
        flush(tx, Duration::from_secs(5));
    }
}

fn flush(tx: &SyncSender<Msg>, limit: Duration) {
    let (done, wait) = mpsc::sync_channel(1);
    if tx.send(Msg::Flush(done)).is_ok() {
        let _ = wait.recv_timeout(limit);
    }
}

/// A `MakeWriter` whose writers queue each formatted line for the log
/// thread.
#[derive(Clone)]
struct Batched {
    tx: SyncSender<Msg>,
}

impl Batched {
    /// Start the log thread writing to what `open` returns, and remember
    /// its queue for [`flush_logs`] (the first one started in the process).
    fn start(open: impl FnOnce() -> Box<dyn Write + Send> + Send + 'static) -> Option<Batched> {
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        std::thread::Builder::new()
            .name("mission-bus-log".into())
            .spawn(move || write_lines(rx, open()))
            .ok()?;
        let _ = QUEUE.set(tx.clone());
        Some(Batched { tx })
    }
}

/// The log thread: write whatever is queued in one `write`, repeatedly.
fn write_lines(rx: Receiver<Msg>, mut out: Box<dyn Write + Send>) {
    let mut batch = Vec::with_capacity(16 * 1024);
    let mut flushes = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut lines = 0;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => {
                    batch.extend_from_slice(&line);
                    lines += 1;
                }
                Msg::Flush(done) => flushes.push(done),
            }
            if batch.len() < BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        // A failed write (stderr closed) loses these lines; nobody can be
        // told on stderr.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        if lines > 1 {
            std::thread::sleep(BATCH_PAUSE);
        }
    }
}

/// One event's formatted line, queued when the event is done with it.
struct LineWriter {
    line: Vec<u8>,
    tx: SyncSender<Msg>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            // Err only when the log thread is gone (its output failed).
            let _ = self.tx.send(Msg::Line(std::mem::take(&mut self.line)));
        }
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            line: Vec::with_capacity(256),
            tx: self.tx.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink that counts the writes it gets.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_whole_in_order_and_flush_waits_for_them() {
        let sink = Sink::default();
        let out = sink.clone();
        let batched = Batched::start(move || Box::new(out)).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let b = batched.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let mut w = b.make_writer();
                        // A line written in pieces stays one line.
                        write!(w, "t{t} ").unwrap();
                        writeln!(w, "line {i}").unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        flush(&batched.tx, Duration::from_secs(30));
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8000, "every line, none lost");
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .collect();
            let expected: Vec<String> = (0..2000).map(|i| format!("t{t} line {i}")).collect();
            assert_eq!(mine, expected, "thread {t}'s lines whole and in order");
        }
        assert!(writes < 8000, "lines are batched: {writes} writes");
    }
}
