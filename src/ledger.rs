//! The commit ledger: the store's own record of what it acknowledged,
//! kept outside sled's log.
//!
//! sled recovers its log to the last intact message and silently drops what
//! follows a damaged region, heads included, so the store alone cannot tell
//! "nothing happened after sequence 40" from "sequences 41..60 were
//! acknowledged and then lost". Before a commit group is acknowledged, the
//! writer appends each touched mission's new head (last sequence, chain hash)
//! to the ledger file `DATA/ledger`, after sled's flush: sled commit → sled
//! flush (+ fsync) → ledger append (+ fdatasync) → acknowledge. A crash can
//! therefore leave the ledger behind sled, never ahead of it, unless the disk
//! lost acknowledged data; on open every mission's head in sled is checked
//! against it (see `MissionBus` open and `docs/architecture.md`).
//!
//! Layout (all integers big-endian; drawn in `docs/format.md`):
//!
//! ```text
//! header  [0..8] "MBLEDGER"  [8..12] version (1)  [12..16] CRC-32 of [0..12]
//! entry   [0..4] body length L (1..=64 MiB)
//!         [4..8] CRC-32 of the body
//!         [8..12] CRC-32 of bytes [0..8] (the entry header itself)
//!         [12..12+L] body: [count u32] then `count` items
//! item    [kind u8] [mission id length u16] [mission id, UTF-8] then
//!         kind 1 (head):          [sequence u64] [chain hash 32]
//!         kind 2 (accepted loss): [first lost u64] [last lost u64]
//!                                 [ledger's head hash 32] [time, µs since epoch, i64]
//! ```
//!
//! One entry per commit group; a later head for a mission replaces an
//! earlier one. When the file outgrows a few times its compacted size it is
//! rewritten (new file, fsync, rename, fsync of the directory) as one entry
//! holding every head and accepted loss.
//!
//! Torn tail versus damage: appends only ever add one entry at the end, so a
//! crash can only leave the LAST entry incomplete. A header cut short, a
//! header failing its own CRC with only zero bytes after it (space the file
//! system allocated but never wrote), a body running past the end of the
//! file, or a body failing its CRC with only zero bytes after it are a torn
//! tail:
//! tolerated (that group was never acknowledged) and cut off before the next
//! append. Anything else (a bad header followed by data, a bad body followed
//! by another entry, a malformed body, a bad file header) is damage, reported
//! with the file and offset. A flipped bit inside the last entry's body is
//! indistinguishable from a torn append: the ledger then lags by one group,
//! which weakens the check for that group but never reports false damage.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Write};
use std::path::{Path, PathBuf};

use crate::codec::Hash;
use crate::error::{Error, Result};

/// The ledger's file name inside the data directory.
pub(crate) const FILE_NAME: &str = "ledger";
const TMP_NAME: &str = "ledger.tmp";
const MAGIC: &[u8; 8] = b"MBLEDGER";
const VERSION: u32 = 1;
const FILE_HEADER: usize = 16;
const ENTRY_HEADER: usize = 12;
const MAX_BODY: u32 = 64 << 20;
const ITEM_HEAD: u8 = 1;
const ITEM_LOSS: u8 = 2;
/// Rewrite the file once it is larger than this many times its compacted
/// size (and at least `COMPACT_MIN` bytes).
const COMPACT_FACTOR: u64 = 4;
const COMPACT_MIN: u64 = 1 << 20;

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
    /// Length of the intact prefix (header + whole entries).
    pub(crate) intact_len: u64,
    /// Bytes after `intact_len` that a crash left (tolerated).
    pub(crate) torn_bytes: u64,
    pub(crate) damage: Option<LedgerDamage>,
}

/// Read the ledger of the store at `dir` (never creates anything).
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

