//! The sled backend's structural verification of one mission: sequences,
//! checksums, the hash chain, the head, and both directions of every index.

use uuid::Uuid;

use super::{describe_target, index_name, SledStore};
use crate::codec::{self, Hash, GENESIS};
use crate::error::Result;
use crate::event::{EventBody, EventType};
use crate::keys::{self, MissionNo};
use crate::store::{hex, Index};
use crate::verify::{Problem, VerifyReport};

impl SledStore {
    /// Check one mission's log, chain, head and index entries.
    pub(crate) fn verify(&self, mission: MissionNo, name: &str) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            mission_id: name.to_string(),
            events_checked: 0,
            head_sequence: 0,
            head_hash: String::new(),
            problems: Vec::new(),
        };
        let problem = |report: &mut VerifyReport, seq: Option<u64>, what: String| {
            if report.problems.len() < VerifyReport::MAX_PROBLEMS {
                report.problems.push(Problem {
                    sequence: seq,
                    what,
                });
            }
        };
        // The chain hash the next record must carry; None after a damaged
        // record, so one fault is reported once rather than at every record.
        let mut prev: Option<Hash> = Some(GENESIS);
        let mut expected = 1u64;
        let mut last_seq = 0u64;
        for item in self.events.scan_prefix(keys::mission_key(mission)) {
            let (k, v) = item?;
            report.events_checked += 1;
            let Some((_, seq)) = keys::parse_event_key(&k) else {
                problem(
                    &mut report,
                    None,
                    format!("malformed event key {:02x?}", k.as_ref()),
                );
                prev = None;
                continue;
            };
            if seq != expected {
                let what = if seq > expected {
                    format!(
                        "sequence {seq} follows {}: sequence {expected} is missing",
                        expected - 1
                    )
                } else {
                    format!("sequence {seq} is out of order")
                };
                problem(&mut report, Some(seq), what);
                prev = None;
            }
            expected = seq + 1;
            last_seq = seq;
            if let Err(e) = codec::check_record(&v) {
                problem(&mut report, Some(seq), e);
                prev = None;
                continue;
            }
            // A record that does not decode is reported as such first; the
            // chain is still followed through it (its hash is well defined).
            let decoded = codec::decode_event(seq, &v);
            if let Err(e) = &decoded {
                problem(&mut report, Some(seq), e.clone());
            }
            let stored_prev = codec::prev_hash(&v);
            if let Some(p) = prev {
                if p != stored_prev {
                    problem(
                        &mut report,
                        Some(seq),
                        format!(
                            "hash chain broken: record expects previous hash {}, previous record hashes to {}",
                            hex(&stored_prev),
                            hex(&p)
                        ),
                    );
                }
            }
            prev = Some(codec::record_hash(&k, &v));
            if v[0] != codec::FORMAT_V1 && codec::frame(&v).is_ok_and(|f| f.mission_id != name) {
                // Not named: it may be another mission's id.
                problem(
                    &mut report,
                    Some(seq),
                    "record carries another mission's id (moved or forged)".into(),
                );
            }
            let Ok(event) = decoded else {
                continue;
            };
            match (&event.body, seq) {
                (EventBody::MissionCreated { mission_id, .. }, 1) if mission_id != name => problem(
                    &mut report,
                    Some(1),
                    format!("creation record names mission '{mission_id}'"),
                ),
                (EventBody::MissionCreated { .. }, 1) => {}
                (_, 1) => problem(
                    &mut report,
                    Some(1),
                    format!(
                        "first record is a {}, not mission_created",
                        event.event_type()
                    ),
                ),
                (EventBody::MissionCreated { .. }, _) => problem(
                    &mut report,
                    Some(seq),
                    "a second mission_created record".to_string(),
                ),
                _ => {}
            }
            let key = keys::event_key(mission, seq);
            let expect_index = |report: &mut VerifyReport, index: Index| -> Result<()> {
                let found = match index {
                    Index::EventIds => self
                        .event_ids
                        .get(keys::event_id_key(mission, event.id.as_bytes()))?,
                    _ => self.index_tree(index).get(event.id.as_bytes())?,
                };
                match found {
                    Some(v) if v.as_ref() == key => {}
                    Some(v) => problem(
                        report,
                        Some(seq),
                        format!(
                            "{} index entry for {} points at {}",
                            index_name(index),
                            event.id,
                            describe_target(&v)
                        ),
                    ),
                    None => problem(
                        report,
                        Some(seq),
                        format!("{} index has no entry for {}", index_name(index), event.id),
                    ),
                }
                Ok(())
            };
            expect_index(&mut report, Index::EventIds)?;
            match &event.body {
                EventBody::Checkpoint { .. } => expect_index(&mut report, Index::Checkpoints)?,
                EventBody::Handoff { checkpoint_id, .. } => {
                    expect_index(&mut report, Index::Handoffs)?;
                    match self.lookup(Index::Checkpoints, checkpoint_id)? {
                        Some((m, s)) if m == mission && s < seq => {}
                        _ => problem(
                            &mut report,
                            Some(seq),
                            format!("handoff names checkpoint {checkpoint_id}, which is not an earlier checkpoint of this mission"),
                        ),
                    }
                }
                _ => {}
            }
        }
        match self.heads.get(keys::mission_key(mission))? {
            None if last_seq > 0 => problem(&mut report, None, "head entry is missing".into()),
            None => {}
            Some(v) => match keys::parse_head(&v) {
                None => problem(&mut report, None, "head entry is malformed".into()),
                Some((head_seq, head_hash)) => {
                    report.head_sequence = head_seq;
                    report.head_hash = hex(&head_hash);
                    if head_seq > last_seq {
                        problem(
                            &mut report,
                            Some(last_seq + 1),
                            format!("head is sequence {head_seq} but the log ends at {last_seq}: records {}..={head_seq} are missing", last_seq + 1),
                        );
                    } else if head_seq < last_seq {
                        problem(
                            &mut report,
                            Some(head_seq + 1),
                            format!(
                                "log holds records past the head ({head_seq}) up to {last_seq}"
                            ),
                        );
                    } else if prev.is_some_and(|p| p != head_hash) {
                        problem(
                            &mut report,
                            Some(head_seq),
                            "head hash does not match the last record's hash (the log was rewritten)".into(),
                        );
                    }
                }
            },
        }
        // Reverse direction: every index entry pointing into this mission
        // points at an event with that id and of that kind.
        for index in [Index::EventIds, Index::Checkpoints, Index::Handoffs] {
            // `event_ids` is scoped: only this mission's prefix can point here.
            let entries = match index {
                Index::EventIds => self.event_ids.scan_prefix(keys::mission_key(mission)),
                _ => self.index_tree(index).iter(),
            };
            for item in entries {
                let (key, target) = item?;
                let id = match index {
                    Index::EventIds => key.subslice(8, key.len().saturating_sub(8)),
                    _ => key,
                };
                let Some((m, seq)) = keys::parse_event_key(&target) else {
                    continue;
                };
                if m != mission {
                    continue;
                }
                let ok = match self.events.get(&target)? {
                    Some(v) => match codec::decode_event(seq, &v) {
                        Ok(e) => {
                            e.id.as_bytes() == id.as_ref()
                                && match index {
                                    Index::EventIds => true,
                                    Index::Checkpoints => e.event_type() == EventType::Checkpoint,
                                    Index::Handoffs => e.event_type() == EventType::Handoff,
                                }
                        }
                        Err(_) => true, // already reported above
                    },
                    None => false,
                };
                if !ok {
                    let id = Uuid::from_slice(&id)
                        .map(|u| u.to_string())
                        .unwrap_or_else(|_| hex(&id));
                    problem(
                        &mut report,
                        Some(seq),
                        format!(
                            "{} index entry {id} points at a record that is not that {}",
                            index_name(index),
                            match index {
                                Index::EventIds => "event",
                                Index::Checkpoints => "checkpoint",
                                Index::Handoffs => "handoff",
                            }
                        ),
                    );
                }
            }
        }
        Ok(report)
    }
}
