//! The resuming agent's reads at two history lengths: a filtered read (the
//! last 100 of one sender's messages, newest first), a consumer resume
//! (the 100 events after a consumer's acknowledged position, near the
//! head), and a participant's latest checkpoint, each on a 1k-event and a
//! 1M-event mission. The issue's target: the 1M figures within 2x of the
//! 1k ones. Run with `cargo bench --bench resume` (the 1M mission is built
//! once by `import_log`, about half a minute).

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mission_bus::{
    Durability, Event, EventBody, EventFilter, EventType, Json, MissionBus, MissionConfig, OPERATOR,
};
use uuid::Uuid;

/// A mission of `n` events: `ada` publishes nine of every ten, `bob` one,
/// with a checkpoint by `bob` every 1000 events; `cy` has a consumer
/// acknowledged 100 events before the head.
fn build(bus: &MissionBus, mission: &str, n: u64) {
    let now = chrono::Utc::now();
    let ev = |seq: u64, sender: &str, body: EventBody| Event {
        id: Uuid::now_v7(),
        sequence: seq,
        timestamp: now,
        sender: sender.to_string(),
        body,
        meta: Default::default(),
    };
    let mut log = vec![ev(
        1,
        OPERATOR,
        EventBody::MissionCreated {
            mission_id: mission.into(),
            title: "bench".into(),
            config: MissionConfig::default(),
        },
    )];
    for (i, name) in ["ada", "bob", "cy"].iter().enumerate() {
        log.push(ev(
            i as u64 + 2,
            OPERATOR,
            EventBody::ParticipantJoined {
                name: name.to_string(),
                role: "write".into(),
                metadata: Json::empty_object(),
            },
        ));
    }
    for seq in 5..=n {
        let body = if seq % 1000 == 0 {
            EventBody::Checkpoint {
                summary: format!("step {seq}"),
                state: Json::parse("state", &format!(r#"{{"seq":{seq}}}"#)).unwrap(),
                artifacts: vec![],
            }
        } else {
            EventBody::Message {
                topic: format!("status/{}", seq % 10),
                payload: Json::parse(
                    "p",
                    &format!(r#"{{"seq":{seq},"text":"{}"}}"#, "x".repeat(80)),
                )
                .unwrap(),
            }
        };
        let sender = if seq % 10 == 0 { "bob" } else { "ada" };
        log.push(ev(seq, sender, body));
    }
    bus.import_log(log, |_| {}).expect("import");
    bus.ack(mission, "cy", "main", n - 100).expect("ack");
}

fn resume_reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = MissionBus::builder(dir.path())
        .durability(Durability::Relaxed)
        .open()
        .expect("open");
    let sizes = [("1k", 1_000u64), ("1m", 1_000_000u64)];
    for (name, n) in sizes {
        build(&bus, name, n);
    }
    let mut g = c.benchmark_group("resume");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30);
    for (name, _) in sizes {
        let filter = EventFilter {
            types: vec![EventType::Message],
            sender: Some("bob".into()),
            newest_first: true,
            limit: Some(100),
            ..EventFilter::default()
        };
        g.bench_function(format!("filtered_read_last_100_{name}"), |b| {
            b.iter(|| {
                let page = bus.read_events(name, Some("cy"), &filter, None).unwrap();
                assert_eq!(page.events.len(), 100.min(page.events.len()));
                black_box(page)
            })
        });
        let all = EventFilter {
            limit: Some(100),
            ..EventFilter::default()
        };
        g.bench_function(format!("consumer_resume_100_{name}"), |b| {
            b.iter(|| {
                let page = bus
                    .read_events(name, Some("cy"), &all, Some("main"))
                    .unwrap();
                assert_eq!(page.events.len(), 100);
                black_box(page)
            })
        });
        g.bench_function(format!("latest_checkpoint_{name}"), |b| {
            b.iter(|| black_box(bus.latest_checkpoint(name, "bob").unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, resume_reads);
criterion_main!(benches);
