//! Optimistic concurrency and idempotent appends.
//!
//! - Two writers racing with the same expected head: exactly one wins, every
//!   round, and the loser's error names the expected and the actual head.
//! - A mismatched expectation writes nothing (head, log and indexes unchanged).
//! - A caller-supplied event id makes an append idempotent: a retry with the
//!   same content returns the original (same sequence, nothing written); the
//!   same id with other content is `EventIdConflict`; both hold across a
//!   reopen (permanent, not a time window) and under concurrent retries.
//! - Many concurrent appenders across missions: all acknowledged, contiguous,
//!   verifiable, and the rebuilt state equals the live state.

mod util;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Barrier};
use std::thread;

use mission_bus::{Action, AppendOptions, Error, ErrorKind, Event, Json, MissionBus, NewMission};
use serde_json::json;
use uuid::Uuid;

fn open(dir: &std::path::Path) -> MissionBus {
    util::bus_at(dir).expect("open")
}

fn publish(topic: &str, payload: serde_json::Value) -> Action {
    Action::Publish {
        topic: topic.into(),
        payload: payload.into(),
    }
}

fn expect_seq(n: u64) -> AppendOptions {
    AppendOptions {
        expected_sequence: Some(n),
        ..Default::default()
    }
}

fn with_id(id: Uuid) -> AppendOptions {
    AppendOptions {
        event_id: Some(id),
        ..Default::default()
    }
}

/// A mission with a lead and `writers` write participants.
fn mission(bus: &MissionBus, id: &str, writers: &[&str]) {
    bus.create_mission(NewMission::new(id, "concurrency").lead("lead"))
        .expect("create");
    for w in writers {
        bus.join(id, w, "write", Json::empty_object())
            .expect("join");
    }
}

fn all_events(bus: &MissionBus, m: &str) -> Vec<Event> {
    bus.events(m, 1, u64::MAX)
        .expect("events")
        .collect::<Result<_, _>>()
        .expect("replay")
}

/// Log, indexes and state of a mission are sound.
fn assert_sound(bus: &MissionBus, m: &str) {
    let report = bus.verify(m).expect("verify");
    assert!(report.is_intact(), "{m}: {:?}", report.problems);
    let events = all_events(bus, m);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.sequence, i as u64 + 1, "{m}: not contiguous");
    }
    let state = bus.state(m).expect("state");
    assert_eq!(state.head, events.len() as u64);
    assert_eq!(bus.rebuild_state(m).expect("rebuild"), *state);
}

