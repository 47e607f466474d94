//! Importing a whole mission log on the writer (`MissionBus::import_log`,
//! also used by salvage, copy and restore): every event validated first,
//! then written in chunks with the mission registered in the last one, so
//! it appears atomically (PostgreSQL: every chunk in one transaction).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::writer::Writer;
use super::{at_sequence, Cached, Draft, IMPORT_CHUNK};

use crate::codec;
use crate::error::{Error, Result};
use crate::event::{Event, EventType};
use crate::state::MissionState;
use crate::store::PlannedAppend;

impl Writer {
    /// Import a whole log: validate everything, then write in chunks with
    /// the mission registered in the last one, so it appears atomically.
    pub(super) fn import(
        &self,
        events: Vec<Event>,
        mut progress: Box<dyn FnMut(u64) + Send>,
    ) -> Result<u64> {
        let Some(mission_id) = events[0].body.created_mission() else {
            unreachable!("checked by import_log");
        };
        let mission = mission_id.to_string();
        if let Some(e) = self.integrity.refuse_write(&mission) {
            return Err(e);
        }
        if self.name_to_no(&mission)?.is_some() {
            return Err(Error::MissionExists { mission });
        }
        let no = self.store.allocate_mission_no()?;
        let mut state = MissionState::default();
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
            if e.sequence > 1 {
                self.validate(&state, &mission, no, &draft, &|id| checkpoints.contains(id))
                    .map_err(|err| at_sequence(err, e.sequence))?;
            }
            if e.event_type() == EventType::Checkpoint {
                checkpoints.insert(e.id);
            }
            state.apply(e);
        }
        let total = events.len();
        let mut written = 0usize;
        let mut hash = codec::GENESIS;
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
                    prev_seq: (i * IMPORT_CHUNK) as u64,
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
                    prev_seq: written as u64,
                    events: chunk.to_vec(),
                };
                let heads = self.store.commit(std::slice::from_ref(&plan))?;
                hash = heads[0].1;
                written += chunk.len();
                if last {
                    // The mission did not exist before the import.
                    let prev = HashMap::from([(no, (0, codec::GENESIS))]);
                    self.make_durable(std::slice::from_ref(&plan), &heads, &HashMap::new(), &prev)?;
                }
                progress(written as u64);
            }
        }
        debug_assert_eq!(written, total);
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
