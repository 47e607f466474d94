//! History management with several bus processes on one PostgreSQL
//! database (each bus has its own caches and connections, as a separate
//! process would): a prune racing appends, two buses pruning at once, a
//! fork racing a prune, a delete racing appends, and a version-1 database
//! migrated on open. Skipped (saying so) where PostgreSQL cannot run.

mod util;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use mission_bus::{Error, EventBody, Json, MissionBus, NewMission, StoreUrl};
use serde_json::json;

fn open(url: &str) -> MissionBus {
    MissionBus::builder_url(StoreUrl::parse(url).unwrap())
        .open()
        .unwrap()
}

fn team(bus: &MissionBus, m: &str) {
    bus.create_mission(NewMission::new(m, "t").lead("lena"))
        .unwrap();
    bus.join(m, "ada", "write", Json::empty_object()).unwrap();
}

fn publish(bus: &MissionBus, m: &str, i: usize) -> mission_bus::Result<u64> {
    bus.publish(m, "ada", "t", Json::from_value(&json!(i)))
        .map(|e| e.sequence)
}

/// The log of `m` read through `bus`: contiguous from the prune point to
/// the head, verify clean, the state the same as a rebuild from the log.
fn check(bus: &MissionBus, m: &str) -> (u64, u64) {
    let state = bus.state(m).unwrap();
    let events: Vec<_> = bus
        .events(m, 1, u64::MAX)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let first = state.first_sequence();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.sequence, first + i as u64, "{m}: contiguous from {first}");
    }
    assert_eq!(events.last().unwrap().sequence, state.head);
    let report = bus.verify(m).unwrap();
    assert!(report.is_intact(), "{m}: {:?}", report.problems);
    assert_eq!(report.head_sequence, state.head);
    assert_eq!(*state, bus.rebuild_state(m).unwrap());
    (first, state.head)
}

#[test]
fn a_prune_racing_appends_from_another_bus_keeps_every_acknowledged_event_after_it() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = cluster.database();
    let (writer, pruner) = (open(&url), open(&url));
    team(&writer, "m");
    for i in 0..20 {
        publish(&writer, "m", i).unwrap();
    }
    let done = AtomicBool::new(false);
    let (acked, pruned) = std::thread::scope(|s| {
        let w = s.spawn(|| {
            let mut acked = Vec::new();
            for i in 0..300 {
                acked.push(publish(&writer, "m", i).unwrap());
            }
            done.store(true, Ordering::Relaxed);
            acked
        });
        let p = s.spawn(|| {
            let mut reports = Vec::new();
            let mut cut = 10;
            while !done.load(Ordering::Relaxed) {
                // Never past the head (which only grows).
                let head = pruner.state("m").unwrap().head;
                reports.push(pruner.prune("m", cut.min(head)).unwrap());
                cut += 7;
            }
            reports
        });
        (w.join().unwrap(), p.join().unwrap())
    });
    assert!(!pruned.is_empty());
    for r in &pruned {
        if let Some(e) = &r.event {
            assert!(matches!(e.body, EventBody::HistoryPruned { .. }));
        }
    }
    let last_cut = pruned.iter().map(|r| r.before).max().unwrap();
    let removed: u64 = pruned.iter().map(|r| r.removed).sum();
    assert_eq!(
        removed,
        last_cut - 1,
        "every record below the cut removed once"
    );
    for bus in [&writer, &pruner] {
        let (first, head) = check(bus, "m");
        assert_eq!(first, last_cut);
        // Every acknowledged append at or above the cut is in the log.
        for seq in acked.iter().filter(|s| **s >= first) {
            let e = bus
                .events("m", *seq, *seq)
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
            assert!(matches!(e.body, EventBody::Message { .. }), "{seq}: {e:?}");
        }
        assert!(head >= *acked.last().unwrap());
    }
    assert_eq!(
        util::pg::cluster()
            .unwrap()
            .psql(
                url.rsplit('/').next().unwrap(),
                &format!("SELECT count(*) FROM mb_events WHERE seq < {last_cut}")
            )
            .unwrap(),
        "0"
    );
}

