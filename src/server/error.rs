//! The server's error responses: `{"error": {"code": "...", "message": "..."}}`.
//!
//! Library errors map by variant to a status and a stable `code` string that
//! clients can branch on; the message is the library's own, which names the
//! mission, participant, sequence or field at fault.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::{Error, ErrorKind};

/// An error on its way to the client.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 for a body, query or header the server cannot use.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no token, or one nobody owns.
    pub(crate) fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403: the token is valid but does not allow this.
    pub(crate) fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 500 for failures of the server itself (a panicked worker).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 503: a bounded resource is exhausted or the server is stopping.
    pub(crate) fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            Error::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "too_large"),
            Error::UnknownRole { .. } => (S::BAD_REQUEST, "unknown_role"),
            Error::Config { .. } => (S::BAD_REQUEST, "invalid_config"),
            Error::InvalidInput { .. } => (S::BAD_REQUEST, "invalid_input"),
            Error::NotAParticipant { .. } => (S::FORBIDDEN, "not_a_participant"),
            Error::PermissionDenied { .. } => (S::FORBIDDEN, "permission_denied"),
            Error::MissionNotFound { .. } => (S::NOT_FOUND, "mission_not_found"),
            Error::ParticipantNotFound { .. } => (S::NOT_FOUND, "participant_not_found"),
            Error::CheckpointNotFound { .. } => (S::NOT_FOUND, "checkpoint_not_found"),
            Error::HandoffNotFound { .. } => (S::NOT_FOUND, "handoff_not_found"),
            Error::ProfileNotFound { .. } => (S::NOT_FOUND, "profile_not_found"),
            Error::CellNotFound { .. } => (S::NOT_FOUND, "cell_not_found"),
            Error::MissionExists { .. } => (S::CONFLICT, "mission_exists"),
            Error::ParticipantExists { .. } => (S::CONFLICT, "participant_exists"),
            Error::SequenceConflict { .. } => (S::CONFLICT, "sequence_conflict"),
            Error::EventIdConflict { .. } => (S::CONFLICT, "event_id_conflict"),
            // Damaged storage is the server's problem, not a client conflict.
            Error::Corruption { .. } => (S::INTERNAL_SERVER_ERROR, "corruption"),
            // A file of the store failed a check (sled's data file, the
            // commit ledger): salvage is the way forward.
            Error::Damaged { .. } => (S::INTERNAL_SERVER_ERROR, "store_damaged"),
            // Acknowledged events are missing: the mission refuses writes
            // until the operator salvages or accepts the loss.
            Error::AcknowledgedLoss { .. } => {
                (S::INTERNAL_SERVER_ERROR, "acknowledged_events_missing")
            }
            Error::Closed => (S::SERVICE_UNAVAILABLE, "unavailable"),
            _ => match e.kind() {
                ErrorKind::InvalidInput => (S::BAD_REQUEST, "invalid_input"),
                ErrorKind::PermissionDenied => (S::FORBIDDEN, "permission_denied"),
                ErrorKind::NotFound => (S::NOT_FOUND, "not_found"),
                ErrorKind::Conflict => (S::CONFLICT, "conflict"),
                ErrorKind::Integrity => (S::INTERNAL_SERVER_ERROR, "corruption"),
                ErrorKind::Busy => (S::SERVICE_UNAVAILABLE, "busy"),
                _ => (S::INTERNAL_SERVER_ERROR, "internal"),
            },
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut resp = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mission-bus\""),
            );
        }
        resp
    }
}
