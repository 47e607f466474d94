//! Comparison harness for issue 5: every workload on mission-bus and on two
//! baselines in the same run, then a table (absolute figures and ratios),
//! the targets, and `bench-compare.json` in the cargo target directory.
//!
//! Baselines:
//! - raw sled: the same trees and keys (events, event-id index, checkpoint
//!   and handoff indexes, head), one multi-tree transaction per append or
//!   batch, then `Db::flush`, with a plain bincode record (no checksum, no
//!   hash chain, no permission checks, no reducer, no writer thread);
//! - SQLite (bundled, WAL, `synchronous=FULL`): one table keyed by
//!   (mission, seq) with a unique index on the event id, plus a heads table,
//!   one transaction per append or batch.
//!
//! Run with `cargo bench --bench compare`. Environment:
//! - `MB_BENCH_EVENTS`: size of the big mission (default 1000000);
//! - `MB_BENCH_DURABLE`: events of the one-appender durable run (default 5000);
//! - `MB_BENCH_PER_THREAD`: events per thread of the 64-appender run (default 250);
//! - `MB_BENCH_ONLY`: comma list of `durable`, `big`, `small` (default all);
//! - `MB_BENCH_DIR`: where the scratch stores go (default the system temp dir).
//!
//! See `docs/benchmarks.md` for what each workload does and the figures.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mission_bus::{Action, EventBody, Json, MissionBus, NewMission};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Size of every message payload and checkpoint state, in JSON bytes.
const PAYLOAD_BYTES: usize = 117;
/// Events per batch in `append_batch_1000`.
const BATCH: usize = 1000;
/// Appender threads and missions of `append_durable_64`.
const THREADS: usize = 64;
const MISSIONS_64: usize = 8;
/// Size of the small mission for the `_1k` lookups.
const SMALL: usize = 1000;
/// Lookups per timed round.
const LOOKUPS: usize = 20_000;
/// Timed rounds of read workloads; the best round is reported.
const REPS: usize = 3;
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

// ----- settings -----------------------------------------------------------

struct Scale {
    events: usize,
    durable_1: usize,
    per_thread: usize,
    only: Vec<String>,
    dir: PathBuf,
}

