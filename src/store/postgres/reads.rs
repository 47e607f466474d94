//! Reads: the mission directory, heads, records, index lookups, scans
//! (in chunks of [`SCAN_CHUNK`] rows: constant memory), snapshots, tokens
//! and consumer positions. Side-table writes are single statements (or one
//! short transaction), durable when they return.

use std::sync::Arc;

use uuid::Uuid;

use super::listen::{participant_payload, token_payload, TOKENS_CHANNEL};
use super::{Conns, PgStore, SCAN_CHUNK};
use crate::codec::{self, Hash};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::keys::{self, MissionNo};
use crate::store::{Chain, EventIter, Index, RawRecords, StoredConsumer};

/// `(seq, record)` rows of one mission, `from..=to`, oldest or newest first.
async fn chunk(
    c: &Conns,
    mission: MissionNo,
    from: u64,
    to: u64,
    newest_first: bool,
) -> Result<Vec<(u64, Vec<u8>)>> {
    let client = c.reader().await?;
    let sql = if newest_first {
        "SELECT seq, record FROM mb_events WHERE mission = $1 AND seq BETWEEN $2 AND $3
         ORDER BY seq DESC LIMIT $4"
    } else {
        "SELECT seq, record FROM mb_events WHERE mission = $1 AND seq BETWEEN $2 AND $3
         ORDER BY seq LIMIT $4"
    };
    let rows = client
        .query(
            sql,
            &[
                &(mission as i64),
                &(from as i64),
                &(to.min(i64::MAX as u64) as i64),
                &SCAN_CHUNK,
            ],
        )
        .await
        .map_err(|e| c.err(e))?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, Vec<u8>>(1)))
        .collect())
}

/// A mission's records fetched chunk by chunk on the store's runtime.
struct Chunks {
    rt: tokio::runtime::Handle,
    conn: Arc<Conns>,
    mission: MissionNo,
    next: u64,
    to: u64,
    buf: std::vec::IntoIter<(u64, Vec<u8>)>,
    done: bool,
}

