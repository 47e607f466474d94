//! The checks `verify` makes on one mission's records as they stream by,
//! shared by both backends (`sled_backend/verify.rs`,
//! `postgres/verify.rs`), so they report the same faults in the same
//! words: sequences, checksums, the hash chain, the record's mission id,
//! the creation record, the prune anchor and the history_pruned event that
//! recorded it, and the head. Each backend feeds raw `(sequence, bytes)` in
//! log order and adds its own index checks on the events handed back.

use crate::codec::{self, Anchor, Hash, GENESIS};
use crate::event::{Event, EventBody};
use crate::keys::{self, MissionNo};
use crate::store::hex;
use crate::verify::VerifyReport;

/// A mission's head as its backend stores it.
pub(crate) enum HeadEntry {
    /// No head entry.
    Missing,
    /// An entry that does not parse.
    Malformed,
    /// Sequence and chain hash.
    Found(u64, Hash),
}

/// One mission's verification walk: [`Walk::new`], then
/// [`Walk::record`] for every record in sequence order, then
/// [`Walk::finish`].
pub(crate) struct Walk<'a> {
    mission: MissionNo,
    name: &'a str,
    report: VerifyReport,
    /// The chain hash the next record must carry; None after a damaged
    /// record, so one fault is reported once rather than at every record.
    prev: Option<Hash>,
    expected: u64,
    last_seq: u64,
    first: u64,
    anchor: Option<Anchor>,
    anchor_recorded: bool,
}

