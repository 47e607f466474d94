//! The PostgreSQL backend: several bus processes on one (replicated)
//! database.
//!
//! The bus is synchronous and `tokio-postgres` is async, so the store owns
//! a small tokio runtime of its own: every call hands a future to it and
//! waits on a std channel ([`PgStore::run`]), which works from any thread,
//! including a server's `spawn_blocking` threads and its async workers
//! (never `block_on` inside another runtime).
//!
//! Two connections: the writer's (transactions: one per commit group, side
//! tables) and a shared reader connection (queries pipelined on it). Both
//! reconnect by themselves when they find their connection closed, so a
//! multi-host URL with `target_session_attrs=read-write` follows a
//! failover. The schema is created and migrated here (`schema.rs`), never
//! by hand. Files: `schema.rs` (DDL and versions), `commit.rs` (the commit
//! transaction), `reads.rs` (heads, lookups, scans, side tables),
//! `history.rs` (prune anchors, prune, delete, tombstones, archives'
//! records, compaction), `verify.rs` (one mission in one REPEATABLE READ
//! snapshot).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls};

use super::url::redact;
use super::Durability;
use crate::error::{Error, Result};

mod commit;
mod history;
mod reads;
mod schema;
mod verify;

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
    /// The location without its password, for messages.
    shown: String,
    durability: Durability,
    writer: Mutex<Option<Client>>,
    reader: Mutex<Option<Arc<Client>>>,
}

impl PgStore {
    /// Connect, create or migrate the schema.
    pub(crate) fn open(url: &str, durability: Durability) -> Result<PgStore> {
        let shown = redact(url);
        let config: Config = url.parse().map_err(|e| Error::Database {
            store: shown.clone(),
            reason: format!("not a valid connection string: {e}"),
        })?;
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
                shown,
                durability,
                writer: Mutex::new(None),
                reader: Mutex::new(None),
            }),
        };
        store.run(|c| async move {
            let mut guard = c.writer().await?;
            let client = guard.as_mut().expect("connected");
            schema::migrate(client, &c).await
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
        let reason = match e.as_db_error() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => e.to_string(),
        };
        Error::Database {
            store: self.shown.clone(),
            reason,
        }
    }

    async fn connect(&self) -> Result<Client> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| self.err(e))?;
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
        Ok(client)
    }

    /// The writer's connection (locked: one transaction at a time),
    /// reconnecting when it was lost.
    pub(crate) async fn writer(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>> {
        let mut guard = self.writer.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            *guard = Some(self.connect().await?);
        }
        Ok(guard)
    }

    /// The shared reader connection, reconnecting when it was lost.
    pub(crate) async fn reader(&self) -> Result<Arc<Client>> {
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
