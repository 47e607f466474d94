//! Crash recovery, in the style of sled's `test_crash_recovery`.
//!
//! The test binary re-executes itself as a child process (selected by an
//! environment variable) that opens a `MissionBus` and appends from several
//! threads into several missions, printing every ACKNOWLEDGED event as a
//! line on stdout. The parent SIGKILLs the child at a random moment (during
//! recovery/startup, or while it appends), reopens the store and checks:
//!
//! - every acknowledged event is present at its sequence with its id;
//! - sequences are contiguous from 1 and the head matches the log;
//! - `verify` is intact (checksums, hash chain, head, every index entry);
//! - checkpoint/handoff lookups by id find the right event;
//! - the state rebuilt from scratch equals the live state;
//! - an append that was in flight when the child died, retried by the next
//!   child with the same event id and content, returns the original
//!   sequence if it had become durable (idempotent retry across a crash).
//!
//! A second test kills a child in the middle of `import_log` (a log larger
//! than one import chunk): the imported mission must be fully visible or
//! absent, and re-importing the same log (same event ids) must succeed.
//!
//! The seed of a run is printed; set `MISSION_BUS_CRASH_SEED` to replay its
//! kill schedule.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mission_bus::{
    Action, AppendOptions, Error, Event, EventBody, Json, MissionBus, MissionState, NewMission,
    OPERATOR,
};
use serde_json::{json, Value};
use uuid::Uuid;

const CHILD_MODE: &str = "MISSION_BUS_CRASH_CHILD";
const CHILD_DIR: &str = "MISSION_BUS_CRASH_DIR";
const CHILD_RETRIES: &str = "MISSION_BUS_CRASH_RETRIES";
const CHILD_SEED: &str = "MISSION_BUS_CRASH_SEED_CHILD";

/// Missions the appending child writes into.
const MISSIONS: [&str; 3] = ["crash-a", "crash-b", "crash-c"];
/// Writer participants of every mission (plus the lead).
const WRITERS: [&str; 4] = ["w0", "w1", "w2", "w3"];
/// Appending threads in the child.
const CHILD_THREADS: usize = 4;
/// Kill points of the appending test.
const APPEND_KILLS: usize = 30;
/// Kill points of the import test.
const IMPORT_KILLS: usize = 6;
/// Events per imported mission: more than one import chunk (10 000), so the
/// import spans several transactions and a kill can land between them.
const IMPORT_EVENTS: usize = 10_500;
/// How long a child may take to get ready before the test fails (not a
/// synchronisation: only a guard against hanging forever).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

// ----- small deterministic PRNG (no extra dev-dependency) -------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn run_seed() -> u64 {
    if let Ok(s) = std::env::var("MISSION_BUS_CRASH_SEED") {
        return s.parse().expect("MISSION_BUS_CRASH_SEED must be a u64");
    }
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("random seed");
    u64::from_le_bytes(b)
}

// ----- child side -------------------------------------------------------------

/// Print one protocol line and flush it, so the parent sees exactly the
/// lines whose write completed before the kill.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("{line}\n").as_bytes())
        .expect("stdout");
    out.flush().expect("stdout flush");
}

fn ack(mission: &str, e: &Event) {
    emit(&format!("ACK {mission} {} {}", e.sequence, e.id));
}

/// An append the child is about to make, as a JSON line the parent can hand
/// back to the next child for a retry with the same id and content.
fn attempt_json(mission: &str, sender: &str, id: Uuid, action: &Action) -> Value {
    let mut v = json!({"m": mission, "sender": sender, "id": id.to_string()});
    let o = v.as_object_mut().expect("object");
    match action {
        Action::Publish { topic, payload } => {
            o.insert("kind".into(), json!("publish"));
            o.insert("topic".into(), json!(topic));
            o.insert("payload".into(), payload.value());
        }
        Action::Checkpoint {
            summary,
            state,
            artifacts,
        } => {
            o.insert("kind".into(), json!("checkpoint"));
            o.insert("summary".into(), json!(summary));
            o.insert("state".into(), state.value());
            o.insert("artifacts".into(), json!(artifacts));
        }
        Action::Handoff {
            recipient,
            checkpoint_id,
            note,
        } => {
            o.insert("kind".into(), json!("handoff"));
            o.insert("recipient".into(), json!(recipient));
            o.insert("checkpoint_id".into(), json!(checkpoint_id.to_string()));
            o.insert("note".into(), json!(note));
        }
        other => panic!("the crash child does not make {other:?}"),
    }
    v
}

