//! Pruning half of a long mission: the time `prune` takes (the
//! `history_pruned` event and anchor, then the range delete of the old
//! records and their index entries), and bytes on disk before the prune,
//! right after it (sled reuses freed space but does not shrink its file)
//! and after compaction (the store copied key for key into a fresh
//! directory, as `mission-bus compact` does). Then a verify of what is
//! left. Run with `cargo bench --bench prune` (1M events by default; set
//! `PRUNE_BENCH_EVENTS` for another size). Not a criterion bench: one run,
//! on a fresh store, printed as JSON.
//!
//! With `PRUNE_BENCH_BACKEND=postgres`, the same on a throwaway PostgreSQL
//! cluster (`tests/util/pg.rs`): the store's tables and indexes before, after
//! the prune (one transaction; PostgreSQL keeps the dead rows' space until
//! a vacuum) and after `compact_database` (`VACUUM (FULL, ANALYZE)`).

use std::path::Path;

#[path = "../tests/util/pg.rs"]
mod pg;
use std::time::Instant;

use mission_bus::{Durability, Event, EventBody, Json, MissionBus, MissionConfig, OPERATOR};
use uuid::Uuid;

fn bytes_on_disk(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            total += bytes_on_disk(&e.path());
        } else {
            total += e.metadata().map_or(0, |m| m.len());
        }
    }
    total
}

fn log(mission: &str, n: u64) -> Vec<Event> {
    let now = chrono::Utc::now();
    let ev = |seq: u64, sender: &str, body: EventBody| Event {
        id: Uuid::now_v7(),
        sequence: seq,
        timestamp: now,
        sender: sender.to_string(),
        body,
        meta: Default::default(),
    };
    let mut log = vec![
        ev(
            1,
            OPERATOR,
            EventBody::MissionCreated {
                mission_id: mission.into(),
                title: "bench".into(),
                config: MissionConfig::default(),
            },
        ),
        ev(
            2,
            OPERATOR,
            EventBody::ParticipantJoined {
                name: "ada".into(),
                role: "write".into(),
                metadata: Json::empty_object(),
            },
        ),
    ];
    for seq in 3..=n {
        let body = if seq % 1000 == 0 {
            EventBody::Checkpoint {
                summary: format!("step {seq}"),
                state: Json::parse("state", &format!(r#"{{"seq":{seq}}}"#)).unwrap(),
                artifacts: vec![],
            }
        } else {
            EventBody::Message {
                topic: format!("status/{}", seq % 10),
                payload: Json::parse("payload", &format!(r#"{{"seq":{seq},"ok":true}}"#)).unwrap(),
            }
        };
        log.push(ev(seq, "ada", body));
    }
    log
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let n: u64 = std::env::var("PRUNE_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    if std::env::var("PRUNE_BENCH_BACKEND").as_deref() == Ok("postgres") {
        return postgres(n);
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bus = MissionBus::builder(&data)
        .durability(Durability::Sync)
        .open()
        .unwrap();
    let t = Instant::now();
    bus.import_log(log("m", n), |_| {}).unwrap();
    let build_s = t.elapsed().as_secs_f64();
    bus.close();
    drop(bus);
    let bus = MissionBus::open(&data).unwrap();
    let before_bytes = bytes_on_disk(&data);

    let cut = n / 2 + 1;
    let t = Instant::now();
    let report = bus.prune("m", cut).unwrap();
    let prune_s = t.elapsed().as_secs_f64();
    let after_prune_bytes = bytes_on_disk(&data);

    let compacted = dir.path().join("compacted");
    let t = Instant::now();
    bus.backup(&compacted).unwrap();
    let compact_s = t.elapsed().as_secs_f64();
    let compacted_bytes = bytes_on_disk(&compacted);
    bus.close();
    drop(bus);

    let bus = MissionBus::open(&compacted).unwrap();
    let t = Instant::now();
    let v = bus.verify("m").unwrap();
    let verify_s = t.elapsed().as_secs_f64();
    assert!(v.is_intact(), "{:?}", v.problems);
    println!(
        "{}",
        serde_json::json!({
            "events": n,
            "pruned_before": cut,
            "removed": report.removed,
            "build_s": build_s,
            "prune_s": prune_s,
            "bytes_before": before_bytes,
            "bytes_after_prune": after_prune_bytes,
            "bytes_after_compaction": compacted_bytes,
            "compaction_s": compact_s,
            "verify_after_s": verify_s,
            "events_verified": v.events_checked,
        })
    );
}

/// The PostgreSQL run: import, prune half, VACUUM FULL, verify.
fn postgres(n: u64) {
    let cluster = match pg::try_cluster() {
        Ok(c) => c,
        Err(why) => {
            println!(
                "{}",
                serde_json::json!({"postgres": format!("n/a ({why})")})
            );
            return;
        }
    };
    let url = mission_bus::StoreUrl::parse(&cluster.database()).unwrap();
    let bus = MissionBus::builder_url(url)
        .durability(Durability::Sync)
        .open()
        .unwrap();
    let t = Instant::now();
    bus.import_log(log("m", n), |_| {}).unwrap();
    let build_s = t.elapsed().as_secs_f64();
    let before_bytes = bus.size_on_disk().unwrap();
    let cut = n / 2 + 1;
    let t = Instant::now();
    let report = bus.prune("m", cut).unwrap();
    let prune_s = t.elapsed().as_secs_f64();
    let after_prune_bytes = bus.size_on_disk().unwrap();
    let t = Instant::now();
    let (_, compacted_bytes) = bus.compact_database().unwrap();
    let compact_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let v = bus.verify("m").unwrap();
    let verify_s = t.elapsed().as_secs_f64();
    assert!(v.is_intact(), "{:?}", v.problems);
    println!(
        "{}",
        serde_json::json!({
            "backend": "postgres",
            "events": n,
            "pruned_before": cut,
            "removed": report.removed,
            "build_s": build_s,
            "prune_s": prune_s,
            "bytes_before": before_bytes,
            "bytes_after_prune": after_prune_bytes,
            "bytes_after_compaction": compacted_bytes,
            "compaction_s": compact_s,
            "verify_after_s": verify_s,
            "events_verified": v.events_checked,
        })
    );
}
