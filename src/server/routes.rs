//! The JSON endpoints. Each handler parses and checks its input and the
//! caller's token (from memory) on the async side. Appends then go to the
//! writer's next commit group and are awaited without blocking a thread
//! (`MissionBus::append_async`); other store work (reads, token issue) runs
//! in one blocking task, bounded by the blocking-work semaphore.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth::{bearer, Actor, Caller};
use super::error::ApiError;
use super::{lifecycle, stream, App};
use crate::document::{event_to_json, resume_packet_to_json};
use crate::{
    Action, AppendOptions, Capability, EventMeta, Json as JsonText, MissionConfig, NewMission,
};

type ApiResult = Result<Response, ApiError>;

/// Most events one `GET .../events` page returns.
pub(crate) const MAX_PAGE: usize = 1000;
/// Events per page when `limit` is not given.
pub(crate) const DEFAULT_PAGE: usize = 100;

pub(crate) fn router(app: Arc<App>) -> Router {
    let body_limit = app.limits.max_body_bytes;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/missions", post(create_mission))
        .route("/v1/missions/{m}/participants", post(add_participant))
        .route(
            "/v1/missions/{m}/participants/{name}/token",
            post(reissue_token),
        )
        .route("/v1/missions/{m}/messages", post(post_message))
        .route("/v1/missions/{m}/checkpoints", post(post_checkpoint))
        .route("/v1/missions/{m}/handoffs", post(post_handoff))
        .route("/v1/missions/{m}/handoffs/{id}/resume", get(handoff_resume))
        .route("/v1/missions/{m}/resume", get(latest_resume))
        .route("/v1/missions/{m}/events", get(lifecycle::events_page))
        .route("/v1/missions/{m}/handoffs", get(lifecycle::list_handoffs))
        .route(
            "/v1/missions/{m}/handoffs/{id}",
            get(lifecycle::get_handoff),
        )
        .route(
            "/v1/missions/{m}/handoffs/{id}/{step}",
            post(lifecycle::handoff_step),
        )
        .route(
            "/v1/missions/{m}/checkpoints",
            get(lifecycle::list_checkpoints),
        )
        .route(
            "/v1/missions/{m}/checkpoints/{id}",
            get(lifecycle::get_checkpoint),
        )
        .route(
            "/v1/missions/{m}/participants/{name}",
            delete(lifecycle::remove_participant).patch(lifecycle::change_role),
        )
        .route("/v1/missions/{m}/token", post(lifecycle::rotate_own_token))
        .route("/v1/missions/{m}/consumers", get(lifecycle::list_consumers))
        .route(
            "/v1/missions/{m}/consumers/{name}",
            axum::routing::delete(lifecycle::delete_consumer),
        )
        .route(
            "/v1/missions/{m}/consumers/{name}/ack",
            post(lifecycle::ack),
        )
        .route("/v1/missions/{m}/events/stream", get(stream::events_stream))
        .route("/v1/missions/{m}/verify", get(verify))
        .merge(super::views::routes())
        .merge(super::console::routes())
        .route("/v1/admin/backup", post(super::backup::admin_backup))
        .route("/v1/missions/{m}/batch", post(super::batch::post_batch))
        .route("/metrics", get(super::metrics::metrics))
        .merge(super::admin::routes())
        .merge(super::cells::routes())
        .merge(super::history::routes())
        .route("/v1/openapi.json", get(super::openapi::document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(from_fn_with_state(
            Arc::clone(&app),
            super::limits::read_body,
        ))
        .layer(from_fn_with_state(
            Arc::clone(&app),
            super::metrics::observe,
        ))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// Who is calling: the bearer token, checked from memory (the bus caches
/// token hashes it has seen; a miss costs one store lookup).
pub(crate) fn identify(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = bearer(headers)?;
    app.auth.identify(&app.bus, &token)
}

/// Authenticate, then run `f` on a blocking thread (bounded by the
/// blocking-work semaphore). The permit moves into the task, so a client
/// that hangs up cannot free a slot while its work still runs.
pub(crate) async fn call<T, F>(app: &Arc<App>, headers: &HeaderMap, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&App, Caller) -> Result<T, ApiError> + Send + 'static,
{
    let caller = identify(app, headers)?;
    let permit = Arc::clone(&app.blocking)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable("unavailable", "the server is stopping"))?;
    let app = Arc::clone(app);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f(&app, caller)
    })
    .await
    .map_err(|e| ApiError::internal(format!("request worker failed: {e}")))?
}

