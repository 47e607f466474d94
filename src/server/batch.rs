//! `POST /v1/missions/{m}/batch`: many events in one request, written
//! atomically (all or none) in one commit, optionally only if the mission's
//! head is still `expected_sequence`. Every event's sender is the token's
//! owner, checked against its role as if the earlier events had landed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::ApiError;
use super::routes::{body, created, identify, path};
use super::App;
use crate::document::event_to_json;
use crate::{Action, BatchItem, EventMeta, Json as JsonText};

/// Most events one batch request may carry.
pub(crate) const MAX_BATCH: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    events: Vec<Item>,
    #[serde(default)]
    expected_sequence: Option<u64>,
}

/// One event of a batch, tagged by `type` (the `event_type` names of the
/// event JSON, shortened).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Item {
    Message {
        topic: String,
        #[serde(default)]
        payload: Value,
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
        summary: String,
        #[serde(default)]
        state: Value,
        #[serde(default)]
        artifacts: Vec<String>,
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
        recipient: String,
        checkpoint_id: Uuid,
        #[serde(default)]
        note: String,
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

impl Item {
    fn into_action(self) -> (Action, Option<Uuid>, EventMeta) {
        match self {
            Item::Message {
                topic,
                payload,
                event_id,
                correlation_id,
                causation_id,
                attributes,
            } => (
                Action::Publish {
                    topic,
                    payload: JsonText::from_value(&payload),
                },
                event_id,
                EventMeta {
                    correlation_id,
                    causation_id,
                    attributes,
                },
            ),
            Item::Checkpoint {
                summary,
                state,
                artifacts,
                event_id,
                correlation_id,
                causation_id,
                attributes,
            } => (
                Action::Checkpoint {
                    summary,
                    state: JsonText::from_value(&state),
                    artifacts,
                },
                event_id,
                EventMeta {
                    correlation_id,
                    causation_id,
                    attributes,
                },
            ),
            Item::Handoff {
                recipient,
                checkpoint_id,
                note,
                event_id,
                correlation_id,
                causation_id,
                attributes,
            } => (
                Action::Handoff {
                    recipient,
                    checkpoint_id,
                    note,
                },
                event_id,
                EventMeta {
                    correlation_id,
                    causation_id,
                    attributes,
                },
            ),
        }
    }
}

pub(crate) async fn post_batch(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    let result = async {
        let mission = path(m)?;
        let actor = identify(&app, &headers)?.in_mission(&mission)?;
        let req: Batch = body(raw)?;
        if req.events.is_empty() || req.events.len() > MAX_BATCH {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!(
                    "a batch holds 1 to {MAX_BATCH} events, got {}",
                    req.events.len()
                ),
            ));
        }
        let sender = actor.participant()?.to_string();
        let items = req
            .events
            .into_iter()
            .map(|item| {
                let (action, event_id, meta) = item.into_action();
                BatchItem {
                    sender: sender.clone(),
                    action,
                    event_id,
                    meta,
                }
            })
            .collect();
        Ok(app
            .bus
            .append_batch_async(&mission, items, req.expected_sequence)
            .await?)
    }
    .await;
    match result {
        Ok(events) => {
            app.metrics.append("ok", events.len());
            let head = events.last().map_or(0, |e| e.sequence);
            Ok(created(json!({
                "events": events.iter().map(event_to_json).collect::<Vec<_>>(),
                "head_sequence": head,
            })))
        }
        Err(e) => {
            app.metrics.append(e.code, 0);
            Err(e)
        }
    }
}
