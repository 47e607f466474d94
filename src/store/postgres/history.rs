//! History management on PostgreSQL: prune anchors, pruning (the
//! `history_pruned` event, the anchor and the removal of the records
//! before it, their index rows and a stale snapshot, all in ONE
//! transaction), deleting a mission behind a tombstone (one transaction),
//! raw records for archives, and giving space back (`VACUUM FULL`).
//!
//! Tables (schema version 2, `schema.rs`; docs/format.md):
//! - `mb_anchors (mission, anchor)`: the same bytes as sled's `anchors`
//!   values (`codec::history`);
//! - `mb_tombstones (mission_no, mission_id, head_seq, head_hash,
//!   deleted_at_us, deleted_by)`.
//!
//! Both transactions lock the mission's row (`FOR UPDATE`, as a commit
//! does), so they serialize with every commit and prune of that mission
//! in any process. Appends by other processes after the caller read the
//! head do not invalidate a prune (the anchor depends only on the records
//! below it, which never change): the `history_pruned` event is chained
//! on the locked head. A prune by another process that already reached
//! the same point is `SequenceConflict` (nothing changed; the bus reads
//! again and finds nothing to do); a mission deleted meanwhile is
//! `MissionNotFound`. A delete's tombstone records the locked head.

use super::commit::CHANNEL;
use super::{Conns, PgStore, SCAN_CHUNK};
use crate::codec::{self, Anchor, Hash, Tombstone, GENESIS};
use crate::error::{Error, Result};
use crate::event::EventBody;
use crate::keys::MissionNo;
use crate::store::PlannedAppend;

/// The tables `compact` rewrites (every table of ours that rows leave).
const VACUUMED: &str = "mb_events, mb_event_ids, mb_checkpoints, mb_handoffs, mb_snapshots, \
                        mb_tokens, mb_consumers, mb_anchors, mb_missions";

/// Lock mission `no`'s row (`MissionNotFound` when another process
/// deleted it) and return its head, which must be at least `planned` (the
/// head the caller read: heads never move back).
async fn lock_head(
    tx: &tokio_postgres::Transaction<'_>,
    c: &Conns,
    no: i64,
    name: &str,
    planned: u64,
) -> Result<(u64, Hash)> {
    let row = tx
        .query_opt(
            "SELECT head_seq, head_hash FROM mb_missions WHERE no = $1 FOR UPDATE",
            &[&no],
        )
        .await
        .map_err(|e| c.err(e))?
        .ok_or_else(|| Error::MissionNotFound {
            mission: name.to_string(),
        })?;
    let seq = row.get::<_, i64>(0) as u64;
    let hash: Hash = row
        .get::<_, Vec<u8>>(1)
        .try_into()
        .map_err(|_| Error::corruption(name, None, "head entry is malformed"))?;
    if seq < planned {
        return Err(Error::corruption(
            name,
            None,
            format!("head moved back from {planned} to {seq}"),
        ));
    }
    Ok((seq, hash))
}

/// Delete mission `no`'s records with sequences below `before`, with their
/// index rows; the records deleted.
async fn delete_below(
    tx: &tokio_postgres::Transaction<'_>,
    c: &Conns,
    no: i64,
    before: i64,
) -> Result<u64> {
    let pg = |e| c.err(e);
    let removed = tx
        .execute(
            "DELETE FROM mb_events WHERE mission = $1 AND seq < $2",
            &[&no, &before],
        )
        .await
        .map_err(pg)?;
    for table in ["mb_event_ids", "mb_checkpoints", "mb_handoffs"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE mission = $1 AND seq < $2"),
            &[&no, &before],
        )
        .await
        .map_err(pg)?;
    }
    Ok(removed)
}

