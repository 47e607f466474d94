//! The handoff lifecycle, as folded by the reducer.
//!
//! A handoff is *offered* (the `handoff` event), then *accepted* by its
//! recipient, who holds a lease extended by heartbeats, then *completed*,
//! *declined* (while offered), *released* (while accepted) or *expired*
//! (the lease lapsed). A handoff whose recipient is removed is *revoked*.
//! Declined, released, expired and revoked work *returns* to the sender, or
//! to the lead when the sender has left.
//!
//! The state keeps every open handoff and the most recent [`CLOSED_KEPT`]
//! closed ones, so it stays bounded by the work in flight, not by history.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{EventRef, MissionState};
use crate::event::{to_micros, Event, OPERATOR};

/// Closed handoffs remembered in the state (oldest out first).
pub const CLOSED_KEPT: usize = 256;

/// Where a handoff is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandoffStatus {
    /// Offered, not yet accepted or declined.
    Offered,
    /// Accepted: the recipient holds a lease.
    Accepted,
    /// Finished by the holder.
    Completed,
    /// Refused by the recipient; returned.
    Declined,
    /// Given back by the holder; returned.
    Released,
    /// The holder's lease lapsed; returned.
    Expired,
    /// The recipient was removed from the mission; returned.
    Revoked,
}

impl HandoffStatus {
    /// The JSON `status` string.
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffStatus::Offered => "offered",
            HandoffStatus::Accepted => "accepted",
            HandoffStatus::Completed => "completed",
            HandoffStatus::Declined => "declined",
            HandoffStatus::Released => "released",
            HandoffStatus::Expired => "expired",
            HandoffStatus::Revoked => "revoked",
        }
    }

    /// Offered or accepted.
    pub fn is_open(self) -> bool {
        matches!(self, HandoffStatus::Offered | HandoffStatus::Accepted)
    }
}

/// What the state knows about one handoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffInfo {
    /// The handoff id (the `handoff` event's id).
    pub handoff_id: Uuid,
    /// Sequence of the `handoff` event.
    pub sequence: u64,
    /// Who offered it.
    pub sender: String,
    /// Who it is addressed to.
    pub recipient: String,
    /// The checkpoint it was offered with.
    pub checkpoint_id: Uuid,
    /// The checkpoint to resume from: the holder's latest checkpoint made
    /// while it held the lease, else the offered one.
    pub resume_checkpoint_id: Uuid,
    /// Its status.
    pub status: HandoffStatus,
    /// When the lease ends, microseconds since the Unix epoch (accepted only).
    pub lease_expires_us: Option<i64>,
    /// Who the work returned to (declined, released, expired, revoked).
    pub returned_to: Option<String>,
    /// The handoff that re-offered this returned work, if any.
    pub reoffered_as: Option<Uuid>,
    /// Sequence of the last event that changed it.
    pub updated_sequence: u64,
}

impl MissionState {
    /// Every known handoff (open ones, then the most recent closed ones).
    pub fn handoff(&self, id: &Uuid) -> Option<&HandoffInfo> {
        self.open_handoffs
            .get(id)
            .or_else(|| self.closed_handoffs.iter().find(|h| h.handoff_id == *id))
    }

    /// Who returned work goes to when its sender has left: the first lead
    /// by name, else the operator.
    pub fn return_target(&self, sender: &str) -> String {
        if self.participants.contains_key(sender) {
            return sender.to_string();
        }
        self.participants
            .values()
            .find(|p| p.role == "lead")
            .map(|p| p.name.clone())
            .unwrap_or_else(|| OPERATOR.to_string())
    }

    /// Returned work addressed to `name` that it has not re-offered yet,
    /// newest first.
    pub fn returned_to(&self, name: &str) -> Vec<&HandoffInfo> {
        self.closed_handoffs
            .iter()
            .rev()
            .filter(|h| h.returned_to.as_deref() == Some(name) && h.reoffered_as.is_none())
            .collect()
    }

    pub(super) fn fold_checkpoint(&mut self, event: &Event) {
        let r = EventRef {
            id: event.id,
            sequence: event.sequence,
        };
        self.latest_checkpoint_by.insert(event.sender.clone(), r);
        for h in self.open_handoffs.values_mut() {
            if h.status == HandoffStatus::Accepted && h.recipient == event.sender {
                h.resume_checkpoint_id = event.id;
            }
        }
    }

    pub(super) fn fold_offer(&mut self, event: &Event, recipient: &str, checkpoint_id: Uuid) {
        for h in self.closed_handoffs.iter_mut() {
            if h.returned_to.as_deref() == Some(event.sender.as_str())
                && h.reoffered_as.is_none()
                && h.resume_checkpoint_id == checkpoint_id
            {
                h.reoffered_as = Some(event.id);
            }
        }
        self.open_handoffs.insert(
            event.id,
            HandoffInfo {
                handoff_id: event.id,
                sequence: event.sequence,
                sender: event.sender.clone(),
                recipient: recipient.to_string(),
                checkpoint_id,
                resume_checkpoint_id: checkpoint_id,
                status: HandoffStatus::Offered,
                lease_expires_us: None,
                returned_to: None,
                reoffered_as: None,
                updated_sequence: event.sequence,
            },
        );
    }

    pub(super) fn fold_lease(&mut self, event: &Event, id: &Uuid, lease_ms: u64) {
        if let Some(h) = self.open_handoffs.get_mut(id) {
            h.status = HandoffStatus::Accepted;
            let lease_us = i64::try_from(lease_ms.saturating_mul(1000)).unwrap_or(i64::MAX);
            h.lease_expires_us = Some(to_micros(event.timestamp).saturating_add(lease_us));
            h.updated_sequence = event.sequence;
        }
    }

    pub(super) fn fold_close(&mut self, event: &Event, id: &Uuid, status: HandoffStatus) {
        let Some(mut h) = self.open_handoffs.remove(id) else {
            return;
        };
        h.status = status;
        h.updated_sequence = event.sequence;
        if status != HandoffStatus::Completed {
            h.returned_to = Some(self.return_target(&h.sender));
        }
        self.closed_handoffs.push_back(h);
        while self.closed_handoffs.len() > CLOSED_KEPT {
            self.closed_handoffs.pop_front();
        }
    }

    pub(super) fn fold_removed(&mut self, event: &Event, name: &str) {
        self.participants.remove(name);
        let revoked: Vec<Uuid> = self
            .open_handoffs
            .values()
            .filter(|h| h.recipient == name)
            .map(|h| h.handoff_id)
            .collect();
        for id in revoked {
            self.fold_close(event, &id, HandoffStatus::Revoked);
        }
    }
}

/// Open handoffs whose lease ended at or before `now_us`, by id.
pub(crate) fn lapsed(open: &BTreeMap<Uuid, HandoffInfo>, now_us: i64) -> Vec<Uuid> {
    open.values()
        .filter(|h| h.status == HandoffStatus::Accepted)
        .filter(|h| h.lease_expires_us.is_some_and(|d| d <= now_us))
        .map(|h| h.handoff_id)
        .collect()
}

/// Keeps `VecDeque` in the public signature readable in docs.
pub type ClosedHandoffs = VecDeque<HandoffInfo>;
