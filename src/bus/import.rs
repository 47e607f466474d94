//! Importing a whole mission log on the writer (`MissionBus::import_log`,
//! also used by salvage, copy and restore): every event validated first,
//! then written in chunks with the mission registered in the last one, so
//! it appears atomically (PostgreSQL: every chunk in one transaction).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::writer::Writer;
use super::{at_sequence, Cached, Draft, IMPORT_CHUNK};

use crate::codec::{self, Anchor, Hash};
use crate::error::{Error, Result};
use crate::event::{Event, EventBody, EventType, OPERATOR};
use crate::keys::MissionNo;
use crate::state::MissionState;
use crate::store::PlannedAppend;

impl Writer {
    /// Import a whole log: validate everything, then write in chunks with
    /// the mission registered in the last one, so it appears atomically.
    /// With an `anchor` (a pruned mission, copied), the log starts at
    /// `anchor.before`, is validated from the anchor's state and chains on
    /// the anchor's hash; the anchor is written with it.
    pub(super) fn import(
        &self,
        mission: String,
        anchor: Option<Anchor>,
        events: Vec<Event>,
        mut progress: Box<dyn FnMut(u64) + Send>,
    ) -> Result<u64> {
        if let Some(e) = self.integrity.refuse_write(&mission) {
            return Err(e);
        }
        if self.name_to_no(&mission)?.is_some() {
            return Err(Error::MissionExists { mission });
        }
        let (mut state, base, base_hash) = match &anchor {
            None => (MissionState::default(), 0, codec::GENESIS),
            Some(a) => (check_anchor(&mission, a, &events)?, a.before - 1, a.hash),
        };
        let no = self.store.allocate_mission_no()?;
        let mut seen = HashSet::with_capacity(events.len());
        let mut checkpoints = HashSet::new();
        for e in &events {
            if !seen.insert(e.id) {
                return Err(Error::invalid(
                    "event id",
                    format!("{} appears twice (sequence {})", e.id, e.sequence),
                ));
            }
            let draft = Draft {
                id: Some(e.id),
                timestamp: Some(e.timestamp),
                sender: e.sender.clone(),
                body: e.body.clone(),
                meta: e.meta.clone(),
            };
            if let (Some(a), EventBody::HistoryPruned { .. }) = (&anchor, &e.body) {
                // Checked against the anchor by `check_anchor`; never
                // appended, so `validate` refuses it.
                if e.sender != OPERATOR {
                    return Err(at_sequence(
                        Error::invalid(
                            "history_pruned",
                            format!("is written by {OPERATOR}, not '{}'", e.sender),
                        ),
                        e.sequence,
                    ));
                }
                debug_assert!(a.before <= e.sequence);
            } else if e.sequence > 1 {
                // A handoff after the cut may name a checkpoint before it
                // (gone with the pruned records): the chain from the
                // anchor, compared with the source's head, proves it.
                let pruned = anchor.is_some();
                self.validate(&state, &mission, no, &draft, &|id| {
                    pruned || checkpoints.contains(id)
                })
                .map_err(|err| at_sequence(err, e.sequence))?;
            }
            if e.event_type() == EventType::Checkpoint {
                checkpoints.insert(e.id);
            }
            state.apply(e);
        }
        if let Some(a) = &anchor {
            if self.store.is_shared() {
                let total = events.len();
                let head = self.store.import_anchored(no, &mission, a, events)?;
                progress(total as u64);
                return self.imported(mission, no, state, head.1, total);
            }
            self.store.put_import_anchor(no, a)?;
        }
        let total = events.len();
        let mut written = 0usize;
        let mut hash = base_hash;
        if self.store.is_shared() {
            // PostgreSQL: ONE transaction for the whole log (its rows refer
            // to the mission's row, registered with the first chunk), so
            // every process sees all of it or nothing.
            let plans: Vec<PlannedAppend> = events
                .chunks(IMPORT_CHUNK)
                .enumerate()
                .map(|(i, chunk)| PlannedAppend {
                    mission: no,
                    mission_id: mission.clone(),
                    register: (i == 0).then(|| mission.clone()),
                    replace_orphan_ids: true,
                    prev_seq: base + (i * IMPORT_CHUNK) as u64,
                    events: chunk.to_vec(),
                })
                .collect();
            let heads = self.store.commit(&plans)?;
            hash = heads.last().map_or(codec::GENESIS, |h| h.1);
            written = total;
            progress(written as u64);
        } else {
            let mut chunks = events.chunks(IMPORT_CHUNK).peekable();
            while let Some(chunk) = chunks.next() {
                let last = chunks.peek().is_none();
                let plan = PlannedAppend {
                    mission: no,
                    mission_id: mission.clone(),
                    register: last.then(|| mission.clone()),
                    replace_orphan_ids: true,
                    prev_seq: base + written as u64,
                    events: chunk.to_vec(),
                };
                let heads = self.store.commit(std::slice::from_ref(&plan))?;
                hash = heads[0].1;
                written += chunk.len();
                if last {
                    // The mission did not exist before the import.
                    let prev = HashMap::from([(no, (base, base_hash))]);
                    self.make_durable(std::slice::from_ref(&plan), &heads, &HashMap::new(), &prev)?;
                }
                progress(written as u64);
            }
        }
        debug_assert_eq!(written, total);
        self.imported(mission, no, state, hash, total)
    }