impl Iterator for Chunks {
    type Item = Result<(u64, sled::IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((seq, v)) = self.buf.next() {
                self.next = seq.saturating_add(1);
                return Some(Ok((seq, sled::IVec::from(v))));
            }
            if self.done || self.next > self.to {
                return None;
            }
            let (conn, mission, from, to) =
                (Arc::clone(&self.conn), self.mission, self.next, self.to);
            let got = super::block_on_runtime(&self.rt, async move {
                chunk(&conn, mission, from, to, false).await
            });
            match got {
                Ok(rows) => {
                    if (rows.len() as i64) < SCAN_CHUNK {
                        self.done = true;
                    }
                    if rows.is_empty() {
                        return None;
                    }
                    self.buf = rows.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl PgStore {
    /// A fresh internal mission number (a database sequence: unique across
    /// processes, increasing, with gaps).
    pub(crate) fn allocate_mission_no(&self) -> Result<MissionNo> {
        self.run(|c| async move {
            let client = c.reader().await?;
            let row = client
                .query_one("SELECT nextval('mb_mission_no')", &[])
                .await
                .map_err(|e| c.err(e))?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    /// The internal number of mission `name`, if it exists.
    pub(crate) fn mission_no(&self, name: &str) -> Result<Option<MissionNo>> {
        let name = name.to_string();
        self.run(|c| async move {
            let client = c.reader().await?;
            let row = client
                .query_opt("SELECT no FROM mb_missions WHERE name = $1", &[&name])
                .await
                .map_err(|e| c.err(e))?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    /// Every mission: (string id, internal number), sorted by id bytes.
    pub(crate) fn missions(&self) -> Result<Vec<(String, MissionNo)>> {
        self.run(|c| async move {
            let client = c.reader().await?;
            let rows = client
                .query(
                    "SELECT name, no FROM mb_missions ORDER BY name COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(rows
                .into_iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
                .collect())
        })
    }

    /// Head sequence and chain hash of a registered mission.
    pub(crate) fn head(&self, mission: MissionNo, name: &str) -> Result<(u64, Hash)> {
        let name = name.to_string();
        self.run(move |c| async move {
            let client = c.reader().await?;
            let row = client
                .query_opt(
                    "SELECT head_seq, head_hash FROM mb_missions WHERE no = $1",
                    &[&(mission as i64)],
                )
                .await
                .map_err(|e| c.err(e))?
                .ok_or_else(|| Error::corruption(&name, None, "head entry is missing"))?;
            let hash: Vec<u8> = row.get(1);
            let hash: Hash = hash
                .try_into()
                .map_err(|_| Error::corruption(&name, None, "head entry is malformed"))?;
            let head = (row.get::<_, i64>(0) as u64, hash);
            c.saw_head(mission as i64, head);
            Ok(head)
        })
    }

    /// Every mission's head sequence (for catching up after notifications
    /// were lost).
    pub(crate) fn all_heads(&self) -> Result<Vec<(MissionNo, u64)>> {
        self.run(|c| async move {
            let client = c.reader().await?;
            let rows = client
                .query("SELECT no, head_seq FROM mb_missions", &[])
                .await
                .map_err(|e| c.err(e))?;
            Ok(rows
                .into_iter()
                .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
                .collect())
        })
    }

    fn raw(&self, mission: MissionNo, seq: u64) -> Result<Option<Vec<u8>>> {
        self.run(move |c| async move {
            let client = c.reader().await?;
            let row = client
                .query_opt(
                    "SELECT record FROM mb_events WHERE mission = $1 AND seq = $2",
                    &[&(mission as i64), &(seq.min(i64::MAX as u64) as i64)],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    /// One event by sequence.
    pub(crate) fn event(&self, mission: MissionNo, seq: u64, name: &str) -> Result<Option<Event>> {
        match self.raw(mission, seq)? {
            None => Ok(None),
            Some(v) => codec::decode_event(seq, &v)
                .map(Some)
                .map_err(|e| Error::corruption(name, Some(seq), e)),
        }
    }

    /// The chain hash of the record at `seq`, after checking its checksum.
    pub(crate) fn record_hash(&self, mission: MissionNo, seq: u64) -> Result<Option<Hash>> {
        Ok(match self.raw(mission, seq)? {
            Some(v) if codec::check_record(&v).is_ok() => {
                Some(codec::record_hash(&keys::event_key(mission, seq), &v))
            }
            _ => None,
        })
    }

    /// Index lookup by id: one indexed row. (`EventIds` ids are scoped to
    /// their mission: use [`PgStore::lookup_event_id`].)
    pub(crate) fn lookup(&self, index: Index, id: &Uuid) -> Result<Option<(MissionNo, u64)>> {
        let table = match index {
            Index::Checkpoints => "mb_checkpoints",
            Index::Handoffs => "mb_handoffs",
            Index::EventIds => return Ok(None),
        };
        let id = *id;
        self.run(move |c| async move {
            let client = c.reader().await?;
            let row = client
                .query_opt(
                    &format!("SELECT mission, seq FROM {table} WHERE id = $1"),
                    &[&id],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64)))
        })
    }

    /// The sequence of the event with id `id` in `mission`, if any.
    pub(crate) fn lookup_event_id(&self, mission: MissionNo, id: &Uuid) -> Result<Option<u64>> {
        let id = *id;
        self.run(move |c| async move {
            let client = c.reader().await?;
            let row = client
                .query_opt(
                    "SELECT seq FROM mb_event_ids WHERE mission = $1 AND event_id = $2",
                    &[&(mission as i64), &id],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    /// Stream records `from..=to` (checked by [`EventIter`]).
    pub(crate) fn scan(&self, mission: MissionNo, name: &str, from: u64, to: u64) -> EventIter {
        let from = from.max(1);
        let inner = (from <= to).then(|| {
            Box::new(Chunks {
                rt: self.rt.handle().clone(),
                conn: Arc::clone(&self.conn),
                mission,
                next: from,
                to,
                buf: Vec::new().into_iter(),
                done: false,
            }) as RawRecords
        });
        EventIter::new(inner, mission, name, from, to)
    }

    /// [`PgStore::scan`] following the hash chain up to `head`.
    pub(crate) fn scan_chained(
        &self,
        mission: MissionNo,
        name: &str,
        from: u64,
        to: u64,
        head: (u64, Hash),
    ) -> Result<EventIter> {
        // A pruned log starts at its anchor, chained to the anchor's hash.
        let (first, first_hash) = self.first_kept(mission, name)?;
        let from = from.max(first);
        let mut it = self.scan(mission, name, from, to);
        if from > to {
            return Ok(it);
        }
        let raw = |seq: u64| -> Result<Vec<u8>> {
            let v = self
                .raw(mission, seq)?
                .ok_or_else(|| Error::corruption(name, Some(seq), "record missing"))?;
            codec::check_record(&v).map_err(|e| Error::corruption(name, Some(seq), e))?;
            Ok(v)
        };
        let first_prev = if from == first {
            first_hash
        } else {
            codec::record_hash(&keys::event_key(mission, from - 1), &raw(from - 1)?)
        };
        let last = if to >= head.0 {
            head.1
        } else {
            codec::prev_hash(&raw(to + 1)?)
        };
        it.chain = Some(Chain {
            prev: first_prev,
            last,
        });
        Ok(it)
    }

    /// Filtered range read, oldest or newest first, checked like a scan.
    pub(crate) fn scan_filtered(
        &self,
        mission: MissionNo,
        name: &str,
        range: (u64, u64),
        newest_first: bool,
        limit: usize,
        keep: &dyn Fn(&Event) -> bool,
    ) -> Result<(Vec<Event>, Option<u64>)> {
        let (from, to) = (range.0.max(1), range.1);
        let mut out = Vec::new();
        if from > to || limit == 0 {
            return Ok((out, None));
        }
        let (mut lo, mut hi) = (from, to);
        let mut expected = if newest_first { to } else { from };
        let mut last = None;
        loop {
            let rows =
                self.run(move |c| async move { chunk(&c, mission, lo, hi, newest_first).await })?;
            let n = rows.len();
            for (seq, v) in rows {
                if seq != expected {
                    return Err(Error::corruption(
                        name,
                        Some(expected),
                        format!("record missing (next record is sequence {seq})"),
                    ));
                }
                let event = codec::decode_event(seq, &v)
                    .map_err(|e| Error::corruption(name, Some(seq), e))?;
                last = Some(seq);
                if keep(&event) {
                    out.push(event);
                    if out.len() >= limit {
                        return Ok((out, last));
                    }
                }
                if newest_first {
                    expected = seq.saturating_sub(1);
                    hi = expected;
                } else {
                    expected = seq + 1;
                    lo = expected;
                }
            }
            if (n as i64) < SCAN_CHUNK || lo > hi || hi == 0 {
                return Ok((out, last));
            }
        }
    }

    /// The raw snapshot value of a mission, if one was saved.
    pub(crate) fn snapshot(&self, mission: MissionNo) -> Result<Option<sled::IVec>> {
        self.run(move |c| async move {
            let client = c.reader().await?;
            let row = client
                .query_opt(
                    "SELECT value FROM mb_snapshots WHERE mission = $1",
                    &[&(mission as i64)],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(row.map(|r| sled::IVec::from(r.get::<_, Vec<u8>>(0))))
        })
    }

    /// Save a snapshot value (a cache).
    pub(crate) fn put_snapshot(&self, mission: MissionNo, value: Vec<u8>) -> Result<()> {
        self.run(move |c| async move {
            let client = c.reader().await?;
            client
                .execute(
                    "INSERT INTO mb_snapshots (mission, value) VALUES ($1, $2)
                     ON CONFLICT (mission) DO UPDATE SET value = EXCLUDED.value",
                    &[&(mission as i64), &value],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(())
        })
    }

    /// Remember a token hash; optionally revoke the participant's others
    /// in the same transaction. Returns how many were revoked.
    pub(crate) fn put_token(
        &self,
        hash: &[u8; 32],
        mission: MissionNo,
        name: &str,
        revoke_others: bool,
    ) -> Result<u64> {
        let (hash, name) = (hash.to_vec(), name.to_string());
        self.run(move |c| async move {
            let mut guard = c.writer().await?;
            let client = guard.as_mut().expect("connected");
            let pg = |e| c.err(e);
            let tx = client.transaction().await.map_err(pg)?;
            let mut revoked = 0;
            if revoke_others {
                revoked = tx
                    .execute(
                        "DELETE FROM mb_tokens WHERE mission = $1 AND participant = $2",
                        &[&(mission as i64), &name],
                    )
                    .await
                    .map_err(pg)?;
                // Other processes drop what they cached (at commit).
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&TOKENS_CHANNEL, &participant_payload(mission, &name)],
                )
                .await
                .map_err(pg)?;
            }
            tx.execute(
                "INSERT INTO mb_tokens (hash, mission, participant) VALUES ($1, $2, $3)
                 ON CONFLICT (hash) DO UPDATE
                 SET mission = EXCLUDED.mission, participant = EXCLUDED.participant",
                &[&hash, &(mission as i64), &name],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(revoked)
        })
    }

    /// The owner of a token hash: (mission, participant name).
    pub(crate) fn token_owner(&self, hash: &[u8; 32]) -> Result<Option<(MissionNo, String)>> {
        let hash = hash.to_vec();
        self.run(move |c| async move {
            let client = c.reader().await?;
            let row = client
                .query_opt(
                    "SELECT mission, participant FROM mb_tokens WHERE hash = $1",
                    &[&hash],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1))))
        })
    }

    /// Remove one token (by hash) if it belongs to participant `name` of
    /// `mission`. Returns whether it was there.
    pub(crate) fn revoke_token(
        &self,
        hash: &[u8; 32],
        mission: MissionNo,
        name: &str,
    ) -> Result<bool> {
        let (hash, name) = (hash.to_vec(), name.to_string());
        self.run(move |c| async move {
            let client = c.reader().await?;
            // One statement (one transaction): the notification goes out
            // with the delete, at commit, and only if something went.
            let row = client
                .query_one(
                    "WITH d AS (DELETE FROM mb_tokens
                                WHERE hash = $1 AND mission = $2 AND participant = $3
                                RETURNING 1)
                     SELECT count(*), (SELECT count(*) FROM (
                         SELECT pg_notify($4, $5) FROM d LIMIT 1) n) FROM d",
                    &[
                        &hash,
                        &(mission as i64),
                        &name,
                        &TOKENS_CHANNEL,
                        &token_payload(&hash),
                    ],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(row.get::<_, i64>(0) > 0)
        })
    }

    /// Remove every token of participant `name` of `mission`.
    pub(crate) fn revoke_tokens(&self, mission: MissionNo, name: &str) -> Result<u64> {
        let name = name.to_string();
        self.run(move |c| async move {
            let client = c.reader().await?;
            let row = client
                .query_one(
                    "WITH d AS (DELETE FROM mb_tokens WHERE mission = $1 AND participant = $2
                                RETURNING 1)
                     SELECT count(*), (SELECT count(*) FROM (
                         SELECT pg_notify($3, $4) FROM d LIMIT 1) n) FROM d",
                    &[
                        &(mission as i64),
                        &name,
                        &TOKENS_CHANNEL,
                        &participant_payload(mission, &name),
                    ],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    /// Bytes the store's tables and indexes occupy.
    pub(crate) fn size_on_disk(&self) -> Result<u64> {
        self.run(|c| async move {
            let client = c.reader().await?;
            let row = client
                .query_one(
                    "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = current_schema() AND c.relkind = 'r'
                       AND c.relname LIKE 'mb\\_%'",
                    &[],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    /// The stored position of one consumer.
    pub(crate) fn consumer(
        &self,
        mission: MissionNo,
        participant: &str,
        consumer: &str,
    ) -> Result<Option<StoredConsumer>> {
        let (p, k) = (participant.to_string(), consumer.to_string());
        self.run(move |c| async move {
            let client = c.reader().await?;
            let row = client
                .query_opt(
                    "SELECT participant, consumer, position, updated_us FROM mb_consumers
                     WHERE mission = $1 AND participant = $2 AND consumer = $3",
                    &[&(mission as i64), &p, &k],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(row.map(|r| consumer_row(&r)))
        })
    }

    /// Move a consumer's position up (never down), in one transaction that
    /// locks the participant's rows; `Err(count)` past `max` consumers.
    pub(crate) fn advance_consumer(
        &self,
        mission: MissionNo,
        participant: &str,
        consumer: &str,
        position: u64,
        at_us: i64,
        max: usize,
    ) -> Result<std::result::Result<u64, usize>> {
        let (p, k) = (participant.to_string(), consumer.to_string());
        self.run(move |c| async move {
            let mut guard = c.writer().await?;
            let client = guard.as_mut().expect("connected");
            let pg = |e| c.err(e);
            let tx = client.transaction().await.map_err(pg)?;
            let rows = tx
                .query(
                    "SELECT consumer, position FROM mb_consumers
                     WHERE mission = $1 AND participant = $2 FOR UPDATE",
                    &[&(mission as i64), &p],
                )
                .await
                .map_err(pg)?;
            let current = rows
                .iter()
                .find(|r| r.get::<_, String>(0) == k)
                .map(|r| r.get::<_, i64>(1) as u64);
            if current.is_none() && rows.len() >= max {
                return Ok(Err(rows.len()));
            }
            if let Some(cur) = current.filter(|cur| *cur >= position) {
                return Ok(Ok(cur));
            }
            tx.execute(
                "INSERT INTO mb_consumers (mission, participant, consumer, position, updated_us)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (mission, participant, consumer) DO UPDATE
                 SET position = GREATEST(mb_consumers.position, EXCLUDED.position),
                     updated_us = EXCLUDED.updated_us",
                &[&(mission as i64), &p, &k, &(position as i64), &at_us],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(Ok(position))
        })
    }

    /// Every consumer of a mission (of one participant when given).
    pub(crate) fn consumers(
        &self,
        mission: MissionNo,
        participant: Option<&str>,
    ) -> Result<Vec<StoredConsumer>> {
        let p = participant.map(str::to_string);
        self.run(move |c| async move {
            let client = c.reader().await?;
            let rows = client
                .query(
                    "SELECT participant, consumer, position, updated_us FROM mb_consumers
                     WHERE mission = $1 AND ($2::text IS NULL OR participant = $2)
                     ORDER BY participant COLLATE \"C\", consumer COLLATE \"C\"",
                    &[&(mission as i64), &p],
                )
                .await
                .map_err(|e| c.err(e))?;
            Ok(rows.iter().map(consumer_row).collect())
        })
    }

    /// Forget one consumer (`Some`) or all of a participant's (`None`).
    pub(crate) fn delete_consumers(
        &self,
        mission: MissionNo,
        participant: &str,
        consumer: Option<&str>,
    ) -> Result<u64> {
        let (p, k) = (participant.to_string(), consumer.map(str::to_string));
        self.run(move |c| async move {
            let client = c.reader().await?;
            client
                .execute(
                    "DELETE FROM mb_consumers WHERE mission = $1 AND participant = $2
                     AND ($3::text IS NULL OR consumer = $3)",
                    &[&(mission as i64), &p, &k],
                )
                .await
                .map_err(|e| c.err(e))
        })
    }
}

fn consumer_row(r: &tokio_postgres::Row) -> StoredConsumer {
    StoredConsumer {
        participant: r.get(0),
        consumer: r.get(1),
        position: r.get::<_, i64>(2) as u64,
        updated_us: r.get(3),
    }
}
