//! The SQL schema and its versioned migrations (docs/format.md shows it).
//!
//! `mb_meta.schema_version` records the version; opening a database at an
//! older version runs the missing steps in one transaction, under an
//! advisory lock so that two processes opening at once do not race. A
//! database at a newer version than this build knows is refused.

use tokio_postgres::Client;

use super::Conns;
use crate::error::{Error, Result};

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// Advisory lock key held while migrating ("mbus" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d62_7573;

/// Version 1: the tables the sled trees map to. Records are the same bytes
/// as in sled (docs/format.md, record format v2); a mission's head lives
/// on its `mb_missions` row, which a commit locks (`FOR UPDATE`).
const V1: &str = "
CREATE SEQUENCE mb_mission_no START 1;
CREATE TABLE mb_missions (
    no        bigint PRIMARY KEY,
    name      text   NOT NULL UNIQUE,
    head_seq  bigint NOT NULL CHECK (head_seq >= 0),
    head_hash bytea  NOT NULL CHECK (length(head_hash) = 32)
);
CREATE TABLE mb_events (
    mission bigint NOT NULL REFERENCES mb_missions (no),
    seq     bigint NOT NULL CHECK (seq >= 1),
    record  bytea  NOT NULL,
    PRIMARY KEY (mission, seq)
);
CREATE TABLE mb_event_ids (
    mission  bigint NOT NULL,
    event_id uuid   NOT NULL,
    seq      bigint NOT NULL,
    PRIMARY KEY (mission, event_id)
);
CREATE TABLE mb_checkpoints (
    id      uuid PRIMARY KEY,
    mission bigint NOT NULL,
    seq     bigint NOT NULL
);
CREATE TABLE mb_handoffs (
    id      uuid PRIMARY KEY,
    mission bigint NOT NULL,
    seq     bigint NOT NULL
);
CREATE INDEX mb_checkpoints_mission ON mb_checkpoints (mission);
CREATE INDEX mb_handoffs_mission ON mb_handoffs (mission);
CREATE TABLE mb_snapshots (
    mission bigint PRIMARY KEY,
    value   bytea  NOT NULL
);
CREATE TABLE mb_tokens (
    hash        bytea  PRIMARY KEY,
    mission     bigint NOT NULL,
    participant text   NOT NULL
);
CREATE INDEX mb_tokens_owner ON mb_tokens (mission, participant);
CREATE TABLE mb_consumers (
    mission     bigint NOT NULL,
    participant text   NOT NULL,
    consumer    text   NOT NULL,
    position    bigint NOT NULL,
    updated_us  bigint NOT NULL,
    PRIMARY KEY (mission, participant, consumer)
);
";

/// Version 2: history management. A pruned mission's anchor (the same
/// bytes as sled's `anchors` values: first kept sequence, the chain hash
/// before it, the state as of it, CRC-checked), and the tombstones of
/// deleted missions (one per deleted mission number: a mission id created
/// again and deleted again has several).
const V2: &str = "
CREATE TABLE mb_anchors (
    mission bigint PRIMARY KEY REFERENCES mb_missions (no),
    anchor  bytea  NOT NULL
);
CREATE TABLE mb_tombstones (
    mission_no    bigint PRIMARY KEY,
    mission_id    text   NOT NULL,
    head_seq      bigint NOT NULL CHECK (head_seq >= 0),
    head_hash     bytea  NOT NULL CHECK (length(head_hash) = 32),
    deleted_at_us bigint NOT NULL,
    deleted_by    text   NOT NULL
);
CREATE INDEX mb_tombstones_id ON mb_tombstones (mission_id, deleted_at_us);
";

/// Create or migrate the schema.
pub(crate) async fn migrate(client: &mut Client, c: &Conns) -> Result<()> {
    let e = |e| c.err(e);
    let tx = client.transaction().await.map_err(e)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(e)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS mb_meta (key text PRIMARY KEY, value text NOT NULL)",
    )
    .await
    .map_err(e)?;
    let version: i64 = match tx
        .query_opt(
            "SELECT value FROM mb_meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(e)?
    {
        Some(row) => row.get::<_, String>(0).parse().unwrap_or(i64::MAX),
        None => 0,
    };
    if version > SCHEMA_VERSION {
        // Leave it alone: a newer build wrote it.
        return Err(Error::Database {
            store: c.shown.clone(),
            reason: format!(
                "the database has mission-bus schema version {version}; this build knows \
                 versions up to {SCHEMA_VERSION} (upgrade mission-bus)"
            ),
        });
    }
    if version < 1 {
        tx.batch_execute(V1).await.map_err(e)?;
    }
    if version < 2 {
        tx.batch_execute(V2).await.map_err(e)?;
    }
    tx.execute(
        "INSERT INTO mb_meta (key, value) VALUES ('schema_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        &[&SCHEMA_VERSION.to_string()],
    )
    .await
    .map_err(e)?;
    tx.commit().await.map_err(e)
}
