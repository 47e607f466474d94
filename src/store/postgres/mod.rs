//! The PostgreSQL backend: several bus processes on one (replicated)
//! database.
//!
//! The bus is synchronous and `tokio-postgres` is async, so the store owns
//! a small tokio runtime of its own: every call hands a future to it and
//! waits on a std channel ([`PgStore::run`]), which works from any thread,
//! including a server's `spawn_blocking` threads and its async workers
//! (never `block_on` inside another runtime).
//!
//! Three connections: the writer's (transactions: one per commit group,
//! side tables), a shared reader connection (queries pipelined on it) and
//! the listener's (`LISTEN`, see `listen.rs`). All reconnect by themselves
//! when they find their connection closed, so a multi-host URL with
//! `target_session_attrs=read-write` follows a failover. Statements are
//! prepared once per connection (`conn.rs`), and TLS follows the URL's
//! `sslmode`. The schema is created and migrated here (`schema.rs`), never
//! by hand. Files: `conn.rs` (TLS, prepared statements), `schema.rs` (DDL
//! and versions), `commit.rs` (the commit transaction), `reads.rs` (heads,
//! lookups, scans, side tables), `history.rs` (prune anchors, prune, delete, tombstones, archives'
//! records, compaction), `listen.rs` (other processes' commits and
//! revocations), `verify.rs` (one mission in one REPEATABLE READ snapshot).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::url::redact;
use super::Durability;
use crate::codec::Hash;
use crate::error::{Error, Result};

mod commit;
mod conn;
mod history;
mod listen;
mod reads;
mod schema;
mod verify;

pub(crate) use conn::Conn;
pub(crate) use listen::Notice;

/// Most mission heads remembered by [`Conns::heads`] (cleared when full).
const HEADS_MAX: usize = 65_536;

/// Rows fetched per query by a scan (constant memory per stream).
const SCAN_CHUNK: i64 = 1000;

/// An open PostgreSQL store.
pub(crate) struct PgStore {
    rt: tokio::runtime::Runtime,
    conn: Arc<Conns>,
}

/// The connections, (re)made on demand.
pub(crate) struct Conns {
    config: Config,
    tls: MakeRustlsConnect,
    /// Whether the URL refuses a connection without TLS.
    tls_required: bool,
    /// The location without its password, for messages.
    shown: String,
    durability: Durability,
    writer: Mutex<Option<Conn>>,
    reader: Mutex<Option<Arc<Conn>>>,
    /// Each mission's head as last seen (read or committed here): the
    /// commit chains on it without reading it first, and its transaction
    /// checks it under the row lock (a head that moved is a conflict).
    heads: std::sync::Mutex<HashMap<i64, (u64, Hash)>>,
}

impl PgStore {
    /// Connect, create or migrate the schema.
    pub(crate) fn open(url: &str, durability: Durability) -> Result<PgStore> {
        let shown = redact(url);
        let bad = |reason: String| Error::Database {
            store: shown.clone(),
            reason,
        };
        let target = conn::split_tls(url).map_err(&bad)?;
        let config: Config = target
            .url
            .parse()
            .map_err(|e| bad(format!("not a valid connection string: {e}")))?;
        let tls = conn::connector(&target).map_err(&bad)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mission-bus-postgres")
            .enable_all()
            .build()
            .map_err(|e| Error::Database {
                store: shown.clone(),
                reason: format!("cannot start its client runtime: {e}"),
            })?;
        let store = PgStore {
            rt,
            conn: Arc::new(Conns {
                config,
                tls,
                tls_required: target.mode.required(),
                shown,
                durability,
                writer: Mutex::new(None),
                reader: Mutex::new(None),
                heads: std::sync::Mutex::new(HashMap::new()),
            }),
        };
        store.run(|c| async move {
            let mut guard = c.writer().await?;
            let conn = guard.as_mut().expect("connected");
            schema::migrate(&mut conn.client, &c).await
        })?;
        Ok(store)
    }

    /// The location without its password.
    pub(crate) fn shown(&self) -> &str {
        &self.conn.shown
    }

    /// Run `f` on the store's runtime and wait for it, from any thread.
    pub(crate) fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Conns>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        block_on_runtime(self.rt.handle(), f(Arc::clone(&self.conn)))
    }
}

/// Run `fut` on the store's runtime and wait for its result on this thread
/// (a std channel: fine on any thread, never a nested `block_on`).
pub(crate) fn block_on_runtime<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(Error::Database {
            store: "(client runtime)".into(),
            reason: "the client runtime stopped".into(),
        })
    })
}

impl Conns {
    /// A database error, with SQLSTATE and the server's message.
    pub(crate) fn err(&self, e: tokio_postgres::Error) -> Error {
        self.err_ref(&e)
    }

    /// [`Conns::err`] of a borrowed error.
    pub(crate) fn err_ref(&self, e: &tokio_postgres::Error) -> Error {
        let reason = match e.as_db_error() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => {
                // The cause (a TLS or I/O error) says what went wrong.
                let mut text = e.to_string();
                let mut cause = std::error::Error::source(e);
                while let Some(c) = cause {
                    let more = c.to_string();
                    if !text.contains(&more) {
                        text = format!("{text}: {more}");
                    }
                    cause = c.source();
                }
                text
            }
        };
        Error::Database {
            store: self.shown.clone(),
            reason,
        }
    }

    /// A connection error, saying when the URL's TLS demand is the cause.
    fn connect_err(&self, e: tokio_postgres::Error) -> Error {
        let err = self.err_ref(&e);
        if self.tls_required && err.to_string().contains("does not support TLS") {
            return Error::Database {
                store: self.shown.clone(),
                reason: "the server does not accept TLS connections, and the URL's sslmode \
                         requires TLS (turn ssl on in the server, or use sslmode=prefer or \
                         disable on a trusted network)"
                    .into(),
            };
        }
        err
    }

    async fn connect(&self) -> Result<Conn> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.connect_err(e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        let sync = match self.durability {
            Durability::Sync => "on",
            Durability::Flush => "local",
            Durability::Relaxed => "off",
        };
        client
            .batch_execute(&format!(
                "SET synchronous_commit = {sync}; SET application_name = 'mission-bus'"
            ))
            .await
            .map_err(|e| self.err(e))?;
        Ok(Conn::new(client))
    }

    /// The writer's connection (locked: one transaction at a time),
    /// reconnecting when it was lost.
    pub(crate) async fn writer(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Conn>>> {
        let mut guard = self.writer.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            *guard = Some(self.connect().await?);
        }
        Ok(guard)
    }

    /// The shared reader connection, reconnecting when it was lost.
    pub(crate) async fn reader(&self) -> Result<Arc<Conn>> {
        let mut guard = self.reader.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        *guard = None;
        let c = Arc::new(self.connect().await?);
        *guard = Some(Arc::clone(&c));
        Ok(c)
    }
}

impl Conns {
    /// A mission's head as last seen here, if it is remembered.
    pub(crate) fn known_head(&self, mission: i64) -> Option<(u64, Hash)> {
        self.heads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&mission)
            .copied()
    }

    /// Remember a head seen in the database (the newest one wins: heads
    /// only move forward).
    pub(crate) fn saw_head(&self, mission: i64, head: (u64, Hash)) {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        if heads.len() >= HEADS_MAX {
            heads.clear();
        }
        let e = heads.entry(mission).or_insert(head);
        if head.0 >= e.0 {
            *e = head;
        }
    }

    /// Forget a remembered head (it proved wrong).
    pub(crate) fn forget_head(&self, mission: i64) {
        self.heads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&mission);
    }
}
