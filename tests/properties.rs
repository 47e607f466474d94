//! Model-based property test (in the style of sled's failpoint tests): random
//! sequences of operations, valid and invalid, with restarts, checked against
//! a plain in-memory model. After every step the live state must equal the
//! state rebuilt by replaying the log, also across reopen and with
//! snapshots on or off.

mod util;

use std::collections::BTreeMap;

use mission_bus::{Action, AppendOptions, MissionBus, NewMission};
use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

const NAMES: [&str; 5] = ["lead", "ada", "bob", "cy", "dee"];
const ROLES: [&str; 5] = ["lead", "write", "read", "audit", "wizard"];

#[derive(Debug, Clone)]
enum Op {
    Join {
        name: usize,
        role: usize,
    },
    ChangeRole {
        name: usize,
        role: usize,
    },
    Publish {
        sender: usize,
        expected_offset: Option<i8>,
    },
    Checkpoint {
        sender: usize,
    },
    Handoff {
        sender: usize,
        recipient: usize,
        checkpoint: Option<usize>,
    },
    Batch {
        sender: usize,
        n: usize,
    },
    Retry {
        nth: usize,
        same_content: bool,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..5usize, 0..5usize).prop_map(|(name, role)| Op::Join { name, role }),
        (0..5usize, 0..5usize).prop_map(|(name, role)| Op::ChangeRole { name, role }),
        (0..5usize, proptest::option::of(-1i8..=1)).prop_map(|(sender, expected_offset)| {
            Op::Publish {
                sender,
                expected_offset,
            }
        }),
        (0..5usize).prop_map(|sender| Op::Checkpoint { sender }),
        (0..5usize, 0..5usize, proptest::option::of(0..4usize)).prop_map(
            |(sender, recipient, checkpoint)| Op::Handoff {
                sender,
                recipient,
                checkpoint
            }
        ),
        (0..5usize, 1..4usize).prop_map(|(sender, n)| Op::Batch { sender, n }),
        (0..8usize, any::<bool>()).prop_map(|(nth, same_content)| Op::Retry { nth, same_content }),
        Just(Op::Reopen),
    ]
}

/// What the bus should do, kept as simply as possible.
#[derive(Default)]
struct Model {
    head: u64,
    roles: BTreeMap<String, String>,
    checkpoints: Vec<Uuid>,
    /// Publishes made with a caller-chosen id: (id, sender, payload, sequence).
    with_ids: Vec<(Uuid, String, i64, u64)>,
}

impl Model {
    fn can_write(&self, name: &str) -> bool {
        matches!(
            self.roles.get(name).map(String::as_str),
            Some("lead" | "write")
        )
    }
}

fn check(bus: &MissionBus, model: &Model) {
    let live = bus.state("m").unwrap();
    assert_eq!(live.head, model.head, "head");
    let roles: BTreeMap<String, String> = live
        .participants
        .values()
        .map(|p| (p.name.clone(), p.role.clone()))
        .collect();
    assert_eq!(roles, model.roles, "participants");
    assert_eq!(
        bus.rebuild_state("m").unwrap(),
        *live,
        "live state == replayed state"
    );
}

