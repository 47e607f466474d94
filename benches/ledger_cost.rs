//! The commit ledger's cost (issue 9): the same store with and without the
//! ledger, in the same run, at the same durability on both sides
//! (`Durability::Sync`: sled flush + fdatasync of `db`, and with the ledger
//! its step entry's fdatasync in parallel), at 1 and at 64 concurrent
//! appenders.
//!
//! Variants (`MB_LEDGER_VARIANTS`, comma-separated, default all three):
//! - `off`: no ledger (the `#[doc(hidden)]` builder switch
//!   `commit_ledger(false)`, which exists for benchmarks only);
//! - `on`: the ledger as shipped (every entry grows the file);
//! - `prealloc`: the ledger with its file preallocated with written zeros
//!   (the hidden switch `ledger_preallocate(true)`), so a group's
//!   fdatasync overwrites existing blocks: what that buys.
//!
//! Interleaved finely so that the load of other processes, which comes and
//! goes within seconds, hits every variant alike: every round opens one
//! fresh store per variant, all at once; the one-appender run alternates
//! the variants EVENT BY EVENT, the 64-appender run SLICE BY SLICE (64
//! threads x a few events on one store, then the next store), taking every
//! order of the variants in turn (so each runs in every position and after
//! every other one equally often). Per round and variant: events over the time spent in that
//! variant. The report gives, per workload and variant, the median events/s
//! over rounds with the lowest and highest, and the cost against `off` as
//! the median over rounds of the cost within each round (`1 - v / off`,
//! paired: same round), with its lowest and highest.
//!
//! Run with `cargo bench --bench ledger_cost`. Environment:
//! - `MB_LEDGER_ROUNDS` (default 5);
//! - `MB_LEDGER_ONE`: events per variant per round of the one-appender run
//!   (default 600);
//! - `MB_LEDGER_SLICES` (default 8) and `MB_LEDGER_PER_THREAD` (default
//!   100): slices per variant per round of the 64-appender run, and events
//!   per appender per slice (51,200 events per variant per round).

use std::sync::Barrier;
use std::time::{Duration, Instant};

use mission_bus::{Durability, Json, MissionBus, NewMission};

const THREADS: usize = 64;
const MISSIONS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Off,
    On,
    Prealloc,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Off => "off",
            Variant::On => "on",
            Variant::Prealloc => "prealloc",
        }
    }

    fn parse(s: &str) -> Variant {
        match s.trim() {
            "off" => Variant::Off,
            "on" => Variant::On,
            "prealloc" => Variant::Prealloc,
            other => panic!("MB_LEDGER_VARIANTS: unknown variant {other:?} (off, on, prealloc)"),
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
        .ledger_preallocate(variant == Variant::Prealloc)
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

/// Every order of `0..n`: the variants take turns in each of them, so that
/// each variant runs in every position and right after every other one
/// equally often (a rotation alone keeps the same successor: whatever
/// one variant leaves behind, the device busy or a thread to wake, would
/// always land on the same next one).
fn orders(n: usize) -> Vec<Vec<usize>> {
    if n <= 1 {
        return vec![(0..n).collect()];
    }
    let mut out = Vec::new();
    for rest in orders(n - 1) {
        for at in 0..=rest.len() {
            let mut o = rest.clone();
            o.insert(at, n - 1);
            out.push(o);
        }
    }
    out
}

/// One appender: `n` events per store, alternating the stores event by
/// event (in every order in turn); the time spent in each.
fn one(buses: &[MissionBus], n: usize, orders: &[Vec<usize>], skew: usize) -> Vec<Duration> {
    let mut spent = vec![Duration::ZERO; buses.len()];
    for i in 0..n {
        for &v in &orders[(i + skew) % orders.len()] {
            let p = payload(i);
            let t = Instant::now();
            buses[v]
                .publish("solo", "lead", "status", p)
                .expect("publish");
            spent[v] += t.elapsed();
        }
    }
    spent
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
    let rounds = num("MB_LEDGER_ROUNDS", 5).max(1);
    let n1 = num("MB_LEDGER_ONE", 600);
    let slices = num("MB_LEDGER_SLICES", 8).max(1);
    let per = num("MB_LEDGER_PER_THREAD", 100);
    let variants: Vec<Variant> = std::env::var("MB_LEDGER_VARIANTS")
        .unwrap_or_else(|_| "off,on,prealloc".into())
        .split(',')
        .map(Variant::parse)
        .collect();
    let load_before = loadavg();
    eprintln!("load average before: {load_before}");
    // rates[variant][workload]: events/s, one per round.
    let mut rates: Vec<[Vec<f64>; 2]> = vec![[Vec::new(), Vec::new()]; variants.len()];
    let events = [n1, THREADS * per * slices];
    let orders = orders(variants.len());
    for r in 0..rounds {
        let dirs: Vec<tempfile::TempDir> = variants
            .iter()
            .map(|_| tempfile::tempdir().expect("temp dir"))
            .collect();
        let buses: Vec<MissionBus> = variants
            .iter()
            .zip(&dirs)
            .map(|(v, d)| open(d.path(), *v))
            .collect();
        let spent1 = one(&buses, n1, &orders, r);
        let mut spent64 = vec![Duration::ZERO; buses.len()];
        for slice in 0..slices {
            for &v in &orders[(slice + r * slices) % orders.len()] {
                spent64[v] += many(&buses[v], per);
            }
        }
        for bus in &buses {
            bus.close();
        }
        for (v, variant) in variants.iter().enumerate() {
            let (r1, r64) = (
                events[0] as f64 / spent1[v].as_secs_f64(),
                events[1] as f64 / spent64[v].as_secs_f64(),
            );
            rates[v][0].push(r1);
            rates[v][1].push(r64);
            eprintln!(
                "round {r} {:>10}: 1 appender {r1:>6.0}/s, 64 appenders {r64:>6.0}/s; load {}",
                variant.name(),
                loadavg()
            );
        }
    }
    println!(
        "Durability::Sync on every side; {rounds} rounds; per variant and round {n1} events \
         from 1 appender (variants alternating event by event), {slices} slices of \
         {THREADS} x {per} from 64 (alternating slice by slice); load average before \
         {load_before}, after {}",
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
                    let costs: Vec<f64> = rates[v][w]
                        .iter()
                        .zip(&rates[o][w])
                        .map(|(x, base)| (1.0 - x / base) * 100.0)
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
