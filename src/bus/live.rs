//! What a long-running server needs from the bus beyond the blocking API:
//! a token cache (tokens checked from memory), head watches (live streams
//! learn that a mission moved without holding events in memory), what the
//! subscribers were given of each mission (on a shared store, where other
//! processes' commits arrive through `follow.rs`) and the writer's
//! statistics (commit group sizes, flush latency).
//!
//! All of it is owned by [`Shared`](super::Shared) and changed by the
//! writer (heads, statistics, announcements), the token calls (cache) and
//! the follower thread (other processes' heads and revocations).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::keys::MissionNo;

/// Most token hashes remembered; the cache is cleared when it is full (the
/// store stays the truth, so a miss only costs one store lookup).
const TOKEN_CACHE_MAX: usize = 65_536;

/// On a shared store, how long after the listener last proved that it had
/// delivered every revocation (an answered ping, `Notice::Alive`) cached
/// tokens are still trusted; after that every token is looked up in the
/// store until the listener answers again. So a token revoked through
/// another process is refused here at most this long after the revocation
/// committed (docs/postgres.md).
pub(crate) const TOKEN_TRUST: Duration = Duration::from_secs(3);

/// Upper bounds of the commit-group-size histogram (events per group).
pub const GROUP_SIZE_BOUNDS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Upper bounds of the flush-latency histogram, in seconds.
pub const FLUSH_SECONDS_BOUNDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Server-facing live state of the bus.
#[derive(Default)]
pub(super) struct Live {
    tokens: Mutex<Tokens>,
    /// The durable head of each mission someone watches.
    heads: Mutex<HashMap<MissionNo, watch::Sender<u64>>>,
    /// Shared stores: the last sequence of each mission handed to the
    /// subscribers (`MissionBus::subscribe*`), by the writer (this
    /// process's commits) or the follower (everyone's, read from the log).
    /// Locked across a whole announcement, before `mission_channels`.
    announced: Mutex<HashMap<MissionNo, u64>>,
    pub(super) stats: Stats,
}

/// The token cache.
#[derive(Default)]
struct Tokens {
    /// BLAKE3(token) -> (mission number, participant name), for tokens seen
    /// valid. Only positive answers are cached, so unknown tokens cannot
    /// grow it.
    map: HashMap<[u8; 32], (MissionNo, String)>,
    /// Bumped by every forgetting: a lookup that began before a revocation
    /// is not cached after it.
    epoch: u64,
    /// `None`: cached answers are always good (only this process changes
    /// tokens). `Some(t)`: a shared store; cached answers are good until
    /// `t` (moved on by the listener's pings).
    trust_until: Option<Option<Instant>>,
}

/// A token-cache answer.
pub(super) enum TokenLookup {
    /// Cached and trusted.
    Hit((MissionNo, String)),
    /// Ask the store; pass the epoch to [`Live::remember_token`].
    Miss(u64),
}

impl Live {
    fn tokens(&self) -> MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn token(&self, hash: &[u8; 32]) -> TokenLookup {
        let t = self.tokens();
        let trusted = match t.trust_until {
            None => true,
            Some(until) => until.is_some_and(|u| Instant::now() < u),
        };
        match t.map.get(hash) {
            Some(owner) if trusted => TokenLookup::Hit(owner.clone()),
            _ => TokenLookup::Miss(t.epoch),
        }
    }

    /// Cache a store's answer, unless a token was forgotten since the
    /// lookup began (`epoch`): that answer may be the revoked token's.
    pub(super) fn remember_token(&self, hash: [u8; 32], owner: (MissionNo, String), epoch: u64) {
        let mut t = self.tokens();
        if t.epoch != epoch {
            return;
        }
        if t.map.len() >= TOKEN_CACHE_MAX {
            t.map.clear();
        }
        t.map.insert(hash, owner);
    }

    /// Forget one cached token (it was revoked).
    pub(super) fn forget_token(&self, hash: &[u8; 32]) {
        let mut t = self.tokens();
        t.epoch += 1;
        t.map.remove(hash);
    }

