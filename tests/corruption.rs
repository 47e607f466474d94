//! Damage on disk: every case has an expected outcome, and none panics.
//!
//! Each test builds a small store through the public API, closes it, opens
//! the data directory with `sled` directly (the tree names and layouts are
//! those of `src/store.rs`, `src/keys.rs` and `src/codec.rs`), damages it,
//! reopens the bus and checks what `verify`, replay and lookups report.
//!
//! Record value layout: `[version u8][crc32 BE of bytes 5..][prev hash 32][bincode body]`;
//! chain hash = BLAKE3(key16 || value[0] || value[5..]); head value =
//! `[seq u64 BE][hash 32]`; index values and event keys = `[mission u64 BE][seq u64 BE]`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use mission_bus::{
    Action, AppendOptions, Error, ErrorKind, Event, EventBody, Json, MissionBus, NewMission,
    Problem, VerifyReport,
};
use serde_json::json;
use uuid::Uuid;

/// The mission every test damages, and one that must stay untouched.
const M: &str = "m";
const OTHER: &str = "other";

/// What the fixture wrote to mission `m` (sequence -> event).
///
/// ```text
/// 1 mission_created   2 lead joins   3 a joins   4 b joins
/// 5 message a {"x":1} 6 message a {"x":1} (same content, other id)
/// 7 checkpoint a      8 message b    9 handoff a->b (checkpoint 7)
/// 10 message a {"last":true}
/// ```
struct Fixture {
    dir: tempfile::TempDir,
    /// Internal number of mission `m`.
    no: u64,
    events: Vec<Event>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut events = Vec::new();
        {
            let bus = MissionBus::open(dir.path()).unwrap();
            events.extend(
                bus.create_mission(NewMission::new(M, "corruption").lead("lead"))
                    .unwrap(),
            );
            events.push(bus.join(M, "a", "write", Json::empty_object()).unwrap());
            events.push(bus.join(M, "b", "write", Json::empty_object()).unwrap());
            for _ in 0..2 {
                events.push(bus.publish(M, "a", "t", json!({"x": 1}).into()).unwrap());
            }
            let cp = bus
                .create_checkpoint(M, "a", "cp", json!({"s": 1}).into(), vec!["f".into()])
                .unwrap();
            events.push(cp.clone());
            events.push(bus.publish(M, "b", "t", json!({"y": 2}).into()).unwrap());
            events.push(bus.handoff(M, "a", "b", cp.id, "go").unwrap());
            events.push(
                bus.publish(M, "a", "t", json!({"last": true}).into())
                    .unwrap(),
            );
            bus.create_mission(NewMission::new(OTHER, "bystander").lead("x"))
                .unwrap();
            bus.publish(OTHER, "x", "t", json!(1).into()).unwrap();
            assert!(bus.verify(M).unwrap().is_intact());
            bus.close();
        }
        assert_eq!(events.len(), 10);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.sequence, i as u64 + 1);
        }
        let db = sled::open(dir.path()).unwrap();
        let v = db.open_tree("missions").unwrap().get(M).unwrap().unwrap();
        assert_eq!(v.len(), 9, "missions value: [version][u64 BE]");
        let no = u64::from_be_bytes(v[1..9].try_into().unwrap());
        drop(db);
        Fixture { dir, no, events }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `event_ids` key (layout 2, docs/format.md): `[mission no][event id]`.
    fn id_key(&self, id: &Uuid) -> Vec<u8> {
        let mut k = self.no.to_be_bytes().to_vec();
        k.extend_from_slice(id.as_bytes());
        k
    }

    fn key(&self, seq: u64) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.no.to_be_bytes());
        k[8..].copy_from_slice(&seq.to_be_bytes());
        k
    }

    fn event(&self, seq: u64) -> &Event {
        &self.events[seq as usize - 1]
    }

    /// Open the closed store with sled, let `f` damage it, flush, close.
    fn tamper(&self, f: impl FnOnce(&Trees)) {
        let db = sled::open(self.path()).unwrap();
        let t = Trees {
            events: db.open_tree("events").unwrap(),
            heads: db.open_tree("heads").unwrap(),
            checkpoints: db.open_tree("checkpoints").unwrap(),
            handoffs: db.open_tree("handoffs").unwrap(),
            event_ids: db.open_tree("event_ids").unwrap(),
            missions: db.open_tree("missions").unwrap(),
        };
        f(&t);
        db.flush().unwrap();
    }

    fn record(&self, t: &Trees, seq: u64) -> Vec<u8> {
        t.events.get(self.key(seq)).unwrap().unwrap().to_vec()
    }

    /// Reopen the bus on the damaged store (must not fail: the damage is
    /// in one mission, and missions load lazily).
    fn reopen(&self) -> MissionBus {
        MissionBus::open(self.path()).expect("reopen a damaged store")
    }
}

