//! The domain vocabulary: events and their kinds.
//!
//! An [`Event`] is one entry of a mission's log. Every state change is an
//! event (creation, membership, messages, checkpoints, handoffs), so replaying
//! the log through [`crate::MissionState::apply`] rebuilds everything.
//!
//! These types carry no serde derives on purpose: the bytes on disk are owned
//! by `codec.rs` and the JSON shape by `document.rs`, so neither can drift by
//! accident when a field is added here.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::profiles::MissionConfig;

/// A JSON value kept as its canonical text (keys sorted, no whitespace).
///
/// Payloads and checkpoint state are arbitrary JSON. bincode cannot decode
/// `serde_json::Value`, so records keep the text; the canonical form makes
/// two equal values compare equal byte for byte (used by idempotent retries).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Json(String);

impl Json {
    /// Canonical text of a JSON value.
    pub fn from_value(value: &serde_json::Value) -> Self {
        // Serializing a Value cannot fail: its keys are always strings.
        Json(serde_json::to_string(value).expect("serde_json::Value always serializes"))
    }

    /// Parse JSON text, naming `field` in the error when it is not JSON.
    pub fn parse(field: &str, text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::invalid(field, format!("not valid JSON: {e}")))?;
        Ok(Self::from_value(&value))
    }

    /// `null`.
    pub fn null() -> Self {
        Json("null".to_string())
    }

    /// An empty object `{}`.
    pub fn empty_object() -> Self {
        Json("{}".to_string())
    }

    /// The value, parsed.
    pub fn value(&self) -> serde_json::Value {
        // The text was produced by serde_json or checked when decoded.
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wrap JSON text read back from a record or snapshot. Not re-parsed:
    /// the bytes passed their CRC, and the writer only ever stores the
    /// canonical text of a parsed value. (A forged record with a valid CRC
    /// cannot panic anything: `value()` reads malformed text as `null`, and
    /// `verify` reports the forgery through the hash chain.)
    pub(crate) fn from_stored(text: String) -> Self {
        Json(text)
    }

    /// Take the text out.
    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<serde_json::Value> for Json {
    fn from(v: serde_json::Value) -> Self {
        Json::from_value(&v)
    }
}

/// One entry of a mission's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event's id (UUID v7, time-ordered). For messages, checkpoints and
    /// handoffs this is the `message_id`, `checkpoint_id` or `handoff_id`.
    pub id: Uuid,
    /// Position in the mission's log: starts at 1, contiguous.
    pub sequence: u64,
    /// When the event was appended (UTC, microsecond precision).
    pub timestamp: DateTime<Utc>,
    /// Who did it: a participant name, or [`OPERATOR`].
    pub sender: String,
    /// What happened.
    pub body: EventBody,
}

/// The name recorded as sender for actions of the store's operator (creating
/// a mission without a lead, registering participants from the CLI, imports).
/// Participant names may not start with `@`, so it never collides with one.
pub const OPERATOR: &str = "@operator";

