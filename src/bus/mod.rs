//! `MissionBus`: permission checks, the one write path, resume packets.
//!
//! Writes go through a single writer thread that owns all state mutation.
//! Callers send it requests; it drains whatever is queued (a *commit group*),
//! checks each request against the mission state as it will be once the
//! earlier requests of the group land, writes the whole group in one sled
//! transaction, makes it durable with one flush, and only then publishes the
//! new state and acknowledges every request of the group. Concurrent
//! appenders therefore share flushes (group commit), and nobody is
//! acknowledged before their event is durable.
//!
//! Reads (state, resume packets, lookups, replay) run on the caller's thread
//! against the published state, which only ever reflects durable events.
//!
//! One concern a file: `builder` (options and open), `types` (the public
//! request and answer types), `writes` (the public write calls and the
//! stateless checks they run on the caller's thread, in `checks`), `reads`
//! (state, lookups, resume packets, replay, subscriptions), `tokens`,
//! `follow` (other processes' commits and revocations on a shared store),
//! `shared` (what readers see: the published states, the mission directory,
//! the recent-events cache), `writer` (the single writer thread: plan,
//! commit) and `publish` (after the flush: publish, acknowledge, then wake
//! streams and subscribers and write snapshots).

mod archive;
mod async_api;
mod backup;
mod builder;
mod cells;
mod checks;
mod consumers;
mod copy;
mod durable;
mod filter;
mod follow;
mod history;
mod import;
mod integrity;
mod lifecycle;
mod live;
mod loss;
mod publish;
mod reads;
mod resume;
mod shared;
mod tokens;
mod types;
mod writer;
mod writes;

pub use archive::{chain_archives, read_archive, Archive, ArchiveInfo};
pub use async_api::BatchItem;
pub use backup::BackupReport;
pub use builder::MissionBusBuilder;
pub use consumers::{ConsumerPosition, MAX_CONSUMERS_PER_PARTICIPANT};
pub use copy::CopyReport;
pub use filter::{EventFilter, EventPage};
pub use history::PruneReport;
pub use lifecycle::MAX_LEASE_MS;
pub use live::{BusStats, Histogram};
pub use tokens::token_hash;
pub use types::{
    Action, AppendOptions, Committed, MissionSummary, NewMission, ResumePacket, ResumeSource,
    TokenOwner,
};

use async_api::Reply;
use checks::*;
use shared::{Cached, Directory, RecentEvents, Shared, SUBSCRIBER_BUFFER};
use writer::Writer;
use writes::{Draft, Job};

use std::path::Path;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::store::{Durability, SledStore, Store, StoreOptions};

/// Largest record body we let reach sled. sled writes values over ~128 KiB
/// to separate blob files without fsync, so every record stays below that.
pub const MAX_RECORD_BYTES: usize = 120 * 1024;
/// Longest mission id, participant name or role, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest topic, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
/// Longest title, summary or note, in bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Most artifacts on one checkpoint.
pub const MAX_ARTIFACTS: usize = 256;
/// Events per transaction when importing a whole log.
const IMPORT_CHUNK: usize = 10_000;
/// Most requests the writer folds into one commit group.
const MAX_GROUP: usize = 1024;
/// Requests that may wait for the writer before senders block.
const QUEUE_DEPTH: usize = 4096;

/// A handle on a mission store. Cheap to clone (an `Arc` inside), `Send +
/// Sync`: share one per process. The store is closed when the last clone is
/// dropped (or [`MissionBus::close`] is called).
#[derive(Clone)]
pub struct MissionBus {
    inner: Arc<Inner>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MissionBus>();
};

