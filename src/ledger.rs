//! The commit ledger: the store's own record of what it acknowledged,
//! kept outside sled's log.
//!
//! sled recovers its log to the last intact message and silently drops what
//! follows a damaged region, heads included, so the store alone cannot tell
//! "nothing happened after sequence 40" from "sequences 41..60 were
//! acknowledged and then lost". For each commit group the writer writes a
//! step entry (each touched mission's head before and after the group) to
//! the ledger file `DATA/ledger`, `fdatasync`s it on another thread while
//! sled flushes and fsyncs, then appends a confirmation record (plain
//! `write`, no sync) and only then acknowledges (`src/bus/durable.rs`). A
//! crash can therefore leave the ledger ahead of sled only by its last,
//! unconfirmed step entry, whose group was never acknowledged; on open every
//! mission's head in sled is checked against the confirmed heads, and the
//! unconfirmed tail is judged against the heads before and after it (see
//! `src/bus/integrity.rs` and `docs/architecture.md`, Recovery).
//!
//! Layout (all integers big-endian; drawn in `docs/format.md`):
//!
//! ```text
//! header  [0..8] "MBLEDGER"  [8..12] version (2; 1 is read)  [12..16] CRC-32 of [0..12]
//! entry   [0..4] body length L (1..=64 MiB)
//!         [4..8] CRC-32 of the body
//!         [8..12] CRC-32 of bytes [0..8] (the entry header itself)
//!         [12..12+L] body: [count u32] then `count` items
//! item    [kind u8] [mission id length u16] [mission id, UTF-8] then
//!         kind 1 (head):          [sequence u64] [chain hash 32]
//!         kind 2 (accepted loss): [first lost u64] [last lost u64]
//!                                 [ledger's head hash 32] [time, µs since epoch, i64]
//!         kind 3 (step):          [sequence u64] [chain hash 32]
//!                                 [previous sequence u64] [previous chain hash 32]
//!         kind 4 (confirmation, empty id): [offset of the step entry u64]
//! ```
//!
//! A step entry counts once its confirmation or any later entry follows it.
//! A later head for a mission replaces an earlier one. When the file
//! outgrows a few times its compacted size it is rewritten (new file, fsync,
//! rename, fsync of the directory) as one entry holding every head and
//! accepted loss.
//!
//! Entries are written at their offset (`pwrite`), never in append mode:
//! the end of the ledger is where the entries end, not the file's size,
//! and zero bytes after the last entry are free space. Optional
//! preallocation (off by default; the hidden builder switch
//! `ledger_preallocate`, measured in `benches/ledger_cost.rs`) keeps the
//! file [`CHUNK`]-aligned in size, the space after the last entry filled
//! with WRITTEN zeros (never a hole or an unwritten extent), so that a step
//! entry's `fdatasync` overwrites blocks that already exist and commits no
//! new file size; an entry that does not fit carries the zeros up to the
//! next chunk boundary in the same `pwrite`, and that group's `fdatasync`
//! makes the new size durable. It measured no gain on ext4 here (see
//! `docs/benchmarks.md`, Commit ledger cost), so it is off.
//!
//! Torn tail versus damage: appends only ever add one entry after the last
//! one, so a crash can only leave the LAST entry incomplete. A header cut
//! short, a header failing its own CRC with only zero bytes after it (free
//! space, or space the file system allocated but never wrote), a body
//! running past the end of the file, or a body failing its CRC with only
//! zero bytes after it are a torn tail:
//! tolerated (that group was never acknowledged) and cut off before the next
//! append (the file truncated after the last whole entry). Anything else (a
//! bad header followed by data, a bad body followed by another entry, a
//! malformed body, a bad file header, a non-zero byte in the free space past
//! where an entry header would end) is damage, reported with the file and
//! offset. A flipped bit inside the last entry's body is
//! indistinguishable from a torn append: a torn confirmation leaves its step
//! entry unconfirmed, a torn plain entry makes the ledger lag by one group;
//! either weakens the check for that group but never reports false damage.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind as IoKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec::Hash;
use crate::error::{Error, Result};

