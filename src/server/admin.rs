//! Admin endpoints (`/v1/admin/...`, admin token only): what the operator
//! does with the CLI on the data directory, over HTTP. `mission-bus
//! --server URL` uses them, so a command gives the same answer whether it
//! runs on the files or against a running server.
//!
//! - `POST /v1/admin/missions/{m}/events`: append as a named participant
//!   (`sender`), checked against that participant's role exactly as the
//!   CLI's `--as` is; `join` as the operator.
//!   Also the handoff lifecycle steps (`accept`, `heartbeat`, `complete`,
//!   `decline`, `release`) as their recipient or holder, and `role` and
//!   `remove` as the operator or a named lead.
//! - `GET /v1/admin/missions/{m}/replay?as=NAME&from=&limit=&...`: an
//!   events page read as NAME (needs `read`), with the filters of
//!   `GET .../events`.
//! - `POST /v1/admin/missions/{m}/ack`: acknowledge for a named
//!   participant's consumer.
//! - `POST /v1/admin/expire`: expire lapsed leases as of a given time.
//! - `GET /v1/admin/missions/{m}/export?format=seed|jsonl`: the seed
//!   document, or every event as JSON Lines.
//! - `POST /v1/admin/import?format=seed|jsonl`: import a mission (format
//!   detected from the content when omitted).
//! - `GET /v1/admin/verify`: verify every mission.
//!
//! Listing missions is `GET /v1/missions` (src/server/views.rs).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::ApiError;
use super::lifecycle::{filter_query, DEFAULT_LEASE_MS};
use super::routes::{body, call, created, path, query, MAX_PAGE};
use super::App;
use crate::document::{self, event_to_json};
use crate::{Action, AppendOptions, Event, EventMeta, Json as JsonText, OPERATOR};

/// Where imports are posted (the route below spells it out, so the route
/// table can be read from the source: tests/openapi.rs).
const IMPORT_PATH: &str = "/v1/admin/import";

/// Largest import body: a whole mission log in one request (admin only).
pub(crate) const MAX_IMPORT_BYTES: usize = 1 << 30;

/// The body limit of a request to `path`: the server's limit, except for
/// imports, which carry a whole mission.
pub(crate) fn body_limit(path: &str, default: usize) -> usize {
    if path == IMPORT_PATH {
        default.max(MAX_IMPORT_BYTES)
    } else {
        default
    }
}

/// The admin routes, merged into the API router.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/admin/missions/{m}/events", post(append_as))
        .route("/v1/admin/missions/{m}/replay", get(replay_as))
        .route("/v1/admin/missions/{m}/export", get(export))
        .route(
            "/v1/admin/import",
            post(import).layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        )
        .route("/v1/admin/verify", get(verify_all))
        .route("/v1/admin/missions/{m}/ack", post(ack_as))
        .route("/v1/admin/expire", post(expire))
}

/// One operator write, tagged by `type`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum OperatorWrite {
    Join {
        name: String,
        role: String,
        #[serde(default)]
        metadata: Value,
    },
    Message {
        sender: String,
        topic: String,
        #[serde(default)]
        payload: Value,
        #[serde(default)]
        expected_sequence: Option<u64>,
        #[serde(default)]
        event_id: Option<Uuid>,
        #[serde(default)]
        correlation_id: Option<String>,
        #[serde(default)]
        causation_id: Option<String>,
        #[serde(default)]
        attributes: std::collections::BTreeMap<String, String>,
    },
    Checkpoint {
        sender: String,
        summary: String,
        #[serde(default)]
        state: Value,
        #[serde(default)]
        artifacts: Vec<String>,
        #[serde(default)]
        expected_sequence: Option<u64>,
        #[serde(default)]
        event_id: Option<Uuid>,
        #[serde(default)]
        correlation_id: Option<String>,
        #[serde(default)]
        causation_id: Option<String>,
        #[serde(default)]
        attributes: std::collections::BTreeMap<String, String>,
    },
    Handoff {
        sender: String,
        recipient: String,
        checkpoint_id: Uuid,
        #[serde(default)]
        note: String,
        #[serde(default)]
        expected_sequence: Option<u64>,
        #[serde(default)]
        event_id: Option<Uuid>,
        #[serde(default)]
        correlation_id: Option<String>,
        #[serde(default)]
        causation_id: Option<String>,
        #[serde(default)]
        attributes: std::collections::BTreeMap<String, String>,
    },
    /// A handoff lifecycle step by `sender` (its recipient or holder).
    Accept(StepWrite),
    Heartbeat(StepWrite),
    Complete(StepWrite),
    Decline(StepWrite),
    Release(StepWrite),
    /// A role change, by the operator or the lead `sender`.
    Role {
        #[serde(default)]
        sender: Option<String>,
        name: String,
        role: String,
    },
    /// A removal, by the operator or the lead `sender`.
    Remove {
        #[serde(default)]
        sender: Option<String>,
        name: String,
    },
}