#[test]
fn two_buses_pruning_at_once_prune_once() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = cluster.database();
    let buses: Vec<MissionBus> = (0..4).map(|_| open(&url)).collect();
    team(&buses[0], "m");
    for i in 0..200 {
        publish(&buses[0], "m", i).unwrap();
    }
    // Every bus has the mission cached before the race.
    for b in &buses {
        assert_eq!(b.state("m").unwrap().head, 203);
    }
    let reports: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = buses
            .iter()
            .map(|b| s.spawn(move || b.prune("m", 150).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let written: Vec<_> = reports.iter().filter(|r| r.event.is_some()).collect();
    assert_eq!(written.len(), 1, "{reports:?}");
    assert_eq!(reports.iter().map(|r| r.removed).sum::<u64>(), 149);
    for b in &buses {
        assert_eq!(check(b, "m"), (150, 204));
    }
    // And again at different points: the furthest one wins, each record
    // removed once.
    let reports: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = buses
            .iter()
            .enumerate()
            .map(|(i, b)| s.spawn(move || b.prune("m", 160 + 10 * i as u64).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(reports.iter().map(|r| r.removed).sum::<u64>(), 190 - 150);
    for b in &buses {
        assert_eq!(check(b, "m").0, 190);
    }
}

#[test]
fn a_fork_racing_a_prune_succeeds_or_fails_with_a_clear_conflict() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = cluster.database();
    let (forker, pruner) = (open(&url), open(&url));
    team(&forker, "p");
    // A checkpoint every 5 events.
    let mut cps = BTreeMap::new();
    for i in 0..200 {
        if i % 5 == 0 {
            let cp = forker
                .create_checkpoint("p", "ada", &format!("cp {i}"), Json::empty_object(), vec![])
                .unwrap();
            cps.insert(cp.sequence, cp.id);
        } else {
            publish(&forker, "p", i).unwrap();
        }
    }
    let seqs: Vec<u64> = cps.keys().copied().collect();
    let outcomes = std::thread::scope(|s| {
        let p = s.spawn(|| {
            for seq in &seqs {
                pruner.prune("p", seq + 1).unwrap();
            }
        });
        let f = s.spawn(|| {
            let mut out = Vec::new();
            for (i, (seq, id)) in cps.iter().enumerate() {
                let name = format!("f{i}");
                out.push((name.clone(), *seq, forker.fork("p", id, &name)));
            }
            out
        });
        p.join().unwrap();
        f.join().unwrap()
    });
    let (mut ok, mut refused, mut pruned) = (0, 0, 0);
    for (name, seq, r) in outcomes {
        match r {
            Ok(events) => {
                ok += 1;
                let EventBody::MissionForked {
                    parent_sequence, ..
                } = &events[0].body
                else {
                    panic!("{name}: {:?}", events[0].body);
                };
                assert_eq!(*parent_sequence, seq);
                let report = forker.verify(&name).unwrap();
                assert!(report.is_intact(), "{name}: {:?}", report.problems);
                assert!(
                    report.notes.iter().any(|n| n.contains("parent 'p'")),
                    "{name}: {:?}",
                    report.notes
                );
            }
            Err(Error::Pruned {
                mission, sequence, ..
            }) => {
                refused += 1;
                pruned += 1;
                assert_eq!((mission.as_str(), sequence), ("p", seq));
                assert!(matches!(
                    forker.state(&name),
                    Err(Error::MissionNotFound { .. })
                ));
            }
            Err(Error::CheckpointNotFound { checkpoint_id, .. }) => {
                // Pruned (index row gone) before the fork looked it up.
                refused += 1;
                assert_eq!(checkpoint_id, cps[&seq]);
                assert!(matches!(
                    forker.state(&name),
                    Err(Error::MissionNotFound { .. })
                ));
            }
            Err(e) => panic!("{name} (sequence {seq}): {e}"),
        }
    }
    println!("forks: {ok} made, {refused} refused ({pruned} of them as Pruned)");
    assert_eq!(ok + refused, cps.len());
    check(&pruner, "p");
    check(&forker, "p");
}

#[test]
fn a_delete_racing_appends_leaves_a_tombstone_past_every_acknowledged_event() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = cluster.database();
    let (writer, deleter) = (open(&url), open(&url));
    team(&writer, "m");
    team(&writer, "other");
    let token = writer.issue_token("m", "ada").unwrap();
    let acked = std::thread::scope(|s| {
        let w = s.spawn(|| {
            let mut acked = Vec::new();
            for i in 0..10_000 {
                match publish(&writer, "m", i) {
                    Ok(seq) => acked.push(seq),
                    Err(Error::MissionNotFound { .. }) => break,
                    Err(e) => panic!("append {i}: {e}"),
                }
            }
            acked
        });
        while writer.state("m").map(|s| s.head).unwrap_or(0) < 40 {
            std::thread::yield_now();
        }
        let t = deleter.delete_mission("m", "ops").unwrap();
        (w.join().unwrap(), t)
    });
    let (acked, t) = acked;
    assert!(acked.len() < 10_000, "the appends saw the delete");
    assert!(t.head_sequence >= *acked.last().unwrap());
    for bus in [&writer, &deleter] {
        assert!(matches!(bus.state("m"), Err(Error::MissionNotFound { .. })));
        assert_eq!(bus.tombstones(Some("m")).unwrap(), vec![t.clone()]);
        assert!(bus.verify("other").unwrap().is_intact());
    }
    assert!(!matches!(deleter.authenticate(&token), Ok(Some(_))));
    let db = url.rsplit('/').next().unwrap();
    for table in ["mb_events", "mb_event_ids", "mb_tokens", "mb_anchors"] {
        let n = cluster
            .psql(
                db,
                &format!(
                    "SELECT count(*) FROM {table} WHERE mission = {}",
                    t_no(cluster, db)
                ),
            )
            .unwrap();
        assert_eq!(n, "0", "{table}");
    }
    // The id can be used again, from the other bus.
    team(&deleter, "m");
    assert_eq!(writer.state("m").unwrap().head, 3);
}

/// The mission number of the only tombstone.
fn t_no(cluster: &util::pg::Cluster, db: &str) -> String {
    cluster
        .psql(db, "SELECT mission_no FROM mb_tombstones")
        .unwrap()
}

#[test]
fn a_version_1_database_is_migrated_on_open_and_prunes() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = cluster.database();
    let db = url.rsplit('/').next().unwrap().to_string();
    {
        let bus = open(&url);
        team(&bus, "m");
        for i in 0..30 {
            publish(&bus, "m", i).unwrap();
        }
        bus.close();
    }
    // Back to what a version-1 build left.
    cluster
        .psql(
            &db,
            "DROP TABLE mb_anchors; DROP TABLE mb_tombstones; \
             UPDATE mb_meta SET value = '1' WHERE key = 'schema_version'",
        )
        .unwrap();
    let bus = open(&url);
    assert_eq!(
        cluster
            .psql(
                &db,
                "SELECT value FROM mb_meta WHERE key = 'schema_version'"
            )
            .unwrap(),
        "2"
    );
    assert_eq!(bus.prune("m", 20).unwrap().removed, 19);
    check(&bus, "m");
    bus.delete_mission("m", "ops").unwrap();
    assert_eq!(bus.tombstones(None).unwrap().len(), 1);
}

