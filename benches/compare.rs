//! Comparison harness for issue 5: every workload on mission-bus and on two
//! baselines in the same run, then a table (absolute figures and ratios),
//! the targets, and `bench-compare.json` in the cargo target directory.
//!
//! Baselines:
//! - raw sled: the same trees and keys (events, event-id index, checkpoint
//!   and handoff indexes, head), one multi-tree transaction per append or
//!   batch, then `Db::flush`, with a plain bincode record (no checksum, no
//!   hash chain, no permission checks, no reducer, no writer thread);
//! - SQLite (bundled, WAL, `synchronous=FULL` or `NORMAL`, see below): one table keyed by
//!   (mission, seq) with a unique index on the event id, plus a heads table,
//!   one transaction per append or batch.
//!
//! The three systems run side by side: batches, replays, reopens and lookup
//! rounds alternate between them in rotating order, so that load from other
//! processes on the machine hits all three alike; read workloads report
//! the best round.
//!
//! Run with `cargo bench --bench compare`. Environment:
//! - `MB_BENCH_EVENTS`: size of the big mission (default 1000000);
//! - `MB_BENCH_DURABLE`: events of the one-appender durable run (default 5000);
//! - `MB_BENCH_PER_THREAD`: events per thread of the 64-appender run (default
//!   250 for mission-bus and raw sled, a fifth of it for SQLite);
//! - `MB_BENCH_ONLY`: comma list of `durable`, `big`, `small` (default all);
//! - `MB_BENCH_DIR`: where the scratch stores go (default the system temp dir);
//! - `MB_BENCH_DURABILITY`: the durability level of ALL three systems, so
//!   that every ratio compares like with like: `sync` (default: mission-bus
//!   `Durability::Sync`, raw sled flush + `fdatasync` of its `db` file,
//!   SQLite `synchronous=FULL`; each survives a power cut) or `flush`
//!   (mission-bus `Durability::Flush`, raw sled flush only, SQLite
//!   `synchronous=NORMAL`; each survives a process crash, not a power cut).
//!   The table header names the level on every side.
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

/// The durability level every system runs at in this run (`MB_BENCH_DURABILITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Survives a power cut: bus `Sync`, sled flush + fdatasync, SQLite FULL.
    Sync,
    /// Survives a process crash: bus `Flush`, sled flush, SQLite NORMAL.
    Flush,
}

impl Level {
    fn get() -> Level {
        static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| match std::env::var("MB_BENCH_DURABILITY").as_deref() {
            Ok("flush") => Level::Flush,
            Ok("sync") | Err(_) => Level::Sync,
            Ok(other) => panic!("MB_BENCH_DURABILITY={other}: expected sync or flush"),
        })
    }

    fn bus(self) -> mission_bus::Durability {
        match self {
            Level::Sync => mission_bus::Durability::Sync,
            Level::Flush => mission_bus::Durability::Flush,
        }
    }

    fn sqlite(self) -> &'static str {
        match self {
            Level::Sync => "FULL",
            Level::Flush => "NORMAL",
        }
    }

    /// Column labels naming each system's setting.
    fn labels(self) -> [&'static str; 3] {
        match self {
            Level::Sync => [
                "mission-bus Sync",
                "raw sled flush+fdatasync",
                "SQLite FULL",
            ],
            Level::Flush => ["mission-bus Flush", "raw sled flush", "SQLite NORMAL"],
        }
    }
}

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
/// Timed rounds of read workloads and reopens; the best round is reported.
const REPS: usize = 3;
/// Timed rounds of the lookup workloads (short, so more of them).
const LOOKUP_REPS: usize = 7;
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
    /// The checkpoint a handoff names (like mission-bus, only handoffs carry one).
    reference: Option<[u8; 16]>,
}

const KIND_MESSAGE: u8 = 3;
const KIND_CHECKPOINT: u8 = 4;
const KIND_HANDOFF: u8 = 5;