impl Scale {
    fn from_env() -> Res<Scale> {
        fn num(name: &str, default: usize) -> Res<usize> {
            match std::env::var(name) {
                Ok(v) => Ok(v
                    .trim()
                    .replace('_', "")
                    .parse()
                    .map_err(|e| format!("{name}={v}: {e}"))?),
                Err(_) => Ok(default),
            }
        }
        let events = num("MB_BENCH_EVENTS", 1_000_000)?.max(BATCH);
        let events = events / BATCH * BATCH;
        Ok(Scale {
            events,
            durable_1: num("MB_BENCH_DURABLE", 5000)?.max(10),
            per_thread: num("MB_BENCH_PER_THREAD", 250)?.max(1),
            only: std::env::var("MB_BENCH_ONLY")
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default(),
            dir: std::env::var_os("MB_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
        })
    }

    fn runs(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

// ----- shared workload shape ----------------------------------------------

fn payload_text(i: usize) -> String {
    let head = format!(r#"{{"agent":"ada","step":{i},"text":""#);
    let pad = PAYLOAD_BYTES.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// What slot `i` of a generated batch holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Message,
    Checkpoint,
    /// A handoff to `bob` naming the previous batch's checkpoint.
    Handoff,
}

/// Batches of `n`: messages, then a checkpoint, then a handoff to the
/// previous batch's checkpoint (a message in the first batch).
fn slot(i: usize, n: usize, first_batch: bool) -> Slot {
    if i + 2 == n {
        Slot::Checkpoint
    } else if i + 1 == n && !first_batch {
        Slot::Handoff
    } else {
        Slot::Message
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The baselines' record: the same logical fields as a mission-bus event.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct RawEvent {
    id: [u8; 16],
    timestamp_us: i64,
    sender: String,
    kind: u8,
    /// Topic, checkpoint summary or handoff note.
    topic: String,
    /// Payload or checkpoint state (JSON text), or the handoff's recipient.
    body: String,
    /// The checkpoint a handoff names; zeros otherwise.
    reference: [u8; 16],
}

const KIND_MESSAGE: u8 = 3;
const KIND_CHECKPOINT: u8 = 4;
const KIND_HANDOFF: u8 = 5;

impl RawEvent {
    fn new(slot: Slot, i: usize, prev_checkpoint: Option<[u8; 16]>) -> RawEvent {
        let (kind, topic, body, reference) = match slot {
            Slot::Message => (KIND_MESSAGE, "status".to_string(), payload_text(i), [0; 16]),
            Slot::Checkpoint => (
                KIND_CHECKPOINT,
                format!("checkpoint {i}"),
                payload_text(i),
                [0; 16],
            ),
            Slot::Handoff => (
                KIND_HANDOFF,
                "your turn".to_string(),
                "bob".to_string(),
                prev_checkpoint.unwrap_or([0; 16]),
            ),
        };
        RawEvent {
            id: *Uuid::now_v7().as_bytes(),
            timestamp_us: now_us(),
            sender: "ada".into(),
            kind,
            topic,
            body,
            reference,
        }
    }
}

/// The baselines' reducer: the counters and latest references mission-bus
/// keeps (participants are not part of these logs).
#[derive(Default, Debug)]
struct RawState {
    head: u64,
    messages: u64,
    checkpoints: u64,
    handoffs: u64,
    latest_checkpoint: Option<([u8; 16], u64)>,
    latest_handoff_to: BTreeMap<String, ([u8; 16], u64)>,
}

impl RawState {
    fn apply(&mut self, seq: u64, e: &RawEvent) {
        self.head = seq;
        match e.kind {
            KIND_CHECKPOINT => {
                self.checkpoints += 1;
                self.latest_checkpoint = Some((e.id, seq));
            }
            KIND_HANDOFF => {
                self.handoffs += 1;
                self.latest_handoff_to.insert(e.body.clone(), (e.id, seq));
            }
            _ => self.messages += 1,
        }
    }
}

fn bincode_cfg() -> bincode::config::Configuration {
    bincode::config::standard()
}

fn event_key(mission: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mission.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Ids the lookup workloads use.
#[derive(Default)]
struct Ids {
    checkpoints: Vec<[u8; 16]>,
    handoffs: Vec<[u8; 16]>,
}

// ----- raw sled baseline --------------------------------------------------

struct RawSled {
    db: sled::Db,
    events: sled::Tree,
    ids: sled::Tree,
    checkpoints: sled::Tree,
    handoffs: sled::Tree,
    heads: sled::Tree,
}

impl RawSled {
    fn open(path: &Path) -> Res<RawSled> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(500))
            .open()?;
        Ok(RawSled {
            events: db.open_tree("events")?,
            ids: db.open_tree("event_ids")?,
            checkpoints: db.open_tree("checkpoints")?,
            handoffs: db.open_tree("handoffs")?,
            heads: db.open_tree("heads")?,
            db,
        })
    }

    /// One transaction (head read, events, indexes, head), then one flush.
    fn append(&self, mission: u64, evs: &[RawEvent]) -> Res<u64> {
        use sled::transaction::ConflictableTransactionError;
        use sled::Transactional;
        let trees = (
            &self.events,
            &self.ids,
            &self.checkpoints,
            &self.handoffs,
            &self.heads,
        );
        let head = trees
            .transaction(|(events, ids, cps, hos, heads)| {
                let mkey = mission.to_be_bytes();
                let mut seq = match heads.get(mkey)? {
                    Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                        ConflictableTransactionError::Abort("malformed head".to_string())
                    })?),
                    None => 0,
                };
                for e in evs {
                    seq += 1;
                    let key = event_key(mission, seq);
                    let value = bincode::serde::encode_to_vec(e, bincode_cfg())
                        .expect("encoding into a Vec cannot fail");
                    events.insert(&key, value)?;
                    ids.insert(&e.id, &key)?;
                    match e.kind {
                        KIND_CHECKPOINT => {
                            cps.insert(&e.id, &key)?;
                        }
                        KIND_HANDOFF => {
                            hos.insert(&e.id, &key)?;
                        }
                        _ => {}
                    }
                }
                heads.insert(&mkey, &seq.to_be_bytes())?;
                Ok(seq)
            })
            .map_err(|e| format!("raw sled transaction: {e:?}"))?;
        self.db.flush()?;
        Ok(head)
    }

    fn get_event(&self, index: &sled::Tree, id: &[u8; 16]) -> Res<RawEvent> {
        let key = index.get(id)?.ok_or("raw sled: id not indexed")?;
        let value = self.events.get(&key)?.ok_or("raw sled: record missing")?;
        Ok(bincode::serde::decode_from_slice::<RawEvent, _>(&value, bincode_cfg())?.0)
    }

    /// The baseline's resume packet: handoff by id, then its checkpoint.
    fn resume(&self, handoff: &[u8; 16]) -> Res<(RawEvent, RawEvent)> {
        let h = self.get_event(&self.handoffs, handoff)?;
        let c = self.get_event(&self.checkpoints, &h.reference)?;
        Ok((h, c))
    }

    fn replay(&self, mission: u64) -> Res<RawState> {
        let mut state = RawState::default();
        for item in self.events.scan_prefix(mission.to_be_bytes()) {
            let (k, v) = item?;
            let seq = u64::from_be_bytes(k[8..16].try_into()?);
            let (e, _) = bincode::serde::decode_from_slice::<RawEvent, _>(&v, bincode_cfg())?;
            state.apply(seq, &e);
        }
        Ok(state)
    }

    fn head(&self, mission: u64) -> Res<u64> {
        Ok(match self.heads.get(mission.to_be_bytes())? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into()?),
            None => 0,
        })
    }
}

