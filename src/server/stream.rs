//! `GET /v1/missions/{m}/events/stream`: Server-Sent Events, catch-up from
//! the log, then live, with no gap and no duplicate.
//!
//! A stream keeps no events of its own beyond one chunk: it watches the
//! mission's durable head (`MissionBus::watch_head`, a single integer; on
//! PostgreSQL other processes' commits move it too, heard of through
//! `LISTEN`, with a catch-up by sequence after a lost connection: see
//! `src/bus/follow.rs`) and reads whatever lies between the last event it
//! sent and the head from the log, in chunks of at most [`STREAM_CHUNK_EVENTS`] events and about
//! [`STREAM_CHUNK_BYTES`] bytes of event JSON. So:
//! 1. it notes the head's version, then reads the log from its next
//!    sequence up to the published head, one chunk at a time;
//! 2. when a read comes back empty it waits for the head to move (a move
//!    after the version it noted wakes it at once, so nothing is missed);
//! 3. `read` is checked again before every read of the log: a reader that
//!    loses it is cut off at the next event.
//!
//! Memory is bounded in bytes and returned when readers leave: a stalled
//! client stops being polled and holds at most one chunk (plus hyper's
//! write buffer, at most about 400 KiB, and the kernel's socket buffer,
//! which is not the process's); nothing is retained per mission for it,
//! and writers and other readers never wait for it. With the default limits
//! the bound for all streams together is `max_streams` x (chunk + write
//! buffer), about 256 x 0.6 MiB = 150 MiB (docs/api.md, "Limits"). The
//! stream ends when the server shuts down; clients resume with
//! `Last-Event-ID`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::{watch, Semaphore};

use super::auth::{bearer, Actor};
use super::error::ApiError;
use super::limits::StreamSlot;
use super::routes::{call, path, require};
use super::App;
use crate::document::event_to_json;
use crate::{Capability, MissionBus};

/// Most events read from the log per blocking call.
pub const STREAM_CHUNK_EVENTS: u64 = 256;
/// A chunk stops growing once its event JSON passes this many bytes (it
/// always holds at least one event, at most about 700 KiB of JSON for the
/// largest record).
pub const STREAM_CHUNK_BYTES: usize = 64 * 1024;
/// How often an idle stream sends a comment, so dead peers are noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(crate) async fn events_stream(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mission = path(m)?;
    // The filters of `GET .../events`; a stream is always oldest first.
    let fq = super::lifecycle::filter_query(raw.as_deref(), &[])?;
    if fq.filter.newest_first || fq.filter.limit.is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "a stream takes no 'order' or 'limit' (use GET .../events)",
        ));
    }
    let q = fq.filter.clone();
    let (filter, consumer) = (fq.filter, fq.consumer);
    // A reconnecting EventSource sends the last id it saw: continue after it.
    let start = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::bad_request("invalid_header", "Last-Event-ID must be a sequence number")
            })?
            .saturating_add(1),
        None => q.from.unwrap_or(1).max(1),
    };
    let token_hash = crate::token_hash(&bearer(&headers)?);
    let checked = mission.clone();
    let (actor, start) = call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&checked)?;
        require(app, &checked, &actor, Capability::Read)?;
        // With a consumer, start after what it acknowledged.
        let start = match (&consumer, &actor) {
            (None, _) => start,
            (Some(c), Actor::Participant(me)) => {
                start.max(app.bus.consumer_position(&checked, me, c)? + 1)
            }
            (Some(_), Actor::Operator) => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "consumers belong to participants; use a participant token",
                ))
            }
        };
        Ok((actor, start))
    })
    .await?;
    let slot = app.streams.admit(&app.limits, &mission, token_hash)?;
    let head = app.bus.watch_head(&mission)?;
    let reader = match actor {
        Actor::Operator => None,
        Actor::Participant(name) => Some(name),
    };
    let tail = Tail {
        bus: app.bus.clone(),
        blocking: Arc::clone(&app.blocking),
        mission,
        reader,
        next: start,
        head,
        backlog: VecDeque::new(),
        stop: app.stop.clone(),
        filter: Arc::new(filter),
        _slot: slot,
    };
    let events = futures_util::stream::unfold(tail, Tail::next_event);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// One subscriber's position in one mission's log.
struct Tail {
    bus: MissionBus,
    blocking: Arc<Semaphore>,
    mission: String,
    /// The participant reading (`None` for the admin); its `read`
    /// capability is checked again before every read of the log.
    reader: Option<String>,
    /// The next sequence to send: everything before it has been sent.
    next: u64,
    head: watch::Receiver<u64>,
    /// One chunk read from the log and not yet sent: (sequence, JSON).
    /// Events read and not yet sent: `None` for one the filter skips (it
    /// still advances `next`, so delivery stays exactly-once and in order).
    backlog: VecDeque<(u64, Option<String>)>,
    stop: watch::Receiver<bool>,
    /// Only matching events are sent; the stream ends after `filter.to`.
    filter: Arc<crate::EventFilter>,
    _slot: StreamSlot,
}

impl Tail {
    async fn next_event(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        loop {
            if *self.stop.borrow() || self.filter.to.is_some_and(|t| self.next > t) {
                return None;
            }
            if let Some((seq, data)) = self.backlog.pop_front() {
                if seq != self.next {
                    // A gap in the log itself: `verify` will name it. Never
                    // send events out of order; end and let the client retry.
                    tracing::error!(
                        mission = %self.mission,
                        expected = self.next,
                        got = seq,
                        "event stream found a gap in the log"
                    );
                    return None;
                }
                self.next = seq + 1;
                let Some(data) = data else { continue };
                let sse = SseEvent::default().id(seq.to_string()).data(data);
                return Some((Ok(sse), self));
            }
            // Note the head's version first: a move after this wakes us.
            self.head.borrow_and_update();
            match self.read_log().await {
                Ok(chunk) if !chunk.is_empty() => {
                    self.backlog = chunk;
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    // Ends the stream; the client resumes with Last-Event-ID.
                    tracing::warn!(mission = %self.mission, error = %e, "event stream read failed");
                    return None;
                }
            }
            let Tail { head, stop, .. } = &mut self;
            tokio::select! {
                moved = head.changed() => if moved.is_err() { return None },
                _ = stop.wait_for(|s| *s) => return None,
            }
        }
    }

    /// The next chunk of the log from `self.next`, up to the durable head,
    /// rendered as event JSON.
    async fn read_log(&self) -> crate::Result<VecDeque<(u64, Option<String>)>> {
        let permit = Arc::clone(&self.blocking)
            .acquire_owned()
            .await
            .map_err(|_| crate::Error::Closed)?;
        let bus = self.bus.clone();
        let mission = self.mission.clone();
        let reader = self.reader.clone();
        let from = self.next;
        let to = from
            .saturating_add(STREAM_CHUNK_EVENTS - 1)
            .min(self.filter.to.unwrap_or(u64::MAX));
        let filter = Arc::clone(&self.filter);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            if let Some(name) = &reader {
                bus.require(&mission, name, Capability::Read)?;
            }
            let mut chunk = VecDeque::new();
            let mut bytes = 0;
            for e in bus.events(&mission, from, to)? {
                let e = e?;
                if !filter.matches(&e) {
                    chunk.push_back((e.sequence, None));
                    continue;
                }
                let data = event_to_json(&e).to_string();
                bytes += data.len();
                chunk.push_back((e.sequence, Some(data)));
                if bytes >= STREAM_CHUNK_BYTES {
                    break;
                }
            }
            Ok(chunk)
        })
        .await
        .map_err(|_| crate::Error::Closed)?
    }
}
