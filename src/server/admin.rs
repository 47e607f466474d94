//! Admin endpoints (`/v1/admin/...`, admin token only): what the operator
//! does with the CLI on the data directory, over HTTP. `mission-bus
//! --server URL` uses them, so a command gives the same answer whether it
//! runs on the files or against a running server.
//!
//! - `POST /v1/admin/missions/{m}/events`: append as a named participant
//!   (`sender`), checked against that participant's role exactly as the
//!   CLI's `--as` is; `join` as the operator.
//! - `GET /v1/admin/missions/{m}/replay?as=NAME&from=&limit=`: an events
//!   page read as NAME (needs `read`).
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
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::ApiError;
use super::routes::{body, call, created, path, query, MAX_PAGE};
use super::App;
use crate::document::{self, event_to_json};
use crate::{Action, AppendOptions, Event, EventMeta, Json as JsonText};

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
        };
        Ok(created(event_to_json(&event)))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayQuery {
    #[serde(rename = "as")]
    reader: String,
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn replay_as(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    q: Result<Query<ReplayQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mission = path(m)?;
    let q = query(q)?;
    let from = q.from.unwrap_or(1).max(1);
    let limit = q.limit.unwrap_or(MAX_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1..={MAX_PAGE}, got {limit}"),
        ));
    }
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let head = app.bus.state(&mission)?.head;
        // Checks the reader's `read` capability before anything is read.
        let iter = app.bus.replay(&mission, &q.reader, from)?;
        let mut events = Vec::new();
        let mut next = from;
        for e in iter.take(limit) {
            let e = e?;
            next = e.sequence + 1;
            events.push(event_to_json(&e));
        }
        Ok(Json(json!({"events": events, "next": next, "head_sequence": head})).into_response())
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
