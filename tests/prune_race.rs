//! A reader racing a prune: a stream of a mission's events that was
//! started before a prune removed the records it was about to read ends
//! with `Error::Pruned` (a conflict: exit 5, HTTP 409) naming the mission,
//! the sequence it needed and the first sequence kept, never with a
//! "record missing" corruption (an auditor's alarm). On sled (a scan
//! started before the prune) and on PostgreSQL (a chunked scan, and a
//! reader in another bus process on the same database), the PostgreSQL
//! half skipped, saying so, where PostgreSQL cannot run.

mod util;

use mission_bus::{Action, Error, ErrorKind, EventFilter, EventIter, Json, MissionBus, NewMission};
use serde_json::json;

const EVENTS: u64 = 3_000;
const CUT: u64 = 2_500;

fn fill(bus: &MissionBus, m: &str) {
    bus.create_mission(NewMission::new(m, "race").lead("lead"))
        .unwrap();
    while bus.state(m).unwrap().head < EVENTS {
        let items = (0..500)
            .map(|i| {
                (
                    "lead".to_string(),
                    Action::Publish {
                        topic: "t".into(),
                        payload: Json::from_value(&json!({"i": i, "pad": "x".repeat(64)})),
                    },
                )
            })
            .collect();
        bus.append_batch(m, items, None).unwrap();
    }
}

/// Read the rest of `it` (which has delivered up to `last`): every event
/// in order, then `Pruned` for the first record the prune took.
fn finish_after_prune(mut it: EventIter, m: &str, mut last: u64) {
    let err = loop {
        match it.next() {
            Some(Ok(e)) => {
                assert_eq!(e.sequence, last + 1, "in order, no gap");
                last = e.sequence;
            }
            Some(Err(e)) => break e,
            None => panic!("the stream ended at {last} without a word about the prune"),
        }
    };
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    match &err {
        Error::Pruned {
            mission,
            sequence,
            first,
        } => {
            assert_eq!(mission, m);
            assert_eq!(*first, CUT);
            assert_eq!(*sequence, last + 1);
            assert!(*sequence < CUT);
        }
        other => panic!("expected Pruned, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(m) && text.contains(&CUT.to_string()),
        "{text}"
    );
}

#[test]
fn sled_a_scan_started_before_a_prune_ends_with_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let bus = MissionBus::open(dir.path()).unwrap();
    fill(&bus, "m");
    let mut it = bus.events("m", 1, u64::MAX).unwrap();
    for s in 1..=5 {
        assert_eq!(it.next().unwrap().unwrap().sequence, s);
    }
    let r = bus.prune("m", CUT).unwrap();
    assert_eq!(r.before, CUT);
    finish_after_prune(it, "m", 5);
    // A stream started after the prune reads from the cut, as before.
    let first = bus.events("m", 1, u64::MAX).unwrap().next().unwrap();
    assert_eq!(first.unwrap().sequence, CUT);
    assert!(bus.verify("m").unwrap().problems.is_empty());
}

#[test]
fn postgres_a_reader_racing_a_prune_gets_pruned_not_corruption() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = cluster.database();
    let writer = MissionBus::open_url(&url).unwrap();
    fill(&writer, "m");
    // Another bus (another process's view) streams the mission...
    let reader = MissionBus::open_url(&url).unwrap();
    let mut it = reader.replay("m", "lead", 1).unwrap();
    for s in 1..=5 {
        assert_eq!(it.next().unwrap().unwrap().sequence, s);
    }
    // ... while the first prunes it (in one transaction on PostgreSQL).
    writer.prune("m", CUT).unwrap();
    finish_after_prune(it, "m", 5);
    // The operator's view in the pruning bus itself races the same way.
    fill(&writer, "n");
    let mut it = writer.events("n", 1, u64::MAX).unwrap();
    assert_eq!(it.next().unwrap().unwrap().sequence, 1);
    writer.prune("n", CUT).unwrap();
    finish_after_prune(it, "n", 1);
    // A page read newest first by a bus that learnt the mission before
    // another process pruned it: the kept events down to the cut, and no
    // next page (not a "record missing" below the cut).
    fill(&writer, "p");
    assert_eq!(reader.state("p").unwrap().first_sequence(), 1);
    writer.prune("p", CUT).unwrap();
    let filter = EventFilter {
        newest_first: true,
        limit: Some(1_000),
        ..EventFilter::default()
    };
    let page = reader
        .read_events("p", None, &filter, None)
        .map_err(|e| e.to_string())
        .unwrap();
    let seqs: Vec<u64> = page.events.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs.last(), Some(&CUT));
    assert_eq!(seqs.len() as u64, page.head_sequence + 1 - CUT);
    assert_eq!(page.next, None);
}