fn attempt_from_json(v: &Value) -> (String, String, Uuid, Action) {
    let s = |k: &str| v[k].as_str().expect(k).to_string();
    let id = Uuid::parse_str(&s("id")).expect("id");
    let action = match s("kind").as_str() {
        "publish" => Action::Publish {
            topic: s("topic"),
            payload: Json::from_value(&v["payload"]),
        },
        "checkpoint" => Action::Checkpoint {
            summary: s("summary"),
            state: Json::from_value(&v["state"]),
            artifacts: v["artifacts"]
                .as_array()
                .expect("artifacts")
                .iter()
                .map(|a| a.as_str().expect("artifact").to_string())
                .collect(),
        },
        "handoff" => Action::Handoff {
            recipient: s("recipient"),
            checkpoint_id: Uuid::parse_str(&s("checkpoint_id")).expect("checkpoint id"),
            note: s("note"),
        },
        k => panic!("unknown attempt kind {k}"),
    };
    (s("m"), s("sender"), id, action)
}

fn append_child(dir: &Path) -> ! {
    let seed: u64 = std::env::var(CHILD_SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let bus = MissionBus::open(dir).expect("child: open");
    for m in MISSIONS {
        match bus.create_mission(NewMission::new(m, "crash test").lead("lead")) {
            Ok(events) => events.iter().for_each(|e| ack(m, e)),
            Err(Error::MissionExists { .. }) => {}
            Err(e) => panic!("child: create {m}: {e}"),
        }
        let state = bus.state(m).expect("child: state");
        for w in WRITERS {
            if !state.participants.contains_key(w) {
                let e = bus
                    .join(m, w, "write", Json::empty_object())
                    .expect("child: join");
                ack(m, &e);
            }
        }
    }
    // Retry what the previous child had in flight when it was killed: same
    // id, same content. Durable ones must come back with their original
    // sequence (the parent checks), lost ones are appended now.
    if let Ok(path) = std::env::var(CHILD_RETRIES) {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_str(line).expect("retry line");
            let (m, sender, id, action) = attempt_from_json(&v);
            let opts = AppendOptions {
                event_id: Some(id),
                ..Default::default()
            };
            let e = bus
                .append(&m, &sender, action, &opts)
                .unwrap_or_else(|e| panic!("child: retry of {id} in {m}: {e}"));
            assert_eq!(e.id, id, "child: retry returned another id");
            emit(&format!("RETRIED {m} {} {id}", e.sequence));
        }
    }
    emit("READY");
    let threads: Vec<_> = (0..CHILD_THREADS)
        .map(|t| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ ((t as u64 + 1) << 32));
                let sender = WRITERS[t % WRITERS.len()];
                // Checkpoints this thread saw acknowledged, per mission.
                let mut checkpoints: HashMap<&str, Uuid> = HashMap::new();
                for n in 0u64.. {
                    let m = MISSIONS[rng.below(MISSIONS.len() as u64) as usize];
                    let roll = rng.below(100);
                    let action = match checkpoints.get(m) {
                        Some(cp) if roll < 10 => Action::Handoff {
                            recipient: WRITERS[(t + 1) % WRITERS.len()].to_string(),
                            checkpoint_id: *cp,
                            note: format!("from {sender} #{n}"),
                        },
                        _ if roll < 25 => Action::Checkpoint {
                            summary: format!("{sender} step {n}"),
                            state: json!({"thread": t, "n": n}).into(),
                            artifacts: vec![format!("out/{t}/{n}.txt")],
                        },
                        _ => Action::Publish {
                            topic: "progress".into(),
                            payload: json!({"thread": t, "n": n, "seed": seed}).into(),
                        },
                    };
                    let id = Uuid::now_v7();
                    emit(&format!("TRY {}", attempt_json(m, sender, id, &action)));
                    let is_checkpoint = matches!(action, Action::Checkpoint { .. });
                    let opts = AppendOptions {
                        event_id: Some(id),
                        ..Default::default()
                    };
                    let e = bus
                        .append(m, sender, action, &opts)
                        .unwrap_or_else(|e| panic!("child: append to {m}: {e}"));
                    ack(m, &e);
                    if is_checkpoint {
                        checkpoints.insert(m, e.id);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        // Only returns if a thread panicked: make the child exit non-zero.
        if t.join().is_err() {
            std::process::exit(101);
        }
    }
    unreachable!("appending threads never finish");
}

/// The deterministic log of imported mission `i`: same ids every time, so
/// a re-import after a kill meets the event-id index entries the killed
/// import left behind.
fn import_log(i: u64) -> Vec<Event> {
    let id = |n: u64| {
        let h = blake3::hash(format!("import {i} event {n}").as_bytes());
        uuid::Builder::from_random_bytes(h.as_bytes()[..16].try_into().expect("16 bytes"))
            .into_uuid()
    };
    let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("time");
    let mut log = Vec::with_capacity(IMPORT_EVENTS);
    let push = |log: &mut Vec<Event>, sender: &str, body: EventBody| {
        let n = log.len() as u64 + 1;
        log.push(Event {
            id: id(n),
            sequence: n,
            timestamp: t0 + chrono::Duration::milliseconds(n as i64),
            sender: sender.to_string(),
            body,
            meta: Default::default(),
        });
    };
    push(
        &mut log,
        OPERATOR,
        EventBody::MissionCreated {
            mission_id: format!("imp-{i}"),
            title: "imported".into(),
            config: Default::default(),
        },
    );
    push(
        &mut log,
        OPERATOR,
        EventBody::ParticipantJoined {
            name: "w".into(),
            role: "write".into(),
            metadata: Json::empty_object(),
        },
    );
    while log.len() < IMPORT_EVENTS {
        let n = log.len();
        push(
            &mut log,
            "w",
            EventBody::Message {
                topic: "bulk".into(),
                payload: json!({"n": n}).into(),
            },
        );
    }
    log
}

fn import_child(dir: &Path) -> ! {
    let bus = MissionBus::open(dir).expect("child: open");
    emit("READY");
    for i in 0u64.. {
        let name = format!("imp-{i}");
        if bus.state(&name).is_ok() {
            continue;
        }
        let n = bus
            .import_log(import_log(i), |_| {})
            .unwrap_or_else(|e| panic!("child: import {name}: {e}"));
        emit(&format!("IMPORTED {name} {n}"));
    }
    unreachable!()
}

/// Run as the child if the environment says so.
fn maybe_child() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(CHILD_DIR).expect("child dir"));
    // libtest has printed "test <name> ... " without a newline: end that
    // line so every protocol line starts at the beginning of one.
    emit("");
    match mode.as_str() {
        "append" => append_child(&dir),
        "import" => import_child(&dir),
        other => panic!("unknown child mode {other}"),
    }
}

