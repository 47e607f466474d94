//! Record <-> bytes: format version, checksum, hash chain.
//!
//! The only module that knows bincode, so the encoding can be swapped in one
//! place (every bincode release is flagged unmaintained by the advisory
//! database). Layouts are drawn byte by byte in `docs/format.md`.
//!
//! Event record value, version 2 (written today; self-describing, so
//! `salvage` can find records in raw files without sled):
//!
//! ```text
//! [0]        format version (2)
//! [1..5]     CRC-32 (IEEE), big-endian, of bytes [5..]
//! [5..37]    hash of the previous record of the mission (zeros for sequence 1)
//! [37..45]   magic b"MBUSREC2"
//! [45..49]   total record length, u32 BE
//! [49..57]   sequence, u64 BE
//! [57..59]   mission id length n, u16 BE
//! [59..59+n] mission id (the user's string, UTF-8)
//! [59+n..]   bincode (standard config) of RecordV1
//! ```
//!
//! Version 1 (still read) is `[1][crc][prev 32][bincode]`, with no magic,
//! length, sequence or mission id.
//!
//! Record hash, v2 = BLAKE3(value[0] || value[5..]): it commits to the mission
//! id and sequence carried in the record, the previous hash and the body, so
//! a record that is edited, moved, swapped, dropped or inserted breaks the
//! chain, and a mission keeps its hashes in a store that numbers missions
//! differently. v1 = BLAKE3(key[16] || value[0] || value[5..]) (the key
//! carries the internal mission number and the sequence).

use std::borrow::Cow;

mod history;
pub(crate) use history::Anchor;
pub use history::Tombstone;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{from_micros, to_micros, Event, EventBody, EventMeta, Json};
use crate::keys::MissionNo;
use crate::profiles::MissionConfig;
use crate::state::{MissionState, REDUCER_VERSION};

/// Version byte of event records written today, and `meta.format_version`.
pub(crate) const FORMAT_VERSION: u8 = 2;
/// The first record format (still read, never written).
pub(crate) const FORMAT_V1: u8 = 1;
/// Version byte of a record carrying per-event metadata: the version-2
/// frame, then the body, then the metadata (written only when an event has
/// metadata, so events without any keep their version-2 bytes).
pub(crate) const FORMAT_V3: u8 = 3;
/// `meta.format_version` written today: 3 (stores may hold v1, v2 and v3
/// records).
pub(crate) const STORE_FORMAT: u8 = 3;
/// Magic at [`MAGIC_AT`] in every version-2 record.
pub(crate) const MAGIC: &[u8; 8] = b"MBUSREC2";
/// Offset of [`MAGIC`] in a version-2 record.
pub(crate) const MAGIC_AT: usize = 37;
const LEN_AT: usize = 45;
const SEQ_AT: usize = 49;
const NAME_LEN_AT: usize = 57;
/// Fixed part of a version-2 record, before the mission id.
pub(crate) const V2_FIXED: usize = 59;
/// Version byte of snapshot values written today.
pub(crate) const SNAPSHOT_FORMAT_VERSION: u8 = 1;
/// Version byte of `missions` tree values.
pub(crate) const MISSION_ENTRY_VERSION: u8 = 1;

const CRC_AT: usize = 1;
const PREV_AT: usize = 5;
const BODY_AT: usize = 37;

/// A chain hash (BLAKE3, 32 bytes).
pub(crate) type Hash = [u8; 32];
/// The "previous hash" of sequence 1.
pub(crate) const GENESIS: Hash = [0u8; 32];

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Decoding never trusts a length prefix further than this: a damaged
/// prefix claiming terabytes is an error, not an allocation. Records are far
/// smaller (bodies are capped below sled's 128 KiB blob threshold).
const RECORD_DECODE_LIMIT: usize = 1 << 20;
/// Snapshots hold a whole mission state (participants, configs).
const SNAPSHOT_DECODE_LIMIT: usize = 64 << 20;

#[derive(Serialize, Deserialize)]
struct RecordV1<'a> {
    id: [u8; 16],
    timestamp_us: i64,
    #[serde(borrow)]
    sender: Cow<'a, str>,
    #[serde(borrow)]
    body: BodyV1<'a>,
}

