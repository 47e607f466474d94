//! Close and reopen in a NEW PROCESS: everything acknowledged is there, the
//! state and the indexes are identical. The test binary re-executes itself
//! as the child (`MB_RESTART_CHILD` selects what the child does).

use std::path::Path;
use std::process::Command;

use mission_bus::{document, Error, ErrorKind, Json, MissionBus, NewMission};
use serde_json::{json, Value};

const CHILD_ENV: &str = "MB_RESTART_CHILD";
const DIR_ENV: &str = "MB_RESTART_DIR";

/// Everything a reader can observe about mission `m`, as JSON.
fn observe(bus: &MissionBus, mission: &str) -> Value {
    let state = bus.state(mission).unwrap();
    let events: Vec<Value> = bus
        .events(mission, 1, u64::MAX)
        .unwrap()
        .map(|e| document::event_to_json(&e.unwrap()))
        .collect();
    let lookups: Vec<Value> = events
        .iter()
        .filter_map(|e| {
            e.get("checkpoint_id")
                .filter(|_| e["event_type"] == "checkpoint")
        })
        .map(|id| {
            let id = id.as_str().unwrap().parse().unwrap();
            let (m, cp) = bus.checkpoint(&id).unwrap();
            json!([m, cp.sequence])
        })
        .collect();
    let packets: Vec<Value> = events
        .iter()
        .filter(|e| e["event_type"] == "handoff")
        .map(|e| {
            let id = e["handoff_id"].as_str().unwrap().parse().unwrap();
            document::resume_packet_to_json(&bus.resume_packet(&id).unwrap())
        })
        .collect();
    json!({
        "state": serde_json::to_value(&*state).unwrap(),
        "rebuilt": serde_json::to_value(bus.rebuild_state(mission).unwrap()).unwrap(),
        "events": events,
        "checkpoint_lookups": lookups,
        "resume_packets": packets,
        "latest_for_bob": document::resume_packet_to_json(&bus.latest_resume_packet(mission, "bob").unwrap()),
        "verify": bus.verify(mission).unwrap().to_json(),
    })
}

fn write_story(bus: &MissionBus, mission: &str, round: u32) {
    if round == 0 {
        bus.create_mission(NewMission::new(mission, "Restartable").lead("lead"))
            .unwrap();
        bus.join(mission, "ada", "write", json!({"host": "a"}).into())
            .unwrap();
        bus.join(mission, "bob", "write", Json::empty_object())
            .unwrap();
    }
    for i in 0..5 {
        bus.publish(
            mission,
            "ada",
            "progress",
            json!({"round": round, "i": i}).into(),
        )
        .unwrap();
    }
    let cp = bus
        .create_checkpoint(
            mission,
            "ada",
            &format!("round {round}"),
            json!({"round": round}).into(),
            vec![format!("r{round}.txt")],
        )
        .unwrap();
    bus.handoff(
        mission,
        "ada",
        "bob",
        cp.id,
        &format!("after round {round}"),
    )
    .unwrap();
}

/// Runs only as the child process.
#[test]
fn child_entry() {
    let Ok(what) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = std::env::var(DIR_ENV).unwrap();
    let durability = match what.as_str() {
        "write-sync" => mission_bus::Durability::Sync,
        "write-relaxed" => mission_bus::Durability::Relaxed,
        _ => mission_bus::Durability::Flush,
    };
    let out = match MissionBus::builder(&dir).durability(durability).open() {
        Err(e) => json!({"open_error": format!("{:?}", e.kind()), "message": e.to_string()}),
        Ok(bus) => {
            if what.starts_with("write") {
                assert_eq!(bus.durability(), durability);
                write_story(&bus, "m", 0);
                write_story(&bus, "n", 0);
            }
            observe(&bus, "m")
        }
    };
    println!("MB:{out}");
}

fn child(dir: &Path, what: &str) -> Value {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, what)
        .env(DIR_ENV, dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("MB:").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("child printed no result: {stdout}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn a_new_process_sees_exactly_what_another_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // 1. A child process writes and exits; we reopen and compare.
    let seen_by_writer = child(dir.path(), "write");
    let bus = MissionBus::open(dir.path()).unwrap();
    assert_eq!(observe(&bus, "m"), seen_by_writer);
    assert_eq!(seen_by_writer["state"], seen_by_writer["rebuilt"]);
    assert_eq!(seen_by_writer["verify"]["intact"], true);
    assert_eq!(seen_by_writer["events"].as_array().unwrap().len(), 11);

    // 2. We write more and close; a fresh child reads it all back.
    write_story(&bus, "m", 1);
    let ours = observe(&bus, "m");
    drop(bus);
    let seen_by_reader = child(dir.path(), "read");
    assert_eq!(seen_by_reader, ours);
    assert_eq!(seen_by_reader["events"].as_array().unwrap().len(), 18);
    assert_eq!(
        seen_by_reader["latest_for_bob"]["handoff_note"],
        "after round 1"
    );
    let seqs: Vec<u64> = seen_by_reader["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=18).collect::<Vec<_>>());
}

#[test]
fn a_held_data_dir_is_a_clear_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let bus = MissionBus::open(dir.path()).unwrap();
    // Another process...
    let other = child(dir.path(), "read");
    assert_eq!(other["open_error"], "Busy", "{other}");
    assert!(
        other["message"].as_str().unwrap().contains("in use"),
        "{other}"
    );
    // ...and a second open in this process.
    let e = MissionBus::open(dir.path())
        .err()
        .expect("second open must fail");
    assert!(matches!(e, Error::DataDirInUse { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Busy);
    drop(bus);
    // Released on close.
    MissionBus::open(dir.path()).unwrap();
}

#[test]
fn a_large_session_closes_cleanly_and_reopens_at_once() {
    // Past 10,000 events a clean close also lets sled write its recovery
    // snapshot (a second open/close inside the drop): the directory must
    // still be released when the drop returns, with everything intact.
    let dir = tempfile::tempdir().unwrap();
    let bus = MissionBus::open(dir.path()).unwrap();
    bus.create_mission(NewMission::new("big", "big").lead("lead"))
        .unwrap();
    for chunk in 0..11 {
        let items = (0..1000)
            .map(|i| {
                let payload = json!({"chunk": chunk, "i": i}).into();
                (
                    "lead".to_string(),
                    mission_bus::Action::Publish {
                        topic: "t".into(),
                        payload,
                    },
                )
            })
            .collect();
        bus.append_batch("big", items, None).unwrap();
    }
    let before = bus.state("big").unwrap();
    drop(bus);
    let bus = MissionBus::open(dir.path()).unwrap();
    assert_eq!(*bus.state("big").unwrap(), *before);
    assert_eq!(before.head, 11_002);
    assert!(bus.verify("big").unwrap().is_intact());
    drop(bus);
    // And another process can take it straight away.
    let other = child(dir.path(), "write");
    assert_eq!(other["verify"]["intact"], true, "{other}");
}

#[test]
fn every_durability_mode_persists_across_a_clean_process_exit() {
    for mode in ["write-sync", "write-relaxed", "write"] {
        let dir = tempfile::tempdir().unwrap();
        let written = child(dir.path(), mode);
        let bus = MissionBus::open(dir.path()).unwrap();
        assert_eq!(observe(&bus, "m"), written, "{mode}");
        assert_eq!(written["events"].as_array().unwrap().len(), 11, "{mode}");
    }
}