impl<'a> Walk<'a> {
    /// Start a walk. `anchor` is the mission's prune anchor as read (an
    /// error: what was wrong with it): a pruned log starts there, its first
    /// kept record must carry the anchor's hash, and a `history_pruned`
    /// event must name it.
    pub(crate) fn new(
        mission: MissionNo,
        name: &'a str,
        anchor: std::result::Result<Option<Anchor>, String>,
    ) -> Walk<'a> {
        let mut walk = Walk {
            mission,
            name,
            report: VerifyReport {
                mission_id: name.to_string(),
                events_checked: 0,
                head_sequence: 0,
                head_hash: String::new(),
                problems: Vec::new(),
                notes: Vec::new(),
            },
            prev: Some(GENESIS),
            expected: 1,
            last_seq: 0,
            first: 1,
            anchor: None,
            anchor_recorded: false,
        };
        match anchor {
            Ok(a) => walk.anchor = a,
            Err(e) => {
                walk.problem(None, format!("prune anchor: {e}"));
                walk.prev = None;
            }
        }
        if let Some(a) = walk.anchor.clone() {
            walk.prev = Some(a.hash);
            walk.expected = a.before;
            walk.last_seq = a.before - 1;
            if *blake3::hash(&a.state_bytes).as_bytes() != a.state_hash {
                walk.problem(
                    Some(a.before - 1),
                    "prune anchor: the state it keeps does not match its hash (tampered)".into(),
                );
            }
        }
        walk.first = walk.expected;
        walk
    }

    /// The first sequence the log holds (1 unless pruned): records below
    /// it were left by an interrupted prune and are not part of the log.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// Whether the mission is pruned (its checkpoints may be gone).
    pub(crate) fn pruned(&self) -> bool {
        self.anchor.is_some()
    }

    /// The last sequence seen (or the anchor's, before any record).
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Record a problem (up to [`VerifyReport::MAX_PROBLEMS`]).
    pub(crate) fn problem(&mut self, sequence: Option<u64>, what: String) {
        self.report.add_problem(sequence, what);
    }

    /// A record whose key does not parse: counted, reported, and the chain
    /// is not followed through it.
    pub(crate) fn malformed_key(&mut self, key: &[u8]) {
        self.report.events_checked += 1;
        self.problem(None, format!("malformed event key {key:02x?}"));
        self.prev = None;
    }

    /// Check record `seq` (bytes as stored); the event when it decodes,
    /// for the backend's index checks.
    pub(crate) fn record(&mut self, seq: u64, v: &[u8]) -> Option<Event> {
        self.report.events_checked += 1;
        let expected = self.expected;
        if seq != expected {
            let what = if seq > expected {
                format!(
                    "sequence {seq} follows {}: sequence {expected} is missing",
                    expected - 1
                )
            } else {
                format!("sequence {seq} is out of order")
            };
            self.problem(Some(seq), what);
            self.prev = None;
        }
        self.expected = seq + 1;
        self.last_seq = seq;
        if let Err(e) = codec::check_record(v) {
            self.problem(Some(seq), e);
            self.prev = None;
            return None;
        }
        // A record that does not decode is reported as such first; the
        // chain is still followed through it (its hash is well defined).
        let decoded = codec::decode_event(seq, v);
        if let Err(e) = &decoded {
            self.problem(Some(seq), e.clone());
        }
        let stored_prev = codec::prev_hash(v);
        if let Some(p) = self.prev {
            if p != stored_prev {
                self.problem(
                    Some(seq),
                    format!(
                        "hash chain broken: record expects previous hash {}, previous record hashes to {}",
                        hex(&stored_prev),
                        hex(&p)
                    ),
                );
            }
        }
        self.prev = Some(codec::record_hash(&keys::event_key(self.mission, seq), v));
        if v[0] != codec::FORMAT_V1 && codec::frame(v).is_ok_and(|f| f.mission_id != self.name) {
            // Not named: it may be another mission's id.
            self.problem(
                Some(seq),
                "record carries another mission's id (moved or forged)".into(),
            );
        }
        let event = decoded.ok()?;
        self.check_body(seq, &event);
        Some(event)
    }

    /// The prune anchor's record and the creation record's rules.
    fn check_body(&mut self, seq: u64, event: &Event) {
        if let (
            EventBody::HistoryPruned {
                before,
                anchor_hash,
                state_hash,
            },
            Some(a),
        ) = (&event.body, &self.anchor)
        {
            if *before == a.before {
                self.anchor_recorded = true;
                if *anchor_hash != a.hash || *state_hash != a.state_hash {
                    let what = format!(
                        "prune anchor differs from the history_pruned event that \
                         recorded it (anchor hash {}, event says {}; tampered)",
                        hex(&a.hash),
                        hex(anchor_hash)
                    );
                    self.problem(Some(seq), what);
                }
            }
        }
        let first = self.first;
        match (&event.body, seq) {
            (_, s) if s == first && first > 1 => {}
            (
                EventBody::MissionCreated { mission_id, .. }
                | EventBody::MissionForked { mission_id, .. },
                1,
            ) if mission_id != self.name => self.problem(
                Some(1),
                format!("creation record names mission '{mission_id}'"),
            ),
            (EventBody::MissionCreated { .. } | EventBody::MissionForked { .. }, 1) => {}
            (_, 1) => self.problem(
                Some(1),
                format!(
                    "first record is a {}, not mission_created",
                    event.event_type()
                ),
            ),
            (EventBody::MissionCreated { .. } | EventBody::MissionForked { .. }, _) => {
                self.problem(Some(seq), "a second mission_created record".to_string())
            }
            _ => {}
        }
    }

    /// After the last record: the anchor must have been recorded, and the
    /// head must be where the log ends, with its hash.
    pub(crate) fn finish(mut self, head: HeadEntry) -> VerifyReport {
        if let (Some(a), false) = (&self.anchor, self.anchor_recorded) {
            let (at, what) = (
                a.before,
                format!(
                    "prune anchor before sequence {} is not recorded by any history_pruned \
                     event (forged or tampered)",
                    a.before
                ),
            );
            self.problem(Some(at), what);
        }
        let last_seq = self.last_seq;
        match head {
            HeadEntry::Missing if last_seq > 0 => {
                self.problem(None, "head entry is missing".into())
            }
            HeadEntry::Missing => {}
            HeadEntry::Malformed => self.problem(None, "head entry is malformed".into()),
            HeadEntry::Found(head_seq, head_hash) => {
                self.report.head_sequence = head_seq;
                self.report.head_hash = hex(&head_hash);
                if head_seq > last_seq {
                    self.problem(
                        Some(last_seq + 1),
                        format!(
                            "head is sequence {head_seq} but the log ends at {last_seq}: \
                             records {}..={head_seq} are missing",
                            last_seq + 1
                        ),
                    );
                } else if head_seq < last_seq {
                    self.problem(
                        Some(head_seq + 1),
                        format!("log holds records past the head ({head_seq}) up to {last_seq}"),
                    );
                } else if self.prev.is_some_and(|p| p != head_hash) {
                    self.problem(
                        Some(head_seq),
                        "head hash does not match the last record's hash (the log was rewritten)"
                            .into(),
                    );
                }
            }
        }
        self.report
    }
}
