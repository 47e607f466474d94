//! History management in sled: prune anchors, range deletes of a pruned
//! prefix, deleting a whole mission behind a tombstone, and finishing a
//! clean-up a crash interrupted. A child of `store`, so sled stays inside
//! it. Bytes: `codec::history`; layouts: `docs/format.md`.
//!
//! Trees (opened on use, so stores that never pruned or deleted have none):
//! - `anchors`: `[mission no u64 BE]` -> anchor (first kept sequence, the
//!   chain hash before it, the state as of it);
//! - `tombstones`: `[mission id][0x00][deleted at µs u64 BE]` -> tombstone.

use sled::transaction::TransactionError;
use sled::Transactional;

use super::side::TREE_CONSUMERS;
use super::{commit_one, keys, SledStore};
use crate::codec::{self, Anchor, Hash, Tombstone, GENESIS};
use crate::error::{Error, Result};
use crate::event::EventBody;
use crate::keys::MissionNo;
use crate::store::PlannedAppend;

const TREE_ANCHORS: &str = "anchors";
const TREE_TOMBSTONES: &str = "tombstones";
/// Records removed per transaction while deleting.
const CHUNK: usize = 5_000;

impl SledStore {
    fn anchors_tree(&self) -> Result<sled::Tree> {
        Ok(self.db.open_tree(TREE_ANCHORS)?)
    }

    fn tombstones_tree(&self) -> Result<sled::Tree> {
        Ok(self.db.open_tree(TREE_TOMBSTONES)?)
    }

    /// The prune anchor of a mission, if it was ever pruned. A damaged
    /// anchor is corruption of that mission.
    pub(crate) fn anchor(&self, mission: MissionNo, name: &str) -> Result<Option<Anchor>> {
        match self.anchors_tree()?.get(keys::mission_key(mission))? {
            None => Ok(None),
            Some(v) => Anchor::decode(&v)
                .map(Some)
                .map_err(|e| Error::corruption(name, None, e)),
        }
    }

    /// The first sequence a mission's log holds and the chain hash its
    /// record must carry: `(1, zeros)` unless pruned.
    pub(crate) fn first_kept(&self, mission: MissionNo, name: &str) -> Result<(u64, Hash)> {
        Ok(match self.anchor(mission, name)? {
            Some(a) => (a.before, a.hash),
            None => (1, GENESIS),
        })
    }

    /// Commit the `history_pruned` event of `plan` and the anchor in ONE
    /// transaction: a reader sees both or neither. The records before the
    /// anchor are removed afterwards ([`Store::remove_before`]); until then
    /// they are ignored (every scan starts at the anchor).
    pub(crate) fn commit_prune(
        &self,
        plan: &PlannedAppend,
        anchor: &Anchor,
    ) -> Result<(u64, Hash)> {
        let anchors = self.anchors_tree()?;
        let value = anchor.encode();
        let trees = (
            &self.missions,
            &self.events,
            &self.heads,
            &self.checkpoints,
            &self.handoffs,
            &self.event_ids,
            &anchors,
        );
        let result = trees.transaction(
            |(missions, events, heads, checkpoints, handoffs, ids, anchors)| {
                let head = commit_one(plan, missions, events, heads, checkpoints, handoffs, ids)?;
                anchors.insert(&keys::mission_key(plan.mission), value.as_slice())?;
                Ok(head)
            },
        );
        result.map_err(|e| match e {
            TransactionError::Storage(e) => Error::from(e),
            TransactionError::Abort(a) => self.abort_error(a),
        })
    }

    /// Remove a mission's records with sequences below `before`, with
    /// their index entries, in transactions of a few thousand records.
    /// Idempotent: a crash in the middle leaves records below the anchor
    /// that the next call (or open) removes. Returns how many were removed.
    pub(crate) fn remove_before(&self, mission: MissionNo, name: &str, before: u64) -> Result<u64> {
        let removed = self.remove_range(mission, name, 1, before)?;
        // A snapshot from before the anchor can no longer be extended.
        if let Some(raw) = self.snapshot(mission)? {
            if codec::decode_snapshot(&raw).is_ok_and(|s| s.sequence + 1 < before) {
                self.snapshots.remove(keys::mission_key(mission))?;
            }
        }
        Ok(removed)
    }

