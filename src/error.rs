//! The library's error type.
//!
//! One enum for the whole library, `#[non_exhaustive]` so new failure modes can
//! be added without breaking callers. Every variant names what was wrong and
//! where (mission, participant, sequence, field). [`Error::kind`] groups the
//! variants into the categories the edges map to exit codes and HTTP statuses.

use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Broad category of an [`Error`], stable for edges (CLI exit codes, HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Malformed or out-of-range input: a name, a JSON value, a size limit, a config file.
    InvalidInput,
    /// The acting participant is unknown or lacks the capability.
    PermissionDenied,
    /// A mission, participant, checkpoint, handoff or event does not exist.
    NotFound,
    /// The write conflicts with what is stored (mission exists, sequence or id conflict).
    Conflict,
    /// Stored bytes failed a checksum, hash-chain or structural check.
    Integrity,
    /// The data directory is held by another process.
    Busy,
    /// Anything else: I/O, the storage engine, a stopped writer.
    Other,
}

/// Every way a mission-bus operation can fail.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field of a request is malformed; `field` names it, `reason` says why.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field or argument that was wrong (e.g. `payload`, `mission id`).
        field: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A payload or state is larger than the configured limit.
    #[error("{field} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The field that was too large.
        field: String,
        /// Its size in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The roles/profiles config is malformed.
    #[error("config {}: {reason}", source_name(path))]
    Config {
        /// The file the config came from, if it came from a file.
        path: Option<PathBuf>,
        /// What is wrong, naming the key, role, capability or profile.
        reason: String,
    },
    /// A role that the mission's config does not define.
    #[error("mission '{mission}': role '{role}' is not defined in the mission's roles config")]
    UnknownRole {
        /// The mission.
        mission: String,
        /// The undefined role.
        role: String,
    },
    /// The acting name is not a participant of the mission.
    #[error("permission denied: '{sender}' is not a participant of mission '{mission}'")]
    NotAParticipant {
        /// The mission.
        mission: String,
        /// The name that tried to act.
        sender: String,
    },
    /// The participant's role lacks the capability the action needs.
    #[error("permission denied: '{sender}' (role '{role}') lacks capability '{capability}' in mission '{mission}'")]
    PermissionDenied {
        /// The mission.
        mission: String,
        /// The participant that tried to act.
        sender: String,
        /// Its role.
        role: String,
        /// The capability the action needs.
        capability: String,
    },
    /// No mission with this id.
    #[error("mission '{mission}' not found")]
    MissionNotFound {
        /// The mission id asked for.
        mission: String,
    },
    /// No participant with this name in the mission.
    #[error("mission '{mission}': participant '{name}' not found")]
    ParticipantNotFound {
        /// The mission.
        mission: String,
        /// The participant name asked for.
        name: String,
    },
    /// No checkpoint with this id in the mission.
    #[error("mission '{mission}': checkpoint {checkpoint_id} not found")]
    CheckpointNotFound {
        /// The mission the checkpoint was looked for in.
        mission: String,
        /// The checkpoint id.
        checkpoint_id: Uuid,
    },
    /// No handoff with this id (or none addressed to a recipient).
    #[error("handoff not found: {what}")]
    HandoffNotFound {
        /// What was looked for (an id, or "latest for X in mission M").
        what: String,
    },
    /// The mission has no isolation profile of this name.
    #[error(
        "isolation profile not found: '{profile}' in mission '{mission}' (its profiles: {known})"
    )]
    ProfileNotFound {
        /// The mission id.
        mission: String,
        /// The profile asked for.
        profile: String,
        /// The mission's profile names, comma-separated.
        known: String,
    },
    /// No running cell with this id (of this participant) in the mission.
    #[error("cell not found: no running cell {cell_id} of '{participant}' in mission '{mission}'")]
    CellNotFound {
        /// The mission id.
        mission: String,
        /// The participant named as the cell's owner.
        participant: String,
        /// The cell id (its `cell_started` event's id).
        cell_id: Uuid,
    },
    /// This machine cannot provide an isolation mechanism; nothing was started.
    #[error(
        "cannot start a '{mechanism}' cell (profile '{profile}'): {missing}; nothing was started"
    )]
    CellUnavailable {
        /// The profile asked for.
        profile: String,
        /// Its mechanism.
        mechanism: String,
        /// What is missing, and how to get it.
        missing: String,
    },
    /// A mission with this id already exists.
    #[error("mission '{mission}' already exists")]
    MissionExists {
        /// The mission id.
        mission: String,
    },
    /// A participant with this name already exists in the mission.
    #[error("mission '{mission}': participant '{name}' already exists")]
    ParticipantExists {
        /// The mission.
        mission: String,
        /// The participant name.
        name: String,
    },
    /// The caller's expected head sequence does not match the stored head.
    #[error("mission '{mission}': sequence {expected} expected as head, head is {head}")]
    SequenceConflict {
        /// The mission.
        mission: String,
        /// The head sequence the caller expected.
        expected: u64,
        /// The actual head sequence.
        head: u64,
    },
    /// The operation needs a part of the log that a prune removed (for
    /// example a fork from a checkpoint pruned while the fork read it).
    #[error("mission '{mission}': sequence {sequence} was pruned (the log now starts at {first})")]
    Pruned {
        /// The mission.
        mission: String,
        /// The sequence the operation needed.
        sequence: u64,
        /// The first sequence the log holds now.
        first: u64,
    },
    /// A caller-supplied event id is already stored with different content.
    #[error("event id {event_id} is already stored as mission '{mission}' sequence {sequence} with different content")]
    EventIdConflict {
        /// The event id.
        event_id: Uuid,
        /// The mission of the stored event.
        mission: String,
        /// The sequence of the stored event.
        sequence: u64,
    },
    /// Stored bytes are damaged or inconsistent.
    #[error("corruption in mission '{mission}'{}: {reason}", at_sequence(*sequence))]
    Corruption {
        /// The mission (or the internal id when the name is unknown).
        mission: String,
        /// The sequence of the damaged record, when known.
        sequence: Option<u64>,
        /// What check failed.
        reason: String,
    },
    /// A file of the store is damaged: sled refused its data file, or the
    /// commit ledger failed a check. Names the file and what is known about
    /// where; `mission-bus salvage` recovers what is intact.
    #[error("{}: {reason}; the store's intact data can be recovered with `mission-bus salvage` (see docs/mission-bus.md)", file.display())]
    Damaged {
        /// The damaged file.
        file: PathBuf,
        /// What is wrong and where in the file, as far as it is known.
        reason: String,
    },
    /// Events the store acknowledged are missing from the log: the commit
    /// ledger recorded a later head than sled recovered. The mission refuses
    /// writes until the loss is salvaged or accepted, so an acknowledged
    /// sequence is never given to another event.
    #[error("acknowledged events {first}..{last} of mission '{mission}' are missing ({reason}); writes to it are refused until you run `mission-bus salvage` or accept the loss with `mission-bus accept-loss {mission} --yes`")]
    AcknowledgedLoss {
        /// The mission.
        mission: String,
        /// First missing acknowledged sequence.
        first: u64,
        /// Last missing acknowledged sequence (the ledger's head).
        last: u64,
        /// What the check found.
        reason: String,
    },
    /// A read-only command was pointed at a directory that holds no store.
    #[error("no mission store at {} (nothing was created; check --data)", path.display())]
    StoreNotFound {
        /// The directory asked for.
        path: PathBuf,
    },
    /// Another process holds the data directory.
    #[error("data dir {} is in use by another process (a `mission-bus serve` may be running on it)", path.display())]
    DataDirInUse {
        /// The data directory.
        path: PathBuf,
    },
    /// The storage engine failed.
    #[error("storage error: {0}")]
    Storage(Arc<sled::Error>),
    /// The PostgreSQL database failed or could not be reached (the store
    /// location is shown without its password).
    #[error("PostgreSQL store {store}: {reason}")]
    Database {
        /// The store location, password removed.
        store: String,
        /// What failed, with the server's message and SQLSTATE when it sent one.
        reason: String,
    },
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The store's writer has stopped (the bus was closed, or a write failed fatally).
    #[error("the mission store is closed")]
    Closed,
    /// A handoff lifecycle step that its current status does not allow
    /// (accepting a completed handoff, a heartbeat after the lease lapsed,
    /// acting on a handoff addressed to someone else).
    #[error("mission '{mission}': handoff {handoff_id}: {reason}")]
    HandoffState {
        /// The mission.
        mission: String,
        /// The handoff.
        handoff_id: Uuid,
        /// What its status is and why the step is refused.
        reason: String,
    },
}

