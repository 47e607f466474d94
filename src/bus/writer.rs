//! The single writer thread: plans each commit group against the state
//! the group will leave, writes it in one transaction, makes it durable,
//! then publishes and acknowledges.

use super::{require, Cached, Draft, Job, Shared, MAX_GROUP};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use uuid::Uuid;

use crate::codec;
use crate::error::{Error, Result};
use crate::event::{now_micros, Event, EventBody, EventType, OPERATOR};
use crate::keys::MissionNo;
use crate::ledger::{Ledger, LedgerHead};
use crate::profiles::Capability;
use crate::state::MissionState;
use crate::store::{Durability, Index, PlannedAppend, Store};

pub(super) struct Writer {
    pub(super) store: Arc<Store>,
    pub(super) shared: Arc<Shared>,
    pub(super) durability: Durability,
    pub(super) snapshot_every: u64,
    /// The commit ledger (`None` when disabled for benchmarks, or damaged:
    /// then `integrity` refuses every write).
    pub(super) ledger: RefCell<Option<Ledger>>,
    /// Heads not yet in the ledger (`Durability::Relaxed` only): written
    /// after a real flush when the writer stops.
    pub(super) ledger_pending: RefCell<BTreeMap<String, LedgerHead>>,
    /// The thread that syncs the ledger while the writer syncs sled
    /// (started with the first group under `Durability::Sync`).
    pub(super) ledger_sync: std::cell::OnceCell<super::durable::Syncer>,
    pub(super) integrity: Arc<super::integrity::Integrity>,
}

/// One request of a commit group that passed planning.
pub(super) struct Pending {
    pub(super) reply: super::Reply<Vec<Event>>,
    pub(super) outcome: Planned,
    /// The request again, kept on a shared store (PostgreSQL) so that it
    /// can be planned again when another process moved a head under it.
    retry: Option<(String, Vec<Draft>, Option<u64>)>,
}

/// How often a commit group is planned again after another process moved
/// a head under it (each time against freshly read state).
const STALE_RETRIES: u32 = 64;

/// Whether a failed commit means "the cached state is stale" on a shared
/// store: another process moved a head, took a mission name or an event
/// id first, or the database aborted a transaction for a conflict.
fn is_stale(e: &Error) -> bool {
    match e {
        Error::SequenceConflict { .. } | Error::MissionExists { .. } => true,
        Error::InvalidInput { field, .. } => field == "event id",
        Error::Database { reason, .. } => {
            reason.contains("SQLSTATE 40001") || reason.contains("SQLSTATE 40P01")
        }
        _ => false,
    }
}

/// What a planned request will be answered with.
pub(super) enum Planned {
    /// The events of `group.plans[i]`, once written.
    Written(usize),
    /// An idempotent retry: the events already stored, nothing to write.
    Stored(Vec<Event>),
}

/// A commit group being planned: the state each touched mission will have
/// once the group lands.
#[derive(Default)]
pub(super) struct Group {
    pub(super) staged: HashMap<MissionNo, Cached>,
    pub(super) new_names: HashMap<String, MissionNo>,
    pub(super) plans: Vec<PlannedAppend>,
    pub(super) pending: Vec<Pending>,
    /// Ids written by this group, by mission, with the event they belong to.
    ids: HashMap<(MissionNo, Uuid), Event>,
    /// Each touched mission's head before the group (for the ledger).
    prev: super::durable::PrevHeads,
}