#[test]
fn racing_writers_with_the_same_expectation_exactly_one_wins() {
    const ROUNDS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    mission(&bus, "race", &["a", "b"]);
    let start = bus.state("race").unwrap().head;
    for round in 0..ROUNDS {
        let head = bus.state("race").unwrap().head;
        assert_eq!(head, start + round);
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|who| {
                let bus = bus.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    bus.append(
                        "race",
                        who,
                        publish("claim", json!({"round": round, "by": who})),
                        &expect_seq(head),
                    )
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<&Event> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert_eq!(winners[0].sequence, head + 1);
        let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        match loser {
            Error::SequenceConflict {
                mission,
                expected,
                head: actual,
            } => {
                assert_eq!(mission, "race");
                assert_eq!(*expected, head);
                assert_eq!(*actual, head + 1);
            }
            other => panic!("round {round}: loser got {other:?}"),
        }
        assert_eq!(loser.kind(), ErrorKind::Conflict);
    }
    assert_eq!(bus.state("race").unwrap().head, start + ROUNDS);
    // Every round left exactly one claim, in round order.
    let claims: Vec<u64> = all_events(&bus, "race")
        .iter()
        .skip(start as usize)
        .map(|e| match &e.body {
            mission_bus::EventBody::Message { payload, .. } => {
                payload.value()["round"].as_u64().unwrap()
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(claims, (0..ROUNDS).collect::<Vec<_>>());
    assert_sound(&bus, "race");
}

#[test]
fn sequence_mismatch_names_both_heads_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    mission(&bus, "m", &["a"]);
    bus.publish("m", "a", "t", json!(1).into()).unwrap();
    let head = bus.state("m").unwrap().head;
    assert_eq!(head, 4);
    let before = all_events(&bus, "m");
    let id = Uuid::now_v7();
    for wrong in [0, head - 1, head + 1, head + 100, u64::MAX] {
        let opts = AppendOptions {
            expected_sequence: Some(wrong),
            event_id: Some(id),
        };
        let err = bus
            .append("m", "a", publish("t", json!(2)), &opts)
            .unwrap_err();
        match &err {
            Error::SequenceConflict {
                mission,
                expected,
                head: actual,
            } => assert_eq!((mission.as_str(), *expected, *actual), ("m", wrong, head)),
            other => panic!("expected a sequence conflict, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&wrong.to_string()) && text.contains(&head.to_string()),
            "message must name expected and actual head: {text}"
        );
        // Batches obey the expectation too.
        let err = bus
            .append_batch("m", vec![("a".into(), publish("t", json!(3)))], Some(wrong))
            .unwrap_err();
        assert!(matches!(err, Error::SequenceConflict { .. }), "{err:?}");
    }
    assert_eq!(all_events(&bus, "m"), before);
    assert_eq!(bus.state("m").unwrap().head, head);
    // The id of the refused append was not consumed: it can be used now.
    let e = bus
        .append(
            "m",
            "a",
            publish("t", json!(2)),
            &AppendOptions {
                expected_sequence: Some(head),
                event_id: Some(id),
            },
        )
        .unwrap();
    assert_eq!((e.sequence, e.id), (head + 1, id));
    assert_sound(&bus, "m");
}

#[test]
fn optimistic_counter_loses_no_update() {
    // Each thread reads the head and appends with that expectation, retrying
    // on conflict: a compare-and-swap loop. No update may be lost or doubled.
    const THREADS: usize = 4;
    const EACH: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    let names = ["t0", "t1", "t2", "t3"];
    mission(&bus, "cas", &names);
    let start = bus.state("cas").unwrap().head;
    let workers: Vec<_> = names
        .into_iter()
        .map(|who| {
            let bus = bus.clone();
            thread::spawn(move || {
                let mut conflicts = 0;
                for n in 0..EACH {
                    loop {
                        let head = bus.state("cas").unwrap().head;
                        match bus.append(
                            "cas",
                            who,
                            publish("inc", json!({"by": who, "n": n})),
                            &expect_seq(head),
                        ) {
                            Ok(e) => {
                                assert_eq!(e.sequence, head + 1);
                                break;
                            }
                            Err(Error::SequenceConflict { .. }) => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let conflicts: usize = workers.into_iter().map(|t| t.join().unwrap()).sum();
    let head = bus.state("cas").unwrap().head;
    assert_eq!(head, start + (THREADS * EACH) as u64);
    let mut seen = HashSet::new();
    for e in all_events(&bus, "cas").iter().skip(start as usize) {
        let mission_bus::EventBody::Message { payload, .. } = &e.body else {
            panic!("unexpected event {e:?}");
        };
        let v = payload.value();
        assert!(seen.insert((v["by"].to_string(), v["n"].as_u64().unwrap())));
    }
    assert_eq!(seen.len(), THREADS * EACH);
    assert_sound(&bus, "cas");
    eprintln!("optimistic counter: {conflicts} conflicts retried");
}

#[test]
fn idempotent_retries_return_the_original_and_conflicts_are_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::now_v7();
    let cp_id = Uuid::now_v7();
    let original;
    let checkpoint;
    {
        let bus = open(dir.path());
        mission(&bus, "m", &["a", "b"]);
        mission(&bus, "other", &["a"]);
        original = bus
            .append("m", "a", publish("t", json!({"x": 1})), &with_id(id))
            .unwrap();
        assert_eq!(original.id, id);
        let head = bus.state("m").unwrap().head;
        assert_eq!(original.sequence, head);

        // Same id, same content: the original, nothing written.
        let again = bus
            .append("m", "a", publish("t", json!({"x": 1})), &with_id(id))
            .unwrap();
        assert_eq!(again, original);
        // JSON is compared canonically: key order and spacing do not matter.
        let reordered = Json::parse("payload", r#"{ "x" : 1 }"#).unwrap();
        let again = bus
            .append(
                "m",
                "a",
                Action::Publish {
                    topic: "t".into(),
                    payload: reordered,
                },
                &with_id(id),
            )
            .unwrap();
        assert_eq!(again, original);
        assert_eq!(bus.state("m").unwrap().head, head);

        // A retry that carries the (now stale) expectation it was first
        // sent with still gets the original back, not a conflict.
        let again = bus
            .append(
                "m",
                "a",
                publish("t", json!({"x": 1})),
                &AppendOptions {
                    expected_sequence: Some(head - 1),
                    event_id: Some(id),
                },
            )
            .unwrap();
        assert_eq!(again, original);

        checkpoint = bus
            .append(
                "m",
                "a",
                Action::Checkpoint {
                    summary: "s".into(),
                    state: json!({}).into(),
                    artifacts: vec!["a.txt".into()],
                },
                &with_id(cp_id),
            )
            .unwrap();
        assert_conflicts(&bus, id, &original, "m");
        assert_eq!(bus.state("m").unwrap().head, head + 1);
        assert_eq!(bus.state("other").unwrap().head, 3);
        bus.close();
    }
    // Permanent: after a reopen, the same answers.
    let bus = open(dir.path());
    let head = bus.state("m").unwrap().head;
    let again = bus
        .append("m", "a", publish("t", json!({"x": 1})), &with_id(id))
        .unwrap();
    assert_eq!(again, original);
    let cp_again = bus
        .append(
            "m",
            "a",
            Action::Checkpoint {
                summary: "s".into(),
                state: json!({}).into(),
                artifacts: vec!["a.txt".into()],
            },
            &with_id(cp_id),
        )
        .unwrap();
    assert_eq!(cp_again, checkpoint);
    assert_conflicts(&bus, id, &original, "m");
    assert_eq!(bus.state("m").unwrap().head, head);
    assert_sound(&bus, "m");
    assert_sound(&bus, "other");
}

/// Every way of reusing `id` with other content is an `EventIdConflict`
/// naming the original, and writes nothing.
fn assert_conflicts(bus: &MissionBus, id: Uuid, original: &Event, mission: &str) {
    let heads: BTreeMap<String, u64> = bus
        .missions()
        .unwrap()
        .into_iter()
        .map(|s| (s.mission_id, s.head_sequence))
        .collect();
    let attempts: Vec<(&str, &str, Action)> = vec![
        ("other payload", "a", publish("t", json!({"x": 2}))),
        ("other topic", "a", publish("u", json!({"x": 1}))),
        ("other sender", "b", publish("t", json!({"x": 1}))),
        (
            "other kind",
            "a",
            Action::Checkpoint {
                summary: "t".into(),
                state: json!({"x": 1}).into(),
                artifacts: vec![],
            },
        ),
    ];
    for (what, sender, action) in attempts {
        let err = bus
            .append(mission, sender, action, &with_id(id))
            .unwrap_err();
        match &err {
            Error::EventIdConflict {
                event_id,
                mission: m,
                sequence,
            } => {
                assert_eq!(*event_id, id, "{what}");
                assert_eq!(m, mission, "{what}");
                assert_eq!(*sequence, original.sequence, "{what}");
            }
            other => panic!("{what}: expected EventIdConflict, got {other:?}"),
        }
        assert_eq!(err.kind(), ErrorKind::Conflict);
    }
    let after: BTreeMap<String, u64> = bus
        .missions()
        .unwrap()
        .into_iter()
        .map(|s| (s.mission_id, s.head_sequence))
        .collect();
    assert_eq!(after, heads, "a conflicting id wrote something");
}

#[test]
fn concurrent_retries_of_one_id_write_once() {
    // An agent whose call timed out retries from several threads at once
    // (and they land in the same commit group): one event, one sequence.
    const THREADS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    mission(&bus, "m", &["a"]);
    for round in 0..20 {
        let id = Uuid::now_v7();
        let head = bus.state("m").unwrap().head;
        let barrier = Arc::new(Barrier::new(THREADS));
        let results: Vec<Event> = (0..THREADS)
            .map(|_| {
                let bus = bus.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    bus.append("m", "a", publish("retry", json!(round)), &with_id(id))
                        .expect("retry")
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        for r in &results {
            assert_eq!(r, &results[0]);
        }
        assert_eq!(results[0].sequence, head + 1);
        assert_eq!(bus.state("m").unwrap().head, head + 1);
    }
    assert_sound(&bus, "m");
}

#[test]
fn many_concurrent_appenders_across_missions() {
    const THREADS: usize = 8;
    const EACH: usize = 60;
    let missions = ["c0", "c1", "c2"];
    let names = ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7"];
    let dir = tempfile::tempdir().unwrap();
    let acked: Vec<(String, u64, Uuid)>;
    {
        let bus = open(dir.path());
        for m in missions {
            mission(&bus, m, &names);
        }
        let barrier = Arc::new(Barrier::new(THREADS));
        acked = (0..THREADS)
            .map(|t| {
                let bus = bus.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    let mut out = Vec::new();
                    for n in 0..EACH {
                        let m = missions[(t + n) % missions.len()];
                        let who = names[t];
                        let e = if n % 10 == 9 {
                            bus.create_checkpoint(m, who, "cp", json!({"n": n}).into(), vec![])
                        } else {
                            bus.publish(m, who, "load", json!({"t": t, "n": n}).into())
                        }
                        .expect("append");
                        out.push((m.to_string(), e.sequence, e.id));
                    }
                    out
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        bus.close();
    }
    assert_eq!(acked.len(), THREADS * EACH);
    // Reopened: everything acknowledged is there, where it was acknowledged.
    let bus = open(dir.path());
    let mut total = 0;
    for m in missions {
        assert_sound(&bus, m);
        let events = all_events(&bus, m);
        total += events.len() - 1 - 1 - names.len();
        for (am, seq, id) in acked.iter().filter(|(am, ..)| am == m) {
            assert_eq!(events[*seq as usize - 1].id, *id, "{am} {seq}");
        }
    }
    assert_eq!(total, THREADS * EACH, "extra or missing events");
    let ids: HashSet<Uuid> = acked.iter().map(|a| a.2).collect();
    assert_eq!(ids.len(), acked.len(), "an id was acknowledged twice");
}

/// Every test above, again on PostgreSQL (skipped, saying so, without it).
#[test]
fn postgres_half() {
    util::postgres_half();
}