// Variant order is part of the format (bincode writes the variant index):
// append new variants at the end, never reorder. `borrow` lets decoding point
// into the record instead of allocating a zeroed buffer per string first;
// the one copy happens in `into_owned`. (Attributes that change the bytes,
// such as skip/flatten/untagged, must never be used here.)
#[derive(Serialize, Deserialize)]
enum BodyV1<'a> {
    MissionCreated {
        #[serde(borrow)]
        mission_id: Cow<'a, str>,
        #[serde(borrow)]
        title: Cow<'a, str>,
        config_json: String,
    },
    ParticipantJoined {
        #[serde(borrow)]
        name: Cow<'a, str>,
        #[serde(borrow)]
        role: Cow<'a, str>,
        #[serde(borrow)]
        metadata_json: Cow<'a, str>,
    },
    RoleChanged {
        #[serde(borrow)]
        name: Cow<'a, str>,
        #[serde(borrow)]
        role: Cow<'a, str>,
    },
    Message {
        #[serde(borrow)]
        topic: Cow<'a, str>,
        #[serde(borrow)]
        payload_json: Cow<'a, str>,
    },
    Checkpoint {
        #[serde(borrow)]
        summary: Cow<'a, str>,
        #[serde(borrow)]
        state_json: Cow<'a, str>,
        artifacts: Vec<Cow<'a, str>>,
    },
    Handoff {
        #[serde(borrow)]
        recipient: Cow<'a, str>,
        checkpoint_id: [u8; 16],
        #[serde(borrow)]
        note: Cow<'a, str>,
    },
    LossAccepted {
        first: u64,
        last: u64,
        ledger_hash: [u8; 32],
    },
    HandoffAccepted {
        handoff_id: [u8; 16],
        lease_ms: u64,
    },
    HandoffHeartbeat {
        handoff_id: [u8; 16],
        lease_ms: u64,
    },
    HandoffCompleted {
        handoff_id: [u8; 16],
        #[serde(borrow)]
        note: Cow<'a, str>,
    },
    HandoffDeclined {
        handoff_id: [u8; 16],
        #[serde(borrow)]
        note: Cow<'a, str>,
    },
    HandoffReleased {
        handoff_id: [u8; 16],
        #[serde(borrow)]
        note: Cow<'a, str>,
    },
    HandoffExpired {
        handoff_id: [u8; 16],
        at_us: i64,
    },
    ParticipantRemoved {
        #[serde(borrow)]
        name: Cow<'a, str>,
    },
    CellStarted {
        #[serde(borrow)]
        profile: Cow<'a, str>,
        #[serde(borrow)]
        mechanism: Cow<'a, str>,
        #[serde(borrow)]
        workspace: Cow<'a, str>,
        command: Vec<Cow<'a, str>>,
    },
    CellExited {
        cell_id: [u8; 16],
        exit_code: Option<i32>,
        signal: Option<i32>,
        duration_ms: u64,
        #[serde(borrow)]
        error: Cow<'a, str>,
    },
    MissionForked {
        #[serde(borrow)]
        mission_id: Cow<'a, str>,
        #[serde(borrow)]
        title: Cow<'a, str>,
        config_json: String,
        #[serde(borrow)]
        parent: Cow<'a, str>,
        parent_sequence: u64,
        parent_hash: [u8; 32],
        parent_checkpoint: [u8; 16],
    },
    HistoryPruned {
        before: u64,
        anchor_hash: [u8; 32],
        state_hash: [u8; 32],
    },
    RetentionSet {
        max_age_s: u64,
        max_count: u64,
    },
}

/// Per-event metadata after the body of a version-3 record.
#[derive(Serialize, Deserialize)]
struct MetaV3<'a> {
    #[serde(borrow)]
    correlation_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    causation_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    attributes: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

/// An encoded event record and its chain hash.
pub(crate) struct EncodedEvent {
    pub(crate) value: Vec<u8>,
    pub(crate) hash: Hash,
}

