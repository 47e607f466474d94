//! The commit transaction: one per commit group, in one round trip.
//!
//! The records are chained on each mission's head as this process last saw
//! it ([`Conns::known_head`]; read first, without a lock, when it is not
//! known or not the head the plan builds on). Then ONE pipelined batch of
//! prepared statements, sent together and answered together: `BEGIN`; new
//! missions registered (`ON CONFLICT (name) DO NOTHING`: a name another
//! process took is `MissionExists`); every touched mission's row locked in
//! mission-number order (`FOR UPDATE`: no deadlock between processes) and
//! its head returned; the events and index rows inserted; the heads moved
//! only where they still are the ones chained on, the statement dividing
//! by zero otherwise (which aborts the transaction); a notification naming
//! the moved missions (delivered at commit, for other processes' live
//! streams); `COMMIT`, which PostgreSQL turns into a rollback when anything
//! before it failed. The answers then tell which: a head another process
//! moved is `SequenceConflict` (the bus re-reads and re-plans), a failed
//! statement its error; else the group is durable (per the session's
//! `synchronous_commit`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};
use uuid::Uuid;

use super::{Conn, Conns, PgStore};
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

const REGISTER: &str = "INSERT INTO mb_missions (no, name, head_seq, head_hash)
     SELECT u.no, u.name, 0, $3 FROM unnest($1::bigint[], $2::text[]) AS u(no, name)
     ON CONFLICT (name) DO NOTHING RETURNING name";
const LOCK_HEADS: &str = "SELECT no, head_seq, head_hash FROM mb_missions
     WHERE no = ANY($1) ORDER BY no FOR UPDATE";
const READ_HEADS: &str = "SELECT no, head_seq, head_hash FROM mb_missions WHERE no = ANY($1)";
const INSERT_EVENTS: &str = "INSERT INTO mb_events (mission, seq, record)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])";
const INSERT_IDS: &str = "INSERT INTO mb_event_ids (mission, event_id, seq)
     SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bigint[])";
const REPLACE_IDS: &str = "INSERT INTO mb_event_ids (mission, event_id, seq)
     SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bigint[])
     ON CONFLICT (mission, event_id) DO UPDATE SET seq = EXCLUDED.seq";
const INSERT_CHECKPOINTS: &str = "INSERT INTO mb_checkpoints (id, mission, seq)
     SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[])
     ON CONFLICT (id) DO UPDATE SET mission = EXCLUDED.mission, seq = EXCLUDED.seq";
const INSERT_HANDOFFS: &str = "INSERT INTO mb_handoffs (id, mission, seq)
     SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[])
     ON CONFLICT (id) DO UPDATE SET mission = EXCLUDED.mission, seq = EXCLUDED.seq";
/// The heads moved, and the transaction aborted (division by zero) unless
/// every one of them was still the head the records were chained on, so
/// that the pipelined `COMMIT` can only commit a correct batch (in an
/// aborted transaction PostgreSQL's `COMMIT` rolls back).
const UPDATE_HEADS: &str = "WITH moved AS (
       UPDATE mb_missions m SET head_seq = u.s, head_hash = u.h
       FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bigint[], $5::bytea[])
            AS u(no, p, ph, s, h)
       WHERE m.no = u.no AND m.head_seq = u.p AND m.head_hash = u.ph
       RETURNING 1)
     SELECT 1 / (count(*) = cardinality($1::bigint[]))::int FROM moved";
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// How one attempt ended badly.
enum Failed {
    /// The answer for the caller.
    Final(Error),
    /// A head this process remembered had the right sequence but another
    /// hash (it was replaced since): chain again on the one read.
    Rechain,
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
            for _ in 0..2 {
                let conn = guard.as_mut().expect("connected");
                match attempt(&c, conn, &plans).await {
                    Ok(out) => return Ok(out),
                    Err((Failed::Rechain, _)) => continue,
                    Err((Failed::Final(e), broken)) => {
                        if broken {
                            // Never reuse a connection whose transaction
                            // state is unknown.
                            *guard = None;
                        }
                        return Err(e);
                    }
                }
            }
            Err(Error::corruption(
                &plans[0].mission_id,
                None,
                "the head's hash changed twice during one commit",
            ))
        })
    }
}