#[test]
fn archives_from_postgresql_restore_into_sled_and_postgresql_with_the_same_head_hash() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let bus = open(&cluster.database());
    team(&bus, "m");
    for i in 0..40 {
        publish(&bus, "m", i).unwrap();
    }
    let head_hash = bus.verify("m").unwrap().head_hash;
    // The prefix before 20, archived, then pruned; then the whole mission
    // of another id, archived unpruned.
    let mut prefix = Vec::new();
    let info = bus.archive("m", Some(20), &mut prefix).unwrap();
    let pruned = bus.prune("m", 20).unwrap().event.unwrap();
    let EventBody::HistoryPruned { anchor_hash, .. } = pruned.body else {
        panic!("{:?}", pruned.body);
    };
    assert_eq!(info.head_hash, anchor_hash);
    team(&bus, "w");
    for i in 0..10 {
        publish(&bus, "w", i).unwrap();
    }
    let w_hash = bus.verify("w").unwrap().head_hash;
    let mut whole = Vec::new();
    bus.archive("w", None, &mut whole).unwrap();
    // The suffix of the pruned mission chains onto the prefix archive.
    let mut suffix = Vec::new();
    let s = bus.archive("m", None, &mut suffix).unwrap();
    assert_eq!((s.first_sequence, s.prev_hash), (20, anchor_hash));
    let read = |name: &str, bytes: &[u8]| {
        mission_bus::read_archive(name, std::str::from_utf8(bytes).unwrap()).unwrap()
    };
    let chain = mission_bus::chain_archives(&[read("p", &prefix), read("s", &suffix)]).unwrap();
    assert_eq!(hex(&chain.head_hash), head_hash_after(&bus, "m"));
    assert_ne!(head_hash, head_hash_after(&bus, "m"));

    let sled_dir = tempfile::tempdir().unwrap();
    let sled = MissionBus::open(sled_dir.path()).unwrap();
    let pg2 = open(&cluster.database());
    for target in [&sled, &pg2] {
        let w = target.restore(vec![read("whole", &whole)]).unwrap();
        assert_eq!(hex(&w.head_hash), w_hash);
        assert_eq!(target.verify("w").unwrap().head_hash, w_hash);
        let m = target.restore(vec![read("prefix", &prefix)]).unwrap();
        assert_eq!(m.head_hash, anchor_hash);
        let r = target.verify("m").unwrap();
        assert!(r.is_intact(), "{:?}", r.problems);
        assert_eq!((r.head_sequence, r.head_hash), (19, hex(&anchor_hash)));
    }
}