impl RawEvent {
    fn new(slot: Slot, i: usize, prev_checkpoint: Option<[u8; 16]>) -> RawEvent {
        let (kind, topic, body, reference) = match slot {
            Slot::Message => (KIND_MESSAGE, "status".to_string(), payload_text(i), None),
            Slot::Checkpoint => (
                KIND_CHECKPOINT,
                format!("checkpoint {i}"),
                payload_text(i),
                None,
            ),
            Slot::Handoff => (
                KIND_HANDOFF,
                "your turn".to_string(),
                "bob".to_string(),
                prev_checkpoint,
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
    /// sled's data file, fdatasync'd after each flush at `Level::Sync`.
    db_file: std::fs::File,
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
            db_file: std::fs::File::open(path.join("db"))?,
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
        if Level::get() == Level::Sync {
            self.db_file.sync_data()?;
        }
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
        let c = self.get_event(
            &self.checkpoints,
            &h.reference.ok_or("handoff without checkpoint")?,
        )?;
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
    conn.execute_batch(&format!("PRAGMA synchronous={};", Level::get().sqlite()))?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS events(
             mission INTEGER NOT NULL, seq INTEGER NOT NULL, id BLOB NOT NULL,
             ts INTEGER NOT NULL, sender TEXT NOT NULL, kind INTEGER NOT NULL,
             topic TEXT NOT NULL, body TEXT NOT NULL, reference BLOB,
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
                e.reference.as_ref().map(|r| &r[..])
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
        reference: match r.get_ref(6)? {
            rusqlite::types::ValueRef::Null => None,
            _ => Some(blob16(6)?),
        },
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
    let c = sqlite_by_id(
        conn,
        &h.reference.ok_or("handoff without checkpoint")?,
        KIND_CHECKPOINT,
    )?;
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
        .durability(Level::get().bus())
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

/// Generated batch `b` (of `n` events) for the baselines.
fn raw_batch(n: usize, b: usize, prev_cp: Option<[u8; 16]>) -> Vec<RawEvent> {
    (0..n)
        .map(|i| RawEvent::new(slot(i, n, b == 0), b * n + i, prev_cp))
        .collect()
}

impl Ids {
    /// Remember the ids of a stored bus batch; returns its checkpoint.
    fn note_bus(&mut self, stored: &[mission_bus::Event]) -> Option<Uuid> {
        let mut cp = None;
        for e in stored {
            match e.body {
                EventBody::Checkpoint { .. } => {
                    self.checkpoints.push(*e.id.as_bytes());
                    cp = Some(e.id);
                }
                EventBody::Handoff { .. } => self.handoffs.push(*e.id.as_bytes()),
                _ => {}
            }
        }
        cp
    }

    /// Remember the ids of a baseline batch; returns its checkpoint.
    fn note_raw(&mut self, evs: &[RawEvent]) -> Option<[u8; 16]> {
        let mut cp = None;
        for e in evs {
            match e.kind {
                KIND_CHECKPOINT => {
                    self.checkpoints.push(e.id);
                    cp = Some(e.id);
                }
                KIND_HANDOFF => self.handoffs.push(e.id),
                _ => {}
            }
        }
        cp
    }
}

const SYSTEMS: [&str; 3] = ["", "_sled", "_sqlite"];

/// The same log in the three systems, with the ids each one generated.
struct Trio {
    dirs: [PathBuf; 3],
    mission: String,
    ids: [Ids; 3],
}

struct Open {
    bus: MissionBus,
    raw: RawSled,
    sq: Connection,
}

impl Trio {
    fn new(root: &Path, name: &str, mission: &str) -> Res<Trio> {
        let dirs = [
            root.join(format!("bus-{name}")),
            root.join(format!("sled-{name}")),
            root.join(format!("sqlite-{name}")),
        ];
        std::fs::create_dir_all(&dirs[2])?;
        Ok(Trio {
            dirs,
            mission: mission.to_string(),
            ids: Default::default(),
        })
    }

    fn open(&self) -> Res<Open> {
        Ok(Open {
            bus: open_bus(&self.dirs[0])?,
            raw: RawSled::open(&self.dirs[1])?,
            sq: sqlite_open(&self.dirs[2])?,
        })
    }

    /// Append `events` in batches of `batch` to all three, batch by batch
    /// and in rotating order, so a load change on the machine hits all
    /// three alike. Returns the time each spent inside its append calls
    /// (the baselines' timing includes generating their records).
    fn fill(&mut self, o: &mut Open, events: usize, batch: usize, show: bool) -> Res<[f64; 3]> {
        create_mission(&o.bus, &self.mission, &["ada".into(), "bob".into()])?;
        let mut spent = [Duration::ZERO; 3];
        let mut bus_cp = None;
        let mut raw_cp: [Option<[u8; 16]>; 3] = [None; 3];
        for b in 0..events / batch {
            for k in 0..3 {
                let sys = (b + k) % 3;
                match sys {
                    0 => {
                        let items = bus_batch(batch, b * batch, b == 0, bus_cp);
                        let t = Instant::now();
                        let stored = o.bus.append_batch(&self.mission, items, None)?;
                        spent[0] += t.elapsed();
                        bus_cp = self.ids[0].note_bus(&stored).or(bus_cp);
                    }
                    1 => {
                        let t = Instant::now();
                        let evs = raw_batch(batch, b, raw_cp[1]);
                        o.raw.append(1, &evs)?;
                        spent[1] += t.elapsed();
                        raw_cp[1] = self.ids[1].note_raw(&evs).or(raw_cp[1]);
                    }
                    _ => {
                        let t = Instant::now();
                        let evs = raw_batch(batch, b, raw_cp[2]);
                        sqlite_append(&mut o.sq, 1, &evs)?;
                        spent[2] += t.elapsed();
                        raw_cp[2] = self.ids[2].note_raw(&evs).or(raw_cp[2]);
                    }
                }
            }
            if show {
                progress(b + 1, events / batch);
            }
        }
        Ok(spent.map(|d| events as f64 / d.as_secs_f64()))
    }
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

/// Run each measurement `reps` times, the systems in rotating order, and
/// keep each one's smallest value (seconds or microseconds: lower is better).
fn interleaved_best(reps: usize, tasks: &mut [&mut dyn FnMut() -> Res<f64>]) -> Res<Vec<f64>> {
    let mut best = vec![f64::MAX; tasks.len()];
    for r in 0..reps {
        for k in 0..tasks.len() {
            let i = (r + k) % tasks.len();
            best[i] = best[i].min((tasks[i])()?);
        }
    }
    Ok(best)
}

/// Microseconds per operation over `ids` (after a short warm-up).
fn per_op_us(ids: &[[u8; 16]], op: &mut dyn FnMut(&[u8; 16]) -> Res<()>) -> Res<f64> {
    let t = Instant::now();
    for id in ids {
        op(id)?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / ids.len() as f64)
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

/// Figures by name.
#[derive(Default)]
struct Figures {
    values: BTreeMap<String, f64>,
}

impl Figures {
    fn set(&mut self, name: &str, v: f64) {
        eprintln!("  {name:<36} {v:>14.2}");
        self.values.insert(name.to_string(), v);
    }

    fn set3(&mut self, name: &str, v: &[f64]) {
        for (suffix, v) in SYSTEMS.iter().zip(v) {
            self.set(&format!("{name}{suffix}"), *v);
        }
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }
}

// ----- workloads ------------------------------------------------------------

fn durable(scale: &Scale, root: &Path, f: &mut Figures) -> Res<()> {
    let n = scale.durable_1;
    let per = scale.per_thread;
    // SQLite commits one fsync at a time: fewer events keep its part short.
    let per_sqlite = (per / 5).max(2);
    eprintln!(
        "== append_durable_1 ({n} events) / append_durable_64 ({THREADS} threads x {per}; SQLite x {per_sqlite})"
    );
    let writers: Vec<String> = (0..THREADS / MISSIONS_64)
        .map(|w| format!("w{w}"))
        .collect();
    let bus = open_bus(&root.join("bus-durable"))?;
    create_mission(&bus, "solo", &["ada".into()])?;
    for m in 0..MISSIONS_64 {
        create_mission(&bus, &format!("m{m}"), &writers)?;
    }
    let raw = RawSled::open(&root.join("sled-durable"))?;
    std::fs::create_dir_all(root.join("sqlite-durable"))?;
    let sq = Mutex::new(sqlite_open(&root.join("sqlite-durable"))?);

    // One appender, in ten rounds of rotating order.
    const ROUNDS: usize = 10;
    let chunk = (n / ROUNDS).max(1);
    let mut spent = [Duration::ZERO; 3];
    for r in 0..ROUNDS {
        for k in 0..3 {
            let sys = (r + k) % 3;
            match sys {
                0 => {
                    let payloads: Vec<Json> = (0..chunk).map(|i| json(&payload_text(i))).collect();
                    let t = Instant::now();
                    for p in payloads {
                        bus.publish("solo", "ada", "status", p)?;
                    }
                    spent[0] += t.elapsed();
                }
                1 => {
                    let t = Instant::now();
                    for i in 0..chunk {
                        raw.append(100, &[RawEvent::new(Slot::Message, i, None)])?;
                    }
                    spent[1] += t.elapsed();
                }
                _ => {
                    let mut c = sq.lock().map_err(|_| "poisoned")?;
                    let t = Instant::now();
                    for i in 0..chunk {
                        sqlite_append(&mut c, 100, &[RawEvent::new(Slot::Message, i, None)])?;
                    }
                    spent[2] += t.elapsed();
                }
            }
        }
    }
    f.set3(
        "append_durable_1",
        &spent.map(|d| (chunk * ROUNDS) as f64 / d.as_secs_f64()),
    );

    // 64 appenders over 8 missions, REPS rounds in rotating order; the
    // figure is all events over all time.
    let mut events = [0usize; 3];
    let mut spent = [Duration::ZERO; 3];
    for r in 0..REPS {
        for k in 0..3 {
            let sys = (r + k) % 3;
            let each = if sys == 2 {
                per_sqlite
            } else {
                per.div_ceil(REPS)
            };
            let barrier = Barrier::new(THREADS + 1);
            let elapsed = std::thread::scope(|s| -> Res<Duration> {
                let handles: Vec<_> = (0..THREADS)
                    .map(|t| {
                        let (bus, raw, sq, barrier) = (&bus, &raw, &sq, &barrier);
                        s.spawn(move || -> Res<()> {
                            let mission_no = (t % MISSIONS_64) as u64 + 1;
                            let mission = format!("m{}", t % MISSIONS_64);
                            let sender = format!("w{}", t / MISSIONS_64);
                            let payloads: Vec<Json> =
                                (0..each).map(|i| json(&payload_text(i))).collect();
                            barrier.wait();
                            match sys {
                                0 => {
                                    for p in payloads {
                                        bus.publish(&mission, &sender, "status", p)?;
                                    }
                                }
                                1 => {
                                    for i in 0..each {
                                        let e = RawEvent::new(Slot::Message, i, None);
                                        raw.append(mission_no, &[e])?;
                                    }
                                }
                                _ => {
                                    // One connection behind a mutex: SQLite has
                                    // one writer at a time anyway.
                                    for i in 0..each {
                                        let e = RawEvent::new(Slot::Message, i, None);
                                        let mut c = sq.lock().map_err(|_| "poisoned")?;
                                        sqlite_append(&mut c, mission_no as i64, &[e])?;
                                    }
                                }
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
            events[sys] += THREADS * each;
            spent[sys] += elapsed;
        }
    }
    let rates: Vec<f64> = (0..3)
        .map(|i| events[i] as f64 / spent[i].as_secs_f64())
        .collect();
    f.set3("append_durable_64", &rates);
    bus.close();
    Ok(())
}

/// Lookups by checkpoint id and resume packets on an open trio.
fn lookups(t: &Trio, o: &Open, suffix: &str, f: &mut Figures) -> Res<()> {
    let cps: Vec<Vec<[u8; 16]>> = t
        .ids
        .iter()
        .map(|ids| shuffled(&ids.checkpoints, LOOKUPS, 5))
        .collect();
    let hos: Vec<Vec<[u8; 16]>> = t
        .ids
        .iter()
        .map(|ids| shuffled(&ids.handoffs, LOOKUPS, 7))
        .collect();
    let mut bus_cp = |id: &[u8; 16]| -> Res<()> {
        o.bus.checkpoint(&Uuid::from_bytes(*id))?;
        Ok(())
    };
    let mut raw_cp = |id: &[u8; 16]| o.raw.get_event(&o.raw.checkpoints, id).map(|_| ());
    let mut sq_cp = |id: &[u8; 16]| sqlite_by_id(&o.sq, id, KIND_CHECKPOINT).map(|_| ());
    let mut bus_ho = |id: &[u8; 16]| -> Res<()> {
        o.bus.resume_packet(&Uuid::from_bytes(*id))?;
        Ok(())
    };
    let mut raw_ho = |id: &[u8; 16]| o.raw.resume(id).map(|_| ());
    let mut sq_ho = |id: &[u8; 16]| sqlite_resume(&o.sq, id).map(|_| ());
    // Warm-up: a short pass each.
    per_op_us(&cps[0][..2000], &mut bus_cp)?;
    per_op_us(&cps[1][..2000], &mut raw_cp)?;
    per_op_us(&cps[2][..2000], &mut sq_cp)?;
    per_op_us(&hos[0][..2000], &mut bus_ho)?;
    per_op_us(&hos[1][..2000], &mut raw_ho)?;
    per_op_us(&hos[2][..2000], &mut sq_ho)?;
    let v = interleaved_best(
        LOOKUP_REPS,
        &mut [
            &mut || per_op_us(&cps[0], &mut bus_cp),
            &mut || per_op_us(&cps[1], &mut raw_cp),
            &mut || per_op_us(&cps[2], &mut sq_cp),
        ],
    )?;
    f.set3(&format!("lookup_checkpoint{suffix}"), &v);
    let v = interleaved_best(
        LOOKUP_REPS,
        &mut [
            &mut || per_op_us(&hos[0], &mut bus_ho),
            &mut || per_op_us(&hos[1], &mut raw_ho),
            &mut || per_op_us(&hos[2], &mut sq_ho),
        ],
    )?;
    f.set3(&format!("resume_packet{suffix}"), &v);
    Ok(())
}

/// The big mission: batch appends, replay, reopen, lookups, size.
fn big(scale: &Scale, root: &Path, f: &mut Figures) -> Res<()> {
    let n = scale.events;
    eprintln!("== big mission: {n} events in batches of {BATCH}, three systems side by side");
    let mut trio = Trio::new(root, "big", "big")?;
    {
        let mut o = trio.open()?;
        eprint!("  append_batch_1000:");
        let rates = trio.fill(&mut o, n, BATCH, true)?;
        f.set3("append_batch_1000", &rates);
        let head = o.bus.state("big")?.head;
        let secs = interleaved_best(
            REPS,
            &mut [
                &mut || {
                    let t = Instant::now();
                    let s = o.bus.rebuild_state("big")?;
                    assert_eq!(s.head, head);
                    Ok(t.elapsed().as_secs_f64())
                },
                &mut || {
                    let t = Instant::now();
                    let s = o.raw.replay(1)?;
                    assert_eq!(s.head as usize, n);
                    Ok(t.elapsed().as_secs_f64())
                },
                &mut || {
                    let t = Instant::now();
                    let s = sqlite_replay(&o.sq, 1)?;
                    assert_eq!(s.head as usize, n);
                    Ok(t.elapsed().as_secs_f64())
                },
            ],
        )?;
        f.set3(
            "replay_rebuild",
            &[
                head as f64 / secs[0],
                n as f64 / secs[1],
                n as f64 / secs[2],
            ],
        );
        // What a reader of the stream gets: `events()` also follows the
        // hash chain (one BLAKE3 per record). mission-bus only.
        let mut best = f64::MAX;
        for _ in 0..REPS {
            let t = Instant::now();
            let mut count = 0u64;
            for e in o.bus.events("big", 1, head)? {
                e?;
                count += 1;
            }
            assert_eq!(count, head);
            best = best.min(t.elapsed().as_secs_f64());
        }
        f.set("replay_verified", head as f64 / best);
        o.bus.close();
    }
    // Reopen. The first open after the writes pays sled's log recovery
    // (sled 0.34 writes its page-table snapshot only while opening); later
    // opens start from that snapshot. The baselines only read their head.
    let mut opens: [Vec<f64>; 3] = Default::default();
    for _ in 0..=REPS {
        let t = Instant::now();
        let bus = open_bus(&trio.dirs[0])?;
        let head = bus.state("big")?.head;
        opens[0].push(ms(t.elapsed()));
        assert!(head as usize >= n);
        bus.close();
        drop(bus);
        let t = Instant::now();
        let raw = RawSled::open(&trio.dirs[1])?;
        let head = raw.head(1)?;
        opens[1].push(ms(t.elapsed()));
        assert_eq!(head as usize, n);
        drop(raw);
        let t = Instant::now();
        let conn = sqlite_open(&trio.dirs[2])?;
        let head = sqlite_head(&conn, 1)?;
        opens[2].push(ms(t.elapsed()));
        assert_eq!(head as usize, n);
    }
    f.set3("open_rebuild_snapshot", &opens.each_ref().map(|v| v[0]));
    f.set3(
        "open_rebuild_snapshot_warm",
        &opens.each_ref().map(|v| median(v[1..].to_vec())),
    );
    {
        let o = trio.open()?;
        // First touch after open: distinct handoffs, sled's cache cold.
        let distinct: Vec<Vec<[u8; 16]>> = trio
            .ids
            .iter()
            .map(|ids| shuffled(&ids.handoffs, ids.handoffs.len().min(500), 11))
            .collect();
        let v = [
            per_op_us(&distinct[0], &mut |id| {
                o.bus.resume_packet(&Uuid::from_bytes(*id))?;
                Ok(())
            })?,
            per_op_us(&distinct[1], &mut |id| o.raw.resume(id).map(|_| ()))?,
            per_op_us(&distinct[2], &mut |id| sqlite_resume(&o.sq, id).map(|_| ()))?,
        ];
        f.set3("resume_packet_first_touch", &v);
        lookups(&trio, &o, "", f)?;
        o.bus.close();
    }
    let sizes: Vec<f64> = trio
        .dirs
        .iter()
        .map(|d| dir_bytes(d) as f64 / n as f64)
        .collect();
    f.set3("bytes_per_event", &sizes);
    for d in &trio.dirs {
        std::fs::remove_dir_all(d)?;
    }
    Ok(())
}

/// The same lookups on a 1k-event mission (stores of their own).
fn small(root: &Path, f: &mut Figures) -> Res<()> {
    eprintln!("== small mission: {SMALL} events");
    // Batches of 100, so that the small log holds ten checkpoints and nine handoffs.
    let mut trio = Trio::new(root, "small", "small")?;
    let mut o = trio.open()?;
    trio.fill(&mut o, SMALL, 100, false)?;
    // Right after the writes, fresh checkpoints and handoffs are answered
    // from mission-bus's recent-events cache: the resuming-agent case.
    lookups(&trio, &o, "_recent", f)?;
    o.bus.close();
    drop(o);
    // Reopened, like the big mission, so `_1k` and the 1M figures measure
    // the same path: index get, log get, decode.
    let o = trio.open()?;
    lookups(&trio, &o, "_1k", f)?;
    o.bus.close();
    Ok(())
}

// ----- report -------------------------------------------------------------

/// (workload, unit, higher is better)
const ROWS: &[(&str, &str, bool)] = &[
    ("append_durable_1", "events/s", true),
    ("append_durable_64", "events/s", true),
    ("append_batch_1000", "events/s", true),
    ("replay_rebuild", "events/s", true),
    ("replay_verified", "events/s", true),
    ("open_rebuild_snapshot", "ms", false),
    ("open_rebuild_snapshot_warm", "ms", false),
    ("lookup_checkpoint", "us/op", false),
    ("lookup_checkpoint_1k", "us/op", false),
    ("resume_packet", "us/op", false),
    ("resume_packet_1k", "us/op", false),
    ("resume_packet_first_touch", "us/op", false),
    ("lookup_checkpoint_recent", "us/op", false),
    ("resume_packet_recent", "us/op", false),
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
    let [bus_l, sled_l, sq_l] = Level::get().labels();
    println!(
        "Durability level of this run: {:?} on every side.",
        Level::get()
    );
    println!(
        "| workload | unit | {bus_l} | {sled_l} | {sq_l} | {bus_l} / {sled_l} | {bus_l} / {sq_l} |"
    );
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
    // 1 = Sync (power-cut safe on every side), 0 = Flush (process-crash safe).
    f.set(
        "durability_sync",
        f64::from(u8::from(Level::get() == Level::Sync)),
    );
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
