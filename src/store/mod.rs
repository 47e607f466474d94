//! The storage seam: one interface over two backends.
//!
//! - `sled_backend/`: the embedded default (a data directory; the ONLY code
//!   that touches sled), with the commit ledger, salvage and backups built
//!   on it elsewhere.
//! - `postgres/`: PostgreSQL through `tokio-postgres`, for several bus
//!   processes on one replicated database.
//!
//! [`Store`] is an enum dispatching to them, so iterators stay concrete and
//! the bus above speaks in missions, sequences and [`Event`]s only. Shared
//! here: the durability modes, the planned commit, the checked event stream
//! ([`EventIter`]) and where a store lives ([`StoreUrl`]). See
//! `docs/format.md` for the bytes and the SQL schema.

use std::path::Path;

use uuid::Uuid;

use crate::codec::{self, Anchor, Hash, Tombstone};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::keys::{self, MissionNo};
use crate::verify::VerifyReport;

mod postgres;
mod sled_backend;
mod url;
mod walk;

pub(crate) use postgres::{Notice, PgStore};
pub(crate) use sled_backend::{CopyCounts, SledStore};
pub use url::StoreUrl;

/// When an append is acknowledged, relative to the disk.
///
/// The default, [`Durability::Sync`], never acknowledges an event that a
/// process crash or a power cut could lose. Every mode keeps the log a
/// consistent prefix of what was written; they differ in what an
/// acknowledgement promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// The default: flush sled's log and `fdatasync` its data file while the
    /// group's heads are written to the commit ledger and `fdatasync`ed on
    /// another thread, then confirm them in the ledger (plain write), before
    /// acknowledging. An acknowledged event survives a process crash
    /// (kill -9) and a power cut (if the disk honours flushes). Group commit
    /// shares the two syncs among every request of a commit group.
    /// On PostgreSQL: the group's transaction commits with
    /// `synchronous_commit = on` (flushed on the primary and, with a
    /// synchronous standby configured, there too).
    #[default]
    Sync,
    /// Flush sled's log and write the ledger entry to the OS (no fsync)
    /// before acknowledging: survives a crash of the process (kill -9), not
    /// necessarily a power cut (sled's flush ends in `sync_file_range`).
    /// On PostgreSQL: `synchronous_commit = local` (flushed on the primary
    /// only, not waiting for a standby).
    Flush,
    /// Acknowledge once the event is in memory; sled's background flusher
    /// writes it within `flush_every_ms` (500 ms by default). A crash can
    /// lose everything acknowledged in that window (the log stays a
    /// consistent prefix). The commit ledger is only written when the bus
    /// closes (after a real flush), so losses of a crashed `Relaxed` session
    /// are not reported as missing. For bulk loads you can redo.
    /// On PostgreSQL: `synchronous_commit = off` (a server crash can lose
    /// the last few hundred milliseconds of acknowledged commits).
    Relaxed,
}

/// Secondary indexes: id -> `[mission][seq]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Index {
    Checkpoints,
    Handoffs,
    EventIds,
}

/// Settings the store is opened with.
#[derive(Debug, Clone)]
pub(crate) struct StoreOptions {
    pub(crate) cache_capacity: u64,
    pub(crate) flush_every_ms: Option<u64>,
    /// Create the directory and an empty store when none is there. When
    /// false, opening a directory without a store is `StoreNotFound` and
    /// nothing is created.
    pub(crate) create_if_missing: bool,
    /// What an acknowledgement promises (PostgreSQL: the session's
    /// `synchronous_commit`).
    pub(crate) durability: Durability,
}

/// Events planned for one mission in one commit: their sequences were
/// assigned by the planner as `prev_seq + 1 ..`, and the transaction checks
/// them against the head it reads.
#[derive(Debug)]
pub(crate) struct PlannedAppend {
    pub(crate) mission: MissionNo,
    /// The mission's string id (version-2 records carry it).
    pub(crate) mission_id: String,
    /// Register the mission's string id in the same transaction (creation).
    pub(crate) register: Option<String>,
    /// Overwrite event-id index entries left by an interrupted import (the
    /// planner checked that every existing entry is such a leftover).
    pub(crate) replace_orphan_ids: bool,
    pub(crate) prev_seq: u64,
    pub(crate) events: Vec<Event>,
}

/// One stored consumer position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredConsumer {
    pub(crate) participant: String,
    pub(crate) consumer: String,
    pub(crate) position: u64,
    pub(crate) updated_us: i64,
}