    /// After an import: count it, learn the name, save a snapshot, cache the
    /// state. Returns the events written.
    fn imported(
        &self,
        mission: String,
        no: MissionNo,
        state: MissionState,
        hash: Hash,
        total: usize,
    ) -> Result<u64> {
        self.shared
            .written
            .fetch_add(total as u64, std::sync::atomic::Ordering::Relaxed);
        self.shared
            .directory
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(mission, no);
        let snapshot_seq = if self.snapshot_every > 0 && state.head >= self.snapshot_every {
            let bytes = codec::encode_snapshot(state.head, &hash, &state);
            self.store
                .put_snapshot(no, bytes)
                .map(|()| state.head)
                .unwrap_or(0)
        } else {
            0
        };
        self.shared
            .cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                no,
                Arc::new(Cached {
                    no,
                    state: Arc::new(state),
                    hash,
                    snapshot_seq,
                }),
            );
        Ok(total as u64)
    }
}

/// Check an imported pruned mission's anchor before anything is written:
/// its state decodes, hashes to its state hash and ends at `before - 1`
/// of this mission; the log starts at `before`; and the log holds the
/// `history_pruned` event that recorded this anchor (same cut, chain hash
/// and state hash), so an anchor altered in the source is refused here,
/// not laundered into a clean copy. Returns the anchor's state.
fn check_anchor(mission: &str, a: &Anchor, events: &[Event]) -> Result<MissionState> {
    let bad = |why: String| Error::corruption(mission, Some(a.before.saturating_sub(1)), why);
    if a.before < 2 {
        return Err(bad(format!("prune anchor cuts at sequence {}", a.before)));
    }
    if *blake3::hash(&a.state_bytes).as_bytes() != a.state_hash {
        return Err(bad(
            "prune anchor's state does not hash to its recorded state hash (tampered)".into(),
        ));
    }
    let state = a.state().map_err(bad)?;
    if state.head != a.before - 1 || state.mission_id != mission {
        return Err(bad(format!(
            "prune anchor's state is mission '{}' at sequence {}, expected '{mission}' at {}",
            state.mission_id,
            state.head,
            a.before - 1
        )));
    }
    if events.first().map(|e| e.sequence) != Some(a.before) {
        return Err(Error::invalid(
            "import",
            format!(
                "the log of pruned mission '{mission}' must start at its first kept \
                 sequence {}",
                a.before
            ),
        ));
    }
    let recorded = events.iter().rev().find_map(|e| match e.body {
        EventBody::HistoryPruned {
            before,
            anchor_hash,
            state_hash,
        } if before == a.before => Some((e.sequence, anchor_hash, state_hash)),
        _ => None,
    });
    match recorded {
        Some((_, h, s)) if h == a.hash && s == a.state_hash => Ok(state),
        Some((seq, _, _)) => Err(Error::corruption(
            mission,
            Some(seq),
            format!(
                "the history_pruned event at sequence {seq} records another anchor than \
                 the one stored for the cut at {} (tampered)",
                a.before
            ),
        )),
        None => Err(bad(format!(
            "no history_pruned event in the log records the cut at sequence {}",
            a.before
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An anchor cutting mission `m` at 5, and the `history_pruned` event
    /// (sequence 5) that records it.
    fn pruned() -> (Anchor, Vec<Event>) {
        let state = MissionState {
            mission_id: "m".into(),
            head: 4,
            ..MissionState::default()
        };
        let a = Anchor::new(5, [7; 32], &state);
        let e = Event {
            id: uuid::Uuid::now_v7(),
            sequence: 5,
            timestamp: chrono::Utc::now(),
            sender: OPERATOR.into(),
            body: EventBody::HistoryPruned {
                before: 5,
                anchor_hash: a.hash,
                state_hash: a.state_hash,
            },
            meta: Default::default(),
        };
        (a, vec![e])
    }

    #[test]
    fn an_anchor_must_match_the_event_that_recorded_it() {
        let (a, events) = pruned();
        assert_eq!(check_anchor("m", &a, &events).unwrap().head, 4);
        assert!(
            check_anchor("other", &a, &events).is_err(),
            "another mission"
        );

        let mut forged = a.clone();
        forged.hash = [8; 32];
        let e = check_anchor("m", &forged, &events).unwrap_err();
        assert!(e.to_string().contains("tampered"), "{e}");

        let mut state = a.clone();
        state.state_bytes.push(0);
        let e = check_anchor("m", &state, &events).unwrap_err();
        assert!(e.to_string().contains("state hash"), "{e}");

        let e = check_anchor("m", &a, &[]).unwrap_err();
        assert!(e.to_string().contains("start"), "{e}");

        let mut other = events.clone();
        other[0].body = EventBody::HistoryPruned {
            before: 3,
            anchor_hash: a.hash,
            state_hash: a.state_hash,
        };
        let e = check_anchor("m", &a, &other).unwrap_err();
        assert!(e.to_string().contains("no history_pruned"), "{e}");
    }
}
