//! History management through the library: fork lineage and its
//! verification, delete behind a tombstone, prune behind an anchor with
//! verify before and after, retention policies, and tampered anchors
//! detected. (CLI and HTTP: tests/history_edges.rs.)

mod util;

use mission_bus::{
    Action, AppendOptions, Error, EventBody, EventFilter, Json, MissionBus, NewMission, Retention,
};
use serde_json::json;

fn team(bus: &MissionBus, m: &str) {
    bus.create_mission(NewMission::new(m, "the title").lead("lena"))
        .unwrap();
    bus.join(m, "ada", "write", Json::from_value(&json!({"k": 1})))
        .unwrap();
}

fn publish(bus: &MissionBus, m: &str, n: usize) {
    for i in 0..n {
        bus.append(
            m,
            "ada",
            Action::Publish {
                topic: "t".into(),
                payload: Json::from_value(&json!(i)),
            },
            &AppendOptions::default(),
        )
        .unwrap();
    }
}

#[test]
fn fork_starts_from_the_parents_state_at_the_checkpoint_with_its_own_chain() {
    let dir = tempfile::tempdir().unwrap();
    let bus = util::bus_at(dir.path()).unwrap();
    team(&bus, "p");
    publish(&bus, "p", 3);
    let cp = bus
        .create_checkpoint(
            "p",
            "ada",
            "half way",
            Json::from_value(&json!({"x": 1})),
            vec![],
        )
        .unwrap();
    // After the checkpoint: another participant and more events.
    bus.join("p", "bob", "read", Json::empty_object()).unwrap();
    publish(&bus, "p", 2);

    let events = bus.fork("p", &cp.id, "f").unwrap();
    let EventBody::MissionForked {
        parent,
        parent_sequence,
        parent_hash,
        parent_checkpoint,
        ..
    } = &events[0].body
    else {
        panic!("first event is {:?}", events[0].body);
    };
    assert_eq!(parent, "p");
    assert_eq!(*parent_sequence, cp.sequence);
    assert_eq!(*parent_checkpoint, cp.id);
    let parent_report = bus.verify("p").unwrap();
    assert!(parent_report.is_intact());
    assert_ne!(hex(parent_hash), parent_report.head_hash);

    let state = bus.state("f").unwrap();
    let names: Vec<_> = state.participants.keys().cloned().collect();
    assert_eq!(names, ["ada", "lena"], "bob joined after the checkpoint");
    assert_eq!(state.participants["ada"].metadata.value(), json!({"k": 1}));
    assert_eq!(state.title, "the title");
    let lineage = state.parent.clone().unwrap();
    assert_eq!(
        (lineage.mission.as_str(), lineage.sequence),
        ("p", cp.sequence)
    );
    // The checkpoint is there to resume from (a new id, the same content).
    let copied = events.last().unwrap();
    let EventBody::Checkpoint { summary, .. } = &copied.body else {
        panic!("last fork event is {:?}", copied.body);
    };
    assert_eq!(summary, "half way");
    assert_eq!(copied.meta.causation_id, Some(cp.id.to_string()));
    let packet = bus.latest_resume_packet("f", "ada").unwrap();
    assert_eq!(packet.checkpoint.id, copied.id);
    assert_eq!(packet.forked_from.as_ref().unwrap().mission, "p");
    // Lineage in missions.
    let listed = bus.missions().unwrap();
    let f = listed.iter().find(|m| m.mission_id == "f").unwrap();
    assert_eq!(f.forked_from.as_ref().unwrap().sequence, cp.sequence);

    // The fork is its own mission: writes to one do not touch the other.
    publish(&bus, "f", 1);
    let report = bus.verify("f").unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    assert!(report
        .notes
        .iter()
        .any(|n| n.contains("parent 'p'") && n.contains("verified")));
    assert!(bus.verify("p").unwrap().is_intact());
    // Forking from a checkpoint of another mission is refused.
    assert!(matches!(
        bus.fork("f", &cp.id, "g"),
        Err(Error::CheckpointNotFound { .. })
    ));
    // An existing id is refused.
    assert!(matches!(
        bus.fork("p", &cp.id, "f"),
        Err(Error::MissionExists { .. })
    ));

    // Survives a reopen (replay rebuilds the same state).
    drop(bus);
    let bus = util::bus_at(dir.path()).unwrap();
    let rebuilt = bus.rebuild_state("f").unwrap();
    assert_eq!(*bus.state("f").unwrap(), rebuilt);

    // Parent deleted: verify says so and still passes.
    let t = bus.delete_mission("p", "auditor").unwrap();
    let report = bus.verify("f").unwrap();
    assert!(report.is_intact());
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("parent 'p' was deleted")),
        "{:?}",
        report.notes
    );
    assert_eq!(t.deleted_by, "auditor");
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_fork_whose_recorded_parent_hash_differs_is_a_verify_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bus = util::bus_at(dir.path()).unwrap();
    team(&bus, "p");
    let cp = bus
        .create_checkpoint("p", "ada", "s", Json::empty_object(), vec![])
        .unwrap();
    // A fork made elsewhere, imported with a lineage naming this parent
    // but a hash the parent does not have at that sequence.
    let mut log = {
        let other = tempfile::tempdir().unwrap();
        let b2 = util::bus_at(other.path()).unwrap();
        team(&b2, "p");
        let cp2 = b2
            .create_checkpoint("p", "ada", "s", Json::empty_object(), vec![])
            .unwrap();
        b2.fork("p", &cp2.id, "f").unwrap();
        let log: Vec<_> = b2
            .events("f", 1, u64::MAX)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        log
    };
    if let EventBody::MissionForked {
        parent_checkpoint, ..
    } = &mut log[0].body
    {
        *parent_checkpoint = cp.id;
    }
    bus.import_log(log, |_| {}).unwrap();
    let report = bus.verify("f").unwrap();
    assert!(!report.is_intact());
    assert!(
        report.problems[0].what.contains("parent 'p'"),
        "{:?}",
        report.problems
    );
}

