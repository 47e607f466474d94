//! Limits that protect every client from the others: connections per
//! client address, the request-reading deadlines, and event streams per
//! mission and per token.
//!
//! - **Connections.** At most [`Limits::max_connections`] open at once (the
//!   listener stops accepting beyond that, clients wait in the kernel's
//!   backlog) and at most [`Limits::max_connections_per_address`] from one
//!   client address (further ones are closed at once), so one host cannot
//!   take every slot.
//! - **Reading a request.** The headers must arrive within
//!   [`Limits::header_timeout`] of their first byte (of the connection's
//!   opening, for a new connection), and the body within
//!   [`Limits::body_timeout`] of the headers. Both deadlines are fixed when
//!   they start: bytes trickled one at a time cannot extend them.
//! - **Streams.** [`Limits::max_streams`] in all, [`Limits::max_streams_per_mission`]
//!   per mission and [`Limits::max_streams_per_token`] per token, so one
//!   mission (or one client) cannot take every other mission's streams.
//!
//! [`Limits::max_connections`]: super::Limits::max_connections
//! [`Limits::max_connections_per_address`]: super::Limits::max_connections_per_address
//! [`Limits::header_timeout`]: super::Limits::header_timeout
//! [`Limits::body_timeout`]: super::Limits::body_timeout
//! [`Limits::max_streams`]: super::Limits::max_streams
//! [`Limits::max_streams_per_mission`]: super::Limits::max_streams_per_mission
//! [`Limits::max_streams_per_token`]: super::Limits::max_streams_per_token

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::App;

/// Where a connection is in its request cycle (shared between the
/// connection's I/O wrapper and the request middleware).
pub(crate) const PHASE_HEADERS: u8 = 0;
/// The headers are in; a handler (or the body deadline) owns the time.
pub(crate) const PHASE_PROCESSING: u8 = 1;
/// A response was written; waiting for the next request (idle timeout).
pub(crate) const PHASE_IDLE: u8 = 2;

/// What the server knows about one connection, available to handlers as
/// `ConnectInfo<Conn>`.
#[derive(Clone, Debug)]
pub(crate) struct Conn {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) phase: Arc<AtomicU8>,
}

/// Counts per key, with RAII slots.
pub(crate) struct Counter<K: Eq + Hash + Clone> {
    counts: Mutex<HashMap<K, usize>>,
}

impl<K: Eq + Hash + Clone> Default for Counter<K> {
    fn default() -> Self {
        Counter {
            counts: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> Counter<K> {
    /// Take one slot for `key` if fewer than `max` are taken.
    fn try_take(&self, key: &K, max: usize) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(key.clone()).or_insert(0);
        if *n >= max {
            if *n == 0 {
                counts.remove(key);
            }
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, key: &K) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(key);
            }
        }
    }
}

/// Open connections per client address.
pub(crate) struct Connections {
    per_address: Counter<IpAddr>,
    max_per_address: usize,
    open: AtomicUsize,
}

impl Connections {
    pub(crate) fn new(max_per_address: usize) -> Arc<Self> {
        Arc::new(Connections {
            per_address: Counter::default(),
            max_per_address: max_per_address.max(1),
            open: AtomicUsize::new(0),
        })
    }

