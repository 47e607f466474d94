//! The PostgreSQL backend's durable appends against a plain
//! one-INSERT-per-transaction baseline on the same throwaway cluster
//! (`synchronous_commit=on`, `fsync=on`), in one run:
//!
//! 1. baseline: `pgbench`, each transaction ONE insert of a 117-byte bytea,
//!    1 and 64 clients;
//! 2. mission-bus on PostgreSQL (`Durability::Sync`, i.e. the session's
//!    `synchronous_commit=on`): 1 and 64 threads appending messages
//!    (100-byte payload) to one mission through ONE `MissionBus` (its
//!    writer groups them: one transaction per commit group), a fresh
//!    database per round.
//!
//! The machine may be busy: each level alternates baseline and mission-bus
//! rounds (`PG_BENCH_REPEATS`, default 3), and prints every round, the
//! medians, the spread and the ratio of the medians (goals: >= 0.5x at 1
//! writer, >= 1x at 64), with the 1-minute load average after each round.
//! Prints n/a and why when no cluster can be started (PostgreSQL missing,
//! no `postgres` user).
//!
//! Run: `cargo bench --bench pg_appends`. Knobs: `PG_BENCH_SECONDS` (per
//! round, default 10), `PG_BENCH_REPEATS`, `PG_BENCH_LEVELS` (e.g. `1`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mission_bus::{Durability, Json, MissionBus, NewMission, StoreUrl};
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
fn bus_rate(url: &str, writers: usize, seconds: u64, durability: Durability) -> f64 {
    let bus = MissionBus::builder_url(StoreUrl::parse(url).unwrap())
        .durability(durability)
        .open()
        .expect("open the PostgreSQL store");
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

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = knob("PG_BENCH_SECONDS", 10);
    let repeats = knob("PG_BENCH_REPEATS", 3).max(1);
    let levels: Vec<usize> = std::env::var("PG_BENCH_LEVELS")
        .ok()
        .map(|s| s.split(',').filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 64]);
    // A diagnostic: `PG_BENCH_COMMIT=off` runs both sides with
    // `synchronous_commit=off` (the bus at `Durability::Relaxed`), which
    // leaves out the WAL flush and shows what round trips cost.
    let sync = std::env::var("PG_BENCH_COMMIT").as_deref() != Ok("off");
    let cluster = match pg::try_cluster() {
        Ok(c) => c,
        Err(why) => {
            println!("pg_appends: n/a ({why})");
            return;
        }
    };
    let durability = if sync {
        Durability::Sync
    } else {
        cluster
            .psql(
                "postgres",
                "ALTER DATABASE postgres SET synchronous_commit = off",
            )
            .expect("set the baseline's synchronous_commit");
        Durability::Relaxed
    };
    println!(
        "pg_appends: {seconds} s per round, {repeats} rounds per level, alternating; \
         synchronous_commit={} both sides; load average at start {}",
        if sync { "on" } else { "off" },
        load()
    );
    println!("{:<28} {:>7} {:>10}", "system", "conc.", "per s");
    for n in levels {
        let (mut base, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            match cluster.pgbench_insert("postgres", n, seconds) {
                Ok(tps) => {
                    println!(
                        "{:<28} {n:>7} {tps:>10.0}   load {}",
                        "baseline (1 INSERT/tx)",
                        load()
                    );
                    base.push(tps);
                }
                Err(why) => println!("{:<28} {n:>7}        n/a ({why})", "baseline (1 INSERT/tx)"),
            }
            let rate = bus_rate(&cluster.database(), n, seconds, durability);
            println!(
                "{:<28} {n:>7} {rate:>10.0}   load {}",
                "mission-bus on PostgreSQL",
                load()
            );
            ours.push(rate);
        }
        if base.is_empty() {
            continue;
        }
        let spread = |v: &[f64]| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            format!("{lo:.0}-{hi:.0}")
        };
        let (b, o) = (median(&base), median(&ours));
        let goal = if n == 1 { 0.5 } else { 1.0 };
        let ratio = o / b;
        println!(
            "{}: {n} writer(s): mission-bus median {o:.0}/s ({}) vs baseline median {b:.0}/s ({}) \
             = {ratio:.2}x (goal >= {goal}x)",
            if ratio >= goal { "PASS" } else { "FAIL" },
            spread(&ours),
            spread(&base),
        );
    }
}
