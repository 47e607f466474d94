//! The HTTP/JSON bus server (`mission-bus serve`).
//!
//! One process owns the data directory (sled allows no other) and many
//! agent processes talk to it over HTTP. Every request carries
//! `Authorization: Bearer TOKEN`: the admin token (from a file, mode 0600)
//! creates missions and adds participants; each participant gets its own
//! token, valid in its mission only, and the sender of every event it
//! writes is the token's owner. The endpoints and their status codes are
//! described in `docs/api.md`.
//!
//! The append path costs little more than the library's: the token is
//! checked from memory, the request goes straight from the async handler to
//! the writer's next commit group and its answer comes back on a oneshot
//! (`MissionBus::append_async`), with no thread blocked per request. Other
//! store work (reads, token issue, verify) runs in one `spawn_blocking` task
//! each, bounded by a semaphore. Resources are bounded: connections in all
//! and per client address, the time to read a request's headers and body,
//! blocking work in flight, event streams in all, per mission and per token,
//! and the request body size ([`Limits`], `limits.rs`); nothing queues
//! without bound. A 201 means the event is durable: the bus acknowledges
//! only after its flush. HTTP/1.1 keep-alive is on by default.
//!
//! `GET /metrics` serves Prometheus metrics; every request is logged with
//! `tracing` ([`init_logging`]), its line written to stderr by a log thread
//! in batches, not by the request's worker.
//!
//! Shutdown (SIGINT/SIGTERM, or the future given to [`run`]): stop
//! accepting, end event streams, let in-flight requests finish (up to
//! [`Limits::shutdown_grace`]), then close the bus, which drains its writer.

mod admin;
mod auth;
mod backup;
mod batch;
mod cells;
mod console;
mod error;
mod history;
mod lifecycle;
mod limits;
mod listener;
mod logging;
mod metrics;
mod openapi;
mod routes;
mod stream;
mod views;

use std::future::{Future, IntoFuture};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

pub use auth::load_or_create_admin_token;
pub use logging::{flush_logs, init_logging, LogFormat};
pub use stream::{STREAM_CHUNK_BYTES, STREAM_CHUNK_EVENTS};

use crate::error::{Error, Result};
use crate::MissionBus;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Data directory (held exclusively while serving). With `store` set to
    /// a PostgreSQL database, only the admin token file (by default) and
    /// `server.url` live here.
    pub data: PathBuf,
    /// The store to serve when it is not the sled store in `data` (e.g. a
    /// PostgreSQL database: several servers may serve one).
    pub store: Option<crate::StoreUrl>,
    /// Address to listen on (default `127.0.0.1:7411`).
    pub listen: SocketAddr,
    /// Where the admin token is read from / written to (default `DATA/admin.token`).
    pub admin_token_file: Option<PathBuf>,
}