#[test]
fn delete_leaves_a_tombstone_frees_the_id_and_keeps_other_missions() {
    let dir = tempfile::tempdir().unwrap();
    let bus = util::bus_at(dir.path()).unwrap();
    team(&bus, "a");
    team(&bus, "b");
    publish(&bus, "a", 50);
    let token = bus.issue_token("a", "ada").unwrap();
    let head = bus.verify("a").unwrap();
    assert!(head.is_intact());

    let t = bus.delete_mission("a", "@operator").unwrap();
    assert_eq!(t.head_sequence, head.head_sequence);
    assert_eq!(hex(&t.head_hash), head.head_hash);
    assert!(matches!(bus.state("a"), Err(Error::MissionNotFound { .. })));
    assert!(matches!(
        bus.verify("a"),
        Err(Error::MissionNotFound { .. })
    ));
    assert!(!matches!(bus.authenticate(&token), Ok(Some(_))));
    assert_eq!(bus.tombstones(Some("a")).unwrap(), vec![t.clone()]);
    assert!(bus.verify("b").unwrap().is_intact());
    assert_eq!(
        bus.missions()
            .unwrap()
            .iter()
            .map(|m| m.mission_id.clone())
            .collect::<Vec<_>>(),
        ["b"]
    );

    // Reopen: the ledger does not report the deleted events as lost.
    drop(bus);
    let bus = util::bus_at(dir.path()).unwrap();
    assert!(bus.missions_with_loss().is_empty());
    assert!(bus.ledger_problem().is_none());
    assert_eq!(bus.tombstones(None).unwrap().len(), 1);
    // The id can be created again; both lives are on the record.
    team(&bus, "a");
    assert_eq!(bus.state("a").unwrap().head, 3);
    bus.delete_mission("a", "@operator").unwrap();
    drop(bus);
    let bus = util::bus_at(dir.path()).unwrap();
    assert!(bus.missions_with_loss().is_empty());
    assert_eq!(bus.tombstones(Some("a")).unwrap().len(), 2);
}