/// Encode `event` of mission `mission_id` as a version-2 record, chained
/// after `prev`.
pub(crate) fn encode_event(mission_id: &str, event: &Event, prev: &Hash) -> EncodedEvent {
    fn b(s: &str) -> Cow<'_, str> {
        Cow::Borrowed(s)
    }
    let body = match &event.body {
        EventBody::MissionCreated {
            mission_id,
            title,
            config,
        } => BodyV1::MissionCreated {
            mission_id: b(mission_id),
            title: b(title),
            config_json: Json::from_value(&config.to_json()).into_string(),
        },
        EventBody::ParticipantJoined {
            name,
            role,
            metadata,
        } => BodyV1::ParticipantJoined {
            name: b(name),
            role: b(role),
            metadata_json: b(metadata.as_str()),
        },
        EventBody::RoleChanged { name, role } => BodyV1::RoleChanged {
            name: b(name),
            role: b(role),
        },
        EventBody::Message { topic, payload } => BodyV1::Message {
            topic: b(topic),
            payload_json: b(payload.as_str()),
        },
        EventBody::Checkpoint {
            summary,
            state,
            artifacts,
        } => BodyV1::Checkpoint {
            summary: b(summary),
            state_json: b(state.as_str()),
            artifacts: artifacts.iter().map(|a| b(a)).collect(),
        },
        EventBody::Handoff {
            recipient,
            checkpoint_id,
            note,
        } => BodyV1::Handoff {
            recipient: b(recipient),
            checkpoint_id: *checkpoint_id.as_bytes(),
            note: b(note),
        },
        EventBody::LossAccepted {
            first,
            last,
            ledger_hash,
        } => BodyV1::LossAccepted {
            first: *first,
            last: *last,
            ledger_hash: *ledger_hash,
        },
        EventBody::HandoffAccepted {
            handoff_id,
            lease_ms,
        } => BodyV1::HandoffAccepted {
            handoff_id: *handoff_id.as_bytes(),
            lease_ms: *lease_ms,
        },
        EventBody::HandoffHeartbeat {
            handoff_id,
            lease_ms,
        } => BodyV1::HandoffHeartbeat {
            handoff_id: *handoff_id.as_bytes(),
            lease_ms: *lease_ms,
        },
        EventBody::HandoffCompleted { handoff_id, note } => BodyV1::HandoffCompleted {
            handoff_id: *handoff_id.as_bytes(),
            note: b(note),
        },
        EventBody::HandoffDeclined { handoff_id, note } => BodyV1::HandoffDeclined {
            handoff_id: *handoff_id.as_bytes(),
            note: b(note),
        },
        EventBody::HandoffReleased { handoff_id, note } => BodyV1::HandoffReleased {
            handoff_id: *handoff_id.as_bytes(),
            note: b(note),
        },
        EventBody::HandoffExpired { handoff_id, at } => BodyV1::HandoffExpired {
            handoff_id: *handoff_id.as_bytes(),
            at_us: to_micros(*at),
        },
        EventBody::ParticipantRemoved { name } => BodyV1::ParticipantRemoved { name: b(name) },
        EventBody::CellStarted {
            profile,
            mechanism,
            workspace,
            command,
        } => BodyV1::CellStarted {
            profile: b(profile),
            mechanism: b(mechanism),
            workspace: b(workspace),
            command: command.iter().map(|a| b(a)).collect(),
        },
        EventBody::CellExited {
            cell_id,
            exit_code,
            signal,
            duration_ms,
            error,
        } => BodyV1::CellExited {
            cell_id: *cell_id.as_bytes(),
            exit_code: *exit_code,
            signal: *signal,
            duration_ms: *duration_ms,
            error: b(error),
        },
        EventBody::MissionForked {
            mission_id,
            title,
            config,
            parent,
            parent_sequence,
            parent_hash,
            parent_checkpoint,
        } => BodyV1::MissionForked {
            mission_id: b(mission_id),
            title: b(title),
            config_json: Json::from_value(&config.to_json()).into_string(),
            parent: b(parent),
            parent_sequence: *parent_sequence,
            parent_hash: *parent_hash,
            parent_checkpoint: *parent_checkpoint.as_bytes(),
        },
        EventBody::HistoryPruned {
            before,
            anchor_hash,
            state_hash,
        } => BodyV1::HistoryPruned {
            before: *before,
            anchor_hash: *anchor_hash,
            state_hash: *state_hash,
        },
        EventBody::RetentionSet {
            max_age_s,
            max_count,
        } => BodyV1::RetentionSet {
            max_age_s: *max_age_s,
            max_count: *max_count,
        },
    };
    let record = RecordV1 {
        id: *event.id.as_bytes(),
        timestamp_us: to_micros(event.timestamp),
        sender: b(&event.sender),
        body,
    };
    let name = mission_id.as_bytes();
    let name_len = u16::try_from(name.len()).expect("mission ids are at most 128 bytes");
    let mut value = Vec::with_capacity(V2_FIXED + name.len() + 128);
    value.push(if event.meta.is_empty() {
        FORMAT_VERSION
    } else {
        FORMAT_V3
    });
    value.extend_from_slice(&[0u8; 4]);
    value.extend_from_slice(prev);
    value.extend_from_slice(MAGIC);
    value.extend_from_slice(&[0u8; 4]);
    value.extend_from_slice(&event.sequence.to_be_bytes());
    value.extend_from_slice(&name_len.to_be_bytes());
    value.extend_from_slice(name);
    bincode::serde::encode_into_std_write(&record, &mut value, bincode_config())
        .expect("encoding into a Vec cannot fail");
    if !event.meta.is_empty() {
        let meta = MetaV3 {
            correlation_id: event.meta.correlation_id.as_deref().map(b),
            causation_id: event.meta.causation_id.as_deref().map(b),
            attributes: event
                .meta
                .attributes
                .iter()
                .map(|(k, v)| (b(k), b(v)))
                .collect(),
        };
        bincode::serde::encode_into_std_write(&meta, &mut value, bincode_config())
            .expect("encoding into a Vec cannot fail");
    }
    let len = u32::try_from(value.len()).expect("records are far below 4 GiB");
    value[LEN_AT..SEQ_AT].copy_from_slice(&len.to_be_bytes());
    let crc = crc32fast::hash(&value[PREV_AT..]);
    value[CRC_AT..PREV_AT].copy_from_slice(&crc.to_be_bytes());
    let hash = record_hash(&[], &value);
    EncodedEvent { value, hash }
}

