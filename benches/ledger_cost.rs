//! The commit ledger's cost (issue 9): the same store with and without the
//! ledger, in the same run, at the same durability on both sides
//! (`Durability::Sync`: sled flush + fdatasync of `db`, and with the ledger
//! its step entry's fdatasync in parallel), at 1 and at 64 concurrent
//! appenders.
//!
//! Variants (`MB_LEDGER_VARIANTS`, comma-separated, default all three):
//! - `off`: no ledger (the `#[doc(hidden)]` builder switch
//!   `commit_ledger(false)`, which exists for this benchmark only);
//! - `on`: the ledger as shipped (its file preallocated with written zeros);
//! - `noprealloc`: the ledger with every entry growing the file (the hidden
//!   switch `ledger_preallocate(false)`), to measure what preallocation buys.
//!
//! Every round runs every variant once, on a fresh store each, in an order
//! rotated from round to round (so each variant takes each position equally
//! often and load from other processes hits them alike). A round of a
//! variant is a one-appender run then a 64-appender run. Per workload the
//! report gives, per variant, the median events/s over rounds with the
//! lowest and highest, and the ledger's cost as the median over rounds of
//! the cost within each round (`1 - on / off`, paired: same round), with
//! its lowest and highest.
//!
//! Run with `cargo bench --bench ledger_cost`. Environment:
//! - `MB_LEDGER_ROUNDS` (default 7);
//! - `MB_LEDGER_ONE`: events per round of the one-appender run (default
//!   1000, about 0.5 s on a quiet machine);
//! - `MB_LEDGER_PER_THREAD`: events per appender per round of the
//!   64-appender run (default 800: 51,200 events, about 1.5 s).

use std::sync::Barrier;
use std::time::{Duration, Instant};

use mission_bus::{Durability, Json, MissionBus, NewMission};

const THREADS: usize = 64;
const MISSIONS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Off,
    On,
    NoPrealloc,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Off => "off",
            Variant::On => "on",
            Variant::NoPrealloc => "noprealloc",
        }
    }

    fn parse(s: &str) -> Variant {
        match s.trim() {
            "off" => Variant::Off,
            "on" => Variant::On,
            "noprealloc" => Variant::NoPrealloc,
            other => panic!("MB_LEDGER_VARIANTS: unknown variant {other:?} (off, on, noprealloc)"),
        }
    }
}

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

fn open(dir: &std::path::Path, variant: Variant) -> MissionBus {
    let bus = MissionBus::builder(dir)
        .durability(Durability::Sync)
        .commit_ledger(variant != Variant::Off)
        .ledger_preallocate(variant != Variant::NoPrealloc)
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

/// Median, lowest and highest of `xs` (not empty).
fn spread(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    let median = if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    (median, xs[0], xs[n - 1])
}

fn main() {
    let rounds = num("MB_LEDGER_ROUNDS", 7).max(1);
    let n1 = num("MB_LEDGER_ONE", 1000);
    let per = num("MB_LEDGER_PER_THREAD", 800);
    let variants: Vec<Variant> = std::env::var("MB_LEDGER_VARIANTS")
        .unwrap_or_else(|_| "off,on,noprealloc".into())
        .split(',')
        .map(Variant::parse)
        .collect();
    let load_before = loadavg();
    eprintln!("load average before: {load_before}");
    // rates[variant][workload][round]: events/s.
    let mut rates: Vec<[Vec<f64>; 2]> = vec![[Vec::new(), Vec::new()]; variants.len()];
    let events = [n1, THREADS * per];
    for r in 0..rounds {
        for k in 0..variants.len() {
            let v = (r + k) % variants.len();
            let dir = tempfile::tempdir().expect("temp dir");
            let bus = open(dir.path(), variants[v]);
            let t1 = one(&bus, n1);
            let t64 = many(&bus, per);
            bus.close();
            let (r1, r64) = (
                events[0] as f64 / t1.as_secs_f64(),
                events[1] as f64 / t64.as_secs_f64(),
            );
            rates[v][0].push(r1);
            rates[v][1].push(r64);
            eprintln!(
                "round {r} {:>10}: 1 appender {r1:>6.0}/s ({:.2} s), 64 appenders {r64:>6.0}/s ({:.2} s); load {}",
                variants[v].name(),
                t1.as_secs_f64(),
                t64.as_secs_f64(),
                loadavg()
            );
        }
    }
    println!(
        "Durability::Sync on every side; {rounds} rounds (variant order rotated); \
         {n1} events from 1 appender, {THREADS} x {per} from 64 per round; \
         load average before {load_before}, after {}",
        loadavg()
    );
    println!("| appenders | variant | events/s median (lowest-highest) | cost vs off, median of rounds (lowest-highest) |");
    println!("|---:|---|---:|---:|");
    let off = variants.iter().position(|v| *v == Variant::Off);
    for (w, label) in [(0, 1), (1, THREADS)] {
        for (v, variant) in variants.iter().enumerate() {
            let (med, lo, hi) = spread(rates[v][w].clone());
            let cost = match off {
                Some(o) if o != v => {
                    let costs: Vec<f64> = (0..rounds)
                        .map(|r| (1.0 - rates[v][w][r] / rates[o][w][r]) * 100.0)
                        .collect();
                    let (c, clo, chi) = spread(costs);
                    format!("{c:+.1} % ({clo:+.1} to {chi:+.1})")
                }
                _ => "-".to_string(),
            };
            println!(
                "| {label} | {} | {med:.0} ({lo:.0}-{hi:.0}) | {cost} |",
                variant.name()
            );
        }
    }
}
