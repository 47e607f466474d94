//! History management: fork a mission from a checkpoint, delete a mission
//! behind a tombstone, prune a prefix behind an anchor, and retention
//! policies. Forks and policies are ordinary events planned by the writer;
//! deletes and prunes run on the writer (like `verify` and `backup`), so
//! no commit interleaves with them.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::async_api::Reply;
use super::writer::Writer;
use super::{check_identifier, Draft, Job, MissionBus};
use crate::codec::{Anchor, Hash, Tombstone};
use crate::error::{Error, Result};
use crate::event::{now_micros, to_micros, Event, EventBody, EventMeta, OPERATOR};
use crate::keys::MissionNo;
use crate::ledger::LedgerHead;
use crate::state::{MissionState, Retention};
use crate::store::{Durability, PlannedAppend};
use crate::verify::{Problem, VerifyReport};

/// How often a delete or prune runs again after another process moved the
/// mission under it (shared stores).
const MOVED_RETRIES: u32 = 16;

/// What a prune did.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneReport {
    /// The mission.
    pub mission_id: String,
    /// The first sequence kept.
    pub before: u64,
    /// Records removed from the store.
    pub removed: u64,
    /// The `history_pruned` event written (`None`: nothing to prune).
    pub event: Option<Event>,
}

/// The jobs of this module, run on the writer.
pub(super) enum HistoryJob {
    Delete {
        mission: String,
        by: String,
        reply: std::sync::mpsc::Sender<Result<Tombstone>>,
    },
    Prune {
        mission: String,
        before: u64,
        reply: std::sync::mpsc::Sender<Result<PruneReport>>,
    },
}

impl MissionBus {
    /// Create mission `new_id` from checkpoint `checkpoint_id` of `source`.
    /// Its first event (`mission_forked`, by the operator) records the
    /// parent, the checkpoint's sequence and the parent's chain hash
    /// there; then the parent's participants as they were at that point
    /// are registered (by the operator) and the checkpoint is copied (same
    /// sender, summary, state and artifacts; a new id; its causation id is
    /// the parent's checkpoint id), all in one atomic append. The fork has
    /// a chain of its own. Returns its events.
    ///
    /// A prune of the parent racing the fork (in this process or another
    /// one on the same database) either leaves the checkpoint in the log
    /// (the fork reads again and succeeds) or removes it: then the fork
    /// fails with [`Error::Pruned`] and writes nothing.
    pub fn fork(&self, source: &str, checkpoint_id: &Uuid, new_id: &str) -> Result<Vec<Event>> {
        check_identifier("mission id", new_id)?;
        let c = self.cached(source)?;
        let cp = self.checkpoint_in(source, checkpoint_id)?;
        let (hash, at) = self.fork_point(source, c.no, cp.sequence)?;
        let EventBody::Checkpoint {
            summary,
            state,
            artifacts,
        } = cp.body
        else {
            return Err(Error::corruption(
                source,
                Some(cp.sequence),
                "checkpoint index points at another kind of event",
            ));
        };
        let draft = |sender: &str, body: EventBody, meta: EventMeta| Draft {
            id: None,
            timestamp: None,
            sender: sender.to_string(),
            body,
            meta,
        };
        let mut drafts = vec![draft(
            OPERATOR,
            EventBody::MissionForked {
                mission_id: new_id.to_string(),
                title: at.title.clone(),
                config: at.config.clone(),
                parent: source.to_string(),
                parent_sequence: cp.sequence,
                parent_hash: hash,
                parent_checkpoint: *checkpoint_id,
            },
            EventMeta::default(),
        )];
        for p in at.participants.values() {
            drafts.push(draft(
                OPERATOR,
                EventBody::ParticipantJoined {
                    name: p.name.clone(),
                    role: p.role.clone(),
                    metadata: p.metadata.clone(),
                },
                EventMeta::default(),
            ));
        }
        drafts.push(draft(
            &cp.sender,
            EventBody::Checkpoint {
                summary,
                state,
                artifacts,
            },
            EventMeta::default().causation(checkpoint_id.to_string()),
        ));
        self.send(|reply| Job::Append {
            mission: new_id.to_string(),
            drafts,
            expected: None,
            reply: Reply::Blocking(reply),
        })
    }