// ----- SQLite baseline ----------------------------------------------------

fn sqlite_open(path: &Path) -> Res<Connection> {
    let conn = Connection::open(path.join("events.sqlite"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("SQLite refused WAL mode ({mode})").into());
    }
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS events(
             mission INTEGER NOT NULL, seq INTEGER NOT NULL, id BLOB NOT NULL,
             ts INTEGER NOT NULL, sender TEXT NOT NULL, kind INTEGER NOT NULL,
             topic TEXT NOT NULL, body TEXT NOT NULL, reference BLOB NOT NULL,
             PRIMARY KEY (mission, seq)) WITHOUT ROWID;
         CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events(id);
         CREATE TABLE IF NOT EXISTS heads(mission INTEGER PRIMARY KEY, seq INTEGER NOT NULL);",
    )?;
    Ok(conn)
}

fn sqlite_append(conn: &mut Connection, mission: i64, evs: &[RawEvent]) -> Res<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut seq: i64 = tx
        .prepare_cached("SELECT seq FROM heads WHERE mission = ?1")?
        .query_row([mission], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO events(mission, seq, id, ts, sender, kind, topic, body, reference)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for e in evs {
            seq += 1;
            ins.execute(params![
                mission,
                seq,
                &e.id[..],
                e.timestamp_us,
                e.sender,
                e.kind,
                e.topic,
                e.body,
                &e.reference[..]
            ])?;
        }
    }
    tx.prepare_cached(
        "INSERT INTO heads(mission, seq) VALUES (?1, ?2)
         ON CONFLICT(mission) DO UPDATE SET seq = excluded.seq",
    )?
    .execute(params![mission, seq])?;
    tx.commit()?;
    Ok(seq)
}

fn sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEvent> {
    let blob16 = |i: usize| -> rusqlite::Result<[u8; 16]> {
        let b = r.get_ref(i)?.as_blob()?;
        b.try_into().map_err(|_| {
            rusqlite::Error::InvalidColumnType(i, "id".into(), rusqlite::types::Type::Blob)
        })
    };
    Ok(RawEvent {
        id: blob16(0)?,
        timestamp_us: r.get(1)?,
        sender: r.get(2)?,
        kind: r.get(3)?,
        topic: r.get(4)?,
        body: r.get(5)?,
        reference: blob16(6)?,
    })
}

fn sqlite_by_id(conn: &Connection, id: &[u8; 16], kind: u8) -> Res<RawEvent> {
    Ok(conn
        .prepare_cached(
            "SELECT id, ts, sender, kind, topic, body, reference FROM events
             WHERE id = ?1 AND kind = ?2",
        )?
        .query_row(params![&id[..], kind], sqlite_row)?)
}

fn sqlite_resume(conn: &Connection, handoff: &[u8; 16]) -> Res<(RawEvent, RawEvent)> {
    let h = sqlite_by_id(conn, handoff, KIND_HANDOFF)?;
    let c = sqlite_by_id(conn, &h.reference, KIND_CHECKPOINT)?;
    Ok((h, c))
}

fn sqlite_replay(conn: &Connection, mission: i64) -> Res<RawState> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, ts, sender, kind, topic, body, reference, seq FROM events
         WHERE mission = ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([mission])?;
    let mut state = RawState::default();
    while let Some(r) = rows.next()? {
        let e = sqlite_row(r)?;
        let seq: i64 = r.get(7)?;
        state.apply(seq as u64, &e);
    }
    Ok(state)
}

fn sqlite_head(conn: &Connection, mission: i64) -> Res<i64> {
    Ok(conn
        .query_row("SELECT seq FROM heads WHERE mission = ?1", [mission], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0))
}

// ----- mission-bus side ---------------------------------------------------

fn open_bus(path: &Path) -> Res<MissionBus> {
    Ok(MissionBus::builder(path)
        .cache_capacity(CACHE_BYTES)
        .open()?)
}

fn create_mission(bus: &MissionBus, mission: &str, writers: &[String]) -> Res<()> {
    bus.create_mission(NewMission::new(mission, "benchmark mission").lead("lead"))?;
    for w in writers {
        bus.join(mission, w, "write", Json::empty_object())?;
    }
    Ok(())
}

fn json(text: &str) -> Json {
    Json::parse("payload", text).expect("generated payloads are JSON")
}

