//! History operations (issue 13) cut short by SIGKILL, on sled, and the
//! commit ledger around them.
//!
//! A child process (this test binary, selected by an environment variable)
//! opens a copy of a store holding a large mission (more records than one
//! removal transaction takes) and deletes or prunes it; the parent SIGKILLs
//! it at points spread over the time the operation takes (measured first by
//! a run left to finish), then:
//! - looks at sled's trees as the crash left them: the operation either has
//!   not happened (the mission whole, no tombstone, no anchor) or has (the
//!   tombstone without the mission; the anchor with its `history_pruned`
//!   event and every record from the anchor on), records below an anchor or
//!   of a deleted mission possibly left over, never anything in between;
//! - reopens it: the ledger check passes (no loss, no ledger damage),
//!   leftovers are gone (read raw from sled after closing), `verify` is
//!   clean for every mission, the state rebuilds, and the store takes
//!   writes (the operation can be run again when it had not happened).
//!
//! A third test: a `Durability::Relaxed` mission whose ledger head lags
//! (its heads reach the ledger only at a clean close) is pruned past that
//! head, sled made durable, the process SIGKILLed: on reopen the ledger's
//! head (at the anchor, or below it) is no loss.
//!
//! The seed of a run is printed; set `MISSION_BUS_HISTORY_CRASH_SEED` to
//! replay its kill schedule.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mission_bus::{Action, Durability, ErrorKind, EventBody, Json, MissionBus, NewMission};
use serde_json::json;

const CHILD_DIR: &str = "MISSION_BUS_HISTORY_CRASH_DIR";
const CHILD_OP: &str = "MISSION_BUS_HISTORY_CRASH_OP";
/// The large mission and a small one beside it.
const BIG: &str = "big";
const SMALL: &str = "small";
/// Events of the large mission: three removal transactions (5,000 each).
const EVENTS: u64 = 12_000;
/// Prune point: 10,999 records go (three removal transactions).
const BEFORE: u64 = 11_000;
/// Kills per operation, spread over its duration.
const KILLS: u64 = 6;
/// Not a synchronisation: a guard so a broken child cannot hang the test.
const GUARD: Duration = Duration::from_secs(180);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn seed() -> u64 {
    if let Ok(s) = std::env::var("MISSION_BUS_HISTORY_CRASH_SEED") {
        return s.parse().expect("MISSION_BUS_HISTORY_CRASH_SEED is a u64");
    }
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("random seed");
    u64::from_le_bytes(b) | 1
}

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).expect("stdout");
    out.write_all(b"\n").expect("stdout");
    out.flush().expect("stdout");
}

fn publish(i: u64) -> (String, Action) {
    (
        "lead".to_string(),
        Action::Publish {
            topic: "t".into(),
            payload: Json::from_value(&json!({"i": i, "pad": "p".repeat(60)})),
        },
    )
}

/// The store every trial starts from: `big` (created, then publishes and
/// a checkpoint every 1,000 events, up to `EVENTS`) and `small`.
fn build_base(dir: &Path) {
    let bus = MissionBus::open(dir).unwrap();
    bus.create_mission(NewMission::new(SMALL, "beside").lead("lead"))
        .unwrap();
    for i in 0..5 {
        bus.append_batch(SMALL, vec![publish(i)], None).unwrap();
    }
    bus.create_mission(NewMission::new(BIG, "large").lead("lead"))
        .unwrap();
    let mut head = bus.state(BIG).unwrap().head;
    while head < EVENTS {
        let n = (EVENTS - head).min(500);
        let mut items: Vec<(String, Action)> = (head..head + n - 1).map(publish).collect();
        items.push((
            "lead".to_string(),
            Action::Checkpoint {
                summary: format!("at {}", head + n),
                state: Json::from_value(&json!({"n": head + n})),
                artifacts: vec![],
            },
        ));
        head = bus
            .append_batch(BIG, items, None)
            .unwrap()
            .last()
            .unwrap()
            .sequence;
    }
    assert_eq!(bus.state(BIG).unwrap().head, EVENTS);
    bus.close();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The child: open, say START, run the operation, say DONE, and (for the
/// relaxed case) wait to be killed.
fn child(dir: &Path, op: &str) -> ! {
    if op == "relaxed-prune" {
        relaxed_child(dir);
    }
    let bus = MissionBus::open(dir).expect("child: open");
    emit("START");
    match op {
        "delete" => {
            bus.delete_mission(BIG, "@operator").expect("child: delete");
        }
        "prune" => {
            bus.prune(BIG, BEFORE).expect("child: prune");
        }
        other => panic!("unknown operation {other}"),
    }
    emit("DONE");
    bus.close();
    std::process::exit(0);
}

/// Spawn the child for `op` on `dir` (running the test `test`), returning
/// it and a channel of its whole output lines.
fn spawn(test: &str, dir: &Path, op: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_OP, op)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        let mut buf = String::new();
        while matches!(out.read_line(&mut buf), Ok(n) if n > 0) {
            if buf.ends_with('\n') && tx.send(buf.trim_end().to_string()).is_err() {
                break;
            }
            buf.clear();
        }
    });
    (child, rx)
}