    /// The chain hash of `source`'s record at `seq` and the state as of it,
    /// read again when a prune moved the start of the log meanwhile;
    /// [`Error::Pruned`] once `seq` is below it.
    fn fork_point(&self, source: &str, no: MissionNo, seq: u64) -> Result<(Hash, MissionState)> {
        let store = self.inner.store();
        let pruned = |first: u64| Error::Pruned {
            mission: source.to_string(),
            sequence: seq,
            first,
        };
        let mut attempts = 0;
        loop {
            let first = store.first_kept(no, source)?.0;
            if seq < first {
                return Err(pruned(first));
            }
            let read = store
                .record_hash(no, seq)?
                .ok_or_else(|| Error::corruption(source, Some(seq), "record missing"))
                .and_then(|hash| Ok((hash, self.state_at(source, no, seq)?)));
            let e = match read {
                Ok(found) => return Ok(found),
                Err(e) => e,
            };
            // Not a prune under the reads: the error stands.
            let now = store.first_kept(no, source)?.0;
            if now == first || attempts == 3 {
                return Err(if seq < now { pruned(now) } else { e });
            }
            attempts += 1;
        }
    }

    /// The state of `mission` as of sequence `seq` (from its prune anchor,
    /// if pruned, then the events up to `seq`).
    fn state_at(&self, name: &str, no: MissionNo, seq: u64) -> Result<MissionState> {
        let store = self.inner.store();
        let (mut state, from) = match store.anchor(no, name)? {
            Some(a) if a.before <= seq + 1 => (
                a.state()
                    .map_err(|e| Error::corruption(name, Some(a.before - 1), e))?,
                a.before,
            ),
            Some(a) => {
                return Err(Error::Pruned {
                    mission: name.to_string(),
                    sequence: seq,
                    first: a.before,
                })
            }
            None => (MissionState::default(), 1),
        };
        for e in store.scan(no, name, from, seq) {
            state.apply(&e?);
        }
        Ok(state)
    }

    /// Delete `mission` (an operator's act; `by` names who, for the
    /// record): the commit ledger learns of it first (fsynced), then the
    /// mission disappears from the store in one transaction that leaves a
    /// [`Tombstone`] (id, head sequence and hash, when, by whom); its
    /// records, indexes, consumer positions and tokens are removed after
    /// that (finished on the next open if interrupted). The id can be
    /// created again; every tombstone stays.
    pub fn delete_mission(&self, mission: &str, by: &str) -> Result<Tombstone> {
        self.mission_no(mission)?;
        if by.is_empty() || by.len() > 128 || by.chars().any(char::is_control) {
            return Err(Error::invalid(
                "deleted by",
                "must be 1..=128 bytes without control characters",
            ));
        }
        self.send(|reply| {
            Job::History(HistoryJob::Delete {
                mission: mission.to_string(),
                by: by.to_string(),
                reply,
            })
        })
    }

    /// Tombstones of deleted missions: of `mission`, or all (`None`).
    pub fn tombstones(&self, mission: Option<&str>) -> Result<Vec<Tombstone>> {
        self.inner.store().tombstones(mission)
    }

    /// Prune the events of `mission` before sequence `before` (an
    /// operator's act). A `history_pruned` event (by the operator) and an
    /// anchor (the chain hash at `before - 1` and the state as of it) are
    /// committed in one transaction and made durable; then the records
    /// below `before` are removed with their index entries. The head
    /// record is never pruned (`before` is at most the head). `verify`
    /// then proves the log from `before` on against the anchor. Pruning
    /// at or below an earlier prune point does nothing.
    pub fn prune(&self, mission: &str, before: u64) -> Result<PruneReport> {
        self.mission_no(mission)?;
        self.send(|reply| {
            Job::History(HistoryJob::Prune {
                mission: mission.to_string(),
                before,
                reply,
            })
        })
    }

    /// Give the space of deleted and pruned events back to the operating
    /// system on a PostgreSQL store: `VACUUM (FULL, ANALYZE)` of the
    /// store's tables, each rewritten into a new file (while one is
    /// rewritten, other processes' reads and writes of it wait). Returns
    /// the bytes of the store's tables and indexes before and after. A
    /// sled data directory is compacted by rewriting the directory
    /// (`mission-bus compact`): an error here.
    pub fn compact_database(&self) -> Result<(u64, u64)> {
        self.inner.store().compact_database()
    }