struct Trees {
    events: sled::Tree,
    heads: sled::Tree,
    checkpoints: sled::Tree,
    handoffs: sled::Tree,
    event_ids: sled::Tree,
    missions: sled::Tree,
}

/// Recompute a record's CRC after an edit, as a careful forger would.
fn fix_crc(value: &mut [u8]) {
    let crc = crc32fast::hash(&value[5..]);
    value[1..5].copy_from_slice(&crc.to_be_bytes());
}

/// The chain hash of a record value stored at `key` (format version 2:
/// the record carries its mission id and sequence, the key is not hashed;
/// version 1 hashed the key first).
fn chain_hash(key: &[u8; 16], value: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    if value[0] == 1 {
        h.update(key);
    }
    h.update(&value[..1]);
    h.update(&value[5..]);
    *h.finalize().as_bytes()
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in record")
}

/// Replay the whole mission the way an auditor would; the first error,
/// whether from opening the stream (the state is rebuilt from the log) or
/// from the stream itself.
fn replay(bus: &MissionBus, m: &str) -> Result<Vec<Event>, Error> {
    bus.events(m, 1, u64::MAX)?.collect()
}

fn problems(report: &VerifyReport) -> Vec<(Option<u64>, &str)> {
    report
        .problems
        .iter()
        .map(|p| (p.sequence, p.what.as_str()))
        .collect()
}

/// Assert the first problem is at `seq` and its text contains `text`.
#[track_caller]
fn assert_first(report: &VerifyReport, seq: Option<u64>, text: &str) {
    assert_first_inner(report, seq, text)
}

/// The commit ledger's finding comes after the store's own: acknowledged
/// events `first..=last` of M are reported missing.
#[track_caller]
fn assert_ledger_problem(report: &VerifyReport, first: u64, last: u64) {
    let p = report.problems.last().unwrap();
    assert_eq!(p.sequence, Some(first), "{:#?}", problems(report));
    assert!(
        p.what.contains(&format!(
            "acknowledged events {first}..{last} of mission {M} are missing"
        )),
        "{}",
        p.what
    );
}

#[track_caller]
fn assert_first_inner(report: &VerifyReport, seq: Option<u64>, text: &str) {
    assert!(!report.is_intact(), "damage went unnoticed");
    assert_eq!(report.mission_id, M);
    let first: &Problem = report.first_problem().unwrap();
    assert_eq!(
        (first.sequence, first.what.contains(text)),
        (seq, true),
        "first problem should be at {seq:?} containing {text:?}; all: {:#?}",
        problems(report)
    );
}

#[track_caller]
fn assert_corruption_at(result: Result<impl std::fmt::Debug, Error>, seq: Option<u64>, text: &str) {
    match result {
        Err(Error::Corruption {
            mission,
            sequence,
            reason,
        }) => {
            assert_eq!(mission, M);
            assert_eq!(sequence, seq, "{reason}");
            assert!(reason.contains(text), "{reason:?} should contain {text:?}");
        }
        other => panic!("expected corruption at {seq:?} ({text}), got {other:?}"),
    }
}

/// The bystander mission is unaffected by damage to `m`.
#[track_caller]
fn assert_other_intact(bus: &MissionBus) {
    assert!(bus.verify(OTHER).unwrap().is_intact());
    assert_eq!(replay(bus, OTHER).unwrap().len(), 3);
}

// ----- record bytes -----------------------------------------------------------