/// The fields of a handoff lifecycle step.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepWrite {
    sender: String,
    handoff_id: Uuid,
    /// Lease length (accept, heartbeat); default 60 s.
    #[serde(default)]
    lease_ms: Option<u64>,
    /// Note (complete, decline, release).
    #[serde(default)]
    note: String,
}

async fn append_as(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mission = path(m)?;
    let req: OperatorWrite = body(raw)?;
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let event = match req {
            OperatorWrite::Join {
                name,
                role,
                metadata,
            } => {
                let metadata = match metadata {
                    Value::Null => JsonText::empty_object(),
                    v => JsonText::from_value(&v),
                };
                app.bus.join(&mission, &name, &role, metadata)?
            }
            OperatorWrite::Message {
                sender,
                topic,
                payload,
                expected_sequence,
                event_id,
                correlation_id,
                causation_id,
                attributes,
            } => {
                let action = Action::Publish {
                    topic,
                    payload: JsonText::from_value(&payload),
                };
                let opts = AppendOptions {
                    expected_sequence,
                    event_id,
                    meta: EventMeta {
                        correlation_id,
                        causation_id,
                        attributes,
                    },
                };
                app.bus.append(&mission, &sender, action, &opts)?
            }
            OperatorWrite::Checkpoint {
                sender,
                summary,
                state,
                artifacts,
                expected_sequence,
                event_id,
                correlation_id,
                causation_id,
                attributes,
            } => {
                let action = Action::Checkpoint {
                    summary,
                    state: JsonText::from_value(&state),
                    artifacts,
                };
                let opts = AppendOptions {
                    expected_sequence,
                    event_id,
                    meta: EventMeta {
                        correlation_id,
                        causation_id,
                        attributes,
                    },
                };
                app.bus.append(&mission, &sender, action, &opts)?
            }
            OperatorWrite::Handoff {
                sender,
                recipient,
                checkpoint_id,
                note,
                expected_sequence,
                event_id,
                correlation_id,
                causation_id,
                attributes,
            } => {
                let action = Action::Handoff {
                    recipient,
                    checkpoint_id,
                    note,
                };
                let opts = AppendOptions {
                    expected_sequence,
                    event_id,
                    meta: EventMeta {
                        correlation_id,
                        causation_id,
                        attributes,
                    },
                };
                app.bus.append(&mission, &sender, action, &opts)?
            }
            OperatorWrite::Accept(s) => {
                let lease = s.lease_ms.unwrap_or(DEFAULT_LEASE_MS);
                app.bus
                    .accept_handoff(&mission, &s.sender, s.handoff_id, lease)?
            }
            OperatorWrite::Heartbeat(s) => {
                let lease = s.lease_ms.unwrap_or(DEFAULT_LEASE_MS);
                app.bus
                    .heartbeat(&mission, &s.sender, s.handoff_id, lease)?
            }
            OperatorWrite::Complete(s) => {
                app.bus
                    .complete_handoff(&mission, &s.sender, s.handoff_id, &s.note)?
            }
            OperatorWrite::Decline(s) => {
                app.bus
                    .decline_handoff(&mission, &s.sender, s.handoff_id, &s.note)?
            }
            OperatorWrite::Release(s) => {
                app.bus
                    .release_handoff(&mission, &s.sender, s.handoff_id, &s.note)?
            }
            OperatorWrite::Role { sender, name, role } => {
                let by = sender.as_deref().unwrap_or(OPERATOR);
                app.bus.change_role(&mission, by, &name, &role)?
            }
            OperatorWrite::Remove { sender, name } => {
                let by = sender.as_deref().unwrap_or(OPERATOR);
                app.bus.remove_participant(&mission, by, &name)?
            }
        };
        Ok(created(event_to_json(&event)))
    })
    .await
}

