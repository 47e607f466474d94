//! `MissionBus`: permission checks, the one write path, resume packets.
//!
//! Writes go through a single writer thread that owns all state mutation.
//! Callers send it requests; it drains whatever is queued (a *commit group*),
//! checks each request against the mission state as it will be once the
//! earlier requests of the group land, writes the whole group in one sled
//! transaction, makes it durable with one flush, and only then publishes the
//! new state and acknowledges every request of the group. Concurrent
//! appenders therefore share flushes (group commit), and nobody is
//! acknowledged before their event is durable.
//!
//! Reads (state, resume packets, lookups, replay) run on the caller's thread
//! against the published state, which only ever reflects durable events.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::codec::{self, Hash};
use crate::error::{Error, Result};
use crate::event::{now_micros, Event, EventBody, EventType, Json, OPERATOR};
use crate::keys::MissionNo;
use crate::profiles::{Capability, IsolationProfile, MissionConfig};
use crate::state::{MissionState, Participant};
use crate::store::{Durability, EventIter, Index, PlannedAppend, Store, StoreOptions};
use crate::verify::VerifyReport;

/// Largest record body we let reach sled. sled writes values over ~128 KiB
/// to separate blob files without fsync, so every record stays below that.
pub const MAX_RECORD_BYTES: usize = 120 * 1024;
/// Longest mission id, participant name or role, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest topic, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
/// Longest title, summary or note, in bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Most artifacts on one checkpoint.
pub const MAX_ARTIFACTS: usize = 256;
/// Events per transaction when importing a whole log.
const IMPORT_CHUNK: usize = 10_000;
/// Most requests the writer folds into one commit group.
const MAX_GROUP: usize = 1024;
/// Requests that may wait for the writer before senders block.
const QUEUE_DEPTH: usize = 4096;

/// Options for opening a [`MissionBus`]. Every setter documents its default.
#[derive(Debug, Clone)]
pub struct MissionBusBuilder {
    path: PathBuf,
    durability: Durability,
    cache_capacity: u64,
    flush_every_ms: Option<u64>,
    max_payload_bytes: usize,
    snapshot_every: u64,
}

impl MissionBusBuilder {
    /// When appends are acknowledged. By default [`Durability::Flush`]: after
    /// sled's log is flushed, so a process crash cannot lose an acknowledged event.
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// sled's page cache size in bytes. By default 64 MiB. sled's resident
    /// memory can grow past it; set it explicitly for your machine.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// sled's background flush (with a real fsync) period. By default 500 ms;
    /// `None` disables it (then only explicit flushes reach the disk).
    pub fn flush_every_ms(mut self, ms: Option<u64>) -> Self {
        self.flush_every_ms = ms;
        self
    }

    /// Largest accepted payload, checkpoint state or participant metadata
    /// (canonical JSON bytes). By default 64 KiB; at most 100 KiB, so that a
    /// whole record stays under sled's blob threshold.
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Save a state snapshot every this many events per mission. By default
    /// 1000; 0 disables snapshots (state is then always rebuilt from the log).
    pub fn snapshot_every(mut self, events: u64) -> Self {
        self.snapshot_every = events;
        self
    }

    /// Open (creating if needed) the store. Fails with
    /// [`Error::DataDirInUse`] if another process holds the directory.
    pub fn open(self) -> Result<MissionBus> {
        if self.max_payload_bytes == 0 || self.max_payload_bytes > 100 * 1024 {
            return Err(Error::invalid(
                "max_payload_bytes",
                format!("{} is outside 1..=102400", self.max_payload_bytes),
            ));
        }
        let store_options = StoreOptions {
            cache_capacity: self.cache_capacity,
            flush_every_ms: self.flush_every_ms,
        };
        let store = Arc::new(Store::open(&self.path, &store_options)?);
        let mut directory = Directory::default();
        for (name, no) in store.missions()? {
            directory.insert(name, no);
        }
        let shared = Arc::new(Shared {
            cache: RwLock::new(HashMap::new()),
            directory: RwLock::new(directory),
            committed: tokio::sync::broadcast::channel(SUBSCRIBER_BUFFER).0,
            mission_channels: Mutex::new(HashMap::new()),
            recent: Mutex::new(RecentEvents::new()),
            written: std::sync::atomic::AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::sync_channel(QUEUE_DEPTH);
        let writer = Writer {
            store: Arc::clone(&store),
            shared: Arc::clone(&shared),
            durability: self.durability,
            snapshot_every: self.snapshot_every,
        };
        let handle = std::thread::Builder::new()
            .name("mission-bus-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(MissionBus {
            inner: Arc::new(Inner {
                store: Some(store),
                shared,
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                limits: Limits {
                    max_payload_bytes: self.max_payload_bytes,
                },
                durability: self.durability,
                store_options,
            }),
        })
    }
}

/// A handle on a mission store. Cheap to clone (an `Arc` inside), `Send +
/// Sync`: share one per process. The store is closed when the last clone is
/// dropped (or [`MissionBus::close`] is called).
#[derive(Clone)]
pub struct MissionBus {
    inner: Arc<Inner>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MissionBus>();
};

struct Inner {
    /// `None` only while dropping.
    store: Option<Arc<Store>>,
    shared: Arc<Shared>,
    tx: Mutex<Option<SyncSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    limits: Limits,
    durability: Durability,
    store_options: StoreOptions,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(store) = self.store.take() {
            let lock = store.lock_file();
            let path = store.path().to_path_buf();
            drop(store);
            // sled releases its directory lock from background threads a
            // moment after the Db is dropped; wait for it (bounded), so that
            // "closed" means "can be reopened", here or by another process.
            let released = || wait_for_unlock(&lock, std::time::Duration::from_secs(5));
            if released()
                && self
                    .shared
                    .written
                    .load(std::sync::atomic::Ordering::Relaxed)
                    >= FAST_REOPEN_AFTER_EVENTS
            {
                // Best effort: a failure only means a slower next open.
                if Store::write_recovery_snapshot(&path, &self.store_options).is_ok() {
                    released();
                }
            }
        }
    }
}

/// A clean close after a session that wrote at least this many events lets
/// sled write its recovery snapshot (see `Store::write_recovery_snapshot`).
const FAST_REOPEN_AFTER_EVENTS: u64 = 10_000;

/// Poll until nobody holds an exclusive lock on `path`, or `limit` passes.
/// Returns whether the lock is free.
fn wait_for_unlock(path: &Path, limit: std::time::Duration) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let deadline = std::time::Instant::now() + limit;
    loop {
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                return true;
            }
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(_) => return false,
        }
    }
}

impl Inner {
    fn store(&self) -> &Arc<Store> {
        self.store
            .as_ref()
            .expect("the store is only taken when the bus is dropped")
    }

    fn shutdown(&self) {
        // Dropping the sender ends the writer after it drains the queue.
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_payload_bytes: usize,
}

/// State visible to readers: only ever durable events.
struct Shared {
    cache: RwLock<HashMap<MissionNo, Arc<Cached>>>,
    directory: RwLock<Directory>,
    committed: tokio::sync::broadcast::Sender<Arc<Committed>>,
    /// Per-mission broadcasts, so a busy mission cannot make the
    /// subscribers of a quiet one lag. Keyed by mission id; entries without
    /// receivers are dropped whenever someone subscribes.
    mission_channels: Mutex<HashMap<String, tokio::sync::broadcast::Sender<Arc<Committed>>>>,
    recent: Mutex<RecentEvents>,
    /// Events written since open.
    written: std::sync::atomic::AtomicU64,
}

/// An event that was just made durable, as seen by [`MissionBus::subscribe`].
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The mission it belongs to.
    pub mission_id: String,
    /// The event.
    pub event: Event,
}

/// Who a participant token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    /// The mission the token is valid for (and only that one).
    pub mission_id: String,
    /// The participant.
    pub name: String,
}

/// Events kept for slow subscribers before they are told they lagged.
const SUBSCRIBER_BUFFER: usize = 4096;