fn run(ops: Vec<Op>, snapshot_every: u64) {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        util::builder_at(dir.path())
            .snapshot_every(snapshot_every)
            .open()
            .unwrap_or_else(|e| panic!("reopen: {e:?}"))
    };
    let mut bus = open();
    bus.create_mission(NewMission::new("m", "prop").lead("lead"))
        .unwrap();
    let mut model = Model {
        head: 2,
        ..Model::default()
    };
    model.roles.insert("lead".into(), "lead".into());
    let mut payload = 0i64;

    for op in ops {
        payload += 1;
        match op {
            Op::Join { name, role } => {
                let (n, r) = (NAMES[name], ROLES[role]);
                let ok = !model.roles.contains_key(n) && r != "wizard";
                let res = bus.join("m", n, r, json!({"i": payload}).into());
                assert_eq!(res.is_ok(), ok, "join {n} as {r}: {res:?}");
                if ok {
                    model.head += 1;
                    model.roles.insert(n.into(), r.into());
                }
            }
            Op::ChangeRole { name, role } => {
                let (n, r) = (NAMES[name], ROLES[role]);
                let ok = model.roles.contains_key(n) && r != "wizard";
                let res = bus.append(
                    "m",
                    "lead",
                    Action::ChangeRole {
                        name: n.into(),
                        role: r.into(),
                    },
                    &AppendOptions::default(),
                );
                // `lead` may demote itself; after that only the operator manages.
                let lead_is_lead = model.roles.get("lead").map(String::as_str) == Some("lead");
                assert_eq!(
                    res.is_ok(),
                    ok && lead_is_lead,
                    "change {n} to {r}: {res:?}"
                );
                if res.is_ok() {
                    model.head += 1;
                    model.roles.insert(n.into(), r.into());
                }
            }
            Op::Publish {
                sender,
                expected_offset,
            } => {
                let s = NAMES[sender];
                let expected =
                    expected_offset.map(|o| (model.head as i64 + o as i64).max(0) as u64);
                let id = Uuid::now_v7();
                let opts = AppendOptions {
                    expected_sequence: expected,
                    event_id: Some(id),
                };
                let ok = model.can_write(s) && expected.is_none_or(|e| e == model.head);
                let res = bus.append(
                    "m",
                    s,
                    Action::Publish {
                        topic: "t".into(),
                        payload: json!(payload).into(),
                    },
                    &opts,
                );
                assert_eq!(
                    res.is_ok(),
                    ok,
                    "publish by {s} expecting {expected:?} at head {}: {res:?}",
                    model.head
                );
                if let Ok(e) = res {
                    model.head += 1;
                    assert_eq!(e.sequence, model.head);
                    model.with_ids.push((id, s.into(), payload, e.sequence));
                }
            }
            Op::Checkpoint { sender } => {
                let s = NAMES[sender];
                let res = bus.create_checkpoint("m", s, "cp", json!({"p": payload}).into(), vec![]);
                assert_eq!(
                    res.is_ok(),
                    model.can_write(s),
                    "checkpoint by {s}: {res:?}"
                );
                if let Ok(e) = res {
                    model.head += 1;
                    model.checkpoints.push(e.id);
                }
            }
            Op::Handoff {
                sender,
                recipient,
                checkpoint,
            } => {
                let (s, r) = (NAMES[sender], NAMES[recipient]);
                let cp = checkpoint.and_then(|i| model.checkpoints.get(i).copied());
                let ok = model.can_write(s) && model.roles.contains_key(r) && cp.is_some();
                let res = bus.handoff("m", s, r, cp.unwrap_or_else(Uuid::now_v7), "n");
                assert_eq!(res.is_ok(), ok, "handoff {s}->{r} of {cp:?}: {res:?}");
                if let Ok(h) = res {
                    model.head += 1;
                    let p = bus.latest_resume_packet("m", r).unwrap();
                    assert_eq!(
                        (p.handoff.map(|e| e.id), Some(p.checkpoint.id)),
                        (Some(h.id), cp)
                    );
                }
            }
            Op::Batch { sender, n } => {
                let s = NAMES[sender];
                let items = (0..n)
                    .map(|i| {
                        (
                            s.to_string(),
                            Action::Publish {
                                topic: "b".into(),
                                payload: json!([payload, i]).into(),
                            },
                        )
                    })
                    .collect();
                let res = bus.append_batch("m", items, Some(model.head));
                assert_eq!(res.is_ok(), model.can_write(s), "batch by {s}: {res:?}");
                if let Ok(events) = res {
                    let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
                    assert_eq!(
                        seqs,
                        (model.head + 1..=model.head + n as u64).collect::<Vec<_>>()
                    );
                    model.head += n as u64;
                }
            }
            Op::Retry { nth, same_content } => {
                let Some((id, s, p, seq)) = model.with_ids.get(nth).cloned() else {
                    continue;
                };
                let p = if same_content { p } else { p + 1_000_000 };
                let opts = AppendOptions {
                    expected_sequence: None,
                    event_id: Some(id),
                };
                let res = bus.append(
                    "m",
                    &s,
                    Action::Publish {
                        topic: "t".into(),
                        payload: json!(p).into(),
                    },
                    &opts,
                );
                if same_content {
                    assert_eq!(res.unwrap().sequence, seq, "a retry returns the original");
                } else {
                    assert!(
                        matches!(res, Err(mission_bus::Error::EventIdConflict { sequence, .. }) if sequence == seq)
                    );
                }
            }
            Op::Reopen => {
                drop(bus);
                bus = open();
            }
        }
        check(&bus, &model);
    }
    drop(bus);
    let bus = open();
    check(&bus, &model);
    assert!(bus.verify("m").unwrap().is_intact());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn live_state_equals_replay_with_snapshots(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, 3);
    }

    #[test]
    fn live_state_equals_replay_without_snapshots(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, 0);
    }
}

/// Every test above, again on PostgreSQL (skipped, saying so, without it).
#[test]
fn postgres_half() {
    util::postgres_half();
}
