//! Bytes of the history-management values: prune anchors (`anchors` tree)
//! and tombstones of deleted missions (`tombstones` tree). Layouts in
//! `docs/format.md` ("Anchors and tombstones").

use super::{bincode_config, Hash, SNAPSHOT_DECODE_LIMIT};
use crate::state::{MissionState, REDUCER_VERSION};

/// Version byte of `anchors` values.
const ANCHOR_VERSION: u8 = 1;
/// Version byte of `tombstones` values.
const TOMBSTONE_VERSION: u8 = 1;
const ANCHOR_FIXED: usize = 81;
const TOMBSTONE_FIXED: usize = 57;

/// A prune anchor: the chain hash of the record before the first kept one,
/// and the mission's state as of that record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Anchor {
    /// First sequence kept.
    pub(crate) before: u64,
    /// Chain hash of the record at `before - 1`.
    pub(crate) hash: Hash,
    /// BLAKE3 of `state_bytes` (the `history_pruned` event records it).
    pub(crate) state_hash: Hash,
    /// Reducer version the state was encoded by.
    pub(crate) reducer: u32,
    /// bincode of the state as of `before - 1`.
    pub(crate) state_bytes: Vec<u8>,
}

impl Anchor {
    /// An anchor for `state` (as of `before - 1`, whose record hashes to `hash`).
    pub(crate) fn new(before: u64, hash: Hash, state: &MissionState) -> Anchor {
        let state_bytes = bincode::serde::encode_to_vec(state, bincode_config())
            .expect("encoding into a Vec cannot fail");
        Anchor {
            before,
            hash,
            state_hash: *blake3::hash(&state_bytes).as_bytes(),
            reducer: REDUCER_VERSION,
            state_bytes,
        }
    }

    /// The state it keeps. Fails when the bytes do not decode or were
    /// written by another reducer version.
    pub(crate) fn state(&self) -> Result<MissionState, String> {
        if self.reducer != REDUCER_VERSION {
            return Err(format!(
                "prune anchor state was written by reducer version {}, this build is {REDUCER_VERSION}",
                self.reducer
            ));
        }
        let (state, used): (MissionState, usize) = bincode::serde::decode_from_slice(
            &self.state_bytes,
            bincode_config().with_limit::<SNAPSHOT_DECODE_LIMIT>(),
        )
        .map_err(|e| format!("prune anchor state does not decode: {e}"))?;
        if used != self.state_bytes.len() {
            return Err("prune anchor state has trailing bytes".into());
        }
        Ok(state)
    }

    /// `[1][CRC-32 of 5..][before u64][hash 32][state hash 32][reducer u32][state]`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(ANCHOR_FIXED + self.state_bytes.len());
        v.push(ANCHOR_VERSION);
        v.extend_from_slice(&[0u8; 4]);
        v.extend_from_slice(&self.before.to_be_bytes());
        v.extend_from_slice(&self.hash);
        v.extend_from_slice(&self.state_hash);
        v.extend_from_slice(&self.reducer.to_be_bytes());
        v.extend_from_slice(&self.state_bytes);
        let crc = crc32fast::hash(&v[5..]);
        v[1..5].copy_from_slice(&crc.to_be_bytes());
        v
    }

    /// Parse and CRC-check an `anchors` value. Never panics.
    pub(crate) fn decode(v: &[u8]) -> Result<Anchor, String> {
        if v.len() < ANCHOR_FIXED {
            return Err(format!("prune anchor of {} bytes is too short", v.len()));
        }
        if v[0] != ANCHOR_VERSION {
            return Err(format!("unknown prune anchor version {}", v[0]));
        }
        let stored = u32::from_be_bytes(v[1..5].try_into().expect("4 bytes"));
        if stored != crc32fast::hash(&v[5..]) {
            return Err("prune anchor checksum mismatch".into());
        }
        Ok(Anchor {
            before: u64::from_be_bytes(v[5..13].try_into().expect("8 bytes")),
            hash: v[13..45].try_into().expect("32 bytes"),
            state_hash: v[45..77].try_into().expect("32 bytes"),
            reducer: u32::from_be_bytes(v[77..81].try_into().expect("4 bytes")),
            state_bytes: v[81..].to_vec(),
        })
    }
}

