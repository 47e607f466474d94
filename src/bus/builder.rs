//! Opening a store: options with documented defaults.

use super::{
    Directory, Inner, Limits, MissionBus, RecentEvents, Shared, Writer, QUEUE_DEPTH,
    SUBSCRIBER_BUFFER,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, ErrorKind, Result};
use crate::salvage::evidence::PreOpenCopy;
use crate::store::{Durability, Store, StoreOptions, StoreUrl};

/// Options for opening a [`MissionBus`]. Every setter documents its default.
#[derive(Debug, Clone)]
pub struct MissionBusBuilder {
    pub(super) path: PathBuf,
    pub(super) url: StoreUrl,
    pub(super) durability: Durability,
    pub(super) cache_capacity: u64,
    pub(super) flush_every_ms: Option<u64>,
    pub(super) max_payload_bytes: usize,
    pub(super) snapshot_every: u64,
    pub(super) create_if_missing: bool,
    pub(super) commit_ledger: bool,
    pub(super) ledger_preallocate: bool,
    pub(super) evidence_limit: u64,
}

impl MissionBusBuilder {
    /// When appends are acknowledged. By default [`Durability::Sync`]: after
    /// sled's log is flushed and fsynced and the commit ledger entry is
    /// fsynced, so neither a process crash nor a power cut can lose an
    /// acknowledged event. [`Durability::Flush`] is safe against process
    /// crashes only (no fsync; cheaper at one writer); [`Durability::Relaxed`]
    /// acknowledges before anything reaches the disk.
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// sled's page cache size in bytes. By default 64 MiB. sled's resident
    /// memory can grow past it; set it explicitly for your machine.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// sled's background flush (with a real fsync) period. By default 500 ms;
    /// `None` disables it (then only explicit flushes reach the disk).
    pub fn flush_every_ms(mut self, ms: Option<u64>) -> Self {
        self.flush_every_ms = ms;
        self
    }

    /// Largest accepted payload, checkpoint state or participant metadata
    /// (canonical JSON bytes). By default 64 KiB; at most 100 KiB, so that a
    /// whole record stays under sled's blob threshold.
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Save a state snapshot every this many events per mission. By default
    /// 1000; 0 disables snapshots (state is then always rebuilt from the log).
    pub fn snapshot_every(mut self, events: u64) -> Self {
        self.snapshot_every = events;
        self
    }

    /// Whether opening a directory that holds no store creates one. By
    /// default true. With false, such a directory (or a missing one) is
    /// [`Error::StoreNotFound`] and nothing is created: for read-only tools.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Before opening an existing store, copy its data file aside when it
    /// is at most this many bytes, and keep the copy in `DATA/evidence/` if
    /// the open finds damage: sled's recovery cuts its log at damage and
    /// loses the intact records after it, which `salvage` then still finds
    /// in the copy (see `docs/mission-bus.md`, salvage). By default 128 MiB
    /// ([`crate::salvage::DEFAULT_EVIDENCE_LIMIT`]); 0 never copies. The
    /// copy is deleted at once when the open finds no damage.
    pub fn evidence_limit(mut self, bytes: u64) -> Self {
        self.evidence_limit = bytes;
        self
    }

    /// Benchmarks only: run without the commit ledger (no ledger file is
    /// read, created or appended to; damage to sled's log can then lose
    /// acknowledged events in silence). By default the ledger is on.
    #[doc(hidden)]
    pub fn commit_ledger(mut self, on: bool) -> Self {
        self.commit_ledger = on;
        self
    }

    /// Benchmarks only: whether the commit ledger's file is preallocated
    /// (written zeros, 64 KiB at a time, so that a group's `fdatasync`
    /// overwrites existing blocks instead of growing the file). By default
    /// false (it measured no gain); every entry then grows the file. Either
    /// way the file is read the same.
    #[doc(hidden)]
    pub fn ledger_preallocate(mut self, on: bool) -> Self {
        self.ledger_preallocate = on;
        self
    }

