//! Other processes' writes, as they commit: a third connection `LISTEN`s
//! on the commit channel ([`CHANNEL`]: `no:head,…` per commit group) and
//! the token channel ([`TOKENS_CHANNEL`]: revocations), and hands what it
//! hears to the bus as [`Notice`]s on a std channel (the bus's follower
//! thread, `src/bus/follow.rs`, reads it).
//!
//! Notifications are lost while that connection is down, so the listener
//! says so: [`Notice::Lost`] when it finds the connection gone, then
//! [`Notice::Listening`] once it listens again (the bus then re-reads every
//! head and drops its token cache). A dead connection that nobody closed
//! (a cut network, a frozen server) is found by a ping every [`PING_EVERY`]
//! that must be answered within [`PING_TIMEOUT`]. Each answered ping is
//! [`Notice::Alive`]: PostgreSQL delivers the notifications queued for a
//! session before it answers that session's next query, so every
//! notification committed before the ping was sent has been handed on
//! before `Alive` is. That bounds how long a revoked token stays usable in
//! another process (see `Live::trusted_token`).

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::AsyncMessage;

use super::commit::CHANNEL;
use super::{Conns, PgStore};
use crate::keys::MissionNo;

/// The channel token revocations are announced on.
pub(crate) const TOKENS_CHANNEL: &str = "mission_bus_tokens";
/// How often the listening connection is pinged.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(1);
/// A ping not answered within this is a lost connection.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// Pauses between attempts to listen again: doubling from the first to
/// the second.
const RETRY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// What the listener heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// A commit moved these missions' heads: (mission, new head).
    Heads(Vec<(MissionNo, u64)>),
    /// One token was revoked (its hash).
    TokenRevoked([u8; 32]),
    /// Every token of participant `.1` of mission `.0` was revoked.
    TokensRevoked(MissionNo, String),
    /// The listening connection is gone: what is committed from now until
    /// the next [`Notice::Listening`] is not announced.
    Lost,
    /// Listening (for the first time, or again after [`Notice::Lost`]):
    /// everything committed from now on is announced; heads may have moved
    /// unannounced before.
    Listening,
    /// Every notification committed before this instant has been handed on.
    Alive(Instant),
}

impl PgStore {
    /// Start listening (on the store's runtime, until the receiver is
    /// dropped or the store closes).
    pub(crate) fn listen(&self) -> std::sync::mpsc::Receiver<Notice> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.rt.spawn(listen_loop(Arc::clone(&self.conn), tx));
        rx
    }
}

async fn listen_loop(c: Arc<Conns>, tx: Sender<Notice>) {
    let mut pause = RETRY.0;
    loop {
        match session(&c, &tx).await {
            Ended::ReceiverGone => return,
            Ended::Lost { listened, why } => {
                if listened {
                    if tx.send(Notice::Lost).is_err() {
                        return;
                    }
                    pause = RETRY.0;
                }
                tracing::warn!(store = %c.shown, reason = %why, "PostgreSQL listener: connection lost, listening again");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY.1);
    }
}

enum Ended {
    ReceiverGone,
    Lost { listened: bool, why: String },
}

/// Stops the task driving a connection when the session ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One listening connection, until it is lost or nobody reads notices.
async fn session(c: &Conns, tx: &Sender<Notice>) -> Ended {
    let lost = |listened: bool, why: String| Ended::Lost { listened, why };
    let (client, mut connection) = match c.config.connect(c.tls.clone()).await {
        Ok(pair) => pair,
        Err(e) => return lost(false, c.connect_err(e).to_string()),
    };
    let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel();
    // The connection's messages, in the order they arrive: notifications
    // go to `nrx`; the end of the connection drops `ntx`.
    let _driver = AbortOnDrop(tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if ntx.send(n).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "PostgreSQL listener connection ended");
                    return;
                }
            }
        }
    }));
    let setup = format!(
        "SET application_name = 'mission-bus listen {}'; LISTEN {CHANNEL}; LISTEN {TOKENS_CHANNEL}",
        std::process::id()
    );
    if let Err(e) = client.batch_execute(&setup).await {
        return lost(false, c.err(e).to_string());
    }
    if tx.send(Notice::Listening).is_err() {
        return Ended::ReceiverGone;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            n = nrx.recv() => {
                let Some(n) = n else {
                    return lost(true, "the connection was closed".into());
                };
                if forward(&n, tx).is_err() {
                    return Ended::ReceiverGone;
                }
            }
            _ = ping.tick() => {
                let sent = Instant::now();
                match tokio::time::timeout(PING_TIMEOUT, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return lost(true, c.err(e).to_string()),
                    Err(_) => {
                        return lost(true, format!("no answer to a ping within {PING_TIMEOUT:?}"))
                    }
                }
                // Notifications that arrived before the answer are queued
                // already: hand them on first.
                while let Ok(n) = nrx.try_recv() {
                    if forward(&n, tx).is_err() {
                        return Ended::ReceiverGone;
                    }
                }
                if tx.send(Notice::Alive(sent)).is_err() {
                    return Ended::ReceiverGone;
                }
            }
        }
    }
}

/// Parse one notification and hand it on; `Err` when nobody listens.
fn forward(n: &tokio_postgres::Notification, tx: &Sender<Notice>) -> Result<(), ()> {
    let notice = match n.channel() {
        CHANNEL => parse_heads(n.payload()).map(Notice::Heads),
        TOKENS_CHANNEL => parse_tokens(n.payload()),
        _ => None,
    };
    match notice {
        Some(notice) => tx.send(notice).map_err(|_| ()),
        None => {
            tracing::warn!(
                channel = n.channel(),
                payload = n.payload(),
                "PostgreSQL listener: a notification not understood"
            );
            Ok(())
        }
    }
}

/// `no:head,no:head,…`
pub(crate) fn parse_heads(payload: &str) -> Option<Vec<(MissionNo, u64)>> {
    payload
        .split(',')
        .map(|pair| {
            let (no, seq) = pair.split_once(':')?;
            Some((no.parse().ok()?, seq.parse().ok()?))
        })
        .collect()
}

/// `t:HEX` (one token's hash) or `p:NO:NAME` (a participant's tokens).
pub(crate) fn parse_tokens(payload: &str) -> Option<Notice> {
    if let Some(hex) = payload.strip_prefix("t:") {
        let bytes = unhex(hex)?;
        return Some(Notice::TokenRevoked(bytes.try_into().ok()?));
    }
    let (no, name) = payload.strip_prefix("p:")?.split_once(':')?;
    Some(Notice::TokensRevoked(no.parse().ok()?, name.to_string()))
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// The payload announcing the revocation of one token.
pub(crate) fn token_payload(hash: &[u8]) -> String {
    format!("t:{}", crate::store::hex(hash))
}

/// The payload announcing the revocation of a participant's tokens.
pub(crate) fn participant_payload(mission: MissionNo, name: &str) -> String {
    format!("p:{mission}:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        assert_eq!(parse_heads("3:17,12:1"), Some(vec![(3, 17), (12, 1)]));
        assert_eq!(parse_heads("3:x"), None);
        assert_eq!(parse_heads(""), None);
        let h = [7u8; 32];
        assert_eq!(
            parse_tokens(&token_payload(&h)),
            Some(Notice::TokenRevoked(h))
        );
        assert_eq!(
            parse_tokens(&participant_payload(9, "a:b,c")),
            Some(Notice::TokensRevoked(9, "a:b,c".into()))
        );
        assert_eq!(parse_tokens("t:abc"), None);
        assert_eq!(parse_tokens("q:1:x"), None);
    }
}