/// Recently committed checkpoints and handoffs, by id: the events a resume
/// packet needs, answered from memory while they are fresh (the common case:
/// an agent resumes soon after the handoff), so the cost does not depend on
/// sled's tree depth. Filled by the writer after the flush; events never
/// change, so nothing is ever invalidated. Bounded by count and by bytes,
/// oldest out first.
struct RecentEvents {
    by_id: HashMap<Uuid, (MissionNo, Arc<Event>, usize)>,
    order: std::collections::VecDeque<Uuid>,
    bytes: usize,
}

const RECENT_MAX_EVENTS: usize = 4096;
const RECENT_MAX_BYTES: usize = 16 << 20;

impl RecentEvents {
    fn new() -> Self {
        RecentEvents {
            by_id: HashMap::new(),
            order: std::collections::VecDeque::new(),
            bytes: 0,
        }
    }

    fn insert(&mut self, mission: MissionNo, event: &Event) {
        let cost = 256
            + match &event.body {
                EventBody::Checkpoint {
                    summary,
                    state,
                    artifacts,
                } => {
                    summary.len()
                        + state.as_str().len()
                        + artifacts.iter().map(String::len).sum::<usize>()
                }
                EventBody::Handoff { note, .. } => note.len(),
                _ => return,
            };
        while !self.order.is_empty()
            && (self.order.len() >= RECENT_MAX_EVENTS || self.bytes + cost > RECENT_MAX_BYTES)
        {
            if let Some(old) = self.order.pop_front().and_then(|id| self.by_id.remove(&id)) {
                self.bytes -= old.2;
            }
        }
        self.by_id
            .insert(event.id, (mission, Arc::new(event.clone()), cost));
        self.order.push_back(event.id);
        self.bytes += cost;
    }

    fn get(&self, id: &Uuid, kind: EventType) -> Option<(MissionNo, Arc<Event>)> {
        self.by_id
            .get(id)
            .filter(|(_, e, _)| e.event_type() == kind)
            .map(|(m, e, _)| (*m, Arc::clone(e)))
    }
}

/// Registered missions, both ways (string id <-> internal number).
#[derive(Default)]
struct Directory {
    by_name: HashMap<String, MissionNo>,
    by_no: HashMap<MissionNo, String>,
}

impl Directory {
    fn insert(&mut self, name: String, no: MissionNo) {
        self.by_no.insert(no, name.clone());
        self.by_name.insert(name, no);
    }
}

impl Shared {
    fn directory(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        self.directory.read().unwrap_or_else(|p| p.into_inner())
    }

    fn no_of(&self, mission: &str) -> Option<MissionNo> {
        self.directory().by_name.get(mission).copied()
    }

    fn name_of(&self, no: MissionNo) -> Option<String> {
        self.directory().by_no.get(&no).cloned()
    }

    /// The published (durable) state of a mission, if it is in memory.
    fn cached(&self, no: MissionNo) -> Option<Arc<Cached>> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&no)
            .cloned()
    }

    /// A recently committed checkpoint or handoff, if still remembered.
    fn recent(&self, id: &Uuid, kind: EventType) -> Option<(MissionNo, Arc<Event>)> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id, kind)
    }
}

#[derive(Debug, Clone)]
struct Cached {
    no: MissionNo,
    state: Arc<MissionState>,
    hash: Hash,
    snapshot_seq: u64,
}

/// What an append asks for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Register a participant. The sender must be [`OPERATOR`] or a participant with role `lead`.
    Join {
        /// Participant name.
        name: String,
        /// Role (defined in the mission's config).
        role: String,
        /// JSON metadata.
        metadata: Json,
    },
    /// Change a participant's role. Same sender rule as `Join`.
    ChangeRole {
        /// Participant name.
        name: String,
        /// The new role.
        role: String,
    },
    /// Publish a message (capability `publish`).
    Publish {
        /// Topic.
        topic: String,
        /// Payload.
        payload: Json,
    },
    /// Save a checkpoint (capability `checkpoint`).
    Checkpoint {
        /// Summary.
        summary: String,
        /// State to resume from.
        state: Json,
        /// Artifact paths.
        artifacts: Vec<String>,
    },
    /// Hand work to a participant (capability `handoff`).
    Handoff {
        /// Recipient.
        recipient: String,
        /// Checkpoint of this mission to resume from.
        checkpoint_id: Uuid,
        /// Note.
        note: String,
    },
}

/// Optional guards on an append.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOptions {
    /// The head sequence the caller expects before its event(s); on mismatch
    /// the append fails with [`Error::SequenceConflict`] and writes nothing.
    pub expected_sequence: Option<u64>,
    /// Caller-chosen event id. If an event with this id is already stored
    /// with the same content, the stored event is returned instead of
    /// writing again (safe retries); with other content it is
    /// [`Error::EventIdConflict`]. Applies to single appends.
    pub event_id: Option<Uuid>,
}

/// A mission to create.
#[derive(Debug, Clone)]
pub struct NewMission {
    /// User-given id, e.g. `mission-883`.
    pub mission_id: String,
    /// Title.
    pub title: String,
    /// Roles and profiles; by default [`MissionConfig::default`].
    pub config: MissionConfig,
    /// A lead registered in the same atomic append, with role `lead`.
    pub lead: Option<String>,
}

impl NewMission {
    /// A mission with the default config and no lead.
    pub fn new(mission_id: impl Into<String>, title: impl Into<String>) -> Self {
        NewMission {
            mission_id: mission_id.into(),
            title: title.into(),
            config: MissionConfig::default(),
            lead: None,
        }
    }

    /// Use this roles/profiles config.
    pub fn config(mut self, config: MissionConfig) -> Self {
        self.config = config;
        self
    }

    /// Register `name` as the first participant, with role `lead`.
    pub fn lead(mut self, name: impl Into<String>) -> Self {
        self.lead = Some(name.into());
        self
    }
}

/// What an agent needs to pick up handed-off work (the prototype's fields).
#[derive(Debug, Clone, PartialEq)]
pub struct ResumePacket {
    /// The mission.
    pub mission_id: String,
    /// Its title.
    pub title: String,
    /// Who the work was handed to.
    pub recipient: String,
    /// Who handed it off.
    pub sender: String,
    /// The handoff's note.
    pub handoff_note: String,
    /// The handoff event itself (its id, sequence and timestamp).
    pub handoff: Event,
    /// The full checkpoint event to resume from.
    pub checkpoint: Event,
    /// Participants by name, as of now.
    pub participants: std::collections::BTreeMap<String, Participant>,
    /// Isolation profiles of the mission.
    pub isolation_profiles: Vec<IsolationProfile>,
    /// Number of stream events (messages, checkpoints, handoffs) in the mission.
    pub stream_length: u64,
    /// The mission's head sequence (all events, membership included).
    pub head_sequence: u64,
}

/// One line of [`MissionBus::missions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissionSummary {
    /// The mission id.
    pub mission_id: String,
    /// Title.
    pub title: String,
    /// Head sequence = number of events (sequences are contiguous from 1).
    pub head_sequence: u64,
}

/// An event to append: built by the public methods, validated by the writer.
#[derive(Debug, Clone)]
struct Draft {
    id: Option<Uuid>,
    timestamp: Option<DateTime<Utc>>,
    sender: String,
    body: EventBody,
}

enum Job {
    Append {
        mission: String,
        drafts: Vec<Draft>,
        expected: Option<u64>,
        reply: mpsc::Sender<Result<Vec<Event>>>,
    },
    Import {
        events: Vec<Event>,
        progress: Box<dyn FnMut(u64) + Send>,
        reply: mpsc::Sender<Result<u64>>,
    },
    Load {
        mission: String,
        reply: mpsc::Sender<Result<Arc<Cached>>>,
    },
    Verify {
        mission: String,
        reply: mpsc::Sender<Result<VerifyReport>>,
    },
}