fn wait_for(rx: &mpsc::Receiver<String>, want: &str) {
    let deadline = Instant::now() + GUARD;
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|e| panic!("child never said {want}: {e}"));
        // The harness may print "test NAME ... " on the same line.
        if line.ends_with(want) {
            return;
        }
    }
}

/// Run `op` on `dir`: to the end (`kill_after: None`, returning how long it
/// took), or SIGKILLed that long after START. Returns whether the child
/// said DONE before it died.
fn run(test: &str, dir: &Path, op: &str, kill_after: Option<Duration>) -> (bool, Duration) {
    let (mut child, rx) = spawn(test, dir, op);
    wait_for(&rx, "START");
    let t = Instant::now();
    match kill_after {
        None => {
            wait_for(&rx, "DONE");
            let took = t.elapsed();
            assert!(child.wait().unwrap().success());
            (true, took)
        }
        Some(d) => {
            std::thread::sleep(d);
            child.kill().unwrap();
            child.wait().unwrap();
            let done = rx.try_iter().any(|l| l.ends_with("DONE"));
            (done, t.elapsed())
        }
    }
}

/// What sled's trees hold for `big`, read raw (no `MissionBus`).
#[derive(Debug)]
struct Raw {
    /// `big`'s mission number, when the `missions` tree maps the id.
    no: Option<u64>,
    tombstones: usize,
    anchor_before: Option<u64>,
    /// Records under `no_hint`: count and lowest sequence.
    records: u64,
    lowest: Option<u64>,
    /// Index entries pointing into `no_hint`: `event_ids`, and the
    /// sequences `checkpoints` entries name.
    ids: u64,
    checkpoints: Vec<u64>,
}

fn raw(dir: &Path, no_hint: u64) -> Raw {
    let db = sled::open(dir).unwrap();
    let no = db
        .open_tree("missions")
        .unwrap()
        .get(BIG.as_bytes())
        .unwrap()
        .map(|v| u64::from_be_bytes(v[1..9].try_into().unwrap()));
    let mut prefix = BIG.as_bytes().to_vec();
    prefix.push(0);
    let tombstones = db
        .open_tree("tombstones")
        .unwrap()
        .scan_prefix(&prefix)
        .count();
    let key = no_hint.to_be_bytes();
    let anchor_before = db
        .open_tree("anchors")
        .unwrap()
        .get(key)
        .unwrap()
        .map(|v| u64::from_be_bytes(v[5..13].try_into().unwrap()));
    let events = db.open_tree("events").unwrap();
    let mut records = 0;
    let mut lowest = None;
    for item in events.scan_prefix(key) {
        let (k, _) = item.unwrap();
        let seq = u64::from_be_bytes(k[8..16].try_into().unwrap());
        lowest = Some(lowest.map_or(seq, |l: u64| l.min(seq)));
        records += 1;
    }
    let ids = db.open_tree("event_ids").unwrap().scan_prefix(key).count() as u64;
    let mut checkpoints: Vec<u64> = db
        .open_tree("checkpoints")
        .unwrap()
        .iter()
        .values()
        .map(|v| v.unwrap())
        .filter(|v| v[..8] == key)
        .map(|v| u64::from_be_bytes(v[8..16].try_into().unwrap()))
        .collect();
    checkpoints.sort_unstable();
    Raw {
        no,
        tombstones,
        anchor_before,
        records,
        lowest,
        ids,
        checkpoints,
    }
}

/// `big`'s number and what sled holds for it in the (closed) base store,
/// read from a copy.
fn base_raw(base: &Path, scratch: &Path) -> (u64, Raw) {
    copy_dir(base, scratch);
    let no = {
        let db = sled::open(scratch).unwrap();
        let v = db
            .open_tree("missions")
            .unwrap()
            .get(BIG.as_bytes())
            .unwrap()
            .unwrap();
        u64::from_be_bytes(v[1..9].try_into().unwrap())
    };
    let r = raw(scratch, no);
    assert_eq!((r.records, r.lowest), (EVENTS, Some(1)));
    assert_eq!(r.ids, EVENTS);
    (no, r)
}

