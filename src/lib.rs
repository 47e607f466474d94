//! # mission-bus
//!
//! A durable, append-only, event-sourced log for multi-agent missions.
//!
//! Agents publish messages, save checkpoints and hand work to one another;
//! every action is checked against the agent's role. Every event is written
//! to [sled](https://docs.rs/sled/0.34.7) keyed by mission and sequence
//! number and flushed before the call returns; a mission's state is rebuilt
//! by replaying its log through a pure reducer ([`MissionState::apply`]);
//! checkpoints and handoffs are found through index trees, never by scanning.
//!
//! ```
//! use mission_bus::{Json, MissionBus, NewMission};
//! use serde_json::json;
//!
//! # fn main() -> mission_bus::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let bus = MissionBus::open(dir.path())?;
//! bus.create_mission(NewMission::new("mission-883", "Port the parser").lead("lead"))?;
//! bus.join("mission-883", "ada", "write", Json::empty_object())?;
//! bus.join("mission-883", "bob", "write", Json::empty_object())?;
//!
//! let msg = bus.publish("mission-883", "ada", "status", json!({"step": 1}).into())?;
//! assert_eq!(msg.sequence, 5); // created, 3 joins, then this message
//! let cp = bus.create_checkpoint(
//!     "mission-883", "ada", "lexer done", json!({"next": "parser"}).into(), vec!["lexer.rs".into()],
//! )?;
//! let handoff = bus.handoff("mission-883", "ada", "bob", cp.id, "your turn")?;
//!
//! // After a crash, bob asks where to pick up without knowing any id:
//! let packet = bus.latest_resume_packet("mission-883", "bob")?;
//! assert_eq!(packet.handoff.map(|h| h.id), Some(handoff.id));
//! assert_eq!(packet.checkpoint.id, cp.id);
//!
//! // A read-only participant cannot publish, and nothing is written:
//! bus.join("mission-883", "eve", "read", Json::empty_object())?;
//! let head = bus.state("mission-883")?.head;
//! assert!(bus.publish("mission-883", "eve", "x", Json::null()).is_err());
//! assert_eq!(bus.state("mission-883")?.head, head);
//!
//! // Replaying the log rebuilds exactly the live state.
//! assert_eq!(bus.rebuild_state("mission-883")?, *bus.state("mission-883")?);
//! assert!(bus.verify("mission-883")?.is_intact());
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/architecture.md` for the code map and invariants and
//! `docs/format.md` for the bytes on disk.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bus;
pub mod cell;
mod codec;
pub mod document;
mod error;
mod event;
mod keys;
mod ledger;
pub mod profiles;
pub mod salvage;
pub mod server;
mod state;
mod store;
mod verify;

pub use bus::{
    token_hash, Action, AppendOptions, BackupReport, BatchItem, BusStats, Committed, Histogram,
    MissionBus, MissionBusBuilder, MissionSummary, NewMission, ResumePacket, TokenOwner,
    MAX_ARTIFACTS, MAX_NAME_BYTES, MAX_RECORD_BYTES, MAX_TEXT_BYTES, MAX_TOPIC_BYTES,
};
pub use bus::{
    ConsumerPosition, CopyReport, EventFilter, EventPage, ResumeSource,
    MAX_CONSUMERS_PER_PARTICIPANT, MAX_LEASE_MS,
};
pub use error::{Error, ErrorKind, Result};
pub use event::{Event, EventBody, EventType, Json, OPERATOR};
pub use profiles::{Capability, IsolationProfile, MissionConfig};
pub use state::{Cells, RunningCell, RUNNING_KEPT};
pub use state::{EventRef, MissionState, Participant, REDUCER_VERSION};
pub use state::{HandoffInfo, HandoffStatus, CLOSED_KEPT};
pub use store::{Durability, EventIter, StoreUrl};
pub use verify::{Problem, VerifyReport};

/// Entry points for fuzzing the decoders (`fuzz/`). Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// Decode bytes as an event record stored at `sequence`; must never panic.
    pub fn decode_record(sequence: u64, bytes: &[u8]) -> bool {
        crate::codec::decode_event(sequence, bytes).is_ok()
    }

    /// Decode bytes as a snapshot value; must never panic.
    pub fn decode_snapshot(bytes: &[u8]) -> bool {
        crate::codec::decode_snapshot(bytes).is_ok()
    }

    /// Encode an event of mission `mission_id` the way the store does
    /// (chained after the genesis hash), for building fuzz seeds and tests.
    pub fn encode_record(mission_id: &str, event: &crate::Event) -> Vec<u8> {
        crate::codec::encode_event(mission_id, event, &crate::codec::GENESIS).value
    }
}