struct Inner {
    /// `None` only while dropping.
    store: Option<Arc<Store>>,
    shared: Arc<Shared>,
    tx: Mutex<Option<SyncSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    limits: Limits,
    durability: Durability,
    store_options: StoreOptions,
    integrity: Arc<integrity::Integrity>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(store) = self.store.take() {
            let Some(sled) = store.as_sled() else {
                return;
            };
            let lock = sled.lock_file();
            let path = sled.path().to_path_buf();
            drop(store);
            // sled releases its directory lock from background threads a
            // moment after the Db is dropped; wait for it (bounded), so that
            // "closed" means "can be reopened", here or by another process.
            let released = || wait_for_unlock(&lock, std::time::Duration::from_secs(5));
            if released()
                && self
                    .shared
                    .written
                    .load(std::sync::atomic::Ordering::Relaxed)
                    >= FAST_REOPEN_AFTER_EVENTS
            {
                // Best effort: a failure only means a slower next open.
                if SledStore::write_recovery_snapshot(&path, &self.store_options).is_ok() {
                    released();
                }
            }
        }
    }
}

/// A clean close after a session that wrote at least this many events lets
/// sled write its recovery snapshot (see `Store::write_recovery_snapshot`).
const FAST_REOPEN_AFTER_EVENTS: u64 = 10_000;

/// Poll until nobody holds an exclusive lock on `path`, or `limit` passes.
/// Returns whether the lock is free.
pub(crate) fn wait_for_unlock(path: &Path, limit: std::time::Duration) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let deadline = std::time::Instant::now() + limit;
    loop {
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                return true;
            }
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(_) => return false,
        }
    }
}

impl Inner {
    fn store(&self) -> &Arc<Store> {
        self.store
            .as_ref()
            .expect("the store is only taken when the bus is dropped")
    }

    fn shutdown(&self) {
        // Dropping the sender ends the writer after it drains the queue.
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_payload_bytes: usize,
}

impl MissionBus {
    /// A builder for the store at `path`, with the defaults documented on each setter.
    pub fn builder(path: impl AsRef<Path>) -> MissionBusBuilder {
        Self::builder_url(crate::store::StoreUrl::Sled(path.as_ref().to_path_buf()))
    }

    /// A builder for the store at `url`: a sled data directory
    /// ([`StoreUrl::Sled`](crate::StoreUrl)) or a PostgreSQL database
    /// ([`StoreUrl::Postgres`](crate::StoreUrl), e.g. parsed from
    /// `postgres://user@host1,host2/db?target_session_attrs=read-write`).
    /// On PostgreSQL the sled settings (cache, flush period) do nothing,
    /// there is no commit ledger (backups and salvage are sled's; use the
    /// database's own), and several processes may open the same database.
    pub fn builder_url(url: crate::store::StoreUrl) -> MissionBusBuilder {
        MissionBusBuilder {
            path: url.sled_path().map(Path::to_path_buf).unwrap_or_default(),
            url,
            durability: Durability::default(),
            cache_capacity: 64 * 1024 * 1024,
            flush_every_ms: Some(500),
            max_payload_bytes: 64 * 1024,
            snapshot_every: 1000,
            create_if_missing: true,
            commit_ledger: true,
            ledger_preallocate: false,
            evidence_limit: crate::salvage::DEFAULT_EVIDENCE_LIMIT,
        }
    }

    /// Open the store at `path` with all defaults.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).open()
    }

    /// Open the store a location string names (see [`StoreUrl::parse`](crate::StoreUrl::parse):
    /// a path, `sled:PATH`, or `postgres://…`) with all defaults.
    pub fn open_url(url: &str) -> Result<Self> {
        Self::builder_url(crate::store::StoreUrl::parse(url)?).open()
    }

    /// Where the store lives (a password in a URL is shown as `***`).
    pub fn store_location(&self) -> String {
        self.inner.store().describe()
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        self.inner.store().path()
    }

    /// The durability mode this bus acknowledges with.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Stop the writer (after it finishes queued requests) and release the
    /// data directory once every clone is dropped. Later writes fail with
    /// [`Error::Closed`].
    pub fn close(&self) {
        self.inner.shutdown();
    }

    fn send<T>(&self, make: impl FnOnce(mpsc::Sender<Result<T>>) -> Job) -> Result<T> {
        let (reply, rx) = mpsc::channel();
        let tx = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(Error::Closed)?;
        tx.send(make(reply)).map_err(|_| Error::Closed)?;
        // sled's damage errors know the file's name only: add the directory.
        rx.recv()
            .map_err(|_| Error::Closed)?
            .map_err(|e| e.in_dir(self.path()))
    }
}