    /// Open (creating if needed) the store. Fails with
    /// [`Error::DataDirInUse`] if another process holds the directory.
    pub fn open(self) -> Result<MissionBus> {
        if self.max_payload_bytes == 0 || self.max_payload_bytes > 100 * 1024 {
            return Err(Error::invalid(
                "max_payload_bytes",
                format!("{} is outside 1..=102400", self.max_payload_bytes),
            ));
        }
        let store_options = StoreOptions {
            cache_capacity: self.cache_capacity,
            flush_every_ms: self.flush_every_ms,
            create_if_missing: self.create_if_missing,
            durability: self.durability,
        };
        // sled's recovery on open can cut its log at damage: keep a copy
        // of its data file from before, for salvage, if the open finds any.
        let evidence = self
            .url
            .sled_path()
            .map(|path| PreOpenCopy::take(path, self.evidence_limit));
        let keep_if_damage = |e: &Error, evidence: Option<PreOpenCopy>| {
            if let (ErrorKind::Integrity, Some(copy)) = (e.kind(), evidence) {
                copy.keep();
            }
        };
        let store = match Store::open(&self.url, &store_options) {
            Ok(store) => Arc::new(store),
            Err(e) => {
                keep_if_damage(&e, evidence);
                return Err(e);
            }
        };
        // The commit ledger guards sled's own log; PostgreSQL's commits are
        // durable (and replicated) when they return, so it has none.
        let (ledger, integrity) = if self.commit_ledger && store.as_sled().is_some() {
            match super::integrity::check_at_open(&store, &self.path, self.ledger_preallocate) {
                Ok(found) => found,
                Err(e) => {
                    keep_if_damage(&e, evidence);
                    return Err(e.in_dir(&self.path));
                }
            }
        } else {
            (None, super::integrity::Integrity::default())
        };
        if let (true, Some(copy)) = (integrity.found_damage(), evidence) {
            copy.keep();
        }
        // Finish deletes and prunes a crash interrupted (records of deleted
        // missions, records below a prune anchor). Best effort: what is
        // left is ignored by every read and removed next time.
        match store.finish_history_cleanups() {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "finished an interrupted delete or prune"),
            Err(e) => tracing::warn!(error = %e, "could not finish an interrupted delete or prune"),
        }
        let integrity = Arc::new(integrity);
        let mut directory = Directory::default();
        for (name, no) in store.missions()? {
            directory.insert(name, no);
        }
        let shared = Arc::new(Shared {
            cache: RwLock::new(HashMap::new()),
            directory: RwLock::new(directory),
            committed: tokio::sync::broadcast::channel(SUBSCRIBER_BUFFER).0,
            mission_channels: Mutex::new(HashMap::new()),
            recent: Mutex::new(RecentEvents::new()),
            written: std::sync::atomic::AtomicU64::new(0),
            live: Default::default(),
        });
        let (tx, rx) = mpsc::sync_channel(QUEUE_DEPTH);
        let writer = Writer {
            store: Arc::clone(&store),
            shared: Arc::clone(&shared),
            durability: self.durability,
            snapshot_every: self.snapshot_every,
            ledger: std::cell::RefCell::new(ledger),
            ledger_pending: std::cell::RefCell::new(Default::default()),
            ledger_sync: Default::default(),
            integrity: Arc::clone(&integrity),
        };
        let handle = std::thread::Builder::new()
            .name("mission-bus-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io(&self.path, e))?;
        // Shared stores: hear of other processes' commits and revocations.
        super::follow::start(&store, &shared)?;
        Ok(MissionBus {
            inner: Arc::new(Inner {
                store: Some(store),
                shared,
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                limits: Limits {
                    max_payload_bytes: self.max_payload_bytes,
                },
                durability: self.durability,
                store_options,
                integrity,
            }),
        })
    }
}