/// An open store: one of the backends.
pub(crate) enum Store {
    /// The embedded default: a data directory.
    Sled(SledStore),
    /// A PostgreSQL database.
    Postgres(PgStore),
}

/// Run `$e` (which returns a `Result`) with `$s` bound to whichever
/// backend `$self` is. On sled, a panic inside sled (it can panic on a
/// damaged page it reads lazily, long after the open) becomes
/// `Error::Damaged` naming the data file, never a crashed process.
macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Store::Sled($s) => sled_backend::guard($s.path(), || $e),
            Store::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// Open the store `url` names.
    pub(crate) fn open(url: &StoreUrl, opts: &StoreOptions) -> Result<Store> {
        match url {
            StoreUrl::Sled(path) => Ok(Store::Sled(SledStore::open(path, opts)?)),
            StoreUrl::Postgres(url) => Ok(Store::Postgres(PgStore::open(url, opts.durability)?)),
        }
    }

    /// The sled backend, for the sled-only machinery (commit ledger,
    /// backups, sled's directory lock); `None` on other backends.
    pub(crate) fn as_sled(&self) -> Option<&SledStore> {
        match self {
            Store::Sled(s) => Some(s),
            Store::Postgres(_) => None,
        }
    }

    /// The data directory (sled), or an empty path for a database.
    pub(crate) fn path(&self) -> &Path {
        match self {
            Store::Sled(s) => s.path(),
            Store::Postgres(_) => Path::new(""),
        }
    }

    /// A fresh internal mission number (unique, increasing, with gaps).
    pub(crate) fn allocate_mission_no(&self) -> Result<MissionNo> {
        each!(self, s => s.allocate_mission_no())
    }

    /// The internal number of mission `name`, if it exists.
    pub(crate) fn mission_no(&self, name: &str) -> Result<Option<MissionNo>> {
        each!(self, s => s.mission_no(name))
    }

    /// Every mission: (string id, internal number), sorted by id.
    pub(crate) fn missions(&self) -> Result<Vec<(String, MissionNo)>> {
        each!(self, s => s.missions())
    }

    /// Head sequence and chain hash of a registered mission (a missing head
    /// is corruption, never an empty mission).
    /// On PostgreSQL a mission another process deleted (its number has a
    /// tombstone) is `MissionNotFound`.
    pub(crate) fn head(&self, mission: MissionNo, name: &str) -> Result<(u64, Hash)> {
        match self {
            Store::Sled(s) => sled_backend::guard(s.path(), || s.head(mission, name)),
            Store::Postgres(s) => s.head(mission, name).map_err(|e| match s.deleted(mission) {
                Ok(true) => Error::MissionNotFound {
                    mission: name.to_string(),
                },
                _ => e,
            }),
        }
    }

    /// One event by sequence.
    pub(crate) fn event(&self, mission: MissionNo, seq: u64, name: &str) -> Result<Option<Event>> {
        each!(self, s => s.event(mission, seq, name))
    }

    /// The chain hash of the record at `seq`, after checking its checksum.
    pub(crate) fn record_hash(&self, mission: MissionNo, seq: u64) -> Result<Option<Hash>> {
        each!(self, s => s.record_hash(mission, seq))
    }

    /// Index lookup: one `get`, never a scan of the log.
    pub(crate) fn lookup(&self, index: Index, id: &Uuid) -> Result<Option<(MissionNo, u64)>> {
        each!(self, s => s.lookup(index, id))
    }

    /// The sequence of the event with id `id` in `mission`, if any.
    pub(crate) fn lookup_event_id(&self, mission: MissionNo, id: &Uuid) -> Result<Option<u64>> {
        each!(self, s => s.lookup_event_id(mission, id))
    }

    /// Stream a mission's events with sequences in `from..=to`, in order,
    /// checking checksums and contiguity as it goes. Constant memory.
    pub(crate) fn scan(&self, mission: MissionNo, name: &str, from: u64, to: u64) -> EventIter {
        // Lazy: sled reads nothing until the iterator (guarded) is pulled.
        match self {
            Store::Sled(s) => s.scan(mission, name, from, to),
            Store::Postgres(s) => s.scan(mission, name, from, to),
        }
    }

    /// [`Store::scan`] that also follows the hash chain up to `head`.
    pub(crate) fn scan_chained(
        &self,
        mission: MissionNo,
        name: &str,
        from: u64,
        to: u64,
        head: (u64, Hash),
    ) -> Result<EventIter> {
        each!(self, s => s.scan_chained(mission, name, from, to, head))
    }

    /// Write a commit group atomically: events, index entries, heads and
    /// mission registrations. Returns each plan's new head.
    pub(crate) fn commit(&self, plans: &[PlannedAppend]) -> Result<Vec<(u64, Hash)>> {
        each!(self, s => s.commit(plans))
    }

    /// Make everything committed so far durable, as `durability` says
    /// (PostgreSQL: nothing to do, a commit returns once durable).
    pub(crate) fn flush(&self, durability: Durability) -> Result<()> {
        match self {
            Store::Sled(s) => s.flush(durability),
            Store::Postgres(_) => Ok(()),
        }
    }

    /// Whether other processes write to this store too (PostgreSQL): the
    /// bus's cached states are then caches of a moving log, re-read when a
    /// commit finds a head moved.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// On a shared store, what other processes commit and revoke, as it
    /// happens (see `postgres/listen.rs`); `None` on sled.
    pub(crate) fn listen(&self) -> Option<std::sync::mpsc::Receiver<Notice>> {
        match self {
            Store::Sled(_) => None,
            Store::Postgres(p) => Some(p.listen()),
        }
    }

    /// Every mission's head sequence, read from the store (shared stores;
    /// empty on sled, whose heads only this process moves).
    pub(crate) fn all_heads(&self) -> Result<Vec<(MissionNo, u64)>> {
        match self {
            Store::Sled(_) => Ok(Vec::new()),
            Store::Postgres(p) => p.all_heads(),
        }
    }

    /// The raw snapshot value of a mission, if one was saved.
    pub(crate) fn snapshot(&self, mission: MissionNo) -> Result<Option<sled::IVec>> {
        each!(self, s => s.snapshot(mission))
    }

    /// Save a snapshot value (a cache: a lost one is rebuilt from the log).
    pub(crate) fn put_snapshot(&self, mission: MissionNo, value: Vec<u8>) -> Result<()> {
        each!(self, s => s.put_snapshot(mission, value))
    }

    /// Remember a token hash as belonging to participant `name` of
    /// `mission`, optionally revoking the participant's other tokens.
    /// Returns how many were revoked.
    pub(crate) fn put_token(
        &self,
        hash: &[u8; 32],
        mission: MissionNo,
        name: &str,
        revoke_others: bool,
    ) -> Result<u64> {
        each!(self, s => s.put_token(hash, mission, name, revoke_others))
    }

    /// The owner of a token hash: (mission, participant name).
    pub(crate) fn token_owner(&self, hash: &[u8; 32]) -> Result<Option<(MissionNo, String)>> {
        each!(self, s => s.token_owner(hash))
    }

    /// Remove one token (by hash) if it belongs to participant `name` of
    /// `mission`. Returns whether it was there.
    pub(crate) fn revoke_token(
        &self,
        hash: &[u8; 32],
        mission: MissionNo,
        name: &str,
    ) -> Result<bool> {
        each!(self, s => s.revoke_token(hash, mission, name))
    }

    /// Remove every token of participant `name` of `mission`.
    pub(crate) fn revoke_tokens(&self, mission: MissionNo, name: &str) -> Result<u64> {
        each!(self, s => s.revoke_tokens(mission, name))
    }

    /// Bytes the store occupies on disk.
    pub(crate) fn size_on_disk(&self) -> Result<u64> {
        each!(self, s => s.size_on_disk())
    }

    /// Check one mission's log, chain, head and index entries.
    pub(crate) fn verify(&self, mission: MissionNo, name: &str) -> Result<VerifyReport> {
        each!(self, s => s.verify(mission, name))
    }

    /// The stored position of one consumer.
    pub(crate) fn consumer(
        &self,
        mission: MissionNo,
        participant: &str,
        consumer: &str,
    ) -> Result<Option<StoredConsumer>> {
        each!(self, s => s.consumer(mission, participant, consumer))
    }

    /// Move a consumer's position up (never down); `Err(count)` when a new
    /// consumer would pass `max` for the participant.
    pub(crate) fn advance_consumer(
        &self,
        mission: MissionNo,
        participant: &str,
        consumer: &str,
        position: u64,
        at_us: i64,
        max: usize,
    ) -> Result<std::result::Result<u64, usize>> {
        each!(self, s => s.advance_consumer(mission, participant, consumer, position, at_us, max))
    }

    /// Every consumer of a mission (of one participant when given).
    pub(crate) fn consumers(
        &self,
        mission: MissionNo,
        participant: Option<&str>,
    ) -> Result<Vec<StoredConsumer>> {
        each!(self, s => s.consumers(mission, participant))
    }

    /// Forget one consumer (`Some`) or all of a participant's (`None`).
    pub(crate) fn delete_consumers(
        &self,
        mission: MissionNo,
        participant: &str,
        consumer: Option<&str>,
    ) -> Result<u64> {
        each!(self, s => s.delete_consumers(mission, participant, consumer))
    }

    /// Filtered range read, oldest or newest first (see the backends).
    pub(crate) fn scan_filtered(
        &self,
        mission: MissionNo,
        name: &str,
        range: (u64, u64),
        newest_first: bool,
        limit: usize,
        keep: &dyn Fn(&Event) -> bool,
    ) -> Result<(Vec<Event>, Option<u64>)> {
        let r = each!(self, s => s.scan_filtered(mission, name, range, newest_first, limit, keep));
        self.pruned_meanwhile(mission, name, r)
    }

    /// A record found missing below where the log starts NOW was taken by
    /// a prune that ran meanwhile: [`Error::Pruned`] (mission, sequence,
    /// first kept), not corruption. Any other result is returned as is.
    pub(crate) fn pruned_meanwhile<T>(
        &self,
        mission: MissionNo,
        name: &str,
        r: Result<T>,
    ) -> Result<T> {
        match r {
            Err(Error::Corruption {
                mission: m,
                sequence: Some(seq),
                reason,
            }) => match self.first_kept(mission, name) {
                Ok((first, _)) if first > seq => Err(Error::Pruned {
                    mission: name.to_string(),
                    sequence: seq,
                    first,
                }),
                _ => Err(Error::Corruption {
                    mission: m,
                    sequence: Some(seq),
                    reason,
                }),
            },
            other => other,
        }
    }

    /// Whether this store has had a commit ledger (sled only).
    pub(crate) fn has_ledger(&self) -> Result<bool> {
        self.as_sled().map_or(Ok(false), |s| s.has_ledger())
    }

    /// Record (durably) that this store keeps a commit ledger (sled only).
    pub(crate) fn mark_ledger(&self) -> Result<()> {
        match self.as_sled() {
            Some(s) => s.mark_ledger(),
            None => Err(self.sled_only("the commit ledger")),
        }
    }

    /// Copy the whole store into a new sled directory (backups; sled only).
    pub(crate) fn copy_to(&self, to: &Path) -> Result<CopyCounts> {
        match self.as_sled() {
            Some(s) => s.copy_to(to),
            None => {
                Err(self.sled_only("backup (use `mission-bus copy` or the database's own backups)"))
            }
        }
    }

    // ----- history management (sled_backend/history.rs, postgres/history.rs) -----

    /// The prune anchor of a mission, if it was ever pruned.
    pub(crate) fn anchor(&self, mission: MissionNo, name: &str) -> Result<Option<Anchor>> {
        each!(self, s => s.anchor(mission, name))
    }

    /// The first sequence a mission's log holds and the hash it chains to.
    pub(crate) fn first_kept(&self, mission: MissionNo, name: &str) -> Result<(u64, Hash)> {
        each!(self, s => s.first_kept(mission, name))
    }

    /// Commit a `history_pruned` event and its anchor in one transaction.
    /// On PostgreSQL the event goes at the head the transaction locks (other
    /// processes may have appended since `plan`): its sequence is the new
    /// head's. Returns the new head and the
    /// records removed in that transaction: none on sled, whose records go
    /// afterwards ([`Store::remove_before`]); all of them on PostgreSQL.
    pub(crate) fn commit_prune(
        &self,
        plan: &PlannedAppend,
        anchor: &Anchor,
    ) -> Result<((u64, Hash), u64)> {
        match self {
            Store::Sled(s) => {
                sled_backend::guard(s.path(), || Ok((s.commit_prune(plan, anchor)?, 0)))
            }
            Store::Postgres(s) => s.commit_prune(plan, anchor),
        }
    }

    /// Remove a mission's records below `before` (after a prune).
    pub(crate) fn remove_before(&self, mission: MissionNo, name: &str, before: u64) -> Result<u64> {
        each!(self, s => s.remove_before(mission, name, before))
    }

    /// Delete a mission behind `tombstone`. Returns the records removed and
    /// the tombstone written (PostgreSQL: with the head as locked by the
    /// delete's transaction, which may be past `tombstone`'s when another
    /// process appended meanwhile).
    pub(crate) fn delete_mission(&self, tombstone: &Tombstone) -> Result<(u64, Tombstone)> {
        match self {
            Store::Sled(s) => sled_backend::guard(s.path(), || {
                Ok((s.delete_mission(tombstone)?, tombstone.clone()))
            }),
            Store::Postgres(s) => s.delete_mission(tombstone),
        }
    }

    /// Tombstones of deleted missions (of one id, or all).
    pub(crate) fn tombstones(&self, mission: Option<&str>) -> Result<Vec<Tombstone>> {
        each!(self, s => s.tombstones(mission))
    }

    /// Finish deletes and prunes a crash interrupted (PostgreSQL: nothing,
    /// each is one transaction).
    pub(crate) fn finish_history_cleanups(&self) -> Result<u64> {
        match self {
            Store::Sled(s) => sled_backend::guard(s.path(), || s.finish_history_cleanups()),
            Store::Postgres(_) => Ok(0),
        }
    }

    /// Prepare the import of a pruned mission under the fresh, unregistered
    /// number `mission` (sled: its anchor and its head at the anchor; the
    /// chunks follow through [`Store::commit`]). PostgreSQL imports a pruned
    /// mission in one transaction instead ([`Store::import_anchored`]).
    pub(crate) fn put_import_anchor(&self, mission: MissionNo, anchor: &Anchor) -> Result<()> {
        match self.as_sled() {
            Some(s) => sled_backend::guard(s.path(), || s.put_import_anchor(mission, anchor)),
            None => Err(self.sled_only("an import anchor written ahead of the records")),
        }
    }

    /// Import a pruned mission in ONE transaction (PostgreSQL): registered
    /// with its head at the anchor, the anchor, the events from it on.
    pub(crate) fn import_anchored(
        &self,
        mission: MissionNo,
        name: &str,
        anchor: &Anchor,
        events: Vec<Event>,
    ) -> Result<(u64, Hash)> {
        match self {
            Store::Postgres(s) => s.import_anchored(mission, name, anchor, events),
            Store::Sled(_) => Err(Error::invalid(
                "store",
                "a sled store imports a pruned mission in chunks (put_import_anchor)",
            )),
        }
    }

    /// Record the tombstone of a mission deleted in another store (copy);
    /// false when the same deletion is already recorded.
    pub(crate) fn put_tombstone(&self, tombstone: &Tombstone) -> Result<bool> {
        each!(self, s => s.put_tombstone(tombstone))
    }

    /// Raw records `from..=to` of a mission (archives).
    pub(crate) fn raw_records(
        &self,
        mission: MissionNo,
        name: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Result<(u64, sled::IVec)>>> {
        match self {
            Store::Sled(s) => Ok(s.raw_records(mission, name, from, to).collect()),
            Store::Postgres(s) => s.raw_records(mission, name, from, to),
        }
    }

    /// Give deleted rows' space back on PostgreSQL (`VACUUM FULL` of the
    /// store's tables): bytes before and after. A sled directory is
    /// compacted by rewriting it (`mission-bus compact`), not here.
    pub(crate) fn compact_database(&self) -> Result<(u64, u64)> {
        match self {
            Store::Postgres(s) => s.compact(),
            Store::Sled(_) => Err(Error::invalid(
                "store",
                format!(
                    "{} is a sled data directory: compact it by rewriting it \
                     (`mission-bus compact`)",
                    self.describe()
                ),
            )),
        }
    }

    /// The error for an operation only the sled backend has.
    pub(crate) fn sled_only(&self, what: &str) -> Error {
        Error::invalid(
            "store",
            format!(
                "{what} works on a sled data directory only; this store is {}",
                self.describe()
            ),
        )
    }

    /// Where the store lives, for messages (never a password).
    pub(crate) fn describe(&self) -> String {
        match self {
            Store::Sled(s) => format!("sled:{}", s.path().display()),
            Store::Postgres(p) => p.shown().to_string(),
        }
    }
}

