//! Mission state and the pure reducer.
//!
//! [`MissionState::apply`] is the one function that turns events into state.
//! The live append path and replay both call it, so the state kept live and
//! the state rebuilt from the log cannot disagree. It does no I/O.
//!
//! The state stays small whatever the history length: it holds the
//! participants, counters and the latest checkpoint/handoff references, never
//! the events themselves (those stay in the log and are found by index).

use std::collections::BTreeMap;

mod cells;
mod handoffs;
pub use cells::{Cells, RunningCell, RUNNING_KEPT};
pub(crate) use handoffs::lapsed;
pub use handoffs::{ClosedHandoffs, HandoffInfo, HandoffStatus, CLOSED_KEPT};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{Event, EventBody, Json};
use crate::profiles::{Capability, MissionConfig};

/// Version of the reducer's output shape. Snapshots record it; a snapshot
/// built by another version is ignored and the state rebuilt from the log.
/// Bump it whenever `MissionState` or `apply` changes.
pub const REDUCER_VERSION: u32 = 3;

/// A registered participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// Unique name within the mission.
    pub name: String,
    /// Role (defined in the mission's config).
    pub role: String,
    /// Free-form JSON metadata.
    pub metadata: Json,
}

/// Where an event sits: its id and sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    /// The event id (`checkpoint_id`, `handoff_id`, ...).
    pub id: Uuid,
    /// Its sequence.
    pub sequence: u64,
}

/// Everything known about a mission, rebuilt by folding its log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MissionState {
    /// The user-given mission id.
    pub mission_id: String,
    /// Title.
    pub title: String,
    /// Roles and isolation profiles.
    pub config: MissionConfig,
    /// Participants by name.
    pub participants: BTreeMap<String, Participant>,
    /// Sequence of the last applied event (0 before any).
    pub head: u64,
    /// Number of messages.
    pub messages: u64,
    /// Number of checkpoints.
    pub checkpoints: u64,
    /// Number of handoffs.
    pub handoffs: u64,
    /// The most recent checkpoint.
    pub latest_checkpoint: Option<EventRef>,
    /// The most recent handoff addressed to each recipient.
    pub latest_handoff_to: BTreeMap<String, EventRef>,
    /// Handoffs offered or accepted, by id (see [`HandoffInfo`]).
    pub open_handoffs: BTreeMap<Uuid, HandoffInfo>,
    /// The most recently closed handoffs, oldest first (at most [`CLOSED_KEPT`]).
    pub closed_handoffs: ClosedHandoffs,
    /// The latest checkpoint of each participant (kept after it leaves).
    pub latest_checkpoint_by: BTreeMap<String, EventRef>,
    /// Isolation cells: running ones and counts (see [`Cells`]).
    pub cells: Cells,
}

impl MissionState {
    /// Apply one event. Pure: the same events in the same order always give
    /// the same state. Events are trusted to be valid (the bus validated them
    /// before they were written, and the checksum guards them since).
    pub fn apply(&mut self, event: &Event) {
        self.head = event.sequence;
        match &event.body {
            EventBody::MissionCreated {
                mission_id,
                title,
                config,
            } => {
                self.mission_id = mission_id.clone();
                self.title = title.clone();
                self.config = config.clone();
            }
            EventBody::ParticipantJoined {
                name,
                role,
                metadata,
            } => {
                self.participants.insert(
                    name.clone(),
                    Participant {
                        name: name.clone(),
                        role: role.clone(),
                        metadata: metadata.clone(),
                    },
                );
            }
            EventBody::RoleChanged { name, role } => {
                if let Some(p) = self.participants.get_mut(name) {
                    p.role = role.clone();
                }
            }
            EventBody::Message { .. } => self.messages += 1,
            EventBody::Checkpoint { .. } => {
                self.checkpoints += 1;
                self.latest_checkpoint = Some(EventRef {
                    id: event.id,
                    sequence: event.sequence,
                });
                self.fold_checkpoint(event);
            }
            // Only the head moves (above): the lost events' effects are
            // gone with them.
            EventBody::LossAccepted { .. } => {}
            EventBody::Handoff {
                recipient,
                checkpoint_id,
                ..
            } => {
                self.fold_offer(event, recipient, *checkpoint_id);
                self.handoffs += 1;
                self.latest_handoff_to.insert(
                    recipient.clone(),
                    EventRef {
                        id: event.id,
                        sequence: event.sequence,
                    },
                );
            }
            EventBody::HandoffAccepted {
                handoff_id,
                lease_ms,
            }
            | EventBody::HandoffHeartbeat {
                handoff_id,
                lease_ms,
            } => self.fold_lease(event, handoff_id, *lease_ms),
            EventBody::HandoffCompleted { handoff_id, .. } => {
                self.fold_close(event, handoff_id, HandoffStatus::Completed)
            }
            EventBody::HandoffDeclined { handoff_id, .. } => {
                self.fold_close(event, handoff_id, HandoffStatus::Declined)
            }
            EventBody::HandoffReleased { handoff_id, .. } => {
                self.fold_close(event, handoff_id, HandoffStatus::Released)
            }
            EventBody::HandoffExpired { handoff_id, .. } => {
                self.fold_close(event, handoff_id, HandoffStatus::Expired)
            }
            EventBody::ParticipantRemoved { name } => self.fold_removed(event, name),
            EventBody::CellStarted { profile, .. } => self.cells.fold_started(event, profile),
            EventBody::CellExited { cell_id, .. } => self.cells.fold_exited(cell_id),
        }
    }

    /// Number of stream events (messages, checkpoints, handoffs): the
    /// prototype's `stream_length`.
    pub fn stream_length(&self) -> u64 {
        self.messages + self.checkpoints + self.handoffs
    }

    /// Whether participant `name` may use `capability` (the prototype's
    /// `allowed`). Unknown names and undefined roles are not allowed.
    pub fn allowed(&self, name: &str, capability: Capability) -> bool {
        self.participants
            .get(name)
            .is_some_and(|p| self.config.role_allows(&p.role, capability))
    }
}

impl Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Json::from_stored(String::deserialize(d)?))
    }
}
