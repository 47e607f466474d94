//! Fault injection on the real files: "nothing acknowledged is ever lost in
//! silence".
//!
//! A few base stores are built once: `clean` (closed cleanly), `killed`
//! (the raw files as a SIGKILLed writer left them, not reopened) and
//! `recovered` (the same after one open and clean close). Each trial copies
//! one base into its own tempdir, damages sled's `db` file (a flipped bit,
//! a zeroed 4 KiB block, or a truncation) and runs the CLI as typed, each
//! command under a timeout:
//!
//! - `verify` must end in exit 0 with every mission's export identical to
//!   the undamaged store's up to a head no lower than the acknowledged one
//!   (no effect on acknowledged events: a SIGKILLed writer may leave durable
//!   events nobody was told about, which sled's recovery may drop), or in
//!   exit 6 with an error that
//!   names the damaged file or mission (detected, located). Anything else
//!   (another exit code, a panic / exit 101, a timeout, an export that
//!   differs after exit 0) fails the trial. Every acknowledged event is in
//!   the undamaged store's export, checked when the bases are built.
//! - after a detected fault, a `publish` either is refused or gets a
//!   sequence above every acknowledged one (never a reused sequence);
//! - `salvage`, run as an operator would (after `verify` and `publish` have
//!   opened the damaged store), must exit 0 or 6 and recover, with identical
//!   content, every event that has an intact copy outside the damaged bytes;
//!   its exit 0 must mean every acknowledged event is in the new store.
//!   (sled's recovery on open cuts its log at the damage; the copy of `db`
//!   that the first damaged open keeps in `DATA/evidence/` is what makes
//!   this hold: `src/salvage/evidence.rs`.)
//!
//! The run prints its seed and an outcome table. Reproduce a run with
//! `MISSION_BUS_FAULT_SEED=<seed> cargo test --test faults -- --nocapture`;
//! `MISSION_BUS_FAULT_TRIALS` changes the number of trials (default 201);
//! `MISSION_BUS_FAULT_NO_EVIDENCE=1` switches the pre-open copy off (the
//! `MISSION_BUS_EVIDENCE_LIMIT=0` of the CLI), to measure what sled's
//! recovery destroys without it (an experiment: it fails).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use mission_bus::{MissionBus, NewMission};
use serde_json::{json, Value};

const SEED_ENV: &str = "MISSION_BUS_FAULT_SEED";
const TRIALS_ENV: &str = "MISSION_BUS_FAULT_TRIALS";
const CHILD_DIR: &str = "MISSION_BUS_FAULT_CHILD_DIR";
const DEFAULT_TRIALS: usize = 201;
const NO_EVIDENCE_ENV: &str = "MISSION_BUS_FAULT_NO_EVIDENCE";
/// Trials run at once. Each command mostly waits on the disk (sled's and
/// the ledger's flushes), so this overlaps waits even on 2 cores.
const WORKERS: usize = 6;
/// Any single command taking longer than this is a hang (fails the trial).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const MISSIONS: [&str; 3] = ["fa", "fb", "fc"];
const MAGIC: &[u8] = b"MBUSREC2";
const MAGIC_AT: usize = 37;

// ----- deterministic PRNG ---------------------------------------------------

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ----- running the CLI under a timeout -------------------------------------

struct Run {
    /// `None`: killed by a signal.
    code: Option<i32>,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

fn mb(data: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mission-bus"));
    cmd.arg("--data").arg(data).args(args);
    if std::env::var_os(NO_EVIDENCE_ENV).is_some() {
        cmd.env("MISSION_BUS_EVIDENCE_LIMIT", "0");
    }
    run_with_timeout(cmd)
}

fn run_with_timeout(mut cmd: Command) -> Run {
    cmd.env_remove("MISSION_BUS_DATA")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn mission-bus");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (out, timed_out) = match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(out) => (out.expect("wait for mission-bus"), false),
        Err(_) => {
            // Our own child, by its id.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            (rx.recv().unwrap().expect("wait for mission-bus"), true)
        }
    };
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        timed_out,
    }
}

// ----- base stores -------------------------------------------------------------

/// A record copy in the undamaged `db` file.
struct Copy {
    mission: String,
    sequence: u64,
    start: usize,
    end: usize,
}