// ----- parent side ------------------------------------------------------------

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

fn spawn_child(
    test_name: &str,
    mode: &str,
    dir: &Path,
    retries: Option<&Path>,
    seed: u64,
) -> Running {
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_MODE, mode)
        .env(CHILD_DIR, dir)
        .env(CHILD_SEED, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(r) = retries {
        cmd.env(CHILD_RETRIES, r);
    }
    let mut child = cmd.spawn().expect("spawn child");
    let (tx, rx) = mpsc::channel();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        let mut buf = String::new();
        loop {
            buf.clear();
            match out.read_line(&mut buf) {
                Ok(0) | Err(_) => break,
                // A line cut short by the kill was never completely written:
                // it does not count.
                Ok(_) if buf.ends_with('\n') => {
                    if tx.send(buf.trim_end().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => break,
            }
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().expect("stderr");
    let sink = Arc::clone(&stderr);
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        sink.lock().unwrap().push_str(&s);
    });
    Running {
        child,
        lines: rx,
        stderr,
    }
}

impl Running {
    /// Wait for `READY`, returning the lines seen before it. Panics (with
    /// the child's stderr) if the child dies or takes unreasonably long.
    fn wait_ready(&mut self) -> Vec<String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == "READY" => return seen,
                Ok(l) => seen.push(l),
                Err(_) => {
                    let _ = self.child.kill();
                    let status = self.child.wait();
                    let stderr = self.stderr.lock().unwrap().clone();
                    panic!("child never got ready ({status:?}); stderr:\n{stderr}");
                }
            }
        }
    }

    /// SIGKILL the child and return every complete line it printed after
    /// what was already consumed.
    fn kill(mut self) -> Vec<String> {
        // A child that already exited on its own failed: report why.
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "child exited by itself with {status}; stderr:\n{}",
                self.stderr.lock().unwrap()
            );
        }
        // std's Child::kill sends SIGKILL on unix.
        self.child.kill().expect("kill child");
        let status = self.child.wait().expect("wait child");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if status.signal() != Some(9) {
                panic!(
                    "child ended with {status} rather than SIGKILL; stderr:\n{}",
                    self.stderr.lock().unwrap()
                );
            }
        }
        let _ = status;
        self.lines.iter().collect()
    }
}

