//! `POST /v1/admin/backup {"to": "/abs/path"}`: an online backup of the
//! store held by this server (admin token only). The copy runs on the bus's
//! writer, so it is consistent; appends wait while it runs. See
//! [`crate::MissionBus::backup`].

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::routes::call;
use super::App;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    to: String,
}

/// 200 with `{"backup", "missions", "events", "tokens"}`; 400 for a relative
/// path or a target that exists and is not empty; 403 for a non-admin.
pub(crate) async fn admin_backup(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = raw.map_err(|r| ApiError::bad_request("invalid_body", r.body_text()))?;
    let req: BackupRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("request body: {e}")))?;
    let to = PathBuf::from(&req.to);
    if !to.is_absolute() {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("'to' must be an absolute path, not '{}'", req.to),
        ));
    }
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let report = app.bus.backup(&to)?;
        Ok((StatusCode::OK, Json(report.to_json())).into_response())
    })
    .await
}