/// `big`'s head hash in the (closed) base store.
fn base_head(base: &Path) -> (mission_bus::MissionState, String) {
    let bus = MissionBus::open(base).unwrap();
    let r = bus.verify(BIG).unwrap();
    assert!(r.is_intact(), "{:?}", r.problems);
    let s = (*bus.state(BIG).unwrap()).clone();
    bus.close();
    (s, r.head_hash)
}

/// The ledger check passes, nothing is lost, `small` is intact.
fn ledger_clean(bus: &MissionBus, what: &str) {
    assert!(
        bus.ledger_problem().is_none(),
        "{what}: {:?}",
        bus.ledger_problem()
    );
    assert!(
        bus.missions_with_loss().is_empty(),
        "{what}: {:?}",
        bus.missions_with_loss()
    );
    let r = bus.verify(SMALL).unwrap();
    assert!(r.is_intact(), "{what}: small: {:?}", r.problems);
    assert_eq!(bus.state(SMALL).unwrap().head, 7, "{what}");
}

fn outcome_table(outcomes: &std::collections::BTreeMap<String, u32>, op: &str) {
    eprintln!("{op}: outcomes of the kills (as the crash left sled): {outcomes:?}");
}

#[test]
fn sigkill_during_delete_of_a_large_mission_is_all_or_nothing() {
    const TEST: &str = "sigkill_during_delete_of_a_large_mission_is_all_or_nothing";
    if let (Ok(dir), Ok(op)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_OP)) {
        child(Path::new(&dir), &op);
    }
    let seed = seed();
    eprintln!("MISSION_BUS_HISTORY_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let root = tempfile::tempdir().unwrap();
    let base = root.path().join("base");
    build_base(&base);
    let (_, head_hash) = base_head(&base);
    let (no, full) = base_raw(&base, &root.path().join("probe"));

    // A run left to finish: how long the operation takes.
    let calib = root.path().join("calib");
    copy_dir(&base, &calib);
    let (_, took) = run(TEST, &calib, "delete", None);
    let mut outcomes = std::collections::BTreeMap::new();
    for trial in 0..=KILLS {
        let dir = root.path().join(format!("t{trial}"));
        copy_dir(&base, &dir);
        // Kill points spread over the operation (and a little past it).
        let frac = (trial as f64 + (rng.next() % 1000) as f64 / 1000.0) / KILLS as f64;
        let after = took.mul_f64(frac * 1.1);
        let (done, _) = run(TEST, &dir, "delete", Some(after));
        let what =
            format!("delete trial {trial} (killed {after:?} into a {took:?} delete, done: {done})");

        // As the crash left it: not deleted (whole), or deleted
        // (tombstone, no mission, records possibly left over).
        let scratch = root.path().join(format!("t{trial}-raw"));
        copy_dir(&dir, &scratch);
        let r = raw(&scratch, no);
        let deleted = match (r.no, r.tombstones) {
            (Some(n), 0) => {
                assert_eq!(n, no, "{what}");
                assert_eq!((r.records, r.lowest), (EVENTS, Some(1)), "{what}: {r:?}");
                assert_eq!(
                    (r.ids, &r.checkpoints),
                    (full.ids, &full.checkpoints),
                    "{what}"
                );
                false
            }
            (None, 1) => {
                assert_eq!(r.anchor_before, None, "{what}: {r:?}");
                assert!(!done || r.records == 0, "{what}: finished, yet {r:?}");
                true
            }
            _ => panic!("{what}: half a delete: {r:?}"),
        };
        *outcomes
            .entry(match (deleted, r.records) {
                (false, _) => "not deleted".to_string(),
                (true, 0) => "deleted, clean-up done".to_string(),
                (true, _) => "deleted, records left for the next open".to_string(),
            })
            .or_insert(0) += 1;

        let bus = MissionBus::open(&dir).unwrap();
        ledger_clean(&bus, &what);
        if deleted {
            assert_eq!(
                bus.state(BIG).unwrap_err().kind(),
                ErrorKind::NotFound,
                "{what}"
            );
            let t = bus.tombstones(Some(BIG)).unwrap();
            assert_eq!(t.len(), 1, "{what}");
            assert_eq!(t[0].head_sequence, EVENTS, "{what}");
            assert_eq!(hex(&t[0].head_hash), head_hash, "{what}");
        } else {
            // Whole, verified, and the delete can be run again.
            let r = bus.verify(BIG).unwrap();
            assert!(r.is_intact(), "{what}: {:?}", r.problems);
            assert_eq!(
                (r.head_sequence, r.head_hash.clone()),
                (EVENTS, head_hash.clone())
            );
            assert!(bus.tombstones(Some(BIG)).unwrap().is_empty(), "{what}");
            bus.delete_mission(BIG, "@operator").unwrap();
        }
        // The id can be created again and written.
        bus.create_mission(NewMission::new(BIG, "again").lead("lead"))
            .unwrap();
        bus.close();
        drop(bus);
        // Nothing of the old mission is left under its number.
        let r = raw(&dir, no);
        assert_eq!((r.records, r.ids), (0, 0), "{what}: {r:?}");
        assert!(r.checkpoints.is_empty(), "{what}: {r:?}");
        let bus = MissionBus::open(&dir).unwrap();
        ledger_clean(&bus, &what);
        assert_eq!(bus.state(BIG).unwrap().head, 2, "{what}");
        assert!(bus.verify(BIG).unwrap().is_intact(), "{what}");
        drop(bus);
        if trial == 0 {
            // The CLI as typed agrees.
            let d = util::Dir::new();
            d.mb(&["--data", dir.to_str().unwrap(), "verify"]).ok();
        }
    }
    outcome_table(&outcomes, "delete");
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn sigkill_during_prune_of_a_large_mission_is_all_or_nothing() {
    const TEST: &str = "sigkill_during_prune_of_a_large_mission_is_all_or_nothing";
    if let (Ok(dir), Ok(op)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_OP)) {
        child(Path::new(&dir), &op);
    }
    let seed = seed();
    eprintln!("MISSION_BUS_HISTORY_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let root = tempfile::tempdir().unwrap();
    let base = root.path().join("base");
    build_base(&base);
    let (state_before, head_hash) = base_head(&base);
    let (no, full) = base_raw(&base, &root.path().join("probe"));
    let kept_checkpoints: Vec<u64> = full
        .checkpoints
        .iter()
        .copied()
        .filter(|s| *s >= BEFORE)
        .collect();
    assert!(!kept_checkpoints.is_empty() && kept_checkpoints.len() < full.checkpoints.len());

    let calib = root.path().join("calib");
    copy_dir(&base, &calib);
    let (_, took) = run(TEST, &calib, "prune", None);
    let mut outcomes = std::collections::BTreeMap::new();
    for trial in 0..=KILLS {
        let dir = root.path().join(format!("t{trial}"));
        copy_dir(&base, &dir);
        let frac = (trial as f64 + (rng.next() % 1000) as f64 / 1000.0) / KILLS as f64;
        let after = took.mul_f64(frac * 1.1);
        let (done, _) = run(TEST, &dir, "prune", Some(after));
        let what =
            format!("prune trial {trial} (killed {after:?} into a {took:?} prune, done: {done})");

        let scratch = root.path().join(format!("t{trial}-raw"));
        copy_dir(&dir, &scratch);
        let r = raw(&scratch, no);
        assert_eq!(r.no, Some(no), "{what}");
        assert_eq!(r.tombstones, 0, "{what}");
        let pruned = match r.anchor_before {
            None => {
                assert_eq!((r.records, r.lowest), (EVENTS, Some(1)), "{what}: {r:?}");
                false
            }
            Some(b) => {
                assert_eq!(b, BEFORE, "{what}");
                // Every record from the anchor on, and the prune's own.
                let kept = EVENTS + 1 - BEFORE + 1;
                assert!(r.records >= kept, "{what}: {r:?}");
                assert!(!done || r.records == kept, "{what}: finished, yet {r:?}");
                true
            }
        };
        *outcomes
            .entry(match (pruned, r.lowest) {
                (false, _) => "not pruned".to_string(),
                (true, Some(BEFORE)) => "pruned, removal done".to_string(),
                (true, _) => "pruned, records below the anchor left".to_string(),
            })
            .or_insert(0) += 1;

        let bus = MissionBus::open(&dir).unwrap();
        ledger_clean(&bus, &what);
        let report = bus.verify(BIG).unwrap();
        assert!(report.is_intact(), "{what}: {:?}", report.problems);
        let state = (*bus.state(BIG).unwrap()).clone();
        assert_eq!(state, bus.rebuild_state(BIG).unwrap(), "{what}");
        if pruned {
            assert_eq!(state.head, EVENTS + 1, "{what}");
            assert_eq!(state.pruned_before, BEFORE, "{what}");
            assert_eq!(state.participants, state_before.participants, "{what}");
            let last = bus.events(BIG, EVENTS + 1, EVENTS + 1).unwrap().next();
            let last = last.expect("the prune's event").unwrap();
            assert!(
                matches!(last.body, EventBody::HistoryPruned { before, .. } if before == BEFORE),
                "{what}: {:?}",
                last.body
            );
            let first = bus
                .events(BIG, 1, u64::MAX)
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
            assert_eq!(first.sequence, BEFORE, "{what}");
        } else {
            assert_eq!(state, state_before, "{what}");
            assert_eq!(report.head_hash, head_hash, "{what}");
            assert_eq!(
                bus.prune(BIG, BEFORE).unwrap().removed,
                BEFORE - 1,
                "{what}"
            );
        }
        // Writes go on after the prune's event.
        let e = bus.append_batch(BIG, vec![publish(0)], None).unwrap();
        assert_eq!(e[0].sequence, EVENTS + 2, "{what}");
        bus.close();
        drop(bus);
        // Nothing is left below the anchor, index entries included.
        let r = raw(&dir, no);
        assert_eq!(r.lowest, Some(BEFORE), "{what}: {r:?}");
        assert_eq!(r.records, EVENTS + 2 - BEFORE + 1, "{what}: {r:?}");
        assert_eq!(r.ids, r.records, "{what}: {r:?}");
        // The checkpoints below the anchor are gone from the index.
        assert_eq!(r.checkpoints, kept_checkpoints, "{what}");
        let bus = MissionBus::open(&dir).unwrap();
        ledger_clean(&bus, &what);
        assert!(bus.verify(BIG).unwrap().is_intact(), "{what}");
        drop(bus);
        if trial == 0 {
            let d = util::Dir::new();
            d.mb(&["--data", dir.to_str().unwrap(), "verify"]).ok();
        }
    }
    outcome_table(&outcomes, "prune");
}

/// The relaxed child: a store whose ledger holds `big` at `EVENTS` (from
/// the clean close of the base); under `Relaxed`, `extra` more events and a
/// prune before `before` (neither reaches the ledger before a clean close),
/// then sled made durable (issuing a token flushes it), then wait for the
/// kill.
fn relaxed_child(dir: &Path) -> ! {
    let extra: u64 = std::env::var("MB_HC_EXTRA").unwrap().parse().unwrap();
    let before: u64 = std::env::var("MB_HC_BEFORE").unwrap().parse().unwrap();
    let bus = MissionBus::builder(dir)
        .durability(Durability::Relaxed)
        .flush_every_ms(None)
        .open()
        .expect("child: open");
    emit("START");
    for i in 0..extra {
        bus.append_batch(BIG, vec![publish(i)], None).unwrap();
    }
    bus.prune(BIG, before).expect("child: prune");
    bus.issue_token(BIG, "lead").expect("child: token");
    emit("DONE");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_relaxed_ledger_head_below_a_prune_anchor_is_no_loss() {
    const TEST: &str = "a_relaxed_ledger_head_below_a_prune_anchor_is_no_loss";
    if let (Ok(dir), Ok(op)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_OP)) {
        child(Path::new(&dir), &op);
    }
    let root = tempfile::tempdir().unwrap();
    let base = root.path().join("base");
    // A smaller mission is enough here: the ledger holds it at head 50.
    {
        let bus = MissionBus::open(&base).unwrap();
        bus.create_mission(NewMission::new(BIG, "relaxed").lead("lead"))
            .unwrap();
        // Created with its lead: sequences 1 and 2.
        bus.append_batch(BIG, (3..=50).map(publish).collect(), None)
            .unwrap();
        assert_eq!(bus.state(BIG).unwrap().head, 50);
        bus.close();
    }
    // The ledger's head 50 exactly at the anchor (before 51: the anchor
    // carries record 50's hash), and far below it (before 80).
    for (extra, before) in [(10u64, 51u64), (40, 80)] {
        let what = format!("{extra} relaxed events, pruned before {before}");
        let dir = root.path().join(format!("r{before}"));
        copy_dir(&base, &dir);
        let (mut child, rx) = {
            let mut c = Command::new(std::env::current_exe().unwrap());
            c.args([TEST, "--exact", "--nocapture", "--test-threads", "1"])
                .env(CHILD_DIR, &dir)
                .env(CHILD_OP, "relaxed-prune")
                .env("MB_HC_EXTRA", extra.to_string())
                .env("MB_HC_BEFORE", before.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            let mut child = c.spawn().unwrap();
            let (tx, rx) = mpsc::channel();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            std::thread::spawn(move || {
                let mut buf = String::new();
                while matches!(out.read_line(&mut buf), Ok(n) if n > 0) {
                    let _ = tx.send(buf.trim_end().to_string());
                    buf.clear();
                }
            });
            (child, rx)
        };
        wait_for(&rx, "DONE");
        child.kill().unwrap();
        child.wait().unwrap();

        // The ledger still holds head 50 (nothing else reached it).
        let bytes = std::fs::read(dir.join("ledger")).unwrap();
        let heads = ledger_heads_of_big(&bytes);
        assert_eq!(heads.last().copied(), Some(50), "{what}: {heads:?}");
        let bus = MissionBus::open(&dir).unwrap();
        assert!(bus.ledger_problem().is_none(), "{what}");
        assert!(
            bus.missions_with_loss().is_empty(),
            "{what}: {:?}",
            bus.missions_with_loss()
        );
        let r = bus.verify(BIG).unwrap();
        assert!(r.is_intact(), "{what}: {:?}", r.problems);
        let state = bus.state(BIG).unwrap();
        assert_eq!(
            (state.head, state.pruned_before),
            (50 + extra + 1, before),
            "{what}"
        );
        // Writes go on and reach the ledger; a later open agrees.
        bus.append_batch(BIG, vec![publish(0)], None).unwrap();
        bus.close();
        drop(bus);
        let bus = MissionBus::open(&dir).unwrap();
        assert!(bus.missions_with_loss().is_empty(), "{what}");
        assert_eq!(bus.state(BIG).unwrap().head, 50 + extra + 2, "{what}");
    }
    // The same ledger head with the anchor's hash tampered (same CRC
    // recomputed, so only the ledger can tell): reported as a loss at the
    // ledger's head, not accepted in silence.
    let tampered = root.path().join("tampered");
    copy_dir(&root.path().join("r51"), &tampered);
    tamper_anchor_hash(&tampered);
    // The ledger as the crash left it (head 50; the opens above moved it).
    std::fs::copy(base.join("ledger"), tampered.join("ledger")).unwrap();
    let bus = MissionBus::open(&tampered).unwrap();
    let lost = bus.missions_with_loss();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].0, BIG);
    assert_eq!(lost[0].2, 50, "{lost:?}");
}

