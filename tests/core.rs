//! The library core, at the level agents use it: roles, streams, handoffs,
//! resume packets, config, JSON documents, mission isolation.

mod util;

use mission_bus::{
    document, Action, AppendOptions, Capability, Error, ErrorKind, Event, EventBody, EventType,
    Json, MissionBus, MissionConfig, NewMission,
};
use serde_json::json;
use tempfile::TempDir;
use uuid::Uuid;

fn open() -> (TempDir, MissionBus) {
    let dir = tempfile::tempdir().unwrap();
    let bus = util::bus_at(dir.path()).unwrap();
    (dir, bus)
}

/// The prototype's cast: a lead, two writers, a reader and an auditor.
fn mission(bus: &MissionBus, id: &str) {
    bus.create_mission(NewMission::new(id, "Port the parser").lead("lead"))
        .unwrap();
    for (name, role) in [
        ("ada", "write"),
        ("bob", "write"),
        ("rita", "read"),
        ("audrey", "audit"),
    ] {
        bus.join(id, name, role, json!({"model": name}).into())
            .unwrap();
    }
}

/// Everything observable about a mission, to prove an error changed nothing.
fn fingerprint(bus: &MissionBus, id: &str) -> (u64, Vec<Event>) {
    let state = bus.state(id).unwrap();
    let events = bus
        .events(id, 1, u64::MAX)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (state.head, events)
}

