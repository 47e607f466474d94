//! Checkpoints and handoffs as first-class reads, and where a resuming
//! agent picks up (`resume --for ME`).

use uuid::Uuid;

use super::{EventFilter, MissionBus, ResumePacket, ResumeSource};
use crate::error::{Error, Result};
use crate::event::{Event, EventType};
use crate::state::HandoffStatus;
use crate::store::Index;

impl MissionBus {
    /// A checkpoint of `mission` by id (a checkpoint of another mission is
    /// not found here, and says nothing about that mission).
    pub fn checkpoint_in(&self, mission: &str, checkpoint_id: &Uuid) -> Result<Event> {
        self.cached(mission)?;
        match self.by_index(Index::Checkpoints, checkpoint_id)? {
            Some((m, e)) if m == mission => Ok(e),
            _ => Err(Error::CheckpointNotFound {
                mission: mission.to_string(),
                checkpoint_id: *checkpoint_id,
            }),
        }
    }

    /// Checkpoints of `mission`, newest first, optionally only those of
    /// `sender`, at most `limit`, with sequences below `before` (paging:
    /// pass the last sequence of the previous page).
    pub fn checkpoints(
        &self,
        mission: &str,
        sender: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let filter = EventFilter {
            types: vec![EventType::Checkpoint],
            sender: sender.map(str::to_string),
            to: before.map(|b| b.saturating_sub(1)),
            newest_first: true,
            limit: Some(limit),
            ..EventFilter::default()
        };
        Ok(self.read_events(mission, None, &filter, None)?.events)
    }

    /// The latest checkpoint made by `sender` in `mission` (one state
    /// lookup and one index read, whatever the history length).
    pub fn latest_checkpoint(&self, mission: &str, sender: &str) -> Result<Event> {
        let c = self.cached(mission)?;
        let r = c
            .state
            .latest_checkpoint_by
            .get(sender)
            .copied()
            .ok_or_else(|| Error::CheckpointNotFound {
                mission: mission.to_string(),
                checkpoint_id: Uuid::nil(),
            })?;
        self.checkpoint_in(mission, &r.id)
    }

    pub(super) fn resume_for(&self, mission: &str, me: &str) -> Result<ResumePacket> {
        let c = self.cached(mission)?;
        let state = &c.state;
        let open = |status: HandoffStatus| {
            state
                .open_handoffs
                .values()
                .filter(|h| h.recipient == me && h.status == status)
                .max_by_key(|h| h.sequence)
        };
        let chosen = open(HandoffStatus::Accepted).or_else(|| open(HandoffStatus::Offered));
        if let Some(h) = chosen {
            let handoff = self.handoff_event(mission, &h.handoff_id)?;
            return self.packet(mission, handoff);
        }
        if let Some(r) = state.latest_checkpoint_by.get(me) {
            let checkpoint = self.checkpoint_in(mission, &r.id)?;
            return Ok(ResumePacket {
                mission_id: mission.to_string(),
                title: state.title.clone(),
                recipient: me.to_string(),
                sender: me.to_string(),
                handoff_note: String::new(),
                handoff: None,
                source: ResumeSource::Checkpoint,
                handoff_status: None,
                checkpoint,
                returned: state.returned_to(me).into_iter().cloned().collect(),
                participants: state.participants.clone(),
                isolation_profiles: state.config.isolation_profiles.clone(),
                stream_length: state.stream_length(),
                head_sequence: state.head,
                forked_from: state.parent.clone(),
            });
        }
        if let Some(h) = state.returned_to(me).first() {
            // Work that came back to me: resume where its holder got to.
            let handoff = self.handoff_event(mission, &h.handoff_id)?;
            let mut p = self.packet(mission, handoff)?;
            p.recipient = me.to_string();
            p.returned = state.returned_to(me).into_iter().cloned().collect();
            return Ok(p);
        }
        let r = state
            .latest_handoff_to
            .get(me)
            .ok_or_else(|| Error::HandoffNotFound {
                what: format!(
                    "no handoff to '{me}' and no checkpoint by '{me}' in mission '{mission}'"
                ),
            })?;
        let handoff = self.handoff_event(mission, &r.id)?;
        self.packet(mission, handoff)
    }

    fn handoff_event(&self, mission: &str, id: &Uuid) -> Result<Event> {
        match self.by_index(Index::Handoffs, id)? {
            Some((m, e)) if m == mission => Ok(e),
            _ => Err(Error::corruption(
                mission,
                None,
                format!("handoff {id} is in the state but not in the handoffs index"),
            )),
        }
    }
}
