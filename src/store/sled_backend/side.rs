//! Side tables kept next to the log, and the store half of filtered reads.
//!
//! - `consumers`: durable consumer positions (how far a participant's named
//!   consumer has acknowledged). A position is not an event: it moves with
//!   every acknowledgement, and writing a log event per acknowledgement is
//!   exactly what it must not cost. It is monotone (never moves back), so a
//!   lost update can only mean re-delivery (at-least-once), never a gap.
//! - token revocation for a removed participant (`tokens` tree);
//! - filtered range reads over `events`, forward or newest first.
//!
//! Layouts are in `docs/format.md`.

use std::sync::Mutex;

use super::SledStore;
use crate::codec;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::keys::{self, MissionNo};
use crate::store::StoredConsumer;

const TREE_CONSUMERS: &str = "consumers";
/// Version byte of `consumers` values.
const CONSUMER_VERSION: u8 = 1;

/// Serializes consumer writes (monotone update + per-participant bound).
/// One process owns a data directory, so a process-wide lock is enough.
static CONSUMER_WRITES: Mutex<()> = Mutex::new(());

fn consumer_prefix(mission: MissionNo, participant: Option<&str>) -> Vec<u8> {
    let mut k = keys::mission_key(mission).to_vec();
    if let Some(p) = participant {
        k.extend_from_slice(p.as_bytes());
        k.push(0);
    }
    k
}

fn consumer_key(mission: MissionNo, participant: &str, consumer: &str) -> Vec<u8> {
    let mut k = consumer_prefix(mission, Some(participant));
    k.extend_from_slice(consumer.as_bytes());
    k
}

fn parse_consumer(k: &[u8], v: &[u8]) -> Option<StoredConsumer> {
    let rest = k.get(8..)?;
    let nul = rest.iter().position(|b| *b == 0)?;
    let participant = std::str::from_utf8(&rest[..nul]).ok()?.to_string();
    let consumer = std::str::from_utf8(&rest[nul + 1..]).ok()?.to_string();
    match v {
        [CONSUMER_VERSION, body @ ..] if body.len() == 16 => Some(StoredConsumer {
            participant,
            consumer,
            position: u64::from_be_bytes(body[..8].try_into().ok()?),
            updated_us: i64::from_be_bytes(body[8..].try_into().ok()?),
        }),
        _ => None,
    }
}

fn consumer_value(position: u64, updated_us: i64) -> [u8; 17] {
    let mut v = [0u8; 17];
    v[0] = CONSUMER_VERSION;
    v[1..9].copy_from_slice(&position.to_be_bytes());
    v[9..].copy_from_slice(&updated_us.to_be_bytes());
    v
}

fn malformed() -> Error {
    Error::corruption("(consumers tree)", None, "consumer entry is malformed")
}

impl SledStore {
    fn consumers_tree(&self) -> Result<sled::Tree> {
        Ok(self.db.open_tree(TREE_CONSUMERS)?)
    }

    /// The stored position of one consumer.
    pub(crate) fn consumer(
        &self,
        mission: MissionNo,
        participant: &str,
        consumer: &str,
    ) -> Result<Option<StoredConsumer>> {
        let key = consumer_key(mission, participant, consumer);
        match self.consumers_tree()?.get(&key)? {
            None => Ok(None),
            Some(v) => parse_consumer(&key, &v).map(Some).ok_or_else(malformed),
        }
    }

    /// Move a consumer's position up to `position` (never down). A new
    /// consumer is refused (`Err(count)`) when the participant already has
    /// `max`. Returns the position now stored. Not durable until
    /// [`SledStore::flush`].
    pub(crate) fn advance_consumer(
        &self,
        mission: MissionNo,
        participant: &str,
        consumer: &str,
        position: u64,
        at_us: i64,
        max: usize,
    ) -> Result<std::result::Result<u64, usize>> {
        let _guard = CONSUMER_WRITES.lock().unwrap_or_else(|p| p.into_inner());
        let tree = self.consumers_tree()?;
        let key = consumer_key(mission, participant, consumer);
        let current = match tree.get(&key)? {
            Some(v) => Some(parse_consumer(&key, &v).ok_or_else(malformed)?.position),
            None => {
                let have = tree
                    .scan_prefix(consumer_prefix(mission, Some(participant)))
                    .count();
                if have >= max {
                    return Ok(Err(have));
                }
                None
            }
        };
        if let Some(c) = current.filter(|c| *c >= position) {
            return Ok(Ok(c));
        }
        tree.insert(&key, &consumer_value(position, at_us))?;
        Ok(Ok(position))
    }