/// Everything the parent learnt about the store from acknowledgements.
#[derive(Default)]
struct Model {
    /// (mission, sequence) -> event id, for every acknowledged event.
    acked: BTreeMap<(String, u64), Uuid>,
    acked_ids: HashSet<Uuid>,
    /// Attempts not (yet) acknowledged, in order, as JSON lines.
    in_flight: Vec<(Uuid, String)>,
    /// For in-flight ids found durable after the kill: where they are.
    durable_in_flight: HashMap<Uuid, (String, u64)>,
    retried_durable: usize,
    retried_lost: usize,
    kills_before_ready: usize,
}

impl Model {
    fn record_ack(&mut self, mission: &str, seq: u64, id: Uuid) {
        if let Some(prev) = self.acked.insert((mission.to_string(), seq), id) {
            assert_eq!(
                prev, id,
                "{mission} sequence {seq} acknowledged as {prev} and later as {id}"
            );
        }
        self.acked_ids.insert(id);
    }

    fn absorb(&mut self, lines: &[String]) {
        for line in lines {
            let mut parts = line.splitn(2, ' ');
            let tag = parts.next().unwrap_or_default();
            let rest = parts.next().unwrap_or_default();
            match tag {
                "ACK" | "RETRIED" => {
                    let f: Vec<&str> = rest.split(' ').collect();
                    assert_eq!(f.len(), 3, "malformed line {line:?}");
                    let seq: u64 = f[1].parse().expect("sequence");
                    let id = Uuid::parse_str(f[2]).expect("id");
                    if tag == "RETRIED" {
                        match self.durable_in_flight.remove(&id) {
                            Some((m, s)) => {
                                assert_eq!(
                                    (m.as_str(), s),
                                    (f[0], seq),
                                    "retry of durable event {id} did not return the original"
                                );
                                self.retried_durable += 1;
                            }
                            None => self.retried_lost += 1,
                        }
                    }
                    self.record_ack(f[0], seq, id);
                    self.in_flight.retain(|(i, _)| *i != id);
                }
                "TRY" => {
                    let v: Value = serde_json::from_str(rest).expect("TRY json");
                    let id = Uuid::parse_str(v["id"].as_str().expect("id")).expect("uuid");
                    self.in_flight.push((id, rest.to_string()));
                }
                _ => {} // libtest's own output
            }
        }
    }
}

/// Reopen the store and check every invariant against the model. Returns
/// the total number of events.
fn check_store(dir: &Path, model: &mut Model) -> u64 {
    let bus = MissionBus::open(dir).expect("reopen after kill");
    let mut at: HashMap<(String, u64), Uuid> = HashMap::new();
    let mut where_id: HashMap<Uuid, (String, u64)> = HashMap::new();
    let mut total = 0;
    let missions = bus.missions().expect("missions");
    for summary in &missions {
        let m = summary.mission_id.as_str();
        let report = bus.verify(m).expect("verify");
        assert!(
            report.is_intact(),
            "mission {m} does not verify after a kill: {:?}",
            report.problems
        );
        let events: Vec<Event> = bus
            .events(m, 1, u64::MAX)
            .expect("events")
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("replay of {m} failed: {e}"));
        assert_eq!(events.len() as u64, summary.head_sequence, "{m}: head");
        assert_eq!(report.head_sequence, summary.head_sequence, "{m}: head");
        assert_eq!(report.events_checked, summary.head_sequence, "{m}: count");
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.sequence, i as u64 + 1, "{m}: sequences not contiguous");
            at.insert((m.to_string(), e.sequence), e.id);
            if let Some(other) = where_id.insert(e.id, (m.to_string(), e.sequence)) {
                panic!(
                    "event id {} stored twice: {other:?} and {m} {}",
                    e.id, e.sequence
                );
            }
            match e.body {
                EventBody::Checkpoint { .. } => {
                    let (cm, ce) = bus.checkpoint(&e.id).expect("checkpoint by id");
                    assert_eq!((cm.as_str(), &ce), (m, e), "checkpoint index");
                }
                EventBody::Handoff { .. } => {
                    let p = bus.resume_packet(&e.id).expect("resume packet by id");
                    assert_eq!(p.handoff.as_ref(), Some(e), "handoff index");
                }
                _ => {}
            }
        }
        let live: MissionState = (*bus.state(m).expect("state")).clone();
        assert_eq!(
            bus.rebuild_state(m).expect("rebuild"),
            live,
            "{m}: rebuilt state differs from the live state"
        );
        total += summary.head_sequence;
    }
    for ((m, seq), id) in &model.acked {
        match at.get(&(m.clone(), *seq)) {
            Some(found) => assert_eq!(
                found, id,
                "{m} sequence {seq}: acknowledged {id}, stored {found}"
            ),
            None => panic!("acknowledged event {id} ({m} sequence {seq}) was lost"),
        }
    }
    model.durable_in_flight = model
        .in_flight
        .iter()
        .filter_map(|(id, _)| where_id.get(id).map(|w| (*id, w.clone())))
        .collect();
    total
}

