//! Admin endpoints for isolation cells, used by `mission-bus --server URL
//! cell run` (the command runs on the CLI's machine; the server records):
//!
//! - `POST /v1/admin/missions/{m}/cells` `{sender, profile, mechanism,
//!   workspace, command}`: record `cell_started` as `sender` (checked: the
//!   profile is the mission's, `configure_isolation` for a non-default
//!   one), then issue `sender` a new participant token for the cell
//!   (earlier tokens stay valid). 201 `{event, token}`.
//! - `POST /v1/admin/missions/{m}/cells/{cell_id}/exit` `{sender,
//!   exit_code, signal, duration_ms, error}`: record `cell_exited`. 201 event.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::error::ApiError;
use super::routes::{body, call, created, path};
use super::App;
use crate::document::event_to_json;
use crate::{Action, AppendOptions};

/// The cell routes, merged into the API router.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/admin/missions/{m}/cells", post(start))
        .route("/v1/admin/missions/{m}/cells/{id}/exit", post(exit))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    sender: String,
    profile: String,
    mechanism: String,
    workspace: String,
    command: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Exit {
    sender: String,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    signal: Option<i32>,
    duration_ms: u64,
    #[serde(default)]
    error: String,
}

async fn start(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mission = path(m)?;
    let req: Start = body(raw)?;
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let action = Action::StartCell {
            profile: req.profile,
            mechanism: req.mechanism,
            workspace: req.workspace,
            command: req.command,
        };
        let event = app
            .bus
            .append(&mission, &req.sender, action, &AppendOptions::default())?;
        let token = match app.bus.issue_token(&mission, &req.sender) {
            Ok(t) => t,
            Err(e) => {
                // The cell never ran: say so in the log.
                let end = Action::EndCell {
                    cell_id: event.id,
                    exit_code: None,
                    signal: None,
                    duration_ms: 0,
                    error: format!("no token for the cell: {e}"),
                };
                let _ = app
                    .bus
                    .append(&mission, &req.sender, end, &AppendOptions::default());
                return Err(e.into());
            }
        };
        Ok(created(
            json!({"event": event_to_json(&event), "token": token}),
        ))
    })
    .await
}

async fn exit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (mission, id) = path(p)?;
    let cell_id = Uuid::parse_str(&id).map_err(|e| {
        ApiError::bad_request("invalid_path", format!("'{id}' is not a cell id: {e}"))
    })?;
    let req: Exit = body(raw)?;
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let action = Action::EndCell {
            cell_id,
            exit_code: req.exit_code,
            signal: req.signal,
            duration_ms: req.duration_ms,
            error: req.error,
        };
        let event = app
            .bus
            .append(&mission, &req.sender, action, &AppendOptions::default())?;
        Ok(created(event_to_json(&event)))
    })
    .await
}