    /// Set the retention policy of `mission` (a `retention_set` event by
    /// `sender`: the operator or a lead).
    pub fn set_retention(
        &self,
        mission: &str,
        sender: &str,
        retention: Retention,
    ) -> Result<Event> {
        let draft = Draft {
            id: None,
            timestamp: None,
            sender: sender.to_string(),
            body: EventBody::RetentionSet {
                max_age_s: retention.max_age_s,
                max_count: retention.max_count,
            },
            meta: EventMeta::default(),
        };
        let mut events = self.send(|reply| Job::Append {
            mission: mission.to_string(),
            drafts: vec![draft],
            expected: None,
            reply: Reply::Blocking(reply),
        })?;
        events.pop().ok_or(Error::Closed)
    }

    /// Where the retention policy of `mission` says its log should start
    /// at time `now` (`None`: nothing to prune). By count: keep the newest
    /// `max_count` events; by age: drop events older than `max_age_s`
    /// (found by a binary search on timestamps, which grow with sequence).
    pub fn retention_cut(&self, mission: &str, now: DateTime<Utc>) -> Result<Option<u64>> {
        let c = self.cached(mission)?;
        let policy = c.state.retention;
        if policy.is_none() {
            return Ok(None);
        }
        // The prune's own record does not count: a policy applied twice
        // in a row prunes once.
        let mut head = c.state.head;
        if let Ok(Some(last)) = self.inner.store().event(c.no, head, mission) {
            if matches!(last.body, EventBody::HistoryPruned { .. }) {
                head -= 1;
            }
        }
        let first = c.state.first_sequence();
        let mut cut = first;
        if policy.max_count > 0 && head > policy.max_count {
            // Hysteresis: by count, prune only once a tenth of the limit
            // (at least one event) is over it, not at every new event.
            let over = head - policy.max_count + 1;
            if over >= first + (policy.max_count / 10).max(1) {
                cut = cut.max(over);
            }
        }
        if policy.max_age_s > 0 {
            let limit =
                to_micros(now).saturating_sub((policy.max_age_s as i64).saturating_mul(1_000_000));
            let store = self.inner.store();
            // The first sequence whose timestamp is not older than `limit`.
            let (mut lo, mut hi) = (first, head);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let e = store
                    .event(c.no, mid, mission)?
                    .ok_or_else(|| Error::corruption(mission, Some(mid), "record missing"))?;
                if to_micros(e.timestamp) < limit {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            cut = cut.max(lo);
        }
        // The head record always stays.
        let cut = cut.min(head);
        Ok((cut > first).then_some(cut))
    }

    /// Apply every mission's retention policy at time `now` (the server's
    /// timer and `mission-bus apply-retention`). Returns what was pruned;
    /// a mission that fails is reported and the others still run.
    /// On PostgreSQL every mission of the database is considered (other
    /// processes create missions too); two processes applying policies at
    /// once prune each mission once (the second finds nothing left to do).
    pub fn apply_retention(&self, now: DateTime<Utc>) -> Vec<(String, Result<PruneReport>)> {
        let store = self.inner.store();
        let names: Vec<String> = if store.is_shared() {
            match store.missions() {
                Ok(list) => list.into_iter().map(|(name, _)| name).collect(),
                Err(e) => return vec![("(missions)".to_string(), Err(e))],
            }
        } else {
            self.inner
                .shared
                .directory()
                .by_name
                .keys()
                .cloned()
                .collect()
        };
        let mut out = Vec::new();
        for name in names {
            let mut cut = self.retention_cut(&name, now);
            // Another process pruning it under our binary search: again.
            for _ in 0..3 {
                match &cut {
                    Err(Error::Corruption { reason, .. })
                        if store.is_shared() && reason.contains("record missing") =>
                    {
                        cut = self.retention_cut(&name, now);
                    }
                    _ => break,
                }
            }
            match cut {
                Ok(None) => {}
                Ok(Some(cut)) => match self.prune(&name, cut) {
                    // Another process applied the policy first.
                    Ok(r) if r.event.is_none() => {}
                    r => out.push((name.clone(), r)),
                },
                Err(Error::MissionNotFound { .. }) => {}
                Err(e) => out.push((name, Err(e))),
            }
        }
        out
    }
}

impl super::shared::Shared {
    /// Forget mission number `no` named `name` (directory entry, cached
    /// state) once it is found deleted by another process (shared stores),
    /// so that the name resolves afresh (it may have been created again).
    pub(super) fn forget_deleted(&self, no: MissionNo, name: &str) {
        {
            let mut dir = self.directory.write().unwrap_or_else(|p| p.into_inner());
            if dir.by_name.get(name) == Some(&no) {
                dir.by_name.remove(name);
            }
            dir.by_no.remove(&no);
        }
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&no);
    }
}