    /// Forget every cached token of participant `name` of `mission` (their
    /// tokens were revoked).
    pub(super) fn forget_tokens(&self, mission: MissionNo, name: &str) {
        let mut t = self.tokens();
        t.epoch += 1;
        t.map.retain(|_, (m, n)| !(*m == mission && n == name));
    }

    /// Forget every cached token (revocations may have been missed).
    pub(super) fn forget_all_tokens(&self) {
        let mut t = self.tokens();
        t.epoch += 1;
        t.map.clear();
    }

    /// A shared store: trust cached tokens only while the listener proves
    /// it delivers revocations (see [`TOKEN_TRUST`]); not yet.
    pub(super) fn distrust_tokens(&self) {
        let mut t = self.tokens();
        t.trust_until = Some(None);
        t.epoch += 1;
        t.map.clear();
    }

    /// Every revocation committed before `sent` has been applied.
    pub(super) fn tokens_current_at(&self, sent: Instant) {
        let mut t = self.tokens();
        let until = sent + TOKEN_TRUST;
        if let Some(current) = &mut t.trust_until {
            *current = Some(current.map_or(until, |c| c.max(until)));
        }
    }

    /// The subscribers' watermarks (lock before `mission_channels`).
    pub(super) fn announced(&self) -> MutexGuard<'_, HashMap<MissionNo, u64>> {
        self.announced.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver of `mission`'s durable head, starting at `head`.
    pub(super) fn watch_head(&self, mission: MissionNo, head: u64) -> watch::Receiver<u64> {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        heads.retain(|_, tx| tx.receiver_count() > 0);
        let tx = heads
            .entry(mission)
            .or_insert_with(|| watch::channel(head).0);
        tx.send_if_modified(|h| {
            let moved = head > *h;
            *h = (*h).max(head);
            moved
        });
        tx.subscribe()
    }

    /// Called after a flush (or when another process's commit is heard
    /// of): `mission` is durable up to `head`.
    pub(super) fn moved(&self, mission: MissionNo, head: u64) {
        let heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = heads.get(&mission) {
            tx.send_if_modified(|h| {
                let moved = head > *h;
                *h = (*h).max(head);
                moved
            });
        }
    }
}

/// A fixed-bucket histogram, updated with relaxed atomics.
pub(super) struct Buckets {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Buckets {
    fn new(bounds: &'static [f64]) -> Self {
        Buckets {
            bounds,
            // One more for +Inf.
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64, sum_micros: u64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(sum_micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self, sum_scale: f64) -> Histogram {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        Histogram {
            buckets,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 * sum_scale,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// The writer's counters.
pub(super) struct Stats {
    groups: Buckets,
    flushes: Buckets,
    commit_failures: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            groups: Buckets::new(&GROUP_SIZE_BOUNDS),
            flushes: Buckets::new(&FLUSH_SECONDS_BOUNDS),
            commit_failures: AtomicU64::new(0),
        }
    }
}

impl Stats {
    /// A commit group of `events` events was written and flushed in `flush`.
    pub(super) fn committed(&self, events: usize, flush: Duration) {
        self.groups.observe(events as f64, events as u64);
        self.flushes
            .observe(flush.as_secs_f64(), flush.as_micros() as u64);
    }

    pub(super) fn failed(&self) {
        self.commit_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> BusStats {
        BusStats {
            group_events: self.groups.snapshot(1.0),
            flush_seconds: self.flushes.snapshot(1e-6),
            commit_failures: self.commit_failures.load(Ordering::Relaxed),
        }
    }
}

/// A histogram as Prometheus exposes it: cumulative counts per upper bound
/// (the last bound is `+Inf`), the sum of observed values and their count.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// `(upper bound, observations <= bound)`, bounds increasing, last `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observed values.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// The writer's statistics since the bus was opened
/// ([`MissionBus::stats`](super::MissionBus::stats)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BusStats {
    /// Events per written commit group.
    pub group_events: Histogram,
    /// Time of each commit group's flush (per the bus's durability), seconds.
    pub flush_seconds: Histogram,
    /// Commit groups whose write or flush failed.
    pub commit_failures: u64,
}