    /// Remove records `from..to` of a mission and their index entries.
    fn remove_range(&self, mission: MissionNo, name: &str, from: u64, to: u64) -> Result<u64> {
        let mut removed = 0u64;
        loop {
            let chunk: Vec<(sled::IVec, sled::IVec)> = self
                .events
                .range(keys::event_key(mission, from)..keys::event_key(mission, to))
                .take(CHUNK)
                .collect::<std::result::Result<_, _>>()?;
            if chunk.is_empty() {
                return Ok(removed);
            }
            // Index entries: by the event's id (and checkpoint/handoff id).
            // A record that no longer decodes still goes; its index entries,
            // if any, are found by `verify` as pointing at nothing.
            let mut ids = Vec::with_capacity(chunk.len());
            for (k, v) in &chunk {
                let seq = keys::parse_event_key(k).map_or(0, |(_, s)| s);
                if let Ok(e) = codec::decode_event(seq, v) {
                    ids.push((e.id, e.body));
                }
            }
            let trees = (
                &self.events,
                &self.checkpoints,
                &self.handoffs,
                &self.event_ids,
            );
            let result: std::result::Result<(), TransactionError<()>> =
                trees.transaction(|(events, checkpoints, handoffs, event_ids)| {
                    for (k, _) in &chunk {
                        events.remove(k)?;
                    }
                    for (id, body) in &ids {
                        event_ids.remove(&keys::event_id_key(mission, id.as_bytes())[..])?;
                        match body {
                            EventBody::Checkpoint { .. } => {
                                checkpoints.remove(id.as_bytes())?;
                            }
                            EventBody::Handoff { .. } => {
                                handoffs.remove(id.as_bytes())?;
                            }
                            _ => {}
                        }
                    }
                    Ok(())
                });
            result.map_err(|e| match e {
                TransactionError::Storage(e) => Error::from(e),
                TransactionError::Abort(()) => {
                    Error::corruption(name, None, "range delete aborted")
                }
            })?;
            removed += chunk.len() as u64;
        }
    }

    /// Delete a mission: in one transaction its `missions` entry, head,
    /// snapshot and anchor go and the tombstone is written (from then on the
    /// mission is absent); then its records, index entries, consumer
    /// positions and tokens are removed ([`Store::purge`]).
    pub(crate) fn delete_mission(&self, tombstone: &Tombstone) -> Result<u64> {
        let no = tombstone.mission_no;
        let anchors = self.anchors_tree()?;
        let tombstones = self.tombstones_tree()?;
        let (k, v) = (tombstone.key(), tombstone.encode());
        let trees = (
            &self.missions,
            &self.heads,
            &self.snapshots,
            &anchors,
            &tombstones,
        );
        let result: std::result::Result<(), TransactionError<()>> =
            trees.transaction(|(missions, heads, snapshots, anchors, tombstones)| {
                let mkey = keys::mission_key(no);
                missions.remove(tombstone.mission_id.as_bytes())?;
                heads.remove(&mkey)?;
                snapshots.remove(&mkey)?;
                anchors.remove(&mkey)?;
                tombstones.insert(k.as_slice(), v.as_slice())?;
                Ok(())
            });
        result.map_err(|e| match e {
            TransactionError::Storage(e) => Error::from(e),
            TransactionError::Abort(()) => {
                Error::corruption(&tombstone.mission_id, None, "delete aborted")
            }
        })?;
        self.purge(no, &tombstone.mission_id)
    }

    /// Remove everything left under a deleted mission's number.
    fn purge(&self, no: MissionNo, name: &str) -> Result<u64> {
        let removed = self.remove_range(no, name, 0, u64::MAX)?;
        // Leftovers no record pointed at (an interrupted import's ids).
        let mut batch = sled::Batch::default();
        for k in self.event_ids.scan_prefix(keys::mission_key(no)).keys() {
            batch.remove(k?);
        }
        self.event_ids.apply_batch(batch)?;
        let consumers = self.db.open_tree(TREE_CONSUMERS)?;
        let mut batch = sled::Batch::default();
        for k in consumers.scan_prefix(keys::mission_key(no)).keys() {
            batch.remove(k?);
        }
        consumers.apply_batch(batch)?;
        let mut batch = sled::Batch::default();
        for item in self.tokens.iter() {
            let (k, v) = item?;
            if super::decode_token_owner(&v).is_some_and(|(m, _)| m == no) {
                batch.remove(k);
            }
        }
        self.tokens.apply_batch(batch)?;
        Ok(removed)
    }

