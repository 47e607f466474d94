//! Following other processes on a shared store (PostgreSQL): their commits
//! reach this process's live readers, their token revocations its token
//! cache.
//!
//! The store's listener (`store/postgres/listen.rs`) hands over
//! [`Notice`]s; one thread here (`mission-bus-follow`) applies them in
//! order:
//! - `Heads`: each moved mission is announced (below) and its head watch
//!   moved, so SSE streams (which read the log up to the head) wake up;
//! - `TokenRevoked` / `TokensRevoked`: those cached tokens are forgotten;
//! - `Lost`: every cached token is forgotten, and none is trusted until the
//!   listener answers again;
//! - `Listening`: the token cache is dropped, and every mission's head is
//!   read again (catch-up by sequence: what was committed while nobody
//!   listened is announced now). The first one only records the heads.
//! - `Alive(t)`: every revocation committed before `t` has been applied:
//!   cached tokens are trusted until `t + TOKEN_TRUST`.
//!
//! Announcing a mission up to `head`: the subscribers of
//! [`MissionBus::subscribe`](super::MissionBus::subscribe) and
//! `subscribe_mission` get every event after the last one they were given
//! (`Live::announced`), read from the log, in order and once each; this
//! process's own commits are announced by the writer when nothing of
//! others' is still unannounced before them, else left to this thread,
//! which hears of them too.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Committed, Shared};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::keys::MissionNo;
use crate::store::{Notice, Store};

/// How long opening a bus waits for the listener's first `LISTEN` (after
/// it, every commit of another process is heard of).
const FIRST_LISTEN: Duration = Duration::from_secs(10);

/// Start following the store, if it is shared; returns once the listener
/// listens (or after [`FIRST_LISTEN`], logging why not).
pub(super) fn start(store: &Arc<Store>, shared: &Arc<Shared>) -> Result<()> {
    let Some(rx) = store.listen() else {
        return Ok(());
    };
    shared.live.distrust_tokens();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (weak, shared) = (Arc::downgrade(store), Arc::clone(shared));
    std::thread::Builder::new()
        .name("mission-bus-follow".into())
        .spawn(move || run(rx, weak, shared, ready_tx))
        .map_err(|e| Error::io(store.path(), e))?;
    if ready_rx.recv_timeout(FIRST_LISTEN).is_err() {
        tracing::warn!(
            store = %store.describe(),
            "not yet listening for other processes' commits; live streams follow them once it is"
        );
    }
    Ok(())
}

fn run(rx: Receiver<Notice>, store: Weak<Store>, shared: Arc<Shared>, ready: Sender<()>) {
    let mut listened = false;
    // A catch-up that failed (the store did not answer): tried again at
    // the next sign of life.
    let mut behind = false;
    while let Ok(notice) = rx.recv() {
        // The bus is gone once the store is.
        let Some(store) = store.upgrade() else {
            return;
        };
        let live = &shared.live;
        match notice {
            Notice::Heads(moved) => {
                for (no, head) in moved {
                    announce(&store, &shared, no, head);
                }
            }
            Notice::TokenRevoked(hash) => live.forget_token(&hash),
            Notice::TokensRevoked(no, name) => live.forget_tokens(no, &name),
            Notice::Lost => live.distrust_tokens(),
            Notice::Listening => {
                live.forget_all_tokens();
                if listened {
                    behind = !catch_up(&store, &shared);
                } else {
                    behind = !record_heads(&store, &shared);
                    listened = true;
                    let _ = ready.send(());
                }
            }
            Notice::Alive(sent) => {
                if behind {
                    behind = !catch_up(&store, &shared);
                }
                live.tokens_current_at(sent);
            }
        }
    }
}