/// Parse a JSON body; 413 over the body limit, 400 for anything malformed.
pub(crate) fn body<T: DeserializeOwned>(raw: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = raw.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is over the server's limit",
            )
        } else {
            ApiError::bad_request("invalid_body", r.body_text())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("request body: {e}")))
}

pub(crate) fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|r| ApiError::bad_request("invalid_path", r.body_text()))
}

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))
}

pub(crate) fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

fn json_or_empty(v: Option<Value>) -> JsonText {
    match v {
        None | Some(Value::Null) => JsonText::empty_object(),
        Some(v) => JsonText::from_value(&v),
    }
}

// ----- missions and participants ------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateMission {
    mission_id: String,
    title: String,
    lead: String,
    #[serde(default)]
    profiles: Option<Value>,
}

async fn create_mission(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let req: CreateMission = body(raw)?;
    let config = match &req.profiles {
        None | Some(Value::Null) => MissionConfig::default(),
        Some(v) => MissionConfig::from_json(v).map_err(|reason| {
            ApiError::bad_request("invalid_config", format!("profiles: {reason}"))
        })?,
    };
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let events = app.bus.create_mission(
            NewMission::new(&req.mission_id, &req.title)
                .config(config)
                .lead(&req.lead),
        )?;
        let lead_token = app.bus.issue_token(&req.mission_id, &req.lead)?;
        Ok(created(json!({
            "mission_id": req.mission_id,
            "lead": req.lead,
            "lead_token": lead_token,
            "head_sequence": events.last().map_or(0, |e| e.sequence),
        })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddParticipant {
    name: String,
    role: String,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    sender: Option<String>,
}

async fn add_participant(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mission = path(m)?;
    let req: AddParticipant = body(raw)?;
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        actor.check_claimed_sender(req.sender.as_deref())?;
        // The library lets only the operator or a `lead` add participants.
        let event = app.bus.append(
            &mission,
            actor.sender(),
            Action::Join {
                name: req.name.clone(),
                role: req.role.clone(),
                metadata: json_or_empty(req.metadata),
            },
            &AppendOptions::default(),
        )?;
        let token = app.bus.issue_token(&mission, &req.name)?;
        Ok(created(json!({
            "name": req.name,
            "role": req.role,
            "token": token,
            "sequence": event.sequence,
        })))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    /// Revoke the earlier tokens (default true).
    #[serde(default)]
    rotate: Option<bool>,
}

/// Issue a participant a new token and revoke its earlier ones (rotation
/// after a leak, or recovery of a lost token); with `{"rotate": false}`,
/// an additional token, the earlier ones kept. Admin, or the mission's lead.
async fn reissue_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (mission, name) = path(p)?;
    let rotate = lifecycle::optional_body::<TokenBody>(raw)?
        .rotate
        .unwrap_or(true);
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        if let Actor::Participant(me) = &actor {
            let state = app.bus.state(&mission)?;
            if state.participants.get(me).map(|p| p.role.as_str()) != Some("lead") {
                return Err(ApiError::forbidden(
                    "lead_only",
                    format!("only the admin or a lead of mission '{mission}' can reissue tokens"),
                ));
            }
        }
        let (token, revoked) = if rotate {
            app.bus.reissue_token(&mission, &name)?
        } else {
            (app.bus.issue_token(&mission, &name)?, 0)
        };
        Ok(created(json!({
            "name": name,
            "token": token,
            "revoked": revoked,
        })))
    })
    .await
}

