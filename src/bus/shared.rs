//! What readers see: only ever durable events.

use super::Committed;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use uuid::Uuid;

use crate::codec::Hash;
use crate::event::{Event, EventBody, EventType};
use crate::keys::MissionNo;
use crate::state::MissionState;

/// State visible to readers: only ever durable events.
pub(super) struct Shared {
    pub(super) cache: RwLock<HashMap<MissionNo, Arc<Cached>>>,
    pub(super) directory: RwLock<Directory>,
    pub(super) committed: tokio::sync::broadcast::Sender<Arc<Committed>>,
    /// Per-mission broadcasts, so a busy mission cannot make the
    /// subscribers of a quiet one lag. Keyed by mission id; entries without
    /// receivers are dropped whenever someone subscribes.
    pub(super) mission_channels:
        Mutex<HashMap<String, tokio::sync::broadcast::Sender<Arc<Committed>>>>,
    pub(super) recent: Mutex<RecentEvents>,
    /// Events written since open.
    pub(super) written: std::sync::atomic::AtomicU64,
    /// Token cache, head watches, writer statistics.
    pub(super) live: super::live::Live,
}

/// Events kept for slow subscribers before they are told they lagged.
pub(super) const SUBSCRIBER_BUFFER: usize = 4096;

/// Recently committed checkpoints and handoffs, by id: the events a resume
/// packet needs, answered from memory while they are fresh (the common case:
/// an agent resumes soon after the handoff), so the cost does not depend on
/// sled's tree depth. Filled by the writer after the flush; events never
/// change, so nothing is ever invalidated. Bounded by count and by bytes,
/// oldest out first.
pub(super) struct RecentEvents {
    pub(super) by_id: HashMap<Uuid, (MissionNo, Arc<Event>, usize)>,
    pub(super) order: std::collections::VecDeque<Uuid>,
    pub(super) bytes: usize,
}

pub(super) const RECENT_MAX_EVENTS: usize = 4096;
pub(super) const RECENT_MAX_BYTES: usize = 16 << 20;

impl RecentEvents {
    pub(super) fn new() -> Self {
        RecentEvents {
            by_id: HashMap::new(),
            order: std::collections::VecDeque::new(),
            bytes: 0,
        }
    }

    pub(super) fn insert(&mut self, mission: MissionNo, event: &Event) {
        let cost = 256
            + match &event.body {
                EventBody::Checkpoint {
                    summary,
                    state,
                    artifacts,
                } => {
                    summary.len()
                        + state.as_str().len()
                        + artifacts.iter().map(String::len).sum::<usize>()
                }
                EventBody::Handoff { note, .. } => note.len(),
                _ => return,
            };
        while !self.order.is_empty()
            && (self.order.len() >= RECENT_MAX_EVENTS || self.bytes + cost > RECENT_MAX_BYTES)
        {
            if let Some(old) = self.order.pop_front().and_then(|id| self.by_id.remove(&id)) {
                self.bytes -= old.2;
            }
        }
        self.by_id
            .insert(event.id, (mission, Arc::new(event.clone()), cost));
        self.order.push_back(event.id);
        self.bytes += cost;
    }

    pub(super) fn get(&self, id: &Uuid, kind: EventType) -> Option<(MissionNo, Arc<Event>)> {
        self.by_id
            .get(id)
            .filter(|(_, e, _)| e.event_type() == kind)
            .map(|(m, e, _)| (*m, Arc::clone(e)))
    }
}

/// Registered missions, both ways (string id <-> internal number).
#[derive(Default)]
pub(super) struct Directory {
    pub(super) by_name: HashMap<String, MissionNo>,
    pub(super) by_no: HashMap<MissionNo, String>,
}

impl Directory {
    pub(super) fn insert(&mut self, name: String, no: MissionNo) {
        self.by_no.insert(no, name.clone());
        self.by_name.insert(name, no);
    }
}

impl Shared {
    pub(super) fn directory(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        self.directory.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn no_of(&self, mission: &str) -> Option<MissionNo> {
        self.directory().by_name.get(mission).copied()
    }

    /// The mission's number: from the directory, else (on a store other
    /// processes write too) from the store, remembering it.
    pub(super) fn resolve(
        &self,
        store: &crate::store::Store,
        mission: &str,
    ) -> crate::error::Result<Option<MissionNo>> {
        if let Some(no) = self.no_of(mission) {
            return Ok(Some(no));
        }
        if !store.is_shared() {
            return Ok(None);
        }
        let found = store.mission_no(mission)?;
        if let Some(no) = found {
            self.directory
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(mission.to_string(), no);
        }
        Ok(found)
    }

    /// On a shared store, add the missions other processes created.
    pub(super) fn refresh_directory(&self, store: &crate::store::Store) {
        if !store.is_shared() {
            return;
        }
        if let Ok(all) = store.missions() {
            let mut dir = self.directory.write().unwrap_or_else(|p| p.into_inner());
            for (name, no) in all {
                if !dir.by_name.contains_key(&name) {
                    dir.insert(name, no);
                }
            }
        }
    }

    pub(super) fn name_of(&self, no: MissionNo) -> Option<String> {
        self.directory().by_no.get(&no).cloned()
    }

    /// The published (durable) state of a mission, if it is in memory.
    pub(super) fn cached(&self, no: MissionNo) -> Option<Arc<Cached>> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&no)
            .cloned()
    }

    /// A recently committed checkpoint or handoff, if still remembered.
    pub(super) fn recent(&self, id: &Uuid, kind: EventType) -> Option<(MissionNo, Arc<Event>)> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id, kind)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Cached {
    pub(super) no: MissionNo,
    pub(super) state: Arc<MissionState>,
    pub(super) hash: Hash,
    pub(super) snapshot_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{now_micros, Json};

    fn checkpoint(state_bytes: usize) -> Event {
        Event {
            id: Uuid::now_v7(),
            sequence: 1,
            timestamp: now_micros(),
            sender: "a".into(),
            body: EventBody::Checkpoint {
                summary: String::new(),
                state: Json::from_value(&serde_json::Value::String("x".repeat(state_bytes))),
                artifacts: vec![],
            },
        }
    }

    #[test]
    fn recent_events_stay_within_their_bounds_oldest_out_first() {
        let mut recent = RecentEvents::new();
        let first = checkpoint(10);
        recent.insert(1, &first);
        assert!(recent.get(&first.id, EventType::Checkpoint).is_some());
        assert!(
            recent.get(&first.id, EventType::Handoff).is_none(),
            "kind is checked"
        );
        let mut last = first.clone();
        for _ in 0..RECENT_MAX_EVENTS {
            last = checkpoint(10);
            recent.insert(1, &last);
        }
        assert_eq!(recent.by_id.len(), RECENT_MAX_EVENTS);
        assert!(
            recent.get(&first.id, EventType::Checkpoint).is_none(),
            "oldest evicted"
        );
        assert!(recent.get(&last.id, EventType::Checkpoint).is_some());
        for _ in 0..600 {
            recent.insert(1, &checkpoint(60 * 1024));
        }
        assert!(recent.bytes <= RECENT_MAX_BYTES, "{} bytes", recent.bytes);
        assert_eq!(
            recent.bytes,
            recent.by_id.values().map(|v| v.2).sum::<usize>()
        );
        // Messages are never kept.
        let mut msg = checkpoint(1);
        msg.body = EventBody::Message {
            topic: "t".into(),
            payload: Json::null(),
        };
        recent.insert(1, &msg);
        assert!(!recent.by_id.contains_key(&msg.id));
    }
}