/// The frame of a checked version-2 record: what it says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    /// The mission id carried in the record.
    pub(crate) mission_id: &'a str,
    /// The sequence carried in the record.
    pub(crate) sequence: u64,
    /// Offset of the bincode body.
    body_at: usize,
}

/// Parse the frame of a version-2 record whose checksum was checked.
pub(crate) fn frame(value: &[u8]) -> Result<Frame<'_>, String> {
    if value.len() < V2_FIXED {
        return Err(format!(
            "version-2 record is {} bytes, shorter than its {V2_FIXED}-byte header",
            value.len()
        ));
    }
    if &value[MAGIC_AT..LEN_AT] != MAGIC {
        return Err("version-2 record has no magic".into());
    }
    let len = u32::from_be_bytes(value[LEN_AT..SEQ_AT].try_into().expect("4 bytes")) as usize;
    if len != value.len() {
        return Err(format!(
            "record says it is {len} bytes long but is {} bytes",
            value.len()
        ));
    }
    let sequence = u64::from_be_bytes(value[SEQ_AT..NAME_LEN_AT].try_into().expect("8 bytes"));
    let n = u16::from_be_bytes(value[NAME_LEN_AT..V2_FIXED].try_into().expect("2 bytes")) as usize;
    let name = value
        .get(V2_FIXED..V2_FIXED + n)
        .ok_or_else(|| format!("mission id of {n} bytes runs past the record"))?;
    let mission_id =
        std::str::from_utf8(name).map_err(|_| "mission id in the record is not UTF-8")?;
    Ok(Frame {
        mission_id,
        sequence,
        body_at: V2_FIXED + n,
    })
}

/// Total length of the version-2 record whose magic sits at `bytes[MAGIC_AT..]`,
/// read from its length field (unchecked: the caller checks the CRC).
pub(crate) fn framed_len(bytes: &[u8]) -> Option<usize> {
    let len = bytes.get(LEN_AT..SEQ_AT)?;
    Some(u32::from_be_bytes(len.try_into().ok()?) as usize)
}

