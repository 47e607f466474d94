//! The public request and answer types of the bus.

use uuid::Uuid;

use crate::event::{Event, Json};
use crate::profiles::{IsolationProfile, MissionConfig};
use crate::state::{HandoffInfo, HandoffStatus, Participant};

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
    /// Accept a handoff addressed to the sender; it holds a lease of
    /// `lease_ms` milliseconds from now.
    Accept {
        /// The handoff.
        handoff_id: Uuid,
        /// Lease length (1 ms ..= 24 h).
        lease_ms: u64,
    },
    /// Extend the lease of a handoff the sender holds to `lease_ms` from now.
    Heartbeat {
        /// The handoff.
        handoff_id: Uuid,
        /// New lease length (1 ms ..= 24 h).
        lease_ms: u64,
    },
    /// Finish a handoff the sender holds.
    Complete {
        /// The handoff.
        handoff_id: Uuid,
        /// Note.
        note: String,
    },
    /// Refuse a handoff offered to the sender; it returns to its sender.
    Decline {
        /// The handoff.
        handoff_id: Uuid,
        /// Note.
        note: String,
    },
    /// Give back a handoff the sender holds; it returns to its sender.
    Release {
        /// The handoff.
        handoff_id: Uuid,
        /// Note.
        note: String,
    },
    /// Remove a participant (lead or operator only). Its tokens stop
    /// working; work offered to it or held by it returns.
    Remove {
        /// Participant name.
        name: String,
    },
    /// Record that the sender's command starts in an isolation cell
    /// (`cell_started`). The profile must be one of the mission's, its
    /// mechanism must be the profile's, and a profile other than the
    /// mission's default (its first) needs `configure_isolation`. Running
    /// the command is the caller's business (`mission-bus cell run`).
    StartCell {
        /// The isolation profile's name.
        profile: String,
        /// The profile's mechanism.
        mechanism: String,
        /// The workspace directory (absolute).
        workspace: String,
        /// The command and its arguments (at least one).
        command: Vec<String>,
    },
    /// Record that the command of a running cell of the sender's ended
    /// (`cell_exited`).
    EndCell {
        /// The `cell_started` event's id.
        cell_id: Uuid,
        /// Exit code, when it exited.
        exit_code: Option<i32>,
        /// Signal, when one ended it.
        signal: Option<i32>,
        /// Run time in milliseconds.
        duration_ms: u64,
        /// Why it could not run (empty when it ran).
        error: String,
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
    /// The handoff's note (empty for a checkpoint packet).
    pub handoff_note: String,
    /// The handoff event itself (its id, sequence and timestamp); `None`
    /// when the packet falls back to the recipient's latest checkpoint.
    pub handoff: Option<Event>,
    /// Where the packet comes from: a handoff, or (no open handoff) the
    /// recipient's own latest checkpoint.
    pub source: ResumeSource,
    /// The handoff's lifecycle status, when the state still knows it.
    pub handoff_status: Option<HandoffStatus>,
    /// The full checkpoint event to resume from: for an accepted handoff,
    /// the holder's latest checkpoint made since it accepted.
    pub checkpoint: Event,
    /// Work returned to the recipient (declined, released, expired or
    /// revoked handoffs it sent, or, as lead, whose sender has left) and
    /// not yet offered again, newest first.
    pub returned: Vec<HandoffInfo>,
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

/// What a [`ResumePacket`] was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeSource {
    /// A handoff (open if there is one, else the latest addressed to the recipient).
    Handoff,
    /// No handoff: the recipient's own latest checkpoint.
    Checkpoint,
}

impl ResumeSource {
    /// The JSON `source` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ResumeSource::Handoff => "handoff",
            ResumeSource::Checkpoint => "checkpoint",
        }
    }
}