impl PgStore {
    /// The prune anchor of a mission, if it was ever pruned. A damaged
    /// anchor is corruption of that mission.
    pub(crate) fn anchor(&self, mission: MissionNo, name: &str) -> Result<Option<Anchor>> {
        let name = name.to_string();
        self.run(move |c| async move {
            let client = c.reader().await?;
            let row = client
                .query_opt(
                    "SELECT anchor FROM mb_anchors WHERE mission = $1",
                    &[&(mission as i64)],
                )
                .await
                .map_err(|e| c.err(e))?;
            match row {
                None => Ok(None),
                Some(r) => Anchor::decode(&r.get::<_, Vec<u8>>(0))
                    .map(Some)
                    .map_err(|e| Error::corruption(&name, None, e)),
            }
        })
    }

    /// The first sequence a mission's log holds and the chain hash its
    /// record carries: `(1, zeros)` unless pruned.
    pub(crate) fn first_kept(&self, mission: MissionNo, name: &str) -> Result<(u64, Hash)> {
        Ok(match self.anchor(mission, name)? {
            Some(a) => (a.before, a.hash),
            None => (1, GENESIS),
        })
    }

    /// Prune in ONE transaction: lock the mission's row, check no prune
    /// reached `anchor.before` meanwhile, append the `history_pruned` event
    /// of `plan` at the locked head + 1 (chained on it), write the anchor,
    /// delete the records below `anchor.before` with their index rows, and
    /// drop a snapshot older than the anchor. Returns the new head and the
    /// records deleted.
    pub(crate) fn commit_prune(
        &self,
        plan: &PlannedAppend,
        anchor: &Anchor,
    ) -> Result<((u64, Hash), u64)> {
        let (no, name, prev) = (plan.mission as i64, plan.mission_id.clone(), plan.prev_seq);
        let mut event = match plan.events.as_slice() {
            [e] if matches!(e.body, EventBody::HistoryPruned { .. }) => e.clone(),
            _ => {
                return Err(Error::corruption(
                    &name,
                    None,
                    "a prune commits exactly one history_pruned event (bug in the planner)",
                ))
            }
        };
        let (value, before) = (anchor.encode(), anchor.before as i64);
        self.run(move |c| async move {
            let mut guard = c.writer().await?;
            let client = guard.as_mut().expect("connected");
            let pg = |e| c.err(e);
            let tx = client.transaction().await.map_err(pg)?;
            let (seq, hash) = lock_head(&tx, &c, no, &name, prev).await?;
            let current = tx
                .query_opt("SELECT anchor FROM mb_anchors WHERE mission = $1", &[&no])
                .await
                .map_err(pg)?;
            if let Some(row) = current {
                let a = Anchor::decode(&row.get::<_, Vec<u8>>(0))
                    .map_err(|e| Error::corruption(&name, None, e))?;
                if a.before >= before as u64 {
                    // Another process pruned this far first.
                    return Err(Error::SequenceConflict {
                        mission: name.clone(),
                        expected: prev,
                        head: seq,
                    });
                }
            }
            event.sequence = seq + 1;
            let enc = codec::encode_event(&name, &event, &hash);
            let new_seq = (seq + 1) as i64;
            tx.execute(
                "INSERT INTO mb_events (mission, seq, record) VALUES ($1, $2, $3)",
                &[&no, &new_seq, &enc.value],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "INSERT INTO mb_event_ids (mission, event_id, seq) VALUES ($1, $2, $3)",
                &[&no, &event.id, &new_seq],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "UPDATE mb_missions SET head_seq = $2, head_hash = $3 WHERE no = $1",
                &[&no, &new_seq, &enc.hash.as_slice()],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "INSERT INTO mb_anchors (mission, anchor) VALUES ($1, $2)
                 ON CONFLICT (mission) DO UPDATE SET anchor = EXCLUDED.anchor",
                &[&no, &value],
            )
            .await
            .map_err(pg)?;
            let removed = delete_below(&tx, &c, no, before).await?;
            // A snapshot from before the anchor can no longer be extended.
            let snap = tx
                .query_opt("SELECT value FROM mb_snapshots WHERE mission = $1", &[&no])
                .await
                .map_err(pg)?;
            if let Some(row) = snap {
                let stale = codec::decode_snapshot(&row.get::<_, Vec<u8>>(0))
                    .map_or(true, |s| s.sequence + 1 < before as u64);
                if stale {
                    tx.execute("DELETE FROM mb_snapshots WHERE mission = $1", &[&no])
                        .await
                        .map_err(pg)?;
                }
            }
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &format!("{no}:{new_seq}")],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(((new_seq as u64, enc.hash), removed))
        })
    }

    /// Remove records below `before` that are still there (none after a
    /// committed prune: it removes them in its own transaction).
    pub(crate) fn remove_before(
        &self,
        mission: MissionNo,
        _name: &str,
        before: u64,
    ) -> Result<u64> {
        let (no, before) = (mission as i64, before.min(i64::MAX as u64) as i64);
        self.run(move |c| async move {
            let mut guard = c.writer().await?;
            let client = guard.as_mut().expect("connected");
            let tx = client.transaction().await.map_err(|e| c.err(e))?;
            let removed = delete_below(&tx, &c, no, before).await?;
            tx.commit().await.map_err(|e| c.err(e))?;
            Ok(removed)
        })
    }

    /// Delete a mission in ONE transaction: lock its row, remove its
    /// records, index rows, snapshot, anchor, tokens, consumer positions
    /// and its row, and write the tombstone with the locked head (appends
    /// by other processes after `tombstone` was made are in it). Returns
    /// the records removed and the tombstone written.
    pub(crate) fn delete_mission(&self, tombstone: &Tombstone) -> Result<(u64, Tombstone)> {
        let mut t = tombstone.clone();
        self.run(move |c| async move {
            let mut guard = c.writer().await?;
            let client = guard.as_mut().expect("connected");
            let pg = |e| c.err(e);
            let tx = client.transaction().await.map_err(pg)?;
            let no = t.mission_no as i64;
            (t.head_sequence, t.head_hash) =
                lock_head(&tx, &c, no, &t.mission_id, t.head_sequence).await?;
            let removed = delete_below(&tx, &c, no, i64::MAX).await?;
            for table in [
                "mb_event_ids",
                "mb_snapshots",
                "mb_anchors",
                "mb_tokens",
                "mb_consumers",
            ] {
                tx.execute(&format!("DELETE FROM {table} WHERE mission = $1"), &[&no])
                    .await
                    .map_err(pg)?;
            }
            tx.execute("DELETE FROM mb_missions WHERE no = $1", &[&no])
                .await
                .map_err(pg)?;
            tx.execute(
                "INSERT INTO mb_tombstones
                 (mission_no, mission_id, head_seq, head_hash, deleted_at_us, deleted_by)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &no,
                    &t.mission_id,
                    &(t.head_sequence as i64),
                    &t.head_hash.as_slice(),
                    &t.deleted_at_us,
                    &t.deleted_by,
                ],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok((removed, t))
        })
    }

    /// Whether mission number `mission` was deleted (has a tombstone).
    pub(crate) fn deleted(&self, mission: MissionNo) -> Result<bool> {
        self.run(move |c| async move {
            let client = c.reader().await?;
            let row = client
                .query_opt(
                    "SELECT 1 FROM mb_tombstones WHERE mission_no = $1",
                    &[&(mission as i64)],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(row.is_some())
        })
    }

    /// Tombstones, of one mission id or of all, oldest first per id.
    pub(crate) fn tombstones(&self, mission: Option<&str>) -> Result<Vec<Tombstone>> {
        let mission = mission.map(str::to_string);
        self.run(move |c| async move {
            let client = c.reader().await?;
            let rows = client
                .query(
                    "SELECT mission_no, mission_id, head_seq, head_hash, deleted_at_us, deleted_by
                     FROM mb_tombstones WHERE ($1::text IS NULL OR mission_id = $1)
                     ORDER BY mission_id COLLATE \"C\", deleted_at_us, mission_no",
                    &[&mission],
                )
                .await
                .map_err(|e| c.err(e))?;
            rows.iter()
                .map(|r| {
                    let id: String = r.get(1);
                    let head_hash: Hash = r.get::<_, Vec<u8>>(3).try_into().map_err(|_| {
                        Error::corruption(
                            "(mb_tombstones)",
                            None,
                            "tombstone head hash is malformed",
                        )
                    })?;
                    Ok(Tombstone {
                        mission_id: id,
                        head_sequence: r.get::<_, i64>(2) as u64,
                        head_hash,
                        deleted_at_us: r.get(4),
                        deleted_by: r.get(5),
                        mission_no: r.get::<_, i64>(0) as u64,
                    })
                })
                .collect()
        })
    }

    /// The raw records of a mission with sequences `from..=to`, in order,
    /// CRC-checked and contiguous (archives), read in ONE snapshot
    /// (REPEATABLE READ) in chunks.
    pub(crate) fn raw_records(
        &self,
        mission: MissionNo,
        name: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Result<(u64, sled::IVec)>>> {
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
            let mut out = Vec::new();
            let mut expected = from;
            let to = to.min(i64::MAX as u64);
            while expected <= to {
                let rows = tx
                    .query(
                        "SELECT seq, record FROM mb_events
                         WHERE mission = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq LIMIT $4",
                        &[
                            &(mission as i64),
                            &(expected as i64),
                            &(to as i64),
                            &SCAN_CHUNK,
                        ],
                    )
                    .await
                    .map_err(pg)?;
                let n = rows.len();
                for r in rows {
                    let seq = r.get::<_, i64>(0) as u64;
                    let v: Vec<u8> = r.get(1);
                    if seq != expected {
                        out.push(Err(Error::corruption(
                            &name,
                            Some(expected),
                            format!("record missing (next record is sequence {seq})"),
                        )));
                        return Ok(out);
                    }
                    if let Err(e) = codec::check_record(&v) {
                        out.push(Err(Error::corruption(&name, Some(seq), e)));
                        return Ok(out);
                    }
                    out.push(Ok((seq, sled::IVec::from(v))));
                    expected += 1;
                }
                if (n as i64) < SCAN_CHUNK {
                    break;
                }
            }
            tx.commit().await.map_err(pg)?;
            Ok(out)
        })
    }

    /// Give the space of deleted rows back to the operating system:
    /// `VACUUM (FULL, ANALYZE)` of our tables (each rewritten into a new
    /// file; it holds an ACCESS EXCLUSIVE lock on each table while it is
    /// rewritten, so other processes' reads and writes wait meanwhile).
    /// Returns the bytes of our tables before and after.
    pub(crate) fn compact(&self) -> Result<(u64, u64)> {
        let before = self.size_on_disk()?;
        self.run(|c| async move {
            let mut guard = c.writer().await?;
            let client = guard.as_mut().expect("connected");
            client
                .batch_execute(&format!("VACUUM (FULL, ANALYZE) {VACUUMED}"))
                .await
                .map_err(|e| c.err(e))
        })?;
        Ok((before, self.size_on_disk()?))
    }
}