/// The ledger's file name inside the data directory.
pub(crate) const FILE_NAME: &str = "ledger";
const TMP_NAME: &str = "ledger.tmp";
const MAGIC: &[u8; 8] = b"MBLEDGER";
const VERSION: u32 = 2;
/// Version-1 files (no step or confirmation items) are still read; opening
/// one for appending rewrites it as version 2.
const OLD_VERSION: u32 = 1;
const FILE_HEADER: usize = 16;
const ENTRY_HEADER: usize = 12;
const MAX_BODY: u32 = 64 << 20;
const ITEM_HEAD: u8 = 1;
const ITEM_LOSS: u8 = 2;
const ITEM_STEP: u8 = 3;
const ITEM_CONFIRM: u8 = 4;
/// A mission was deleted (plain entry, written BEFORE sled deletes it):
/// its head is forgotten, so its absence from sled is no loss.
const ITEM_DELETED: u8 = 5;
/// Rewrite the file once it is larger than this many times its compacted
/// size (and at least `COMPACT_MIN` bytes).
const COMPACT_FACTOR: u64 = 4;
const COMPACT_MIN: u64 = 1 << 20;
/// The file's size is a multiple of this (when preallocating): the space
/// after the last entry is written zeros, extended a chunk at a time.
pub(crate) const CHUNK: u64 = 64 << 10;

/// A mission's last acknowledged head, as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LedgerHead {
    pub(crate) sequence: u64,
    pub(crate) hash: [u8; 32],
}

/// An operator's recorded acceptance that acknowledged events were lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AcceptedLoss {
    pub(crate) mission: String,
    pub(crate) first: u64,
    pub(crate) last: u64,
    /// The head the ledger held for the mission when the loss was accepted.
    pub(crate) ledger_hash: Hash,
    pub(crate) at_micros: i64,
}

impl AcceptedLoss {
    /// An accepted loss retires the head it covers; the head item written
    /// with it (losses come first in an entry) records the mission's new one.
    fn apply(&self, heads: &mut BTreeMap<String, LedgerHead>) {
        if heads
            .get(&self.mission)
            .is_some_and(|h| h.sequence == self.last)
        {
            heads.remove(&self.mission);
        }
    }
}

/// Where and how the ledger file is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LedgerDamage {
    pub(crate) path: PathBuf,
    pub(crate) offset: u64,
    pub(crate) reason: String,
}

impl LedgerDamage {
    pub(crate) fn to_error(&self) -> Error {
        Error::Damaged {
            file: self.path.clone(),
            reason: format!(
                "commit ledger damaged at byte offset {}: {}",
                self.offset, self.reason
            ),
        }
    }
}

/// What reading the ledger found: the heads and losses of every intact
/// entry before any damage, where the intact part ends, and the damage.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) heads: BTreeMap<String, LedgerHead>,
    pub(crate) losses: Vec<AcceptedLoss>,
    /// Length of the intact prefix (header + whole entries): where the
    /// ledger ends and the next entry goes.
    pub(crate) intact_len: u64,
    /// Bytes after `intact_len` that a crash left (tolerated), when any of
    /// them is not zero; 0 when only free space (zeros) follows.
    pub(crate) torn_bytes: u64,
    /// The file's size (the ledger plus free space or a torn tail).
    pub(crate) file_len: u64,
    pub(crate) damage: Option<LedgerDamage>,
    /// The last entry, when it is a group's step entry that no later record
    /// confirms (its group may never have been acknowledged). Its heads are
    /// NOT in `heads`.
    pub(crate) tail: Option<Tail>,
    /// The file's format version.
    pub(crate) version: u32,
}

/// An unconfirmed last step entry: where it starts and, per mission, the
/// head before its group and the head after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tail {
    pub(crate) offset: u64,
    pub(crate) steps: Vec<Step>,
}

