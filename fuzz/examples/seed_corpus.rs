//! Writes the seed corpora under `fuzz/seeds/<target>/`:
//!
//! - `decode_record`: every record of a real store (all event kinds, real
//!   hash chain), plus records built with `fuzzing::encode_record`, each
//!   prefixed with its sequence (8 bytes, big-endian) as the target expects;
//! - `decode_snapshot`: the snapshots that store saved;
//! - `config`: the default config, the repository's profiles file and a few
//!   hand-written variants.
//!
//! Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus`

use std::path::{Path, PathBuf};

use chrono::Utc;
use mission_bus::{
    fuzzing, Action, AppendOptions, Event, EventBody, Json, MissionBus, MissionConfig, NewMission,
};
use serde_json::json;
use uuid::Uuid;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create seed dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn with_seq(seq: u64, value: &[u8]) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    v.extend_from_slice(value);
    v
}

fn main() -> mission_bus::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let records = root.join("decode_record");
    let snapshots = root.join("decode_snapshot");
    let configs = root.join("config");

    // A real store: every event kind, snapshots every 4 events.
    let data = std::env::temp_dir().join(format!("mission-bus-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    {
        let bus = MissionBus::builder(&data).snapshot_every(4).open()?;
        bus.create_mission(NewMission::new("seed-mission", "Seed corpus").lead("lead"))?;
        bus.join("seed-mission", "ada", "write", json!({"host": "a"}).into())?;
        bus.join("seed-mission", "bob", "read", Json::empty_object())?;
        bus.append(
            "seed-mission",
            "lead",
            Action::ChangeRole {
                name: "bob".into(),
                role: "write".into(),
            },
            &AppendOptions::default(),
        )?;
        bus.publish(
            "seed-mission",
            "ada",
            "status",
            json!({"step": 1, "ok": true, "list": [1, 2.5, "x", null]}).into(),
        )?;
        let cp = bus.create_checkpoint(
            "seed-mission",
            "ada",
            "lexer done",
            json!({"next": "parser"}).into(),
            vec!["src/lexer.rs".into(), "notes.md".into()],
        )?;
        bus.handoff("seed-mission", "ada", "bob", cp.id, "your turn")?;
        bus.publish("seed-mission", "bob", "ünïcødé", json!("\u{1F980}").into())?;
        bus.close();
    }
    let db = sled::open(&data).expect("open the seed store with sled");
    let events = db.open_tree("events").expect("events tree");
    for (i, item) in events.iter().enumerate() {
        let (k, v) = item.expect("read record");
        let seq = u64::from_be_bytes(k[8..16].try_into().expect("event key"));
        write(&records, &format!("store-{i:02}"), &with_seq(seq, &v));
    }
    let snaps = db.open_tree("snapshots").expect("snapshots tree");
    for (i, item) in snaps.iter().enumerate() {
        let (_, v) = item.expect("read snapshot");
        write(&snapshots, &format!("store-{i:02}"), &v);
    }
    drop((events, snaps, db));
    let _ = std::fs::remove_dir_all(&data);

    // Records built directly with the store's encoder (GENESIS previous hash).
    let now = Utc::now();
    let bodies = vec![
        EventBody::MissionCreated {
            mission_id: "m".into(),
            title: "t".into(),
            config: MissionConfig::default(),
        },
        EventBody::ParticipantJoined {
            name: "p".into(),
            role: "write".into(),
            metadata: Json::empty_object(),
        },
        EventBody::RoleChanged {
            name: "p".into(),
            role: "read".into(),
        },
        EventBody::Message {
            topic: "".into(),
            payload: Json::null(),
        },
        EventBody::Checkpoint {
            summary: "s".into(),
            state: json!({"a": [1, {"b": "c"}]}).into(),
            artifacts: vec![],
        },
        EventBody::Handoff {
            recipient: "q".into(),
            checkpoint_id: Uuid::nil(),
            note: String::new(),
        },
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let seq = i as u64 + 1;
        let event = Event {
            id: Uuid::now_v7(),
            sequence: seq,
            timestamp: now,
            sender: "@operator".into(),
            body,
        };
        let value = fuzzing::encode_record("fuzz-1", &event);
        assert!(fuzzing::decode_record(seq, &value), "a seed must decode");
        write(&records, &format!("encoded-{i:02}"), &with_seq(seq, &value));
    }

    // Configs.
    let default = serde_json::to_vec_pretty(&MissionConfig::default().to_json()).expect("json");
    write(&configs, "default.json", &default);
    let repo_config = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("config")
        .join("mission_bus_profiles.json");
    if let Ok(text) = std::fs::read(&repo_config) {
        write(&configs, "repo-profiles.json", &text);
    }
    write(&configs, "empty-object.json", b"{}");
    write(
        &configs,
        "roles-only.json",
        br#"{"roles": {"lead": ["publish", "read", "audit"], "ghost": []}}"#,
    );
    write(
        &configs,
        "profiles-only.json",
        br#"{"isolation_profiles": [{"name": "x", "label": "X", "level": -3, "mechanism": "m", "supports_resume": false}]}"#,
    );
    write(
        &configs,
        "unknown-capability.json",
        br#"{"roles": {"lead": ["fly"]}}"#,
    );
    eprintln!("seeds written under {}", root.display());
    Ok(())
}