/// Lower-case hex of some bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A backend's raw records of one mission, in key order: `(sequence, record
/// bytes)`. The checks are [`EventIter`]'s, the same for every backend.
pub(crate) type RawRecords = Box<dyn Iterator<Item = Result<(u64, sled::IVec)>> + Send>;

/// Streaming replay of one mission's log: `Result<Event>` per record, in
/// sequence order, in constant memory. A damaged record, a gap or (for the
/// streams of `MissionBus::replay` and `MissionBus::events`) a record out of
/// place in the hash chain ends the stream with `Error::Corruption`.
pub struct EventIter {
    inner: Option<RawRecords>,
    mission: MissionNo,
    name: String,
    expected: u64,
    to: u64,
    failed: bool,
    chain: Option<Chain>,
    /// The first sequence the log keeps now (a reader's stream asks it
    /// when it meets a gap: a prune that ran meanwhile is `Pruned`, not
    /// corruption).
    first_kept: Option<FirstKept>,
}

/// Reads the first sequence a mission's log keeps, now.
pub(crate) type FirstKept = Box<dyn Fn() -> Option<u64> + Send + Sync>;

/// What a chain-checking [`EventIter`] expects: the hash the next record
/// must carry, and the hash the record at `to` must have.
pub(crate) struct Chain {
    pub(crate) prev: Hash,
    pub(crate) last: Hash,
}