/// Rows per statement of an anchored import.
const IMPORT_ROWS: usize = 10_000;

impl PgStore {
    /// Import a pruned mission (copy) in ONE transaction: register it under
    /// the fresh number `mission` with its head at the anchor (`before - 1`,
    /// the anchor's hash), write the anchor, then the events from `before`
    /// on chained on it, their index rows and the head. Every process sees
    /// all of it or nothing. Returns the new head.
    pub(crate) fn import_anchored(
        &self,
        mission: MissionNo,
        name: &str,
        anchor: &Anchor,
        events: Vec<crate::event::Event>,
    ) -> Result<(u64, Hash)> {
        let (no, name, value) = (mission as i64, name.to_string(), anchor.encode());
        let (mut seq, mut hash) = (anchor.before - 1, anchor.hash);
        self.run(move |c| async move {
            let mut guard = c.writer().await?;
            let client = guard.as_mut().expect("connected");
            let pg = |e| c.err(e);
            let tx = client.transaction().await.map_err(pg)?;
            let n = tx
                .execute(
                    "INSERT INTO mb_missions (no, name, head_seq, head_hash)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                    &[&no, &name, &(seq as i64), &hash.as_slice()],
                )
                .await
                .map_err(pg)?;
            if n == 0 {
                return Err(Error::MissionExists { mission: name });
            }
            tx.execute(
                "INSERT INTO mb_anchors (mission, anchor) VALUES ($1, $2)",
                &[&no, &value],
            )
            .await
            .map_err(pg)?;
            for chunk in events.chunks(IMPORT_ROWS) {
                let (mut seqs, mut records, mut ids) = (Vec::new(), Vec::new(), Vec::new());
                let (mut cps, mut hos) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
                for event in chunk {
                    if event.sequence != seq + 1 {
                        return Err(Error::corruption(
                            &name,
                            Some(event.sequence),
                            format!("import: sequence {}, next is {}", event.sequence, seq + 1),
                        ));
                    }
                    seq += 1;
                    let enc = codec::encode_event(&name, event, &hash);
                    hash = enc.hash;
                    seqs.push(seq as i64);
                    records.push(enc.value);
                    ids.push(event.id);
                    match event.body {
                        EventBody::Checkpoint { .. } => {
                            cps.0.push(event.id);
                            cps.1.push(seq as i64);
                        }
                        EventBody::Handoff { .. } => {
                            hos.0.push(event.id);
                            hos.1.push(seq as i64);
                        }
                        _ => {}
                    }
                }
                tx.execute(
                    "INSERT INTO mb_events (mission, seq, record)
                     SELECT $1, * FROM unnest($2::bigint[], $3::bytea[])",
                    &[&no, &seqs, &records],
                )
                .await
                .map_err(pg)?;
                tx.execute(
                    "INSERT INTO mb_event_ids (mission, event_id, seq)
                     SELECT $1, * FROM unnest($2::uuid[], $3::bigint[])
                     ON CONFLICT (mission, event_id) DO UPDATE SET seq = EXCLUDED.seq",
                    &[&no, &ids, &seqs],
                )
                .await
                .map_err(pg)?;
                for (table, rows) in [("mb_checkpoints", &cps), ("mb_handoffs", &hos)] {
                    if rows.0.is_empty() {
                        continue;
                    }
                    tx.execute(
                        &format!(
                            "INSERT INTO {table} (id, mission, seq)
                             SELECT u.id, $1, u.seq FROM unnest($2::uuid[], $3::bigint[])
                             AS u(id, seq)
                             ON CONFLICT (id) DO UPDATE
                             SET mission = EXCLUDED.mission, seq = EXCLUDED.seq"
                        ),
                        &[&no, &rows.0, &rows.1],
                    )
                    .await
                    .map_err(pg)?;
                }
            }
            tx.execute(
                "UPDATE mb_missions SET head_seq = $2, head_hash = $3 WHERE no = $1",
                &[&no, &(seq as i64), &hash.as_slice()],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &format!("{no}:{seq}")],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok((seq, hash))
        })
    }

    /// Keep the tombstone of a mission deleted elsewhere (copy), under its
    /// own `mission_no` (a fresh number here). Returns false when the same
    /// deletion (mission id and time) is already recorded.
    pub(crate) fn put_tombstone(&self, t: &Tombstone) -> Result<bool> {
        let t = t.clone();
        self.run(move |c| async move {
            let mut guard = c.writer().await?;
            let client = guard.as_mut().expect("connected");
            let n = client
                .execute(
                    "INSERT INTO mb_tombstones
                     (mission_no, mission_id, head_seq, head_hash, deleted_at_us, deleted_by)
                     SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS
                     (SELECT 1 FROM mb_tombstones WHERE mission_id = $2 AND deleted_at_us = $5)",
                    &[
                        &(t.mission_no as i64),
                        &t.mission_id,
                        &(t.head_sequence as i64),
                        &t.head_hash.as_slice(),
                        &t.deleted_at_us,
                        &t.deleted_by,
                    ],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(n == 1)
        })
    }
}