struct Base {
    kind: &'static str,
    dir: PathBuf,
    /// The undamaged store's events per mission, as exported (JSON values).
    expected: BTreeMap<String, Vec<Value>>,
    /// The highest acknowledged sequence per mission.
    acked: BTreeMap<String, u64>,
    /// The undamaged store's verified heads: (sequence, hash).
    heads: BTreeMap<String, (u64, Value)>,
    copies: Vec<Copy>,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn payload(rng: &mut Rng, m: &str, i: u64) -> Value {
    let pad = "x".repeat(rng.below(1500) as usize);
    json!({"m": m, "i": i, "pad": pad})
}

/// Exports through the CLI, on a scratch copy (opening may change files).
fn exports_of(dir: &Path, scratch: &Path) -> BTreeMap<String, Vec<Value>> {
    copy_dir(dir, scratch);
    let mut out = BTreeMap::new();
    for m in MISSIONS {
        let r = mb(scratch, &["export", m, "--format", "jsonl"]);
        assert_eq!(
            r.code,
            Some(0),
            "export {m} of an undamaged base: {}",
            r.stderr
        );
        out.insert(m.to_string(), parse_lines(&r.stdout));
    }
    std::fs::remove_dir_all(scratch).unwrap();
    out
}

fn verified_heads(dir: &Path, scratch: &Path) -> BTreeMap<String, (u64, Value)> {
    copy_dir(dir, scratch);
    let r = mb(scratch, &["verify"]);
    assert_eq!(r.code, Some(0), "verify of an undamaged base: {}", r.stderr);
    std::fs::remove_dir_all(scratch).unwrap();
    parse_lines(&r.stdout)
        .into_iter()
        .map(|v| {
            (
                v["mission_id"].as_str().unwrap().to_string(),
                (v["head_sequence"].as_u64().unwrap(), v["head_hash"].clone()),
            )
        })
        .collect()
}

fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// Every intact record copy in `db` (scanned like salvage does, checked
/// with the CRC).
fn record_copies(db: &Path) -> Vec<Copy> {
    let bytes = std::fs::read(db).unwrap();
    let mut out = Vec::new();
    let mut from = MAGIC_AT;
    while let Some(i) = bytes[from..].windows(MAGIC.len()).position(|w| w == MAGIC) {
        let at = from + i;
        from = at + 1;
        let start = at - MAGIC_AT;
        if bytes[start] != 2 || at + 22 > bytes.len() {
            continue;
        }
        let len = u32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        if start + len > bytes.len() || len < 59 {
            continue;
        }
        let crc = u32::from_be_bytes(bytes[start + 1..start + 5].try_into().unwrap());
        if crc32fast::hash(&bytes[start + 5..start + len]) != crc {
            continue;
        }
        let sequence = u64::from_be_bytes(bytes[at + 12..at + 20].try_into().unwrap());
        let n = u16::from_be_bytes(bytes[at + 20..at + 22].try_into().unwrap()) as usize;
        let mission = String::from_utf8(bytes[at + 22..at + 22 + n].to_vec()).unwrap();
        out.push(Copy {
            mission,
            sequence,
            start,
            end: start + len,
        });
    }
    out
}

fn finish_base(
    kind: &'static str,
    dir: PathBuf,
    acked: BTreeMap<String, u64>,
    acked_ids: &BTreeMap<(String, u64), String>,
    scratch: &Path,
) -> Base {
    let expected = exports_of(&dir, scratch);
    // The crash property the trials rely on: every acknowledged event is in
    // the undamaged store, at its sequence, with its id.
    for ((m, seq), id) in acked_ids {
        let e = expected[m]
            .get(*seq as usize - 1)
            .unwrap_or_else(|| panic!("{kind}: acknowledged {m} {seq} missing"));
        let stored = ["message_id", "event_id", "checkpoint_id", "handoff_id"]
            .iter()
            .find_map(|k| e[*k].as_str())
            .unwrap();
        assert_eq!(stored, id, "{kind}: {m} {seq}");
    }
    let copies = record_copies(&dir.join("db"));
    let heads = verified_heads(&dir, scratch);
    Base {
        kind,
        dir,
        expected,
        acked,
        heads,
        copies,
    }
}

fn build_clean(root: &Path, rng: &mut Rng) -> Base {
    let dir = root.join("clean");
    let bus = MissionBus::open(&dir).unwrap();
    let mut acked = BTreeMap::new();
    let mut ids = BTreeMap::new();
    for m in MISSIONS {
        let created = bus
            .create_mission(NewMission::new(m, "faults").lead("lead"))
            .unwrap();
        for e in created {
            ids.insert((m.to_string(), e.sequence), e.id.to_string());
        }
        for i in 0..100 {
            let e = bus
                .publish(m, "lead", "t", payload(rng, m, i).into())
                .unwrap();
            ids.insert((m.to_string(), e.sequence), e.id.to_string());
            acked.insert(m.to_string(), e.sequence);
        }
    }
    drop(bus);
    finish_base("clean", dir, acked, &ids, &root.join("scratch-clean"))
}

/// The child: appends into every mission from three threads, printing each
/// acknowledged event, until it is killed.
#[test]
fn fault_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let bus = MissionBus::open(&dir).unwrap();
    for m in MISSIONS {
        for e in bus
            .create_mission(NewMission::new(m, "faults").lead("lead"))
            .unwrap()
        {
            println!("ACK {m} {} {}", e.sequence, e.id);
        }
    }
    let out = std::sync::Arc::new(Mutex::new(std::io::stdout()));
    let threads: Vec<_> = MISSIONS
        .iter()
        .enumerate()
        .map(|(t, m)| {
            let (bus, out) = (bus.clone(), out.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(t as u64 + 1);
                for i in 0.. {
                    let e = bus
                        .publish(m, "lead", "t", payload(&mut rng, m, i).into())
                        .unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {m} {} {}", e.sequence, e.id).unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn build_killed(root: &Path, rng: &mut Rng) -> (Base, Base) {
    let dir = root.join("killed");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "fault_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR, &dir)
        .env_remove(SEED_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let kill_after = 250 + rng.below(150) as usize;
    let mut acks = 0usize;
    let mut ids = BTreeMap::new();
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let mut killed = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.trim_end().strip_prefix("ACK ") {
            let f: Vec<&str> = rest.split(' ').collect();
            let seq: u64 = f[1].parse().unwrap();
            ids.insert((f[0].to_string(), seq), f[2].to_string());
            let top = acked.entry(f[0].to_string()).or_default();
            *top = (*top).max(seq);
            acks += 1;
        }
        if acks >= kill_after && !killed {
            child.kill().unwrap(); // SIGKILL; lines already written stay readable
            killed = true;
        }
    }
    assert!(killed, "the child stopped by itself");
    child.wait().unwrap();
    let recovered_dir = root.join("recovered");
    copy_dir(&dir, &recovered_dir);
    let r = mb(&recovered_dir, &["verify"]);
    assert_eq!(r.code, Some(0), "verify after SIGKILL: {}", r.stderr);
    let killed = finish_base("killed", dir, acked.clone(), &ids, &root.join("scratch-k"));
    let recovered = finish_base(
        "recovered",
        recovered_dir,
        acked,
        &ids,
        &root.join("scratch-r"),
    );
    (killed, recovered)
}

// ----- trials --------------------------------------------------------------------

const DAMAGES: [&str; 3] = ["bit flip", "zeroed 4 KiB", "truncation"];

#[derive(Default)]
struct Outcome {
    no_effect: u64,
    detected: u64,
    failed: u64,
    salvage_complete: u64,
    salvage_partial: u64,
}

/// Damage `db` and return the damaged byte range `[lo, hi)` and a description.
fn damage(db: &Path, kind: usize, rng: &mut Rng) -> (usize, usize, String) {
    let mut bytes = std::fs::read(db).unwrap();
    let len = bytes.len();
    match kind {
        0 => {
            let at = rng.below(len as u64) as usize;
            let bit = rng.below(8);
            bytes[at] ^= 1 << bit;
            std::fs::write(db, &bytes).unwrap();
            (at, at + 1, format!("bit {bit} of byte {at} flipped"))
        }
        1 => {
            let blocks = len.div_ceil(4096) as u64;
            let lo = rng.below(blocks) as usize * 4096;
            let hi = (lo + 4096).min(len);
            bytes[lo..hi].fill(0);
            std::fs::write(db, &bytes).unwrap();
            (lo, hi, format!("bytes {lo}..{hi} zeroed"))
        }
        _ => {
            // Half the cuts land in the last 64 KiB, where a torn write would.
            let cut = if rng.below(2) == 0 {
                len - 1 - rng.below(len.min(65536) as u64) as usize
            } else {
                rng.below(len as u64) as usize
            };
            let f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
            f.set_len(cut as u64).unwrap();
            (cut, len, format!("truncated to {cut} of {len} bytes"))
        }
    }
}

fn located(r: &Run, dir: &Path) -> bool {
    let text = format!("{}{}", r.stdout, r.stderr);
    text.contains(&dir.join("db").display().to_string())
        || text.contains(&dir.join("ledger").display().to_string())
        || MISSIONS.iter().any(|m| text.contains(&format!("'{m}'")))
}

/// One trial; `Err` describes the failure.
fn trial(base: &Base, kind: usize, rng: &mut Rng, out: &Path) -> Result<(bool, bool), String> {
    let dir = out.join("store");
    copy_dir(&base.dir, &dir);
    let (lo, hi, what) = damage(&dir.join("db"), kind, rng);
    let fail = |msg: String| Err(format!("{what}: {msg}"));
    let bad = |r: &Run| r.timed_out || r.code != Some(0) && r.code != Some(6);

    let r = mb(&dir, &["verify"]);
    if bad(&r) {
        return fail(format!(
            "verify ended with {:?} (timed out: {}): {}",
            r.code, r.timed_out, r.stderr
        ));
    }
    let no_effect = r.code == Some(0);
    if no_effect {
        // Every mission verified intact, and nothing acknowledged is gone:
        // its head is at least the acknowledged one. A head below the
        // undamaged store's is allowed only down to that point: a SIGKILLed
        // writer can leave events that sled made durable but nobody was
        // told about, and sled's recovery may drop exactly those. At the
        // undamaged head, the hash must be the same (the chain makes the
        // logs identical); below it, the export proves the prefix.
        let reports = parse_lines(&r.stdout);
        let mut heads = BTreeMap::new();
        for (m, (base_seq, base_hash)) in &base.heads {
            let got = reports.iter().find(|v| v["mission_id"] == m.as_str());
            let Some(seq) = got.and_then(|v| v["head_sequence"].as_u64()) else {
                return fail(format!("SILENT: verify passed without reporting {m}"));
            };
            let acked = base.acked.get(m).copied().unwrap_or(0);
            if seq < acked
                || seq > *base_seq
                || (seq == *base_seq && got.map(|v| &v["head_hash"]) != Some(base_hash))
            {
                return fail(format!(
                    "SILENT: verify passed but {m} is not as acknowledged (acknowledged up to {acked}): {got:?}"
                ));
            }
            heads.insert(m.as_str(), seq);
        }
        let m = MISSIONS[rng.below(3) as usize];
        let e = mb(&dir, &["export", m, "--format", "jsonl"]);
        let want = &base.expected[m][..heads[m] as usize];
        if e.code != Some(0) || parse_lines(&e.stdout) != want {
            return fail(format!(
                "SILENT: verify passed but the export of {m} differs (exit {:?}: {})",
                e.code, e.stderr
            ));
        }
    } else {
        if !located(&r, &dir) {
            return fail(format!(
                "exit 6 without naming the file or mission: {}{}",
                r.stdout, r.stderr
            ));
        }
        let m = MISSIONS[rng.below(3) as usize];
        let p = mb(
            &dir,
            &[
                "publish",
                m,
                "--as",
                "lead",
                "--topic",
                "t",
                "--payload",
                "1",
            ],
        );
        if p.timed_out || p.code.is_none() || p.code == Some(101) {
            return fail(format!("publish after damage: {:?} {}", p.code, p.stderr));
        }
        if p.code == Some(0) {
            let seq = serde_json::from_str::<Value>(p.stdout.trim()).unwrap()["sequence"]
                .as_u64()
                .unwrap();
            if seq <= base.acked[m] {
                return fail(format!(
                    "REUSED: publish to {m} got sequence {seq}, acknowledged up to {}",
                    base.acked[m]
                ));
            }
        }
    }

    // Salvage the damaged dir as verify and publish left it.
    let to = out.join("salvaged");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mission-bus"));
    cmd.arg("salvage").arg(&dir).arg("--to").arg(&to);
    let s = run_with_timeout(cmd);
    if bad(&s) {
        return fail(format!(
            "salvage ended with {:?} (timed out: {}): {}",
            s.code, s.timed_out, s.stderr
        ));
    }
    let mut recovered: BTreeMap<(String, u64), Value> = BTreeMap::new();
    {
        let bus = MissionBus::open(&to).map_err(|e| format!("{what}: salvaged store: {e}"))?;
        for m in bus.mission_ids() {
            for e in bus.events(&m, 1, u64::MAX).unwrap() {
                let e = e.map_err(|e| format!("{what}: salvaged store: {e}"))?;
                recovered.insert(
                    (m.clone(), e.sequence),
                    mission_bus::document::event_to_json(&e),
                );
            }
        }
    }
    let in_store: BTreeSet<(String, u64)> = recovered.keys().cloned().collect();
    if let Ok(text) = std::fs::read_to_string(to.join("salvage/after-gaps.jsonl")) {
        for l in text.lines() {
            let k: Value = serde_json::from_str(l).unwrap();
            let key = (
                k["mission_id"].as_str().unwrap().to_string(),
                k["sequence"].as_u64().unwrap(),
            );
            recovered.entry(key).or_insert(k["event"].clone());
        }
    }
    for ((m, seq), e) in &recovered {
        if let Some(want) = base.expected.get(m).and_then(|v| v.get(*seq as usize - 1)) {
            if e != want && in_store.contains(&(m.clone(), *seq)) {
                return fail(format!("salvage put a different event at {m} {seq}"));
            }
        }
    }
    let untouched: BTreeSet<(String, u64)> = base
        .copies
        .iter()
        .filter(|c| c.end <= lo || c.start >= hi)
        .map(|c| (c.mission.clone(), c.sequence))
        .filter(|(m, s)| *s as usize <= base.expected[m].len())
        .collect();
    for (m, s) in &untouched {
        match recovered.get(&(m.clone(), *s)) {
            Some(e) if *e == base.expected[m][*s as usize - 1] => {}
            _ => {
                return fail(format!(
                    "salvage lost {m} {s}, which the damage did not touch"
                ))
            }
        }
    }
    let complete = s.code == Some(0);
    if complete {
        for (m, top) in &base.acked {
            if (1..=*top).any(|s| !in_store.contains(&(m.clone(), s))) {
                return fail(format!(
                    "salvage exited 0 but {m} lacks acknowledged events"
                ));
            }
        }
    }
    Ok((no_effect, complete))
}

#[test]
fn damaged_files_never_lose_acknowledged_events_in_silence() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let seed: u64 = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let trials: usize = std::env::var(TRIALS_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_TRIALS);
    println!("fault injection: seed {seed} ({SEED_ENV}={seed} to reproduce), {trials} trials");
    let started = std::time::Instant::now();
    let root = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(seed);
    let clean = build_clean(root.path(), &mut rng);
    let (killed, recovered) = build_killed(root.path(), &mut rng);
    let bases = [clean, killed, recovered];
    let built = started.elapsed();
    for b in &bases {
        println!(
            "base {}: {} bytes of db, {} record copies, acknowledged heads {:?}",
            b.kind,
            std::fs::metadata(b.dir.join("db")).unwrap().len(),
            b.copies.len(),
            b.acked
        );
    }

    let next = AtomicUsize::new(0);
    let table: Mutex<BTreeMap<(usize, usize), Outcome>> = Mutex::new(BTreeMap::new());
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= trials {
                    return;
                }
                let mut rng = Rng::new(seed ^ (i as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
                let (b, k) = (i % 3, (i / 3) % 3);
                let tmp = tempfile::tempdir().unwrap();
                let result = trial(&bases[b], k, &mut rng, tmp.path());
                let mut t = table.lock().unwrap();
                let o = t.entry((k, b)).or_default();
                match result {
                    Ok((no_effect, complete)) => {
                        if no_effect {
                            o.no_effect += 1;
                        } else {
                            o.detected += 1;
                        }
                        if complete {
                            o.salvage_complete += 1;
                        } else {
                            o.salvage_partial += 1;
                        }
                    }
                    Err(e) => {
                        o.failed += 1;
                        failures.lock().unwrap().push(format!(
                            "trial {i} ({}, {}): {e}",
                            DAMAGES[k], bases[b].kind
                        ));
                    }
                }
            });
        }
    });
    let table = table.into_inner().unwrap();
    println!(
        "bases built in {:.1} s, {trials} trials in {:.1} s ({WORKERS} at a time)",
        built.as_secs_f64(),
        (started.elapsed() - built).as_secs_f64()
    );
    println!();
    println!("| damage | store | trials | no effect on acknowledged events (identical export up to the head) | detected (exit 6) | FAILED | salvage exit 0 | salvage exit 6 |");
    println!("|---|---|---|---|---|---|---|---|");
    for ((k, b), o) in &table {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            DAMAGES[*k],
            bases[*b].kind,
            o.no_effect + o.detected + o.failed,
            o.no_effect,
            o.detected,
            o.failed,
            o.salvage_complete,
            o.salvage_partial
        );
    }
    let failures = failures.into_inner().unwrap();
    for f in &failures {
        println!("FAILED {f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {trials} trials failed (seed {seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