    /// Every consumer of a mission (of one participant when given), by
    /// participant then consumer name.
    pub(crate) fn consumers(
        &self,
        mission: MissionNo,
        participant: Option<&str>,
    ) -> Result<Vec<StoredConsumer>> {
        let mut out = Vec::new();
        for item in self
            .consumers_tree()?
            .scan_prefix(consumer_prefix(mission, participant))
        {
            let (k, v) = item?;
            out.push(parse_consumer(&k, &v).ok_or_else(malformed)?);
        }
        Ok(out)
    }

    /// Forget one consumer (`Some`) or all of a participant's (`None`).
    /// Returns how many were removed.
    pub(crate) fn delete_consumers(
        &self,
        mission: MissionNo,
        participant: &str,
        consumer: Option<&str>,
    ) -> Result<u64> {
        let _guard = CONSUMER_WRITES.lock().unwrap_or_else(|p| p.into_inner());
        let tree = self.consumers_tree()?;
        let keys: Vec<sled::IVec> = match consumer {
            Some(c) => vec![consumer_key(mission, participant, c).into()],
            None => tree
                .scan_prefix(consumer_prefix(mission, Some(participant)))
                .keys()
                .collect::<std::result::Result<_, _>>()?,
        };
        let mut n = 0;
        for k in keys {
            if tree.remove(k)?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Remove every token of participant `name` of `mission`. Returns how
    /// many. Not durable until [`SledStore::flush`].
    pub(crate) fn revoke_tokens(&self, mission: MissionNo, name: &str) -> Result<u64> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.tokens.iter() {
            let (k, v) = item?;
            if super::decode_token_owner(&v).is_some_and(|(m, p)| m == mission && p == name) {
                batch.remove(k);
                n += 1;
            }
        }
        self.tokens.apply_batch(batch)?;
        Ok(n)
    }

    /// Events of a mission with sequences in `range` (inclusive) that
    /// `keep` accepts, oldest or newest first, stopping once `limit` are
    /// found. Every record read is checked (checksum, contiguous sequence)
    /// before it is decoded, and tested here, so only matches are handed
    /// up. Returns the matches and the last sequence examined.
    pub(crate) fn scan_filtered(
        &self,
        mission: MissionNo,
        name: &str,
        range: (u64, u64),
        newest_first: bool,
        limit: usize,
        keep: &dyn Fn(&Event) -> bool,
    ) -> Result<(Vec<Event>, Option<u64>)> {
        let (from, to) = (range.0.max(1), range.1);
        let mut out = Vec::new();
        if from > to || limit == 0 {
            return Ok((out, None));
        }
        let iter = self
            .events
            .range(keys::event_key(mission, from)..=keys::event_key(mission, to));
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = if newest_first
        {
            Box::new(iter.rev())
        } else {
            Box::new(iter)
        };
        let mut expected = if newest_first { to } else { from };
        let mut last = None;
        for item in iter {
            let (k, v) = item?;
            let seq = keys::parse_event_key(&k)
                .filter(|(m, _)| *m == mission)
                .map(|(_, s)| s)
                .ok_or_else(|| Error::corruption(name, None, "malformed event key"))?;
            if seq != expected {
                return Err(Error::corruption(
                    name,
                    Some(expected),
                    format!("record missing (next record is sequence {seq})"),
                ));
            }
            let event =
                codec::decode_event(seq, &v).map_err(|e| Error::corruption(name, Some(seq), e))?;
            last = Some(seq);
            if keep(&event) {
                out.push(event);
                if out.len() >= limit {
                    break;
                }
            }
            expected = if newest_first {
                seq.saturating_sub(1)
            } else {
                seq + 1
            };
        }
        Ok((out, last))
    }
}