#[test]
fn role_gates_deny_and_write_nothing() {
    let (_d, bus) = open();
    mission(&bus, "m");
    let before = fingerprint(&bus, "m");

    let e = bus.publish("m", "rita", "t", json!(1).into()).unwrap_err();
    assert!(
        matches!(&e, Error::PermissionDenied { sender, capability, role, .. }
        if sender == "rita" && capability == "publish" && role == "read"),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);

    let e = bus
        .create_checkpoint("m", "audrey", "s", json!({}).into(), vec![])
        .unwrap_err();
    assert!(
        matches!(&e, Error::PermissionDenied { capability, .. } if capability == "checkpoint"),
        "{e}"
    );

    let e = bus
        .publish("m", "mallory", "t", json!(1).into())
        .unwrap_err();
    assert!(
        matches!(&e, Error::NotAParticipant { sender, .. } if sender == "mallory"),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);

    // A reader may not hand off; a writer may not register participants.
    let cp = bus
        .create_checkpoint("m", "ada", "s", json!({}).into(), vec![])
        .unwrap();
    let before_handoff = fingerprint(&bus, "m");
    let e = bus.handoff("m", "rita", "ada", cp.id, "").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    let e = bus
        .append(
            "m",
            "ada",
            Action::Join {
                name: "zed".into(),
                role: "write".into(),
                metadata: Json::empty_object(),
            },
            &AppendOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(fingerprint(&bus, "m"), before_handoff);

    // Replay needs `read`: the reader may, a stranger may not.
    assert!(bus.replay("m", "rita", 1).is_ok());
    assert!(matches!(
        bus.replay("m", "mallory", 1),
        Err(Error::NotAParticipant { .. })
    ));

    assert!(bus.allowed("m", "ada", Capability::Publish).unwrap());
    assert!(!bus.allowed("m", "rita", Capability::Publish).unwrap());
    assert!(bus.allowed("m", "audrey", Capability::Audit).unwrap());
    assert!(!bus.allowed("m", "nobody", Capability::Read).unwrap());
    drop(before);
}

#[test]
fn message_checkpoint_handoff_stream_has_contiguous_sequences() {
    let (_d, bus) = open();
    mission(&bus, "m");
    let head = bus.state("m").unwrap().head;
    assert_eq!(head, 6, "created + lead + 4 joins");

    let m = bus
        .publish("m", "ada", "plan", json!({"step": 1}).into())
        .unwrap();
    let c = bus
        .create_checkpoint(
            "m",
            "ada",
            "lexer done",
            json!({"next": "parser"}).into(),
            vec!["lexer.rs".into()],
        )
        .unwrap();
    let h = bus.handoff("m", "ada", "bob", c.id, "your turn").unwrap();
    assert_eq!((m.sequence, c.sequence, h.sequence), (7, 8, 9));
    assert_eq!(m.id.get_version_num(), 7, "event ids are UUID v7");
    assert!(m.id < c.id && c.id < h.id, "v7 ids sort by creation");
    assert!(m.timestamp <= c.timestamp && c.timestamp <= h.timestamp);

    let all: Vec<Event> = bus
        .events("m", 1, u64::MAX)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let seqs: Vec<u64> = all.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    assert_eq!(all[6], m);
    assert_eq!(all[7], c);
    assert_eq!(all[8], h);
    assert_eq!(all[0].event_type(), EventType::MissionCreated);

    // Replay from any sequence, as a participant with `read`.
    let tail: Vec<u64> = bus
        .replay("m", "rita", 8)
        .unwrap()
        .map(|e| e.unwrap().sequence)
        .collect();
    assert_eq!(tail, vec![8, 9]);
    assert_eq!(bus.replay("m", "rita", 10).unwrap().count(), 0);

    let state = bus.state("m").unwrap();
    assert_eq!(
        (state.messages, state.checkpoints, state.handoffs),
        (1, 1, 1)
    );
    assert_eq!(state.stream_length(), 3);
    assert_eq!(bus.rebuild_state("m").unwrap(), *state);
}

#[test]
fn resume_packet_carries_checkpoint_participants_and_profiles() {
    let (_d, bus) = open();
    mission(&bus, "m");
    bus.publish("m", "ada", "plan", json!("go").into()).unwrap();
    let cp = bus
        .create_checkpoint(
            "m",
            "ada",
            "lexer done",
            json!({"cursor": 42, "todo": ["parser"]}).into(),
            vec!["src/lexer.rs".into(), "notes.md".into()],
        )
        .unwrap();
    let h = bus
        .handoff("m", "ada", "bob", cp.id, "pick up the parser")
        .unwrap();

    let p = bus.resume_packet(&h.id).unwrap();
    assert_eq!(p.mission_id, "m");
    assert_eq!(p.title, "Port the parser");
    assert_eq!(p.recipient, "bob");
    assert_eq!(p.sender, "ada");
    assert_eq!(p.handoff_note, "pick up the parser");
    assert_eq!(p.checkpoint, cp);
    assert_eq!(p.stream_length, 3);
    assert_eq!(p.participants["audrey"].role, "audit");
    assert_eq!(p.participants["rita"].role, "read");
    assert_eq!(
        p.participants["ada"].metadata.value(),
        json!({"model": "ada"})
    );
    let mechanisms: Vec<_> = p
        .isolation_profiles
        .iter()
        .map(|x| (x.level, x.mechanism.as_str()))
        .collect();
    assert!(mechanisms.contains(&(2, "mount_namespace")));
    assert!(mechanisms.contains(&(3, "rootless_podman")));

    let v = document::resume_packet_to_json(&p);
    for key in [
        "mission_id",
        "title",
        "recipient",
        "sender",
        "handoff_note",
        "checkpoint",
        "participants",
        "isolation_profiles",
        "stream_length",
    ] {
        assert!(v.get(key).is_some(), "resume packet JSON lacks {key}");
    }
    assert_eq!(
        v["checkpoint"]["state"],
        json!({"cursor": 42, "todo": ["parser"]})
    );
    assert_eq!(
        v["checkpoint"]["artifacts"],
        json!(["src/lexer.rs", "notes.md"])
    );
    assert_eq!(v["checkpoint"]["checkpoint_id"], json!(cp.id.to_string()));
    assert_eq!(
        v["participants"]["bob"],
        json!({"name": "bob", "role": "write", "metadata": {"model": "bob"}})
    );

    // The latest handoff addressed to bob, without knowing its id.
    let cp2 = bus
        .create_checkpoint("m", "ada", "more", json!(2).into(), vec![])
        .unwrap();
    let h2 = bus.handoff("m", "ada", "bob", cp2.id, "again").unwrap();
    let latest = bus.latest_resume_packet("m", "bob").unwrap();
    assert_eq!(latest.handoff.as_ref().map(|h| h.id), Some(h2.id));
    assert_eq!(latest.checkpoint.id, cp2.id);
    assert!(matches!(
        bus.latest_resume_packet("m", "rita"),
        Err(Error::HandoffNotFound { .. })
    ));
    assert!(matches!(
        bus.resume_packet(&Uuid::now_v7()),
        Err(Error::HandoffNotFound { .. })
    ));
    // A checkpoint id is not a handoff id.
    assert!(matches!(
        bus.resume_packet(&cp.id),
        Err(Error::HandoffNotFound { .. })
    ));
}

#[test]
fn handoff_to_unknown_recipient_or_checkpoint_is_not_found_and_writes_nothing() {
    let (_d, bus) = open();
    mission(&bus, "m");
    mission(&bus, "other");
    let cp = bus
        .create_checkpoint("m", "ada", "s", json!({}).into(), vec![])
        .unwrap();
    let foreign = bus
        .create_checkpoint("other", "ada", "s", json!({}).into(), vec![])
        .unwrap();
    let msg = bus.publish("m", "ada", "t", json!(0).into()).unwrap();
    let before = fingerprint(&bus, "m");

    let e = bus.handoff("m", "ada", "ghost", cp.id, "").unwrap_err();
    assert!(
        matches!(&e, Error::ParticipantNotFound { name, .. } if name == "ghost"),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::NotFound);

    for bad in [Uuid::now_v7(), foreign.id, msg.id] {
        let e = bus.handoff("m", "ada", "bob", bad, "").unwrap_err();
        assert!(
            matches!(&e, Error::CheckpointNotFound { checkpoint_id, .. } if *checkpoint_id == bad),
            "{e}"
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
    assert_eq!(fingerprint(&bus, "m"), before);

    let e = bus
        .publish("nope", "ada", "t", json!(0).into())
        .unwrap_err();
    assert!(matches!(&e, Error::MissionNotFound { mission } if mission == "nope"));
}

#[test]
fn missions_are_fully_separated() {
    let (_d, bus) = open();
    mission(&bus, "a");
    bus.create_mission(NewMission::new("b", "Other").lead("boss"))
        .unwrap();
    bus.join("b", "ada", "read", Json::empty_object()).unwrap();

    let cp_a = bus
        .create_checkpoint("a", "ada", "s", json!({"a": 1}).into(), vec![])
        .unwrap();
    // ada is a writer in a but only a reader in b.
    assert_eq!(
        bus.publish("b", "ada", "t", json!(0).into())
            .unwrap_err()
            .kind(),
        ErrorKind::PermissionDenied
    );
    // bob exists only in a.
    assert!(matches!(
        bus.publish("b", "bob", "t", json!(0).into()),
        Err(Error::NotAParticipant { .. })
    ));
    // a's checkpoint cannot be handed off in b.
    bus.join("b", "cy", "write", Json::empty_object()).unwrap();
    assert!(matches!(
        bus.handoff("b", "boss", "cy", cp_a.id, ""),
        Err(Error::CheckpointNotFound { .. })
    ));

    let b_events: Vec<Event> = bus
        .events("b", 1, u64::MAX)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(b_events.len(), 4);
    assert!(b_events.iter().all(|e| e.id != cp_a.id));
    assert_eq!(bus.state("b").unwrap().participants.len(), 3);
    // Both sequences start at 1.
    assert_eq!(b_events[0].sequence, 1);
    let (mission_of_cp, _) = bus.checkpoint(&cp_a.id).unwrap();
    assert_eq!(mission_of_cp, "a");

    let list = bus.missions().unwrap();
    let ids: Vec<_> = list
        .iter()
        .map(|m| (m.mission_id.as_str(), m.head_sequence))
        .collect();
    assert_eq!(ids, vec![("a", 7), ("b", 4)]);
    assert!(bus.verify("a").unwrap().is_intact());
    assert!(bus.verify("b").unwrap().is_intact());
}

#[test]
fn creating_an_existing_mission_or_participant_is_a_conflict() {
    let (_d, bus) = open();
    mission(&bus, "m");
    let before = fingerprint(&bus, "m");
    let e = bus
        .create_mission(NewMission::new("m", "again").lead("x"))
        .unwrap_err();
    assert!(matches!(e, Error::MissionExists { .. }));
    let e = bus
        .join("m", "ada", "read", Json::empty_object())
        .unwrap_err();
    assert!(matches!(e, Error::ParticipantExists { .. }));
    let e = bus
        .join("m", "zed", "wizard", Json::empty_object())
        .unwrap_err();
    assert!(
        matches!(&e, Error::UnknownRole { role, .. } if role == "wizard"),
        "{e}"
    );
    assert_eq!(fingerprint(&bus, "m"), before);
}

#[test]
fn role_changes_are_events_and_take_effect() {
    let (_d, bus) = open();
    mission(&bus, "m");
    assert!(bus.publish("m", "rita", "t", json!(0).into()).is_err());
    let ev = bus
        .append(
            "m",
            "lead",
            Action::ChangeRole {
                name: "rita".into(),
                role: "write".into(),
            },
            &AppendOptions::default(),
        )
        .unwrap();
    assert_eq!(ev.event_type(), EventType::RoleChanged);
    bus.publish("m", "rita", "t", json!(0).into()).unwrap();
    assert_eq!(bus.rebuild_state("m").unwrap(), *bus.state("m").unwrap());
}

#[test]
fn batch_append_is_all_or_nothing() {
    let (_d, bus) = open();
    mission(&bus, "m");
    let before = fingerprint(&bus, "m");
    let bad = vec![
        (
            "ada".to_string(),
            Action::Publish {
                topic: "t".into(),
                payload: json!(1).into(),
            },
        ),
        (
            "ada".to_string(),
            Action::Publish {
                topic: "t".into(),
                payload: json!(2).into(),
            },
        ),
        (
            "rita".to_string(),
            Action::Publish {
                topic: "t".into(),
                payload: json!(3).into(),
            },
        ),
    ];
    assert_eq!(
        bus.append_batch("m", bad, None).unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(fingerprint(&bus, "m"), before);

    // A batch may hand off a checkpoint it creates itself.
    let cp = Uuid::now_v7();
    let ok = vec![
        (
            "ada".to_string(),
            Action::Publish {
                topic: "t".into(),
                payload: json!(1).into(),
            },
        ),
        (
            "ada".to_string(),
            Action::Checkpoint {
                summary: "s".into(),
                state: json!({}).into(),
                artifacts: vec![],
            },
        ),
    ];
    let events = bus.append_batch("m", ok, Some(6)).unwrap();
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![7, 8]
    );
    let handoff = vec![(
        "ada".to_string(),
        Action::Handoff {
            recipient: "bob".into(),
            checkpoint_id: events[1].id,
            note: "n".into(),
        },
    )];
    assert_eq!(bus.append_batch("m", handoff, None).unwrap()[0].sequence, 9);
    // Stale expectation: conflict, nothing written.
    let stale = vec![(
        "ada".to_string(),
        Action::Publish {
            topic: "t".into(),
            payload: json!(1).into(),
        },
    )];
    let e = bus.append_batch("m", stale, Some(6)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::SequenceConflict {
                expected: 6,
                head: 9,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(bus.state("m").unwrap().head, 9);
    let _ = cp;
}

#[test]
fn profiles_config_defaults_file_and_errors() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(mission_bus::profiles::DEFAULT_CONFIG_PATH);
    let from_file = MissionConfig::load(&shipped).unwrap();
    assert_eq!(
        from_file,
        MissionConfig::default(),
        "the shipped file states the defaults"
    );
    let p2 = from_file
        .isolation_profiles
        .iter()
        .find(|p| p.level == 2)
        .unwrap();
    assert_eq!(
        (p2.name.as_str(), p2.mechanism.as_str()),
        ("level2-mount-namespace", "mount_namespace")
    );
    let p3 = from_file
        .isolation_profiles
        .iter()
        .find(|p| p.level == 3)
        .unwrap();
    assert_eq!(
        (p3.name.as_str(), p3.mechanism.as_str()),
        ("level3-rootless-podman", "rootless_podman")
    );
    assert!(from_file
        .isolation_profiles
        .iter()
        .all(|p| p.supports_resume));

    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        MissionConfig::load(&dir.path().join("absent.json")).unwrap(),
        MissionConfig::default()
    );
    // A missing key means its defaults; defaults for profile fields apply.
    let only_roles =
        MissionConfig::from_json_str(r#"{"roles": {"boss": ["publish"]}}"#, None).unwrap();
    assert_eq!(
        only_roles.isolation_profiles,
        MissionConfig::default().isolation_profiles
    );
    assert!(only_roles.role_allows("boss", Capability::Publish));
    assert!(!only_roles.has_role("lead"));
    let profile = MissionConfig::from_json_str(
        r#"{"isolation_profiles": [{"name": "n", "label": "L", "level": 4, "mechanism": "vm"}]}"#,
        None,
    )
    .unwrap();
    assert_eq!(profile.isolation_profiles[0].description, "");
    assert!(profile.isolation_profiles[0].supports_resume);
    assert_eq!(profile.roles, MissionConfig::default().roles);

    let file = dir.path().join("bad.json");
    for (text, needle) in [
        (
            r#"{"roles": {"lead": ["publish", "fly"]}}"#,
            "unknown capability 'fly'",
        ),
        (r#"{"roles": {"lead": ["publish", "fly"]}}"#, "role 'lead'"),
        (
            r#"{"isolation_profiles": [{"label": "x", "level": 1, "mechanism": "m"}]}"#,
            "missing 'name'",
        ),
        (
            r#"{"isolation_profiles": [{"name": "p", "level": 1, "mechanism": "m"}]}"#,
            "('p'): missing 'label'",
        ),
        (
            r#"{"isolation_profiles": [{"name": "p", "label": "l", "level": "high", "mechanism": "m"}]}"#,
            "'level' must be an integer",
        ),
        (r#"{"roles": "#, "not valid JSON"),
        (r#"[1, 2]"#, "expected a JSON object"),
        (r#"{"rolez": {}}"#, "unknown key 'rolez'"),
    ] {
        std::fs::write(&file, text).unwrap();
        let e = MissionConfig::load(&file).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(needle), "{text}: '{msg}' lacks '{needle}'");
        assert!(msg.contains("bad.json"), "error names the file: {msg}");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    // A mission with a custom config enforces it.
    let bus = util::bus_at(dir.path().join("store")).unwrap();
    let cfg = MissionConfig::from_json_str(
        r#"{"roles": {"lead": ["publish"], "scribe": ["publish", "read"]}}"#,
        None,
    )
    .unwrap();
    bus.create_mission(NewMission::new("m", "t").config(cfg).lead("l"))
        .unwrap();
    bus.join("m", "s", "scribe", Json::empty_object()).unwrap();
    bus.publish("m", "s", "t", json!(0).into()).unwrap();
    assert!(matches!(
        bus.join("m", "w", "write", Json::empty_object()),
        Err(Error::UnknownRole { .. })
    ));
    assert!(matches!(
        bus.create_checkpoint("m", "s", "x", json!(0).into(), vec![]),
        Err(Error::PermissionDenied { .. })
    ));
}

#[test]
fn seed_document_round_trips_and_keeps_ids_timestamps_payloads() {
    let (_d, bus) = open();
    mission(&bus, "m");
    bus.publish(
        "m",
        "ada",
        "plan",
        json!({"deep": {"list": [1, "two", null]}}).into(),
    )
    .unwrap();
    let cp = bus
        .create_checkpoint(
            "m",
            "ada",
            "s",
            json!({"k": "v"}).into(),
            vec!["a.txt".into()],
        )
        .unwrap();
    let h = bus.handoff("m", "ada", "bob", cp.id, "note").unwrap();

    let state = bus.state("m").unwrap();
    let doc = document::seed_document(&state, bus.events("m", 1, u64::MAX).unwrap()).unwrap();
    for key in ["mission_id", "title", "config", "participants", "events"] {
        assert!(doc.get(key).is_some(), "seed lacks {key}");
    }
    let events = doc["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "only message/checkpoint/handoff events");
    assert_eq!(events[0]["event_type"], "message");
    assert_eq!(events[1]["checkpoint_id"], json!(cp.id.to_string()));
    assert_eq!(events[2]["handoff_id"], json!(h.id.to_string()));
    assert_eq!(events[2]["recipient"], "bob");

    // Through text, into a fresh store: same packet, same ids, timestamps, payloads.
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let (_d2, fresh) = open();
    let log = document::log_from_seed(&serde_json::from_str(&text).unwrap()).unwrap();
    fresh.import_log(log, |_| {}).unwrap();
    let p1 = document::resume_packet_to_json(&bus.resume_packet(&h.id).unwrap());
    let p2 = document::resume_packet_to_json(&fresh.resume_packet(&h.id).unwrap());
    let strip = |mut v: serde_json::Value| {
        // Sequences and the head differ: imports synthesize membership events.
        v["checkpoint"].as_object_mut().unwrap().remove("sequence");
        v.as_object_mut().unwrap().remove("head_sequence");
        v
    };
    assert_eq!(strip(p1), strip(p2));
    let again = document::seed_document(
        &fresh.state("m").unwrap(),
        fresh.events("m", 1, u64::MAX).unwrap(),
    )
    .unwrap();
    let strip_seq = |d: &serde_json::Value| -> Vec<serde_json::Value> {
        d["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.as_object_mut().unwrap().remove("sequence");
                e
            })
            .collect()
    };
    assert_eq!(strip_seq(&doc), strip_seq(&again));
    assert_eq!(doc["participants"], again["participants"]);
    assert_eq!(doc["config"], again["config"]);
    assert!(fresh.verify("m").unwrap().is_intact());
}

#[test]
fn prototype_seed_document_imports_and_resumes() {
    // As the Python prototype writes it: naive and offset timestamps, hex ids.
    let doc = json!({
        "mission_id": "mission-883",
        "title": "Prototype mission",
        "config": {"isolation_profiles": [
            {"name": "level2-mount-namespace", "label": "Mount ns", "level": 2, "mechanism": "mount_namespace"},
            {"name": "level3-rootless-podman", "label": "Podman", "level": 3, "mechanism": "rootless_podman", "supports_resume": false}
        ]},
        "participants": {
            "planner": {"name": "planner", "role": "lead", "metadata": {"model": "a"}},
            "coder": {"name": "coder", "role": "write", "metadata": {}},
            "auditor": {"name": "auditor", "role": "audit", "metadata": {}}
        },
        "events": [
            {"event_type": "message", "message_id": "0192a0b0c0d07e8f9a0b1c2d3e4f5061", "sender": "planner",
             "sequence": 1, "timestamp": "2025-03-01T10:00:00.123456", "topic": "plan", "payload": {"goal": "ship"}},
            {"event_type": "checkpoint", "checkpoint_id": "0192a0b0-c0d0-7e8f-9a0b-1c2d3e4f5062", "sender": "coder",
             "sequence": 2, "timestamp": "2025-03-01T10:05:00+00:00", "summary": "half way",
             "state": {"files": ["a.rs"]}, "artifacts": ["a.rs"]},
            {"event_type": "handoff", "handoff_id": "0192a0b0-c0d0-7e8f-9a0b-1c2d3e4f5063", "sender": "coder",
             "sequence": 3, "timestamp": "2025-03-01T12:10:00+02:00", "recipient": "planner",
             "checkpoint_id": "0192a0b0-c0d0-7e8f-9a0b-1c2d3e4f5062", "note": "review please"}
        ]
    });
    let (_d, bus) = open();
    bus.import_log(document::log_from_seed(&doc).unwrap(), |_| {})
        .unwrap();
    let p = bus.latest_resume_packet("mission-883", "planner").unwrap();
    assert_eq!(p.sender, "coder");
    assert_eq!(p.handoff_note, "review please");
    assert_eq!(p.stream_length, 3);
    assert_eq!(p.isolation_profiles.len(), 2);
    assert!(!p.isolation_profiles[1].supports_resume);
    let cp = document::event_to_json(&p.checkpoint);
    assert_eq!(cp["checkpoint_id"], "0192a0b0-c0d0-7e8f-9a0b-1c2d3e4f5062");
    assert_eq!(cp["state"], json!({"files": ["a.rs"]}));
    assert_eq!(cp["timestamp"], "2025-03-01T10:05:00.000000Z");
    let h = document::event_to_json(p.handoff.as_ref().unwrap());
    assert_eq!(
        h["timestamp"], "2025-03-01T10:10:00.000000Z",
        "offsets normalize to UTC"
    );
    let first: Event = bus
        .events("mission-883", 1, u64::MAX)
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.event_type() == EventType::Message)
        .unwrap();
    assert_eq!(
        first.id.simple().to_string(),
        "0192a0b0c0d07e8f9a0b1c2d3e4f5061"
    );
    assert_eq!(
        document::event_to_json(&first)["timestamp"],
        "2025-03-01T10:00:00.123456Z"
    );
    // Roles from the document are enforced.
    assert!(bus
        .create_checkpoint("mission-883", "auditor", "x", json!(0).into(), vec![])
        .is_err());
    // Importing the same mission id again is refused and changes nothing.
    let e = bus
        .import_log(document::log_from_seed(&doc).unwrap(), |_| {})
        .unwrap_err();
    assert!(matches!(e, Error::MissionExists { .. }), "{e}");
    assert!(bus.verify("mission-883").unwrap().is_intact());
}

#[test]
fn jsonl_export_import_is_lossless() {
    let (_d, bus) = open();
    mission(&bus, "m");
    bus.publish(
        "m",
        "ada",
        "t",
        json!({"x": [1.5, "é", {"z": null}]}).into(),
    )
    .unwrap();
    let cp = bus
        .create_checkpoint("m", "bob", "s", json!({}).into(), vec![])
        .unwrap();
    bus.handoff("m", "bob", "ada", cp.id, "").unwrap();
    bus.append(
        "m",
        "lead",
        Action::ChangeRole {
            name: "rita".into(),
            role: "audit".into(),
        },
        &AppendOptions::default(),
    )
    .unwrap();
    let original: Vec<Event> = bus
        .events("m", 1, u64::MAX)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let text: String = original
        .iter()
        .map(|e| document::event_to_json(e).to_string() + "\n")
        .collect();

    let (_d2, fresh) = open();
    let log = document::log_from_jsonl(&text).unwrap();
    assert_eq!(log, original);
    let mut seen = Vec::new();
    let n = fresh.import_log(log, move |k| seen.push(k)).unwrap();
    assert_eq!(n, original.len() as u64);
    let copied: Vec<Event> = fresh
        .events("m", 1, u64::MAX)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(copied, original);
    assert_eq!(*fresh.state("m").unwrap(), *bus.state("m").unwrap());
    assert!(fresh.verify("m").unwrap().is_intact());

    // Errors name the line and the field.
    let e = document::log_from_jsonl("\n{\"event_type\": \"message\"}\n").unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    let e = document::log_from_jsonl(&text.replacen("\"message_id\":\"", "\"message_id\":\"zz", 1))
        .unwrap_err();
    assert!(
        e.to_string().contains("message_id") && e.to_string().contains("not a UUID"),
        "{e}"
    );
    // A log with a gap is refused before anything is written.
    let mut gappy = document::log_from_jsonl(&text).unwrap();
    gappy.remove(3);
    let (_d3, third) = open();
    assert!(third.import_log(gappy, |_| {}).is_err());
    assert!(third.missions().unwrap().is_empty());
}

#[test]
fn lookups_go_through_the_index_not_the_log() {
    // Damage a message record in the middle of the log: a scan would trip
    // over it, an index lookup never reads it. (Snapshots after every event
    // so that loading the state after the reopen does not replay either.)
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        util::builder_at(dir.path())
            .snapshot_every(1)
            .open()
            .unwrap()
    };
    let (cp, h, msg_seq) = {
        let bus = open();
        mission(&bus, "m");
        let msg = bus
            .publish("m", "ada", "t", json!("payload").into())
            .unwrap();
        let cp = bus
            .create_checkpoint("m", "ada", "s", json!({"k": 1}).into(), vec![])
            .unwrap();
        let h = bus.handoff("m", "ada", "bob", cp.id, "").unwrap();
        (cp, h, msg.sequence)
    };
    if util::postgres_mode() {
        util::pg_sql(
            dir.path(),
            &format!(
                "UPDATE mb_events SET record = set_byte(record, length(record) - 1, \
                 get_byte(record, length(record) - 1) # 255) WHERE seq = {msg_seq}"
            ),
        );
    } else {
        let db = sled::open(dir.path()).unwrap();
        let events = db.open_tree("events").unwrap();
        let first = events.iter().next().unwrap().unwrap().0;
        let mut key = first[..8].to_vec(); // the mission's internal number
        key.extend_from_slice(&msg_seq.to_be_bytes());
        let mut v = events.get(&key).unwrap().unwrap().to_vec();
        let last = v.len() - 1;
        v[last] ^= 0xff;
        events.insert(&key, v).unwrap();
        db.flush().unwrap();
    }
    let bus = open();
    let (m, found) = bus.checkpoint(&cp.id).unwrap();
    assert_eq!((m.as_str(), found.id), ("m", cp.id));
    assert_eq!(bus.resume_packet(&h.id).unwrap().checkpoint.id, cp.id);
    let err = bus
        .events("m", 1, u64::MAX)
        .unwrap()
        .find_map(Result::err)
        .unwrap();
    assert!(
        matches!(err, Error::Corruption { sequence: Some(s), .. } if s == msg_seq),
        "{err}"
    );
    let report = bus.verify("m").unwrap();
    assert_eq!(report.first_problem().unwrap().sequence, Some(msg_seq));
}

#[test]
fn stored_json_is_canonical_and_event_json_has_prototype_fields() {
    let (_d, bus) = open();
    mission(&bus, "m");
    let e = bus
        .publish(
            "m",
            "ada",
            "t",
            Json::parse("payload", r#"{ "b": 1, "a": [ 2 ] }"#).unwrap(),
        )
        .unwrap();
    let EventBody::Message { payload, .. } = &e.body else {
        panic!("not a message")
    };
    assert_eq!(payload.as_str(), r#"{"a":[2],"b":1}"#);
    let v = document::event_to_json(&e);
    for key in [
        "event_type",
        "message_id",
        "sender",
        "sequence",
        "timestamp",
        "topic",
        "payload",
    ] {
        assert!(v.get(key).is_some(), "event JSON lacks {key}");
    }
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(Json::parse("payload", "{nope")
        .unwrap_err()
        .to_string()
        .contains("payload"));
}

#[test]
fn subscribers_see_durable_events_and_missions_do_not_crowd_each_other() {
    use tokio::sync::broadcast::error::TryRecvError;
    let (_d, bus) = open();
    mission(&bus, "busy");
    mission(&bus, "quiet");
    let mut everything = bus.subscribe();
    let mut quiet = bus.subscribe_mission("quiet");
    let mut unknown = bus.subscribe_mission("no-such-mission");

    // More than a channel holds (4096) in one mission, in big batches...
    for chunk in 0..5 {
        let items = (0..1000)
            .map(|i| {
                (
                    "ada".to_string(),
                    Action::Publish {
                        topic: "t".into(),
                        payload: json!([chunk, i]).into(),
                    },
                )
            })
            .collect();
        bus.append_batch("busy", items, None).unwrap();
    }
    // ...then one event in the quiet mission.
    let e = bus
        .publish("quiet", "ada", "t", json!("hello").into())
        .unwrap();

    let got = quiet
        .try_recv()
        .expect("the quiet mission's subscriber did not lag");
    assert_eq!((got.mission_id.as_str(), &got.event), ("quiet", &e));
    assert!(matches!(quiet.try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(unknown.try_recv(), Err(TryRecvError::Empty)));
    // The all-missions subscriber was flooded and is told so.
    assert!(matches!(
        everything.try_recv(),
        Err(TryRecvError::Lagged(_))
    ));
}

/// Every test above, again on PostgreSQL (skipped, saying so, without it).
#[test]
fn postgres_half() {
    util::postgres_half();
}
