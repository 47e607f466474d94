//! Several bus processes on one PostgreSQL database, racing appends with
//! expected sequences on the same missions: every sequence holds exactly
//! one event, no gaps, every acknowledged event is where it was
//! acknowledged, retries by event id are idempotent across processes, and
//! verify is clean. Skipped (saying so) where PostgreSQL cannot run.

mod util;

use std::collections::BTreeMap;
use std::process::Command;

use mission_bus::{Action, AppendOptions, Error, Json, MissionBus, NewMission, StoreUrl};
use serde_json::{json, Value};
use uuid::Uuid;

const MISSIONS: [&str; 2] = ["race-a", "race-b"];
/// Each mission's head after [`setup`]: created, the lead and `w` joined.
const BASE: u64 = 3;

fn open(url: &str) -> MissionBus {
    MissionBus::builder_url(StoreUrl::parse(url).unwrap())
        .open()
        .unwrap()
}

fn setup(url: &str) {
    let bus = open(url);
    for m in MISSIONS {
        bus.create_mission(NewMission::new(m, "race").lead("lead"))
            .unwrap();
        bus.join(m, "w", "write", Json::empty_object()).unwrap();
    }
}

/// Every event of `m` is at its sequence, 1..=head, and `acked` (seq -> id)
/// are all there; returns the head.
fn check(bus: &MissionBus, m: &str, acked: &BTreeMap<u64, Uuid>) -> u64 {
    let events: Vec<_> = bus
        .events(m, 1, u64::MAX)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.sequence, i as u64 + 1, "{m}: contiguous");
    }
    for (seq, id) in acked {
        assert_eq!(events[*seq as usize - 1].id, *id, "{m}: acknowledged {seq}");
    }
    let report = bus.verify(m).unwrap();
    assert!(report.problems.is_empty(), "{m}: {:?}", report.problems);
    events.len() as u64
}

