//! Archives: a mission, or the prefix a prune removes, written to a file
//! that carries its head hash and verifies on its own (no store needed),
//! and restores into any store.
//!
//! The file is JSON Lines. Line 1 is the header:
//! `{"mission_bus_archive": 1, "mission_id", "first_sequence",
//! "last_sequence", "prev_hash", "head_hash", "records"}` (`prev_hash`: the
//! chain hash the first record must carry, zeros from sequence 1;
//! `head_hash`: the hash of the last record). Then one line per record,
//! `{"sequence": n, "record": "<hex of the record bytes as stored>"}`, so
//! every checksum and chain hash is recomputed exactly (records of format
//! version 2 and 3, whose hashes do not depend on the store; a version-1
//! record is refused).

use std::io::Write;

use serde_json::{json, Value};

use super::MissionBus;
use crate::codec::{self, Hash, GENESIS};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::store::hex;

/// What an archive holds (its header, checked against its records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// The mission.
    pub mission_id: String,
    /// First sequence in the file.
    pub first_sequence: u64,
    /// Last sequence in the file.
    pub last_sequence: u64,
    /// The chain hash the first record carries (zeros from sequence 1).
    pub prev_hash: [u8; 32],
    /// The chain hash of the last record: the archive's head hash.
    pub head_hash: [u8; 32],
}

impl ArchiveInfo {
    /// The header line's JSON (also what `verify-archive` prints).
    pub fn to_json(&self) -> Value {
        json!({
            "mission_bus_archive": 1,
            "mission_id": self.mission_id,
            "first_sequence": self.first_sequence,
            "last_sequence": self.last_sequence,
            "prev_hash": hex(&self.prev_hash),
            "head_hash": hex(&self.head_hash),
            "records": self.last_sequence + 1 - self.first_sequence,
        })
    }
}

/// A read and verified archive: its header and its events.
#[derive(Debug, Clone)]
pub struct Archive {
    /// The header.
    pub info: ArchiveInfo,
    /// The events, in order.
    pub events: Vec<Event>,
}

impl MissionBus {
    /// Write `mission` (all that the store holds, or with `before` only the
    /// events below that sequence) as an archive to `out`. Every record is
    /// checked (checksum, contiguity, the chain) on the way out.
    pub fn archive(
        &self,
        mission: &str,
        before: Option<u64>,
        out: &mut dyn Write,
    ) -> Result<ArchiveInfo> {
        let c = self.cached(mission)?;
        let store = self.inner.store();
        let (first, prev_hash) = store.first_kept(c.no, mission)?;
        let last = match before {
            None => c.state.head,
            Some(b) if b > first && b <= c.state.head + 1 => b - 1,
            Some(_) => {
                return Err(Error::invalid(
                    "before",
                    format!(
                        "must be {}..={} for mission '{mission}' (its log holds {first}..={})",
                        first + 1,
                        c.state.head + 1,
                        c.state.head
                    ),
                ))
            }
        };
        let mut lines = Vec::new();
        let mut prev = prev_hash;
        for item in store.raw_records(c.no, mission, first, last)? {
            let (seq, v) = item?;
            if codec::prev_hash(&v) != prev {
                return Err(Error::corruption(
                    mission,
                    Some(seq),
                    "hash chain broken (run verify)",
                ));
            }
            if v[0] == codec::FORMAT_V1 {
                return Err(Error::invalid(
                    "archive",
                    format!(
                        "sequence {seq} of '{mission}' is a version-1 record, whose hash depends \
                         on this store's numbering: archive it with `export --format jsonl`"
                    ),
                ));
            }
            prev = codec::record_hash(&[], &v);
            lines.push(json!({"sequence": seq, "record": hex(&v)}).to_string());
        }
        if lines.len() as u64 != last + 1 - first {
            return Err(Error::corruption(mission, Some(last), "record missing"));
        }
        let info = ArchiveInfo {
            mission_id: mission.to_string(),
            first_sequence: first,
            last_sequence: last,
            prev_hash,
            head_hash: prev,
        };
        let io = |e| Error::io("archive", e);
        writeln!(out, "{}", info.to_json()).map_err(io)?;
        for l in lines {
            writeln!(out, "{l}").map_err(io)?;
        }
        out.flush().map_err(io)?;
        Ok(info)
    }

    /// Restore a mission from archives (oldest first; the first starts at
    /// sequence 1, each next one where the previous ended, chained to it)
    /// through [`MissionBus::import_log`]: every event is validated as if
    /// appended, and the restored head hash must equal the last archive's.
    pub fn restore(&self, archives: Vec<Archive>) -> Result<ArchiveInfo> {
        let info = chain_archives(&archives)?;
        if info.first_sequence != 1 {
            return Err(Error::invalid(
                "restore",
                format!(
                    "the archives start at sequence {}: restore needs the archives of \
                     '{}' from sequence 1 (oldest first)",
                    info.first_sequence, info.mission_id
                ),
            ));
        }
        let events: Vec<Event> = archives.into_iter().flat_map(|a| a.events).collect();
        if let Some(p) = events
            .iter()
            .find(|e| matches!(e.body, crate::event::EventBody::HistoryPruned { .. }))
        {
            return Err(Error::invalid(
                "restore",
                format!(
                    "the archives hold the history_pruned event of '{}' at sequence {}: \
                     the mission restores up to sequence {} (archive it with --before {})",
                    info.mission_id,
                    p.sequence,
                    p.sequence - 1,
                    p.sequence
                ),
            ));
        }
        self.import_log(events, |_| {})?;
        let report = self.verify(&info.mission_id)?;
        if report.head_hash != hex(&info.head_hash) || !report.is_intact() {
            return Err(Error::corruption(
                &info.mission_id,
                Some(info.last_sequence),
                format!(
                    "restored head hash {} differs from the archive's {}",
                    report.head_hash,
                    hex(&info.head_hash)
                ),
            ));
        }
        Ok(info)
    }
}