    /// Tombstones, of one mission id or of all, oldest first per id.
    pub(crate) fn tombstones(&self, mission: Option<&str>) -> Result<Vec<Tombstone>> {
        let tree = self.tombstones_tree()?;
        let iter = match mission {
            Some(m) => {
                let mut p = m.as_bytes().to_vec();
                p.push(0);
                tree.scan_prefix(p)
            }
            None => tree.iter(),
        };
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            out.push(
                Tombstone::decode(&k, &v)
                    .map_err(|e| Error::corruption("(tombstones tree)", None, e))?,
            );
        }
        Ok(out)
    }

    /// Finish what a crash interrupted: records of deleted missions, and
    /// records below a prune anchor. One `get`/prefix probe per tombstone
    /// and anchor. Returns the records removed.
    pub(crate) fn finish_history_cleanups(&self) -> Result<u64> {
        let mut removed = 0;
        for t in self.tombstones(None)? {
            let leftover = self
                .events
                .scan_prefix(keys::mission_key(t.mission_no))
                .next()
                .is_some();
            if leftover {
                removed += self.purge(t.mission_no, &t.mission_id)?;
            }
        }
        for item in self.anchors_tree()?.iter() {
            let (k, v) = item?;
            let (Some(no), Ok(a)) = (keys::parse_u64(&k), Anchor::decode(&v)) else {
                continue; // reported by verify
            };
            let below = self
                .events
                .range(keys::event_key(no, 0)..keys::event_key(no, a.before))
                .next()
                .is_some();
            if below {
                removed += self.remove_before(no, &format!("#{no}"), a.before)?;
            }
        }
        Ok(removed)
    }
}

impl SledStore {
    /// The raw records of a mission with sequences `from..=to`, in order,
    /// CRC-checked and contiguous (for archives: the bytes exactly as
    /// stored, so their hashes can be recomputed anywhere).
    pub(crate) fn raw_records(
        &self,
        mission: MissionNo,
        name: &str,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec)>> + '_ {
        let name = name.to_string();
        let mut expected = from;
        self.events
            .range(keys::event_key(mission, from)..=keys::event_key(mission, to.max(from)))
            .map(move |item| {
                let (k, v) = item?;
                let seq = keys::parse_event_key(&k).map_or(0, |(_, s)| s);
                if seq != expected {
                    return Err(Error::corruption(
                        &name,
                        Some(expected),
                        format!("record missing (next record is sequence {seq})"),
                    ));
                }
                expected += 1;
                codec::check_record(&v).map_err(|e| Error::corruption(&name, Some(seq), e))?;
                Ok((seq, v))
            })
    }
}

impl SledStore {
    /// Prepare the import of a pruned mission under `mission`, a fresh
    /// number not registered yet: its anchor, and its head at the anchor
    /// (`before - 1`, the anchor's hash), in one transaction, so the
    /// imported records chain on the anchor exactly as in the source. The
    /// mission stays invisible until the last chunk registers it; an
    /// interrupted import leaves only entries of an unregistered number.
    pub(crate) fn put_import_anchor(&self, mission: MissionNo, anchor: &Anchor) -> Result<()> {
        let anchors = self.anchors_tree()?;
        let key = keys::mission_key(mission);
        let head = keys::head_value(anchor.before - 1, &anchor.hash);
        let value = anchor.encode();
        let result: std::result::Result<(), TransactionError<()>> = (&self.heads, &anchors)
            .transaction(|(heads, anchors)| {
                heads.insert(&key, &head[..])?;
                anchors.insert(&key, value.as_slice())?;
                Ok(())
            });
        result.map_err(|e| match e {
            TransactionError::Storage(e) => Error::from(e),
            TransactionError::Abort(()) => {
                Error::corruption(format!("#{mission}"), None, "anchor write aborted")
            }
        })
    }

    /// Keep the tombstone of a mission deleted elsewhere (copy). Returns
    /// false when the same deletion is already recorded.
    pub(crate) fn put_tombstone(&self, tombstone: &Tombstone) -> Result<bool> {
        let tree = self.tombstones_tree()?;
        let r = tree.compare_and_swap(
            tombstone.key(),
            None as Option<&[u8]>,
            Some(tombstone.encode()),
        )?;
        Ok(r.is_ok())
    }
}
