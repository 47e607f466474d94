//! The sled backend: the embedded default, and the ONLY code that touches
//! sled.
//!
//! It owns the trees, the one atomic write (a multi-tree transaction per
//! commit group), scans, index lookups, the flush policy, snapshots and the
//! structural half of verification (`verify.rs`). Everything above it speaks
//! in missions, sequences and [`Event`]s. See `docs/format.md` for the bytes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use uuid::Uuid;

use super::{hex, Chain, Durability, EventIter, Index, PlannedAppend, RawRecords, StoreOptions};
use crate::codec::{self, Hash, GENESIS};
use crate::error::{Error, Result};
use crate::event::{Event, EventBody};
use crate::keys::{self, MissionNo};

mod backup;
mod history;
mod side;
mod snapshot_files;
mod verify;

pub(crate) use backup::CopyCounts;

/// The name of a sled tree, for errors and docs.
const TREE_MISSIONS: &str = "missions";
const TREE_EVENTS: &str = "events";
const TREE_HEADS: &str = "heads";
const TREE_CHECKPOINTS: &str = "checkpoints";
const TREE_HANDOFFS: &str = "handoffs";
const TREE_EVENT_IDS: &str = "event_ids";
const TREE_SNAPSHOTS: &str = "snapshots";
const TREE_META: &str = "meta";
const TREE_TOKENS: &str = "tokens";
const META_FORMAT: &[u8] = b"format_version";
/// `meta` key: added to every mission number sled generates (u64 BE;
/// absent = 0). Set in a copy (backup) so that new numbers never collide
/// with the copied ones, since sled's id generator starts again at 0 there.
const META_MISSION_NO_BASE: &[u8] = b"mission_no_base";
/// Present once the store keeps a commit ledger (`src/ledger.rs`).
const META_LEDGER: &[u8] = b"ledger";
/// `meta` key recording the `event_ids` layout (see [`EVENT_IDS_LAYOUT`]).
const META_EVENT_IDS_LAYOUT: &[u8] = b"event_ids_layout";
/// Layout 2: `event_ids` keyed by `[mission][event id]` (ids scoped to their
/// mission). Stores without the key use layout 1 (keyed by the bare id) and
/// are migrated when opened.
const EVENT_IDS_LAYOUT: u8 = 2;
/// How long opening waits for a directory lock that is held.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// Why a commit transaction aborted. The planner rules these out, so they
/// mean a bug or a second writer; nothing is written either way.
#[derive(Debug)]
enum Abort {
    MissionExists(String),
    HeadMoved {
        mission: MissionNo,
        planned: u64,
        head: u64,
    },
    BadSequence {
        mission: MissionNo,
        planned: u64,
        expected: u64,
    },
    DuplicateId(Uuid),
    BadHead(MissionNo),
}

pub(crate) struct SledStore {
    path: PathBuf,
    db: sled::Db,
    missions: sled::Tree,
    events: sled::Tree,
    heads: sled::Tree,
    checkpoints: sled::Tree,
    handoffs: sled::Tree,
    event_ids: sled::Tree,
    snapshots: sled::Tree,
    tokens: sled::Tree,
    data_file: OnceLock<File>,
    mission_no_base: u64,
}

impl SledStore {
    pub(crate) fn open(path: &Path, opts: &StoreOptions) -> Result<SledStore> {
        if !opts.create_if_missing && !path.join("db").is_file() {
            return Err(Error::StoreNotFound {
                path: path.to_path_buf(),
            });
        }
        create_private_dir(path)?;
        snapshot_files::drop_unfinished(path);
        let is_lock_error = |e: &sled::Error| {
            matches!(e, sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("could not acquire lock"))
        };
        // A holder in this process that just closed (sled releases the lock
        // from background threads a moment after its Db is dropped) lets go
        // within milliseconds; another process holding the directory does
        // not. Retry briefly, then say plainly that the directory is in use.
        let deadline = std::time::Instant::now() + LOCK_RETRY;
        let db = loop {
            let config = sled::Config::new()
                .path(path)
                .cache_capacity(opts.cache_capacity)
                .flush_every_ms(opts.flush_every_ms);
            match contain_panic(path, || config.open())? {
                Ok(db) => break db,
                Err(e) if is_lock_error(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) if is_lock_error(&e) => {
                    return Err(Error::DataDirInUse {
                        path: path.to_path_buf(),
                    })
                }
                Err(e) => return Err(Error::from(e).in_dir(path)),
            }
        };
        make_private(path);
        Self::open_trees(path, db).map_err(|e| e.in_dir(path))
    }

