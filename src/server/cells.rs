//! Endpoints for isolation cells, used by `mission-bus --server URL cell
//! run` (the command runs on the CLI's machine; the server records):
//!
//! - `POST /v1/missions/{m}/cells` `{sender?, profile, mechanism,
//!   workspace, command}`: record `cell_started` as the caller (a
//!   participant token acts as itself; `sender`, if given, must be its
//!   owner) or, with the admin token, as `sender` (required). Checked: the
//!   profile is the mission's, `configure_isolation` for a non-default one.
//!   Then issue that participant a new token for the cell (earlier tokens
//!   stay valid). 201 `{event, token}`.
//! - `POST /v1/missions/{m}/cells/{cell_id}/exit` `{sender?, exit_code,
//!   signal, duration_ms, error, token?}`: revoke `token` (the cell's, as
//!   `start` returned it; only if it is a token of that participant), then
//!   record `cell_exited`. 201 event. The token is revoked even when the
//!   exit is refused.
//! - `/v1/admin/missions/{m}/cells` and `.../cells/{cell_id}/exit`: the
//!   same, for the admin token only (`sender` required).

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

use super::auth::{Actor, Caller};
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
        .route("/v1/missions/{m}/cells", post(start_in_mission))
        .route("/v1/missions/{m}/cells/{id}/exit", post(exit_in_mission))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    #[serde(default)]
    sender: Option<String>,
    profile: String,
    mechanism: String,
    workspace: String,
    command: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Exit {
    #[serde(default)]
    sender: Option<String>,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    signal: Option<i32>,
    duration_ms: u64,
    #[serde(default)]
    error: String,
    /// The cell's token, revoked before `cell_exited` is recorded.
    #[serde(default)]
    token: Option<String>,
}

/// Which paths: the admin's (admin token only) or the mission's (a
/// participant acting as itself, or the admin naming `sender`).
#[derive(Clone, Copy)]
enum Via {
    Admin,
    Mission,
}

/// The participant a cell request acts as.
fn acting(
    via: Via,
    caller: &Caller,
    mission: &str,
    claimed: Option<String>,
) -> Result<String, ApiError> {
    if let Via::Admin = via {
        caller.require_admin()?;
    }
    match caller.in_mission(mission)? {
        Actor::Operator => claimed.ok_or_else(|| {
            ApiError::bad_request(
                "invalid_body",
                "with the admin token, the body must name the participant: 'sender'",
            )
        }),
        actor => {
            actor.check_claimed_sender(claimed.as_deref())?;
            Ok(actor.participant()?.to_string())
        }
    }
}

async fn start(
    app: State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    start_via(Via::Admin, app, headers, m, raw).await
}

async fn start_in_mission(
    app: State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    start_via(Via::Mission, app, headers, m, raw).await
}

async fn exit(
    app: State<Arc<App>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    exit_via(Via::Admin, app, headers, p, raw).await
}

async fn exit_in_mission(
    app: State<Arc<App>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    exit_via(Via::Mission, app, headers, p, raw).await
}

async fn start_via(
    via: Via,
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mission = path(m)?;
    let req: Start = body(raw)?;
    call(&app, &headers, move |app, caller| {
        let sender = acting(via, &caller, &mission, req.sender)?;
        let action = Action::StartCell {
            profile: req.profile,
            mechanism: req.mechanism,
            workspace: req.workspace,
            command: req.command,
        };
        let event = app
            .bus
            .append(&mission, &sender, action, &AppendOptions::default())?;
        let token = match app.bus.issue_token(&mission, &sender) {
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
                    .append(&mission, &sender, end, &AppendOptions::default());
                return Err(e.into());
            }
        };
        Ok(created(
            json!({"event": event_to_json(&event), "token": token}),
        ))
    })
    .await
}

async fn exit_via(
    via: Via,
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
        let sender = acting(via, &caller, &mission, req.sender)?;
        // The cell is over whatever the log says next: its token goes first.
        if let Some(token) = &req.token {
            app.bus.revoke_token(&mission, &sender, token)?;
        }
        let action = Action::EndCell {
            cell_id,
            exit_code: req.exit_code,
            signal: req.signal,
            duration_ms: req.duration_ms,
            error: req.error,
        };
        let event = app
            .bus
            .append(&mission, &sender, action, &AppendOptions::default())?;
        Ok(created(event_to_json(&event)))
    })
    .await
}