#[test]
fn four_buses_race_expected_sequences_on_one_database() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = cluster.database();
    setup(&url);
    const PER_WRITER: usize = 20;
    let acked: Vec<Vec<(String, u64, Uuid)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let url = url.clone();
                s.spawn(move || {
                    // Each bus is what a separate process would be: its own
                    // caches, its own connections.
                    let bus = open(&url);
                    let mut view: BTreeMap<&str, u64> =
                        MISSIONS.iter().map(|m| (*m, BASE)).collect();
                    let mut mine = Vec::new();
                    let mut conflicts = 0;
                    for i in 0..PER_WRITER {
                        let m = MISSIONS[i % 2];
                        loop {
                            let opts = AppendOptions {
                                expected_sequence: Some(view[m]),
                                event_id: None,
                            };
                            let action = Action::Publish {
                                topic: "t".into(),
                                payload: json!({"w": w, "i": i}).into(),
                            };
                            match bus.append(m, "w", action, &opts) {
                                Ok(e) => {
                                    assert_eq!(e.sequence, view[m] + 1);
                                    view.insert(m, e.sequence);
                                    mine.push((m.to_string(), e.sequence, e.id));
                                    break;
                                }
                                Err(Error::SequenceConflict { head, expected, .. }) => {
                                    assert_ne!(head, expected);
                                    conflicts += 1;
                                    view.insert(m, head);
                                }
                                Err(e) => panic!("writer {w}: {e}"),
                            }
                        }
                    }
                    println!("writer {w}: {conflicts} conflicts");
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let bus = open(&url);
    let mut total = 0;
    for m in MISSIONS {
        let mut seqs: BTreeMap<u64, Uuid> = BTreeMap::new();
        for (mm, seq, id) in acked.iter().flatten() {
            if mm == m {
                assert!(
                    seqs.insert(*seq, *id).is_none(),
                    "{m}: sequence {seq} acknowledged twice"
                );
            }
        }
        let head = check(&bus, m, &seqs);
        // creation, the lead and w joining, then exactly the acknowledged appends
        assert_eq!(
            head,
            BASE + seqs.len() as u64,
            "{m}: nothing but the acknowledged"
        );
        total += seqs.len();
    }
    assert_eq!(total, 4 * PER_WRITER);
}

#[test]
fn appends_without_expectation_replan_and_retries_by_id_are_idempotent_across_buses() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = cluster.database();
    setup(&url);
    let buses: Vec<MissionBus> = (0..4).map(|_| open(&url)).collect();
    // Warm every bus's cache, so that each append below meets a head moved
    // by the others (the commit finds it, the group is planned again).
    for b in &buses {
        assert_eq!(b.state("race-a").unwrap().head, BASE);
    }
    let ids: Vec<Vec<(u64, Uuid)>> = std::thread::scope(|s| {
        let hs: Vec<_> = buses
            .iter()
            .enumerate()
            .map(|(w, bus)| {
                s.spawn(move || {
                    (0..15)
                        .map(|i| {
                            let id = Uuid::now_v7();
                            let opts = AppendOptions {
                                expected_sequence: None,
                                event_id: Some(id),
                            };
                            let action = Action::Publish {
                                topic: "t".into(),
                                payload: json!([w, i]).into(),
                            };
                            let e = bus.append("race-a", "w", action, &opts).unwrap();
                            (e.sequence, id)
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let acked: BTreeMap<u64, Uuid> = ids.iter().flatten().copied().collect();
    assert_eq!(acked.len(), 60, "every sequence acknowledged once");
    assert_eq!(check(&buses[0], "race-a", &acked), BASE + 60);
    // A retry by id on ANOTHER bus returns the stored event, writes nothing.
    let (w, i) = (2usize, 7usize);
    let (seq, id) = ids[w][i];
    let again = buses[(w + 1) % 4]
        .append(
            "race-a",
            "w",
            Action::Publish {
                topic: "t".into(),
                payload: json!([w, i]).into(),
            },
            &AppendOptions {
                expected_sequence: None,
                event_id: Some(id),
            },
        )
        .unwrap();
    assert_eq!((again.sequence, again.id), (seq, id));
    // Every bus sees the same head (reads check the database's head).
    for b in &buses {
        assert_eq!(b.state("race-a").unwrap().head, BASE + 60);
    }
    // Tokens issued by one process authenticate in another.
    let token = buses[0].issue_token("race-a", "w").unwrap();
    let owner = buses[3].authenticate(&token).unwrap().expect("known token");
    assert_eq!(
        (owner.mission_id.as_str(), owner.name.as_str()),
        ("race-a", "w")
    );
}

/// The real binary: four CLI processes at a time racing `publish
/// --expect-seq` on one mission of one database.
#[test]
fn four_cli_processes_race_on_one_database() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = cluster.database();
    setup(&url);
    let bin = env!("CARGO_BIN_EXE_mission-bus");
    const PER_PROCESS: usize = 5;
    let acked: Vec<(u64, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|w| {
                let url = url.clone();
                s.spawn(move || {
                    let mut view = BASE;
                    let mut mine = Vec::new();
                    while mine.len() < PER_PROCESS {
                        let out = Command::new(bin)
                            .args(["--store", &url, "publish", "race-b", "--as", "w"])
                            .args(["--topic", "t", "--payload", &format!("{w}")])
                            .args(["--expect-seq", &view.to_string()])
                            .output()
                            .unwrap();
                        match out.status.code() {
                            Some(0) => {
                                let e: Value = serde_json::from_slice(&out.stdout).unwrap();
                                let seq = e["sequence"].as_u64().unwrap();
                                assert_eq!(seq, view + 1);
                                view = seq;
                                mine.push((seq, e.to_string()));
                            }
                            Some(5) => {
                                let err = String::from_utf8_lossy(&out.stderr);
                                view = err
                                    .rsplit("head is ")
                                    .next()
                                    .and_then(|t| t.trim().parse().ok())
                                    .unwrap_or_else(|| panic!("conflict without a head: {err}"));
                            }
                            other => {
                                panic!("exit {other:?}: {}", String::from_utf8_lossy(&out.stderr))
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut by_seq = BTreeMap::new();
    for (seq, id) in &acked {
        assert!(
            by_seq.insert(*seq, id.clone()).is_none(),
            "sequence {seq} twice"
        );
    }
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (BASE + 1..=BASE + 20).collect::<Vec<_>>()
    );
    let out = Command::new(bin)
        .args(["--store", &url, "verify", "race-b"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