/// The sequences the ledger's entries name for `big`, in file order
/// (head items of plain entries, and new heads of step entries).
fn ledger_heads_of_big(bytes: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut off = 16;
    while off + 12 <= bytes.len() {
        let h = &bytes[off..off + 12];
        if crc32fast::hash(&h[..8]).to_be_bytes() != h[8..12] {
            break;
        }
        let len = u32::from_be_bytes(h[..4].try_into().unwrap()) as usize;
        let body = &bytes[off + 12..off + 12 + len];
        let count = u32::from_be_bytes(body[..4].try_into().unwrap());
        let mut c = 4;
        for _ in 0..count {
            let kind = body[c];
            let n = u16::from_be_bytes(body[c + 1..c + 3].try_into().unwrap()) as usize;
            let id = &body[c + 3..c + 3 + n];
            c += 3 + n;
            let seq = || u64::from_be_bytes(body[c..c + 8].try_into().unwrap());
            match kind {
                1 | 3 if id == BIG.as_bytes() => out.push(seq()),
                _ => {}
            }
            c += match kind {
                1 | 5 => 40,
                2 => 56,
                3 => 80,
                4 => 8,
                k => panic!("item kind {k}"),
            };
        }
        off += 12 + len;
    }
    out
}

/// Change the anchor's chain hash of `big` in `dir` and fix its CRC.
fn tamper_anchor_hash(dir: &Path) {
    let db = sled::open(dir).unwrap();
    let no = db
        .open_tree("missions")
        .unwrap()
        .get(BIG.as_bytes())
        .unwrap()
        .unwrap();
    let anchors = db.open_tree("anchors").unwrap();
    let key = &no[1..9];
    let mut v = anchors.get(key).unwrap().unwrap().to_vec();
    v[13] ^= 0xff;
    let crc = crc32fast::hash(&v[5..]);
    v[1..5].copy_from_slice(&crc.to_be_bytes());
    anchors.insert(key, v).unwrap();
    db.flush().unwrap();
}