impl Writer {
    /// `verify`'s lineage check of a fork: the parent's record at the
    /// recorded sequence must hash to the recorded hash and be the recorded
    /// checkpoint (a problem otherwise); a deleted parent, or a link into
    /// the parent's pruned prefix, is a note.
    pub(super) fn verify_lineage(&self, no: MissionNo, mission: &str, report: &mut VerifyReport) {
        let Ok(c) = self.load(no, mission) else {
            return;
        };
        let Some(l) = c.state.parent.clone() else {
            if c.state.pruned_before > 1 {
                report.notes.push(format!(
                    "pruned: the log starts at sequence {}, proven from its anchor",
                    c.state.pruned_before
                ));
            }
            return;
        };
        let parent = &l.mission;
        let deleted = self.store.tombstones(Some(parent)).unwrap_or_default();
        let deleted_note = |t: &Tombstone| {
            let when = crate::event::from_micros(t.deleted_at_us)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            format!(
                "parent '{parent}' was deleted at {when} by {} (its head was sequence {});                  the link to its sequence {} cannot be checked",
                t.deleted_by, t.head_sequence, l.sequence
            )
        };
        let Some(pno) = self.shared.no_of(parent) else {
            report.notes.push(match deleted.last() {
                Some(t) => deleted_note(t),
                None => {
                    format!("parent '{parent}' is not in this store; the link cannot be checked")
                }
            });
            return;
        };
        let anchor = self.store.anchor(pno, parent).ok().flatten();
        let found = match self.store.record_hash(pno, l.sequence) {
            Ok(Some(h)) => Some(h),
            Ok(None) => match anchor {
                Some(a) if a.before == l.sequence + 1 => Some(a.hash),
                Some(a) if l.sequence < a.before => {
                    report.notes.push(format!(
                        "parent '{parent}' was pruned before sequence {}; the link to its                          sequence {} cannot be checked",
                        a.before, l.sequence
                    ));
                    return;
                }
                _ => None,
            },
            Err(e) => {
                report.problems.push(Problem {
                    sequence: Some(1),
                    what: format!("lineage: parent '{parent}': {e}"),
                });
                return;
            }
        };
        let checkpoint_ok = match self.store.event(pno, l.sequence, parent) {
            Ok(Some(e)) => e.id == l.checkpoint,
            _ => true, // pruned at the anchor: the hash is what is checked
        };
        match found {
            Some(h) if h == l.hash && checkpoint_ok => report.notes.push(format!(
                "parent '{parent}' verified: its sequence {} hashes to the hash this fork recorded",
                l.sequence
            )),
            _ if !deleted.is_empty() => {
                report.notes.push(format!(
                    "{}; a mission of that id was created again since",
                    deleted_note(deleted.last().expect("not empty"))
                ));
            }
            Some(h) if h == l.hash => report.problems.push(Problem {
                sequence: Some(1),
                what: format!(
                    "lineage: parent '{parent}' holds another event than checkpoint {} at sequence {}",
                    l.checkpoint, l.sequence
                ),
            }),
            Some(h) => report.problems.push(Problem {
                sequence: Some(1),
                what: format!(
                    "lineage: parent '{parent}' has hash {} at sequence {}, this fork recorded {} \
                     (the parent was rewritten or the fork forged)",
                    crate::store::hex(&h),
                    l.sequence,
                    crate::store::hex(&l.hash)
                ),
            }),
            None => report.problems.push(Problem {
                sequence: Some(1),
                what: format!(
                    "lineage: parent '{parent}' has no record at sequence {} (its head is {})",
                    l.sequence,
                    self.store.head(pno, parent).map(|h| h.0).unwrap_or(0)
                ),
            }),
        }
    }