#[test]
fn crash_recovery() {
    maybe_child();
    let seed = run_seed();
    eprintln!("crash_recovery: seed {seed} (MISSION_BUS_CRASH_SEED to replay)");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let retries = dir.path().join("retries.jsonl");
    let mut model = Model::default();
    let started = Instant::now();
    let mut total = 0;
    for kill in 0..APPEND_KILLS {
        let text: String = model
            .in_flight
            .iter()
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        std::fs::write(&retries, text).expect("write retries");
        let mut child = spawn_child(
            "crash_recovery",
            "append",
            &data,
            Some(&retries),
            rng.next(),
        );
        // The in-flight attempts handed to this child are retried by it;
        // TRY lines it prints add the new ones.
        let delay;
        // Every few rounds, kill during startup: sled recovery, mission
        // setup and the retries of the previous round are kill points too.
        if kill > 0 && rng.below(5) == 0 {
            delay = Duration::from_millis(rng.below(150));
            model.kills_before_ready += 1;
        } else {
            let before = child.wait_ready();
            model.absorb(&before);
            delay = Duration::from_millis(20 + rng.below(400));
        }
        std::thread::sleep(delay); // a random kill moment, not a synchronisation
        let lines = child.kill();
        model.absorb(&lines);
        total = check_store(&data, &mut model);
    }
    let acked = model.acked.len();
    eprintln!(
        "crash_recovery: {APPEND_KILLS} kills ({} during startup), {acked} acknowledged events, \
         {total} stored, retries after a kill: {} already durable, {} re-appended, {:.1?}",
        model.kills_before_ready,
        model.retried_durable,
        model.retried_lost,
        started.elapsed()
    );
    assert!(acked > 0, "no event was ever acknowledged");
    assert!(total >= acked as u64);
}

#[test]
fn crash_during_import() {
    maybe_child();
    let seed = run_seed();
    eprintln!("crash_during_import: seed {seed}");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut imported: HashSet<String> = HashSet::new();
    let started = Instant::now();
    let mut complete_seen = 0;
    for _ in 0..IMPORT_KILLS {
        let mut child = spawn_child("crash_during_import", "import", &data, None, seed);
        child.wait_ready();
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        for line in child.kill() {
            if let Some(rest) = line.strip_prefix("IMPORTED ") {
                let mut f = rest.split(' ');
                let name = f.next().expect("name").to_string();
                let n: usize = f.next().expect("count").parse().expect("count");
                assert_eq!(n, IMPORT_EVENTS);
                imported.insert(name);
            }
        }
        let bus = MissionBus::open(&data).expect("reopen after kill");
        let present: HashSet<String> = bus
            .missions()
            .expect("missions")
            .into_iter()
            .map(|s| {
                assert_eq!(
                    s.head_sequence, IMPORT_EVENTS as u64,
                    "mission {} is only partly visible",
                    s.mission_id
                );
                s.mission_id
            })
            .collect();
        for m in &imported {
            assert!(present.contains(m), "acknowledged import {m} was lost");
        }
        for m in &present {
            let report = bus.verify(m).expect("verify");
            assert!(report.is_intact(), "{m}: {:?}", report.problems);
            let state = bus.state(m).expect("state");
            assert_eq!(state.messages, IMPORT_EVENTS as u64 - 2);
            let first = bus.event(m, 1).expect("first event");
            let i: u64 = m.trim_start_matches("imp-").parse().expect("number");
            assert_eq!(first.id, import_log(i)[0].id);
        }
        // The next mission the child would import must be absent entirely.
        let next = (0..)
            .map(|i| format!("imp-{i}"))
            .find(|m| !present.contains(m));
        let next = next.expect("some mission is absent");
        assert!(matches!(
            bus.state(&next),
            Err(Error::MissionNotFound { .. })
        ));
        complete_seen = present.len();
    }
    eprintln!(
        "crash_during_import: {IMPORT_KILLS} kills, {complete_seen} missions imported \
         ({} acknowledged), {:.1?}",
        imported.len(),
        started.elapsed()
    );
}