/// The chain hash of the record `value` stored at `key`. Callers must have
/// checked the value with [`check_record`] (it needs at least the header).
/// A version-2 record carries its mission id and sequence, so its hash
/// ignores the key; a version-1 hash commits to the key.
pub(crate) fn record_hash(key: &[u8], value: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    if value[0] == FORMAT_V1 {
        h.update(key);
    }
    h.update(&value[..CRC_AT]);
    h.update(&value[PREV_AT..]);
    *h.finalize().as_bytes()
}

/// Check the version byte and checksum of a record value.
pub(crate) fn check_record(value: &[u8]) -> Result<(), String> {
    if value.len() < BODY_AT {
        return Err(format!(
            "record is {} bytes, shorter than its {BODY_AT}-byte header",
            value.len()
        ));
    }
    if !matches!(value[0], FORMAT_V1 | FORMAT_VERSION | FORMAT_V3) {
        return Err(format!(
            "unknown record format version {} (this build reads versions 1, 2 and 3)",
            value[0]
        ));
    }
    let stored = u32::from_be_bytes(value[CRC_AT..PREV_AT].try_into().expect("4 bytes"));
    let actual = crc32fast::hash(&value[PREV_AT..]);
    if stored != actual {
        return Err(format!(
            "checksum mismatch (stored {stored:08x}, computed {actual:08x})"
        ));
    }
    Ok(())
}

/// The previous-record hash stored in a checked record value.
pub(crate) fn prev_hash(value: &[u8]) -> Hash {
    value[PREV_AT..BODY_AT].try_into().expect("32 bytes")
}

/// Decode a record value stored under sequence `sequence`. Checks the
/// checksum first, so damaged bytes are reported, never decoded into garbage.
pub(crate) fn decode_event(sequence: u64, value: &[u8]) -> Result<Event, String> {
    check_record(value)?;
    decode_checked(sequence, value)
}