    /// Whether `e`, met while reading `mission`'s log from `from`, is
    /// another process's prune removing the records under the read (a
    /// shared store whose log now starts past `from`): the read starts
    /// again from the new anchor.
    pub(super) fn pruned_meanwhile(
        &self,
        no: MissionNo,
        mission: &str,
        from: u64,
        e: &Error,
    ) -> bool {
        self.store.is_shared()
            && matches!(e, Error::Corruption { reason, .. } if reason.contains("record missing"))
            && self
                .store
                .first_kept(no, mission)
                .is_ok_and(|(first, _)| first > from)
    }

    pub(super) fn history(&self, job: HistoryJob) {
        match job {
            HistoryJob::Delete { mission, by, reply } => {
                let _ = reply.send(self.again_if_moved(&mission, || self.delete(&mission, &by)));
            }
            HistoryJob::Prune {
                mission,
                before,
                reply,
            } => {
                let _ = reply.send(self.again_if_moved(&mission, || self.prune(&mission, before)));
            }
        }
    }

    /// Run a delete or prune; on a shared store (PostgreSQL), run it again
    /// from fresh state while another process moved the mission under it
    /// (an append or prune between our reads and our transaction, which
    /// then changed nothing), a bounded number of times.
    fn again_if_moved<T>(&self, mission: &str, f: impl Fn() -> Result<T>) -> Result<T> {
        let mut attempts = 0;
        loop {
            let result = f();
            let moved = match &result {
                Err(Error::SequenceConflict { .. }) => true,
                // Records removed under our reads by another process's prune.
                Err(Error::Corruption { reason, .. }) => reason.contains("record missing"),
                Err(Error::Database { reason, .. }) => {
                    reason.contains("SQLSTATE 40001") || reason.contains("SQLSTATE 40P01")
                }
                _ => false,
            };
            if !moved || !self.store.is_shared() || attempts == MOVED_RETRIES {
                return result;
            }
            attempts += 1;
            if let Some(no) = self.shared.no_of(mission) {
                self.forget(no, mission, 0);
            }
            if self.store.mission_no(mission)?.is_none() {
                return Err(Error::MissionNotFound {
                    mission: mission.to_string(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(u64::from(attempts) * 5));
        }
    }

    fn delete(&self, mission: &str, by: &str) -> Result<Tombstone> {
        let no = self
            .shared
            .no_of(mission)
            .ok_or_else(|| Error::MissionNotFound {
                mission: mission.to_string(),
            })?;
        let (head_sequence, head_hash) = self.store.head(no, mission)?;
        let tombstone = Tombstone {
            mission_id: mission.to_string(),
            head_sequence,
            head_hash,
            deleted_at_us: to_micros(now_micros()),
            deleted_by: by.to_string(),
            mission_no: no,
        };
        // The ledger first: once it forgets the mission, nothing can report
        // the deleted events as lost, whether or not sled's delete lands.
        if let Some(l) = self.ledger.borrow_mut().as_mut() {
            l.record_delete(
                mission,
                &LedgerHead {
                    sequence: head_sequence,
                    hash: head_hash,
                },
            )?;
        }
        self.ledger_pending.borrow_mut().remove(mission);
        // Readers stop seeing it before its records go.
        self.forget(no, mission, u64::MAX);
        let tombstone = match self.store.delete_mission(&tombstone) {
            Ok((_, written)) => written,
            Err(e) => {
                if self.store.is_shared() {
                    // Nothing changed (PostgreSQL: one transaction).
                    let _ = self.shared.resolve(&self.store, mission);
                }
                return Err(e);
            }
        };
        self.store.flush(Durability::Sync)?;
        self.integrity
            .damaged
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(mission);
        tracing::warn!(mission, by, head_sequence, "mission deleted");
        Ok(tombstone)
    }

    /// Drop a mission from the published state: the directory entry (when
    /// deleting: `below == u64::MAX`), the cached state (reloaded from the
    /// store on next use) and recent events below `below`.
    fn forget(&self, no: MissionNo, mission: &str, below: u64) {
        if below == u64::MAX {
            let mut dir = self
                .shared
                .directory
                .write()
                .unwrap_or_else(|p| p.into_inner());
            dir.by_name.remove(mission);
            dir.by_no.remove(&no);
        }
        self.shared
            .cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&no);
        let mut recent = self.shared.recent.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<Uuid> = recent
            .by_id
            .iter()
            .filter(|(_, (m, e, _))| *m == no && e.sequence < below)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some((_, _, cost)) = recent.by_id.remove(&id) {
                recent.bytes -= cost;
            }
            recent.order.retain(|x| *x != id);
        }
    }

    fn prune(&self, mission: &str, before: u64) -> Result<PruneReport> {
        if let Some(e) = self.integrity.refuse_write(mission) {
            return Err(e);
        }
        let no = self
            .shared
            .no_of(mission)
            .ok_or_else(|| Error::MissionNotFound {
                mission: mission.to_string(),
            })?;
        if self.store.is_shared() {
            // Other processes write too: plan from the database's head.
            self.forget(no, mission, 0);
        }
        let cached = self.load(no, mission)?;
        let head = cached.state.head;
        let first = cached.state.first_sequence();
        if before < 2 || before > head {
            return Err(Error::invalid(
                "before",
                format!(
                    "must be 2..={head} (the head record of '{mission}' always stays), got {before}"
                ),
            ));
        }
        if before <= first {
            return Ok(PruneReport {
                mission_id: mission.to_string(),
                before: first,
                removed: 0,
                event: None,
            });
        }
        // The state as of `before - 1`: from the anchor (if any), folded.
        let (mut state, from) = match self.store.anchor(no, mission)? {
            Some(a) => (
                a.state()
                    .map_err(|e| Error::corruption(mission, Some(a.before - 1), e))?,
                a.before,
            ),
            None => (MissionState::default(), 1),
        };
        for e in self.store.scan(no, mission, from, before - 1) {
            state.apply(&e?);
        }
        let anchor_hash = self
            .store
            .record_hash(no, before - 1)?
            .ok_or_else(|| Error::corruption(mission, Some(before - 1), "record missing"))?;
        let anchor = Anchor::new(before, anchor_hash, &state);
        let mut event = Event {
            id: Uuid::now_v7(),
            sequence: head + 1,
            timestamp: now_micros(),
            sender: OPERATOR.to_string(),
            body: EventBody::HistoryPruned {
                before,
                anchor_hash,
                state_hash: anchor.state_hash,
            },
            meta: EventMeta::default(),
        };
        let plan = PlannedAppend {
            mission: no,
            mission_id: mission.to_string(),
            register: None,
            replace_orphan_ids: false,
            prev_seq: head,
            events: vec![event.clone()],
        };
        self.forget(no, mission, before);
        let (new_head, removed_in_commit) = self.store.commit_prune(&plan, &anchor)?;
        // PostgreSQL: after the appends of other processes since `head`.
        event.sequence = new_head.0;
        let mut prev = HashMap::new();
        prev.insert(no, (head, cached.hash));
        self.make_durable(
            std::slice::from_ref(&plan),
            &[new_head],
            &HashMap::new(),
            &prev,
        )?;
        // Acknowledged from here on; the old records go now.
        let removed = removed_in_commit + self.store.remove_before(no, mission, before)?;
        self.store.flush(self.durability)?;
        self.forget(no, mission, before);
        self.shared.live.moved(no, new_head.0);
        let c = Arc::new(crate::bus::Committed {
            mission_id: mission.to_string(),
            event: event.clone(),
        });
        if let Some(tx) = self
            .shared
            .mission_channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(mission)
        {
            let _ = tx.send(Arc::clone(&c));
        }
        let _ = self.shared.committed.send(c);
        tracing::info!(mission, before, removed, "mission pruned");
        Ok(PruneReport {
            mission_id: mission.to_string(),
            before,
            removed,
            event: Some(event),
        })
    }
}