#[test]
fn flipped_bytes_are_checksum_errors_naming_mission_and_sequence() {
    // (where in the record, the problem text verify and replay give)
    type Case = (&'static str, fn(usize) -> usize, &'static str);
    let cases: [Case; 5] = [
        ("version byte", |_| 0, "unknown record format version"),
        ("crc", |_| 2, "checksum mismatch"),
        ("prev hash", |_| 20, "checksum mismatch"),
        ("body", |len| 40.min(len - 1), "checksum mismatch"),
        ("last byte", |len| len - 1, "checksum mismatch"),
    ];
    for (what, at, text) in cases {
        let f = Fixture::new();
        f.tamper(|t| {
            let mut v = f.record(t, 5);
            let i = at(v.len());
            v[i] ^= 0x5a;
            t.events.insert(f.key(5), v).unwrap();
        });
        let bus = f.reopen();
        let report = bus.verify(M).unwrap();
        assert_first(&report, Some(5), text);
        // One damaged record is one problem (the chain is not re-reported
        // at the next record, whose predecessor cannot be trusted).
        assert_eq!(report.problems.len(), 1, "{what}: {:#?}", report.problems);
        // Replay (and everything that rebuilds the state) refuses to decode
        // it: a corruption error naming the mission and sequence 5.
        assert_corruption_at(replay(&bus, M), Some(5), text);
        assert_corruption_at(bus.state(M), Some(5), text);
        assert_corruption_at(
            bus.replay(M, "a", 1)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>()),
            Some(5),
            text,
        );
        let shown = report.first_problem().unwrap().to_string();
        assert!(shown.starts_with("sequence 5: "), "{shown}");
        assert_other_intact(&bus);
    }
}

#[test]
fn short_and_empty_records_are_reported() {
    for len in [0usize, 1, 20, 36] {
        let f = Fixture::new();
        f.tamper(|t| {
            let v = f.record(t, 5);
            t.events.insert(f.key(5), &v[..len]).unwrap();
        });
        let bus = f.reopen();
        let report = bus.verify(M).unwrap();
        assert_first(&report, Some(5), "shorter than its 37-byte header");
        assert_corruption_at(replay(&bus, M), Some(5), "shorter than its 37-byte header");
    }
}