type Step<'a> = Pin<
    Box<
        dyn Future<Output = std::result::Result<Option<Vec<Row>>, tokio_postgres::Error>>
            + Send
            + 'a,
    >,
>;

/// One try at the group: `Err((why, connection unusable))`.
async fn attempt(
    c: &Conns,
    conn: &Conn,
    plans: &[Plan],
) -> std::result::Result<Vec<(u64, Hash)>, (Failed, bool)> {
    let fail = |e: Error| (Failed::Final(e), false);
    let pg = |e| fail(c.err(e));
    let mut nos: Vec<i64> = plans.iter().map(|p| p.mission).collect();
    nos.sort_unstable();
    nos.dedup();
    let registered: HashSet<i64> = plans
        .iter()
        .filter(|p| p.register.is_some())
        .map(|p| p.mission)
        .collect();
    // The head each mission's first plan builds on.
    let mut first_prev: HashMap<i64, (u64, &str)> = HashMap::new();
    for p in plans {
        first_prev
            .entry(p.mission)
            .or_insert((p.prev_seq, p.mission_id.as_str()));
    }
    let mut heads: HashMap<i64, (u64, Hash)> = HashMap::new();
    let mut unknown = Vec::new();
    for no in &nos {
        if registered.contains(no) {
            heads.insert(*no, (0, codec::GENESIS));
            continue;
        }
        match c.known_head(*no) {
            Some(h) if h.0 == first_prev[no].0 => {
                heads.insert(*no, h);
            }
            _ => unknown.push(*no),
        }
    }
    if !unknown.is_empty() {
        let rows = conn.query(READ_HEADS, &[&unknown]).await.map_err(pg)?;
        for row in rows {
            let (no, head) = head_row(&row).map_err(fail)?;
            c.saw_head(no, head);
            heads.insert(no, head);
        }
    }
    for no in &nos {
        let (prev, name) = first_prev[no];
        match heads.get(no) {
            None => {
                return Err(fail(Error::MissionNotFound {
                    mission: name.to_string(),
                }))
            }
            Some(&(seq, _)) if seq != prev => {
                return Err(fail(Error::SequenceConflict {
                    mission: name.to_string(),
                    expected: prev,
                    head: seq,
                }))
            }
            Some(_) => {}
        }
    }
    let chained_on = heads.clone();

    // The rows, chained on those heads.
    let mut ev = (Vec::new(), Vec::new(), Vec::new());
    let mut ids = (Vec::new(), Vec::new(), Vec::new());
    let mut replace = (Vec::new(), Vec::new(), Vec::new());
    let mut cps = (Vec::new(), Vec::new(), Vec::new());
    let mut hos = (Vec::new(), Vec::new(), Vec::new());
    let mut out = Vec::with_capacity(plans.len());
    for p in plans {
        let &(mut seq, mut hash) = &heads[&p.mission];
        if seq != p.prev_seq {
            return Err(fail(Error::SequenceConflict {
                mission: p.mission_id.clone(),
                expected: p.prev_seq,
                head: seq,
            }));
        }
        for event in &p.events {
            if event.sequence != seq + 1 {
                return Err(fail(Error::corruption(
                    &p.mission_id,
                    Some(event.sequence),
                    format!(
                        "planned sequence {}, next is {} (bug in the planner)",
                        event.sequence,
                        seq + 1
                    ),
                )));
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
    let mut h: HeadParams = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for no in &nos {
        let ((seq, hash), (prev, prev_hash)) = (heads[no], chained_on[no]);
        h.0.push(*no);
        h.1.push(prev as i64);
        h.2.push(prev_hash.to_vec());
        h.3.push(seq as i64);
        h.4.push(hash.to_vec());
    }
    let payload: Vec<String> =
        h.0.iter()
            .zip(&h.3)
            .map(|(no, seq)| format!("{no}:{seq}"))
            .collect();
    let payload = payload.join(",");

    // One mission, already registered (the common group): ONE statement,
    // its own transaction, like the baseline's single INSERT.
    if registered.is_empty() && nos.len() == 1 {
        let rows = Rows {
            ev: &ev,
            ids: &ids,
            replace: &replace,
            cps: &cps,
            hos: &hos,
        };
        return single(c, conn, plans, &h, &rows, &payload).await.map(|()| {
            c.saw_head(nos[0], heads[&nos[0]]);
            out
        });
    }

    // Prepared once per connection; then the batch goes out in one write.
    let mut sql = vec![LOCK_HEADS, INSERT_EVENTS, UPDATE_HEADS, NOTIFY];
    if !registered.is_empty() {
        sql.push(REGISTER);
    }
    for (rows, s) in [
        (&ids.0, INSERT_IDS),
        (&replace.0, REPLACE_IDS),
        (&cps.1, INSERT_CHECKPOINTS),
        (&hos.1, INSERT_HANDOFFS),
    ] {
        if !rows.is_empty() {
            sql.push(s);
        }
    }
    let mut st = HashMap::new();
    for s in sql {
        st.insert(s, conn.statement(s).await.map_err(pg)?);
    }
    let new: (Vec<i64>, Vec<&str>) = plans
        .iter()
        .filter_map(|p| Some((p.mission, p.register.as_deref()?)))
        .unzip();
    let client = &conn.client;
    let mut steps: Vec<Step<'_>> = Vec::new();
    steps.push(Box::pin(async move {
        client.batch_execute("BEGIN").await.map(|_| None)
    }));
    let register_at = steps.len();
    if !new.0.is_empty() {
        let s = &st[REGISTER];
        let new = &new;
        steps.push(Box::pin(async move {
            let genesis = codec::GENESIS.as_slice();
            client.query(s, &[&new.0, &new.1, &genesis]).await.map(Some)
        }));
    }
    let lock_at = steps.len();
    let s = &st[LOCK_HEADS];
    let nos_ref = &nos;
    steps.push(Box::pin(async move {
        client.query(s, &[nos_ref]).await.map(Some)
    }));
    let exec = |s: &'static str, params| exec(client, &st[s], params);
    steps.push(exec(INSERT_EVENTS, [&ev.0, &ev.1, &ev.2]));
    let ids_at = steps.len();
    if !ids.0.is_empty() {
        steps.push(exec(INSERT_IDS, [&ids.0, &ids.1, &ids.2]));
    }
    if !replace.0.is_empty() {
        steps.push(exec(REPLACE_IDS, [&replace.0, &replace.1, &replace.2]));
    }
    if !cps.0.is_empty() {
        steps.push(exec(INSERT_CHECKPOINTS, [&cps.0, &cps.1, &cps.2]));
    }
    if !hos.0.is_empty() {
        steps.push(exec(INSERT_HANDOFFS, [&hos.0, &hos.1, &hos.2]));
    }
    let s = &st[UPDATE_HEADS];
    let h_ref = &h;
    steps.push(Box::pin(async move {
        client
            .query(s, &[&h_ref.0, &h_ref.1, &h_ref.2, &h_ref.3, &h_ref.4])
            .await
            .map(|_| None)
    }));
    let s = &st[NOTIFY];
    let payload_ref = &payload;
    steps.push(Box::pin(async move {
        client
            .execute(s, &[&CHANNEL, payload_ref])
            .await
            .map(|_| None)
    }));
    let commit_at = steps.len();
    steps.push(Box::pin(async move {
        client.batch_execute("COMMIT").await.map(|_| None)
    }));
    let results = futures_util::future::join_all(steps).await;

    // Judge the answers in the order the statements ran. Every failure
    // judged here aborted the transaction on the server (a statement
    // failed, or the heads check divided by zero), so the `COMMIT` rolled
    // it back.
    let registered = (!new.1.is_empty()).then_some((register_at, new.1.as_slice()));
    let verdict = judge(
        c,
        plans,
        &results[..commit_at],
        registered,
        lock_at,
        ids_at,
        &chained_on,
        &ids.1,
    );
    if let Err(why) = verdict {
        return Err((why, client.is_closed()));
    }
    if let Err(e) = &results[commit_at] {
        // In flight: committed or not, nobody knows yet.
        for no in &nos {
            c.forget_head(*no);
        }
        return Err((Failed::Final(c.err_ref(e)), true));
    }
    for no in &nos {
        c.saw_head(*no, heads[no]);
    }
    Ok(out)
}

/// The rows of a group, as statement parameters.
struct Rows<'a> {
    ev: &'a (Vec<i64>, Vec<i64>, Vec<Vec<u8>>),
    ids: &'a (Vec<i64>, Vec<Uuid>, Vec<i64>),
    replace: &'a (Vec<i64>, Vec<Uuid>, Vec<i64>),
    cps: &'a (Vec<Uuid>, Vec<i64>, Vec<i64>),
    hos: &'a (Vec<Uuid>, Vec<i64>, Vec<i64>),
}

/// Heads as statement parameters: (no, prev, prev hash, new, new hash).
type HeadParams = (Vec<i64>, Vec<i64>, Vec<Vec<u8>>, Vec<i64>, Vec<Vec<u8>>);

/// A group of one registered mission in ONE statement (data-modifying
/// CTEs, always run to completion; empty arrays insert nothing), which is
/// its own transaction: the head moves only if it is still the one chained
/// on, else the division by zero aborts the whole statement. Its row lock
/// serializes racing processes as `FOR UPDATE` does.
const SINGLE: &str = "WITH
       e AS (INSERT INTO mb_events (mission, seq, record)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])),
       i AS (INSERT INTO mb_event_ids (mission, event_id, seq)
             SELECT * FROM unnest($4::bigint[], $5::uuid[], $6::bigint[])),
       r AS (INSERT INTO mb_event_ids (mission, event_id, seq)
             SELECT * FROM unnest($7::bigint[], $8::uuid[], $9::bigint[])
             ON CONFLICT (mission, event_id) DO UPDATE SET seq = EXCLUDED.seq),
       c AS (INSERT INTO mb_checkpoints (id, mission, seq)
             SELECT * FROM unnest($10::uuid[], $11::bigint[], $12::bigint[])
             ON CONFLICT (id) DO UPDATE SET mission = EXCLUDED.mission, seq = EXCLUDED.seq),
       h AS (INSERT INTO mb_handoffs (id, mission, seq)
             SELECT * FROM unnest($13::uuid[], $14::bigint[], $15::bigint[])
             ON CONFLICT (id) DO UPDATE SET mission = EXCLUDED.mission, seq = EXCLUDED.seq),
       moved AS (UPDATE mb_missions SET head_seq = $18, head_hash = $19
                 WHERE no = $16 AND head_seq = $17 AND head_hash = $20
                 RETURNING 1)
     SELECT 1 / count(*)::int, pg_notify($21, $22) FROM moved";