fn parse(path: &Path, bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let damage = |offset: usize, reason: String| LedgerDamage {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    // The header is written whole, before the file gets its name (write,
    // fsync, rename): a bad one is damage, never a torn write.
    if bytes.len() < FILE_HEADER
        || &bytes[..8] != MAGIC
        || be32(&bytes[12..16]) != crc32fast::hash(&bytes[..12])
    {
        scan.damage = Some(damage(
            0,
            "file header is missing or fails its checksum".into(),
        ));
        return scan;
    }
    let version = be32(&bytes[8..12]);
    if version != VERSION {
        scan.damage = Some(damage(
            8,
            format!("ledger version {version}; this build reads version {VERSION}"),
        ));
        return scan;
    }
    let mut off = FILE_HEADER;
    scan.intact_len = off as u64;
    while off < bytes.len() {
        let rest = &bytes[off..];
        if rest.len() < ENTRY_HEADER {
            break; // torn: the header itself was cut short
        }
        let len = be32(&rest[..4]);
        if be32(&rest[8..12]) != crc32fast::hash(&rest[..8]) {
            if zeros(&rest[ENTRY_HEADER..]) {
                break; // torn: a header cut short, then space never written
            }
            scan.damage = Some(damage(off, "entry header fails its checksum".into()));
            return scan;
        }
        if len == 0 || len > MAX_BODY {
            scan.damage = Some(damage(off, format!("entry length {len} is out of range")));
            return scan;
        }
        let end = ENTRY_HEADER + len as usize;
        if end > rest.len() {
            break; // torn: the body was being appended
        }
        let body = &rest[ENTRY_HEADER..end];
        if be32(&rest[4..8]) != crc32fast::hash(body) {
            if zeros(&rest[end..]) {
                break; // torn: the last entry's body did not all reach the disk
            }
            scan.damage = Some(damage(
                off,
                "entry fails its checksum and is followed by more entries".into(),
            ));
            return scan;
        }
        if let Err(reason) = parse_body(body, &mut scan) {
            scan.damage = Some(damage(off, format!("malformed entry: {reason}")));
            return scan;
        }
        off += end;
        scan.intact_len = off as u64;
    }
    scan.torn_bytes = bytes.len() as u64 - scan.intact_len;
    scan
}

/// Whether `b` is empty or all zero bytes: what follows the last entry
/// when a crash interrupted its append.
fn zeros(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A bounds-checked reader over an entry body.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("ends early".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    fn hash(&mut self) -> std::result::Result<Hash, String> {
        Ok(self.take(32)?.try_into().expect("32 bytes"))
    }
}

fn parse_body(body: &[u8], scan: &mut Scan) -> std::result::Result<(), String> {
    let mut c = Cursor(body);
    let count = be32(c.take(4)?);
    for _ in 0..count {
        let kind = c.take(1)?[0];
        let id_len = u16::from_be_bytes(c.take(2)?.try_into().expect("2 bytes"));
        let mission = std::str::from_utf8(c.take(id_len as usize)?)
            .map_err(|_| "mission id is not UTF-8".to_string())?
            .to_string();
        match kind {
            ITEM_HEAD => {
                let sequence = c.u64()?;
                let hash = c.hash()?;
                scan.heads.insert(mission, LedgerHead { sequence, hash });
            }
            ITEM_LOSS => {
                let first = c.u64()?;
                let last = c.u64()?;
                let ledger_hash = c.hash()?;
                let at_micros = c.u64()? as i64;
                let loss = AcceptedLoss {
                    mission,
                    first,
                    last,
                    ledger_hash,
                    at_micros,
                };
                loss.apply(&mut scan.heads);
                scan.losses.push(loss);
            }
            k => return Err(format!("unknown item kind {k}")),
        }
    }
    if !c.0.is_empty() {
        return Err(format!("{} bytes after the last item", c.0.len()));
    }
    Ok(())
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
    let mut entry = Vec::with_capacity(ENTRY_HEADER + body.len());
    entry.extend_from_slice(&(body.len() as u32).to_be_bytes());
    entry.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    let hcrc = crc32fast::hash(&entry[..8]);
    entry.extend_from_slice(&hcrc.to_be_bytes());
    entry.extend_from_slice(&body);
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
    file: File,
    len: u64,
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
        let path = dir.join(FILE_NAME);
        let tmp = dir.join(TMP_NAME);
        let mut bytes = file_header().to_vec();
        let refs: Vec<(&str, &LedgerHead)> = heads.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let loss_refs: Vec<&AcceptedLoss> = losses.iter().collect();
        if !refs.is_empty() || !loss_refs.is_empty() {
            bytes.extend_from_slice(&encode_entry(&refs, &loss_refs));
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
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Ledger {
            dir: dir.to_path_buf(),
            path,
            file,
            len: bytes.len() as u64,
            heads,
            losses,
        })
    }

    /// Open an intact ledger for appending, cutting off a torn tail first
    /// (and making the cut durable) so new entries never follow garbage.
    pub(crate) fn open(dir: &Path, scan: Scan) -> Result<Ledger> {
        debug_assert!(scan.damage.is_none());
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if scan.torn_bytes > 0 {
            tracing::warn!(
                path = %path.display(),
                offset = scan.intact_len,
                bytes = scan.torn_bytes,
                "commit ledger: cutting off a torn last entry left by a crash"
            );
            file.set_len(scan.intact_len)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(&path, e))?;
        }
        Ok(Ledger {
            dir: dir.to_path_buf(),
            path,
            file,
            len: scan.intact_len,
            heads: scan.heads,
            losses: scan.losses,
        })
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
        let written =
            self.file
                .write_all(&entry)
                .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // A partial entry may be in the file: cut it off (a later append
            // must not follow it), or leave it for the next open to judge.
            let _ = self.file.set_len(self.len);
            return Err(Error::io(&self.path, e));
        }
        self.len += entry.len() as u64;
        for loss in losses {
            loss.apply(&mut self.heads);
        }
        for (m, h) in heads {
            self.heads.insert((*m).to_string(), h.clone());
        }
        self.losses.extend_from_slice(losses);
        if self.len > COMPACT_MIN.max(COMPACT_FACTOR * self.compacted_size()) {
            let fresh = Ledger::create(
                &self.dir,
                std::mem::take(&mut self.heads),
                std::mem::take(&mut self.losses),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn head(sequence: u64, b: u8) -> LedgerHead {
        LedgerHead {
            sequence,
            hash: [b; 32],
        }
    }

    #[test]
    fn heads_round_trip_and_later_entries_win() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_heads(dir.path()).unwrap(), None);
        let mut l = Ledger::create(dir.path(), BTreeMap::new(), Vec::new()).unwrap();
        l.append(&[("a", head(1, 1)), ("b", head(2, 2))], &[], true)
            .unwrap();
        l.append(&[("a", head(5, 5))], &[], false).unwrap();
        let heads = read_heads(dir.path()).unwrap().unwrap();
        assert_eq!(heads["a"], head(5, 5));
        assert_eq!(heads["b"], head(2, 2));
        assert_eq!(heads.len(), 2);
    }

    #[test]
    fn torn_tails_are_tolerated_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::create(dir.path(), BTreeMap::new(), Vec::new()).unwrap();
        l.append(&[("a", head(1, 1))], &[], true).unwrap();
        let good = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        l.append(&[("a", head(2, 2))], &[], true).unwrap();
        let full = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        let path = dir.path().join(FILE_NAME);
        // Every cut inside the last entry, and zeros in place of its tail.
        for cut in good.len() + 1..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let s = scan(dir.path()).unwrap().unwrap();
            assert!(s.damage.is_none(), "cut at {cut}: {:?}", s.damage);
            assert_eq!(s.heads["a"], head(1, 1));
            let mut zeroed = full[..cut].to_vec();
            zeroed.resize(full.len() + 100, 0);
            std::fs::write(&path, &zeroed).unwrap();
            let s = scan(dir.path()).unwrap().unwrap();
            assert!(s.damage.is_none(), "zeroed from {cut}: {:?}", s.damage);
            assert_eq!(s.intact_len, good.len() as u64);
        }
        // Opening cuts the torn bytes off; appending then works.
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        let mut l = Ledger::open(dir.path(), scan(dir.path()).unwrap().unwrap()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good.len() as u64);
        l.append(&[("a", head(3, 3))], &[], true).unwrap();
        assert_eq!(read_heads(dir.path()).unwrap().unwrap()["a"], head(3, 3));
    }

    #[test]
    fn damage_before_the_tail_is_reported_with_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::create(dir.path(), BTreeMap::new(), Vec::new()).unwrap();
        l.append(&[("a", head(1, 1))], &[], true).unwrap();
        l.append(&[("a", head(2, 2))], &[], true).unwrap();
        let path = dir.path().join(FILE_NAME);
        let full = std::fs::read(&path).unwrap();
        let first_entry = FILE_HEADER;
        // Every single-bit flip outside the last entry is damage; the
        // offset named is the entry (or header) holding the flipped byte.
        let last_entry = full.len() - (full.len() - FILE_HEADER) / 2;
        for byte in 0..last_entry {
            for bit in [0, 7] {
                let mut b = full.clone();
                b[byte] ^= 1 << bit;
                std::fs::write(&path, &b).unwrap();
                let err = read_heads(dir.path()).unwrap_err();
                assert_eq!(err.kind(), crate::ErrorKind::Integrity);
                let s = scan(dir.path()).unwrap().unwrap();
                let d = s.damage.unwrap();
                let expect = if byte < first_entry {
                    d.offset <= 8
                } else {
                    d.offset == first_entry as u64
                };
                assert!(expect, "flip at {byte}: {d:?}");
                assert!(
                    err.to_string().contains(&path.display().to_string()),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn compaction_keeps_every_head_and_loss() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::create(dir.path(), BTreeMap::new(), Vec::new()).unwrap();
        let loss = AcceptedLoss {
            mission: "m0".into(),
            first: 3,
            last: 4,
            ledger_hash: [9; 32],
            at_micros: 42,
        };
        l.append(&[], std::slice::from_ref(&loss), false).unwrap();
        for i in 0..40_000u64 {
            let m = format!("m{}", i % 10);
            l.append(&[(m.as_str(), head(i, i as u8))], &[], false)
                .unwrap();
        }
        let size = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert!(size <= COMPACT_MIN + 200, "compacted: {size}");
        let s = scan(dir.path()).unwrap().unwrap();
        assert!(s.damage.is_none());
        assert_eq!(s.heads.len(), 10);
        assert_eq!(s.heads["m9"], head(39_999, 39_999u64 as u8));
        assert_eq!(s.losses, vec![loss]);
        assert!(!dir.path().join(TMP_NAME).exists());
    }
}