/// What an event records.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// Always sequence 1: the mission's id, title and roles/profiles config.
    MissionCreated {
        /// The mission's user-given id.
        mission_id: String,
        /// Human-readable title.
        title: String,
        /// Roles and isolation profiles in force for this mission.
        config: MissionConfig,
    },
    /// A participant was registered with a role.
    ParticipantJoined {
        /// Participant name.
        name: String,
        /// Role name (defined in the mission's config).
        role: String,
        /// Free-form JSON metadata.
        metadata: Json,
    },
    /// A participant's role changed.
    RoleChanged {
        /// Participant name.
        name: String,
        /// The new role.
        role: String,
    },
    /// A message published on a topic.
    Message {
        /// Topic.
        topic: String,
        /// Arbitrary JSON payload.
        payload: Json,
    },
    /// A checkpoint of an agent's work.
    Checkpoint {
        /// Short human summary.
        summary: String,
        /// Arbitrary JSON state to resume from.
        state: Json,
        /// Paths or URIs of artifacts.
        artifacts: Vec<String>,
    },
    /// Work handed to another participant, pointing at a checkpoint.
    Handoff {
        /// Who receives the work.
        recipient: String,
        /// The checkpoint to resume from (same mission).
        checkpoint_id: Uuid,
        /// Free-form note.
        note: String,
    },
    /// The operator accepted that acknowledged events were lost (the commit
    /// ledger recorded them; the store no longer held them). Written by
    /// `MissionBus::accept_loss` only; the reducer folds it as a no-op
    /// except the head. The event takes the sequence after the store's
    /// head, so the sequences `first..=last` it names were acknowledged
    /// for events that are gone and are given to the events from here on:
    /// this record marks exactly where history was cut.
    LossAccepted {
        /// First acknowledged sequence that was lost.
        first: u64,
        /// Last acknowledged sequence that was lost (the ledger's head).
        last: u64,
        /// The chain hash the commit ledger held for sequence `last`.
        ledger_hash: [u8; 32],
    },
    /// The recipient of an offered handoff took it on. It holds a lease that
    /// ends `lease_ms` after this event's timestamp.
    HandoffAccepted {
        /// The handoff.
        handoff_id: Uuid,
        /// Lease length in milliseconds.
        lease_ms: u64,
    },
    /// The holder's heartbeat: the lease now ends `lease_ms` after this event.
    HandoffHeartbeat {
        /// The handoff.
        handoff_id: Uuid,
        /// New lease length in milliseconds, from this event's timestamp.
        lease_ms: u64,
    },
    /// The holder finished the work.
    HandoffCompleted {
        /// The handoff.
        handoff_id: Uuid,
        /// Free-form note.
        note: String,
    },
    /// The recipient refused an offered handoff; the work returns.
    HandoffDeclined {
        /// The handoff.
        handoff_id: Uuid,
        /// Free-form note.
        note: String,
    },
    /// The holder gave accepted work back before finishing; it returns.
    HandoffReleased {
        /// The handoff.
        handoff_id: Uuid,
        /// Free-form note.
        note: String,
    },
    /// The holder's lease lapsed (found at the explicit time `at` by the
    /// expiry operation); the work returns to the sender, or to the lead if
    /// the sender has left.
    HandoffExpired {
        /// The handoff.
        handoff_id: Uuid,
        /// The time the expiry operation ran with (after the deadline).
        at: DateTime<Utc>,
    },
    /// A participant was removed (by a lead or the operator). Its tokens
    /// stop working, and work it held or was offered returns.
    ParticipantRemoved {
        /// Participant name.
        name: String,
    },
    /// An agent's command was started in an isolation cell (see
    /// docs/cells.md). The event's id is the cell's id.
    CellStarted {
        /// The isolation profile's name (one of the mission's).
        profile: String,
        /// The profile's mechanism, e.g. `mount_namespace`.
        mechanism: String,
        /// The workspace directory, as an absolute path on the cell's host.
        workspace: String,
        /// The command and its arguments.
        command: Vec<String>,
    },
    /// The command of a cell ended (or could not be started after its
    /// `cell_started` was recorded).
    CellExited {
        /// The `cell_started` event's id.
        cell_id: Uuid,
        /// The exit code, when the command exited normally.
        exit_code: Option<i32>,
        /// The signal that ended it, when one did.
        signal: Option<i32>,
        /// Wall-clock run time in milliseconds.
        duration_ms: u64,
        /// Why the command could not run (empty when it ran).
        error: String,
    },
}

/// The kind of an event, as written in JSON's `event_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// `mission_created`
    MissionCreated,
    /// `participant_joined`
    ParticipantJoined,
    /// `role_changed`
    RoleChanged,
    /// `message`
    Message,
    /// `checkpoint`
    Checkpoint,
    /// `handoff`
    Handoff,
    /// `loss_accepted`
    LossAccepted,
    /// `handoff_accepted`
    HandoffAccepted,
    /// `handoff_heartbeat`
    HandoffHeartbeat,
    /// `handoff_completed`
    HandoffCompleted,
    /// `handoff_declined`
    HandoffDeclined,
    /// `handoff_released`
    HandoffReleased,
    /// `handoff_expired`
    HandoffExpired,
    /// `participant_removed`
    ParticipantRemoved,
    /// `cell_started`
    CellStarted,
    /// `cell_exited`
    CellExited,
}