impl MissionBus {
    /// A builder for the store at `path`, with the defaults documented on each setter.
    pub fn builder(path: impl AsRef<Path>) -> MissionBusBuilder {
        MissionBusBuilder {
            path: path.as_ref().to_path_buf(),
            durability: Durability::default(),
            cache_capacity: 64 * 1024 * 1024,
            flush_every_ms: Some(500),
            max_payload_bytes: 64 * 1024,
            snapshot_every: 1000,
        }
    }

    /// Open the store at `path` with all defaults.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).open()
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        self.inner.store().path()
    }

    /// The durability mode this bus acknowledges with.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Stop the writer (after it finishes queued requests) and release the
    /// data directory once every clone is dropped. Later writes fail with
    /// [`Error::Closed`].
    pub fn close(&self) {
        self.inner.shutdown();
    }

    fn send<T>(&self, make: impl FnOnce(mpsc::Sender<Result<T>>) -> Job) -> Result<T> {
        let (reply, rx) = mpsc::channel();
        let tx = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(Error::Closed)?;
        tx.send(make(reply)).map_err(|_| Error::Closed)?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    // ----- writes -------------------------------------------------------

    /// Create a mission (and register its lead, if given) atomically.
    /// Returns the stored events: `mission_created`, then `participant_joined`.
    pub fn create_mission(&self, m: NewMission) -> Result<Vec<Event>> {
        check_name("mission id", &m.mission_id)?;
        check_text("title", &m.title, MAX_TEXT_BYTES)?;
        let sender = m.lead.clone().unwrap_or_else(|| OPERATOR.to_string());
        let mut drafts = vec![Draft {
            id: None,
            timestamp: None,
            sender: sender.clone(),
            body: EventBody::MissionCreated {
                mission_id: m.mission_id.clone(),
                title: m.title,
                config: m.config,
            },
        }];
        if let Some(lead) = m.lead {
            check_participant_name("lead", &lead)?;
            drafts.push(Draft {
                id: None,
                timestamp: None,
                sender,
                body: EventBody::ParticipantJoined {
                    name: lead,
                    role: "lead".into(),
                    metadata: Json::empty_object(),
                },
            });
        }
        self.send(|reply| Job::Append {
            mission: m.mission_id,
            drafts,
            expected: None,
            reply,
        })
    }

    /// Append one event: `sender` does `action` in `mission`, checked against
    /// the sender's role. Returns the stored, durable event.
    pub fn append(
        &self,
        mission: &str,
        sender: &str,
        action: Action,
        opts: &AppendOptions,
    ) -> Result<Event> {
        let draft = self.draft(sender, action, opts.event_id, None)?;
        let mut events = self.send(|reply| Job::Append {
            mission: mission.to_string(),
            drafts: vec![draft],
            expected: opts.expected_sequence,
            reply,
        })?;
        events.pop().ok_or(Error::Closed)
    }

    /// Append several events to one mission atomically (all or none), with
    /// one flush. Each item is checked as if the earlier ones had landed.
    pub fn append_batch(
        &self,
        mission: &str,
        items: Vec<(String, Action)>,
        expected_sequence: Option<u64>,
    ) -> Result<Vec<Event>> {
        if items.is_empty() {
            return Err(Error::invalid("batch", "is empty"));
        }
        let drafts = items
            .into_iter()
            .map(|(sender, action)| self.draft(&sender, action, None, None))
            .collect::<Result<Vec<_>>>()?;
        self.send(|reply| Job::Append {
            mission: mission.to_string(),
            drafts,
            expected: expected_sequence,
            reply,
        })
    }

    /// Register `name` with `role` (by the operator, as the prototype's
    /// `register_participant`).
    pub fn join(&self, mission: &str, name: &str, role: &str, metadata: Json) -> Result<Event> {
        self.append(
            mission,
            OPERATOR,
            Action::Join {
                name: name.into(),
                role: role.into(),
                metadata,
            },
            &AppendOptions::default(),
        )
    }

    /// Publish a message (capability `publish`).
    pub fn publish(
        &self,
        mission: &str,
        sender: &str,
        topic: &str,
        payload: Json,
    ) -> Result<Event> {
        self.append(
            mission,
            sender,
            Action::Publish {
                topic: topic.into(),
                payload,
            },
            &AppendOptions::default(),
        )
    }

    /// Save a checkpoint (capability `checkpoint`).
    pub fn create_checkpoint(
        &self,
        mission: &str,
        sender: &str,
        summary: &str,
        state: Json,
        artifacts: Vec<String>,
    ) -> Result<Event> {
        self.append(
            mission,
            sender,
            Action::Checkpoint {
                summary: summary.into(),
                state,
                artifacts,
            },
            &AppendOptions::default(),
        )
    }

    /// Hand work to `recipient`, pointing at a checkpoint of this mission
    /// (capability `handoff`).
    pub fn handoff(
        &self,
        mission: &str,
        sender: &str,
        recipient: &str,
        checkpoint_id: Uuid,
        note: &str,
    ) -> Result<Event> {
        self.append(
            mission,
            sender,
            Action::Handoff {
                recipient: recipient.into(),
                checkpoint_id,
                note: note.into(),
            },
            &AppendOptions::default(),
        )
    }

    /// Stateless checks (names, sizes) on the caller's thread, before the
    /// writer sees the request.
    fn draft(
        &self,
        sender: &str,
        action: Action,
        id: Option<Uuid>,
        timestamp: Option<DateTime<Utc>>,
    ) -> Result<Draft> {
        if sender != OPERATOR {
            check_participant_name("sender", sender)?;
        }
        let body = match action {
            Action::Join {
                name,
                role,
                metadata,
            } => {
                check_participant_name("participant name", &name)?;
                check_name("role", &role)?;
                EventBody::ParticipantJoined {
                    name,
                    role,
                    metadata,
                }
            }
            Action::ChangeRole { name, role } => {
                check_participant_name("participant name", &name)?;
                check_name("role", &role)?;
                EventBody::RoleChanged { name, role }
            }
            Action::Publish { topic, payload } => EventBody::Message { topic, payload },
            Action::Checkpoint {
                summary,
                state,
                artifacts,
            } => EventBody::Checkpoint {
                summary,
                state,
                artifacts,
            },
            Action::Handoff {
                recipient,
                checkpoint_id,
                note,
            } => {
                check_participant_name("recipient", &recipient)?;
                EventBody::Handoff {
                    recipient,
                    checkpoint_id,
                    note,
                }
            }
        };
        check_body(&body, self.inner.limits)?;
        Ok(Draft {
            id,
            timestamp,
            sender: sender.to_string(),
            body,
        })
    }

    /// Import a whole mission log (as exported): sequences 1..=n, the first
    /// a `mission_created`. Event ids, timestamps and payloads are kept.
    /// Every event is validated as if appended live (roles, references)
    /// before anything is written; the mission becomes visible atomically
    /// when the last chunk is durable. Refuses an existing mission id.
    /// `progress` is called with the number of events written so far.
    pub fn import_log(
        &self,
        events: Vec<Event>,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<u64> {
        let Some(first) = events.first() else {
            return Err(Error::invalid("import", "the log is empty"));
        };
        let EventBody::MissionCreated {
            mission_id, title, ..
        } = &first.body
        else {
            return Err(Error::invalid(
                "import",
                format!(
                    "the first event (sequence {}) is a {}, not mission_created",
                    first.sequence,
                    first.event_type()
                ),
            ));
        };
        check_name("mission id", mission_id)?;
        check_text("title", title, MAX_TEXT_BYTES)?;
        for (i, e) in events.iter().enumerate() {
            if e.sequence != i as u64 + 1 {
                return Err(Error::invalid(
                    "import",
                    format!(
                        "event #{} has sequence {}; sequences must run 1, 2, 3, ... without gaps",
                        i + 1,
                        e.sequence
                    ),
                ));
            }
            if e.sender != OPERATOR {
                check_participant_name("sender", &e.sender)
                    .map_err(|err| at_sequence(err, e.sequence))?;
            }
            check_body(&e.body, self.inner.limits).map_err(|err| at_sequence(err, e.sequence))?;
        }
        self.send(|reply| Job::Import {
            events,
            progress: Box::new(progress),
            reply,
        })
    }

    // ----- reads --------------------------------------------------------

    fn cached(&self, mission: &str) -> Result<Arc<Cached>> {
        let no = self.mission_no(mission)?;
        if let Some(c) = self.inner.shared.cached(no) {
            return Ok(c);
        }
        self.send(|reply| Job::Load {
            mission: mission.to_string(),
            reply,
        })
    }

    fn mission_no(&self, mission: &str) -> Result<MissionNo> {
        self.inner
            .shared
            .no_of(mission)
            .ok_or_else(|| Error::MissionNotFound {
                mission: mission.to_string(),
            })
    }

    /// The mission's current state (as of its last durable event).
    pub fn state(&self, mission: &str) -> Result<Arc<MissionState>> {
        Ok(Arc::clone(&self.cached(mission)?.state))
    }

    /// Rebuild the mission's state from scratch by folding its whole log
    /// through the reducer, ignoring snapshots. Checks every record's
    /// checksum and that sequences are contiguous, like the state loads it
    /// cross-checks; it does not follow the hash chain (about 20 % of a
    /// replay's cost): [`MissionBus::verify`] and the streams of
    /// [`MissionBus::replay`] / [`MissionBus::events`] do.
    pub fn rebuild_state(&self, mission: &str) -> Result<MissionState> {
        let c = self.cached(mission)?;
        let mut state = MissionState::default();
        for event in self.inner.store().scan(c.no, mission, 1, c.state.head) {
            state.apply(&event?);
        }
        Ok(state)
    }

    /// The prototype's `allowed(name, capability)`, for one mission.
    pub fn allowed(&self, mission: &str, name: &str, capability: Capability) -> Result<bool> {
        Ok(self.cached(mission)?.state.allowed(name, capability))
    }

    /// Check that `name` may use `capability` in `mission`, as a typed error.
    pub fn require(&self, mission: &str, name: &str, capability: Capability) -> Result<()> {
        require(&self.cached(mission)?.state, name, capability)
    }

    /// Every mission id, sorted. Reads only the in-memory mission directory.
    pub fn mission_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .inner
            .shared
            .directory()
            .by_name
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// Every mission with its title and head, sorted by id. Does not load
    /// (replay) mission states: a mission not yet in memory costs two `get`s
    /// (its head and its creation record), and no writes can be in flight
    /// for it, since the writer loads a mission before writing to it.
    pub fn missions(&self) -> Result<Vec<MissionSummary>> {
        self.mission_ids()
            .into_iter()
            .map(|name| {
                let no = self.mission_no(&name)?;
                let (title, head_sequence) = match self.inner.shared.cached(no) {
                    Some(c) => (c.state.title.clone(), c.state.head),
                    None => {
                        let store = self.inner.store();
                        let (head, _) = store.head(no, &name)?;
                        let title = match store.event(no, 1, &name)? {
                            Some(Event {
                                body: EventBody::MissionCreated { title, .. },
                                ..
                            }) => title,
                            _ => {
                                return Err(Error::corruption(
                                    &name,
                                    Some(1),
                                    "first record is not mission_created",
                                ))
                            }
                        };
                        (title, head)
                    }
                };
                Ok(MissionSummary {
                    mission_id: name,
                    title,
                    head_sequence,
                })
            })
            .collect()
    }

    /// Replay `mission` as participant `reader` (capability `read`): events
    /// with sequence `from..=` the current head, streamed in order. Every
    /// record's checksum and its link in the hash chain are checked as it
    /// is read, so a damaged, missing, rewritten or reordered record ends
    /// the stream with [`Error::Corruption`] naming its sequence.
    pub fn replay(&self, mission: &str, reader: &str, from: u64) -> Result<EventIter> {
        let c = self.cached(mission)?;
        require(&c.state, reader, Capability::Read)?;
        self.inner
            .store()
            .scan_chained(c.no, mission, from, c.state.head, (c.state.head, c.hash))
    }

    /// The operator's view of the log: events `from..=to` (clamped to the
    /// head), streamed in order, without a participant check. For exports,
    /// audits and tools that already authorized the caller. Checked like
    /// [`MissionBus::replay`] (checksums and hash chain).
    pub fn events(&self, mission: &str, from: u64, to: u64) -> Result<EventIter> {
        let c = self.cached(mission)?;
        self.inner.store().scan_chained(
            c.no,
            mission,
            from,
            to.min(c.state.head),
            (c.state.head, c.hash),
        )
    }

    /// One event by sequence.
    pub fn event(&self, mission: &str, sequence: u64) -> Result<Event> {
        let c = self.cached(mission)?;
        let missing = || {
            Error::invalid(
                "sequence",
                format!(
                    "mission '{mission}' has no sequence {sequence} (head is {})",
                    c.state.head
                ),
            )
        };
        if sequence == 0 || sequence > c.state.head {
            return Err(missing());
        }
        self.inner
            .store()
            .event(c.no, sequence, mission)?
            .ok_or_else(|| Error::corruption(mission, Some(sequence), "record missing"))
    }

    /// The chain hash of the record at `sequence` (BLAKE3 over its key and
    /// bytes, the value the next record carries as its previous hash), after
    /// checking its checksum. `None` for a sequence past the head, or a
    /// record that is missing or damaged (`verify` says which). Sequence 0
    /// is the genesis hash (all zeros), the previous hash of record 1.
    pub fn record_hash(&self, mission: &str, sequence: u64) -> Result<Option<[u8; 32]>> {
        let c = self.cached(mission)?;
        match sequence {
            0 => Ok(Some(codec::GENESIS)),
            s if s > c.state.head => Ok(None),
            s => self.inner.store().record_hash(c.no, s),
        }
    }

    /// Find a checkpoint or handoff by id through its index (one `get` on
    /// the index, one on the log): (mission id, event).
    fn by_index(&self, index: Index, id: &Uuid) -> Result<Option<(String, Event)>> {
        let kind = match index {
            Index::Checkpoints => Some(EventType::Checkpoint),
            Index::Handoffs => Some(EventType::Handoff),
            Index::EventIds => None,
        };
        if let Some(kind) = kind {
            if let Some((no, event)) = self.inner.shared.recent(id, kind) {
                if let Some(name) = self.inner.shared.name_of(no) {
                    return Ok(Some((name, (*event).clone())));
                }
            }
        }
        let Some((no, seq)) = self.inner.store().lookup(index, id)? else {
            return Ok(None);
        };
        let Some(name) = self.inner.shared.name_of(no) else {
            return Ok(None); // an interrupted import's leftovers
        };
        let c = self.cached(&name)?;
        if seq > c.state.head {
            return Ok(None); // written but not yet durable
        }
        let event = self
            .inner
            .store()
            .event(no, seq, &name)?
            .ok_or_else(|| Error::corruption(&name, Some(seq), "indexed record missing"))?;
        if event.id != *id {
            return Err(Error::corruption(
                &name,
                Some(seq),
                format!("index entry for {id} points at event {}", event.id),
            ));
        }
        Ok(Some((name, event)))
    }

    /// A checkpoint by id, in any mission: (mission id, event).
    pub fn checkpoint(&self, checkpoint_id: &Uuid) -> Result<(String, Event)> {
        self.by_index(Index::Checkpoints, checkpoint_id)?
            .ok_or_else(|| Error::CheckpointNotFound {
                mission: "(any)".into(),
                checkpoint_id: *checkpoint_id,
            })
    }

    /// The resume packet of a handoff.
    pub fn resume_packet(&self, handoff_id: &Uuid) -> Result<ResumePacket> {
        let (mission, handoff) =
            self.by_index(Index::Handoffs, handoff_id)?
                .ok_or_else(|| Error::HandoffNotFound {
                    what: handoff_id.to_string(),
                })?;
        self.packet(&mission, handoff)
    }

    /// The resume packet of the latest handoff addressed to `recipient` in
    /// `mission`: where a restarted agent picks up, without knowing an id.
    pub fn latest_resume_packet(&self, mission: &str, recipient: &str) -> Result<ResumePacket> {
        let c = self.cached(mission)?;
        let r = c
            .state
            .latest_handoff_to
            .get(recipient)
            .ok_or_else(|| Error::HandoffNotFound {
                what: format!("no handoff to '{recipient}' in mission '{mission}'"),
            })?;
        let handoff = match self.inner.shared.recent(&r.id, EventType::Handoff) {
            Some((_, e)) => (*e).clone(),
            None => self
                .inner
                .store()
                .event(c.no, r.sequence, mission)?
                .ok_or_else(|| {
                    Error::corruption(mission, Some(r.sequence), "handoff record missing")
                })?,
        };
        self.packet(mission, handoff)
    }

    fn packet(&self, mission: &str, handoff: Event) -> Result<ResumePacket> {
        let EventBody::Handoff {
            recipient,
            checkpoint_id,
            note,
        } = &handoff.body
        else {
            return Err(Error::corruption(
                mission,
                Some(handoff.sequence),
                "handoff index points at a non-handoff event",
            ));
        };
        let (cp_mission, checkpoint) = self
            .by_index(Index::Checkpoints, checkpoint_id)?
            .filter(|(m, _)| m == mission)
            .ok_or_else(|| Error::CheckpointNotFound {
                mission: mission.to_string(),
                checkpoint_id: *checkpoint_id,
            })?;
        debug_assert_eq!(cp_mission, mission);
        let c = self.cached(mission)?;
        Ok(ResumePacket {
            mission_id: mission.to_string(),
            title: c.state.title.clone(),
            recipient: recipient.clone(),
            sender: handoff.sender.clone(),
            handoff_note: note.clone(),
            checkpoint,
            participants: c.state.participants.clone(),
            isolation_profiles: c.state.config.isolation_profiles.clone(),
            stream_length: c.state.stream_length(),
            head_sequence: c.state.head,
            handoff,
        })
    }

    /// Verify one mission: checksums, hash chain, contiguous sequences, head,
    /// and every index entry in both directions. Runs on the writer, so the
    /// log does not move underneath it (appends wait meanwhile).
    pub fn verify(&self, mission: &str) -> Result<VerifyReport> {
        self.mission_no(mission)?;
        self.send(|reply| Job::Verify {
            mission: mission.to_string(),
            reply,
        })
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.inner.store().size_on_disk()
    }

    /// Every event of every mission, as it becomes durable (after the flush,
    /// in commit order; imports are not announced). The channel holds
    /// 4096 events: a receiver that falls further behind gets
    /// `RecvError::Lagged` and should catch up from the log with
    /// [`MissionBus::events`]. Writers never wait for subscribers. For
    /// catch-up-then-live without gaps: subscribe first, read the log, then
    /// skip live events whose sequence was already read.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Committed>> {
        self.inner.shared.committed.subscribe()
    }

    /// Like [`MissionBus::subscribe`], for one mission only: its own 4096-event
    /// channel, so other missions' traffic never makes this receiver lag.
    /// Infallible and silent about whether the mission exists (a receiver
    /// for an unknown mission simply never receives), so a server can
    /// subscribe before it has authorized the caller.
    pub fn subscribe_mission(
        &self,
        mission: &str,
    ) -> tokio::sync::broadcast::Receiver<Arc<Committed>> {
        let mut channels = self
            .inner
            .shared
            .mission_channels
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        channels.retain(|_, tx| tx.receiver_count() > 0);
        channels
            .entry(mission.to_string())
            .or_insert_with(|| tokio::sync::broadcast::channel(SUBSCRIBER_BUFFER).0)
            .subscribe()
    }

    /// Issue a new secret token for participant `name` of `mission`. Only a
    /// hash of it is stored (durably, before this returns); the token itself
    /// is returned once and cannot be recovered. It authenticates that
    /// participant in that mission only. Earlier tokens stay valid.
    pub fn issue_token(&self, mission: &str, name: &str) -> Result<String> {
        Ok(self.new_token(mission, name, false)?.0)
    }

    /// Like [`MissionBus::issue_token`], but every earlier token of that
    /// participant is revoked in the same atomic write (rotation after a
    /// leak, or recovery when a token was lost). Returns the new token and
    /// how many tokens were revoked.
    pub fn reissue_token(&self, mission: &str, name: &str) -> Result<(String, u64)> {
        self.new_token(mission, name, true)
    }

    fn new_token(&self, mission: &str, name: &str, revoke_others: bool) -> Result<(String, u64)> {
        let c = self.cached(mission)?;
        if !c.state.participants.contains_key(name) {
            return Err(Error::ParticipantNotFound {
                mission: mission.to_string(),
                name: name.to_string(),
            });
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| Error::io(self.path(), std::io::Error::other(e.to_string())))?;
        let token = format!("mb_{}", crate::store::hex(&secret));
        let store = self.inner.store();
        let revoked = store.put_token(&token_hash(&token), c.no, name, revoke_others)?;
        // A token is a credential: never acknowledge one that could be lost.
        let durability = match self.inner.durability {
            Durability::Relaxed => Durability::Flush,
            d => d,
        };
        store.flush(durability)?;
        Ok((token, revoked))
    }

    /// Who `token` belongs to, if anyone. The lookup is keyed by the token's
    /// BLAKE3 hash, so the stored hashes reveal nothing usable and the
    /// comparison never runs over the secret itself.
    pub fn authenticate(&self, token: &str) -> Result<Option<TokenOwner>> {
        let Some((no, name)) = self.inner.store().token_owner(&token_hash(token))? else {
            return Ok(None);
        };
        Ok(self
            .inner
            .shared
            .name_of(no)
            .map(|mission_id| TokenOwner { mission_id, name }))
    }
}