/// One generated batch as bus actions.
fn bus_batch(n: usize, base: usize, first: bool, prev_cp: Option<Uuid>) -> Vec<(String, Action)> {
    (0..n)
        .map(|i| {
            let action = match slot(i, n, first) {
                Slot::Message => Action::Publish {
                    topic: "status".into(),
                    payload: json(&payload_text(base + i)),
                },
                Slot::Checkpoint => Action::Checkpoint {
                    summary: format!("checkpoint {}", base + i),
                    state: json(&payload_text(base + i)),
                    artifacts: Vec::new(),
                },
                Slot::Handoff => Action::Handoff {
                    recipient: "bob".into(),
                    checkpoint_id: prev_cp.expect("not the first batch"),
                    note: "your turn".into(),
                },
            };
            ("ada".to_string(), action)
        })
        .collect()
}

/// Append `events` in batches of `batch` (timed around the append calls only).
fn bus_fill(bus: &MissionBus, mission: &str, events: usize, batch: usize) -> Res<(Duration, Ids)> {
    let mut ids = Ids::default();
    let mut prev_cp = None;
    let mut spent = Duration::ZERO;
    for b in 0..events / batch {
        let items = bus_batch(batch, b * batch, b == 0, prev_cp);
        let t = Instant::now();
        let stored = bus.append_batch(mission, items, None)?;
        spent += t.elapsed();
        for e in &stored {
            match e.body {
                EventBody::Checkpoint { .. } => {
                    ids.checkpoints.push(*e.id.as_bytes());
                    prev_cp = Some(e.id);
                }
                EventBody::Handoff { .. } => ids.handoffs.push(*e.id.as_bytes()),
                _ => {}
            }
        }
        progress(b + 1, events / batch);
    }
    Ok((spent, ids))
}

fn raw_fill_batches(
    events: usize,
    batch: usize,
    mut append: impl FnMut(&[RawEvent]) -> Res<()>,
) -> Res<(Duration, Ids)> {
    let mut ids = Ids::default();
    let mut prev_cp: Option<[u8; 16]> = None;
    let mut spent = Duration::ZERO;
    for b in 0..events / batch {
        let t = Instant::now();
        let evs: Vec<RawEvent> = (0..batch)
            .map(|i| RawEvent::new(slot(i, batch, b == 0), b * batch + i, prev_cp))
            .collect();
        append(&evs)?;
        spent += t.elapsed();
        for e in &evs {
            match e.kind {
                KIND_CHECKPOINT => {
                    ids.checkpoints.push(e.id);
                    prev_cp = Some(e.id);
                }
                KIND_HANDOFF => ids.handoffs.push(e.id),
                _ => {}
            }
        }
        progress(b + 1, events / batch);
    }
    Ok((spent, ids))
}

fn progress(done: usize, total: usize) {
    // Ten marks: print when `done` crosses the next tenth.
    if total >= 20 && (done * 10 / total) != ((done - 1) * 10 / total) {
        eprint!(" {}%", done * 100 / total);
        if done == total {
            eprintln!();
        }
    }
}

// ----- measuring helpers --------------------------------------------------

/// A small deterministic shuffle (splitmix64), so every system sees the
/// same lookup order.
fn shuffled(ids: &[[u8; 16]], n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| ids[(next() % ids.len() as u64) as usize])
        .collect()
}

/// Microseconds per operation: one warm-up pass, then the best of `REPS`.
fn per_op_us(ids: &[[u8; 16]], mut op: impl FnMut(&[u8; 16]) -> Res<()>) -> Res<f64> {
    for id in ids.iter().take(2000) {
        op(id)?;
    }
    let mut best = f64::MAX;
    for _ in 0..REPS {
        let t = Instant::now();
        for id in ids {
            op(id)?;
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e6 / ids.len() as f64);
    }
    Ok(best)
}

