//! A store written by format version 1 (committed under
//! `tests/fixtures/format-v1/`) must keep opening, verifying and replaying
//! to exactly its JSON Lines export, whatever the code becomes.

use std::path::Path;

use mission_bus::{document, Event, MissionBus};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn format_v1_fixture_still_opens_verifies_and_replays() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture.join("store"), dir.path());
    let expected =
        document::log_from_jsonl(&std::fs::read_to_string(fixture.join("log.jsonl")).unwrap())
            .unwrap();

    let bus = MissionBus::open(dir.path()).unwrap();
    let ids: Vec<String> = bus
        .missions()
        .unwrap()
        .into_iter()
        .map(|m| m.mission_id)
        .collect();
    assert_eq!(ids, ["fixture-1", "fixture-2"]);
    let mut stored: Vec<Event> = Vec::new();
    for m in &ids {
        assert!(bus.verify(m).unwrap().is_intact(), "{m}");
        stored.extend(bus.events(m, 1, u64::MAX).unwrap().map(Result::unwrap));
        assert_eq!(*bus.state(m).unwrap(), bus.rebuild_state(m).unwrap());
    }
    assert_eq!(stored, expected);

    let packet = bus.latest_resume_packet("fixture-1", "bob").unwrap();
    assert_eq!(packet.handoff_note, "your turn");
    assert_eq!(packet.checkpoint.sequence, 7);
    assert_eq!(packet.participants["rita"].role, "audit");
    // And the log keeps growing from where it was.
    let e = bus
        .publish("fixture-2", "solo", "t", serde_json::json!(2).into())
        .unwrap();
    assert_eq!(e.sequence, 4);
    assert!(bus.verify("fixture-2").unwrap().is_intact());
    let head = bus.verify("fixture-2").unwrap().head_hash;
    drop(bus);

    // Opening upgraded the store's format key only; the mission now holds
    // version-1 records followed by a version-2 one, chained across.
    {
        let db = sled::open(dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        assert_eq!(meta.get("format_version").unwrap().unwrap().as_ref(), [3]);
        let entry = db
            .open_tree("missions")
            .unwrap()
            .get("fixture-2")
            .unwrap()
            .unwrap();
        let no: [u8; 8] = entry[1..9].try_into().unwrap();
        let events = db.open_tree("events").unwrap();
        let version = |seq: u64| {
            let mut key = no.to_vec();
            key.extend_from_slice(&seq.to_be_bytes());
            events.get(key).unwrap().unwrap()[0]
        };
        assert_eq!((version(3), version(4)), (1, 2));
    }
    let bus = MissionBus::open(dir.path()).unwrap();
    let report = bus.verify("fixture-2").unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.head_hash, head);
    assert_eq!(bus.events("fixture-2", 1, u64::MAX).unwrap().count(), 4);
}