/// [`decode_event`] for a value that already passed [`check_record`].
pub(crate) fn decode_checked(sequence: u64, value: &[u8]) -> Result<Event, String> {
    let body_at = if value[0] == FORMAT_V1 {
        BODY_AT
    } else {
        let f = frame(value)?;
        if f.sequence != sequence {
            return Err(format!(
                "record carries sequence {} but is stored as sequence {sequence}",
                f.sequence
            ));
        }
        f.body_at
    };
    let (record, used): (RecordV1<'_>, usize) = bincode::serde::borrow_decode_from_slice(
        &value[body_at..],
        bincode_config().with_limit::<RECORD_DECODE_LIMIT>(),
    )
    .map_err(|e| format!("record body does not decode: {e}"))?;
    let mut end = body_at + used;
    let mut meta = EventMeta::default();
    if value[0] == FORMAT_V3 {
        let (m, used): (MetaV3<'_>, usize) = bincode::serde::borrow_decode_from_slice(
            &value[end..],
            bincode_config().with_limit::<RECORD_DECODE_LIMIT>(),
        )
        .map_err(|e| format!("record metadata does not decode: {e}"))?;
        end += used;
        meta = EventMeta {
            correlation_id: m.correlation_id.map(Cow::into_owned),
            causation_id: m.causation_id.map(Cow::into_owned),
            attributes: m
                .attributes
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        };
    }
    if end != value.len() {
        return Err(format!(
            "record has {} trailing bytes after its body",
            value.len() - end
        ));
    }
    let json = |text: Cow<'_, str>| Json::from_stored(text.into_owned());
    let body = match record.body {
        BodyV1::MissionCreated {
            mission_id,
            title,
            config_json,
        } => {
            let value: serde_json::Value = serde_json::from_str(&config_json)
                .map_err(|e| format!("config: stored JSON is malformed: {e}"))?;
            let config = MissionConfig::from_json(&value).map_err(|e| format!("config: {e}"))?;
            EventBody::MissionCreated {
                mission_id: mission_id.into_owned(),
                title: title.into_owned(),
                config,
            }
        }
        BodyV1::ParticipantJoined {
            name,
            role,
            metadata_json,
        } => EventBody::ParticipantJoined {
            name: name.into_owned(),
            role: role.into_owned(),
            metadata: json(metadata_json),
        },
        BodyV1::RoleChanged { name, role } => EventBody::RoleChanged {
            name: name.into_owned(),
            role: role.into_owned(),
        },
        BodyV1::Message {
            topic,
            payload_json,
        } => EventBody::Message {
            topic: topic.into_owned(),
            payload: json(payload_json),
        },
        BodyV1::Checkpoint {
            summary,
            state_json,
            artifacts,
        } => EventBody::Checkpoint {
            summary: summary.into_owned(),
            state: json(state_json),
            artifacts: artifacts.into_iter().map(Cow::into_owned).collect(),
        },
        BodyV1::Handoff {
            recipient,
            checkpoint_id,
            note,
        } => EventBody::Handoff {
            recipient: recipient.into_owned(),
            checkpoint_id: Uuid::from_bytes(checkpoint_id),
            note: note.into_owned(),
        },
        BodyV1::LossAccepted {
            first,
            last,
            ledger_hash,
        } => EventBody::LossAccepted {
            first,
            last,
            ledger_hash,
        },
        BodyV1::HandoffAccepted {
            handoff_id,
            lease_ms,
        } => EventBody::HandoffAccepted {
            handoff_id: Uuid::from_bytes(handoff_id),
            lease_ms,
        },
        BodyV1::HandoffHeartbeat {
            handoff_id,
            lease_ms,
        } => EventBody::HandoffHeartbeat {
            handoff_id: Uuid::from_bytes(handoff_id),
            lease_ms,
        },
        BodyV1::HandoffCompleted { handoff_id, note } => EventBody::HandoffCompleted {
            handoff_id: Uuid::from_bytes(handoff_id),
            note: note.into_owned(),
        },
        BodyV1::HandoffDeclined { handoff_id, note } => EventBody::HandoffDeclined {
            handoff_id: Uuid::from_bytes(handoff_id),
            note: note.into_owned(),
        },
        BodyV1::HandoffReleased { handoff_id, note } => EventBody::HandoffReleased {
            handoff_id: Uuid::from_bytes(handoff_id),
            note: note.into_owned(),
        },
        BodyV1::HandoffExpired { handoff_id, at_us } => EventBody::HandoffExpired {
            handoff_id: Uuid::from_bytes(handoff_id),
            at: from_micros(at_us)
                .ok_or_else(|| format!("handoff_expired: time {at_us} us is out of range"))?,
        },
        BodyV1::ParticipantRemoved { name } => EventBody::ParticipantRemoved {
            name: name.into_owned(),
        },
        BodyV1::CellStarted {
            profile,
            mechanism,
            workspace,
            command,
        } => EventBody::CellStarted {
            profile: profile.into_owned(),
            mechanism: mechanism.into_owned(),
            workspace: workspace.into_owned(),
            command: command.into_iter().map(Cow::into_owned).collect(),
        },
        BodyV1::CellExited {
            cell_id,
            exit_code,
            signal,
            duration_ms,
            error,
        } => EventBody::CellExited {
            cell_id: Uuid::from_bytes(cell_id),
            exit_code,
            signal,
            duration_ms,
            error: error.into_owned(),
        },
        BodyV1::MissionForked {
            mission_id,
            title,
            config_json,
            parent,
            parent_sequence,
            parent_hash,
            parent_checkpoint,
        } => {
            let value: serde_json::Value = serde_json::from_str(&config_json)
                .map_err(|e| format!("config: stored JSON is malformed: {e}"))?;
            let config = MissionConfig::from_json(&value).map_err(|e| format!("config: {e}"))?;
            EventBody::MissionForked {
                mission_id: mission_id.into_owned(),
                title: title.into_owned(),
                config,
                parent: parent.into_owned(),
                parent_sequence,
                parent_hash,
                parent_checkpoint: Uuid::from_bytes(parent_checkpoint),
            }
        }
        BodyV1::HistoryPruned {
            before,
            anchor_hash,
            state_hash,
        } => EventBody::HistoryPruned {
            before,
            anchor_hash,
            state_hash,
        },
        BodyV1::RetentionSet {
            max_age_s,
            max_count,
        } => EventBody::RetentionSet {
            max_age_s,
            max_count,
        },
    };
    let timestamp = from_micros(record.timestamp_us)
        .ok_or_else(|| format!("timestamp {} us is out of range", record.timestamp_us))?;
    Ok(Event {
        id: Uuid::from_bytes(record.id),
        sequence,
        timestamp,
        sender: record.sender.into_owned(),
        body,
        meta,
    })
}

