//! Read-only JSON views the auditor's console needs beyond the agent API:
//! the missions a token may read, one mission's summary, and one event
//! record with its place in the hash chain.
//!
//! Access follows the rest of the API: the admin sees every mission; a
//! participant token sees its own mission only, and only with `read`. A
//! token of another mission is refused (403 `wrong_mission`) before
//! anything about the mission asked for is looked up, and the list simply
//! leaves other missions out.
//!
//! These views never scan a log: a summary is the mission's published
//! state plus one record read (the head's timestamp), and an event record
//! is the record and its predecessor. The console pages through history
//! with `GET /v1/missions/{m}/events`, so a 1M-event mission costs the same
//! to open as a small one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::routes::{call, path, require};
use super::App;
use crate::document::event_to_json;
use crate::store::hex;
use crate::{Capability, MissionState, VerifyReport};

/// The console's read-only routes, merged into the API router.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/missions", get(list_missions))
        .route("/v1/missions/{m}", get(mission_summary))
        .route("/v1/missions/{m}/events/{seq}", get(event_record))
}

/// The outcome of the latest verification of each mission since the server
/// started, so the missions list can show it without re-verifying (a verify
/// reads the whole log and holds up that mission's writers meanwhile).
#[derive(Default)]
pub(crate) struct LastVerified {
    by_mission: Mutex<HashMap<String, Value>>,
}

impl LastVerified {
    /// Remember `report` as the mission's latest verification.
    pub(crate) fn record(&self, report: &VerifyReport) {
        let first = report
            .first_problem()
            .map(|p| json!({"sequence": p.sequence, "problem": p.what}));
        let entry = json!({
            "intact": report.is_intact(),
            "head_sequence": report.head_sequence,
            "events_checked": report.events_checked,
            "problems": report.problems.len(),
            "first_problem": first,
            "verified_at": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        self.lock().insert(report.mission_id.clone(), entry);
    }

    fn get(&self, mission: &str) -> Value {
        self.lock().get(mission).cloned().unwrap_or(Value::Null)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Value>> {
        self.by_mission.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Who the token is, for the console's header and its choice of controls.
fn caller_json(app: &App, caller: &Caller) -> Result<Value, ApiError> {
    Ok(match caller {
        Caller::Admin => json!({"kind": "admin"}),
        Caller::Participant(owner) => {
            let state = app.bus.state(&owner.mission_id)?;
            let role = state
                .participants
                .get(&owner.name)
                .map(|p| p.role.clone())
                .unwrap_or_default();
            let capabilities: Vec<&str> = Capability::ALL
                .into_iter()
                .filter(|c| state.allowed(&owner.name, *c))
                .map(Capability::as_str)
                .collect();
            json!({
                "kind": "participant",
                "mission_id": owner.mission_id,
                "name": owner.name,
                "role": role,
                "capabilities": capabilities,
            })
        }
    })
}

/// One mission as the console shows it. Lineage (forks) is not recorded by
/// the bus yet; when it is, it belongs here (`forked_from`, `forks`), and
/// the console already renders those fields when present.
fn summary_json(app: &App, state: &MissionState) -> Result<Value, ApiError> {
    let mission = &state.mission_id;
    // A damaged head record must not stop the auditor from opening the
    // mission (to verify it): the summary says what failed instead.
    let (last_activity, last_activity_error) = match app.bus.event(mission, state.head) {
        _ if state.head == 0 => (Value::Null, Value::Null),
        Ok(e) => (json!(e.timestamp_rfc3339()), Value::Null),
        Err(e) => (Value::Null, json!(e.to_string())),
    };
    let participants: Vec<Value> = state
        .participants
        .values()
        .map(|p| json!({"name": p.name, "role": p.role, "metadata": p.metadata.value()}))
        .collect();
    Ok(json!({
        "mission_id": mission,
        "title": state.title,
        "head_sequence": state.head,
        "last_activity": last_activity,
        "last_activity_error": last_activity_error,
        "participants": participants,
        "counts": {
            "messages": state.messages,
            "checkpoints": state.checkpoints,
            "handoffs": state.handoffs,
        },
        "verify": app.verified.get(mission),
        "forked_from": state.parent.as_ref().map(crate::document::lineage_to_json),
        "first_sequence": state.first_sequence(),
    }))
}

/// `GET /v1/missions`: `{caller, missions: [summary...]}`, sorted by id.
/// The admin gets every mission; a participant its own, if it may read it.
async fn list_missions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    call(&app, &headers, move |app, caller| {
        let visible: Vec<String> = match &caller {
            Caller::Admin => app.bus.mission_ids(),
            Caller::Participant(owner) => {
                if app
                    .bus
                    .allowed(&owner.mission_id, &owner.name, Capability::Read)?
                {
                    vec![owner.mission_id.clone()]
                } else {
                    Vec::new()
                }
            }
        };
        let mut missions = Vec::with_capacity(visible.len());
        for id in visible {
            let summary = app
                .bus
                .state(&id)
                .map_err(ApiError::from)
                .and_then(|state| summary_json(app, &state));
            // One damaged mission must not hide the others: list it with
            // the error, so the auditor sees where to look.
            missions
                .push(summary.unwrap_or_else(|e| json!({"mission_id": id, "error": e.message})));
        }
        Ok(Json(json!({
            "caller": caller_json(app, &caller)?,
            "missions": missions,
        }))
        .into_response())
    })
    .await
}

/// `GET /v1/missions/{m}`: one mission's summary (admin, or `read`).
async fn mission_summary(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let mission = path(m)?;
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        require(app, &mission, &actor, Capability::Read)?;
        let state = app.bus.state(&mission)?;
        let mut summary = summary_json(app, &state)?;
        summary["caller"] = caller_json(app, &caller)?;
        Ok(Json(summary).into_response())
    })
    .await
}

/// `GET /v1/missions/{m}/events/{seq}`: `{event, hash, previous_hash}`
/// (admin, or `read`). The record is read through the chain-checked path,
/// so the two hashes returned are the ones the chain links: the record's
/// own hash is what record `seq + 1` (or the head) carries, and
/// `previous_hash` is what this record carries. A broken link is a 500
/// `corruption` naming the sequence, as for an events page.
async fn event_record(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (mission, seq) = path(p)?;
    let sequence: u64 = seq.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_path",
            format!("'{seq}' is not a sequence number (1 or more)"),
        )
    })?;
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        require(app, &mission, &actor, Capability::Read)?;
        let event = match app.bus.events(&mission, sequence, sequence)?.next() {
            Some(e) => e?,
            None => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "event_not_found",
                    format!("mission '{mission}' has no sequence {sequence}"),
                ))
            }
        };
        let hash_of = |s: u64| -> Result<Value, ApiError> {
            Ok(app
                .bus
                .record_hash(&mission, s)?
                .map_or(Value::Null, |h| json!(hex(&h))))
        };
        Ok(Json(json!({
            "mission_id": mission,
            "event": event_to_json(&event),
            "hash": hash_of(sequence)?,
            "previous_hash": hash_of(sequence - 1)?,
        }))
        .into_response())
    })
    .await
}