#[test]
fn rewritten_record_with_valid_crc_breaks_the_chain() {
    let f = Fixture::new();
    f.tamper(|t| {
        let mut v = f.record(t, 5);
        let i = find(&v, br#"{"x":1}"#) + 5;
        v[i] = b'9'; // {"x":9}: still valid JSON and bincode
        fix_crc(&mut v);
        t.events.insert(f.key(5), v).unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    // Record 6 commits to the hash of the original record 5.
    assert_first(&report, Some(6), "hash chain broken");
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    // Replay follows the chain too: the forged record's checksum is valid,
    // but record 6 no longer links to it, so the stream stops there instead
    // of handing a reader forged content as if it were sound.
    assert_corruption_at(replay(&bus, M), Some(6), "hash chain broken");
    // Replaying from the forged record's successor onwards still checks the
    // link into it.
    let from6: Result<Vec<_>, _> = bus.replay(M, "lead", 6).unwrap().collect();
    assert_corruption_at(from6, Some(6), "hash chain broken");
    assert_other_intact(&bus);
}

#[test]
fn rewritten_last_record_with_valid_crc_mismatches_the_head() {
    let f = Fixture::new();
    f.tamper(|t| {
        let mut v = f.record(t, 10);
        let i = find(&v, b"true");
        v[i..i + 4].copy_from_slice(b"null");
        fix_crc(&mut v);
        t.events.insert(f.key(10), v).unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    assert_first(&report, Some(10), "head hash does not match");
    assert_eq!(report.problems.len(), 2, "{:#?}", report.problems);
    assert_ledger_problem(&report, 10, 10);
    // No later record links to it, but the head's hash does: replay catches
    // it too, and a replay that stops short of it sees a clean log.
    assert_corruption_at(replay(&bus, M), Some(10), "hash chain broken");
    let head_less_one: Result<Vec<_>, _> = bus.events(M, 1, 9).unwrap().collect();
    assert_eq!(head_less_one.unwrap().len(), 9);
}

#[test]
fn forged_record_with_valid_crc_and_prev_hash_still_breaks_the_chain() {
    // The forger also points the record at the right predecessor: the
    // record's own hash changes, so the NEXT record's link breaks.
    let f = Fixture::new();
    f.tamper(|t| {
        let mut v = f.record(t, 7);
        let i = find(&v, br#"{"s":1}"#) + 5;
        v[i] = b'2';
        let prev = chain_hash(&f.key(6), &f.record(t, 6));
        v[5..37].copy_from_slice(&prev);
        fix_crc(&mut v);
        t.events.insert(f.key(7), v).unwrap();
    });
    let report = f.reopen().verify(M).unwrap();
    assert_first(&report, Some(8), "hash chain broken");
}

// ----- records deleted, swapped, inserted -----------------------------------

#[test]
fn deleted_middle_record_is_a_gap() {
    let f = Fixture::new();
    f.tamper(|t| {
        t.events.remove(f.key(5)).unwrap().unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    assert_first(
        &report,
        Some(6),
        "sequence 6 follows 4: sequence 5 is missing",
    );
    // Its event-id index entry now points at nothing.
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.sequence == Some(5) && p.what.contains("event_ids index entry")),
        "{:#?}",
        report.problems
    );
    assert_corruption_at(
        replay(&bus, M),
        Some(5),
        "record missing (next record is sequence 6)",
    );
    assert_other_intact(&bus);
}

#[test]
fn deleted_last_record_mismatches_the_head() {
    let f = Fixture::new();
    f.tamper(|t| {
        t.events.remove(f.key(10)).unwrap().unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    assert_first(
        &report,
        Some(10),
        "head is sequence 10 but the log ends at 9",
    );
    assert_eq!(report.head_sequence, 10);
    assert_corruption_at(
        replay(&bus, M),
        Some(10),
        "record missing (log ends before sequence 10)",
    );
    assert_other_intact(&bus);
}

#[test]
fn deleted_first_record_is_reported() {
    let f = Fixture::new();
    f.tamper(|t| {
        t.events.remove(f.key(1)).unwrap().unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    assert_first(&report, Some(2), "sequence 1 is missing");
    assert_corruption_at(replay(&bus, M), Some(1), "record missing");
}

#[test]
fn swapped_records_break_the_chain_and_the_indexes() {
    let f = Fixture::new();
    f.tamper(|t| {
        let (v5, v6) = (f.record(t, 5), f.record(t, 6));
        t.events.insert(f.key(5), v6).unwrap();
        t.events.insert(f.key(6), v5).unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    // Each record carries its sequence (format version 2), so the swap is
    // named first; the chain breaks there too.
    assert_first(&report, Some(5), "carries sequence 6");
    assert!(report
        .problems
        .iter()
        .any(|p| p.sequence == Some(5) && p.what.contains("hash chain broken")));
    // Each record carries its own sequence (format version 2): the one
    // stored at 5 says it is 6.
    assert!(
        report.problems.iter().any(|p| p.sequence == Some(5)
            && p.what == "record carries sequence 6 but is stored as sequence 5"),
        "{:#?}",
        report.problems
    );
    // Both records carry valid checksums, but they say where they belong:
    // replay stops at the first one out of place.
    assert_corruption_at(replay(&bus, M), Some(5), "carries sequence 6");
}

#[test]
fn swapped_non_adjacent_records_of_different_kinds() {
    let f = Fixture::new();
    f.tamper(|t| {
        let (v3, v8) = (f.record(t, 3), f.record(t, 8));
        t.events.insert(f.key(3), v8).unwrap();
        t.events.insert(f.key(8), v3).unwrap();
    });
    let report = f.reopen().verify(M).unwrap();
    assert_first(&report, Some(3), "carries sequence 8");
    assert!(report
        .problems
        .iter()
        .any(|p| p.sequence == Some(8) && p.what.contains("hash chain broken")));
}

#[test]
fn extra_record_past_the_head_is_reported() {
    let f = Fixture::new();
    let extra = Event {
        id: Uuid::now_v7(),
        sequence: 11,
        timestamp: f.event(10).timestamp,
        sender: "a".into(),
        body: EventBody::Message {
            topic: "t".into(),
            payload: json!("forged").into(),
        },
        meta: Default::default(),
    };
    f.tamper(|t| {
        // A well-formed record (valid CRC) chained after record 10.
        let mut v = mission_bus::fuzzing::encode_record(M, &extra);
        let prev = chain_hash(&f.key(10), &f.record(t, 10));
        v[5..37].copy_from_slice(&prev);
        fix_crc(&mut v);
        t.events.insert(f.key(11), v).unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    let p = problems(&report);
    assert!(
        p.contains(&(
            Some(11),
            format!("event_ids index has no entry for {}", extra.id).as_str()
        )),
        "{p:#?}"
    );
    assert!(
        p.contains(&(Some(11), "log holds records past the head (10) up to 11")),
        "{p:#?}"
    );
    // Readers stop at the head: the extra record is never served.
    assert_eq!(replay(&bus, M).unwrap().len(), 10);
}

#[test]
fn record_inserted_in_the_middle_is_reported() {
    // Shift records 6..=10 up by one and put a forged, well-formed record at
    // 6; move the head to 11 too (keeping its hash).
    let f = Fixture::new();
    let forged = Event {
        id: Uuid::now_v7(),
        sequence: 6,
        timestamp: f.event(5).timestamp,
        sender: "a".into(),
        body: EventBody::Message {
            topic: "t".into(),
            payload: json!("inserted").into(),
        },
        meta: Default::default(),
    };
    f.tamper(|t| {
        for seq in (6..=10).rev() {
            let v = f.record(t, seq);
            t.events.insert(f.key(seq + 1), v).unwrap();
        }
        let mut v = mission_bus::fuzzing::encode_record(M, &forged);
        let prev = chain_hash(&f.key(5), &f.record(t, 5));
        v[5..37].copy_from_slice(&prev);
        fix_crc(&mut v);
        t.events.insert(f.key(6), v).unwrap();
        t.event_ids.insert(f.id_key(&forged.id), &f.key(6)).unwrap();
        let head = t.heads.get(f.no.to_be_bytes()).unwrap().unwrap();
        let mut h = head.to_vec();
        h[..8].copy_from_slice(&11u64.to_be_bytes());
        t.heads.insert(f.no.to_be_bytes(), h).unwrap();
    });
    let report = f.reopen().verify(M).unwrap();
    // The forged record links correctly to 5, but the record after it (the
    // old 6, now at key 7) says it is 6, and commits to the old record 5's
    // successor.
    assert_first(&report, Some(7), "carries sequence 6");
    assert!(report
        .problems
        .iter()
        .any(|p| p.sequence == Some(7) && p.what.contains("hash chain broken")));
}

// ----- indexes ------------------------------------------------------------------

#[test]
fn checkpoint_index_pointing_at_the_wrong_record() {
    let f = Fixture::new();
    let cp = f.event(7).id;
    f.tamper(|t| {
        t.checkpoints.insert(cp.as_bytes(), &f.key(5)).unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    assert_first(
        &report,
        Some(7),
        &format!(
            "checkpoints index entry for {cp} points at mission #{} sequence 5",
            f.no
        ),
    );
    assert!(problems(&report).contains(&(
        Some(5),
        format!("checkpoints index entry {cp} points at a record that is not that checkpoint")
            .as_str()
    )));
    // The lookup notices instead of returning the wrong event.
    assert_corruption_at(
        bus.checkpoint(&cp),
        Some(5),
        &format!("index entry for {cp}"),
    );
    // Replay itself does not use the index.
    assert_eq!(replay(&bus, M).unwrap(), f.events);
}

#[test]
fn missing_handoff_index_entry() {
    let f = Fixture::new();
    let h = f.event(9).id;
    f.tamper(|t| {
        t.handoffs.remove(h.as_bytes()).unwrap().unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    assert_first(
        &report,
        Some(9),
        &format!("handoffs index has no entry for {h}"),
    );
    assert_eq!(report.problems.len(), 1);
    assert!(matches!(
        bus.resume_packet(&h),
        Err(Error::HandoffNotFound { .. })
    ));
}

#[test]
fn malformed_event_id_index_entry() {
    let f = Fixture::new();
    let id = f.event(5).id;
    f.tamper(|t| {
        t.event_ids.insert(f.id_key(&id), &[1u8, 2, 3][..]).unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    assert_first(&report, Some(5), "event_ids index entry");
    assert!(report
        .first_problem()
        .unwrap()
        .what
        .contains("malformed bytes"));
    // An idempotent retry of that event needs the entry: integrity error.
    let err = bus
        .append(
            M,
            "a",
            Action::Publish {
                topic: "t".into(),
                payload: json!({"x": 1}).into(),
            },
            &AppendOptions {
                event_id: Some(id),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err:?}");
    assert_eq!(bus.state(M).unwrap().head, 10, "nothing written");
}

/// CORE BUG (reported): `Writer::stored_with_id` (src/bus.rs) trusts the
/// event-id index without checking that the event it points at carries the
/// id. Redirect the entry of event 6 to event 5 (same sender, same content,
/// another id) and a retry of event 6 is answered with event 5.
#[test]
fn retry_through_a_misdirected_event_id_entry_is_an_integrity_error() {
    let f = Fixture::new();
    let id6 = f.event(6).id;
    f.tamper(|t| {
        t.event_ids.insert(f.id_key(&id6), &f.key(5)).unwrap();
    });
    let bus = f.reopen();
    assert_first(
        &bus.verify(M).unwrap(),
        Some(6),
        &format!(
            "event_ids index entry for {id6} points at mission #{} sequence 5",
            f.no
        ),
    );
    let result = bus.append(
        M,
        "a",
        Action::Publish {
            topic: "t".into(),
            payload: json!({"x": 1}).into(),
        },
        &AppendOptions {
            event_id: Some(id6),
            ..Default::default()
        },
    );
    match &result {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Integrity, "{e:?}"),
        Ok(e) => panic!(
            "a retry of {id6} was answered with event {} (sequence {}): the index was trusted",
            e.id, e.sequence
        ),
    }
    assert_eq!(bus.state(M).unwrap().head, 10, "nothing written");
}

// ----- heads and the missions tree ----------------------------------------------

fn head_of(t: &Trees, no: u64) -> Vec<u8> {
    t.heads.get(no.to_be_bytes()).unwrap().unwrap().to_vec()
}

#[test]
fn head_with_a_wrong_hash() {
    let f = Fixture::new();
    f.tamper(|t| {
        let mut h = head_of(t, f.no);
        h[20] ^= 1;
        t.heads.insert(f.no.to_be_bytes(), h).unwrap();
    });
    let report = f.reopen().verify(M).unwrap();
    assert_first(
        &report,
        Some(10),
        "head hash does not match the last record's hash",
    );
    assert_eq!(report.problems.len(), 1);
}

#[test]
fn head_behind_the_log() {
    let f = Fixture::new();
    f.tamper(|t| {
        let mut h = head_of(t, f.no);
        h[..8].copy_from_slice(&9u64.to_be_bytes());
        t.heads.insert(f.no.to_be_bytes(), h).unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    assert_first(
        &report,
        Some(10),
        "log holds records past the head (9) up to 10",
    );
    assert_eq!(report.head_sequence, 9);
}

#[test]
fn head_ahead_of_the_log() {
    let f = Fixture::new();
    f.tamper(|t| {
        let mut h = head_of(t, f.no);
        h[..8].copy_from_slice(&12u64.to_be_bytes());
        t.heads.insert(f.no.to_be_bytes(), h).unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    assert_first(
        &report,
        Some(11),
        "head is sequence 12 but the log ends at 10",
    );
    assert_corruption_at(bus.state(M), Some(11), "record missing");
}

#[test]
fn malformed_head() {
    let f = Fixture::new();
    f.tamper(|t| {
        t.heads.insert(f.no.to_be_bytes(), &[0u8; 5][..]).unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    assert_eq!(problems(&report)[0], (None, "head entry is malformed"));
    assert_ledger_problem(&report, 1, 10);
    assert_corruption_at(bus.state(M), None, "head entry is malformed");
    // Writes refuse too, and write nothing.
    let err = bus.publish(M, "a", "t", json!(1).into()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err:?}");
    assert_other_intact(&bus);
}

/// CORE BUG (reported): a registered mission whose head entry is gone loads
/// as an EMPTY mission (`Store::head` answers `(0, GENESIS)`), so readers
/// see no events and no participants instead of a corruption error.
#[test]
fn missing_head_is_an_integrity_error_not_an_empty_mission() {
    let f = Fixture::new();
    f.tamper(|t| {
        t.heads.remove(f.no.to_be_bytes()).unwrap().unwrap();
    });
    let bus = f.reopen();
    let report = bus.verify(M).unwrap();
    assert_eq!(problems(&report)[0], (None, "head entry is missing"));
    assert_ledger_problem(&report, 1, 10);
    match bus.state(M) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Integrity, "{e:?}"),
        Ok(s) => panic!(
            "mission with 10 records and no head loaded as a state with head {} and {} participants",
            s.head,
            s.participants.len()
        ),
    }
}

#[test]
fn malformed_missions_entry_fails_open_with_a_corruption_error() {
    let f = Fixture::new();
    f.tamper(|t| {
        t.missions.insert(M, &[9u8, 9][..]).unwrap();
    });
    match MissionBus::open(f.path()) {
        Err(Error::Corruption {
            mission, reason, ..
        }) => {
            assert_eq!(mission, M);
            assert!(reason.contains("malformed"), "{reason}");
        }
        Err(other) => panic!("expected corruption, got {other:?}"),
        Ok(_) => panic!("a malformed missions entry went unnoticed"),
    }
}

// ----- the sled data file itself ------------------------------------------------

/// What happened when the bus met a damaged data file.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum FileOutcome {
    /// `MissionBus::open` returned an error (sled refused the file).
    OpenError(ErrorKind),
    /// Opened; every mission still present verifies intact and replays.
    /// Holds the head of f0, f1, f2 (0 when absent).
    IntactPrefix([u64; 3]),
    /// Opened; what survives is intact, and the commit ledger reports the
    /// acknowledged events sled dropped (those missions refuse writes).
    LossReported([u64; 3]),
    /// Opened; some mission reports problems or a read error.
    Damaged,
    /// Something panicked (sled or us): never acceptable.
    Panicked,
}

/// A store with enough data to span a good part of the file.
fn big_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bus = MissionBus::builder(dir.path())
        .flush_every_ms(None)
        .open()
        .unwrap();
    for m in ["f0", "f1", "f2"] {
        bus.create_mission(NewMission::new(m, "file").lead("lead"))
            .unwrap();
        let items: Vec<(String, Action)> = (0..300)
            .map(|n| {
                (
                    "lead".to_string(),
                    Action::Publish {
                        topic: "t".into(),
                        payload: json!({"n": n, "pad": "x".repeat(100)}).into(),
                    },
                )
            })
            .collect();
        bus.append_batch(m, items, None).unwrap();
    }
    bus.close();
    drop(bus);
    dir
}

fn file_outcome(dir: &Path) -> FileOutcome {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let bus = match MissionBus::open(dir) {
            Ok(b) => b,
            Err(e) => return FileOutcome::OpenError(e.kind()),
        };
        let mut intact = true;
        let mut heads = [0u64; 3];
        let lost = bus.missions_with_loss();
        match bus.missions() {
            Err(_) => intact = false,
            Ok(ms) => {
                for s in ms {
                    // Only the ledger's finding, if any: the log is sound.
                    let only_loss = |r: &VerifyReport| {
                        r.problems
                            .iter()
                            .all(|p| p.what.starts_with("acknowledged events"))
                    };
                    let ok = matches!(bus.verify(&s.mission_id), Ok(r) if only_loss(&r))
                        && replay_ok(&bus, &s.mission_id, s.head_sequence);
                    intact &= ok;
                    match s.mission_id.as_str() {
                        "f0" => heads[0] = s.head_sequence,
                        "f1" => heads[1] = s.head_sequence,
                        "f2" => heads[2] = s.head_sequence,
                        _ => intact = false,
                    }
                }
            }
        }
        for (m, first, last) in &lost {
            // Every reported loss is a real range, and writes are refused.
            assert!(first <= last, "{m}: {first}..{last}");
            let err = bus
                .publish(m, "w", "t", serde_json::json!(1).into())
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Integrity, "{m}: {err}");
            assert!(
                err.to_string().contains(&format!("{first}..{last}")),
                "{err}"
            );
        }
        if intact && lost.is_empty() {
            FileOutcome::IntactPrefix(heads)
        } else if intact {
            FileOutcome::LossReported(heads)
        } else {
            FileOutcome::Damaged
        }
    }));
    r.unwrap_or(FileOutcome::Panicked)
}

fn replay_ok(bus: &MissionBus, m: &str, head: u64) -> bool {
    matches!(replay(bus, m), Ok(events) if events.len() as u64 == head)
}

fn data_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("db");
    assert!(p.is_file(), "sled 0.34 keeps its log in <dir>/db");
    p
}

/// The heads (f0, f1, f2) after each of `big_store`'s six commits: a store
/// recovered from a damaged file must be exactly one of these (sled recovers
/// a prefix of whole transactions), or refuse to open.
fn commit_prefixes() -> Vec<[u64; 3]> {
    let mut heads = [0u64; 3];
    let mut out = vec![heads];
    for m in 0..3 {
        heads[m] = 2;
        out.push(heads);
        heads[m] = 302;
        out.push(heads);
    }
    out
}

#[track_caller]
fn assert_prefix_or_refused(what: &str, outcome: FileOutcome) {
    match outcome {
        FileOutcome::OpenError(kind) => {
            assert!(kind == ErrorKind::Integrity, "{what}: {kind:?}")
        }
        // Nothing acknowledged is lost in silence: an intact store holds
        // every commit; anything less is reported by the commit ledger.
        FileOutcome::IntactPrefix(heads) => assert_eq!(heads, [302; 3], "{what}: silent loss"),
        FileOutcome::LossReported(heads) => assert!(
            commit_prefixes().contains(&heads),
            "{what}: recovered heads {heads:?} are not a prefix of the commits"
        ),
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn truncated_data_file_recovers_a_prefix_of_commits() {
    // Cut the tail of sled's log file at several points. sled 0.34 checks
    // every log message with its own CRC and recovers up to the last
    // complete one; what survives must be a prefix of whole commits, every
    // surviving mission intact; nothing may panic.
    for keep in [0.99f64, 0.9, 0.5, 0.1] {
        let dir = big_store();
        let db = data_file(dir.path());
        let len = std::fs::metadata(&db).unwrap().len();
        let new_len = (len as f64 * keep) as u64;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&db)
            .unwrap()
            .set_len(new_len)
            .unwrap();
        let outcome = file_outcome(dir.path());
        eprintln!("truncate to {keep} of {len} bytes: {outcome:?}");
        assert_prefix_or_refused(&format!("truncated to {keep}"), outcome);
    }
}

#[test]
fn garbage_in_the_data_file_recovers_a_prefix_of_commits() {
    // Overwrite a range of the log file with pseudo-random bytes. sled stops
    // its recovery at the first message that fails its CRC, so everything
    // after the garbage is dropped (silently: see the report), but what
    // remains is a consistent prefix and nothing panics.
    for (from, to) in [(0.9f64, 1.0f64), (0.5, 0.6), (0.05, 0.1), (0.0, 0.02)] {
        let dir = big_store();
        let db = data_file(dir.path());
        let mut bytes = std::fs::read(&db).unwrap();
        let (a, b) = (
            (bytes.len() as f64 * from) as usize,
            (bytes.len() as f64 * to) as usize,
        );
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for byte in &mut bytes[a..b] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        std::fs::write(&db, &bytes).unwrap();
        let outcome = file_outcome(dir.path());
        eprintln!(
            "garbage over {from}..{to} of {} bytes: {outcome:?}",
            bytes.len()
        );
        assert_prefix_or_refused(&format!("garbage over {from}..{to}"), outcome);
    }
}

// ----- a forged length prefix (found by the decode_record fuzz target) ------

const ABORT_CHILD: &str = "MISSION_BUS_CORRUPTION_CHILD_DIR";

/// A record with a valid CRC whose body claims a 2 TiB sender string.
fn record_with_huge_length() -> Vec<u8> {
    let mut body = vec![0u8; 16]; // event id (16 x u8)
    body.push(0); // timestamp: varint 0
    body.push(253); // sender length: varint marker for a u64 ...
    body.extend_from_slice(&(1u64 << 41).to_le_bytes()); // ... of 2 TiB
    body.extend_from_slice(b"abc");
    let mut v = vec![1u8, 0, 0, 0, 0];
    v.extend_from_slice(&[0u8; 32]);
    v.extend_from_slice(&body);
    fix_crc(&mut v);
    v
}

/// CORE BUG (reported; found by fuzzing): bincode 2.0.1 with
/// `config::standard()` (no limit) allocates `vec![0u8; len]` for a string
/// BEFORE reading it, with `len` taken from the record. A record with a
/// valid CRC (a forger recomputes it, or a 1-in-2^32 corruption) claiming a
/// huge string makes `decode_event` abort the whole process ("memory
/// allocation failed"): `verify`, replay and open all die instead of
/// reporting corruption. Runs in a child process so that an abort fails
/// this test only.
#[test]
fn huge_length_prefix_is_corruption_not_an_abort() {
    if let Ok(dir) = std::env::var(ABORT_CHILD) {
        let bus = MissionBus::open(&dir).unwrap();
        let report = bus.verify(M).unwrap();
        assert_first(&report, Some(5), "does not decode");
        assert_corruption_at(replay(&bus, M), Some(5), "does not decode");
        println!("\nCHILD-OK");
        return;
    }
    let f = Fixture::new();
    f.tamper(|t| {
        t.events
            .insert(f.key(5), record_with_huge_length())
            .unwrap();
    });
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "huge_length_prefix_is_corruption_not_an_abort",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ABORT_CHILD, f.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("CHILD-OK"),
        "decoding a record that claims a 2 TiB string did not report corruption: {}\n\
         stderr: {}",
        out.status,
        stderr.lines().take(5).collect::<Vec<_>>().join("\n")
    );
}