impl EventIter {
    /// Check `inner`'s records `from..=to` of `mission` (`None`: empty).
    pub(crate) fn new(
        inner: Option<RawRecords>,
        mission: MissionNo,
        name: &str,
        from: u64,
        to: u64,
    ) -> EventIter {
        EventIter {
            inner,
            mission,
            name: name.to_string(),
            expected: from,
            to,
            failed: false,
            chain: None,
            first_kept: None,
        }
    }

    /// The error for a record missing at `self.expected`: `Pruned` when
    /// the log now starts past it (a prune ran while this stream was
    /// read), otherwise corruption with `why`.
    fn missing(&self, why: String) -> Error {
        let first = self.first_kept.as_ref().and_then(|f| f());
        match first {
            Some(first) if first > self.expected => Error::Pruned {
                mission: self.name.clone(),
                sequence: self.expected,
                first,
            },
            _ => Error::corruption(&self.name, Some(self.expected), why),
        }
    }
}

impl Store {
    /// [`Store::scan_chained`] for readers (replay, the operator's view):
    /// a record missing because a prune ran while the stream was being
    /// read (or set up) is [`Error::Pruned`], naming the mission and the
    /// first sequence kept, never corruption.
    pub(crate) fn read_chained(
        self: &std::sync::Arc<Self>,
        mission: MissionNo,
        name: &str,
        from: u64,
        to: u64,
        head: (u64, Hash),
    ) -> Result<EventIter> {
        let store = std::sync::Arc::clone(self);
        let owned = name.to_string();
        let first_kept: FirstKept =
            Box::new(move || store.first_kept(mission, &owned).ok().map(|(f, _)| f));
        let mut it = self.pruned_meanwhile(
            mission,
            name,
            self.scan_chained(mission, name, from, to, head),
        )?;
        it.first_kept = Some(first_kept);
        Ok(it)
    }
}

