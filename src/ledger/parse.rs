//! Reading the ledger file: the walk over its entries (where it ends, torn
//! tail or damage: the rules in `src/ledger.rs`'s header) and the fold of
//! each entry's items into a [`Scan`].

use super::*;

/// Walk the file's bytes from the file header on: every intact entry folded
/// into the scan, where the entries end, and the damage, if any.
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Scan {
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
    scan.version = version;
    if version != VERSION && version != OLD_VERSION {
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
        if let Err(reason) = parse_body(body, off as u64, &mut scan) {
            scan.damage = Some(damage(off, format!("malformed entry: {reason}")));
            return scan;
        }
        off += end;
        scan.intact_len = off as u64;
    }
    // Free space (zeros) after the last entry is no torn tail.
    scan.file_len = bytes.len() as u64;
    if !zeros(&bytes[off..]) {
        scan.torn_bytes = scan.file_len - scan.intact_len;
    }
    scan
}

/// Whether `b` is empty or all zero bytes: what follows the last entry
/// when a crash interrupted its append.
pub(super) fn zeros(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

pub(super) fn be32(b: &[u8]) -> u32 {
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

/// Apply one entry (at byte `offset`) to the scan. A step entry becomes
/// the pending tail; any later record confirms it (a confirmation record
/// must name it).
fn parse_body(body: &[u8], offset: u64, scan: &mut Scan) -> std::result::Result<(), String> {
    let mut c = Cursor(body);
    let count = be32(c.take(4)?);
    let mut steps = Vec::new();
    let mut confirms = None;
    let mut plain = 0u32;
    let pending = scan.tail.as_ref().map(|t| t.offset);
    for _ in 0..count {
        let kind = c.take(1)?[0];
        let id_len = u16::from_be_bytes(c.take(2)?.try_into().expect("2 bytes"));
        let mission = std::str::from_utf8(c.take(id_len as usize)?)
            .map_err(|_| "mission id is not UTF-8".to_string())?
            .to_string();
        match kind {
            ITEM_HEAD | ITEM_LOSS | ITEM_DELETED if plain == 0 => {
                plain += 1;
                // Any later record confirms a pending step entry.
                scan.confirm_tail();
                parse_plain(kind, mission, &mut c, scan)?;
            }
            ITEM_HEAD | ITEM_LOSS | ITEM_DELETED => parse_plain(kind, mission, &mut c, scan)?,
            ITEM_STEP => {
                let sequence = c.u64()?;
                let hash = c.hash()?;
                let prev_sequence = c.u64()?;
                let prev_hash = c.hash()?;
                steps.push(Step {
                    mission,
                    prev: LedgerHead {
                        sequence: prev_sequence,
                        hash: prev_hash,
                    },
                    new: LedgerHead { sequence, hash },
                });
            }
            ITEM_CONFIRM if mission.is_empty() => confirms = Some(c.u64()?),
            k => return Err(format!("unknown item kind {k}")),
        }
    }
    if !c.0.is_empty() {
        return Err(format!("{} bytes after the last item", c.0.len()));
    }
    let kinds =
        usize::from(plain > 0) + usize::from(!steps.is_empty()) + usize::from(confirms.is_some());
    if kinds > 1 || (confirms.is_some() && count != 1) {
        return Err("mixes step, confirmation and plain items".into());
    }
    if let Some(confirmed) = confirms {
        if pending != Some(confirmed) {
            return Err(format!(
                "confirms the entry at byte offset {confirmed}, which is not the step entry just before it"
            ));
        }
        scan.confirm_tail();
    } else if !steps.is_empty() {
        scan.confirm_tail();
        scan.tail = Some(Tail { offset, steps });
    }
    Ok(())
}

fn parse_plain(
    kind: u8,
    mission: String,
    c: &mut Cursor<'_>,
    scan: &mut Scan,
) -> std::result::Result<(), String> {
    if kind == ITEM_HEAD {
        let sequence = c.u64()?;
        let hash = c.hash()?;
        scan.heads.insert(mission, LedgerHead { sequence, hash });
        return Ok(());
    }
    if kind == ITEM_DELETED {
        // [head sequence u64][head hash 32] at deletion: informative.
        c.u64()?;
        c.hash()?;
        scan.heads.remove(&mission);
        return Ok(());
    }
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
    Ok(())
}
