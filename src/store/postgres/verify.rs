//! Verification of one mission in ONE consistent snapshot (a REPEATABLE
//! READ, READ ONLY transaction): the same checks, in the same order and
//! words, as the sled backend's (both walk the records through
//! `store/walk.rs`, then check their own index rows): sequences,
//! checksums, the hash chain, the head, the creation record, and both
//! directions of the indexes; a pruned mission from its anchor (read in the
//! same snapshot). The mission's index rows are held in memory
//! while its records stream by (about 40 bytes per event).

use std::collections::HashMap;

use uuid::Uuid;

use super::PgStore;
use crate::codec::{Anchor, Hash};
use crate::error::{Error, Result};
use crate::event::{EventBody, EventType};
use crate::keys::MissionNo;
use crate::store::walk::{HeadEntry, Walk};
use crate::verify::VerifyReport;

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
            // What each record's id turned out to be, for the reverse check.
            let mut seen: HashMap<u64, (Uuid, EventType)> = HashMap::new();
            let anchor_row = tx
                .query_opt("SELECT anchor FROM mb_anchors WHERE mission = $1", &[&m])
                .await
                .map_err(pg)?;
            let anchor = anchor_row
                .map(|r| Anchor::decode(&r.get::<_, Vec<u8>>(0)))
                .transpose();
            let mut walk = Walk::new(mission, &name, anchor);
            let first = walk.first();
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
                    let Some(event) = walk.record(seq, &v) else {
                        continue;
                    };
                    seen.insert(seq, (event.id, event.event_type()));
                    let expect = |walk: &mut Walk, map: &HashMap<Uuid, u64>, what: &str| {
                        match map.get(&event.id) {
                            Some(s) if *s == seq => {}
                            Some(s) => walk.problem(
                                Some(seq),
                                format!(
                                    "{what} index entry for {} points at mission #{mission} sequence {s}",
                                    event.id
                                ),
                            ),
                            None => walk.problem(
                                Some(seq),
                                format!("{what} index has no entry for {}", event.id),
                            ),
                        }
                    };
                    expect(&mut walk, &ids, "event_ids");
                    match &event.body {
                        EventBody::Checkpoint { .. } => expect(&mut walk, &cps, "checkpoints"),
                        EventBody::Handoff { checkpoint_id, .. } => {
                            expect(&mut walk, &hos, "handoffs");
                            let earlier = match cps.get(checkpoint_id) {
                                Some(s) => *s < seq,
                                // Its checkpoint may have been pruned.
                                None => walk.pruned(),
                            };
                            if !earlier {
                                walk.problem(
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
            let head = tx
                .query_opt(
                    "SELECT head_seq, head_hash FROM mb_missions WHERE no = $1",
                    &[&m],
                )
                .await
                .map_err(pg)?;
            let head = match head {
                None => HeadEntry::Missing,
                Some(row) => match Hash::try_from(row.get::<_, Vec<u8>>(1)) {
                    Err(_) => HeadEntry::Malformed,
                    Ok(hash) => HeadEntry::Found(row.get::<_, i64>(0) as u64, hash),
                },
            };
            let last_seq = walk.last_seq();
            let mut report = walk.finish(head);
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
                        report.add_problem(
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
