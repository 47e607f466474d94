//! Criterion micro-benchmarks of the hot paths: durable append (single and
//! batch), lookup by checkpoint id, resume packet, replay decode and state
//! rebuild. Run with `cargo bench --bench micro`; the side-by-side
//! comparison with raw sled and SQLite is `cargo bench --bench compare`.
//!
//! Every group works on its own store in a temporary directory, filled
//! once (10k events: 117-byte JSON payloads, a checkpoint and a handoff
//! every 100 events) before measuring.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mission_bus::{Action, EventBody, Json, MissionBus, NewMission};
use uuid::Uuid;

const PAYLOAD_BYTES: usize = 117;
const FILL: usize = 10_000;
const FILL_BATCH: usize = 100;

fn payload(i: usize) -> Json {
    let head = format!(r#"{{"agent":"ada","step":{i},"text":""#);
    let pad = PAYLOAD_BYTES.saturating_sub(head.len() + 2);
    Json::parse("payload", &format!("{head}{}\"}}", "x".repeat(pad))).expect("JSON")
}

/// A store with mission `m` (lead, writers `ada` and `bob`) holding `FILL`
/// events; returns the checkpoint and handoff ids.
struct Filled {
    _dir: tempfile::TempDir,
    bus: MissionBus,
    checkpoints: Vec<Uuid>,
    handoffs: Vec<Uuid>,
}

fn filled() -> Filled {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = MissionBus::open(dir.path()).expect("open");
    bus.create_mission(NewMission::new("m", "micro").lead("lead"))
        .expect("create");
    for w in ["ada", "bob"] {
        bus.join("m", w, "write", Json::empty_object())
            .expect("join");
    }
    let (mut checkpoints, mut handoffs) = (Vec::new(), Vec::new());
    for b in 0..FILL / FILL_BATCH {
        let items: Vec<(String, Action)> = (0..FILL_BATCH - 2)
            .map(|i| {
                let action = Action::Publish {
                    topic: "status".into(),
                    payload: payload(b * FILL_BATCH + i),
                };
                ("ada".to_string(), action)
            })
            .collect();
        bus.append_batch("m", items, None).expect("batch");
        let cp = bus
            .create_checkpoint("m", "ada", "step", payload(b), Vec::new())
            .expect("checkpoint");
        let ho = bus
            .handoff("m", "ada", "bob", cp.id, "your turn")
            .expect("handoff");
        checkpoints.push(cp.id);
        handoffs.push(ho.id);
    }
    Filled {
        _dir: dir,
        bus,
        checkpoints,
        handoffs,
    }
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = MissionBus::open(dir.path()).expect("open");
    bus.create_mission(NewMission::new("m", "micro").lead("lead"))
        .expect("create");
    bus.join("m", "ada", "write", Json::empty_object())
        .expect("join");
    let mut g = c.benchmark_group("append");
    g.measurement_time(Duration::from_secs(5)).sample_size(20);
    g.throughput(Throughput::Elements(1));
    g.bench_function("publish_durable", |b| {
        b.iter_batched(
            || payload(1),
            |p| bus.publish("m", "ada", "status", p).expect("publish"),
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("batch_100_durable", |b| {
        b.iter_batched(
            || {
                (0..100)
                    .map(|i| {
                        let action = Action::Publish {
                            topic: "status".into(),
                            payload: payload(i),
                        };
                        ("ada".to_string(), action)
                    })
                    .collect::<Vec<_>>()
            },
            |items| bus.append_batch("m", items, None).expect("batch"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn lookups(c: &mut Criterion) {
    let f = filled();
    let mut g = c.benchmark_group("lookup");
    g.measurement_time(Duration::from_secs(3));
    let mut i = 0usize;
    g.bench_function("checkpoint_by_id", |b| {
        b.iter(|| {
            i = (i + 37) % f.checkpoints.len();
            black_box(f.bus.checkpoint(&f.checkpoints[i]).expect("checkpoint"))
        })
    });
    g.bench_function("resume_packet", |b| {
        b.iter(|| {
            i = (i + 37) % f.handoffs.len();
            black_box(f.bus.resume_packet(&f.handoffs[i]).expect("packet"))
        })
    });
    g.bench_function("latest_resume_packet", |b| {
        b.iter(|| black_box(f.bus.latest_resume_packet("m", "bob").expect("packet")))
    });
    g.finish();
}

fn replay(c: &mut Criterion) {
    let f = filled();
    let head = f.bus.state("m").expect("state").head;
    let mut g = c.benchmark_group("replay");
    g.measurement_time(Duration::from_secs(5)).sample_size(20);
    g.throughput(Throughput::Elements(head));
    g.bench_function("decode_10k", |b| {
        b.iter(|| {
            let mut messages = 0u64;
            for e in f.bus.events("m", 1, u64::MAX).expect("events") {
                if let EventBody::Message { .. } = e.expect("event").body {
                    messages += 1;
                }
            }
            black_box(messages)
        })
    });
    g.bench_function("rebuild_state_10k", |b| {
        b.iter(|| black_box(f.bus.rebuild_state("m").expect("rebuild")))
    });
    g.finish();
}

criterion_group!(benches, append, lookups, replay);
criterion_main!(benches);
