//! The non-blocking side of the bus, for async servers: appends whose answer
//! arrives on a `tokio` oneshot (no thread blocked per request), tokens
//! checked from memory, head watches and the writer's statistics.
//!
//! The writer is the same single thread as for the blocking API; only the
//! way it answers differs ([`Reply`]).

use std::sync::mpsc::{self, TrySendError};

use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use super::{Action, BusStats, Draft, Job, MissionBus, TokenOwner};
use crate::error::{Error, Result};
use crate::event::Event;

/// How the writer answers one request: on a std channel (a blocked caller)
/// or on a oneshot (an awaiting task).
pub(super) enum Reply<T> {
    Blocking(mpsc::Sender<Result<T>>),
    Async(oneshot::Sender<Result<T>>),
}

impl<T> Reply<T> {
    /// Deliver the answer; a caller that went away is not an error.
    pub(super) fn send(self, value: Result<T>) {
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(value);
            }
            Reply::Async(tx) => {
                let _ = tx.send(value);
            }
        }
    }
}

/// One item of [`MissionBus::append_batch_async`].
#[derive(Debug, Clone)]
pub struct BatchItem {
    /// Who acts (checked against their role, as for [`MissionBus::append`]).
    pub sender: String,
    /// What they do.
    pub action: Action,
    /// A caller-chosen event id, unique within the mission (`None`: a new v7 id).
    pub event_id: Option<Uuid>,
    /// Correlation id, causation id and attributes stored with the event.
    pub meta: crate::event::EventMeta,
}

impl MissionBus {
    /// [`MissionBus::append`] for async callers: the stateless checks run
    /// here, then the request joins the writer's next commit group and the
    /// returned future resolves when it is durable. No thread waits.
    pub async fn append_async(
        &self,
        mission: &str,
        sender: &str,
        action: Action,
        opts: &super::AppendOptions,
    ) -> Result<Event> {
        let mut draft = self.draft(sender, action, opts.event_id, None)?;
        draft.meta = super::checks::check_meta(opts.meta.clone())?;
        let mut events = self
            .send_async(Job::append_async(
                mission,
                vec![draft],
                opts.expected_sequence,
            ))
            .await?;
        events.pop().ok_or(Error::Closed)
    }

    /// Several events to one mission, atomically (all or none), in one
    /// commit; `expected_sequence` is the head the batch must find. Each item
    /// is checked as if the earlier ones had landed. Event ids are checked
    /// for uniqueness within the mission (a batch is not a retry: an id
    /// already stored refuses the whole batch).
    pub async fn append_batch_async(
        &self,
        mission: &str,
        items: Vec<BatchItem>,
        expected_sequence: Option<u64>,
    ) -> Result<Vec<Event>> {
        if items.is_empty() {
            return Err(Error::invalid("batch", "is empty"));
        }
        let drafts = items
            .into_iter()
            .enumerate()
            .map(|(i, it)| {
                let meta = super::checks::check_meta(it.meta).map_err(|e| at_item(e, i))?;
                let mut d = self
                    .draft(&it.sender, it.action, it.event_id, None)
                    .map_err(|e| at_item(e, i))?;
                d.meta = meta;
                Ok(d)
            })
            .collect::<Result<Vec<_>>>()?;
        self.send_async(Job::append_async(mission, drafts, expected_sequence))
            .await
    }

    /// Queue `job` for the writer without blocking the caller's thread (the
    /// queue is bounded: when it is full, the wait moves to a blocking
    /// thread), then await the answer.
    async fn send_async(
        &self,
        (job, rx): (Job, oneshot::Receiver<Result<Vec<Event>>>),
    ) -> Result<Vec<Event>> {
        let tx = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(Error::Closed)?;
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => return Err(Error::Closed),
            Err(TrySendError::Full(job)) => {
                tokio::task::spawn_blocking(move || tx.send(job))
                    .await
                    .map_err(|_| Error::Closed)?
                    .map_err(|_| Error::Closed)?;
            }
        }
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Who `token` belongs to, if anyone. The lookup is keyed by the token's
    /// BLAKE3 hash, so the stored hashes reveal nothing usable and the
    /// comparison never runs over the secret itself. Answered from memory
    /// when the token was seen before (else one store lookup, then
    /// remembered); revoked tokens are forgotten by
    /// [`MissionBus::reissue_token`] and [`MissionBus::revoke_token`]. On
    /// PostgreSQL, revocations through other processes are heard of
    /// (LISTEN), and cached answers are trusted only while that listening
    /// connection proves alive: a token revoked elsewhere is refused here
    /// within 3 seconds of the revocation (docs/postgres.md).
    pub fn authenticate(&self, token: &str) -> Result<Option<TokenOwner>> {
        let hash = super::token_hash(token);
        let live = &self.inner.shared.live;
        let found = match live.token(&hash) {
            super::live::TokenLookup::Hit(owner) => Some(owner),
            super::live::TokenLookup::Miss(epoch) => {
                let found = self.inner.store().token_owner(&hash)?;
                if let Some(owner) = &found {
                    live.remember_token(hash, owner.clone(), epoch);
                }
                found
            }
        };
        let Some((no, name)) = found else {
            return Ok(None);
        };
        let Some(mission_id) = self.inner.shared.name_of(no) else {
            return Ok(None);
        };
        // A removed participant's tokens stop working at once, whatever is
        // left in the tokens tree or the cache. The published state is the
        // latest unless other processes write too (then `cached` checks).
        let state = match self.inner.shared.cached(no) {
            Some(c) if !self.inner.store().is_shared() => c,
            _ => self.cached(&mission_id)?,
        };
        if !state.state.participants.contains_key(&name) {
            return Ok(None);
        }
        Ok(Some(TokenOwner { mission_id, name }))
    }

    /// A watch of `mission`'s durable head sequence: it changes after each
    /// flush that moved the head. Holds no events (readers fetch them from
    /// the log), so a stalled reader costs no memory here.
    pub fn watch_head(&self, mission: &str) -> Result<watch::Receiver<u64>> {
        let c = self.cached(mission)?;
        Ok(self.inner.shared.live.watch_head(c.no, c.state.head))
    }

    /// The writer's statistics since open: commit group sizes, flush
    /// latency, failed commits.
    pub fn stats(&self) -> BusStats {
        self.inner.shared.live.stats.snapshot()
    }

    /// Events written since open.
    pub fn events_written(&self) -> u64 {
        self.inner
            .shared
            .written
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Job {
    fn append_async(
        mission: &str,
        drafts: Vec<Draft>,
        expected: Option<u64>,
    ) -> (Job, oneshot::Receiver<Result<Vec<Event>>>) {
        let (tx, rx) = oneshot::channel();
        (
            Job::Append {
                mission: mission.to_string(),
                drafts,
                expected,
                reply: Reply::Async(tx),
            },
            rx,
        )
    }
}

/// Name the batch item an error is about.
fn at_item(err: Error, i: usize) -> Error {
    match err {
        Error::InvalidInput { field, reason } => Error::InvalidInput {
            field: format!("events[{i}].{field}"),
            reason,
        },
        Error::TooLarge { field, size, limit } => Error::TooLarge {
            field: format!("events[{i}].{field}"),
            size,
            limit,
        },
        other => other,
    }
}