    /// A slot for a connection from `addr`, or `None` when that address
    /// already holds its share.
    pub(crate) fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<ConnectionSlot> {
        if !self.per_address.try_take(&addr, self.max_per_address) {
            return None;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(ConnectionSlot {
            owner: Arc::clone(self),
            addr,
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One admitted connection; dropping it gives the slot back.
pub(crate) struct ConnectionSlot {
    owner: Arc<Connections>,
    addr: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.owner.open.fetch_sub(1, Ordering::Relaxed);
        self.owner.per_address.give_back(&self.addr);
    }
}

/// Open event streams: in all, per mission, per token.
#[derive(Default)]
pub(crate) struct Streams {
    total: Counter<()>,
    per_mission: Counter<String>,
    per_token: Counter<[u8; 32]>,
    open: AtomicUsize,
}

/// One open stream; dropping it gives its three slots back.
pub(crate) struct StreamSlot {
    owner: Arc<Streams>,
    mission: String,
    token: [u8; 32],
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.owner.open.fetch_sub(1, Ordering::Relaxed);
        self.owner.total.give_back(&());
        self.owner.per_mission.give_back(&self.mission);
        self.owner.per_token.give_back(&self.token);
    }
}

impl Streams {
    /// Open streams now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// A slot for a stream of `mission` opened with the token whose hash is
    /// `token`, or 503 naming the limit that was reached.
    pub(crate) fn admit(
        self: &Arc<Self>,
        limits: &super::Limits,
        mission: &str,
        token: [u8; 32],
    ) -> Result<StreamSlot, ApiError> {
        let full = |what: &str, n: usize| {
            ApiError::unavailable(
                "too_many_streams",
                format!("{what} has {n} event streams open, the limit; retry later"),
            )
        };
        let mission_key = mission.to_string();
        if !self
            .per_token
            .try_take(&token, limits.max_streams_per_token)
        {
            return Err(full("this token", limits.max_streams_per_token));
        }
        if !self
            .per_mission
            .try_take(&mission_key, limits.max_streams_per_mission)
        {
            self.per_token.give_back(&token);
            return Err(full(
                &format!("mission '{mission}'"),
                limits.max_streams_per_mission,
            ));
        }
        if !self.total.try_take(&(), limits.max_streams) {
            self.per_token.give_back(&token);
            self.per_mission.give_back(&mission_key);
            return Err(full("the server", limits.max_streams));
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(StreamSlot {
            owner: Arc::clone(self),
            mission: mission_key,
            token,
        })
    }
}

/// Middleware: the headers are in (the connection's header deadline stops),
/// and the body must arrive within [`Limits::body_timeout`] and within
/// [`Limits::max_body_bytes`]; it is buffered here, so handlers never wait
/// on a client.
///
/// [`Limits::body_timeout`]: super::Limits::body_timeout
/// [`Limits::max_body_bytes`]: super::Limits::max_body_bytes
pub(crate) async fn read_body(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(conn)) = req.extensions().get::<ConnectInfo<Conn>>() {
        conn.phase.store(PHASE_PROCESSING, Ordering::Relaxed);
    }
    let (parts, body) = req.into_parts();
    let limit = super::admin::body_limit(parts.uri.path(), app.limits.max_body_bytes);
    let read = tokio::time::timeout(
        app.limits.body_timeout,
        axum::body::to_bytes(body, limit.saturating_add(1)),
    )
    .await;
    let bytes = match read {
        Ok(Ok(bytes)) if bytes.len() <= limit => bytes,
        Ok(_) => {
            // Over the limit (to_bytes fails at limit + 1), or a broken body.
            return close(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is over the server's limit of {limit} bytes"),
            ));
        }
        Err(_) => {
            return close(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} ms",
                    app.limits.body_timeout.as_millis()
                ),
            ));
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// An error response that also closes the connection (its request stream
/// is in an unknown state).
fn close(e: ApiError) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_slots_are_per_mission_and_per_token_and_come_back() {
        let limits = super::super::Limits::default()
            .max_streams(3)
            .max_streams_per_mission(2)
            .max_streams_per_token(1);
        let s = Arc::new(Streams::default());
        let a1 = s.admit(&limits, "a", [1; 32]).unwrap();
        assert!(s.admit(&limits, "a", [1; 32]).is_err(), "per token");
        let a2 = s.admit(&limits, "a", [2; 32]).unwrap();
        let err = s.admit(&limits, "a", [3; 32]).err().unwrap();
        assert!(err.message.contains("mission 'a'"), "{}", err.message);
        let b1 = s.admit(&limits, "b", [3; 32]).unwrap();
        let err = s.admit(&limits, "c", [4; 32]).err().unwrap();
        assert!(err.message.contains("the server"), "{}", err.message);
        assert_eq!(s.open(), 3);
        drop((a1, a2, b1));
        assert_eq!(s.open(), 0);
        assert!(s.per_mission.counts.lock().unwrap().is_empty());
        assert!(s.per_token.counts.lock().unwrap().is_empty());
        let _again = s.admit(&limits, "a", [1; 32]).unwrap();
    }

    #[test]
    fn connections_are_capped_per_address() {
        let c = Connections::new(2);
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let other: IpAddr = "127.0.0.3".parse().unwrap();
        let s1 = c.admit(ip).unwrap();
        let _s2 = c.admit(ip).unwrap();
        assert!(c.admit(ip).is_none());
        let _o = c.admit(other).unwrap();
        assert_eq!(c.open(), 3);
        drop(s1);
        assert!(c.admit(ip).is_some());
    }
}
