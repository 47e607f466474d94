//! Reads: state, lookups, resume packets, replay, verify, subscriptions.
//! They run on the caller's thread against published (durable) state.

use super::{
    require, Cached, Committed, Job, MissionBus, MissionSummary, ResumePacket, SUBSCRIBER_BUFFER,
};
use std::sync::Arc;

use uuid::Uuid;

use crate::codec::Hash;
use crate::error::{Error, Result};
use crate::event::{Event, EventBody, EventType};
use crate::keys::MissionNo;
use crate::profiles::Capability;
use crate::state::MissionState;
use crate::store::{EventIter, Index};
use crate::verify::VerifyReport;

impl MissionBus {
    pub(super) fn cached(&self, mission: &str) -> Result<Arc<Cached>> {
        let no = self.mission_no(mission)?;
        match self.cached_no(no, mission) {
            // Deleted by another process (shared stores): the id may be in
            // use again, by a mission of another number.
            Err(Error::MissionNotFound { .. }) if self.inner.store().is_shared() => {
                self.inner.shared.forget_deleted(no, mission);
                let again = self.mission_no(mission)?;
                self.cached_no(again, mission)
            }
            r => r,
        }
    }

    fn cached_no(&self, no: MissionNo, mission: &str) -> Result<Arc<Cached>> {
        if let Some(c) = self.inner.shared.cached(no) {
            let store = self.inner.store();
            if !store.is_shared() {
                return Ok(c);
            }
            // On a shared store other processes move heads too: one indexed
            // read tells whether the published state is still the latest,
            // and only the events after it are folded in when it is not.
            let head = store.head(no, mission)?;
            if head.0 == c.state.head {
                return Ok(c);
            }
            if head.0 > c.state.head {
                match self.fold_forward(&c, mission, head) {
                    Ok(fresh) => return Ok(fresh),
                    Err(e) => {
                        tracing::debug!(mission, error = %e, "folding in new events failed; reloading")
                    }
                }
            }
            self.inner
                .shared
                .cache
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&no);
        }
        self.send(|reply| Job::Load {
            mission: mission.to_string(),
            reply,
        })
    }

    /// `c` brought up to `head` by folding in only the events after it
    /// (other processes appended them), published unless the cache already
    /// holds something at least as new.
    fn fold_forward(&self, c: &Cached, mission: &str, head: (u64, Hash)) -> Result<Arc<Cached>> {
        let mut state = (*c.state).clone();
        for event in self
            .inner
            .store()
            .scan(c.no, mission, c.state.head + 1, head.0)
        {
            state.apply(&event?);
        }
        if state.head != head.0 {
            return Err(Error::corruption(
                mission,
                Some(state.head + 1),
                format!("record missing (head is {})", head.0),
            ));
        }
        let fresh = Arc::new(Cached {
            no: c.no,
            state: Arc::new(state),
            hash: head.1,
            snapshot_seq: c.snapshot_seq,
        });
        let mut cache = self
            .inner
            .shared
            .cache
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match cache.get(&c.no) {
            Some(now) if now.state.head >= head.0 => Ok(Arc::clone(now)),
            _ => {
                cache.insert(c.no, Arc::clone(&fresh));
                Ok(fresh)
            }
        }
    }

    pub(super) fn mission_no(&self, mission: &str) -> Result<MissionNo> {
        self.inner
            .shared
            .resolve(self.inner.store(), mission)?
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
        // A pruned log is rebuilt from its anchor's state.
        let (mut state, from) = match self.inner.store().anchor(c.no, mission)? {
            Some(a) => (
                a.state()
                    .map_err(|e| Error::corruption(mission, Some(a.before - 1), e))?,
                a.before,
            ),
            None => (MissionState::default(), 1),
        };
        for event in self.inner.store().scan(c.no, mission, from, c.state.head) {
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
        self.inner.shared.refresh_directory(self.inner.store());
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
                let cached = self.inner.shared.cached(no);
                // A pruned mission has no creation record: load its state.
                let cached = match cached {
                    None if self.inner.store().first_kept(no, &name)?.0 > 1 => {
                        Some(self.cached(&name)?)
                    }
                    c => c,
                };
                let (title, head_sequence, forked_from) = match cached {
                    Some(c) => (c.state.title.clone(), c.state.head, c.state.parent.clone()),
                    None => {
                        let store = self.inner.store();
                        let (head, _) = store.head(no, &name)?;
                        match store.event(no, 1, &name)? {
                            Some(Event {
                                body: EventBody::MissionCreated { title, .. },
                                ..
                            }) => (title, head, None),
                            Some(
                                e @ Event {
                                    body: EventBody::MissionForked { .. },
                                    ..
                                },
                            ) => {
                                let mut s = crate::state::MissionState::default();
                                s.apply(&e);
                                (s.title, head, s.parent)
                            }
                            _ => {
                                return Err(Error::corruption(
                                    &name,
                                    Some(1),
                                    "first record is not mission_created",
                                ))
                            }
                        }
                    }
                };
                Ok(MissionSummary {
                    mission_id: name,
                    title,
                    head_sequence,
                    forked_from,
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
            .read_chained(c.no, mission, from, c.state.head, (c.state.head, c.hash))
    }

    /// The operator's view of the log: events `from..=to` (clamped to the
    /// head), streamed in order, without a participant check. For exports,
    /// audits and tools that already authorized the caller. Checked like
    /// [`MissionBus::replay`] (checksums and hash chain).
    pub fn events(&self, mission: &str, from: u64, to: u64) -> Result<EventIter> {
        let c = self.cached(mission)?;
        self.inner.store().read_chained(
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
            0 => Ok(Some(crate::codec::GENESIS)),
            s if s > c.state.head => Ok(None),
            s => self.inner.store().record_hash(c.no, s),
        }
    }

    /// Find a checkpoint or handoff by id through its index (one `get` on
    /// the index, one on the log): (mission id, event).
    pub(super) fn by_index(&self, index: Index, id: &Uuid) -> Result<Option<(String, Event)>> {
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

    /// Where `recipient` picks up in `mission`, without knowing an id: the
    /// handoff it holds (accepted), else the newest offered to it, else its
    /// own latest checkpoint, else the newest work returned to it, else the
    /// latest handoff ever addressed to it.
    /// The packet's `source` says which; `returned` lists work that came
    /// back to it.
    pub fn latest_resume_packet(&self, mission: &str, recipient: &str) -> Result<ResumePacket> {
        self.resume_for(mission, recipient)
    }

    pub(super) fn packet(&self, mission: &str, handoff: Event) -> Result<ResumePacket> {
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
        let c = self.cached(mission)?;
        let info = c.state.handoff(&handoff.id);
        let checkpoint_id = info.map_or(checkpoint_id, |h| &h.resume_checkpoint_id);
        let (cp_mission, checkpoint) = self
            .by_index(Index::Checkpoints, checkpoint_id)?
            .filter(|(m, _)| m == mission)
            .ok_or_else(|| Error::CheckpointNotFound {
                mission: mission.to_string(),
                checkpoint_id: *checkpoint_id,
            })?;
        debug_assert_eq!(cp_mission, mission);
        Ok(ResumePacket {
            source: super::ResumeSource::Handoff,
            handoff_status: info.map(|h| h.status),
            returned: c
                .state
                .returned_to(recipient)
                .into_iter()
                .cloned()
                .collect(),
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
            forked_from: c.state.parent.clone(),
            handoff: Some(handoff),
        })
    }

    /// Verify one mission: checksums, hash chain, contiguous sequences, head,
    /// every index entry in both directions, and that no event the commit
    /// ledger recorded as acknowledged is missing (a mission the store lost
    /// entirely still gets a report, naming the lost range). Runs on the writer, so the
    /// log does not move underneath it (appends wait meanwhile).
    pub fn verify(&self, mission: &str) -> Result<VerifyReport> {
        if self
            .inner
            .shared
            .resolve(self.inner.store(), mission)?
            .is_none()
        {
            if let Some(report) = self.inner.integrity.report_for_missing(mission) {
                return Ok(report);
            }
        }
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
}