impl EventType {
    /// Every event type, in declaration order.
    pub const ALL: [EventType; 16] = [
        EventType::MissionCreated,
        EventType::ParticipantJoined,
        EventType::RoleChanged,
        EventType::Message,
        EventType::Checkpoint,
        EventType::Handoff,
        EventType::LossAccepted,
        EventType::HandoffAccepted,
        EventType::HandoffHeartbeat,
        EventType::HandoffCompleted,
        EventType::HandoffDeclined,
        EventType::HandoffReleased,
        EventType::HandoffExpired,
        EventType::ParticipantRemoved,
        EventType::CellStarted,
        EventType::CellExited,
    ];

    /// The `event_type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MissionCreated => "mission_created",
            EventType::ParticipantJoined => "participant_joined",
            EventType::RoleChanged => "role_changed",
            EventType::Message => "message",
            EventType::Checkpoint => "checkpoint",
            EventType::Handoff => "handoff",
            EventType::LossAccepted => "loss_accepted",
            EventType::HandoffAccepted => "handoff_accepted",
            EventType::HandoffHeartbeat => "handoff_heartbeat",
            EventType::HandoffCompleted => "handoff_completed",
            EventType::HandoffDeclined => "handoff_declined",
            EventType::HandoffReleased => "handoff_released",
            EventType::HandoffExpired => "handoff_expired",
            EventType::ParticipantRemoved => "participant_removed",
            EventType::CellStarted => "cell_started",
            EventType::CellExited => "cell_exited",
        }
    }

    /// Parse an `event_type` string.
    pub fn parse(s: &str) -> Result<Self> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                Error::invalid(
                    "event_type",
                    format!("'{s}' is not one of {}", known.join(", ")),
                )
            })
    }

    /// Whether this is one of the prototype's stream events (message,
    /// checkpoint, handoff), the ones a seed document's `events` holds.
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            EventType::Message | EventType::Checkpoint | EventType::Handoff
        )
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EventBody {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self {
            EventBody::MissionCreated { .. } => EventType::MissionCreated,
            EventBody::ParticipantJoined { .. } => EventType::ParticipantJoined,
            EventBody::RoleChanged { .. } => EventType::RoleChanged,
            EventBody::Message { .. } => EventType::Message,
            EventBody::Checkpoint { .. } => EventType::Checkpoint,
            EventBody::Handoff { .. } => EventType::Handoff,
            EventBody::LossAccepted { .. } => EventType::LossAccepted,
            EventBody::HandoffAccepted { .. } => EventType::HandoffAccepted,
            EventBody::HandoffHeartbeat { .. } => EventType::HandoffHeartbeat,
            EventBody::HandoffCompleted { .. } => EventType::HandoffCompleted,
            EventBody::HandoffDeclined { .. } => EventType::HandoffDeclined,
            EventBody::HandoffReleased { .. } => EventType::HandoffReleased,
            EventBody::HandoffExpired { .. } => EventType::HandoffExpired,
            EventBody::ParticipantRemoved { .. } => EventType::ParticipantRemoved,
            EventBody::CellStarted { .. } => EventType::CellStarted,
            EventBody::CellExited { .. } => EventType::CellExited,
        }
    }

    /// The handoff a lifecycle event (accepted, heartbeat, completed,
    /// declined, released, expired) is about.
    pub fn lifecycle_handoff(&self) -> Option<Uuid> {
        match self {
            EventBody::HandoffAccepted { handoff_id, .. }
            | EventBody::HandoffHeartbeat { handoff_id, .. }
            | EventBody::HandoffCompleted { handoff_id, .. }
            | EventBody::HandoffDeclined { handoff_id, .. }
            | EventBody::HandoffReleased { handoff_id, .. }
            | EventBody::HandoffExpired { handoff_id, .. } => Some(*handoff_id),
            _ => None,
        }
    }
}

impl Event {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        self.body.event_type()
    }

    /// The timestamp as RFC 3339 UTC with microseconds (`2026-11-23T21:06:10.123456Z`).
    pub fn timestamp_rfc3339(&self) -> String {
        self.timestamp.to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

/// Microseconds since the Unix epoch, the resolution stored on disk.
pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Inverse of [`to_micros`]; `None` when out of chrono's range.
pub(crate) fn from_micros(us: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_micros(us).single()
}

/// Now, truncated to the microsecond resolution stored on disk, so an event
/// returned by an append equals the same event read back.
pub(crate) fn now_micros() -> DateTime<Utc> {
    from_micros(to_micros(Utc::now())).unwrap_or_else(Utc::now)
}
