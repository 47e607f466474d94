//! The commit transaction: one per commit group.
//!
//! Inside it: new missions are registered (`ON CONFLICT (name) DO NOTHING`:
//! a name another process took is `MissionExists`), every touched
//! mission's row is locked in mission-number order (`FOR UPDATE`: no
//! deadlock between processes), each plan's previous sequence is checked
//! against the locked head (another process moved it: `SequenceConflict`,
//! and the bus re-reads and re-plans), the records are chained on the
//! locked head's hash, then events, index rows and heads are written with
//! one statement each, and a notification names the moved missions
//! (delivered at commit, for other processes' live streams).

use std::collections::HashMap;

use uuid::Uuid;

use super::PgStore;
use crate::codec::{self, Hash};
use crate::error::{Error, Result};
use crate::event::{Event, EventBody};
use crate::store::PlannedAppend;

/// The notification channel other processes LISTEN on.
pub(crate) const CHANNEL: &str = "mission_bus";

/// What the transaction needs of a plan, owned (the future is `'static`).
struct Plan {
    mission: i64,
    mission_id: String,
    register: Option<String>,
    replace_orphan_ids: bool,
    prev_seq: u64,
    events: Vec<Event>,
}

impl PgStore {
    /// Write a commit group in one transaction; durable when it returns
    /// (per the session's `synchronous_commit`).
    pub(crate) fn commit(&self, plans: &[PlannedAppend]) -> Result<Vec<(u64, Hash)>> {
        let plans: Vec<Plan> = plans
            .iter()
            .map(|p| Plan {
                mission: p.mission as i64,
                mission_id: p.mission_id.clone(),
                register: p.register.clone(),
                replace_orphan_ids: p.replace_orphan_ids,
                prev_seq: p.prev_seq,
                events: p.events.clone(),
            })
            .collect();
        self.run(move |c| async move {
            let mut guard = c.writer().await?;
            let client = guard.as_mut().expect("connected");
            let pg = |e| c.err(e);
            let tx = client.transaction().await.map_err(pg)?;
            for p in &plans {
                if let Some(name) = &p.register {
                    let n = tx
                        .execute(
                            "INSERT INTO mb_missions (no, name, head_seq, head_hash)
                             VALUES ($1, $2, 0, $3) ON CONFLICT (name) DO NOTHING",
                            &[&p.mission, name, &codec::GENESIS.as_slice()],
                        )
                        .await
                        .map_err(pg)?;
                    if n == 0 {
                        return Err(Error::MissionExists {
                            mission: name.clone(),
                        });
                    }
                }
            }
            let mut nos: Vec<i64> = plans.iter().map(|p| p.mission).collect();
            nos.sort_unstable();
            nos.dedup();
            let rows = tx
                .query(
                    "SELECT no, head_seq, head_hash FROM mb_missions
                     WHERE no = ANY($1) ORDER BY no FOR UPDATE",
                    &[&nos],
                )
                .await
                .map_err(pg)?;
            let mut heads: HashMap<i64, (u64, Hash)> = HashMap::new();
            for row in rows {
                let no: i64 = row.get(0);
                let seq: i64 = row.get(1);
                let hash: Vec<u8> = row.get(2);
                let hash: Hash = hash.try_into().map_err(|_| {
                    Error::corruption(format!("#{no}"), None, "head entry is malformed")
                })?;
                heads.insert(no, (seq as u64, hash));
            }
            let mut ev = (Vec::new(), Vec::new(), Vec::new());
            let mut ids = (Vec::new(), Vec::new(), Vec::new());
            let mut replace = (Vec::new(), Vec::new(), Vec::new());
            let mut cps = (Vec::new(), Vec::new(), Vec::new());
            let mut hos = (Vec::new(), Vec::new(), Vec::new());
            let mut out = Vec::with_capacity(plans.len());
            for p in &plans {
                let Some(&(mut seq, mut hash)) = heads.get(&p.mission) else {
                    return Err(Error::MissionNotFound {
                        mission: p.mission_id.clone(),
                    });
                };
                if seq != p.prev_seq {
                    return Err(Error::SequenceConflict {
                        mission: p.mission_id.clone(),
                        expected: p.prev_seq,
                        head: seq,
                    });
                }
                for event in &p.events {
                    if event.sequence != seq + 1 {
                        return Err(Error::corruption(
                            &p.mission_id,
                            Some(event.sequence),
                            format!(
                                "planned sequence {}, next is {} (bug in the planner)",
                                event.sequence,
                                seq + 1
                            ),
                        ));
                    }
                    seq += 1;
                    let enc = codec::encode_event(&p.mission_id, event, &hash);
                    ev.0.push(p.mission);
                    ev.1.push(seq as i64);
                    ev.2.push(enc.value);
                    let target = if p.replace_orphan_ids {
                        &mut replace
                    } else {
                        &mut ids
                    };
                    target.0.push(p.mission);
                    target.1.push(event.id);
                    target.2.push(seq as i64);
                    let index = match event.body {
                        EventBody::Checkpoint { .. } => Some(&mut cps),
                        EventBody::Handoff { .. } => Some(&mut hos),
                        _ => None,
                    };
                    if let Some(index) = index {
                        index.0.push(event.id);
                        index.1.push(p.mission);
                        index.2.push(seq as i64);
                    }
                    hash = enc.hash;
                }
                heads.insert(p.mission, (seq, hash));
                out.push((seq, hash));
            }
            tx.execute(
                "INSERT INTO mb_events (mission, seq, record)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])",
                &[&ev.0, &ev.1, &ev.2],
            )
            .await
            .map_err(pg)?;
            if !ids.0.is_empty() {
                let r = tx
                    .execute(
                        "INSERT INTO mb_event_ids (mission, event_id, seq)
                         SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bigint[])",
                        &[&ids.0, &ids.1, &ids.2],
                    )
                    .await;
                if let Err(e) = r {
                    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                        return Err(duplicate_id(&ids.1));
                    }
                    return Err(pg(e));
                }
            }
            if !replace.0.is_empty() {
                tx.execute(
                    "INSERT INTO mb_event_ids (mission, event_id, seq)
                     SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bigint[])
                     ON CONFLICT (mission, event_id) DO UPDATE SET seq = EXCLUDED.seq",
                    &[&replace.0, &replace.1, &replace.2],
                )
                .await
                .map_err(pg)?;
            }
            for (table, rows) in [("mb_checkpoints", &cps), ("mb_handoffs", &hos)] {
                if rows.0.is_empty() {
                    continue;
                }
                tx.execute(
                    &format!(
                        "INSERT INTO {table} (id, mission, seq)
                         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[])
                         ON CONFLICT (id) DO UPDATE
                         SET mission = EXCLUDED.mission, seq = EXCLUDED.seq"
                    ),
                    &[&rows.0, &rows.1, &rows.2],
                )
                .await
                .map_err(pg)?;
            }
            let (h_no, h_seq, h_hash): (Vec<i64>, Vec<i64>, Vec<Vec<u8>>) = {
                let mut a = (Vec::new(), Vec::new(), Vec::new());
                for (no, (seq, hash)) in &heads {
                    a.0.push(*no);
                    a.1.push(*seq as i64);
                    a.2.push(hash.to_vec());
                }
                a
            };
            tx.execute(
                "UPDATE mb_missions m SET head_seq = u.s, head_hash = u.h
                 FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) AS u(no, s, h)
                 WHERE m.no = u.no",
                &[&h_no, &h_seq, &h_hash],
            )
            .await
            .map_err(pg)?;
            let payload: Vec<String> = h_no
                .iter()
                .zip(&h_seq)
                .map(|(no, seq)| format!("{no}:{seq}"))
                .collect();
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload.join(",")])
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(out)
        })
    }
}

/// Another process stored one of these ids first (a concurrent retry).
fn duplicate_id(ids: &[Uuid]) -> Error {
    let id = ids.first().map(|u| u.to_string()).unwrap_or_default();
    Error::InvalidInput {
        field: "event id".into(),
        reason: format!("{id} is already stored"),
    }
}
