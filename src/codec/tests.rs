//! Record and snapshot codec tests: round trips, and every flipped byte
//! detected.

use super::*;
use crate::keys::event_key;

fn message(seq: u64) -> Event {
    Event {
        id: Uuid::now_v7(),
        sequence: seq,
        timestamp: crate::event::now_micros(),
        sender: "alice".into(),
        body: EventBody::Message {
            topic: "t".into(),
            payload: Json::from_value(&serde_json::json!({"k": [1, 2, 3]})),
        },
        meta: Default::default(),
    }
}

#[test]
fn event_round_trips() {
    let e = message(3);
    let key = event_key(1, 3);
    let enc = encode_event("m-1", &e, &GENESIS);
    assert_eq!(decode_event(3, &enc.value).unwrap(), e);
    assert_eq!(record_hash(&key, &enc.value), enc.hash);
    let f = frame(&enc.value).unwrap();
    assert_eq!((f.mission_id, f.sequence), ("m-1", 3));
    assert_eq!(&enc.value[MAGIC_AT..MAGIC_AT + 8], MAGIC);
    assert_eq!(framed_len(&enc.value), Some(enc.value.len()));
    // Stored under another sequence, it is refused.
    assert!(decode_event(4, &enc.value)
        .unwrap_err()
        .contains("carries sequence 3"));
}

#[test]
fn metadata_makes_a_version_3_record_that_round_trips() {
    let mut e = message(2);
    assert_eq!(encode_event("m-1", &e, &GENESIS).value[0], FORMAT_VERSION);
    e.meta = EventMeta::default()
        .correlation("c")
        .causation("d")
        .attribute("k", "v");
    let enc = encode_event("m-1", &e, &GENESIS);
    assert_eq!(enc.value[0], FORMAT_V3);
    assert_eq!(decode_event(2, &enc.value).unwrap(), e);
    assert_eq!(record_hash(&[], &enc.value), enc.hash);
    for i in 0..enc.value.len() {
        let mut bad = enc.value.clone();
        bad[i] ^= 0x40;
        assert!(decode_event(2, &bad).is_err(), "flip at byte {i}");
    }
}

#[test]
fn every_flipped_byte_is_detected() {
    let e = message(1);
    let enc = encode_event("m-1", &e, &GENESIS);
    for i in 0..enc.value.len() {
        let mut bad = enc.value.clone();
        bad[i] ^= 0x40;
        assert!(
            decode_event(1, &bad).is_err(),
            "flip at byte {i} went unnoticed"
        );
    }
}

#[test]
fn v2_hash_commits_to_mission_id_and_sequence_not_the_key() {
    let e = message(1);
    let enc = encode_event("m-1", &e, &GENESIS);
    // Same hash under any key: a copy into a store that numbers
    // missions differently keeps its head hash.
    assert_eq!(record_hash(&event_key(9, 1), &enc.value), enc.hash);
    assert_ne!(encode_event("m-2", &e, &GENESIS).hash, enc.hash);
    let mut e2 = e.clone();
    e2.sequence = 2;
    assert_ne!(encode_event("m-1", &e2, &GENESIS).hash, enc.hash);
}

#[test]
fn v1_hash_commits_to_the_key() {
    let mut v = encode_event("m-1", &message(1), &GENESIS).value;
    v[0] = FORMAT_V1; // only the hash's key dependence is under test
    assert_ne!(
        record_hash(&event_key(1, 2), &v),
        record_hash(&event_key(1, 1), &v)
    );
    assert_ne!(
        record_hash(&event_key(2, 1), &v),
        record_hash(&event_key(1, 1), &v)
    );
}