fn source_name(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "(inline)".to_string(),
    }
}

fn at_sequence(seq: Option<u64>) -> String {
    seq.map(|s| format!(" at sequence {s}")).unwrap_or_default()
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        match e {
            // sled's own checks failed on bytes it read: damaged storage,
            // never a transient failure. Its offset is often unknown.
            sled::Error::Corruption { at, .. } => Error::Damaged {
                file: PathBuf::from("db"),
                reason: match at {
                    Some(at) => format!("sled found damaged data at {at:?} of its data file"),
                    None => {
                        "sled found damaged data in its data file (sled does not say where)".into()
                    }
                },
            },
            e => Error::Storage(Arc::new(e)),
        }
    }
}

impl Error {
    /// The category of this error, for mapping to exit codes or statuses.
    pub fn kind(&self) -> ErrorKind {
        use Error::*;
        match self {
            InvalidInput { .. } | TooLarge { .. } | Config { .. } | UnknownRole { .. } => {
                ErrorKind::InvalidInput
            }
            NotAParticipant { .. } | PermissionDenied { .. } => ErrorKind::PermissionDenied,
            MissionNotFound { .. }
            | StoreNotFound { .. }
            | ParticipantNotFound { .. }
            | CheckpointNotFound { .. }
            | HandoffNotFound { .. }
            | ProfileNotFound { .. }
            | CellNotFound { .. } => ErrorKind::NotFound,
            MissionExists { .. }
            | ParticipantExists { .. }
            | SequenceConflict { .. }
            | EventIdConflict { .. }
            | Pruned { .. }
            | HandoffState { .. } => ErrorKind::Conflict,
            Corruption { .. } | Damaged { .. } | AcknowledgedLoss { .. } => ErrorKind::Integrity,
            DataDirInUse { .. } => ErrorKind::Busy,
            Storage(_) | Database { .. } | Io { .. } | Closed | CellUnavailable { .. } => {
                ErrorKind::Other
            }
        }
    }

    /// Name the store's directory in a `Damaged` error that only knows the
    /// file's name inside it.
    pub(crate) fn in_dir(self, dir: &std::path::Path) -> Self {
        match self {
            Error::Damaged { file, reason } if file.is_relative() => Error::Damaged {
                file: dir.join(file),
                reason,
            },
            e => e,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corruption(
        mission: impl Into<String>,
        sequence: Option<u64>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            mission: mission.into(),
            sequence,
            reason: reason.into(),
        }
    }
}
