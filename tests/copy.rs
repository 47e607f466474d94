//! `mission-bus copy --from URL --to URL`: sled -> PostgreSQL -> sled keeps
//! every event and every head hash, both sides verified; the PostgreSQL
//! leg is skipped (saying so) where PostgreSQL cannot run.

mod util;

use std::process::Command;

use mission_bus::{Json, MissionBus, NewMission};
use serde_json::{json, Value};

fn copy(from: &str, to: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mission-bus"))
        .args(["copy", "--from", from, "--to", to])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("events"), "progress on stderr: {err}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fill(dir: &std::path::Path) -> Vec<(String, u64, String)> {
    let bus = MissionBus::open(dir).unwrap();
    for m in ["alpha", "beta"] {
        bus.create_mission(NewMission::new(m, "copy me").lead("lead"))
            .unwrap();
        bus.join(m, "ada", "write", Json::empty_object()).unwrap();
        for i in 0..25 {
            bus.publish(m, "ada", "t", json!({"i": i}).into()).unwrap();
        }
        let cp = bus
            .create_checkpoint(m, "ada", "s", json!({"k": 1}).into(), vec![])
            .unwrap();
        bus.handoff(m, "ada", "lead", cp.id, "take over").unwrap();
    }
    heads(&bus)
}

fn heads(bus: &MissionBus) -> Vec<(String, u64, String)> {
    bus.mission_ids()
        .into_iter()
        .map(|m| {
            let r = bus.verify(&m).unwrap();
            assert!(r.problems.is_empty(), "{m}: {:?}", r.problems);
            (m, r.head_sequence, r.head_hash)
        })
        .collect()
}

#[test]
fn sled_to_sled_keeps_heads_and_refuses_a_second_copy() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let want = fill(a.path());
    let (from, to) = (
        format!("sled:{}", a.path().display()),
        b.path().join("copy").display().to_string(),
    );
    let report = copy(&from, &to);
    assert_eq!(report["missions"], 2);
    assert_eq!(report["events"], 2 * 30);
    assert_eq!(
        heads(&MissionBus::open(b.path().join("copy")).unwrap()),
        want
    );
    // Copying again meets the same missions: a conflict, exit 5.
    let out = Command::new(env!("CARGO_BIN_EXE_mission-bus"))
        .args(["copy", "--from", &from, "--to", &to])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sled_to_postgres_to_sled_keeps_every_head_hash() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let want = fill(a.path());
    let pg = cluster.database();
    copy(&a.path().display().to_string(), &pg);
    let on_pg = MissionBus::open_url(&pg).unwrap();
    assert_eq!(heads(&on_pg), want, "PostgreSQL holds the same chains");
    // The copy resumes: a handoff's packet reads on PostgreSQL.
    assert_eq!(on_pg.state("alpha").unwrap().head, 30);
    drop(on_pg);
    let back = b.path().join("back");
    copy(&pg, &format!("sled:{}", back.display()));
    assert_eq!(heads(&MissionBus::open(&back).unwrap()), want);
}