/// Check that archives follow one another (same mission, contiguous
/// sequences, each starting from the previous one's head hash); the span
/// they cover.
pub fn chain_archives(archives: &[Archive]) -> Result<ArchiveInfo> {
    let Some(first) = archives.first() else {
        return Err(Error::invalid("archives", "none given"));
    };
    let mut span = first.info.clone();
    for a in &archives[1..] {
        if a.info.mission_id != span.mission_id
            || a.info.first_sequence != span.last_sequence + 1
            || a.info.prev_hash != span.head_hash
        {
            return Err(Error::corruption(
                format!("archive of '{}'", a.info.mission_id),
                Some(a.info.first_sequence),
                format!(
                    "does not continue the archive before it ('{}' up to sequence {}, head hash {})",
                    span.mission_id,
                    span.last_sequence,
                    hex(&span.head_hash)
                ),
            ));
        }
        span.last_sequence = a.info.last_sequence;
        span.head_hash = a.info.head_hash;
    }
    Ok(span)
}

/// Read and verify an archive on its own: the header, every record's
/// checksum, frame (this mission, the stated sequence) and body, the chain
/// from `prev_hash`, and that the last record hashes to `head_hash`.
/// `name` (the file) is used in errors. Never panics on any input.
pub fn read_archive(name: &str, text: &str) -> Result<Archive> {
    let bad =
        |seq: Option<u64>, why: String| Error::corruption(format!("archive {name}"), seq, why);
    let mut lines = text.lines();
    let header: Value = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| bad(None, "line 1 is not an archive header".into()))?;
    if header["mission_bus_archive"] != json!(1) {
        return Err(bad(None, "line 1 is not a version-1 archive header".into()));
    }
    let num = |k: &str| {
        header[k]
            .as_u64()
            .ok_or_else(|| bad(None, format!("header: {k} is missing or not a number")))
    };
    let hash = |k: &str| -> Result<Hash> {
        header[k]
            .as_str()
            .and_then(parse_hex)
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or_else(|| bad(None, format!("header: {k} is not 64 hex digits")))
    };
    let info = ArchiveInfo {
        mission_id: header["mission_id"]
            .as_str()
            .ok_or_else(|| bad(None, "header: mission_id is missing".into()))?
            .to_string(),
        first_sequence: num("first_sequence")?,
        last_sequence: num("last_sequence")?,
        prev_hash: hash("prev_hash")?,
        head_hash: hash("head_hash")?,
    };
    if info.first_sequence == 0 || info.last_sequence < info.first_sequence {
        return Err(bad(None, "header: the sequence range is empty".into()));
    }
    if info.first_sequence == 1 && info.prev_hash != GENESIS {
        return Err(bad(
            Some(1),
            "header: sequence 1 must follow the zero hash".into(),
        ));
    }
    let mut events = Vec::new();
    let mut prev = info.prev_hash;
    let mut expected = info.first_sequence;
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = Some(expected);
        let v: Value = serde_json::from_str(line)
            .map_err(|e| bad(at, format!("line {} is not JSON: {e}", i + 2)))?;
        if v["sequence"].as_u64() != Some(expected) {
            return Err(bad(
                at,
                format!("line {} is not sequence {expected}", i + 2),
            ));
        }
        let bytes = v["record"]
            .as_str()
            .and_then(parse_hex)
            .ok_or_else(|| bad(at, "record is not hex".into()))?;
        codec::check_record(&bytes).map_err(|e| bad(at, e))?;
        if bytes[0] == codec::FORMAT_V1 {
            return Err(bad(at, "version-1 records cannot be archived".into()));
        }
        let frame = codec::frame(&bytes).map_err(|e| bad(at, e))?;
        if frame.mission_id != info.mission_id {
            return Err(bad(at, "record belongs to another mission".into()));
        }
        if codec::prev_hash(&bytes) != prev {
            return Err(bad(
                at,
                "hash chain broken: the record does not follow the one before it (tampered)".into(),
            ));
        }
        prev = codec::record_hash(&[], &bytes);
        events.push(codec::decode_checked(expected, &bytes).map_err(|e| bad(at, e))?);
        expected += 1;
    }
    if expected != info.last_sequence + 1 {
        return Err(bad(
            Some(expected),
            format!(
                "holds records up to {} but its header says {}",
                expected - 1,
                info.last_sequence
            ),
        ));
    }
    if prev != info.head_hash {
        return Err(bad(
            Some(info.last_sequence),
            format!(
                "last record hashes to {}, the header's head hash is {} (tampered)",
                hex(&prev),
                hex(&info.head_hash)
            ),
        ));
    }
    Ok(Archive { info, events })
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
