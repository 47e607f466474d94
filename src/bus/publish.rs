//! Step 7 of the write path: after a commit group is durable, publish what
//! readers and subscribers are promised, acknowledge every request, and
//! only then do the work nobody waits for (the recent-events cache,
//! snapshots).
//!
//! Promised before the answer: read-your-writes (a caller that got its
//! answer and then reads sees its event: reads go through the mission
//! directory and the published states, and checkpoint/handoff lookups fall
//! back from the recent-events cache to the store's indexes, which the
//! group's transaction already wrote), and live delivery (a subscriber has
//! the event by the time the append returns; streams' head watches are
//! woken). Snapshots, the one costly step, wait until after the answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::writer::{Group, Planned, Writer};
use super::Committed;
use crate::codec::{self, Hash};
use crate::event::{Event, EventType};
use crate::keys::MissionNo;
use crate::state::MissionState;

/// A snapshot due after a group: written once the group is acknowledged.
struct DueSnapshot {
    no: MissionNo,
    head: u64,
    hash: Hash,
    state: Arc<MissionState>,
}

impl Writer {
    /// Publish a durable group (`heads`: each plan's new head), wake
    /// watchers and subscribers, answer its requests, then fill the
    /// recent-events cache and write due snapshots.
    pub(super) fn publish(&self, group: Group, heads: Vec<(u64, Hash)>) {
        let mut staged = group.staged;
        let moved: Vec<(MissionNo, u64)> = group
            .plans
            .iter()
            .zip(&heads)
            .map(|(p, (seq, _))| (p.mission, *seq))
            .collect();
        for (plan, (seq, hash)) in group.plans.iter().zip(heads) {
            if let Some(c) = staged.get_mut(&plan.mission) {
                debug_assert!(c.state.head >= seq);
                if c.state.head == seq {
                    c.hash = hash;
                }
            }
        }
        // 1. What readers need: the directory, then the states.
        {
            let mut dir = self
                .shared
                .directory
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for (name, no) in group.new_names {
                dir.insert(name, no);
            }
        }
        let mut due = Vec::new();
        {
            let mut cache = self.shared.cache.write().unwrap_or_else(|p| p.into_inner());
            for (no, mut c) in staged {
                if self.snapshot_every > 0 && c.state.head >= c.snapshot_seq + self.snapshot_every {
                    // Counted as written now; a failed write below only
                    // means the next one is due `snapshot_every` later.
                    c.snapshot_seq = c.state.head;
                    due.push(DueSnapshot {
                        no,
                        head: c.state.head,
                        hash: c.hash,
                        state: Arc::clone(&c.state),
                    });
                }
                cache.insert(no, Arc::new(c));
            }
        }
        let mut written: Vec<(MissionNo, Vec<Event>)> = group
            .plans
            .into_iter()
            .map(|p| (p.mission, p.events))
            .collect();
        // Watchers read the log up to the published head: woken after it
        // moved. Subscribers get the events before the answers go out.
        for (mission, seq) in moved {
            self.shared.live.moved(mission, seq);
        }
        if self.store.is_shared() {
            // Other processes commit too: only what follows what the
            // subscribers were given, in order (see follow.rs).
            super::follow::publish_own(&self.shared, true, &written);
        } else {
            for (tx, c) in self.fan_out(&written) {
                // Err only means nobody is listening any more.
                let _ = tx.send(c);
            }
        }
        // Copies for the recent-events cache are made before the events
        // move into the answers, and used after them.
        let recent: Vec<(MissionNo, Event)> = written
            .iter()
            .flat_map(|(no, events)| events.iter().map(move |e| (*no, e)))
            .filter(|(_, e)| matches!(e.event_type(), EventType::Checkpoint | EventType::Handoff))
            .map(|(no, e)| (no, e.clone()))
            .collect();
        let count: usize = written.iter().map(|(_, events)| events.len()).sum();
        // 2. The answers.
        for p in group.pending {
            let events = match p.outcome {
                Planned::Written(i) => std::mem::take(&mut written[i].1),
                Planned::Stored(events) => events,
            };
            p.reply.send(Ok(events));
        }
        // 3. What nobody waits for.
        if !recent.is_empty() {
            let mut cache = self.shared.recent.lock().unwrap_or_else(|p| p.into_inner());
            for (no, e) in &recent {
                cache.insert(*no, e);
            }
        }
        self.shared
            .written
            .fetch_add(count as u64, Ordering::Relaxed);
        for s in due {
            let bytes = codec::encode_snapshot(s.head, &s.hash, &s.state);
            // A snapshot is a cache: a failed write only costs a longer rebuild.
            let _ = self.store.put_snapshot(s.no, bytes);
        }
    }

    /// The broadcasts to send for the group's events: to each mission's own
    /// channel and to the global one, only where someone listens.
    #[allow(clippy::type_complexity)]
    fn fan_out(
        &self,
        written: &[(MissionNo, Vec<Event>)],
    ) -> Vec<(
        tokio::sync::broadcast::Sender<Arc<Committed>>,
        Arc<Committed>,
    )> {
        let mut out = Vec::new();
        let global = (self.shared.committed.receiver_count() > 0).then_some(&self.shared.committed);
        let channels = self
            .shared
            .mission_channels
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if global.is_none() && channels.is_empty() {
            return out;
        }
        for (mission, events) in written {
            let Some(name) = self.shared.name_of(*mission) else {
                continue;
            };
            let own = channels.get(&name).filter(|tx| tx.receiver_count() > 0);
            if global.is_none() && own.is_none() {
                continue;
            }
            for event in events {
                let c = Arc::new(Committed {
                    mission_id: name.clone(),
                    event: event.clone(),
                });
                for tx in own.into_iter().chain(global) {
                    out.push((tx.clone(), Arc::clone(&c)));
                }
            }
        }
        out
    }
}
