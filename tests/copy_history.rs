//! `mission-bus copy` of a store that applied history management: a pruned
//! mission travels as its anchor plus the events from the cut on (same
//! head hash, verify proves it from the anchor in the copy too, the pruned
//! range reads as `Pruned` there as well), tombstones of deleted missions
//! stay on the record, and a tampered anchor in the source is refused
//! rather than laundered into a clean copy. sled -> sled always;
//! sled -> PostgreSQL -> sled when PostgreSQL can run (skipped, saying so,
//! otherwise).

mod util;

use std::path::Path;
use std::process::{Command, Output};

use mission_bus::{Error, Json, MissionBus, NewMission, Tombstone};
use serde_json::{json, Value};

fn run_copy(from: &str, to: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mission-bus"))
        .args(["copy", "--from", from, "--to", to])
        .output()
        .unwrap()
}

fn copy(from: &str, to: &str) -> Value {
    let out = run_copy(from, to);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `alpha`: 30 events (a checkpoint at 10, a handoff at 30 naming it),
/// pruned before 20, then 5 more; `beta`: created and deleted; `gamma`:
/// never pruned. Returns every head (verified) and beta's tombstone.
fn fill(dir: &Path) -> (Vec<(String, u64, String)>, Tombstone) {
    let bus = MissionBus::open(dir).unwrap();
    for m in ["alpha", "beta", "gamma"] {
        bus.create_mission(NewMission::new(m, "copy me").lead("lead"))
            .unwrap();
        bus.join(m, "ada", "write", Json::empty_object()).unwrap();
    }
    for i in 4..10 {
        bus.publish("alpha", "ada", "t", json!({"i": i}).into())
            .unwrap();
    }
    let cp = bus
        .create_checkpoint("alpha", "ada", "s", json!({"k": 1}).into(), vec![])
        .unwrap();
    assert_eq!(cp.sequence, 10);
    for i in 11..30 {
        bus.publish("alpha", "ada", "t", json!({"i": i}).into())
            .unwrap();
    }
    let h = bus
        .handoff("alpha", "ada", "lead", cp.id, "take over")
        .unwrap();
    assert_eq!(h.sequence, 30);
    let pruned = bus.prune("alpha", 20).unwrap();
    assert_eq!(pruned.event.unwrap().sequence, 31);
    for i in 0..5 {
        bus.publish("alpha", "ada", "after", json!({"i": i}).into())
            .unwrap();
    }
    bus.publish("gamma", "ada", "t", json!({"g": 1}).into())
        .unwrap();
    let tomb = bus.delete_mission("beta", "@operator").unwrap();
    (heads(&bus), tomb)
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

/// What a copy must hold, checked against the source's heads and
/// tombstone: the same heads, alpha readable from 20 and `Pruned` below,
/// the same state, beta's deletion on record, and the copy takes appends.
fn check_copy(url: &str, want: &[(String, u64, String)], tomb: &Tombstone) {
    let bus = MissionBus::open_url(url).unwrap();
    assert_eq!(heads(&bus), want, "same missions, heads and hashes");
    let r = bus.verify("alpha").unwrap();
    assert!(
        r.notes.iter().any(|n| n.contains("20")),
        "verify proves alpha from its anchor at 20: {:?}",
        r.notes
    );
    let kept: Vec<_> = bus
        .events("alpha", 20, u64::MAX)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kept.len(), 36 - 19);
    assert_eq!(kept[0].sequence, 20);
    // Below the cut nothing is kept: a read from 1 starts at 20, as in the
    // source.
    let from_one = bus.events("alpha", 1, u64::MAX).unwrap().next();
    assert_eq!(from_one.unwrap().unwrap().sequence, 20);
    assert!(bus.event("alpha", 5).is_err(), "sequence 5 was pruned");
    let st = bus.state("alpha").unwrap();
    assert_eq!((st.head, st.checkpoints, st.handoffs), (36, 1, 1));
    assert!(st.participants.contains_key("ada"));
    let t = bus.tombstones(Some("beta")).unwrap();
    assert_eq!(t.len(), 1, "beta's deletion stays on the record");
    assert_eq!(
        (
            &t[0].mission_id,
            t[0].head_sequence,
            t[0].head_hash,
            t[0].deleted_at_us,
            &t[0].deleted_by
        ),
        (
            &tomb.mission_id,
            tomb.head_sequence,
            tomb.head_hash,
            tomb.deleted_at_us,
            &tomb.deleted_by
        )
    );
    assert!(matches!(
        bus.state("beta"),
        Err(Error::MissionNotFound { .. })
    ));
    // The copy continues the chain from the anchor.
    let e = bus
        .publish("alpha", "ada", "copied", json!({}).into())
        .unwrap();
    assert_eq!(e.sequence, 37);
    assert!(bus.verify("alpha").unwrap().problems.is_empty());
}

#[test]
fn sled_to_sled_carries_a_pruned_mission_from_its_anchor_and_tombstones() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (want, tomb) = fill(a.path());
    let to = b.path().join("copy");
    let report = copy(
        &format!("sled:{}", a.path().display()),
        &to.display().to_string(),
    );
    assert_eq!(report["missions"], 2, "{report}");
    assert_eq!(report["pruned"], 1, "{report}");
    assert_eq!(report["tombstones"], 1, "{report}");
    assert_eq!(report["events"], (36 - 19) + 4, "{report}");
    check_copy(&format!("sled:{}", to.display()), &want, &tomb);
}

#[test]
fn a_tampered_anchor_in_the_source_is_refused_not_laundered() {
    // (state byte changed with its state hash and CRC recomputed: a forged
    // anchor that decodes; the history_pruned event still records the
    // original one.)
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    fill(a.path());
    {
        let db = sled::open(a.path()).unwrap();
        let anchors = db.open_tree("anchors").unwrap();
        let (k, v) = anchors.iter().next().unwrap().unwrap();
        let mut v = v.to_vec();
        let last = v.len() - 1;
        v[last] ^= 0x01;
        let state_hash = *blake3::hash(&v[81..]).as_bytes();
        v[45..77].copy_from_slice(&state_hash);
        let crc = crc32fast::hash(&v[5..]);
        v[1..5].copy_from_slice(&crc.to_be_bytes());
        anchors.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    let to = b.path().join("copy");
    let out = run_copy(
        &format!("sled:{}", a.path().display()),
        &to.display().to_string(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "integrity failure: {err}");
    assert!(err.contains("alpha"), "names the mission: {err}");
    assert!(err.contains("tampered"), "says why: {err}");
    if to.exists() {
        let bus = MissionBus::open(&to).unwrap();
        assert!(
            matches!(bus.state("alpha"), Err(Error::MissionNotFound { .. })),
            "nothing of alpha was written"
        );
    }
}

#[test]
fn sled_to_postgres_to_sled_keeps_pruned_chains_and_tombstones() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (want, tomb) = fill(a.path());
    let pg = cluster.database();
    let report = copy(&format!("sled:{}", a.path().display()), &pg);
    assert_eq!(
        (report["pruned"].as_u64(), report["tombstones"].as_u64()),
        (Some(1), Some(1))
    );
    // Check a second database so the first stays as copied for the way back.
    let pg2 = cluster.database();
    copy(&pg, &pg2);
    check_copy(&pg2, &want, &tomb);
    let back = b.path().join("back");
    let report = copy(&pg, &format!("sled:{}", back.display()));
    assert_eq!(
        (report["pruned"].as_u64(), report["tombstones"].as_u64()),
        (Some(1), Some(1))
    );
    check_copy(&format!("sled:{}", back.display()), &want, &tomb);
}