/// BLAKE3 of a token, the only form in which tokens are stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

fn at_sequence(err: Error, seq: u64) -> Error {
    match err {
        Error::InvalidInput { field, reason } => Error::InvalidInput {
            field: format!("{field} (sequence {seq})"),
            reason,
        },
        Error::TooLarge { field, size, limit } => Error::TooLarge {
            field: format!("{field} (sequence {seq})"),
            size,
            limit,
        },
        other => other,
    }
}

fn require(state: &MissionState, name: &str, capability: Capability) -> Result<()> {
    let Some(p) = state.participants.get(name) else {
        return Err(Error::NotAParticipant {
            mission: state.mission_id.clone(),
            sender: name.to_string(),
        });
    };
    if state.config.role_allows(&p.role, capability) {
        Ok(())
    } else {
        Err(Error::PermissionDenied {
            mission: state.mission_id.clone(),
            sender: name.to_string(),
            role: p.role.clone(),
            capability: capability.as_str().to_string(),
        })
    }
}

// ----- stateless validation ------------------------------------------------

fn check_text(field: &str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return Err(Error::TooLarge {
            field: field.to_string(),
            size: s.len(),
            limit: max,
        });
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(Error::invalid(
            field,
            format!("contains control character U+{:04X}", c as u32),
        ));
    }
    Ok(())
}