impl Writer {
    pub(super) fn run(self, rx: Receiver<Job>) {
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
                    } => {
                        let retry = self
                            .store
                            .is_shared()
                            .then(|| (mission.clone(), drafts.clone(), expected));
                        match self.plan(&mut group, &mission, drafts, expected) {
                            Ok(outcome) => group.pending.push(Pending {
                                reply,
                                outcome,
                                retry,
                            }),
                            Err(e) => reply.send(Err(e)),
                        }
                    }
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
        if let Err(e) = self.write_pending_heads() {
            tracing::error!(error = %e, "commit ledger: heads not recorded at close");
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
                    Ok(Some(no)) => self.store.verify(no, &mission).map(|mut r| {
                        self.integrity.annotate(&mut r);
                        self.verify_lineage(no, &mission, &mut r);
                        r
                    }),
                    Ok(None) => Err(Error::MissionNotFound { mission }),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Job::AcceptLoss { mission, reply } => {
                let _ = reply.send(self.accept_loss(&mission));
            }
            Job::Import {
                mission,
                anchor,
                events,
                progress,
                reply,
            } => {
                let _ = reply.send(self.import(mission, anchor.map(|a| *a), events, progress));
            }
            Job::Backup { to, reply } => {
                let _ = reply.send(super::backup::run(&self.store, &to));
            }
            Job::History(job) => self.history(job),
        }
    }

    pub(super) fn name_to_no(&self, mission: &str) -> Result<Option<MissionNo>> {
        self.shared.resolve(&self.store, mission)
    }

    fn load_by_name(&self, mission: &str) -> Result<Arc<Cached>> {
        let no = self
            .name_to_no(mission)?
            .ok_or_else(|| Error::MissionNotFound {
                mission: mission.to_string(),
            })?;
        self.load(no, mission)
    }

    /// The committed state of a mission: from the cache, else from the
    /// snapshot plus the events after it, else from the whole log.
    pub(super) fn load(&self, no: MissionNo, mission: &str) -> Result<Arc<Cached>> {
        if let Some(c) = self.shared.cached(no) {
            return Ok(c);
        }
        let (head, head_hash) = self.store.head(no, mission)?;
        // A pruned mission starts from its anchor's state unless a
        // snapshot is at least as recent.
        let anchor = self.store.anchor(no, mission)?;
        let (mut state, from, snapshot_seq) = match (self.valid_snapshot(no, head)?, anchor) {
            (Some(s), a) if a.as_ref().is_none_or(|a| s.sequence + 1 >= a.before) => {
                (s.state, s.sequence + 1, s.sequence)
            }
            (_, Some(a)) => {
                let state = a
                    .state()
                    .map_err(|e| Error::corruption(mission, Some(a.before - 1), e))?;
                (state, a.before, 0)
            }
            (_, None) => (MissionState::default(), 1, 0),
        };
        for event in self.store.scan(no, mission, from, head) {
            match event {
                Ok(e) => state.apply(&e),
                // Another process pruned under this read: load again from
                // its anchor (it only moves forward, so this ends).
                Err(e) if self.pruned_meanwhile(no, mission, from, &e) => {
                    return self.load(no, mission)
                }
                Err(e) => return Err(e),
            }
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

    /// Fold the events other processes appended since the published state
    /// into it (shared stores). Fails when the mission is not cached or
    /// anything read is wrong: the caller then forgets it.
    fn refresh(&self, no: MissionNo) -> Result<()> {
        let c = self
            .shared
            .cached(no)
            .ok_or_else(|| Error::corruption(format!("#{no}"), None, "not cached"))?;
        let name = self
            .shared
            .name_of(no)
            .ok_or_else(|| Error::corruption(format!("#{no}"), None, "not named"))?;
        let (head, hash) = self.store.head(no, &name)?;
        if head == c.state.head {
            return Ok(());
        }
        let mut state = (*c.state).clone();
        for event in self.store.scan(no, &name, c.state.head + 1, head) {
            state.apply(&event?);
        }
        let fresh = Arc::new(Cached {
            no,
            state: Arc::new(state),
            hash,
            snapshot_seq: c.snapshot_seq,
        });
        self.shared
            .cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(no, fresh);
        Ok(())
    }

    /// Drop a mission's cached state (it is loaded again from the store).
    fn drop_cached(&self, no: MissionNo) {
        self.shared
            .cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&no);
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
        if let Some(e) = self.integrity.refuse_write(mission) {
            return Err(e);
        }
        let creating = drafts
            .first()
            .is_some_and(|d| d.body.created_mission().is_some());
        let mut cached = if creating {
            if self.name_to_no(mission)?.is_some() || group.new_names.contains_key(mission) {
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
                .name_to_no(mission)?
                .or_else(|| group.new_names.get(mission).copied())
                .ok_or_else(|| Error::MissionNotFound {
                    mission: mission.to_string(),
                })?;
            match group.staged.get(&no) {
                Some(c) => c.clone(),
                None => {
                    let c = self.load(no, mission)?;
                    if self.store.is_shared() && expected.is_some_and(|e| e != c.state.head) {
                        // Other processes may have moved the head: decide on
                        // the database's state, not this process's cache.
                        self.drop_cached(no);
                        (*self.load(no, mission)?).clone()
                    } else {
                        (*c).clone()
                    }
                }
            }
        };
        let no = cached.no;
        // The first time the group touches the mission: its committed head.
        group
            .prev
            .entry(no)
            .or_insert((cached.state.head, cached.hash));

        // Idempotent retry: a caller-supplied id already stored.
        if let [Draft { id: Some(id), .. }] = drafts.as_slice() {
            if let Some(original) = self.stored_with_id(group, no, id)? {
                let (orig_no, orig) = original;
                let d = &drafts[0];
                return if orig_no == no
                    && orig.sender == d.sender
                    && orig.body == d.body
                    && orig.meta == d.meta
                {
                    Ok(Planned::Stored(vec![orig]))
                } else {
                    Err(Error::EventIdConflict {
                        event_id: *id,
                        // Scoped lookup: always this mission, never another.
                        mission: mission.to_string(),
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
            if i > 0 && d.body.created_mission().is_some() {
                return Err(Error::invalid(
                    "batch",
                    "mission_created may only come first",
                ));
            }
            // (A single event's id was checked above, as a possible retry.)
            if let (Some(id), Some(_)) = (d.id, &scratch) {
                if !batch_ids.insert(id) || self.stored_with_id(group, no, &id)?.is_some() {
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
                        .get(&(no, *id))
                        .is_some_and(|e| e.event_type() == EventType::Checkpoint)
            };
            // Lifecycle checks (lease deadlines) compare against the event's own time.
            let mut d = d;
            d.timestamp.get_or_insert_with(now_micros);
            self.validate(state, mission, no, &d, &staged_checkpoint)?;
            let event = Event {
                id: d.id.unwrap_or_else(Uuid::now_v7),
                sequence: state.head + 1,
                timestamp: d.timestamp.unwrap_or_else(now_micros),
                sender: d.sender,
                body: d.body,
                meta: d.meta,
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
            group.ids.insert((no, e.id), e);
        }
        group.plans.push(PlannedAppend {
            mission: no,
            mission_id: mission.to_string(),
            register: creating.then(|| mission.to_string()),
            replace_orphan_ids: false,
            prev_seq,
            events,
        });
        group.staged.insert(no, cached);
        Ok(Planned::Written(group.plans.len() - 1))
    }

    /// The event already stored (or staged in this group) under `id`.
    /// Ids are scoped to their mission: only `no`'s index is consulted.
    fn stored_with_id(
        &self,
        group: &Group,
        no: MissionNo,
        id: &Uuid,
    ) -> Result<Option<(MissionNo, Event)>> {
        if let Some(found) = group.ids.get(&(no, *id)) {
            return Ok(Some((no, found.clone())));
        }
        let Some(seq) = self.store.lookup_event_id(no, id)? else {
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
    pub(super) fn validate(
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
            // Only the operator records an accepted loss (accept_loss, or an
            // import of a log that holds one).
            EventBody::LossAccepted { .. } if d.sender == OPERATOR => Ok(()),
            EventBody::LossAccepted { .. } => Err(Error::invalid(
                "loss_accepted",
                format!(
                    "only {OPERATOR} records an accepted loss, not '{}'",
                    d.sender
                ),
            )),
            EventBody::MissionForked { .. } if d.sender != OPERATOR => Err(Error::invalid(
                "mission_forked",
                format!("only {OPERATOR} forks a mission, not '{}'", d.sender),
            )),
            EventBody::HistoryPruned { .. } => Err(Error::invalid(
                "history_pruned",
                "is written by prune only, never appended or imported",
            )),
            EventBody::RetentionSet { .. } => manage(state),
            EventBody::MissionCreated { mission_id, .. }
            | EventBody::MissionForked { mission_id, .. } => {
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
            EventBody::ParticipantRemoved { name } => {
                manage(state)?;
                super::lifecycle::check_removal(state, mission, &d.sender, name)
            }
            EventBody::CellStarted { .. } | EventBody::CellExited { .. } => {
                super::cells::check_cell(state, &d.sender, &d.body)
            }
            _ => super::lifecycle::check_step(state, mission, &d.sender, d.timestamp, &d.body),
        }
    }

    /// Write, flush, then publish and acknowledge (`publish.rs`). On failure every request of the
    /// group gets the error and the cache forgets the touched missions (they
    /// are reloaded from the store, which is the truth).
    fn commit(&self, group: Group) {
        self.commit_attempt(group, 0)
    }

    fn commit_attempt(&self, group: Group, attempt: u32) {
        if group.pending.is_empty() {
            return;
        }
        let result = if group.plans.is_empty() {
            Ok(Vec::new())
        } else {
            self.store.commit(&group.plans).and_then(|heads| {
                let began = std::time::Instant::now();
                // The ledger's append and fdatasync (in parallel with
                // sled's) are part of making the group durable, so they
                // count in the flush latency.
                self.make_durable(&group.plans, &heads, &group.new_names, &group.prev)?;
                let events = group.plans.iter().map(|p| p.events.len()).sum();
                self.shared.live.stats.committed(events, began.elapsed());
                Ok(heads)
            })
        };
        match result {
            Ok(heads) => self.publish(group, heads),
            Err(e) => {
                let replan = attempt < STALE_RETRIES && self.store.is_shared() && is_stale(&e);
                for no in group.staged.keys() {
                    // Bring the published state up to the database's head
                    // (only the events other processes added are read).
                    if !replan || self.refresh(*no).is_err() {
                        self.drop_cached(*no);
                    }
                }
                if replan {
                    // Another process wrote first: plan every request again
                    // against the state re-read from the database, after a
                    // short random pause so that racing processes spread out.
                    tracing::debug!(error = %e, attempt, "shared store moved: planning the group again");
                    if attempt > 0 {
                        let us = Uuid::new_v4().as_u128() % (200 * u128::from(attempt.min(20)));
                        std::thread::sleep(std::time::Duration::from_micros(us as u64));
                    }
                    let mut next = Group::default();
                    for p in group.pending {
                        let Some((mission, drafts, expected)) = p.retry else {
                            p.reply.send(Err(e.clone()));
                            continue;
                        };
                        match self.plan(&mut next, &mission, drafts.clone(), expected) {
                            Ok(outcome) => next.pending.push(Pending {
                                reply: p.reply,
                                outcome,
                                retry: Some((mission, drafts, expected)),
                            }),
                            Err(e) => p.reply.send(Err(e)),
                        }
                    }
                    return self.commit_attempt(next, attempt + 1);
                }
                self.shared.live.stats.failed();
                for p in group.pending {
                    p.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