/// One mission's move in a commit group written in parallel with sled's
/// flush: its head before the group and after it. A `prev` with sequence 0
/// means the mission did not exist before the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) mission: String,
    pub(crate) prev: LedgerHead,
    pub(crate) new: LedgerHead,
}

impl Scan {
    /// Count the unconfirmed tail as confirmed (its heads join `heads`).
    pub(crate) fn confirm_tail(&mut self) {
        if let Some(t) = self.tail.take() {
            for s in t.steps {
                self.heads.insert(s.mission, s.new);
            }
        }
    }
}

/// Read the ledger of the store at `dir` (never creates anything).
/// The heads returned are the confirmed ones: an unconfirmed last step
/// entry (a group that was written in parallel with sled's flush and may
/// never have been acknowledged) is left out, so salvage never reports
/// its events as acknowledged and lost.
/// Ok(None): the directory has no ledger file (an older store).
/// Err(Error with kind Integrity): the ledger itself is damaged, naming the file and offset.
#[allow(dead_code)] // the contract with `salvage`, which reads heads without sled
pub(crate) fn read_heads(dir: &Path) -> Result<Option<BTreeMap<String, LedgerHead>>> {
    match scan(dir)? {
        None => Ok(None),
        Some(Scan {
            damage: Some(d), ..
        }) => Err(d.to_error()),
        Some(s) => Ok(Some(s.heads)),
    }
}

/// Read and check the whole ledger file of `dir`. Only I/O failures are
/// errors; damage is reported in [`Scan::damage`] with the intact prefix.
pub(crate) fn scan(dir: &Path) -> Result<Option<Scan>> {
    let path = dir.join(FILE_NAME);
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(mut f) => f.read_to_end(&mut bytes).map_err(|e| Error::io(&path, e))?,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    Ok(Some(parse(&path, &bytes)))
}

fn encode_entry(heads: &[(&str, &LedgerHead)], losses: &[&AcceptedLoss]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + heads.len() * 64);
    body.extend_from_slice(&((heads.len() + losses.len()) as u32).to_be_bytes());
    for loss in losses {
        body.push(ITEM_LOSS);
        put_id(&mut body, &loss.mission);
        body.extend_from_slice(&loss.first.to_be_bytes());
        body.extend_from_slice(&loss.last.to_be_bytes());
        body.extend_from_slice(&loss.ledger_hash);
        body.extend_from_slice(&loss.at_micros.to_be_bytes());
    }
    for (mission, head) in heads {
        body.push(ITEM_HEAD);
        put_id(&mut body, mission);
        body.extend_from_slice(&head.sequence.to_be_bytes());
        body.extend_from_slice(&head.hash);
    }
    frame(&body)
}

/// A step entry: per mission, the new head and the head before the group.
fn encode_steps(steps: &[Step]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + steps.len() * 100);
    body.extend_from_slice(&(steps.len() as u32).to_be_bytes());
    for s in steps {
        body.push(ITEM_STEP);
        put_id(&mut body, &s.mission);
        body.extend_from_slice(&s.new.sequence.to_be_bytes());
        body.extend_from_slice(&s.new.hash);
        body.extend_from_slice(&s.prev.sequence.to_be_bytes());
        body.extend_from_slice(&s.prev.hash);
    }
    frame(&body)
}

/// The confirmation of the step entry at `offset` (27 bytes in all).
fn encode_confirm(offset: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(15);
    body.extend_from_slice(&1u32.to_be_bytes());
    body.push(ITEM_CONFIRM);
    put_id(&mut body, "");
    body.extend_from_slice(&offset.to_be_bytes());
    frame(&body)
}

/// Header (length, body CRC, header CRC) then the body.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(ENTRY_HEADER + body.len());
    entry.extend_from_slice(&(body.len() as u32).to_be_bytes());
    entry.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    let hcrc = crc32fast::hash(&entry[..8]);
    entry.extend_from_slice(&hcrc.to_be_bytes());
    entry.extend_from_slice(body);
    entry
}