/// Ids, names, roles and topics: non-empty, bounded, no control characters,
/// no surrounding whitespace.
fn check_name(field: &str, s: &str) -> Result<()> {
    check_label(field, s, MAX_NAME_BYTES)
}

fn check_label(field: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(field, "is empty"));
    }
    if s.len() > max {
        return Err(Error::invalid(
            field,
            format!("is {} bytes, longer than {max}", s.len()),
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(
            field,
            format!("contains control character U+{:04X}", c as u32),
        ));
    }
    if s.trim() != s {
        return Err(Error::invalid(field, "has leading or trailing whitespace"));
    }
    Ok(())
}

fn check_participant_name(field: &str, s: &str) -> Result<()> {
    check_name(field, s)?;
    if s.starts_with('@') {
        return Err(Error::invalid(
            field,
            format!("'{s}' starts with '@', which is reserved for the operator"),
        ));
    }
    Ok(())
}

fn check_json(field: &str, j: &Json, limits: Limits) -> Result<()> {
    if j.as_str().len() > limits.max_payload_bytes {
        return Err(Error::TooLarge {
            field: field.to_string(),
            size: j.as_str().len(),
            limit: limits.max_payload_bytes,
        });
    }
    Ok(())
}

fn check_body(body: &EventBody, limits: Limits) -> Result<()> {
    let size = match body {
        EventBody::MissionCreated {
            mission_id,
            title,
            config,
        } => {
            check_name("mission id", mission_id)?;
            check_text("title", title, MAX_TEXT_BYTES)?;
            // The config rides in the creation record: it counts too.
            title.len() + config.to_json().to_string().len()
        }
        EventBody::ParticipantJoined {
            name,
            role,
            metadata,
        } => {
            check_participant_name("participant name", name)?;
            check_name("role", role)?;
            check_json("metadata", metadata, limits)?;
            metadata.as_str().len()
        }
        EventBody::RoleChanged { name, role } => {
            check_participant_name("participant name", name)?;
            check_name("role", role)?;
            0
        }
        EventBody::Message { topic, payload } => {
            check_label("topic", topic, MAX_TOPIC_BYTES)?;
            check_json("payload", payload, limits)?;
            payload.as_str().len()
        }
        EventBody::Checkpoint {
            summary,
            state,
            artifacts,
        } => {
            check_text("summary", summary, MAX_TEXT_BYTES)?;
            check_json("state", state, limits)?;
            if artifacts.len() > MAX_ARTIFACTS {
                return Err(Error::invalid(
                    "artifacts",
                    format!("{} given, at most {MAX_ARTIFACTS}", artifacts.len()),
                ));
            }
            for (i, a) in artifacts.iter().enumerate() {
                check_label(&format!("artifacts[{i}]"), a, 1024)?;
            }
            summary.len() + state.as_str().len() + artifacts.iter().map(String::len).sum::<usize>()
        }
        EventBody::Handoff {
            recipient, note, ..
        } => {
            check_participant_name("recipient", recipient)?;
            check_text("note", note, MAX_TEXT_BYTES)?;
            note.len()
        }
    };
    if size > MAX_RECORD_BYTES {
        return Err(Error::TooLarge {
            field: "record".into(),
            size,
            limit: MAX_RECORD_BYTES,
        });
    }
    Ok(())
}