async fn single(
    c: &Conns,
    conn: &Conn,
    plans: &[Plan],
    h: &HeadParams,
    rows: &Rows<'_>,
    payload: &str,
) -> std::result::Result<(), (Failed, bool)> {
    let fail = |e: Error| (Failed::Final(e), false);
    let st = conn.statement(SINGLE).await.map_err(|e| fail(c.err(e)))?;
    let r = conn
        .client
        .query(
            &st,
            &[
                &rows.ev.0,
                &rows.ev.1,
                &rows.ev.2,
                &rows.ids.0,
                &rows.ids.1,
                &rows.ids.2,
                &rows.replace.0,
                &rows.replace.1,
                &rows.replace.2,
                &rows.cps.0,
                &rows.cps.1,
                &rows.cps.2,
                &rows.hos.0,
                &rows.hos.1,
                &rows.hos.2,
                &h.0[0],
                &h.1[0],
                &h.3[0],
                &h.4[0],
                &h.2[0],
                &CHANNEL,
                &payload,
            ],
        )
        .await;
    let e = match r {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    if conn.client.is_closed() || e.as_db_error().is_none() {
        // In flight: committed or not, nobody knows yet.
        c.forget_head(h.0[0]);
        return Err((Failed::Final(c.err(e)), true));
    }
    // Nothing was written. Did another process move the head?
    let p = &plans[0];
    let read = conn
        .query_opt(READ_HEADS.replace("ANY($1)", "$1").as_str(), &[&h.0[0]])
        .await
        .map_err(|e| fail(c.err(e)))?;
    let Some(row) = read else {
        return Err(fail(Error::MissionNotFound {
            mission: p.mission_id.clone(),
        }));
    };
    let (no, head) = head_row(&row).map_err(fail)?;
    c.forget_head(no);
    c.saw_head(no, head);
    if head.0 != h.1[0] as u64 {
        return Err(fail(Error::SequenceConflict {
            mission: p.mission_id.clone(),
            expected: p.prev_seq,
            head: head.0,
        }));
    }
    if head.1.as_slice() != h.2[0].as_slice() {
        return Err((Failed::Rechain, false));
    }
    let db = e.as_db_error().expect("checked above");
    if db.code() == &SqlState::UNIQUE_VIOLATION && db.constraint() == Some("mb_event_ids_pkey") {
        return Err(fail(duplicate_id(&rows.ids.1)));
    }
    Err(fail(c.err(e)))
}

/// One pipelined statement with three array parameters.
fn exec<'a>(client: &'a Client, s: &'a Statement, params: [&'a (dyn ToSql + Sync); 3]) -> Step<'a> {
    Box::pin(async move { client.execute(s, &params).await.map(|_| None) })
}

