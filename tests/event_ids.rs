//! Event ids are scoped to their mission: idempotency holds per
//! (mission, event id), no error names another mission, and stores written
//! with the old store-wide index (the format-v1 fixture) are migrated on open
//! and keep their idempotency.

mod util;

use std::path::Path;

use mission_bus::{Action, AppendOptions, ErrorKind, MissionBus, NewMission};
use uuid::Uuid;

fn msg(topic: &str) -> Action {
    Action::Publish {
        topic: topic.into(),
        payload: serde_json::json!({"n": 1}).into(),
    }
}

fn with_id(id: Uuid) -> AppendOptions {
    AppendOptions {
        expected_sequence: None,
        event_id: Some(id),
    }
}

fn two_missions(bus: &MissionBus) {
    for m in ["ma", "mb"] {
        bus.create_mission(NewMission::new(m, "t").lead("lead"))
            .unwrap();
    }
}

#[test]
fn the_same_event_id_lives_independently_in_two_missions() {
    let dir = tempfile::tempdir().unwrap();
    let bus = util::bus_at(dir.path()).unwrap();
    two_missions(&bus);
    let id = Uuid::now_v7();
    let a = bus.append("ma", "lead", msg("a"), &with_id(id)).unwrap();
    // Mission B may use the same id: a different event, not a conflict and
    // not mission A's event handed back.
    let b = bus.append("mb", "lead", msg("b"), &with_id(id)).unwrap();
    assert_eq!((a.id, b.id), (id, id));
    assert_eq!(bus.state("mb").unwrap().head, 3);
    // Retries are idempotent per mission.
    assert_eq!(bus.append("ma", "lead", msg("a"), &with_id(id)).unwrap(), a);
    assert_eq!(bus.append("mb", "lead", msg("b"), &with_id(id)).unwrap(), b);
    // A conflict names only the mission it happened in.
    let err = bus
        .append("mb", "lead", msg("other"), &with_id(id))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let text = err.to_string();
    assert!(text.contains("'mb'") && !text.contains("'ma'"), "{text}");
    for m in ["ma", "mb"] {
        assert!(bus.verify(m).unwrap().is_intact(), "{m}");
    }
    // And it all survives a reopen.
    bus.close();
    drop(bus);
    let bus = util::bus_at(dir.path()).unwrap();
    assert_eq!(bus.append("mb", "lead", msg("b"), &with_id(id)).unwrap(), b);
    assert!(bus.verify("ma").unwrap().is_intact());
}

#[test]
fn importing_a_log_whose_ids_exist_in_another_mission_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let bus = util::bus_at(dir.path()).unwrap();
    two_missions(&bus);
    bus.publish("ma", "lead", "t", serde_json::json!(1).into())
        .unwrap();
    let mut log: Vec<_> = bus
        .events("ma", 1, u64::MAX)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    if let mission_bus::EventBody::MissionCreated { mission_id, .. } = &mut log[0].body {
        *mission_id = "copy".into();
    }
    assert_eq!(bus.import_log(log.clone(), |_| {}).unwrap(), 3);
    assert!(bus.verify("copy").unwrap().is_intact());
    // Same ids, each mission answers with its own event.
    let retry = AppendOptions {
        expected_sequence: None,
        event_id: Some(log[2].id),
    };
    let again = bus.append("copy", "lead", msg_of(&log[2]), &retry).unwrap();
    assert_eq!(again.sequence, 3);
    assert_eq!(bus.state("copy").unwrap().head, 3);
}

fn msg_of(e: &mission_bus::Event) -> Action {
    match &e.body {
        mission_bus::EventBody::Message { topic, payload } => Action::Publish {
            topic: topic.clone(),
            payload: payload.clone(),
        },
        other => panic!("not a message: {other:?}"),
    }
}

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
fn a_store_with_the_old_index_is_migrated_and_keeps_its_idempotency() {
    if util::sled_only("sled's event_ids layout 1 migration") {
        return;
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1/store");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    for round in 0..2 {
        // Twice: the second open finds the layout key and changes nothing.
        let bus = util::bus_at(dir.path()).unwrap();
        for m in ["fixture-1", "fixture-2"] {
            assert!(bus.verify(m).unwrap().is_intact(), "{m}, open {round}");
        }
        let stored: Vec<_> = bus
            .events("fixture-2", 1, u64::MAX)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let message = stored
            .iter()
            .find(|e| matches!(e.body, mission_bus::EventBody::Message { .. }))
            .expect("fixture-2 holds a message");
        let retry = bus
            .append(
                "fixture-2",
                &message.sender,
                msg_of(message),
                &with_id(message.id),
            )
            .unwrap();
        assert_eq!(
            &retry, message,
            "an id stored before the migration still dedupes"
        );
        assert_eq!(
            bus.state("fixture-2").unwrap().head,
            stored.len() as u64,
            "nothing was written"
        );
        bus.close();
    }
}

/// Every test above, again on PostgreSQL (skipped, saying so, without it).
#[test]
fn postgres_half() {
    util::postgres_half();
}