    fn open_trees(path: &Path, db: sled::Db) -> Result<SledStore> {
        let meta = db.open_tree(TREE_META)?;
        match meta.get(META_FORMAT)? {
            // Older stores are upgraded in place: only this key changes
            // (records are never rewritten; v1, v2 and v3 records are all read).
            None => {
                meta.insert(META_FORMAT, &[codec::STORE_FORMAT])?;
            }
            Some(v) if matches!(v.as_ref(), [codec::FORMAT_V1] | [codec::FORMAT_VERSION]) => {
                meta.insert(META_FORMAT, &[codec::STORE_FORMAT])?;
            }
            Some(v) if v.as_ref() == [codec::STORE_FORMAT] => {}
            Some(v) => {
                return Err(Error::corruption(
                    "(store)",
                    None,
                    format!(
                        "data dir {} has format version {:?}; this build reads versions 1 to {}",
                        path.display(),
                        v.as_ref(),
                        codec::STORE_FORMAT
                    ),
                ))
            }
        }
        let mission_no_base = match meta.get(META_MISSION_NO_BASE)? {
            None => 0,
            Some(v) => keys::parse_u64(&v).ok_or_else(|| {
                Error::corruption("(store)", None, "meta.mission_no_base is malformed")
            })?,
        };
        let event_ids = db.open_tree(TREE_EVENT_IDS)?;
        migrate_event_ids(&meta, &event_ids)?;
        Ok(SledStore {
            path: path.to_path_buf(),
            mission_no_base,
            missions: db.open_tree(TREE_MISSIONS)?,
            events: db.open_tree(TREE_EVENTS)?,
            heads: db.open_tree(TREE_HEADS)?,
            checkpoints: db.open_tree(TREE_CHECKPOINTS)?,
            handoffs: db.open_tree(TREE_HANDOFFS)?,
            event_ids,
            snapshots: db.open_tree(TREE_SNAPSHOTS)?,
            tokens: db.open_tree(TREE_TOKENS)?,
            db,
            data_file: OnceLock::new(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this store has had a commit ledger (so a missing ledger file
    /// is damage, not an older store).
    pub(crate) fn has_ledger(&self) -> Result<bool> {
        Ok(self.db.open_tree(TREE_META)?.get(META_LEDGER)?.is_some())
    }

    /// Record (durably) that this store keeps a commit ledger.
    pub(crate) fn mark_ledger(&self) -> Result<()> {
        self.db.open_tree(TREE_META)?.insert(META_LEDGER, &[1u8])?;
        self.flush(Durability::Sync)
    }

    /// Open and close the (closed) store at `path` once, so sled writes its
    /// recovery snapshot. sled 0.34 only writes it while opening, so without
    /// this the next open re-reads everything written since the last open
    /// (~250 ms per million events on our 2-core machines). Called after a
    /// clean close of a session that wrote a lot: the cost moves from the
    /// next start to this shutdown. Useless after a crash (nothing runs).
    pub(crate) fn write_recovery_snapshot(path: &Path, opts: &StoreOptions) -> Result<()> {
        snapshot_files::drop_unfinished(path);
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(opts.cache_capacity)
            .flush_every_ms(None)
            .open()?;
        db.flush()?;
        Ok(())
    }

    /// The file sled holds an exclusive lock on while the store is open.
    pub(crate) fn lock_file(&self) -> PathBuf {
        self.path.join("db")
    }

    /// A fresh internal mission number (unique, increasing, with gaps).
    pub(crate) fn allocate_mission_no(&self) -> Result<MissionNo> {
        let id = self.db.generate_id()?;
        id.checked_add(self.mission_no_base)
            .ok_or_else(|| Error::corruption("(store)", None, "mission numbers exhausted"))
    }

    /// The internal number of mission `name`, if it exists.
    pub(crate) fn mission_no(&self, name: &str) -> Result<Option<MissionNo>> {
        match self.missions.get(name.as_bytes())? {
            None => Ok(None),
            Some(v) => codec::decode_mission_entry(&v)
                .map(Some)
                .map_err(|e| Error::corruption(name, None, e)),
        }
    }

    /// Every mission: (string id, internal number), sorted by id.
    pub(crate) fn missions(&self) -> Result<Vec<(String, MissionNo)>> {
        let mut out = Vec::new();
        for item in self.missions.iter() {
            let (k, v) = item?;
            let name = String::from_utf8(k.to_vec()).map_err(|_| {
                Error::corruption("(missions tree)", None, "mission id is not UTF-8")
            })?;
            let no =
                codec::decode_mission_entry(&v).map_err(|e| Error::corruption(&name, None, e))?;
            out.push((name, no));
        }
        Ok(out)
    }

    /// Head sequence and chain hash of a registered mission. A registered
    /// mission always has a head (both are written in one transaction), so
    /// a missing one is corruption, never an empty mission.
    pub(crate) fn head(&self, mission: MissionNo, name: &str) -> Result<(u64, Hash)> {
        match self.heads.get(keys::mission_key(mission))? {
            None => Err(Error::corruption(name, None, "head entry is missing")),
            Some(v) => keys::parse_head(&v)
                .ok_or_else(|| Error::corruption(name, None, "head entry is malformed")),
        }
    }

    /// One event by sequence.
    pub(crate) fn event(&self, mission: MissionNo, seq: u64, name: &str) -> Result<Option<Event>> {
        match self.events.get(keys::event_key(mission, seq))? {
            None => Ok(None),
            Some(v) => codec::decode_event(seq, &v)
                .map(Some)
                .map_err(|e| Error::corruption(name, Some(seq), e)),
        }
    }

    /// The chain hash of the record at `seq`, after checking its checksum.
    pub(crate) fn record_hash(&self, mission: MissionNo, seq: u64) -> Result<Option<Hash>> {
        let key = keys::event_key(mission, seq);
        Ok(match self.events.get(key)? {
            Some(v) if codec::check_record(&v).is_ok() => Some(codec::record_hash(&key, &v)),
            _ => None,
        })
    }

    /// Index lookup: one `get`, never a scan of the log.
    pub(crate) fn lookup(&self, index: Index, id: &Uuid) -> Result<Option<(MissionNo, u64)>> {
        let tree = self.index_tree(index);
        match tree.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => keys::parse_event_key(&v).map(Some).ok_or_else(|| {
                Error::corruption(
                    format!("({} index)", index_name(index)),
                    None,
                    format!("entry for {id} is malformed"),
                )
            }),
        }
    }

    /// The sequence of the event with id `id` in `mission`, if any: one
    /// `get` in the mission-scoped `event_ids` index.
    pub(crate) fn lookup_event_id(&self, mission: MissionNo, id: &Uuid) -> Result<Option<u64>> {
        match self
            .event_ids
            .get(keys::event_id_key(mission, id.as_bytes()))?
        {
            None => Ok(None),
            Some(v) => match keys::parse_event_key(&v) {
                Some((m, seq)) if m == mission => Ok(Some(seq)),
                _ => Err(Error::corruption(
                    format!("({TREE_EVENT_IDS} index)"),
                    None,
                    format!("entry for {id} is malformed"),
                )),
            },
        }
    }

    fn index_tree(&self, index: Index) -> &sled::Tree {
        match index {
            Index::Checkpoints => &self.checkpoints,
            Index::Handoffs => &self.handoffs,
            Index::EventIds => &self.event_ids,
        }
    }

    /// Stream a mission's events with sequences in `from..=to`, in order,
    /// checking checksums and contiguity as it goes. Constant memory. For
    /// internal state loads; readers get [`SledStore::scan_chained`].
    pub(crate) fn scan(&self, mission: MissionNo, name: &str, from: u64, to: u64) -> EventIter {
        let from = from.max(1);
        let inner = (from <= to).then(|| {
            let name = name.to_string();
            let range = self
                .events
                .range(keys::event_key(mission, from)..=keys::event_key(mission, to));
            let records = range.map(move |item| {
                let (k, v) = item?;
                let seq = keys::parse_event_key(&k)
                    .filter(|(m, _)| *m == mission)
                    .map(|(_, s)| s)
                    .ok_or_else(|| Error::corruption(&name, None, "malformed event key"))?;
                Ok((seq, v))
            });
            Box::new(Guarded::new(records, &self.path)) as RawRecords
        });
        EventIter::new(inner, mission, name, from, to)
    }

    /// [`SledStore::scan`] that also follows the hash chain: every record must
    /// carry the hash of the one before it, and the last one (`to`) must hash
    /// to `to_hash` (the head's hash when `to` is the head) or, below the
    /// head, to what record `to + 1` says. A rewritten, swapped or forged
    /// record is then an error even when its checksum is valid.
    pub(crate) fn scan_chained(
        &self,
        mission: MissionNo,
        name: &str,
        from: u64,
        to: u64,
        head: (u64, Hash),
    ) -> Result<EventIter> {
        // A pruned log starts at its anchor, chained to the anchor's hash.
        let (first, first_hash) = self.first_kept(mission, name)?;
        let from = from.max(first);
        let mut it = self.scan(mission, name, from, to);
        if from > to {
            return Ok(it);
        }
        let raw = |seq: u64| -> Result<sled::IVec> {
            let v = self
                .events
                .get(keys::event_key(mission, seq))?
                .ok_or_else(|| Error::corruption(name, Some(seq), "record missing"))?;
            codec::check_record(&v).map_err(|e| Error::corruption(name, Some(seq), e))?;
            Ok(v)
        };
        let first_prev = if from == first {
            first_hash
        } else {
            codec::record_hash(&keys::event_key(mission, from - 1), &raw(from - 1)?)
        };
        let last = if to >= head.0 {
            head.1
        } else {
            codec::prev_hash(&raw(to + 1)?)
        };
        it.chain = Some(Chain {
            prev: first_prev,
            last,
        });
        Ok(it)
    }

    /// Write a commit group in one transaction: events, index entries,
    /// heads and mission registrations, all or nothing. Returns each plan's
    /// new head `(seq, hash)`. Not yet durable: call [`SledStore::flush`].
    pub(crate) fn commit(&self, plans: &[PlannedAppend]) -> Result<Vec<(u64, Hash)>> {
        let trees = (
            &self.missions,
            &self.events,
            &self.heads,
            &self.checkpoints,
            &self.handoffs,
            &self.event_ids,
        );
        let result = trees.transaction(|(missions, events, heads, checkpoints, handoffs, ids)| {
            let mut out = Vec::with_capacity(plans.len());
            for plan in plans {
                out.push(commit_one(
                    plan,
                    missions,
                    events,
                    heads,
                    checkpoints,
                    handoffs,
                    ids,
                )?);
            }
            Ok(out)
        });
        result.map_err(|e| match e {
            TransactionError::Storage(e) => Error::from(e),
            TransactionError::Abort(a) => self.abort_error(a),
        })
    }

    fn abort_error(&self, a: Abort) -> Error {
        let name = |m: MissionNo| format!("#{m}");
        match a {
            Abort::MissionExists(mission) => Error::MissionExists { mission },
            Abort::HeadMoved {
                mission,
                planned,
                head,
            } => Error::SequenceConflict {
                mission: name(mission),
                expected: planned,
                head,
            },
            Abort::BadSequence {
                mission,
                planned,
                expected,
            } => Error::corruption(
                name(mission),
                Some(planned),
                format!("planned sequence {planned}, next is {expected} (bug in the planner)"),
            ),
            Abort::DuplicateId(id) => Error::InvalidInput {
                field: "event id".into(),
                reason: format!("{id} is already stored"),
            },
            Abort::BadHead(m) => Error::corruption(name(m), None, "head entry is malformed"),
        }
    }

    /// Make everything committed so far durable, as `durability` says.
    pub(crate) fn flush(&self, durability: Durability) -> Result<()> {
        match durability {
            Durability::Relaxed => Ok(()),
            Durability::Flush => {
                self.db.flush()?;
                Ok(())
            }
            Durability::Sync => {
                self.db.flush()?;
                let file = match self.data_file.get() {
                    Some(f) => f,
                    None => {
                        let p = self.path.join("db");
                        let f = File::open(&p).map_err(|e| Error::io(&p, e))?;
                        self.data_file.get_or_init(|| f)
                    }
                };
                file.sync_data()
                    .map_err(|e| Error::io(self.path.join("db"), e))
            }
        }
    }

    /// The raw snapshot value of a mission, if one was saved.
    pub(crate) fn snapshot(&self, mission: MissionNo) -> Result<Option<sled::IVec>> {
        Ok(self.snapshots.get(keys::mission_key(mission))?)
    }

    /// Save a snapshot value. It is a cache: it rides along with the next
    /// flush, and a lost or damaged one is rebuilt from the log.
    pub(crate) fn put_snapshot(&self, mission: MissionNo, value: Vec<u8>) -> Result<()> {
        self.snapshots.insert(keys::mission_key(mission), value)?;
        Ok(())
    }

    /// Remember a token hash as belonging to participant `name` of `mission`.
    /// With `revoke_others`, every other token of that participant is
    /// removed in the same atomic batch. Returns how many were revoked.
    /// Not durable until the next [`SledStore::flush`].
    pub(crate) fn put_token(
        &self,
        hash: &[u8; 32],
        mission: MissionNo,
        name: &str,
        revoke_others: bool,
    ) -> Result<u64> {
        let mut batch = sled::Batch::default();
        let mut revoked = 0;
        if revoke_others {
            // The tokens tree holds one entry per issued token: small.
            for item in self.tokens.iter() {
                let (k, v) = item?;
                if decode_token_owner(&v).is_some_and(|(m, n)| m == mission && n == name) {
                    batch.remove(k);
                    revoked += 1;
                }
            }
        }
        let mut v = Vec::with_capacity(9 + name.len());
        v.push(1u8);
        v.extend_from_slice(&mission.to_be_bytes());
        v.extend_from_slice(name.as_bytes());
        batch.insert(hash, v);
        self.tokens.apply_batch(batch)?;
        Ok(revoked)
    }

    /// The owner of a token hash: (mission, participant name).
    pub(crate) fn token_owner(&self, hash: &[u8; 32]) -> Result<Option<(MissionNo, String)>> {
        let Some(v) = self.tokens.get(hash)? else {
            return Ok(None);
        };
        decode_token_owner(&v)
            .map(Some)
            .ok_or_else(|| Error::corruption("(tokens tree)", None, "token entry is malformed"))
    }

    /// Bytes the store occupies on disk.
    pub(crate) fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

/// Bring `event_ids` to layout 2 (`[mission][id]` keys) if the store was
/// written with layout 1 (bare 16-byte id keys, one namespace for the whole
/// store). Values are unchanged (`[mission][seq]`), so each key is rebuilt
/// from its own value. The rewrite is one atomic batch on the tree; the
/// layout key is written after it, and a store interrupted in between is
/// migrated again on the next open (16-byte keys are old, 24-byte keys new),
/// so the migration is idempotent.
fn migrate_event_ids(meta: &sled::Tree, event_ids: &sled::Tree) -> Result<()> {
    if meta.get(META_EVENT_IDS_LAYOUT)?.as_deref() == Some(&[EVENT_IDS_LAYOUT][..]) {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for item in event_ids.iter() {
        let (k, v) = item?;
        if k.len() != 16 {
            continue;
        }
        let Some((mission, _)) = keys::parse_event_key(&v) else {
            return Err(Error::corruption(
                format!("({TREE_EVENT_IDS} index)"),
                None,
                format!("entry {} is malformed", hex(&k)),
            ));
        };
        let id: [u8; 16] = k.as_ref().try_into().expect("length checked");
        batch.insert(&keys::event_id_key(mission, &id)[..], v);
        batch.remove(k);
    }
    event_ids.apply_batch(batch)?;
    meta.insert(META_EVENT_IDS_LAYOUT, &[EVENT_IDS_LAYOUT])?;
    Ok(())
}

fn commit_one(
    plan: &PlannedAppend,
    missions: &TransactionalTree,
    events: &TransactionalTree,
    heads: &TransactionalTree,
    checkpoints: &TransactionalTree,
    handoffs: &TransactionalTree,
    ids: &TransactionalTree,
) -> std::result::Result<(u64, Hash), ConflictableTransactionError<Abort>> {
    use ConflictableTransactionError::Abort as A;
    let mkey = keys::mission_key(plan.mission);
    if let Some(name) = &plan.register {
        if missions.get(name.as_bytes())?.is_some() {
            return Err(A(Abort::MissionExists(name.clone())));
        }
        missions.insert(name.as_bytes(), &codec::encode_mission_entry(plan.mission))?;
    }
    let (mut seq, mut hash) = match heads.get(mkey)? {
        None => (0, GENESIS),
        Some(v) => keys::parse_head(&v).ok_or(A(Abort::BadHead(plan.mission)))?,
    };
    if seq != plan.prev_seq {
        return Err(A(Abort::HeadMoved {
            mission: plan.mission,
            planned: plan.prev_seq,
            head: seq,
        }));
    }
    for event in &plan.events {
        if event.sequence != seq + 1 {
            return Err(A(Abort::BadSequence {
                mission: plan.mission,
                planned: event.sequence,
                expected: seq + 1,
            }));
        }
        seq += 1;
        let key = keys::event_key(plan.mission, seq);
        let enc = codec::encode_event(&plan.mission_id, event, &hash);
        let id_key = keys::event_id_key(plan.mission, event.id.as_bytes());
        if ids.insert(&id_key, &key)?.is_some() && !plan.replace_orphan_ids {
            return Err(A(Abort::DuplicateId(event.id)));
        }
        match event.body {
            EventBody::Checkpoint { .. } => {
                checkpoints.insert(event.id.as_bytes(), &key)?;
            }
            EventBody::Handoff { .. } => {
                handoffs.insert(event.id.as_bytes(), &key)?;
            }
            _ => {}
        }
        events.insert(&key, enc.value)?;
        hash = enc.hash;
    }
    heads.insert(&mkey, &keys::head_value(seq, &hash)[..])?;
    Ok((seq, hash))
}

/// `tokens` value: `[1][mission no u64 BE][participant name UTF-8]`.
fn decode_token_owner(v: &[u8]) -> Option<(MissionNo, String)> {
    match v {
        [1, rest @ ..] if rest.len() >= 8 => {
            let no = keys::parse_u64(&rest[..8])?;
            let name = std::str::from_utf8(&rest[8..]).ok()?;
            Some((no, name.to_string()))
        }
        _ => None,
    }
}

fn index_name(index: Index) -> &'static str {
    match index {
        Index::Checkpoints => TREE_CHECKPOINTS,
        Index::Handoffs => TREE_HANDOFFS,
        Index::EventIds => TREE_EVENT_IDS,
    }
}

fn describe_target(v: &[u8]) -> String {
    match keys::parse_event_key(v) {
        Some((m, s)) => format!("mission #{m} sequence {s}"),
        None => format!("malformed bytes {v:02x?}"),
    }
}

/// Create the data directory (and missing parents) readable by its owner
/// only. An existing directory keeps its mode.
fn create_private_dir(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(path).map_err(|e| Error::io(path, e))
}

/// sled creates its files with the process umask (usually 0644): narrow
/// the files in the data directory to 0600 (directories to 0700) so other
/// local users cannot read mission content. Best effort: a file we cannot
/// chmod (not ours) is left as it is.
fn make_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let want = if meta.is_dir() { 0o700 } else { 0o600 };
            if meta.permissions().mode() & 0o777 != want {
                let _ =
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(want));
            }
            if meta.is_dir() {
                make_private(&entry.path());
            }
        }
    }
}

/// [`contain_panic`] for a call that returns a `Result` already.
pub(crate) fn guard<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    contain_panic(path, f)?
}

