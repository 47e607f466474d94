//! A TCP listener that holds at most N connections open at once.
//!
//! Each accepted connection carries a semaphore permit that is released when
//! the connection is dropped. When every permit is taken the server stops
//! calling `accept`, so further clients wait in the kernel's (bounded)
//! listen backlog instead of in any queue of ours.
//!
//! One client address holds at most its share of the connections (see
//! `limits.rs`); connections beyond it are closed as soon as they are
//! accepted.
//!
//! A request's headers must arrive within the header timeout, counted from
//! their first byte (from the accept, for a new connection): the deadline is
//! fixed when it starts, so bytes trickled one at a time cannot extend it.
//! Once the headers are in, the request middleware takes over (body deadline,
//! then the handler). A connection that makes no progress (no byte read or
//! written) for the idle timeout while the server waits on it is closed: an
//! idle keep-alive client or an event-stream reader that stopped reading
//! cannot hold a slot forever. Event streams send a comment every 15 s, so a
//! healthy idle stream is never cut.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::limits::{Conn, ConnectionSlot, Connections, PHASE_HEADERS, PHASE_IDLE};

/// A listener that admits at most `limit` concurrent connections.
pub(crate) struct LimitedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    connections: Arc<Connections>,
    idle: Duration,
    header_timeout: Duration,
}

impl LimitedListener {
    pub(crate) fn new(
        inner: TcpListener,
        limits: &super::Limits,
        connections: Arc<Connections>,
    ) -> Self {
        LimitedListener {
            inner,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            connections,
            idle: limits.idle_timeout,
            header_timeout: limits.header_timeout,
        }
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, LimitedListener>>
    for Conn
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, LimitedListener>) -> Self {
        Conn {
            addr: *stream.remote_addr(),
            phase: Arc::clone(&stream.io().phase),
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let Some(slot) = self.connections.admit(addr.ip()) else {
                        // This address holds its share: close at once.
                        tracing::debug!(%addr, "connection refused: per-address limit");
                        drop(stream);
                        continue;
                    };
                    // Small request/response exchanges: do not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let now = Instant::now();
                    let header_deadline = now + self.header_timeout;
                    return (
                        LimitedStream {
                            inner: stream,
                            _permit: permit,
                            _slot: slot,
                            idle: self.idle,
                            header_timeout: self.header_timeout,
                            phase: Arc::new(AtomicU8::new(PHASE_HEADERS)),
                            header_deadline,
                            last_progress: now,
                            timer: Box::pin(tokio::time::sleep_until(
                                header_deadline.min(now + self.idle),
                            )),
                        },
                        addr,
                    );
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin, as hyper's and axum's accept loops do.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A connection that gives its slot back when dropped and times out when
/// it makes no progress.
pub(crate) struct LimitedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    _slot: ConnectionSlot,
    idle: Duration,
    header_timeout: Duration,
    /// `PHASE_*` of `limits.rs`; the request middleware moves it on.
    phase: Arc<AtomicU8>,
    /// When the headers being read must be complete (in `PHASE_HEADERS`).
    header_deadline: Instant,
    /// When a byte was last read or written.
    last_progress: Instant,
    timer: Pin<Box<Sleep>>,
}

impl LimitedStream {
    /// Called when the socket is not ready: `Pending` until the connection
    /// has been idle for the timeout, then a `TimedOut` error.
    fn poll_idle<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            let mut deadline = self.last_progress + self.idle;
            let reading_headers = self.phase.load(Ordering::Relaxed) == PHASE_HEADERS;
            if reading_headers {
                deadline = deadline.min(self.header_deadline);
            }
            if Instant::now() >= deadline {
                let what = if reading_headers && deadline == self.header_deadline {
                    "request headers did not arrive within the header timeout"
                } else {
                    "connection made no progress within the idle timeout"
                };
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
            }
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            ready!(self.timer.as_mut().poll(cx));
        }
    }

    fn progressed(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Bytes arrived: if the connection was idle, a request starts and its
    /// header deadline is fixed now.
    fn read_some(&mut self) {
        self.progressed();
        if self
            .phase
            .compare_exchange(
                PHASE_IDLE,
                PHASE_HEADERS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            self.header_deadline = self.last_progress + self.header_timeout;
        }
    }

    /// Bytes left: a response is being written; the next request's headers
    /// get a fresh deadline when their first byte arrives.
    fn wrote_some(&mut self) {
        self.progressed();
        self.phase.store(PHASE_IDLE, Ordering::Relaxed);
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.read_some();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx),
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.wrote_some();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.wrote_some();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