fn best_secs(mut run: impl FnMut() -> Res<()>) -> Res<f64> {
    let mut best = f64::MAX;
    for _ in 0..REPS {
        let t = Instant::now();
        run()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Figures by name, in the order they were measured.
#[derive(Default)]
struct Figures {
    values: BTreeMap<String, f64>,
}

impl Figures {
    fn set(&mut self, name: &str, v: f64) {
        eprintln!("  {name:<36} {v:>14.2}");
        self.values.insert(name.to_string(), v);
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }
}

// ----- workloads ------------------------------------------------------------

fn durable(scale: &Scale, root: &Path, f: &mut Figures) -> Res<()> {
    let n = scale.durable_1;
    let per = scale.per_thread;
    eprintln!("== append_durable_1 ({n} events) / append_durable_64 ({THREADS} threads x {per})");

    // mission-bus, one appender
    {
        let dir = root.join("bus-durable-1");
        let bus = open_bus(&dir)?;
        create_mission(&bus, "solo", &["ada".into()])?;
        let payloads: Vec<Json> = (0..n).map(|i| json(&payload_text(i))).collect();
        let t = Instant::now();
        for p in payloads {
            bus.publish("solo", "ada", "status", p)?;
        }
        f.set("append_durable_1", n as f64 / t.elapsed().as_secs_f64());
    }
    // mission-bus, 64 appenders over 8 missions
    {
        let dir = root.join("bus-durable-64");
        let bus = open_bus(&dir)?;
        let writers: Vec<String> = (0..THREADS / MISSIONS_64)
            .map(|w| format!("w{w}"))
            .collect();
        for m in 0..MISSIONS_64 {
            create_mission(&bus, &format!("m{m}"), &writers)?;
        }
        let barrier = Barrier::new(THREADS + 1);
        let elapsed = std::thread::scope(|s| -> Res<Duration> {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (bus, barrier) = (bus.clone(), &barrier);
                    s.spawn(move || -> Res<()> {
                        let mission = format!("m{}", t % MISSIONS_64);
                        let sender = format!("w{}", t / MISSIONS_64);
                        let payloads: Vec<Json> =
                            (0..per).map(|i| json(&payload_text(i))).collect();
                        barrier.wait();
                        for p in payloads {
                            bus.publish(&mission, &sender, "status", p)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            barrier.wait();
            let t = Instant::now();
            for h in handles {
                h.join().map_err(|_| "appender panicked")??;
            }
            Ok(t.elapsed())
        })?;
        f.set(
            "append_durable_64",
            (THREADS * per) as f64 / elapsed.as_secs_f64(),
        );
    }
    // raw sled
    {
        let raw = RawSled::open(&root.join("sled-durable-1"))?;
        let t = Instant::now();
        for i in 0..n {
            raw.append(1, &[RawEvent::new(Slot::Message, i, None)])?;
        }
        f.set(
            "append_durable_1_sled",
            n as f64 / t.elapsed().as_secs_f64(),
        );
    }
    {
        let raw = RawSled::open(&root.join("sled-durable-64"))?;
        let barrier = Barrier::new(THREADS + 1);
        let elapsed = std::thread::scope(|s| -> Res<Duration> {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (raw, barrier) = (&raw, &barrier);
                    s.spawn(move || -> Res<()> {
                        barrier.wait();
                        for i in 0..per {
                            let e = RawEvent::new(Slot::Message, i, None);
                            raw.append((t % MISSIONS_64) as u64 + 1, &[e])?;
                        }
                        Ok(())
                    })
                })
                .collect();
            barrier.wait();
            let t = Instant::now();
            for h in handles {
                h.join().map_err(|_| "appender panicked")??;
            }
            Ok(t.elapsed())
        })?;
        f.set(
            "append_durable_64_sled",
            (THREADS * per) as f64 / elapsed.as_secs_f64(),
        );
    }
    // SQLite
    {
        let dir = root.join("sqlite-durable-1");
        std::fs::create_dir_all(&dir)?;
        let mut conn = sqlite_open(&dir)?;
        let t = Instant::now();
        for i in 0..n {
            sqlite_append(&mut conn, 1, &[RawEvent::new(Slot::Message, i, None)])?;
        }
        f.set(
            "append_durable_1_sqlite",
            n as f64 / t.elapsed().as_secs_f64(),
        );
    }
    {
        let dir = root.join("sqlite-durable-64");
        std::fs::create_dir_all(&dir)?;
        // One connection behind a mutex: SQLite has one writer at a time,
        // and a lock handed over in-process beats busy-waiting connections.
        let conn = Mutex::new(sqlite_open(&dir)?);
        let barrier = Barrier::new(THREADS + 1);
        let elapsed = std::thread::scope(|s| -> Res<Duration> {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (conn, barrier) = (&conn, &barrier);
                    s.spawn(move || -> Res<()> {
                        barrier.wait();
                        for i in 0..per {
                            let e = RawEvent::new(Slot::Message, i, None);
                            let mut c = conn.lock().map_err(|_| "poisoned")?;
                            sqlite_append(&mut c, (t % MISSIONS_64) as i64 + 1, &[e])?;
                        }
                        Ok(())
                    })
                })
                .collect();
            barrier.wait();
            let t = Instant::now();
            for h in handles {
                h.join().map_err(|_| "appender panicked")??;
            }
            Ok(t.elapsed())
        })?;
        f.set(
            "append_durable_64_sqlite",
            (THREADS * per) as f64 / elapsed.as_secs_f64(),
        );
    }
    Ok(())
}

/// The big mission: batch appends, replay, reopen, lookups, size.
fn big(scale: &Scale, root: &Path, f: &mut Figures) -> Res<()> {
    let n = scale.events;
    eprintln!("== big mission: {n} events in batches of {BATCH}");

    // ---- mission-bus
    let bus_dir = root.join("bus-big");
    let bus_ids;
    {
        let bus = open_bus(&bus_dir)?;
        create_mission(&bus, "big", &["ada".into(), "bob".into()])?;
        eprint!("  mission-bus append_batch:");
        let (spent, ids) = bus_fill(&bus, "big", n, BATCH)?;
        bus_ids = ids;
        f.set("append_batch_1000", n as f64 / spent.as_secs_f64());
        let head = bus.state("big")?.head;
        let secs = best_secs(|| {
            let s = bus.rebuild_state("big")?;
            assert_eq!(s.head, head);
            Ok(())
        })?;
        f.set("replay_rebuild", head as f64 / secs);
        bus.close();
    }
    // Reopen: the first open after the writes pays sled's log recovery;
    // later opens start from the page-table snapshot that open wrote.
    let mut opens = Vec::new();
    for _ in 0..=REPS {
        let t = Instant::now();
        let bus = open_bus(&bus_dir)?;
        let head = bus.state("big")?.head;
        opens.push(ms(t.elapsed()));
        assert!(head as usize >= n);
        bus.close();
    }
    f.set("open_rebuild_snapshot", opens[0]);
    f.set("open_rebuild_snapshot_warm", median(opens[1..].to_vec()));
    {
        let bus = open_bus(&bus_dir)?;
        let head = bus.state("big")?.head;
        let handoffs = shuffled(&bus_ids.handoffs, LOOKUPS, 7);
        // First touch after open: distinct handoffs, sled's cache cold.
        let distinct = shuffled(&bus_ids.handoffs, bus_ids.handoffs.len().min(500), 11);
        let t = Instant::now();
        for id in &distinct {
            bus.resume_packet(&Uuid::from_bytes(*id))?;
        }
        f.set(
            "resume_packet_first_touch",
            t.elapsed().as_secs_f64() * 1e6 / distinct.len() as f64,
        );
        let cps = shuffled(&bus_ids.checkpoints, LOOKUPS, 5);
        f.set(
            "lookup_checkpoint",
            per_op_us(&cps, |id| {
                bus.checkpoint(&Uuid::from_bytes(*id))?;
                Ok(())
            })?,
        );
        f.set(
            "resume_packet",
            per_op_us(&handoffs, |id| {
                let p = bus.resume_packet(&Uuid::from_bytes(*id))?;
                debug_assert!(p.head_sequence == head);
                Ok(())
            })?,
        );
        bus.close();
    }
    f.set(
        "bytes_per_event",
        dir_bytes(&bus_dir) as f64 / (n + 4) as f64,
    );
    std::fs::remove_dir_all(&bus_dir)?;

    // ---- raw sled
    let sled_dir = root.join("sled-big");
    let sled_ids;
    {
        let raw = RawSled::open(&sled_dir)?;
        eprint!("  raw sled append_batch:");
        let (spent, ids) = raw_fill_batches(n, BATCH, |evs| raw.append(1, evs).map(|_| ()))?;
        sled_ids = ids;
        f.set("append_batch_1000_sled", n as f64 / spent.as_secs_f64());
        let secs = best_secs(|| {
            let s = raw.replay(1)?;
            assert_eq!(s.head as usize, n);
            Ok(())
        })?;
        f.set("replay_rebuild_sled", n as f64 / secs);
    }
    let mut opens = Vec::new();
    for _ in 0..=REPS {
        let t = Instant::now();
        let raw = RawSled::open(&sled_dir)?;
        let head = raw.head(1)?;
        opens.push(ms(t.elapsed()));
        assert_eq!(head as usize, n);
    }
    f.set("open_rebuild_snapshot_sled", opens[0]);
    f.set(
        "open_rebuild_snapshot_warm_sled",
        median(opens[1..].to_vec()),
    );
    {
        let raw = RawSled::open(&sled_dir)?;
        let cps = shuffled(&sled_ids.checkpoints, LOOKUPS, 5);
        f.set(
            "lookup_checkpoint_sled",
            per_op_us(&cps, |id| raw.get_event(&raw.checkpoints, id).map(|_| ()))?,
        );
        let hos = shuffled(&sled_ids.handoffs, LOOKUPS, 7);
        f.set(
            "resume_packet_sled",
            per_op_us(&hos, |id| raw.resume(id).map(|_| ()))?,
        );
    }
    f.set(
        "bytes_per_event_sled",
        dir_bytes(&sled_dir) as f64 / n as f64,
    );
    std::fs::remove_dir_all(&sled_dir)?;

    // ---- SQLite
    let sq_dir = root.join("sqlite-big");
    std::fs::create_dir_all(&sq_dir)?;
    let sq_ids;
    {
        let mut conn = sqlite_open(&sq_dir)?;
        eprint!("  SQLite append_batch:");
        let (spent, ids) =
            raw_fill_batches(n, BATCH, |evs| sqlite_append(&mut conn, 1, evs).map(|_| ()))?;
        sq_ids = ids;
        f.set("append_batch_1000_sqlite", n as f64 / spent.as_secs_f64());
        let secs = best_secs(|| {
            let s = sqlite_replay(&conn, 1)?;
            assert_eq!(s.head as usize, n);
            Ok(())
        })?;
        f.set("replay_rebuild_sqlite", n as f64 / secs);
    }
    let mut opens = Vec::new();
    for _ in 0..=REPS {
        let t = Instant::now();
        let conn = sqlite_open(&sq_dir)?;
        let head = sqlite_head(&conn, 1)?;
        opens.push(ms(t.elapsed()));
        assert_eq!(head as usize, n);
    }
    f.set("open_rebuild_snapshot_sqlite", opens[0]);
    f.set(
        "open_rebuild_snapshot_warm_sqlite",
        median(opens[1..].to_vec()),
    );
    {
        let conn = sqlite_open(&sq_dir)?;
        let cps = shuffled(&sq_ids.checkpoints, LOOKUPS, 5);
        f.set(
            "lookup_checkpoint_sqlite",
            per_op_us(&cps, |id| {
                sqlite_by_id(&conn, id, KIND_CHECKPOINT).map(|_| ())
            })?,
        );
        let hos = shuffled(&sq_ids.handoffs, LOOKUPS, 7);
        f.set(
            "resume_packet_sqlite",
            per_op_us(&hos, |id| sqlite_resume(&conn, id).map(|_| ()))?,
        );
    }
    f.set(
        "bytes_per_event_sqlite",
        dir_bytes(&sq_dir) as f64 / n as f64,
    );
    std::fs::remove_dir_all(&sq_dir)?;
    Ok(())
}

/// The same lookups on a 1k-event mission (a store of its own).
fn small(root: &Path, f: &mut Figures) -> Res<()> {
    eprintln!("== small mission: {SMALL} events");
    // Batches of 100 so that the small log holds ten checkpoints and nine handoffs.
    const B: usize = 100;
    {
        let dir = root.join("bus-small");
        let bus = open_bus(&dir)?;
        create_mission(&bus, "small", &["ada".into(), "bob".into()])?;
        let (_, ids) = bus_fill(&bus, "small", SMALL, B)?;
        let cps = shuffled(&ids.checkpoints, LOOKUPS, 5);
        f.set(
            "lookup_checkpoint_1k",
            per_op_us(&cps, |id| {
                bus.checkpoint(&Uuid::from_bytes(*id))?;
                Ok(())
            })?,
        );
        let hos = shuffled(&ids.handoffs, LOOKUPS, 7);
        f.set(
            "resume_packet_1k",
            per_op_us(&hos, |id| {
                bus.resume_packet(&Uuid::from_bytes(*id))?;
                Ok(())
            })?,
        );
    }
    {
        let raw = RawSled::open(&root.join("sled-small"))?;
        let (_, ids) = raw_fill_batches(SMALL, B, |evs| raw.append(1, evs).map(|_| ()))?;
        let cps = shuffled(&ids.checkpoints, LOOKUPS, 5);
        f.set(
            "lookup_checkpoint_1k_sled",
            per_op_us(&cps, |id| raw.get_event(&raw.checkpoints, id).map(|_| ()))?,
        );
        let hos = shuffled(&ids.handoffs, LOOKUPS, 7);
        f.set(
            "resume_packet_1k_sled",
            per_op_us(&hos, |id| raw.resume(id).map(|_| ()))?,
        );
    }
    {
        let dir = root.join("sqlite-small");
        std::fs::create_dir_all(&dir)?;
        let mut conn = sqlite_open(&dir)?;
        let (_, ids) =
            raw_fill_batches(SMALL, B, |evs| sqlite_append(&mut conn, 1, evs).map(|_| ()))?;
        let cps = shuffled(&ids.checkpoints, LOOKUPS, 5);
        f.set(
            "lookup_checkpoint_1k_sqlite",
            per_op_us(&cps, |id| {
                sqlite_by_id(&conn, id, KIND_CHECKPOINT).map(|_| ())
            })?,
        );
        let hos = shuffled(&ids.handoffs, LOOKUPS, 7);
        f.set(
            "resume_packet_1k_sqlite",
            per_op_us(&hos, |id| sqlite_resume(&conn, id).map(|_| ()))?,
        );
    }
    Ok(())
}

// ----- report -------------------------------------------------------------

/// (workload, unit, higher is better)
const ROWS: &[(&str, &str, bool)] = &[
    ("append_durable_1", "events/s", true),
    ("append_durable_64", "events/s", true),
    ("append_batch_1000", "events/s", true),
    ("replay_rebuild", "events/s", true),
    ("open_rebuild_snapshot", "ms", false),
    ("open_rebuild_snapshot_warm", "ms", false),
    ("lookup_checkpoint", "us/op", false),
    ("lookup_checkpoint_1k", "us/op", false),
    ("resume_packet", "us/op", false),
    ("resume_packet_1k", "us/op", false),
    ("resume_packet_first_touch", "us/op", false),
    ("bytes_per_event", "bytes", false),
];

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 1000.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

fn print_table(f: &mut Figures) {
    println!();
    println!("| workload | unit | mission-bus | raw sled | SQLite | bus/sled | bus/SQLite |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for &(name, unit, higher) in ROWS {
        let bus = f.get(name);
        if bus.is_none() {
            continue;
        }
        let sled = f.get(&format!("{name}_sled"));
        let sq = f.get(&format!("{name}_sqlite"));
        let better = if higher { "higher" } else { "lower" };
        println!(
            "| {name} | {unit} ({better} is better) | {} | {} | {} | {} | {} |",
            fmt_num(bus),
            fmt_num(sled),
            fmt_num(sq),
            fmt_ratio(bus, sled),
            fmt_ratio(bus, sq),
        );
        if let Some(b) = bus {
            if let Some(s) = sled {
                f.values.insert(format!("ratio_{name}_vs_sled"), b / s);
            }
            if let Some(q) = sq {
                f.values.insert(format!("ratio_{name}_vs_sqlite"), b / q);
            }
        }
    }
}

fn print_targets(f: &mut Figures) {
    println!();
    println!("Targets (issue 5):");
    let check = |f: &mut Figures, key: &str, label: String, pass: Option<bool>| {
        let verdict = match pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "n/a (not measured)",
        };
        println!("  [{verdict}] {label}");
        if let Some(p) = pass {
            f.values
                .insert(format!("target_{key}_pass"), if p { 1.0 } else { 0.0 });
        }
    };
    let g = |f: &Figures, n: &str| f.get(n);
    let r = g(f, "append_durable_64").zip(g(f, "append_durable_1"));
    check(
        f,
        "durable_64",
        format!(
            "append_durable_64 >= 5x append_durable_1: {}",
            r.map_or("-".into(), |(a, b)| format!("{:.2}x", a / b))
        ),
        r.map(|(a, b)| a >= 5.0 * b),
    );
    let r = g(f, "append_batch_1000").zip(g(f, "append_batch_1000_sled"));
    check(
        f,
        "batch",
        format!(
            "append_batch_1000 >= 0.8x raw sled: {}",
            r.map_or("-".into(), |(a, b)| format!("{:.2}x", a / b))
        ),
        r.map(|(a, b)| a >= 0.8 * b),
    );
    let r = g(f, "replay_rebuild").zip(g(f, "replay_rebuild_sled"));
    check(
        f,
        "replay",
        format!(
            "replay_rebuild >= 0.8x raw sled scan+decode: {}",
            r.map_or("-".into(), |(a, b)| format!("{:.2}x", a / b))
        ),
        r.map(|(a, b)| a >= 0.8 * b),
    );
    let r = g(f, "resume_packet").zip(g(f, "resume_packet_1k"));
    check(
        f,
        "resume",
        format!(
            "resume_packet at {} events within 2x of 1k and under 50 us: {}",
            g(f, "events").unwrap_or(0.0),
            r.map_or("-".into(), |(a, b)| format!(
                "{a:.2} us vs {b:.2} us ({:.2}x)",
                a / b
            ))
        ),
        r.map(|(a, b)| a <= 2.0 * b && a < 50.0),
    );
    let r = g(f, "open_rebuild_snapshot");
    check(
        f,
        "open",
        format!(
            "open_rebuild_snapshot under 100 ms: first open {} ms, later opens {} ms",
            fmt_num(r),
            fmt_num(g(f, "open_rebuild_snapshot_warm"))
        ),
        r.map(|a| a < 100.0),
    );
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else the nearest
/// ancestor of this executable that cargo tagged as a target directory.
fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file()) {
            return d.to_path_buf();
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

fn main() -> Res<()> {
    // `cargo bench` passes `--bench`; there is nothing to filter here.
    let scale = Scale::from_env()?;
    let root = tempfile::Builder::new()
        .prefix("mission-bus-compare-")
        .tempdir_in(&scale.dir)?;
    let mut f = Figures::default();
    f.set("events", scale.events as f64);
    let started = Instant::now();
    if scale.runs("durable") {
        durable(&scale, root.path(), &mut f)?;
    }
    if scale.runs("big") {
        big(&scale, root.path(), &mut f)?;
    }
    if scale.runs("small") {
        small(root.path(), &mut f)?;
    }
    f.set("wall_seconds", started.elapsed().as_secs_f64());
    print_table(&mut f);
    print_targets(&mut f);

    let map: serde_json::Map<String, serde_json::Value> = f
        .values
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.clone(), serde_json::json!(v)))
        .collect();
    let out = target_dir().join("bench-compare.json");
    std::fs::create_dir_all(target_dir())?;
    std::fs::write(&out, serde_json::to_string_pretty(&map)? + "\n")?;
    println!();
    println!("figures written to {}", out.display());
    Ok(())
}