fn head_hash_after(bus: &MissionBus, m: &str) -> String {
    bus.verify(m).unwrap().head_hash
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn two_buses_applying_retention_at_once_prune_each_mission_once() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = cluster.database();
    let (a, b) = (open(&url), open(&url));
    for m in ["m1", "m2", "m3"] {
        team(&a, m);
        for i in 0..60 {
            publish(&a, m, i).unwrap();
        }
        a.set_retention(
            m,
            "@operator",
            mission_bus::Retention {
                max_age_s: 0,
                max_count: 20,
            },
        )
        .unwrap();
    }
    // `b` never touched the missions: it finds them in the database.
    let now = chrono::Utc::now();
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| a.apply_retention(now));
        let hb = s.spawn(|| b.apply_retention(now));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    let mut pruned: Vec<String> = Vec::new();
    for (m, r) in ra.into_iter().chain(rb) {
        let r = r.unwrap_or_else(|e| panic!("{m}: {e}"));
        assert!(r.event.is_some());
        pruned.push(m);
    }
    pruned.sort();
    assert_eq!(pruned, ["m1", "m2", "m3"], "each mission pruned once");
    for m in ["m1", "m2", "m3"] {
        let (first, head) = check(&b, m);
        assert_eq!((first, head), (45, 65));
    }
}

#[test]
fn an_archive_larger_than_an_import_chunk_restores_into_postgresql() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sled = MissionBus::open(dir.path()).unwrap();
    team(&sled, "big");
    for _ in 0..13 {
        let items = (0..1000)
            .map(|i| {
                (
                    "ada".to_string(),
                    mission_bus::Action::Publish {
                        topic: "t".into(),
                        payload: Json::from_value(&json!(i)),
                    },
                )
            })
            .collect();
        sled.append_batch("big", items, None).unwrap();
    }
    let report = sled.verify("big").unwrap();
    let mut bytes = Vec::new();
    sled.archive("big", None, &mut bytes).unwrap();
    let archive = mission_bus::read_archive("big", std::str::from_utf8(&bytes).unwrap()).unwrap();
    let pg = open(&cluster.database());
    let info = pg.restore(vec![archive]).unwrap();
    assert_eq!(hex(&info.head_hash), report.head_hash);
    let r = pg.verify("big").unwrap();
    assert!(r.is_intact(), "{:?}", r.problems);
    assert_eq!((r.head_sequence, r.head_hash), (13_003, report.head_hash));
    assert_eq!(r.events_checked, 13_003);
}