/// What is left of a deleted mission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// The deleted mission's id.
    pub mission_id: String,
    /// Its head sequence when deleted.
    pub head_sequence: u64,
    /// Its head's chain hash when deleted.
    pub head_hash: [u8; 32],
    /// When, in microseconds since the Unix epoch.
    pub deleted_at_us: i64,
    /// Who deleted it (the caller's name, e.g. `@operator` or `admin`).
    pub deleted_by: String,
    /// The internal mission number its records had (for finishing an
    /// interrupted clean-up).
    pub(crate) mission_no: u64,
}

impl Tombstone {
    /// `tombstones` key: mission id, `0x00`, deletion time (µs, u64 BE), so
    /// a reused id keeps every deletion.
    pub(crate) fn key(&self) -> Vec<u8> {
        let mut k = self.mission_id.as_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(&(self.deleted_at_us as u64).to_be_bytes());
        k
    }

    /// `[1][mission no u64][head seq u64][head hash 32][at µs i64][by UTF-8]`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(TOMBSTONE_FIXED + self.deleted_by.len());
        v.push(TOMBSTONE_VERSION);
        v.extend_from_slice(&self.mission_no.to_be_bytes());
        v.extend_from_slice(&self.head_sequence.to_be_bytes());
        v.extend_from_slice(&self.head_hash);
        v.extend_from_slice(&self.deleted_at_us.to_be_bytes());
        v.extend_from_slice(self.deleted_by.as_bytes());
        v
    }

    /// Parse a `tombstones` entry. Never panics.
    pub(crate) fn decode(k: &[u8], v: &[u8]) -> Result<Tombstone, String> {
        let zero = k
            .iter()
            .position(|b| *b == 0)
            .ok_or("tombstone key is malformed")?;
        let mission_id = std::str::from_utf8(&k[..zero])
            .map_err(|_| "tombstone key is not UTF-8")?
            .to_string();
        if v.len() < TOMBSTONE_FIXED || v[0] != TOMBSTONE_VERSION {
            return Err(format!("tombstone of '{mission_id}' is malformed"));
        }
        Ok(Tombstone {
            mission_id,
            mission_no: u64::from_be_bytes(v[1..9].try_into().expect("8 bytes")),
            head_sequence: u64::from_be_bytes(v[9..17].try_into().expect("8 bytes")),
            head_hash: v[17..49].try_into().expect("32 bytes"),
            deleted_at_us: i64::from_be_bytes(v[49..57].try_into().expect("8 bytes")),
            deleted_by: String::from_utf8(v[57..].to_vec())
                .map_err(|_| "tombstone's deleter is not UTF-8")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_round_trip_and_every_flipped_byte_is_detected() {
        let state = MissionState {
            mission_id: "m".into(),
            head: 9,
            ..MissionState::default()
        };
        let a = Anchor::new(10, [7u8; 32], &state);
        let v = a.encode();
        let back = Anchor::decode(&v).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.state().unwrap(), state);
        for i in 0..v.len() {
            let mut bad = v.clone();
            bad[i] ^= 0x10;
            assert!(Anchor::decode(&bad).is_err(), "flip at {i}");
        }
        assert!(Anchor::decode(&v[..40]).is_err());
    }

    #[test]
    fn tombstones_round_trip() {
        let t = Tombstone {
            mission_id: "m-1".into(),
            head_sequence: 5,
            head_hash: [3u8; 32],
            deleted_at_us: 1_700_000_000_000_000,
            deleted_by: "@operator".into(),
            mission_no: 42,
        };
        assert_eq!(Tombstone::decode(&t.key(), &t.encode()).unwrap(), t);
        assert!(Tombstone::decode(&t.key(), &t.encode()[..20]).is_err());
        assert!(Tombstone::decode(b"nozero", &t.encode()).is_err());
    }
}
