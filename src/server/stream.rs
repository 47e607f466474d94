//! `GET /v1/missions/{m}/events/stream`: Server-Sent Events, catch-up from
//! the log, then live, with no gap and no duplicate.
//!
//! The subscriber joins the bus's broadcast of durable events *before* it
//! reads the log, then:
//! 1. reads the log from its next sequence in chunks until it reaches the
//!    head (catch-up);
//! 2. sends live events of its mission whose sequence is exactly the next
//!    one expected, skipping those already sent from the log;
//! 3. if the broadcast says it lagged (it fell more than the channel's
//!    capacity behind), or a live event skips ahead of the next expected
//!    sequence, it goes back to step 1.
//!
//! Nothing is buffered per subscriber beyond one chunk: a stalled client
//! simply stops being polled, its broadcast receiver lags, and writers and
//! other subscribers never wait for it. The stream ends when the server
//! shuts down, or when the reader loses the `read` capability (checked again
//! before every log read and after a role change of the reader); clients
//! resume with `Last-Event-ID`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

use super::auth::Actor;
use super::error::ApiError;
use super::routes::{call, path, require};
use super::App;
use crate::bus::Committed;
use crate::document::event_to_json;
use crate::{Capability, Event, EventBody, MissionBus};

/// Events read from the log per blocking call during catch-up.
const CATCH_UP_CHUNK: u64 = 256;
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
    let filter = fq.filter;
    let consumer = fq.consumer;
    let slot = Arc::clone(&app.streams).try_acquire_owned().map_err(|_| {
        ApiError::unavailable(
            "too_many_streams",
            "too many event streams are open; retry later",
        )
    })?;
    // Subscribe before the first log read, so nothing falls between the two.
    let live = app.bus.subscribe_mission(&mission);
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
        live,
        backlog: VecDeque::new(),
        catching_up: true,
        stop: app.stop.clone(),
        filter,
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
    live: broadcast::Receiver<Arc<Committed>>,
    /// Events read from the log (or taken live) and not yet sent.
    backlog: VecDeque<Event>,
    catching_up: bool,
    stop: watch::Receiver<bool>,
    /// Only matching events are sent; the others still advance `next`, so
    /// delivery stays exactly-once and in order. The stream ends after `to`.
    filter: crate::EventFilter,
    _slot: OwnedSemaphorePermit,
}

impl Tail {
    async fn next_event(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        loop {
            if *self.stop.borrow() || self.filter.to.is_some_and(|t| self.next > t) {
                return None;
            }
            if let Some(e) = self.backlog.pop_front() {
                if e.sequence != self.next {
                    // A gap in the log itself: `verify` will name it. Never
                    // send events out of order; end and let the client retry.
                    tracing::error!(
                        mission = %self.mission,
                        expected = self.next,
                        got = e.sequence,
                        "event stream found a gap in the log"
                    );
                    return None;
                }
                self.next = e.sequence + 1;
                if !self.filter.matches(&e) {
                    continue;
                }
                let data = event_to_json(&e).to_string();
                let sse = SseEvent::default().id(e.sequence.to_string()).data(data);
                return Some((Ok(sse), self));
            }
            if self.catching_up {
                match self.read_log().await {
                    Ok(events) if events.is_empty() => self.catching_up = false,
                    Ok(events) => self.backlog.extend(events),
                    Err(e) => {
                        // Ends the stream; the client resumes with Last-Event-ID.
                        tracing::warn!(mission = %self.mission, error = %e, "event stream catch-up failed");
                        return None;
                    }
                }
                continue;
            }
            let Tail {
                live,
                stop,
                mission,
                reader,
                next,
                backlog,
                catching_up,
                ..
            } = &mut self;
            tokio::select! {
                received = live.recv() => match received {
                    Ok(c) if c.mission_id == *mission => {
                        let seq = c.event.sequence;
                        if seq == *next {
                            backlog.push_back(c.event.clone());
                        } else if seq > *next {
                            // Cannot happen while we keep up; the log is the truth.
                            *catching_up = true;
                        } // seq < next: already sent from the log
                        if let EventBody::RoleChanged { name, .. } | EventBody::ParticipantRemoved { name } = &c.event.body {
                            if reader.as_deref() == Some(name.as_str()) {
                                // Re-check `read` (in `read_log`) before going on.
                                *catching_up = true;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => *catching_up = true,
                    Err(RecvError::Closed) => return None,
                },
                _ = stop.wait_for(|s| *s) => return None,
            }
        }
    }

    /// The next chunk of the log from `self.next`, up to the durable head.
    async fn read_log(&self) -> crate::Result<Vec<Event>> {
        let permit = Arc::clone(&self.blocking)
            .acquire_owned()
            .await
            .map_err(|_| crate::Error::Closed)?;
        let bus = self.bus.clone();
        let mission = self.mission.clone();
        let reader = self.reader.clone();
        let from = self.next;
        let to = from.saturating_add(CATCH_UP_CHUNK - 1);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            if let Some(name) = &reader {
                bus.require(&mission, name, Capability::Read)?;
            }
            bus.events(&mission, from, to)?.collect()
        })
        .await
        .map_err(|_| crate::Error::Closed)?
    }
}