#[test]
fn prune_keeps_a_verifiable_suffix_and_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let bus = util::bus_at(dir.path()).unwrap();
    team(&bus, "m");
    let cp = bus
        .create_checkpoint("m", "ada", "early", Json::empty_object(), vec![])
        .unwrap();
    publish(&bus, "m", 100);
    let before_report = bus.verify("m").unwrap();
    assert!(before_report.is_intact());
    let state_before = (*bus.state("m").unwrap()).clone();

    let report = bus.prune("m", 60).unwrap();
    assert_eq!(report.removed, 59);
    let event = report.event.unwrap();
    assert_eq!(event.sequence, state_before.head + 1);

    let after = bus.verify("m").unwrap();
    assert!(after.is_intact(), "{:?}", after.problems);
    assert_eq!(after.head_sequence, state_before.head + 1);
    // Everything from the cut on reads as before, chained.
    let kept: Vec<_> = bus
        .events("m", 1, u64::MAX)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(kept.first().unwrap().sequence, 60);
    assert_eq!(kept.last().unwrap().sequence, event.sequence);
    let page = bus
        .read_events(
            "m",
            None,
            &EventFilter {
                newest_first: true,
                ..EventFilter::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(page.events.last().unwrap().sequence, 60);
    // The state is unchanged except head and the prune point; replay from
    // the anchor rebuilds it.
    let state = bus.state("m").unwrap();
    assert_eq!(state.participants, state_before.participants);
    assert_eq!(state.messages, state_before.messages);
    assert_eq!(state.pruned_before, 60);
    assert_eq!(*state, bus.rebuild_state("m").unwrap());
    // The pruned checkpoint is gone from the index.
    assert!(bus.checkpoint_in("m", &cp.id).is_err());
    // Writes continue.
    publish(&bus, "m", 1);
    // Pruning again further, then at or below the point (a no-op).
    assert_eq!(bus.prune("m", 80).unwrap().removed, 20);
    assert!(bus.prune("m", 70).unwrap().event.is_none());
    assert!(bus.prune("m", 1).is_err());
    assert!(bus.prune("m", 10_000).is_err());
    drop(bus);
    let bus = util::bus_at(dir.path()).unwrap();
    assert!(bus.verify("m").unwrap().is_intact());
    assert!(bus.missions_with_loss().is_empty());
    assert_eq!(*bus.state("m").unwrap(), bus.rebuild_state("m").unwrap());
}

#[test]
fn retention_by_count_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let bus = util::bus_at(dir.path()).unwrap();
    team(&bus, "m");
    publish(&bus, "m", 30);
    bus.set_retention(
        "m",
        "@operator",
        Retention {
            max_age_s: 0,
            max_count: 10,
        },
    )
    .unwrap();
    let head = bus.state("m").unwrap().head;
    let done = bus.apply_retention(chrono::Utc::now());
    assert_eq!(done.len(), 1);
    let r = done[0].1.as_ref().unwrap();
    assert_eq!(r.before, head - 9);
    assert!(bus.verify("m").unwrap().is_intact());
    // By age: everything older than an hour from a time two hours ahead.
    team(&bus, "n");
    publish(&bus, "n", 5);
    bus.set_retention(
        "n",
        "lena",
        Retention {
            max_age_s: 3600,
            max_count: 0,
        },
    )
    .unwrap();
    let n_head = bus.state("n").unwrap().head;
    assert_eq!(bus.retention_cut("n", chrono::Utc::now()).unwrap(), None);
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    assert_eq!(bus.retention_cut("n", later).unwrap(), Some(n_head));
    // A writer may not set a policy.
    assert!(bus.set_retention("n", "ada", Retention::default()).is_err());
}

/// Every test above, again on PostgreSQL (skipped, saying so, without it).
#[test]
fn postgres_half() {
    util::postgres_half();
}
