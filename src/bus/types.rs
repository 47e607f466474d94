//! The public request and answer types of the bus.

use uuid::Uuid;

use crate::event::{Event, Json};
use crate::profiles::{IsolationProfile, MissionConfig};
use crate::state::Participant;

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
