//! Finding version-2 records in raw bytes, without sled.
//!
//! Every version-2 record carries [`codec::MAGIC`] at a fixed offset, its
//! own length, mission id and sequence, and a CRC over everything after the
//! CRC field (`docs/format.md`). sled stores values as contiguous bytes in
//! its log (and in `blobs/` for large pages), so scanning a file for the
//! magic and checking the CRC of the bytes around it finds every record
//! copy that survived, wherever sled put it, including older page versions
//! still in the log.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::codec::{self, Hash};
use crate::error::{Error, Result};
use crate::event::Event;

/// A record found in a raw file whose checksum and frame check out.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) mission_id: String,
    pub(crate) sequence: u64,
    /// The record's chain hash.
    pub(crate) hash: Hash,
    /// The previous-record hash it carries.
    pub(crate) prev: Hash,
    pub(crate) event: Event,
    /// Where the first copy was found.
    pub(crate) file: PathBuf,
    pub(crate) offset: u64,
}

/// What a scan saw, for the report.
#[derive(Debug, Default)]
pub(crate) struct ScanStats {
    /// Bytes read from raw files.
    pub(crate) bytes: u64,
    /// Files read.
    pub(crate) files: Vec<PathBuf>,
    /// Magic occurrences whose bytes failed the length, CRC or frame check
    /// (damaged copies, or the magic inside some other data).
    pub(crate) rejected: u64,
    /// Record copies that checked out (duplicates included).
    pub(crate) copies: u64,
}

/// Records are far smaller than this (bodies are capped at 120 KiB).
const MAX_RECORD: usize = 1 << 20;
/// Bytes read per step; a record may straddle two steps.
const CHUNK: usize = 8 << 20;

/// Every distinct record (by mission, sequence and hash) in `files`.
pub(crate) fn scan_files(files: &[PathBuf]) -> Result<(Vec<Found>, ScanStats)> {
    let mut stats = ScanStats::default();
    let mut seen: HashSet<(String, u64, Hash)> = HashSet::new();
    let mut found = Vec::new();
    for path in files {
        stats.files.push(path.clone());
        scan_file(path, &mut stats, &mut |f: Found| {
            let key = (f.mission_id.clone(), f.sequence, f.hash);
            if seen.insert(key) {
                found.push(f);
            }
        })?;
    }
    Ok((found, stats))
}

fn scan_file(path: &Path, stats: &mut ScanStats, sink: &mut dyn FnMut(Found)) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // `buf[..]` holds the file's bytes from `base`; positions before `done`
    // were examined already.
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + MAX_RECORD);
    let mut base: u64 = 0;
    let mut eof = false;
    let mut chunk = vec![0u8; CHUNK];
    while !eof {
        let n = read_full(&mut file, &mut chunk).map_err(|e| Error::io(path, e))?;
        eof = n < chunk.len();
        stats.bytes += n as u64;
        buf.extend_from_slice(&chunk[..n]);
        // A magic at `p` can be judged once the record it may belong to is
        // entirely in the buffer, or at the end of the file.
        let limit = if eof {
            buf.len()
        } else {
            buf.len().saturating_sub(MAX_RECORD)
        };
        let mut p = codec::MAGIC_AT;
        while let Some(i) = find(&buf[p.min(buf.len())..], codec::MAGIC) {
            let at = p + i;
            if at >= limit {
                break;
            }
            let start = at - codec::MAGIC_AT;
            match candidate(&buf[start..]) {
                Some(f) => {
                    sink(Found {
                        file: path.to_path_buf(),
                        offset: base + start as u64,
                        ..f
                    });
                    stats.copies += 1;
                }
                None => stats.rejected += 1,
            }
            p = at + 1;
        }
        // Keep what may still start a record: everything from `limit - MAGIC_AT`.
        let keep_from = limit.saturating_sub(codec::MAGIC_AT);
        if !eof && keep_from > 0 {
            buf.drain(..keep_from);
            base += keep_from as u64;
        }
    }
    Ok(())
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Check the record starting at `bytes[0]` (its magic at `MAGIC_AT`).
fn candidate(bytes: &[u8]) -> Option<Found> {
    if !matches!(
        bytes.first(),
        Some(&codec::FORMAT_VERSION) | Some(&codec::FORMAT_V3)
    ) {
        return None;
    }
    let len = codec::framed_len(bytes)?;
    if !(codec::V2_FIXED..=MAX_RECORD).contains(&len) || len > bytes.len() {
        return None;
    }
    let value = &bytes[..len];
    codec::check_record(value).ok()?;
    let frame = codec::frame(value).ok()?;
    let event = codec::decode_checked(frame.sequence, value).ok()?;
    Some(Found {
        mission_id: frame.mission_id.to_string(),
        sequence: frame.sequence,
        hash: codec::record_hash(&[], value),
        prev: codec::prev_hash(value),
        event,
        file: PathBuf::new(),
        offset: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventBody, Json};

    fn record(seq: u64, payload: &str) -> Vec<u8> {
        let e = Event {
            id: uuid::Uuid::now_v7(),
            sequence: seq,
            timestamp: crate::event::now_micros(),
            sender: "ada".into(),
            body: EventBody::Message {
                topic: "t".into(),
                payload: Json::from_value(&serde_json::json!(payload)),
            },
            meta: Default::default(),
        };
        codec::encode_event("m", &e, &codec::GENESIS).value
    }

    #[test]
    fn finds_records_between_junk_and_across_chunk_boundaries_and_skips_damaged_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut bytes = vec![0xAAu8; 100];
        let a = record(1, "a");
        bytes.extend_from_slice(&a);
        // A record straddling the first chunk boundary.
        bytes.resize(CHUNK - 40, 0x55);
        let b = record(2, &"b".repeat(500));
        bytes.extend_from_slice(&b);
        // A damaged copy: one byte flipped.
        let mut c = record(3, "c");
        let last = c.len() - 1;
        c[last] ^= 1;
        bytes.extend_from_slice(&c);
        // A record at the very end of the file.
        bytes.extend_from_slice(&a);
        std::fs::write(&path, &bytes).unwrap();
        let (found, stats) = scan_files(&[path]).unwrap();
        let seqs: Vec<u64> = found.iter().map(|f| f.sequence).collect();
        assert_eq!(seqs, [1, 2], "the duplicate of 1 is merged, 3 is damaged");
        assert_eq!(stats.rejected, 1);
        assert_eq!(stats.copies, 3);
        assert_eq!(found[0].offset, 100);
        assert_eq!(found[1].offset, (CHUNK - 40) as u64);
    }
}
