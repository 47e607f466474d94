//! Admin endpoints of history management: fork, delete (tombstones),
//! prune, retention policies, and the retention timer.
//!
//! - `POST /v1/admin/missions/{m}/fork` `{checkpoint_id, new_mission_id}`
//!   -> 201 `{mission_id, events}`
//! - `POST /v1/admin/missions/{m}/delete` `{deleted_by?}` -> 200 tombstone
//! - `POST /v1/admin/missions/{m}/prune` `{before}` -> 200 prune report
//! - `POST /v1/admin/missions/{m}/retention` `{max_age_s, max_count}` -> 200 event
//! - `POST /v1/admin/retention/apply` -> 200 `{pruned: [...], errors: [...]}`
//! - `GET /v1/admin/tombstones[?mission=ID]` -> 200 `{tombstones: [...]}`

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::ApiError;
use super::routes::{body, call, created, path};
use super::App;
use crate::document::{event_to_json, prune_report_to_json, tombstone_to_json};
use crate::{MissionBus, Retention};

/// The history routes, merged into the API router.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/admin/missions/{m}/fork", post(fork))
        .route("/v1/admin/missions/{m}/delete", post(delete))
        .route("/v1/admin/missions/{m}/prune", post(prune))
        .route("/v1/admin/missions/{m}/retention", post(retention))
        .route("/v1/admin/retention/apply", post(apply_retention))
        .route("/v1/admin/tombstones", get(tombstones))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkBody {
    checkpoint_id: Uuid,
    new_mission_id: String,
}

async fn fork(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mission = path(m)?;
    let req: ForkBody = body(raw)?;
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let events = app
            .bus
            .fork(&mission, &req.checkpoint_id, &req.new_mission_id)?;
        Ok(created(json!({
            "mission_id": req.new_mission_id,
            "events": events.iter().map(event_to_json).collect::<Vec<_>>(),
        }))
        .into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    #[serde(default)]
    deleted_by: Option<String>,
}

async fn delete(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mission = path(m)?;
    let req: DeleteBody = if raw.as_ref().is_ok_and(|b| b.is_empty()) {
        DeleteBody { deleted_by: None }
    } else {
        body(raw)?
    };
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let by = req.deleted_by.unwrap_or_else(|| "admin".to_string());
        let t = app.bus.delete_mission(&mission, &by)?;
        Ok(Json(tombstone_to_json(&t)).into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneBody {
    before: u64,
}

async fn prune(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mission = path(m)?;
    let req: PruneBody = body(raw)?;
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let r = app.bus.prune(&mission, req.before)?;
        Ok(Json(prune_report_to_json(&r)).into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionBody {
    #[serde(default)]
    max_age_s: u64,
    #[serde(default)]
    max_count: u64,
}

async fn retention(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mission = path(m)?;
    let req: RetentionBody = body(raw)?;
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let e = app.bus.set_retention(
            &mission,
            crate::OPERATOR,
            Retention {
                max_age_s: req.max_age_s,
                max_count: req.max_count,
            },
        )?;
        Ok(Json(event_to_json(&e)).into_response())
    })
    .await
}

async fn apply_retention(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        Ok(Json(retention_outcome(&app.bus, chrono::Utc::now())).into_response())
    })
    .await
}

/// Apply every policy at `now`: `{pruned: [report...], errors: [{mission_id, error}]}`.
pub(crate) fn retention_outcome(bus: &MissionBus, now: chrono::DateTime<chrono::Utc>) -> Value {
    let mut pruned = Vec::new();
    let mut errors = Vec::new();
    for (mission, r) in bus.apply_retention(now) {
        match r {
            Ok(r) => pruned.push(prune_report_to_json(&r)),
            Err(e) => errors.push(json!({"mission_id": mission, "error": e.to_string()})),
        }
    }
    json!({"pruned": pruned, "errors": errors})
}

async fn tombstones(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut mission = None;
    for (k, v) in super::lifecycle::query_pairs(raw.as_deref())? {
        match k.as_str() {
            "mission" => mission = Some(v),
            other => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("query parameter '{other}' is not known (mission)"),
                ))
            }
        }
    }
    call(&app, &headers, move |app, caller| {
        caller.require_admin()?;
        let list = app.bus.tombstones(mission.as_deref())?;
        Ok(Json(json!({
            "tombstones": list.iter().map(tombstone_to_json).collect::<Vec<_>>(),
        }))
        .into_response())
    })
    .await
}

/// The retention timer: apply every mission's policy every
/// `limits.retention_every` (off when zero), on a blocking thread, until
/// the server stops.
pub(crate) fn spawn_retention_timer(app: &Arc<App>) {
    let every: Duration = app.limits.retention_every;
    if every.is_zero() {
        return;
    }
    let bus = app.bus.clone();
    let mut stop = app.stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            retention_tick(&bus).await;
        }
    });
}

async fn retention_tick(bus: &MissionBus) {
    let b = bus.clone();
    let outcome =
        tokio::task::spawn_blocking(move || retention_outcome(&b, chrono::Utc::now())).await;
    match outcome {
        Ok(v) => {
            let n = v["pruned"].as_array().map_or(0, Vec::len);
            if n > 0 || v["errors"].as_array().is_some_and(|e| !e.is_empty()) {
                tracing::info!(outcome = %v, "retention applied");
            }
        }
        Err(e) => tracing::warn!(error = %e, "retention timer failed"),
    }
}