/// Resource limits of a running server. Every field documents its default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// Largest request body; larger ones get 413. By default 256 KiB, above
    /// the library's 64 KiB payload limit so that its precise error (also
    /// 413) is what clients usually see.
    pub max_body_bytes: usize,
    /// Open connections; further clients wait in the listen backlog. By
    /// default 512.
    pub max_connections: usize,
    /// Open connections from one client IP address; further ones are closed
    /// as soon as they are accepted. By default 128.
    pub max_connections_per_address: usize,
    /// Time for a request's headers to arrive, from their first byte (from
    /// the accept for a new connection). Fixed when it starts: trickled
    /// bytes do not extend it. The connection is closed when it passes. By
    /// default 10 s.
    pub header_timeout: Duration,
    /// Time for a request's body to arrive once its headers are in (fixed
    /// likewise); 408 and the connection closed when it passes. By default
    /// 10 s.
    pub body_timeout: Duration,
    /// Requests doing store work at once (blocking threads in use); others
    /// wait for a slot. By default 64.
    pub max_blocking: usize,
    /// Open event streams in all; further ones get 503. By default 256.
    pub max_streams: usize,
    /// Open event streams of one mission. By default 64.
    pub max_streams_per_mission: usize,
    /// Open event streams opened with one token. By default 16.
    pub max_streams_per_token: usize,
    /// How long a shutdown waits for in-flight requests. By default 10 s.
    pub shutdown_grace: Duration,
    /// A connection that moves no byte either way for this long while the
    /// server waits on it is closed (idle keep-alive, trickled request, an
    /// event-stream reader that stopped reading). By default 60 s; event
    /// streams send a keep-alive comment every 15 s.
    pub idle_timeout: Duration,
    /// How often every mission's retention policy is applied (by default
    /// every 60 s; `Duration::ZERO` turns the timer off).
    pub retention_every: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 256 * 1024,
            max_connections: 512,
            max_connections_per_address: 128,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_blocking: 64,
            max_streams: 256,
            max_streams_per_mission: 64,
            max_streams_per_token: 16,
            shutdown_grace: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            retention_every: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// Set [`Limits::retention_every`].
    pub fn retention_every(mut self, every: Duration) -> Self {
        self.retention_every = every;
        self
    }

    /// Set [`Limits::max_body_bytes`].
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Set [`Limits::max_connections`].
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Set [`Limits::max_connections_per_address`].
    pub fn max_connections_per_address(mut self, n: usize) -> Self {
        self.max_connections_per_address = n;
        self
    }

    /// Set [`Limits::header_timeout`].
    pub fn header_timeout(mut self, d: Duration) -> Self {
        self.header_timeout = d;
        self
    }

    /// Set [`Limits::body_timeout`].
    pub fn body_timeout(mut self, d: Duration) -> Self {
        self.body_timeout = d;
        self
    }

    /// Set [`Limits::max_streams_per_mission`].
    pub fn max_streams_per_mission(mut self, n: usize) -> Self {
        self.max_streams_per_mission = n;
        self
    }

    /// Set [`Limits::max_streams_per_token`].
    pub fn max_streams_per_token(mut self, n: usize) -> Self {
        self.max_streams_per_token = n;
        self
    }

    /// Set [`Limits::max_blocking`].
    pub fn max_blocking(mut self, n: usize) -> Self {
        self.max_blocking = n;
        self
    }

    /// Set [`Limits::max_streams`].
    pub fn max_streams(mut self, n: usize) -> Self {
        self.max_streams = n;
        self
    }

    /// Set [`Limits::shutdown_grace`].
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.shutdown_grace = d;
        self
    }

    /// Set [`Limits::idle_timeout`].
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }
}

/// What every handler shares.
pub(crate) struct App {
    bus: MissionBus,
    auth: auth::Authenticator,
    limits: Limits,
    /// Permits for blocking store work.
    blocking: Arc<Semaphore>,
    /// Open event streams, in all, per mission and per token.
    streams: Arc<limits::Streams>,
    /// Open connections, per client address.
    connections: Arc<limits::Connections>,
    metrics: metrics::Metrics,
    /// Turns true when the server starts shutting down.
    stop: watch::Receiver<bool>,
    /// Latest verify outcome per mission, for the console's missions list.
    verified: views::LastVerified,
}

/// File in the data directory holding `http://ADDR` while `serve` runs on
/// it (written after binding, removed at shutdown), so a CLI that finds the
/// directory in use can say `use --server http://ADDR`.
pub const SERVER_URL_FILE: &str = "server.url";

/// Run the server until SIGINT/SIGTERM; returns after a graceful shutdown.
///
/// Opens the bus at `opts.data`, reads or creates the admin token file,
/// binds `opts.listen`, and prints two lines on stdout:
/// `listening on ADDR` (the bound address, useful with port 0) and
/// `admin token: PATH`.
pub fn serve_blocking(opts: ServeOptions) -> Result<()> {
    let served = serve_until_stopped(opts);
    // Log lines still queued for the log thread reach stderr before the
    // process goes on (usually to exit).
    flush_logs();
    served
}

