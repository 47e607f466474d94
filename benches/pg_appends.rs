//! The PostgreSQL backend's durable appends against a plain
//! one-INSERT-per-transaction baseline on the same throwaway cluster
//! (`synchronous_commit=on`, `fsync=on`), in one run:
//!
//! 1. baseline: `pgbench`, each transaction ONE insert of a 117-byte bytea,
//!    1 and 64 clients;
//! 2. mission-bus on PostgreSQL (`Durability::Sync`): 1 and 64 threads
//!    appending messages (100-byte payload) to one mission through ONE
//!    `MissionBus` (its writer groups them: one transaction per commit
//!    group), a fresh database per level.
//!
//! Prints events/s, the ratio at 64 writers (goal: >= 1x the baseline) and
//! the 1-minute load average after each figure. Prints n/a and why when no
//! cluster can be started (PostgreSQL missing, no `postgres` user).
//!
//! Run: `cargo bench --bench pg_appends`. Knobs: `PG_BENCH_SECONDS` (per
//! level, default 10).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mission_bus::{Json, MissionBus, NewMission};
use serde_json::json;

#[path = "../tests/util/pg.rs"]
mod pg;

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Events per second of `writers` threads appending for `seconds`.
fn bus_rate(url: &str, writers: usize, seconds: u64) -> f64 {
    let bus = MissionBus::open_url(url).expect("open the PostgreSQL store");
    bus.create_mission(NewMission::new("bench", "pg appends").lead("lead"))
        .unwrap();
    bus.join("bench", "w", "write", Json::empty_object())
        .unwrap();
    let payload = "x".repeat(100);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let began = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..writers {
            let (bus, done, payload) = (bus.clone(), Arc::clone(&done), payload.clone());
            s.spawn(move || {
                while Instant::now() < deadline {
                    bus.publish("bench", "w", "t", json!(payload).into())
                        .expect("durable append");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let rate = done.load(Ordering::Relaxed) as f64 / began.elapsed().as_secs_f64();
    let report = bus.verify("bench").unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    rate
}

fn main() {
    let seconds: u64 = std::env::var("PG_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let cluster = match pg::try_cluster() {
        Ok(c) => c,
        Err(why) => {
            println!("pg_appends: n/a ({why})");
            return;
        }
    };
    println!(
        "pg_appends: {seconds} s per level, load average at start {}",
        load()
    );
    println!("{:<28} {:>7} {:>10}", "system", "conc.", "per s");
    let mut base64 = None;
    let mut ours64 = None;
    for n in [1usize, 64] {
        match cluster.pgbench_insert("postgres", n, seconds) {
            Ok(tps) => {
                println!(
                    "{:<28} {n:>7} {tps:>10.0}   load {}",
                    "baseline (1 INSERT/tx)",
                    load()
                );
                if n == 64 {
                    base64 = Some(tps);
                }
            }
            Err(why) => println!("{:<28} {n:>7}        n/a ({why})", "baseline (1 INSERT/tx)"),
        }
        let rate = bus_rate(&cluster.database(), n, seconds);
        println!(
            "{:<28} {n:>7} {rate:>10.0}   load {}",
            "mission-bus on PostgreSQL",
            load()
        );
        if n == 64 {
            ours64 = Some(rate);
        }
    }
    if let (Some(b), Some(o)) = (base64, ours64) {
        let ratio = o / b;
        println!(
            "{}: mission-bus at 64 writers >= 1x the baseline at 64 clients: {o:.0} vs {b:.0} = {ratio:.2}x",
            if ratio >= 1.0 { "PASS" } else { "FAIL" }
        );
    }
}
