//! Durable consumer positions: a participant names a consumer and
//! acknowledges up to a sequence; reads and streams given that consumer
//! start after it, across restarts and processes (at-least-once).
//!
//! Positions live in their own tree, not in the log: an acknowledgement
//! is one small keyed write plus the bus's flush (several acknowledgements
//! in flight share sled's flush), never a log event. A position only moves
//! forward. Each participant has at most
//! [`MAX_CONSUMERS_PER_PARTICIPANT`]; removing a participant forgets them.

use super::{check_name, MissionBus};
use crate::error::{Error, Result};
use crate::event::{from_micros, now_micros, to_micros};
use crate::store::Durability;

/// Most named consumers one participant may have in one mission.
pub const MAX_CONSUMERS_PER_PARTICIPANT: usize = 16;

/// A consumer's acknowledged position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerPosition {
    /// The participant it belongs to.
    pub participant: String,
    /// Its name.
    pub consumer: String,
    /// Everything up to and including this sequence was acknowledged.
    pub position: u64,
    /// When it last moved.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl MissionBus {
    /// Acknowledge everything up to `sequence` for `participant`'s consumer
    /// `consumer` (created on first use). Never moves a position back (an
    /// older acknowledgement is a no-op). Durable before it returns (except
    /// under [`Durability::Relaxed`]). Returns the stored position.
    pub fn ack(
        &self,
        mission: &str,
        participant: &str,
        consumer: &str,
        sequence: u64,
    ) -> Result<u64> {
        check_name("consumer", consumer)?;
        let c = self.cached(mission)?;
        if !c.state.participants.contains_key(participant) {
            return Err(Error::NotAParticipant {
                mission: mission.to_string(),
                sender: participant.to_string(),
            });
        }
        if sequence > c.state.head {
            return Err(Error::invalid(
                "sequence",
                format!(
                    "{sequence} is past mission '{mission}' head {}",
                    c.state.head
                ),
            ));
        }
        let store = self.inner.store();
        let stored = store
            .advance_consumer(
                c.no,
                participant,
                consumer,
                sequence,
                to_micros(now_micros()),
                MAX_CONSUMERS_PER_PARTICIPANT,
            )?
            .map_err(|have| {
                Error::invalid(
                    "consumer",
                    format!(
                        "'{participant}' already has {have} consumers in mission '{mission}' \
                         (at most {MAX_CONSUMERS_PER_PARTICIPANT}); delete one first"
                    ),
                )
            })?;
        if self.inner.durability != Durability::Relaxed {
            store.flush(self.inner.durability)?;
        }
        Ok(stored)
    }

    /// The acknowledged position of a consumer (0 when it never acknowledged).
    pub fn consumer_position(
        &self,
        mission: &str,
        participant: &str,
        consumer: &str,
    ) -> Result<u64> {
        let no = self.mission_no(mission)?;
        Ok(self
            .inner
            .store()
            .consumer(no, participant, consumer)?
            .map_or(0, |c| c.position))
    }

    /// The consumers of `mission` (of one participant when given), by
    /// participant and name: what an auditor checks to see who is behind.
    pub fn consumers(
        &self,
        mission: &str,
        participant: Option<&str>,
    ) -> Result<Vec<ConsumerPosition>> {
        let no = self.mission_no(mission)?;
        Ok(self
            .inner
            .store()
            .consumers(no, participant)?
            .into_iter()
            .map(|c| ConsumerPosition {
                participant: c.participant,
                consumer: c.consumer,
                position: c.position,
                updated_at: from_micros(c.updated_us).unwrap_or_default(),
            })
            .collect())
    }

    /// Forget a consumer. Returns whether it existed.
    pub fn delete_consumer(
        &self,
        mission: &str,
        participant: &str,
        consumer: &str,
    ) -> Result<bool> {
        let no = self.mission_no(mission)?;
        let store = self.inner.store();
        let n = store.delete_consumers(no, participant, Some(consumer))?;
        store.flush(self.inner.durability)?;
        Ok(n > 0)
    }
}