fn serve_until_stopped(opts: ServeOptions) -> Result<()> {
    let limits = Limits::default();
    let bus = match &opts.store {
        Some(url) => {
            let bus = MissionBus::builder_url(url.clone()).open()?;
            std::fs::create_dir_all(&opts.data).map_err(|e| Error::io(&opts.data, e))?;
            bus
        }
        None => MissionBus::open(&opts.data)?,
    };
    let token_path = opts
        .admin_token_file
        .clone()
        .unwrap_or_else(|| opts.data.join("admin.token"));
    let admin_token = load_or_create_admin_token(&token_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mission-bus-http")
        // Blocking work is bounded by `max_blocking` permits; streams'
        // catch-up reads take the same permits.
        .max_blocking_threads(limits.max_blocking + 8)
        .build()
        .map_err(|e| Error::io(&opts.data, e))?;
    let served = runtime.block_on(async {
        let shutdown = shutdown_signal().map_err(|e| Error::io("signal handlers", e))?;
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|e| Error::io(format!("listen address {}", opts.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io(format!("listen address {}", opts.listen), e))?;
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on {addr}");
            let _ = writeln!(out, "admin token: {}", token_path.display());
            let _ = out.flush();
        }
        // Tells a CLI that finds the directory held where to reach it.
        let url_file = opts.data.join(SERVER_URL_FILE);
        let _ = std::fs::write(&url_file, format!("http://{addr}\n"));
        let served = run_with_limits(listener, bus.clone(), admin_token, limits, shutdown).await;
        let _ = std::fs::remove_file(&url_file);
        served
    });
    // Waits for blocking tasks still running; they finish their bus calls.
    runtime.shutdown_timeout(Duration::from_secs(30));
    // Drains the writer: everything acknowledged is already durable, and
    // anything still queued is written before the directory is released.
    bus.close();
    served
}

/// A future that resolves on SIGINT or SIGTERM. The handlers are installed
/// when this is called (not when the future is first polled), so a signal
/// sent right after the "listening on" line is never lost to the default
/// action. Must be called inside the runtime.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            eprintln!("mission-bus: shutting down (finishing in-flight requests)");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("mission-bus: shutting down (finishing in-flight requests)");
        })
    }
}

/// Serve `bus` on `listener` until `shutdown` resolves, with the default
/// [`Limits`]. `admin_token` is the secret that creates missions and adds
/// participants. The caller keeps its `bus` handle and closes it afterwards.
pub async fn run(
    listener: TcpListener,
    bus: MissionBus,
    admin_token: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    run_with_limits(listener, bus, admin_token, Limits::default(), shutdown).await
}

/// [`run`] with explicit resource limits.
pub async fn run_with_limits(
    listener: TcpListener,
    bus: MissionBus,
    admin_token: String,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if admin_token.trim().len() < 16 {
        return Err(Error::invalid(
            "admin token",
            "must be at least 16 characters",
        ));
    }
    let local = listener.local_addr().ok();
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = Arc::new(App {
        bus,
        auth: auth::Authenticator::new(admin_token.trim()),
        blocking: Arc::new(Semaphore::new(limits.max_blocking.max(1))),
        streams: Arc::new(limits::Streams::default()),
        connections: limits::Connections::new(limits.max_connections_per_address),
        metrics: metrics::Metrics::default(),
        limits: limits.clone(),
        stop: stop_rx.clone(),
        verified: views::LastVerified::default(),
    });
    lifecycle::spawn_lease_timer(&app);
    history::spawn_retention_timer(&app);
    let listener = listener::LimitedListener::new(listener, &limits, Arc::clone(&app.connections));
    let router = routes::router(app);
    let mut stopping = stop_rx;
    let graceful = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<limits::Conn>(),
    )
    .with_graceful_shutdown(graceful)
    .into_future();
    let mut server = std::pin::pin!(server);
    let io_err = |e| Error::io(format!("http server on {local:?}"), e);
    tokio::select! {
        done = &mut server => return done.map_err(io_err),
        () = shutdown => {}
    }
    // Stop accepting, end event streams, let requests in flight finish.
    let _ = stop_tx.send(true);
    match tokio::time::timeout(limits.shutdown_grace, server).await {
        Ok(done) => done.map_err(io_err),
        Err(_) => {
            tracing::warn!(
                grace = ?limits.shutdown_grace,
                "shutdown grace period over; dropping the remaining connections"
            );
            Ok(())
        }
    }
}