/// A mission row's `(no, (head_seq, head_hash))`.
fn head_row(row: &Row) -> Result<(i64, (u64, Hash))> {
    let no: i64 = row.get(0);
    let seq: i64 = row.get(1);
    let hash: Vec<u8> = row.get(2);
    let hash: Hash = hash
        .try_into()
        .map_err(|_| Error::corruption(format!("#{no}"), None, "head entry is malformed"))?;
    Ok((no, (seq as u64, hash)))
}

/// Another process stored one of these ids first (a concurrent retry).
fn duplicate_id(ids: &[Uuid]) -> Error {
    let id = ids.first().map(|u| u.to_string()).unwrap_or_default();
    Error::InvalidInput {
        field: "event id".into(),
        reason: format!("{id} is already stored"),
    }
}

/// Whether the batch may commit: every statement succeeded and the locked
/// heads are the ones the records were chained on.
#[allow(clippy::too_many_arguments)]
fn judge(
    c: &Conns,
    plans: &[Plan],
    results: &[std::result::Result<Option<Vec<Row>>, tokio_postgres::Error>],
    registered: Option<(usize, &[&str])>,
    lock_at: usize,
    ids_at: usize,
    chained_on: &HashMap<i64, (u64, Hash)>,
    ids: &[Uuid],
) -> std::result::Result<(), Failed> {
    let first_err =
        |range: std::ops::Range<usize>| results[range].iter().find_map(|r| r.as_ref().err());
    if let Some(e) = first_err(0..1) {
        return Err(Failed::Final(c.err_ref(e)));
    }
    if let Some((i, names)) = registered {
        let taken = match &results[i] {
            Ok(rows) => rows.as_deref().unwrap_or_default(),
            Err(e) => return Err(Failed::Final(c.err_ref(e))),
        };
        let ours: HashSet<String> = taken.iter().map(|r| r.get::<_, String>(0)).collect();
        // A name another process took first.
        if let Some(name) = names.iter().find(|n| !ours.contains(**n)) {
            return Err(Failed::Final(Error::MissionExists {
                mission: name.to_string(),
            }));
        }
    }
    let rows = match &results[lock_at] {
        Ok(Some(rows)) => rows,
        Ok(None) => unreachable!("the lock step returns rows"),
        Err(e) => return Err(Failed::Final(c.err_ref(e))),
    };
    let mut locked = HashMap::new();
    for row in rows {
        let (no, head) = head_row(row).map_err(Failed::Final)?;
        c.saw_head(no, head);
        locked.insert(no, head);
    }
    let mut rechain = false;
    for p in plans {
        let Some(&assumed) = chained_on.get(&p.mission) else {
            continue;
        };
        match locked.get(&p.mission) {
            None => {
                return Err(Failed::Final(Error::MissionNotFound {
                    mission: p.mission_id.clone(),
                }))
            }
            Some(&(seq, _)) if seq != assumed.0 => {
                return Err(Failed::Final(Error::SequenceConflict {
                    mission: p.mission_id.clone(),
                    expected: p.prev_seq,
                    head: seq,
                }))
            }
            Some(&(_, hash)) if hash != assumed.1 => {
                c.forget_head(p.mission);
                c.saw_head(p.mission, locked[&p.mission]);
                rechain = true;
            }
            Some(_) => {}
        }
    }
    if rechain {
        return Err(Failed::Rechain);
    }
    for (i, r) in results.iter().enumerate().skip(lock_at + 1) {
        if let Err(e) = r {
            if i == ids_at && e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                return Err(Failed::Final(duplicate_id(ids)));
            }
            return Err(Failed::Final(c.err_ref(e)));
        }
    }
    Ok(())
}