/// A sled iterator whose panics (on damaged pages read lazily) become one
/// `Error::Damaged` item, after which it ends.
pub(crate) struct Guarded<I> {
    inner: I,
    path: PathBuf,
    done: bool,
}

impl<I> Guarded<I> {
    pub(crate) fn new(inner: I, path: &Path) -> Self {
        Guarded {
            inner,
            path: path.to_path_buf(),
            done: false,
        }
    }
}

impl<T, I: Iterator<Item = Result<T>>> Iterator for Guarded<I> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        match contain_panic(&self.path, || self.inner.next()) {
            Ok(item) => item,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Run a sled call that may panic on damaged bytes, turning a panic into
/// an integrity error naming the data file.
pub(crate) fn contain_panic<T>(path: &Path, f: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Error::Damaged {
            file: path.join("db"),
            reason: format!("sled failed while reading it ({what})"),
        }
    })
}

#[cfg(test)]
mod panic_tests {
    use super::*;

    #[test]
    fn a_panic_inside_sled_becomes_one_damaged_error_naming_the_file() {
        let path = Path::new("/data/store");
        let mut n = 0;
        let panicky = std::iter::from_fn(move || {
            n += 1;
            if n == 3 {
                panic!("page 7 is garbage");
            }
            Some(Ok::<u32, Error>(n))
        });
        let items: Vec<Result<u32>> = Guarded::new(panicky, path).collect();
        assert_eq!(items.len(), 3, "two items, the error, then the end");
        assert!(matches!(items[1], Ok(2)));
        match &items[2] {
            Err(Error::Damaged { file, reason }) => {
                assert_eq!(file, &path.join("db"));
                assert!(reason.contains("page 7 is garbage"), "{reason}");
            }
            other => panic!("expected Damaged, got {other:?}"),
        }
        let r: Result<u32> = guard(path, || panic!("boom"));
        assert!(matches!(r, Err(Error::Damaged { .. })));
        assert!(matches!(guard(path, || Ok(5)), Ok(5)));
    }
}