impl Iterator for EventIter {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        if self.failed {
            return None;
        }
        let item = match self.inner.as_mut()?.next() {
            Some(item) => item,
            None if self.expected <= self.to && self.to != u64::MAX => {
                // The caller asked up to a head that the log does not reach.
                self.failed = true;
                return Some(Err(self.missing(format!(
                    "record missing (log ends before sequence {})",
                    self.to
                ))));
            }
            None => return None,
        };
        let result = item.and_then(|(seq, v)| {
            if seq != self.expected {
                return Err(self.missing(format!("record missing (next record is sequence {seq})")));
            }
            let corrupt = |e: String| Error::corruption(&self.name, Some(seq), e);
            codec::check_record(&v).map_err(corrupt)?;
            if let Some(chain) = self.chain.as_mut() {
                if codec::prev_hash(&v) != chain.prev {
                    return Err(corrupt(
                        "hash chain broken: the record does not follow the one before it \
                         (rewritten, moved or forged; run verify)"
                            .into(),
                    ));
                }
                chain.prev = codec::record_hash(&keys::event_key(self.mission, seq), &v);
                if seq == self.to && chain.prev != chain.last {
                    return Err(corrupt(
                        "hash chain broken: the record does not match the hash the log \
                         records after it (rewritten or forged; run verify)"
                            .into(),
                    ));
                }
            }
            codec::decode_checked(seq, &v).map_err(corrupt)
        });
        match &result {
            Ok(_) => self.expected += 1,
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}