/// An events page read as the participant `as` (needs `read`): the
/// filters of `GET .../events` (`consumer` is `as`'s), `limit` 1..=1000
/// (default 1000). `next` is as there.
async fn replay_as(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mission = path(m)?;
    let mut q = filter_query(raw.as_deref(), &["as"])?;
    let reader = match q.extra.pop() {
        Some((_, name)) => name,
        None => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "query parameter 'as' (the reading participant) is required",
            ))
        }
    };
    q.filter.limit.get_or_insert(MAX_PAGE);
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        // Checks the reader's `read` capability before anything is read.
        let page =
            app.bus
                .read_events(&mission, Some(&reader), &q.filter, q.consumer.as_deref())?;
        let next = if q.filter.newest_first {
            page.next
        } else {
            let from = q.filter.from.unwrap_or(1).max(1);
            let end = q.filter.to.unwrap_or(u64::MAX).min(page.head_sequence);
            Some(page.next.unwrap_or_else(|| from.max(end.saturating_add(1))))
        };
        let events: Vec<Value> = page.events.iter().map(event_to_json).collect();
        Ok(Json(json!({
            "events": events,
            "next": next,
            "head_sequence": page.head_sequence,
        }))
        .into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckAs {
    participant: String,
    consumer: String,
    sequence: u64,
}

/// `POST /v1/admin/missions/{m}/ack`: `{participant, consumer, sequence}`,
/// as `mission-bus ack --as PARTICIPANT` does on the files.
async fn ack_as(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mission = path(m)?;
    let req: AckAs = body(raw)?;
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let position = app
            .bus
            .ack(&mission, &req.participant, &req.consumer, req.sequence)?;
        Ok(Json(json!({
            "participant": req.participant,
            "consumer": req.consumer,
            "position": position,
        }))
        .into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpireBody {
    #[serde(default)]
    mission_id: Option<String>,
    #[serde(default)]
    at: Option<String>,
}

/// `POST /v1/admin/expire`: `{mission_id?, at?}`: expire every lease that
/// lapsed by `at` (RFC 3339; default now) in one mission or all, as
/// `mission-bus expire` does (the server also does it every second).
async fn expire(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ExpireBody = body(raw)?;
    let at = match &req.at {
        None => chrono::Utc::now(),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| {
                ApiError::bad_request("invalid_body", format!("at: '{t}' is not RFC 3339 ({e})"))
            })?,
    };
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let missions = match req.mission_id {
            Some(m) => vec![m],
            None => app.bus.mission_ids(),
        };
        let mut events = Vec::new();
        for m in missions {
            for e in app.bus.expire_leases(&m, at)? {
                events.push(event_to_json(&e));
            }
        }
        Ok(Json(json!({ "events": events })).into_response())
    })
    .await
}

/// The two document formats of export and import.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Format {
    Seed,
    Jsonl,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatQuery {
    #[serde(default)]
    format: Option<Format>,
}

async fn export(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    q: Result<Query<FormatQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mission = path(m)?;
    let format = query(q)?.format.unwrap_or(Format::Seed);
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let state = app.bus.state(&mission)?;
        let events = app.bus.events(&mission, 1, state.head)?;
        match format {
            Format::Seed => {
                let doc = document::seed_document(&state, events)?;
                Ok(Json(doc).into_response())
            }
            Format::Jsonl => {
                let mut text = String::new();
                for e in events {
                    text.push_str(&event_to_json(&e?).to_string());
                    text.push('\n');
                }
                Ok((
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/x-ndjson")],
                    text,
                )
                    .into_response())
            }
        }
    })
    .await
}

async fn import(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    q: Result<Query<FormatQuery>, QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let format = query(q)?.format;
    let bytes = raw.map_err(|r| ApiError::bad_request("invalid_body", r.body_text()))?;
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            ApiError::bad_request("invalid_body", format!("import: not UTF-8: {e}"))
        })?;
        let events = parse_log(text, format)?;
        let mission = events
            .first()
            .and_then(|e| e.body.created_mission())
            .unwrap_or_default()
            .to_string();
        let count = app.bus.import_log(events, |_| {})?;
        Ok(created(json!({
            "mission_id": mission,
            "imported": count,
            "head_sequence": count,
        })))
    })
    .await
}

/// As `mission-bus import`: without a format, a single JSON object that is
/// not an event is a seed document; anything else is JSON Lines.
fn parse_log(text: &str, format: Option<Format>) -> Result<Vec<Event>, ApiError> {
    let events = match format {
        Some(Format::Seed) => {
            let doc: Value = serde_json::from_str(text).map_err(|e| {
                ApiError::bad_request("invalid_body", format!("not a JSON seed document: {e}"))
            })?;
            document::log_from_seed(&doc)?
        }
        Some(Format::Jsonl) => document::log_from_jsonl(text)?,
        None => match serde_json::from_str::<Value>(text) {
            Ok(doc @ Value::Object(_)) if doc.get("event_type").is_none() => {
                document::log_from_seed(&doc)?
            }
            _ => document::log_from_jsonl(text)?,
        },
    };
    if events.is_empty() {
        return Err(ApiError::bad_request("invalid_body", "no events to import"));
    }
    Ok(events)
}

async fn verify_all(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let mut reports = Vec::new();
        for m in app.bus.mission_ids() {
            let report = app.bus.verify(&m)?;
            app.verified.record(&report);
            reports.push(report.to_json());
        }
        Ok(Json(json!({ "reports": reports })).into_response())
    })
    .await
}
