//! Verification of one mission in ONE consistent snapshot (a REPEATABLE
//! READ, READ ONLY transaction): the same checks, in the same order and
//! words, as the sled backend's (`sled_backend/verify.rs`): sequences,
//! checksums, the hash chain, the head, the creation record, and both
//! directions of the indexes; a pruned mission from its anchor (read in the
//! same snapshot). The mission's index rows are held in memory
//! while its records stream by (about 40 bytes per event).

use std::collections::HashMap;

use uuid::Uuid;

use super::PgStore;
use crate::codec::{self, Anchor, Hash, GENESIS};
use crate::error::{Error, Result};
use crate::event::{EventBody, EventType};
use crate::keys::{self, MissionNo};
use crate::store::hex;
use crate::verify::{Problem, VerifyReport};

impl PgStore {
    /// Check one mission's log, chain, head and index entries.
    pub(crate) fn verify(&self, mission: MissionNo, name: &str) -> Result<VerifyReport> {
        let name = name.to_string();
        self.run(move |c| async move {
            let mut guard = c.writer().await?;
            let client = guard.as_mut().expect("connected");
            let pg = |e| c.err(e);
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(pg)?;
            let m = mission as i64;
            let index = |table: &'static str, id_col: &'static str| {
                let tx = &tx;
                async move {
                    let rows = tx
                        .query(
                            &format!("SELECT {id_col}, seq FROM {table} WHERE mission = $1"),
                            &[&m],
                        )
                        .await
                        .map_err(pg)?;
                    Ok::<HashMap<Uuid, u64>, Error>(
                        rows.iter()
                            .map(|r| (r.get::<_, Uuid>(0), r.get::<_, i64>(1) as u64))
                            .collect(),
                    )
                }
            };
            let ids = index("mb_event_ids", "event_id").await?;
            let cps = index("mb_checkpoints", "id").await?;
            let hos = index("mb_handoffs", "id").await?;
            let mut report = VerifyReport {
                mission_id: name.clone(),
                events_checked: 0,
                head_sequence: 0,
                head_hash: String::new(),
                problems: Vec::new(),
                notes: Vec::new(),
            };
            let problem = |report: &mut VerifyReport, seq: Option<u64>, what: String| {
                if report.problems.len() < VerifyReport::MAX_PROBLEMS {
                    report.problems.push(Problem {
                        sequence: seq,
                        what,
                    });
                }
            };
            // What each record's id turned out to be, for the reverse check.
            let mut seen: HashMap<u64, (Uuid, EventType)> = HashMap::new();
            let mut prev: Option<Hash> = Some(GENESIS);
            let mut expected = 1u64;
            let mut last_seq = 0u64;
            // A pruned log starts at its anchor, whose hash the first kept
            // record must carry; the `history_pruned` event must name it.
            let anchor_row = tx
                .query_opt("SELECT anchor FROM mb_anchors WHERE mission = $1", &[&m])
                .await
                .map_err(pg)?;
            let anchor = match anchor_row.map(|r| Anchor::decode(&r.get::<_, Vec<u8>>(0))) {
                None => None,
                Some(Ok(a)) => Some(a),
                Some(Err(e)) => {
                    problem(&mut report, None, format!("prune anchor: {e}"));
                    prev = None;
                    None
                }
            };
            let mut anchor_recorded = false;
            if let Some(a) = &anchor {
                prev = Some(a.hash);
                expected = a.before;
                last_seq = a.before - 1;
                if *blake3::hash(&a.state_bytes).as_bytes() != a.state_hash {
                    problem(
                        &mut report,
                        Some(a.before - 1),
                        "prune anchor: the state it keeps does not match its hash (tampered)"
                            .into(),
                    );
                }
            }
            let first = expected;
            // Rows below the anchor are not part of the log (a prune
            // removes them in its own transaction).
            let mut after = first as i64 - 1;
            loop {
                let rows = tx
                    .query(
                        "SELECT seq, record FROM mb_events WHERE mission = $1 AND seq > $2
                         ORDER BY seq LIMIT $3",
                        &[&m, &after, &super::SCAN_CHUNK],
                    )
                    .await
                    .map_err(pg)?;
                let n = rows.len();
                for row in rows {
                    let seq = row.get::<_, i64>(0) as u64;
                    let v: Vec<u8> = row.get(1);
                    after = seq as i64;
                    report.events_checked += 1;
                    if seq != expected {
                        let what = format!(
                            "sequence {seq} follows {}: sequence {expected} is missing",
                            expected - 1
                        );
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
                    prev = Some(codec::record_hash(&keys::event_key(mission, seq), &v));
                    if v[0] != codec::FORMAT_V1
                        && codec::frame(&v).is_ok_and(|f| f.mission_id != name)
                    {
                        problem(
                            &mut report,
                            Some(seq),
                            "record carries another mission's id (moved or forged)".into(),
                        );
                    }
                    let Ok(event) = decoded else {
                        continue;
                    };
                    seen.insert(seq, (event.id, event.event_type()));
                    if let (
                        EventBody::HistoryPruned {
                            before,
                            anchor_hash,
                            state_hash,
                        },
                        Some(a),
                    ) = (&event.body, &anchor)
                    {
                        if *before == a.before {
                            anchor_recorded = true;
                            if *anchor_hash != a.hash || *state_hash != a.state_hash {
                                problem(
                                    &mut report,
                                    Some(seq),
                                    format!(
                                        "prune anchor differs from the history_pruned event that \
                                         recorded it (anchor hash {}, event says {}; tampered)",
                                        hex(&a.hash),
                                        hex(anchor_hash)
                                    ),
                                );
                            }
                        }
                    }
                    match (&event.body, seq) {
                        (_, s) if s == first && first > 1 => {}
                        (
                            EventBody::MissionCreated { mission_id, .. }
                            | EventBody::MissionForked { mission_id, .. },
                            1,
                        ) if *mission_id != name => problem(
                            &mut report,
                            Some(1),
                            format!("creation record names mission '{mission_id}'"),
                        ),
                        (EventBody::MissionCreated { .. } | EventBody::MissionForked { .. }, 1) => {}
                        (_, 1) => problem(
                            &mut report,
                            Some(1),
                            format!(
                                "first record is a {}, not mission_created",
                                event.event_type()
                            ),
                        ),
                        (
                            EventBody::MissionCreated { .. } | EventBody::MissionForked { .. },
                            _,
                        ) => problem(
                            &mut report,
                            Some(seq),
                            "a second mission_created record".to_string(),
                        ),
                        _ => {}
                    }
                    let expect = |report: &mut VerifyReport, map: &HashMap<Uuid, u64>, what: &str| {
                        match map.get(&event.id) {
                            Some(s) if *s == seq => {}
                            Some(s) => problem(
                                report,
                                Some(seq),
                                format!(
                                    "{what} index entry for {} points at mission #{mission} sequence {s}",
                                    event.id
                                ),
                            ),
                            None => problem(
                                report,
                                Some(seq),
                                format!("{what} index has no entry for {}", event.id),
                            ),
                        }
                    };
                    expect(&mut report, &ids, "event_ids");
                    match &event.body {
                        EventBody::Checkpoint { .. } => expect(&mut report, &cps, "checkpoints"),
                        EventBody::Handoff { checkpoint_id, .. } => {
                            expect(&mut report, &hos, "handoffs");
                            let earlier = match cps.get(checkpoint_id) {
                                Some(s) => *s < seq,
                                // Its checkpoint may have been pruned.
                                None => anchor.is_some(),
                            };
                            if !earlier {
                                problem(
                                    &mut report,
                                    Some(seq),
                                    format!("handoff names checkpoint {checkpoint_id}, which is not an earlier checkpoint of this mission"),
                                );
                            }
                        }
                        _ => {}
                    }
                }
                if (n as i64) < super::SCAN_CHUNK {
                    break;
                }
            }
            if let (Some(a), false) = (&anchor, anchor_recorded) {
                problem(
                    &mut report,
                    Some(a.before),
                    format!(
                        "prune anchor before sequence {} is not recorded by any history_pruned \
                         event (forged or tampered)",
                        a.before
                    ),
                );
            }
            let head = tx
                .query_opt(
                    "SELECT head_seq, head_hash FROM mb_missions WHERE no = $1",
                    &[&m],
                )
                .await
                .map_err(pg)?;
            match head {
                None if last_seq > 0 => problem(&mut report, None, "head entry is missing".into()),
                None => {}
                Some(row) => {
                    let head_seq = row.get::<_, i64>(0) as u64;
                    match Hash::try_from(row.get::<_, Vec<u8>>(1)) {
                        Err(_) => problem(&mut report, None, "head entry is malformed".into()),
                        Ok(head_hash) => {
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
                                    format!("log holds records past the head ({head_seq}) up to {last_seq}"),
                                );
                            } else if prev.is_some_and(|p| p != head_hash) {
                                problem(
                                    &mut report,
                                    Some(head_seq),
                                    "head hash does not match the last record's hash (the log was rewritten)".into(),
                                );
                            }
                        }
                    }
                }
            }
            // Reverse direction: every index row of this mission points at
            // an event with that id and of that kind.
            for (map, what, kind) in [
                (&ids, "event_ids", None),
                (&cps, "checkpoints", Some(EventType::Checkpoint)),
                (&hos, "handoffs", Some(EventType::Handoff)),
            ] {
                let mut entries: Vec<(&Uuid, &u64)> = map.iter().collect();
                entries.sort_by_key(|(_, s)| **s);
                for (id, seq) in entries {
                    let ok = match seen.get(seq) {
                        Some((eid, t)) => eid == id && kind.is_none_or(|k| *t == k),
                        // Undecodable: reported above; below the anchor:
                        // pointing at nothing.
                        None => *seq >= first && last_seq >= *seq,
                    };
                    if !ok {
                        let noun = match kind {
                            None => "event",
                            Some(EventType::Checkpoint) => "checkpoint",
                            Some(_) => "handoff",
                        };
                        problem(
                            &mut report,
                            Some(*seq),
                            format!("{what} index entry {id} points at a record that is not that {noun}"),
                        );
                    }
                }
            }
            tx.commit().await.map_err(pg)?;
            Ok(report)
        })
    }
}