// ----- stream events -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostMessage {
    topic: String,
    /// Any JSON; `null` when omitted.
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
    #[serde(default)]
    sender: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostCheckpoint {
    summary: String,
    /// Any JSON; `null` when omitted.
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
    #[serde(default)]
    sender: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostHandoff {
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
    #[serde(default)]
    sender: Option<String>,
}

/// Append `action` as the token's owner; 201 with the stored event. The
/// fast path: no blocking thread, the token checked from memory, the
/// request fed to the writer's next commit group and awaited.
async fn append(
    app: Arc<App>,
    headers: HeaderMap,
    mission: String,
    claimed_sender: Option<String>,
    action: Action,
    opts: AppendOptions,
) -> ApiResult {
    let result = async {
        let actor = identify(&app, &headers)?.in_mission(&mission)?;
        actor.check_claimed_sender(claimed_sender.as_deref())?;
        let sender = actor.participant()?;
        Ok::<_, ApiError>(
            app.bus
                .append_async(&mission, sender, action, &opts)
                .await?,
        )
    }
    .await;
    match result {
        Ok(event) => {
            app.metrics.append("ok", 1);
            Ok(created(event_to_json(&event)))
        }
        Err(e) => {
            app.metrics.append(e.code, 0);
            Err(e)
        }
    }
}

async fn post_message(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mission = path(m)?;
    let req: PostMessage = body(raw)?;
    let opts = AppendOptions {
        expected_sequence: req.expected_sequence,
        event_id: req.event_id,
        meta: EventMeta {
            correlation_id: req.correlation_id,
            causation_id: req.causation_id,
            attributes: req.attributes,
        },
    };
    let action = Action::Publish {
        topic: req.topic,
        payload: JsonText::from_value(&req.payload),
    };
    append(app, headers, mission, req.sender, action, opts).await
}

async fn post_checkpoint(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mission = path(m)?;
    let req: PostCheckpoint = body(raw)?;
    let opts = AppendOptions {
        expected_sequence: req.expected_sequence,
        event_id: req.event_id,
        meta: EventMeta {
            correlation_id: req.correlation_id,
            causation_id: req.causation_id,
            attributes: req.attributes,
        },
    };
    let action = Action::Checkpoint {
        summary: req.summary,
        state: JsonText::from_value(&req.state),
        artifacts: req.artifacts,
    };
    append(app, headers, mission, req.sender, action, opts).await
}

async fn post_handoff(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mission = path(m)?;
    let req: PostHandoff = body(raw)?;
    let opts = AppendOptions {
        expected_sequence: req.expected_sequence,
        event_id: req.event_id,
        meta: EventMeta {
            correlation_id: req.correlation_id,
            causation_id: req.causation_id,
            attributes: req.attributes,
        },
    };
    let action = Action::Handoff {
        recipient: req.recipient,
        checkpoint_id: req.checkpoint_id,
        note: req.note,
    };
    append(app, headers, mission, req.sender, action, opts).await
}

// ----- reads -----------------------------------------------------------------

/// 403 unless the actor may use `capability` in `mission` (the admin may).
pub(crate) fn require(
    app: &App,
    mission: &str,
    actor: &super::auth::Actor,
    cap: Capability,
) -> Result<(), ApiError> {
    match actor {
        super::auth::Actor::Operator => {
            // Still 404 for an unknown mission.
            app.bus.state(mission)?;
            Ok(())
        }
        super::auth::Actor::Participant(name) => Ok(app.bus.require(mission, name, cap)?),
    }
}

async fn handoff_resume(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (mission, id) = path(p)?;
    let handoff_id = Uuid::parse_str(&id).map_err(|e| {
        ApiError::bad_request(
            "invalid_path",
            format!("handoff id '{id}' is not a UUID: {e}"),
        )
    })?;
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        require(app, &mission, &actor, Capability::Read)?;
        let packet = app.bus.resume_packet(&handoff_id)?;
        if packet.mission_id != mission {
            // Handoffs of other missions do not exist as far as this one knows.
            return Err(crate::Error::HandoffNotFound {
                what: format!("{handoff_id} in mission '{mission}'"),
            }
            .into());
        }
        Ok(Json(resume_packet_to_json(&packet)).into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeQuery {
    #[serde(rename = "for")]
    recipient: Option<String>,
}

async fn latest_resume(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    q: Result<Query<ResumeQuery>, QueryRejection>,
) -> ApiResult {
    let mission = path(m)?;
    let q = query(q)?;
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        require(app, &mission, &actor, Capability::Read)?;
        // A participant asks for itself by default; the admin must say whom.
        let recipient = match (q.recipient, &actor) {
            (Some(r), _) => r,
            (None, super::auth::Actor::Participant(name)) => name.clone(),
            (None, super::auth::Actor::Operator) => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "'for=NAME' is required with the admin token",
                ))
            }
        };
        let packet = app.bus.latest_resume_packet(&mission, &recipient)?;
        Ok(Json(resume_packet_to_json(&packet)).into_response())
    })
    .await
}

async fn verify(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let mission = path(m)?;
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        require(app, &mission, &actor, Capability::Audit)?;
        let report = app.bus.verify(&mission)?;
        app.verified.record(&report);
        Ok(Json(report.to_json()).into_response())
    })
    .await
}
