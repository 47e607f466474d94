//! The sled backend's structural verification of one mission: sequences,
//! checksums, the hash chain, the head (the shared walk, `store/walk.rs`),
//! and both directions of every index.

use uuid::Uuid;

use super::{describe_target, index_name, SledStore};
use crate::codec;
use crate::error::Result;
use crate::event::{EventBody, EventType};
use crate::keys::{self, MissionNo};
use crate::store::walk::{HeadEntry, Walk};
use crate::store::{hex, Index};
use crate::verify::VerifyReport;

impl SledStore {
    /// Check one mission's log, chain, head and index entries.
    pub(crate) fn verify(&self, mission: MissionNo, name: &str) -> Result<VerifyReport> {
        let anchor = self.anchor(mission, name).map_err(|e| e.to_string());
        let mut walk = Walk::new(mission, name, anchor);
        let first = walk.first();
        for item in self.events.scan_prefix(keys::mission_key(mission)) {
            let (k, v) = item?;
            let Some((_, seq)) = keys::parse_event_key(&k) else {
                walk.malformed_key(&k);
                continue;
            };
            if seq < first {
                // Below the anchor: left by an interrupted prune, removed
                // on the next open; not part of the log any more.
                continue;
            }
            let Some(event) = walk.record(seq, &v) else {
                continue;
            };
            let key = keys::event_key(mission, seq);
            let expect_index = |walk: &mut Walk, index: Index| -> Result<()> {
                let found = match index {
                    Index::EventIds => self
                        .event_ids
                        .get(keys::event_id_key(mission, event.id.as_bytes()))?,
                    _ => self.index_tree(index).get(event.id.as_bytes())?,
                };
                match found {
                    Some(v) if v.as_ref() == key => {}
                    Some(v) => walk.problem(
                        Some(seq),
                        format!(
                            "{} index entry for {} points at {}",
                            index_name(index),
                            event.id,
                            describe_target(&v)
                        ),
                    ),
                    None => walk.problem(
                        Some(seq),
                        format!("{} index has no entry for {}", index_name(index), event.id),
                    ),
                }
                Ok(())
            };
            expect_index(&mut walk, Index::EventIds)?;
            match &event.body {
                EventBody::Checkpoint { .. } => expect_index(&mut walk, Index::Checkpoints)?,
                EventBody::Handoff { checkpoint_id, .. } => {
                    expect_index(&mut walk, Index::Handoffs)?;
                    match self.lookup(Index::Checkpoints, checkpoint_id)? {
                        Some((m, s)) if m == mission && s < seq => {}
                        // Its checkpoint may have been pruned.
                        None if walk.pruned() => {}
                        _ => walk.problem(
                            Some(seq),
                            format!("handoff names checkpoint {checkpoint_id}, which is not an earlier checkpoint of this mission"),
                        ),
                    }
                }
                _ => {}
            }
        }
        let head = match self.heads.get(keys::mission_key(mission))? {
            None => HeadEntry::Missing,
            Some(v) => match keys::parse_head(&v) {
                None => HeadEntry::Malformed,
                Some((seq, hash)) => HeadEntry::Found(seq, hash),
            },
        };
        let mut report = walk.finish(head);
        // Reverse direction: every index entry pointing into this mission
        // points at an event with that id and of that kind.
        for index in [Index::EventIds, Index::Checkpoints, Index::Handoffs] {
            // `event_ids` is scoped: only this mission's prefix can point here.
            let entries = match index {
                Index::EventIds => self.event_ids.scan_prefix(keys::mission_key(mission)),
                _ => self.index_tree(index).iter(),
            };
            for item in entries {
                let (key, target) = item?;
                let id = match index {
                    Index::EventIds => key.subslice(8, key.len().saturating_sub(8)),
                    _ => key,
                };
                let Some((m, seq)) = keys::parse_event_key(&target) else {
                    continue;
                };
                if m != mission {
                    continue;
                }
                let ok = match self.events.get(&target)? {
                    Some(v) => match codec::decode_event(seq, &v) {
                        Ok(e) => {
                            e.id.as_bytes() == id.as_ref()
                                && match index {
                                    Index::EventIds => true,
                                    Index::Checkpoints => e.event_type() == EventType::Checkpoint,
                                    Index::Handoffs => e.event_type() == EventType::Handoff,
                                }
                        }
                        Err(_) => true, // already reported above
                    },
                    None => false,
                };
                if !ok {
                    let id = Uuid::from_slice(&id)
                        .map(|u| u.to_string())
                        .unwrap_or_else(|_| hex(&id));
                    report.add_problem(
                        Some(seq),
                        format!(
                            "{} index entry {id} points at a record that is not that {}",
                            index_name(index),
                            match index {
                                Index::EventIds => "event",
                                Index::Checkpoints => "checkpoint",
                                Index::Handoffs => "handoff",
                            }
                        ),
                    );
                }
            }
        }
        Ok(report)
    }
}