/// Mission ids are at most 128 bytes (checked at the edges), so the u16
/// length prefix always fits.
fn put_id(out: &mut Vec<u8>, id: &str) {
    let bytes = &id.as_bytes()[..id.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn file_header() -> [u8; FILE_HEADER] {
    let mut h = [0u8; FILE_HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_be_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..16].copy_from_slice(&crc.to_be_bytes());
    h
}

/// The writer's open ledger: the file, appended to once per commit group,
/// and the heads it holds (for compaction).
pub(crate) struct Ledger {
    dir: PathBuf,
    path: PathBuf,
    file: Arc<File>,
    /// Where the ledger ends: the next entry is written here.
    len: u64,
    /// The file's size: `len..allocated` holds written zeros.
    allocated: u64,
    /// Preallocate in chunks of [`CHUNK`] (true only for benchmarks; by
    /// default the file ends with the last entry).
    preallocate: bool,
    /// Where the last step entry starts, until it is confirmed.
    unconfirmed: Option<u64>,
    heads: BTreeMap<String, LedgerHead>,
    losses: Vec<AcceptedLoss>,
}

impl Ledger {
    /// Create a ledger holding `heads` (a store that had none), or replace
    /// the file with one holding them: write a new file, fsync, rename,
    /// fsync the directory.
    pub(crate) fn create(
        dir: &Path,
        heads: BTreeMap<String, LedgerHead>,
        losses: Vec<AcceptedLoss>,
    ) -> Result<Ledger> {
        Ledger::create_with(dir, heads, losses, false)
    }

    /// [`Ledger::create`], preallocating the file (zeros up to a multiple
    /// of [`CHUNK`]) or not.
    pub(crate) fn create_with(
        dir: &Path,
        heads: BTreeMap<String, LedgerHead>,
        losses: Vec<AcceptedLoss>,
        preallocate: bool,
    ) -> Result<Ledger> {
        let path = dir.join(FILE_NAME);
        let tmp = dir.join(TMP_NAME);
        let mut bytes = file_header().to_vec();
        let refs: Vec<(&str, &LedgerHead)> = heads.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let loss_refs: Vec<&AcceptedLoss> = losses.iter().collect();
        if !refs.is_empty() || !loss_refs.is_empty() {
            bytes.extend_from_slice(&encode_entry(&refs, &loss_refs));
        }
        let len = bytes.len() as u64;
        if preallocate {
            bytes.resize(chunk_end(len) as usize, 0);
        }
        {
            let mut f = private_options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(|e| Error::io(&tmp, e))?;
            f.write_all(&bytes)
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(dir)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Ledger {
            dir: dir.to_path_buf(),
            path,
            file: Arc::new(file),
            unconfirmed: None,
            len,
            allocated: bytes.len() as u64,
            preallocate,
            heads,
            losses,
        })
    }

    /// Open an intact ledger for appending, cutting off a torn tail first
    /// (and making the cut durable) so new entries never follow garbage.
    /// With `drop_tail`, the unconfirmed last step entry is cut off too (the
    /// open-time check found its group never reached sled); otherwise it
    /// counts as confirmed. A version-1 file is rewritten as version 2.
    /// The free space after the last entry (zeros) is kept; anything else
    /// after the end (a torn tail, a dropped step entry) is cut off, the
    /// file truncated there. `preallocate`: whether later appends extend
    /// the file a [`CHUNK`] of written zeros at a time.
    pub(crate) fn open_with(
        dir: &Path,
        mut scan: Scan,
        drop_tail: bool,
        preallocate: bool,
    ) -> Result<Ledger> {
        debug_assert!(scan.damage.is_none());
        let path = dir.join(FILE_NAME);
        let mut keep = scan.intact_len;
        let mut confirm_now = None;
        match scan.tail.as_ref() {
            Some(t) if drop_tail => {
                keep = t.offset;
                scan.tail = None;
            }
            Some(t) => {
                // The check found its group in the store: confirm it.
                confirm_now = Some(t.offset);
                scan.confirm_tail();
            }
            None => {}
        }
        if scan.version != VERSION {
            return Ledger::create_with(dir, scan.heads, scan.losses, preallocate);
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if scan.torn_bytes > 0 {
            tracing::warn!(
                path = %path.display(),
                offset = scan.intact_len,
                bytes = scan.torn_bytes,
                "commit ledger: cutting off a torn last entry left by a crash"
            );
        }
        // What follows `keep` must be zeros (free space) or nothing: a
        // torn tail or a dropped step entry is cut off, durably.
        let mut allocated = scan.file_len;
        if scan.torn_bytes > 0 || keep < scan.intact_len {
            file.set_len(keep)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(&path, e))?;
            allocated = keep;
        }
        let mut ledger = Ledger {
            dir: dir.to_path_buf(),
            path,
            file: Arc::new(file),
            unconfirmed: None,
            len: keep,
            allocated,
            preallocate,
            heads: scan.heads,
            losses: scan.losses,
        };
        if let Some(offset) = confirm_now {
            ledger
                .put(&encode_confirm(offset))
                .map_err(|e| Error::io(&ledger.path, e))?;
        }
        Ok(ledger)
    }

    /// Write `entry` where the ledger ends (one `pwrite`, no sync) and
    /// return its offset. With preallocation, an entry that does not fit
    /// in the free space carries the zeros up to the next chunk boundary
    /// in the same write. On failure what may have been written is cut
    /// off (best effort; the next open judges what is left).
    fn put(&mut self, entry: &[u8]) -> io::Result<u64> {
        let offset = self.len;
        let end = offset + entry.len() as u64;
        let written = if self.preallocate && end > self.allocated {
            let mut buf = entry.to_vec();
            buf.resize((chunk_end(end) - offset) as usize, 0);
            self.file
                .write_all_at(&buf, offset)
                .map(|()| chunk_end(end))
        } else {
            self.file.write_all_at(entry, offset).map(|()| end)
        };
        match written {
            Ok(reached) => {
                self.len = end;
                self.allocated = self.allocated.max(reached);
                Ok(offset)
            }
            Err(e) => {
                self.cut(offset);
                Err(e)
            }
        }
    }

    /// Truncate the file at `offset` (dropping the free space after it too:
    /// the next [`Ledger::put`] writes it again). Best effort.
    fn cut(&mut self, offset: u64) -> bool {
        if self.file.set_len(offset).is_ok() {
            self.len = offset;
            self.allocated = offset;
            true
        } else {
            false
        }
    }

    /// The file, for a thread that `fdatasync`s it while the writer flushes
    /// sled (see [`Ledger::write_step`]).
    pub(crate) fn handle(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// The path of the file (for errors).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Write a commit group's step entry (one `write`, no sync): the caller
    /// syncs [`Ledger::handle`] in parallel with sled's flush, then calls
    /// [`Ledger::confirm`] before acknowledging. Returns the entry's offset.
    pub(crate) fn write_step(&mut self, steps: &[Step]) -> Result<u64> {
        let offset = self
            .put(&encode_steps(steps))
            .map_err(|e| Error::io(&self.path, e))?;
        self.unconfirmed = Some(offset);
        for s in steps {
            self.heads.insert(s.mission.clone(), s.new.clone());
        }
        Ok(offset)
    }

    /// The group of the step entry just written was not made durable: cut
    /// the entry off (best effort; the next open judges what is left).
    pub(crate) fn abandon_step(&mut self, offset: u64, before: &[Step]) {
        if self.unconfirmed == Some(offset) && self.cut(offset) {
            self.unconfirmed = None;
            for s in before {
                if s.prev.sequence == 0 {
                    self.heads.remove(&s.mission);
                } else {
                    self.heads.insert(s.mission.clone(), s.prev.clone());
                }
            }
        }
    }

    /// Append the confirmation of the step entry at `offset`: a plain
    /// `write`, never synced (it survives a process crash, not necessarily
    /// a power cut; the next step entry's `fdatasync` carries it to disk).
    pub(crate) fn confirm(&mut self, offset: u64) -> Result<()> {
        debug_assert_eq!(self.unconfirmed, Some(offset));
        self.put(&encode_confirm(offset))
            .map_err(|e| Error::io(&self.path, e))?;
        self.unconfirmed = None;
        self.compact_if_large()
    }

    /// Append one entry (one `write`), then `fdatasync` it if `sync`.
    /// Compacts the file first when it has grown large.
    pub(crate) fn append(
        &mut self,
        heads: &[(&str, LedgerHead)],
        losses: &[AcceptedLoss],
        sync: bool,
    ) -> Result<()> {
        if heads.is_empty() && losses.is_empty() {
            return Ok(());
        }
        let refs: Vec<(&str, &LedgerHead)> = heads.iter().map(|(m, h)| (*m, h)).collect();
        let loss_refs: Vec<&AcceptedLoss> = losses.iter().collect();
        let entry = encode_entry(&refs, &loss_refs);
        // A partial entry may be in the file: it is cut off (a later append
        // must not follow it), or left for the next open to judge.
        let offset = self.put(&entry).map_err(|e| Error::io(&self.path, e))?;
        if sync {
            if let Err(e) = self.file.sync_data() {
                self.cut(offset);
                return Err(Error::io(&self.path, e));
            }
        }
        for loss in losses {
            loss.apply(&mut self.heads);
        }
        for (m, h) in heads {
            self.heads.insert((*m).to_string(), h.clone());
        }
        self.losses.extend_from_slice(losses);
        self.unconfirmed = None;
        self.compact_if_large()
    }

    /// Record that `mission` (at `head`) is being deleted: one plain entry,
    /// fdatasynced, written BEFORE sled deletes the mission. From then on
    /// the ledger no longer expects the mission, so a crash after this
    /// entry (whether or not sled's delete landed) never reports its
    /// events as lost; a crash before it leaves the mission in both.
    pub(crate) fn record_delete(&mut self, mission: &str, head: &LedgerHead) -> Result<()> {
        let mut body = Vec::with_capacity(47 + mission.len());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.push(ITEM_DELETED);
        put_id(&mut body, mission);
        body.extend_from_slice(&head.sequence.to_be_bytes());
        body.extend_from_slice(&head.hash);
        let offset = self
            .put(&frame(&body))
            .map_err(|e| Error::io(&self.path, e))?;
        if let Err(e) = self.file.sync_data() {
            self.cut(offset);
            return Err(Error::io(&self.path, e));
        }
        self.heads.remove(mission);
        self.unconfirmed = None;
        self.compact_if_large()
    }

    fn compact_if_large(&mut self) -> Result<()> {
        if self.len > COMPACT_MIN.max(COMPACT_FACTOR * self.compacted_size()) {
            let fresh = Ledger::create_with(
                &self.dir,
                std::mem::take(&mut self.heads),
                std::mem::take(&mut self.losses),
                self.preallocate,
            )?;
            *self = fresh;
        }
        Ok(())
    }

    fn compacted_size(&self) -> u64 {
        let heads: usize = self.heads.keys().map(|k| 43 + k.len()).sum();
        let losses: usize = self.losses.iter().map(|l| 59 + l.mission.len()).sum();
        (FILE_HEADER + ENTRY_HEADER + 4 + heads + losses) as u64
    }
}

/// The end of the chunk holding byte `len - 1`: the preallocated size of a
/// ledger `len` bytes long.
fn chunk_end(len: u64) -> u64 {
    len.div_ceil(CHUNK) * CHUNK
}

/// Our files are created readable by their owner only.
pub(crate) fn private_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// fsync a directory, so a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

mod parse;
use parse::parse;

#[cfg(test)]
mod tests;
