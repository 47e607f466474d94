//! The commit ledger's cost (issue 9): the same store with and without the
//! ledger, in the same run, at the same durability on both sides
//! (`Durability::Sync`: sled flush + fdatasync of `db`, and with the ledger
//! its append + fdatasync), at 1 and at 64 concurrent appenders.
//!
//! The ledger is switched off with the `#[doc(hidden)]` builder switch
//! `commit_ledger(false)`, which exists for this benchmark only. Rounds
//! alternate the two variants (on/off, off/on, ...) on fresh stores so load
//! from other processes hits both alike; each figure is all events over all
//! time of its variant.
//!
//! Run with `cargo bench --bench ledger_cost`. Environment:
//! - `MB_LEDGER_ROUNDS` (default 4), `MB_LEDGER_ONE` events per round of the
//!   one-appender run (default 500), `MB_LEDGER_PER_THREAD` events per thread
//!   per round of the 64-appender run (default 40).

use std::sync::Barrier;
use std::time::{Duration, Instant};

use mission_bus::{Durability, Json, MissionBus, NewMission};

const THREADS: usize = 64;
const MISSIONS: usize = 8;

fn num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn payload(i: usize) -> Json {
    Json::parse(
        "payload",
        &format!(
            r#"{{"agent":"ada","step":{i},"text":"{}"}}"#,
            "x".repeat(80)
        ),
    )
    .expect("JSON")
}

fn open(dir: &std::path::Path, ledger: bool) -> MissionBus {
    let bus = MissionBus::builder(dir)
        .durability(Durability::Sync)
        .commit_ledger(ledger)
        .open()
        .expect("open");
    bus.create_mission(NewMission::new("solo", "bench").lead("lead"))
        .expect("create");
    for m in 0..MISSIONS {
        let m = format!("m{m}");
        bus.create_mission(NewMission::new(&m, "bench").lead("lead"))
            .expect("create");
        for w in 0..THREADS / MISSIONS {
            bus.join(&m, &format!("w{w}"), "write", Json::empty_object())
                .expect("join");
        }
    }
    bus
}

fn one(bus: &MissionBus, n: usize) -> Duration {
    let payloads: Vec<Json> = (0..n).map(payload).collect();
    let t = Instant::now();
    for p in payloads {
        bus.publish("solo", "lead", "status", p).expect("publish");
    }
    t.elapsed()
}

fn many(bus: &MissionBus, per: usize) -> Duration {
    let barrier = Barrier::new(THREADS + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (bus, barrier) = (bus, &barrier);
                s.spawn(move || {
                    let m = format!("m{}", t % MISSIONS);
                    let w = format!("w{}", t / MISSIONS);
                    let payloads: Vec<Json> = (0..per).map(payload).collect();
                    barrier.wait();
                    for p in payloads {
                        bus.publish(&m, &w, "status", p).expect("publish");
                    }
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        for h in handles {
            h.join().expect("appender");
        }
        t.elapsed()
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let rounds = num("MB_LEDGER_ROUNDS", 4);
    let n1 = num("MB_LEDGER_ONE", 500);
    let per = num("MB_LEDGER_PER_THREAD", 40);
    eprintln!("load average before: {}", loadavg());
    // [variant][workload]: time spent; variant 0 = ledger on, 1 = off.
    let mut spent = [[Duration::ZERO; 2]; 2];
    for r in 0..rounds {
        for k in 0..2 {
            let variant = (r + k) % 2;
            let dir = tempfile::tempdir().expect("temp dir");
            let bus = open(dir.path(), variant == 0);
            spent[variant][0] += one(&bus, n1);
            spent[variant][1] += many(&bus, per);
            bus.close();
        }
    }
    let rate = |v: usize, w: usize| {
        let events = if w == 0 { n1 } else { THREADS * per } * rounds;
        events as f64 / spent[v][w].as_secs_f64()
    };
    println!(
        "Durability::Sync on both sides; {rounds} alternating rounds; load average after: {}",
        loadavg()
    );
    println!("| appenders | with ledger (events/s) | without (events/s) | ledger cost |");
    println!("|---:|---:|---:|---:|");
    for (w, label) in [(0, 1), (1, THREADS)] {
        let (on, off) = (rate(0, w), rate(1, w));
        println!(
            "| {label} | {on:.0} | {off:.0} | {:+.1}% |",
            (off - on) / off * 100.0
        );
    }
}
