//! Property test of the handoff lifecycle and membership: random sequences
//! of offers, acceptances, heartbeats, completions, declines, releases,
//! expiries (at explicit times), removals, joins and reopens, checked
//! against a small model. After every step the live state must equal the
//! state rebuilt by replaying the log from scratch, and after a reopen the
//! state loaded from snapshot + tail must equal both.

mod util;

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use mission_bus::{HandoffStatus, MissionBus, NewMission};
use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

const NAMES: [&str; 4] = ["lead", "ada", "bob", "cy"];
/// Leases in the test are one minute; expiries run "now" or an hour ahead.
const LEASE_MS: u64 = 60_000;

#[derive(Debug, Clone)]
enum Op {
    Checkpoint { who: usize },
    Offer { from: usize, to: usize },
    Accept { who: usize, nth: usize },
    Heartbeat { who: usize, nth: usize },
    Complete { who: usize, nth: usize },
    Decline { who: usize, nth: usize },
    Release { who: usize, nth: usize },
    Expire { hour_later: bool },
    Remove { name: usize },
    Join { name: usize },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..4usize;
    let nth = 0..6usize;
    prop_oneof![
        who.clone().prop_map(|who| Op::Checkpoint { who }),
        (who.clone(), who.clone()).prop_map(|(from, to)| Op::Offer { from, to }),
        (who.clone(), nth.clone()).prop_map(|(who, nth)| Op::Accept { who, nth }),
        (who.clone(), nth.clone()).prop_map(|(who, nth)| Op::Heartbeat { who, nth }),
        (who.clone(), nth.clone()).prop_map(|(who, nth)| Op::Complete { who, nth }),
        (who.clone(), nth.clone()).prop_map(|(who, nth)| Op::Decline { who, nth }),
        (who.clone(), nth.clone()).prop_map(|(who, nth)| Op::Release { who, nth }),
        any::<bool>().prop_map(|hour_later| Op::Expire { hour_later }),
        (1..4usize).prop_map(|name| Op::Remove { name }),
        (1..4usize).prop_map(|name| Op::Join { name }),
        Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    members: Vec<String>,
    checkpoints: Vec<Uuid>,
    /// handoff -> (recipient, status), in offer order.
    handoffs: Vec<(Uuid, String, HandoffStatus)>,
}

impl Model {
    fn member(&self, n: &str) -> bool {
        self.members.iter().any(|m| m == n)
    }
    fn status(&mut self, id: Uuid) -> &mut HandoffStatus {
        &mut self.handoffs.iter_mut().find(|h| h.0 == id).unwrap().2
    }
}

fn check(bus: &MissionBus, model: &Model) {
    let live = bus.state("m").unwrap();
    assert_eq!(
        bus.rebuild_state("m").unwrap(),
        *live,
        "live state == replayed state"
    );
    for (id, _, status) in &model.handoffs {
        if let Some(h) = live.handoff(id) {
            assert_eq!(h.status, *status, "status of {id}");
        } else {
            assert!(!status.is_open(), "open handoff {id} missing");
        }
    }
}

fn run(ops: Vec<Op>, snapshot_every: u64) {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        util::builder_at(dir.path())
            .snapshot_every(snapshot_every)
            .open()
            .unwrap()
    };
    let mut bus = open();
    bus.create_mission(NewMission::new("m", "props").lead("lead"))
        .unwrap();
    let mut model = Model::default();
    model.members.push("lead".into());
    for n in &NAMES[1..] {
        bus.join("m", n, "write", json!({}).into()).unwrap();
        model.members.push(n.to_string());
    }
    for op in ops {
        // The handoff `nth` of the model, if any.
        let pick = |model: &Model, nth: usize| model.handoffs.get(nth).cloned();
        match op {
            Op::Checkpoint { who } => {
                let w = NAMES[who];
                let res = bus.create_checkpoint("m", w, "s", json!({}).into(), vec![]);
                assert_eq!(res.is_ok(), model.member(w), "{res:?}");
                if let Ok(e) = res {
                    model.checkpoints.push(e.id);
                }
            }
            Op::Offer { from, to } => {
                let (f, t) = (NAMES[from], NAMES[to]);
                let Some(cp) = model.checkpoints.last().copied() else {
                    continue;
                };
                let res = bus.handoff("m", f, t, cp, "n");
                assert_eq!(res.is_ok(), model.member(f) && model.member(t), "{res:?}");
                if let Ok(e) = res {
                    model
                        .handoffs
                        .push((e.id, t.into(), HandoffStatus::Offered));
                }
            }
            Op::Accept { who, nth }
            | Op::Heartbeat { who, nth }
            | Op::Complete { who, nth }
            | Op::Decline { who, nth }
            | Op::Release { who, nth } => {
                let Some((id, recipient, status)) = pick(&model, nth) else {
                    continue;
                };
                let w = NAMES[who];
                let mine = recipient == w && model.member(w);
                let (res, needs, next) = match op {
                    Op::Accept { .. } => (
                        bus.accept_handoff("m", w, id, LEASE_MS),
                        HandoffStatus::Offered,
                        HandoffStatus::Accepted,
                    ),
                    Op::Heartbeat { .. } => (
                        bus.heartbeat("m", w, id, LEASE_MS),
                        HandoffStatus::Accepted,
                        HandoffStatus::Accepted,
                    ),
                    Op::Complete { .. } => (
                        bus.complete_handoff("m", w, id, ""),
                        HandoffStatus::Accepted,
                        HandoffStatus::Completed,
                    ),
                    Op::Decline { .. } => (
                        bus.decline_handoff("m", w, id, ""),
                        HandoffStatus::Offered,
                        HandoffStatus::Declined,
                    ),
                    _ => (
                        bus.release_handoff("m", w, id, ""),
                        HandoffStatus::Accepted,
                        HandoffStatus::Released,
                    ),
                };
                assert_eq!(res.is_ok(), mine && status == needs, "{op:?}: {res:?}");
                if res.is_ok() {
                    *model.status(id) = next;
                }
            }
            Op::Expire { hour_later } => {
                let at = if hour_later {
                    Utc::now() + Duration::hours(1)
                } else {
                    Utc::now()
                };
                let expired = bus.expire_leases("m", at).unwrap();
                let accepted: Vec<Uuid> = model
                    .handoffs
                    .iter()
                    .filter(|h| h.2 == HandoffStatus::Accepted)
                    .map(|h| h.0)
                    .collect();
                if hour_later {
                    assert_eq!(expired.len(), accepted.len());
                    for id in accepted {
                        *model.status(id) = HandoffStatus::Expired;
                    }
                } else {
                    assert!(expired.is_empty(), "a one-minute lease lapsed at once");
                }
            }
            Op::Remove { name } => {
                let n = NAMES[name];
                let res = bus.remove_participant("m", "lead", n);
                assert_eq!(res.is_ok(), model.member(n), "{res:?}");
                if res.is_ok() {
                    model.members.retain(|m| m != n);
                    for h in model.handoffs.iter_mut() {
                        if h.1 == n && h.2.is_open() {
                            h.2 = HandoffStatus::Revoked;
                        }
                    }
                }
            }
            Op::Join { name } => {
                let n = NAMES[name];
                let res = bus.join("m", n, "write", json!({}).into());
                assert_eq!(res.is_ok(), !model.member(n), "{res:?}");
                if res.is_ok() {
                    model.members.push(n.into());
                }
            }
            Op::Reopen => {
                let before = (*bus.state("m").unwrap()).clone();
                drop(bus);
                bus = open();
                assert_eq!(*bus.state("m").unwrap(), before, "state across reopen");
            }
        }
        check(&bus, &model);
    }
    // A handoff state the model never saw would be a bug in the test.
    let states: BTreeMap<_, _> = model.handoffs.iter().map(|h| (h.0, h.2)).collect();
    assert_eq!(states.len(), model.handoffs.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn lifecycle_replay_equals_live(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops, 4);
    }

    #[test]
    fn lifecycle_replay_equals_live_without_snapshots(ops in proptest::collection::vec(op(), 1..25)) {
        run(ops, 0);
    }
}

/// Every test above, again on PostgreSQL (skipped, saying so, without it).
#[test]
fn postgres_half() {
    util::postgres_half();
}