/// `missions` tree value: `[version][mission number u64 BE]`.
pub(crate) fn encode_mission_entry(no: MissionNo) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[0] = MISSION_ENTRY_VERSION;
    v[1..].copy_from_slice(&no.to_be_bytes());
    v
}

/// Parse a `missions` tree value.
pub(crate) fn decode_mission_entry(v: &[u8]) -> Result<MissionNo, String> {
    match v {
        [MISSION_ENTRY_VERSION, rest @ ..] if rest.len() == 8 => {
            Ok(u64::from_be_bytes(rest.try_into().expect("8 bytes")))
        }
        _ => Err(format!("missions entry of {} bytes is malformed", v.len())),
    }
}

/// A decoded snapshot: the state as of `sequence`, whose record hash was `hash`.
pub(crate) struct Snapshot {
    pub(crate) sequence: u64,
    pub(crate) hash: Hash,
    pub(crate) state: MissionState,
}

const SNAP_CRC_AT: usize = 1;
const SNAP_BODY_AT: usize = 5;

/// Snapshot value: `[version][crc32 BE of rest][reducer version u32 BE][seq u64 BE][hash 32][bincode state]`.
pub(crate) fn encode_snapshot(sequence: u64, hash: &Hash, state: &MissionState) -> Vec<u8> {
    let mut v = Vec::with_capacity(256);
    v.push(SNAPSHOT_FORMAT_VERSION);
    v.extend_from_slice(&[0u8; 4]);
    v.extend_from_slice(&REDUCER_VERSION.to_be_bytes());
    v.extend_from_slice(&sequence.to_be_bytes());
    v.extend_from_slice(hash);
    bincode::serde::encode_into_std_write(state, &mut v, bincode_config())
        .expect("encoding into a Vec cannot fail");
    let crc = crc32fast::hash(&v[SNAP_BODY_AT..]);
    v[SNAP_CRC_AT..SNAP_BODY_AT].copy_from_slice(&crc.to_be_bytes());
    v
}

/// Decode a snapshot; any mismatch (version, reducer version, checksum,
/// body) is an error and the caller rebuilds from the log instead.
pub(crate) fn decode_snapshot(v: &[u8]) -> Result<Snapshot, String> {
    const FIXED: usize = SNAP_BODY_AT + 4 + 8 + 32;
    if v.len() < FIXED {
        return Err("snapshot shorter than its header".into());
    }
    if v[0] != SNAPSHOT_FORMAT_VERSION {
        return Err(format!("unknown snapshot format version {}", v[0]));
    }
    let stored = u32::from_be_bytes(v[SNAP_CRC_AT..SNAP_BODY_AT].try_into().expect("4"));
    if stored != crc32fast::hash(&v[SNAP_BODY_AT..]) {
        return Err("snapshot checksum mismatch".into());
    }
    let reducer = u32::from_be_bytes(v[5..9].try_into().expect("4"));
    if reducer != REDUCER_VERSION {
        return Err(format!(
            "snapshot built by reducer version {reducer}, this build is {REDUCER_VERSION}"
        ));
    }
    let sequence = u64::from_be_bytes(v[9..17].try_into().expect("8"));
    let hash: Hash = v[17..49].try_into().expect("32");
    let (state, _): (MissionState, usize) = bincode::serde::decode_from_slice(
        &v[FIXED..],
        bincode_config().with_limit::<SNAPSHOT_DECODE_LIMIT>(),
    )
    .map_err(|e| format!("snapshot body does not decode: {e}"))?;
    Ok(Snapshot {
        sequence,
        hash,
        state,
    })
}

#[cfg(test)]
mod tests;