/// The heads when listening begins: the subscribers' starting points.
fn record_heads(store: &Store, shared: &Shared) -> bool {
    match store.all_heads() {
        Ok(heads) => {
            let mut announced = shared.live.announced();
            for (no, head) in heads {
                let a = announced.entry(no).or_insert(head);
                *a = (*a).max(head);
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the missions' heads; retrying");
            false
        }
    }
}

/// After notifications were lost: announce every mission that moved.
fn catch_up(store: &Store, shared: &Shared) -> bool {
    match store.all_heads() {
        Ok(heads) => {
            for (no, head) in heads {
                announce(store, shared, no, head);
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the missions' heads to catch up; retrying");
            false
        }
    }
}

/// `no` is durable up to `head`: hand the subscribers what they were not
/// given yet (read from the log) and move the head watch.
fn announce(store: &Store, shared: &Shared, no: MissionNo, head: u64) {
    let mut announced = shared.live.announced();
    let from = announced.get(&no).map_or(1, |a| a + 1);
    if head >= from {
        if let Err(e) = give(store, shared, no, from, head) {
            // Left unannounced: the next notice or catch-up tries again.
            tracing::warn!(mission = no, error = %e, "could not read other processes' events for subscribers");
            return;
        }
        announced.insert(no, head);
    }
    drop(announced);
    shared.live.moved(no, head);
}

/// Send events `from..=head` of `no` to its subscribers, if it has any.
fn give(store: &Store, shared: &Shared, no: MissionNo, from: u64, head: u64) -> Result<()> {
    let name = match shared.name_of(no) {
        Some(name) => name,
        None => {
            shared.refresh_directory(store);
            match shared.name_of(no) {
                Some(name) => name,
                // Gone (deleted) or not visible yet: nobody can subscribe.
                None => return Ok(()),
            }
        }
    };
    let global = shared.committed.receiver_count() > 0;
    let listening = |shared: &Shared| {
        shared
            .mission_channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            .is_some_and(|tx| tx.receiver_count() > 0)
    };
    if !global && !listening(shared) {
        return Ok(());
    }
    // A pruned mission's log starts later.
    let from = from.max(store.first_kept(no, &name)?.0);
    for event in store.scan(no, &name, from, head) {
        let c = Arc::new(Committed {
            mission_id: name.clone(),
            event: event?,
        });
        // Err only means nobody is listening any more.
        if let Some(tx) = shared
            .mission_channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
        {
            let _ = tx.send(Arc::clone(&c));
        }
        if global {
            let _ = shared.committed.send(c);
        }
    }
    Ok(())
}

/// The writer's side: hand this process's newly committed events to the
/// subscribers, in commit order. On a shared store, only the events after
/// what they were given, and none while others' events before them are
/// still unannounced (the follower, which hears of this commit too, then
/// gives both, in order).
pub(super) fn publish_own(shared: &Shared, is_shared: bool, written: &[(MissionNo, Vec<Event>)]) {
    let global = shared.committed.receiver_count() > 0;
    // Locked before `mission_channels`, as in `announce`.
    let mut announced = is_shared.then(|| shared.live.announced());
    let channels = shared
        .mission_channels
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for (mission, events) in written {
        let mut after = 0;
        if let (Some(announced), Some(first), Some(last)) =
            (announced.as_mut(), events.first(), events.last())
        {
            after = announced.get(mission).copied().unwrap_or(0);
            if after + 1 < first.sequence {
                continue;
            }
            // (The follower may have given ours already.)
            announced.insert(*mission, after.max(last.sequence));
        }
        let Some(name) = shared.name_of(*mission) else {
            continue;
        };
        let own = channels.get(&name).filter(|tx| tx.receiver_count() > 0);
        if !global && own.is_none() {
            continue;
        }
        for event in events.iter().filter(|e| e.sequence > after) {
            let c = Arc::new(Committed {
                mission_id: name.clone(),
                event: event.clone(),
            });
            // Err only means nobody is listening any more.
            if let Some(tx) = own {
                let _ = tx.send(Arc::clone(&c));
            }
            if global {
                let _ = shared.committed.send(c);
            }
        }
    }
}