// ----- the writer -------------------------------------------------------------

struct Writer {
    store: Arc<Store>,
    shared: Arc<Shared>,
    durability: Durability,
    snapshot_every: u64,
}

/// One request of a commit group that passed planning.
struct Pending {
    reply: mpsc::Sender<Result<Vec<Event>>>,
    outcome: Planned,
}

/// What a planned request will be answered with.
enum Planned {
    /// The events of `group.plans[i]`, once written.
    Written(usize),
    /// An idempotent retry: the events already stored, nothing to write.
    Stored(Vec<Event>),
}

/// A commit group being planned: the state each touched mission will have
/// once the group lands.
#[derive(Default)]
struct Group {
    staged: HashMap<MissionNo, Cached>,
    new_names: HashMap<String, MissionNo>,
    plans: Vec<PlannedAppend>,
    pending: Vec<Pending>,
    /// Ids written by this group, with the event they belong to.
    ids: HashMap<Uuid, (MissionNo, Event)>,
}

impl Writer {
    fn run(self, rx: Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut group = Group::default();
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(job) = next.take() {
                taken += 1;
                match job {
                    Job::Append {
                        mission,
                        drafts,
                        expected,
                        reply,
                    } => match self.plan(&mut group, &mission, drafts, expected) {
                        Ok(outcome) => group.pending.push(Pending { reply, outcome }),
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    },
                    // Jobs that need the log to stand still run alone: commit
                    // what is planned first, then run them.
                    other => {
                        self.commit(std::mem::take(&mut group));
                        self.run_exclusive(other);
                    }
                }
                if taken < MAX_GROUP {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(group);
        }
    }

    fn run_exclusive(&self, job: Job) {
        match job {
            Job::Append { .. } => unreachable!("appends are planned into groups"),
            Job::Load { mission, reply } => {
                let _ = reply.send(self.load_by_name(&mission));
            }
            Job::Verify { mission, reply } => {
                let r = match self.store.mission_no(&mission) {
                    Ok(Some(no)) => self.store.verify(no, &mission),
                    Ok(None) => Err(Error::MissionNotFound { mission }),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Job::Import {
                events,
                progress,
                reply,
            } => {
                let _ = reply.send(self.import(events, progress));
            }
        }
    }

    fn name_to_no(&self, mission: &str) -> Option<MissionNo> {
        self.shared.no_of(mission)
    }

    fn load_by_name(&self, mission: &str) -> Result<Arc<Cached>> {
        let no = self
            .name_to_no(mission)
            .ok_or_else(|| Error::MissionNotFound {
                mission: mission.to_string(),
            })?;
        self.load(no, mission)
    }

    /// The committed state of a mission: from the cache, else from the
    /// snapshot plus the events after it, else from the whole log.
    fn load(&self, no: MissionNo, mission: &str) -> Result<Arc<Cached>> {
        if let Some(c) = self.shared.cached(no) {
            return Ok(c);
        }
        let (head, head_hash) = self.store.head(no, mission)?;
        let (mut state, from, snapshot_seq) = match self.valid_snapshot(no, head)? {
            Some(s) => (s.state, s.sequence + 1, s.sequence),
            None => (MissionState::default(), 1, 0),
        };
        for event in self.store.scan(no, mission, from, head) {
            state.apply(&event?);
        }
        let cached = Arc::new(Cached {
            no,
            state: Arc::new(state),
            hash: head_hash,
            snapshot_seq,
        });
        self.shared
            .cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(no, Arc::clone(&cached));
        Ok(cached)
    }

    /// A snapshot is used only if it decodes, was built by this reducer
    /// version, is not past the head, and the record it names still hashes
    /// to the hash it recorded.
    fn valid_snapshot(&self, no: MissionNo, head: u64) -> Result<Option<codec::Snapshot>> {
        let Some(raw) = self.store.snapshot(no)? else {
            return Ok(None);
        };
        let Ok(snap) = codec::decode_snapshot(&raw) else {
            return Ok(None);
        };
        if snap.sequence == 0 || snap.sequence > head {
            return Ok(None);
        }
        if self.store.record_hash(no, snap.sequence)? != Some(snap.hash) {
            return Ok(None);
        }
        Ok(Some(snap))
    }

    /// Validate one request against the staged state and add it to the group.
    fn plan(
        &self,
        group: &mut Group,
        mission: &str,
        drafts: Vec<Draft>,
        expected: Option<u64>,
    ) -> Result<Planned> {
        let creating = matches!(
            drafts.first().map(|d| &d.body),
            Some(EventBody::MissionCreated { .. })
        );
        let mut cached = if creating {
            if self.name_to_no(mission).is_some() || group.new_names.contains_key(mission) {
                return Err(Error::MissionExists {
                    mission: mission.to_string(),
                });
            }
            let no = self.store.allocate_mission_no()?;
            Cached {
                no,
                state: Arc::new(MissionState::default()),
                hash: codec::GENESIS,
                snapshot_seq: 0,
            }
        } else {
            let no = self
                .name_to_no(mission)
                .or_else(|| group.new_names.get(mission).copied())
                .ok_or_else(|| Error::MissionNotFound {
                    mission: mission.to_string(),
                })?;
            match group.staged.get(&no) {
                Some(c) => c.clone(),
                None => (*self.load(no, mission)?).clone(),
            }
        };
        let no = cached.no;

        // Idempotent retry: a caller-supplied id already stored.
        if let [Draft { id: Some(id), .. }] = drafts.as_slice() {
            if let Some(original) = self.stored_with_id(group, id)? {
                let (orig_no, orig) = original;
                let d = &drafts[0];
                return if orig_no == no && orig.sender == d.sender && orig.body == d.body {
                    Ok(Planned::Stored(vec![orig]))
                } else {
                    Err(Error::EventIdConflict {
                        event_id: *id,
                        mission: self
                            .shared
                            .name_of(orig_no)
                            .unwrap_or_else(|| mission.to_string()),
                        sequence: orig.sequence,
                    })
                };
            }
        }
        let prev_seq = cached.state.head;
        if let Some(e) = expected {
            if e != prev_seq {
                return Err(Error::SequenceConflict {
                    mission: mission.to_string(),
                    expected: e,
                    head: prev_seq,
                });
            }
        }
        // A batch works on a scratch copy so that a failing item leaves no
        // trace; a single event is validated first and then applied in place
        // (copy-on-write: at most one copy per mission per commit group).
        let mut scratch = (drafts.len() > 1).then(|| (*cached.state).clone());
        let mut events = Vec::with_capacity(drafts.len());
        let mut batch_ids = HashSet::new();
        let mut remember = Vec::new();
        for (i, d) in drafts.into_iter().enumerate() {
            if i > 0 && matches!(d.body, EventBody::MissionCreated { .. }) {
                return Err(Error::invalid(
                    "batch",
                    "mission_created may only come first",
                ));
            }
            // (A single event's id was checked above, as a possible retry.)
            if let (Some(id), Some(_)) = (d.id, &scratch) {
                if !batch_ids.insert(id) || self.stored_with_id(group, &id)?.is_some() {
                    return Err(Error::invalid("event id", format!("{id} is already used")));
                }
            }
            let state: &MissionState = scratch.as_ref().unwrap_or(&cached.state);
            let staged_checkpoint = |id: &Uuid| {
                events
                    .iter()
                    .any(|e: &Event| e.id == *id && e.event_type() == EventType::Checkpoint)
                    || group
                        .ids
                        .get(id)
                        .is_some_and(|(m, e)| *m == no && e.event_type() == EventType::Checkpoint)
            };
            self.validate(state, mission, no, &d, &staged_checkpoint)?;
            let event = Event {
                id: d.id.unwrap_or_else(Uuid::now_v7),
                sequence: state.head + 1,
                timestamp: d.timestamp.unwrap_or_else(now_micros),
                sender: d.sender,
                body: d.body,
            };
            match scratch.as_mut() {
                Some(s) => s.apply(&event),
                None => {
                    // Drop the group's own reference first so the copy is
                    // only made when readers still hold the published state.
                    group.staged.remove(&no);
                    Arc::make_mut(&mut cached.state).apply(&event);
                }
            }
            // Later requests of this group may retry a caller-chosen id or
            // hand off a checkpoint made here; nothing else is looked up.
            if d.id.is_some() || event.event_type() == EventType::Checkpoint {
                remember.push(event.clone());
            }
            events.push(event);
        }
        if let Some(s) = scratch {
            cached.state = Arc::new(s);
        }
        if creating {
            group.new_names.insert(mission.to_string(), no);
        }
        for e in remember {
            group.ids.insert(e.id, (no, e));
        }
        group.plans.push(PlannedAppend {
            mission: no,
            register: creating.then(|| mission.to_string()),
            replace_orphan_ids: false,
            prev_seq,
            events,
        });
        group.staged.insert(no, cached);
        Ok(Planned::Written(group.plans.len() - 1))
    }

    /// The event already stored (or staged in this group) under `id`.
    fn stored_with_id(&self, group: &Group, id: &Uuid) -> Result<Option<(MissionNo, Event)>> {
        if let Some(found) = group.ids.get(id) {
            return Ok(Some(found.clone()));
        }
        let Some((no, seq)) = self.store.lookup(Index::EventIds, id)? else {
            return Ok(None);
        };
        let Some(name) = self.shared.name_of(no) else {
            // Left by an interrupted import; that mission never became visible.
            return Ok(None);
        };
        let event = self
            .store
            .event(no, seq, &name)?
            .ok_or_else(|| Error::corruption(&name, Some(seq), "indexed record missing"))?;
        if event.id != *id {
            return Err(Error::corruption(
                &name,
                Some(seq),
                format!("event_ids entry for {id} points at event {}", event.id),
            ));
        }
        Ok(Some((no, event)))
    }

    /// Stateful checks: roles, membership, references.
    fn validate(
        &self,
        state: &MissionState,
        mission: &str,
        no: MissionNo,
        d: &Draft,
        staged_checkpoint: &dyn Fn(&Uuid) -> bool,
    ) -> Result<()> {
        let manage = |state: &MissionState| -> Result<()> {
            if d.sender == OPERATOR {
                return Ok(());
            }
            match state.participants.get(&d.sender) {
                Some(p) if p.role == "lead" => Ok(()),
                Some(p) => Err(Error::PermissionDenied {
                    mission: mission.to_string(),
                    sender: d.sender.clone(),
                    role: p.role.clone(),
                    capability: "manage participants (role 'lead')".into(),
                }),
                None => Err(Error::NotAParticipant {
                    mission: mission.to_string(),
                    sender: d.sender.clone(),
                }),
            }
        };
        match &d.body {
            EventBody::MissionCreated { mission_id, .. } => {
                if mission_id != mission {
                    return Err(Error::invalid(
                        "mission_created",
                        format!("names mission '{mission_id}', appended to '{mission}'"),
                    ));
                }
                if state.head != 0 {
                    return Err(Error::MissionExists {
                        mission: mission.to_string(),
                    });
                }
                Ok(())
            }
            EventBody::ParticipantJoined { name, role, .. } => {
                // The lead joining right after creation is the creator itself.
                let creator_joining = state.head == 1 && d.sender == *name && role == "lead";
                if !creator_joining {
                    manage(state)?;
                }
                if !state.config.has_role(role) {
                    return Err(Error::UnknownRole {
                        mission: mission.to_string(),
                        role: role.clone(),
                    });
                }
                if state.participants.contains_key(name) {
                    return Err(Error::ParticipantExists {
                        mission: mission.to_string(),
                        name: name.clone(),
                    });
                }
                Ok(())
            }
            EventBody::RoleChanged { name, role } => {
                manage(state)?;
                if !state.config.has_role(role) {
                    return Err(Error::UnknownRole {
                        mission: mission.to_string(),
                        role: role.clone(),
                    });
                }
                if !state.participants.contains_key(name) {
                    return Err(Error::ParticipantNotFound {
                        mission: mission.to_string(),
                        name: name.clone(),
                    });
                }
                Ok(())
            }
            EventBody::Message { .. } => require(state, &d.sender, Capability::Publish),
            EventBody::Checkpoint { .. } => require(state, &d.sender, Capability::Checkpoint),
            EventBody::Handoff {
                recipient,
                checkpoint_id,
                ..
            } => {
                require(state, &d.sender, Capability::Handoff)?;
                if !state.participants.contains_key(recipient) {
                    return Err(Error::ParticipantNotFound {
                        mission: mission.to_string(),
                        name: recipient.clone(),
                    });
                }
                let not_found = || Error::CheckpointNotFound {
                    mission: mission.to_string(),
                    checkpoint_id: *checkpoint_id,
                };
                // A checkpoint of this mission that is already in the log
                // (or staged earlier in this group / batch).
                let known = match self.store.lookup(Index::Checkpoints, checkpoint_id)? {
                    Some((m, seq)) => m == no && seq <= state.head,
                    None => false,
                };
                if known || staged_checkpoint(checkpoint_id) {
                    Ok(())
                } else {
                    Err(not_found())
                }
            }
        }
    }

    /// Write, flush, publish, acknowledge. On failure every request of the
    /// group gets the error and the cache forgets the touched missions (they
    /// are reloaded from the store, which is the truth).
    fn commit(&self, group: Group) {
        if group.pending.is_empty() {
            return;
        }
        let result = if group.plans.is_empty() {
            Ok(Vec::new())
        } else {
            self.store
                .commit(&group.plans)
                .and_then(|heads| self.store.flush(self.durability).map(|()| heads))
        };
        match result {
            Ok(heads) => {
                let mut staged = group.staged;
                for (plan, (seq, hash)) in group.plans.iter().zip(heads) {
                    if let Some(c) = staged.get_mut(&plan.mission) {
                        debug_assert!(c.state.head >= seq);
                        if c.state.head == seq {
                            c.hash = hash;
                        }
                    }
                }
                {
                    let mut dir = self
                        .shared
                        .directory
                        .write()
                        .unwrap_or_else(|p| p.into_inner());
                    for (name, no) in group.new_names {
                        dir.insert(name, no);
                    }
                }
                let mut cache = self.shared.cache.write().unwrap_or_else(|p| p.into_inner());
                for (no, mut c) in staged {
                    if self.snapshot_every > 0
                        && c.state.head >= c.snapshot_seq + self.snapshot_every
                    {
                        let bytes = codec::encode_snapshot(c.state.head, &c.hash, &c.state);
                        // A failed snapshot write only costs a longer rebuild.
                        if self.store.put_snapshot(no, bytes).is_ok() {
                            c.snapshot_seq = c.state.head;
                        }
                    }
                    cache.insert(no, Arc::new(c));
                }
                drop(cache);
                {
                    let mut recent = self.shared.recent.lock().unwrap_or_else(|p| p.into_inner());
                    for plan in &group.plans {
                        for e in &plan.events {
                            if matches!(e.event_type(), EventType::Checkpoint | EventType::Handoff)
                            {
                                recent.insert(plan.mission, e);
                            }
                        }
                    }
                }
                let count: usize = group.plans.iter().map(|p| p.events.len()).sum();
                self.shared
                    .written
                    .fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
                let mut written: Vec<(MissionNo, Vec<Event>)> = group
                    .plans
                    .into_iter()
                    .map(|p| (p.mission, p.events))
                    .collect();
                let global = self.shared.committed.receiver_count() > 0;
                let channels = self
                    .shared
                    .mission_channels
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for (mission, events) in &written {
                    let Some(name) = self.shared.name_of(*mission) else {
                        continue;
                    };
                    let own = channels.get(&name).filter(|tx| tx.receiver_count() > 0);
                    if !global && own.is_none() {
                        continue;
                    }
                    for event in events {
                        let c = Arc::new(Committed {
                            mission_id: name.clone(),
                            event: event.clone(),
                        });
                        // Err only means nobody is listening any more.
                        if let Some(tx) = own {
                            let _ = tx.send(Arc::clone(&c));
                        }
                        if global {
                            let _ = self.shared.committed.send(c);
                        }
                    }
                }
                drop(channels);
                for p in group.pending {
                    let events = match p.outcome {
                        Planned::Written(i) => std::mem::take(&mut written[i].1),
                        Planned::Stored(events) => events,
                    };
                    let _ = p.reply.send(Ok(events));
                }
            }
            Err(e) => {
                let mut cache = self.shared.cache.write().unwrap_or_else(|p| p.into_inner());
                for no in group.staged.keys() {
                    cache.remove(no);
                }
                drop(cache);
                for p in group.pending {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Import a whole log: validate everything, then write in chunks with
    /// the mission registered in the last one, so it appears atomically.
    fn import(&self, events: Vec<Event>, mut progress: Box<dyn FnMut(u64) + Send>) -> Result<u64> {
        let EventBody::MissionCreated { mission_id, .. } = &events[0].body else {
            unreachable!("checked by import_log");
        };
        let mission = mission_id.clone();
        if self.name_to_no(&mission).is_some() {
            return Err(Error::MissionExists { mission });
        }
        let no = self.store.allocate_mission_no()?;
        let empty = Group::default();
        let mut state = MissionState::default();
        let mut seen = HashSet::with_capacity(events.len());
        let mut checkpoints = HashSet::new();
        for e in &events {
            if !seen.insert(e.id) {
                return Err(Error::invalid(
                    "event id",
                    format!("{} appears twice (sequence {})", e.id, e.sequence),
                ));
            }
            if let Some((m, orig)) = self.stored_with_id(&empty, &e.id)? {
                let owner = self.shared.name_of(m).unwrap_or_default();
                return Err(Error::EventIdConflict {
                    event_id: e.id,
                    mission: owner,
                    sequence: orig.sequence,
                });
            }
            let draft = Draft {
                id: Some(e.id),
                timestamp: Some(e.timestamp),
                sender: e.sender.clone(),
                body: e.body.clone(),
            };
            if e.sequence > 1 {
                self.validate(&state, &mission, no, &draft, &|id| checkpoints.contains(id))
                    .map_err(|err| at_sequence(err, e.sequence))?;
            }
            if e.event_type() == EventType::Checkpoint {
                checkpoints.insert(e.id);
            }
            state.apply(e);
        }
        let total = events.len();
        let mut written = 0usize;
        let mut hash = codec::GENESIS;
        let mut chunks = events.chunks(IMPORT_CHUNK).peekable();
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let plan = PlannedAppend {
                mission: no,
                register: last.then(|| mission.clone()),
                replace_orphan_ids: true,
                prev_seq: written as u64,
                events: chunk.to_vec(),
            };
            let heads = self.store.commit(std::slice::from_ref(&plan))?;
            hash = heads[0].1;
            written += chunk.len();
            if last {
                self.store.flush(self.durability)?;
            }
            progress(written as u64);
        }
        debug_assert_eq!(written, total);
        self.shared
            .written
            .fetch_add(total as u64, std::sync::atomic::Ordering::Relaxed);
        self.shared
            .directory
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(mission, no);
        let snapshot_seq = if self.snapshot_every > 0 && state.head >= self.snapshot_every {
            let bytes = codec::encode_snapshot(state.head, &hash, &state);
            self.store
                .put_snapshot(no, bytes)
                .map(|()| state.head)
                .unwrap_or(0)
        } else {
            0
        };
        self.shared
            .cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                no,
                Arc::new(Cached {
                    no,
                    state: Arc::new(state),
                    hash,
                    snapshot_seq,
                }),
            );
        Ok(total as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(state_bytes: usize) -> Event {
        Event {
            id: Uuid::now_v7(),
            sequence: 1,
            timestamp: now_micros(),
            sender: "a".into(),
            body: EventBody::Checkpoint {
                summary: String::new(),
                state: Json::from_value(&serde_json::Value::String("x".repeat(state_bytes))),
                artifacts: vec![],
            },
        }
    }

    #[test]
    fn recent_events_stay_within_their_bounds_oldest_out_first() {
        let mut recent = RecentEvents::new();
        let first = checkpoint(10);
        recent.insert(1, &first);
        assert!(recent.get(&first.id, EventType::Checkpoint).is_some());
        assert!(
            recent.get(&first.id, EventType::Handoff).is_none(),
            "kind is checked"
        );
        let mut last = first.clone();
        for _ in 0..RECENT_MAX_EVENTS {
            last = checkpoint(10);
            recent.insert(1, &last);
        }
        assert_eq!(recent.by_id.len(), RECENT_MAX_EVENTS);
        assert!(
            recent.get(&first.id, EventType::Checkpoint).is_none(),
            "oldest evicted"
        );
        assert!(recent.get(&last.id, EventType::Checkpoint).is_some());
        for _ in 0..600 {
            recent.insert(1, &checkpoint(60 * 1024));
        }
        assert!(recent.bytes <= RECENT_MAX_BYTES, "{} bytes", recent.bytes);
        assert_eq!(
            recent.bytes,
            recent.by_id.values().map(|v| v.2).sum::<usize>()
        );
        // Messages are never kept.
        let mut msg = checkpoint(1);
        msg.body = EventBody::Message {
            topic: "t".into(),
            payload: Json::null(),
        };
        recent.insert(1, &msg);
        assert!(!recent.by_id.contains_key(&msg.id));
    }
}
