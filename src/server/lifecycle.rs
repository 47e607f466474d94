//! Endpoints of the resuming agent's API: the handoff lifecycle,
//! checkpoints and handoffs as reads, membership changes, self token
//! rotation, consumer positions, and the filter parameters shared by
//! `GET .../events` and its stream. Also the lease-expiry timer.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth::Actor;
use super::error::ApiError;
use super::routes::{call, path, require, DEFAULT_PAGE, MAX_PAGE};
use super::App;
use crate::document::{event_to_json, handoff_info_to_json};
use crate::{Capability, ConsumerPosition, EventFilter, EventType, MissionBus};

type ApiResult = Result<Response, ApiError>;

/// How often the server expires lapsed leases.
pub(crate) const LEASE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Run [`MissionBus::expire_all_leases`] with the clock's time every
/// [`LEASE_CHECK_EVERY`] until the server stops.
pub(crate) fn spawn_lease_timer(app: &Arc<App>) {
    let bus = app.bus.clone();
    let mut stop = app.stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LEASE_CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let bus = bus.clone();
            let run =
                tokio::task::spawn_blocking(move || bus.expire_all_leases(chrono::Utc::now()));
            match run.await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(expired = n, "handoff leases expired"),
                Ok(Err(e)) => tracing::warn!(error = %e, "lease expiry failed"),
                Err(e) => tracing::warn!(error = %e, "lease expiry task failed"),
            }
        }
    });
}

// ----- query strings -----------------------------------------------------

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_component(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_val);
                let lo = bytes.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h * 16 + l),
                    _ => {
                        return Err(ApiError::bad_request(
                            "invalid_query",
                            format!("bad percent-escape in '{s}'"),
                        ))
                    }
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::bad_request("invalid_query", format!("'{s}' is not UTF-8")))
}

/// `a=1&b=2&a=3` as ordered pairs (repeated keys kept).
pub(crate) fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((decode_component(k)?, decode_component(v)?));
    }
    Ok(out)
}

/// The filter parameters of `GET .../events` and its stream: `type`
/// (repeatable), `sender`, `recipient`, `topic_prefix`, `correlation_id`,
/// `causation_id`, `attribute` (`KEY=VALUE`), `from`, `to`,
/// `order` (`asc`/`desc`), `limit`, `consumer`. `extra` names other keys
/// the caller accepts; anything else is a 400 naming the key.
pub(crate) struct FilterQuery {
    pub(crate) filter: EventFilter,
    pub(crate) consumer: Option<String>,
    pub(crate) extra: Vec<(String, String)>,
}

pub(crate) fn filter_query(raw: Option<&str>, extra: &[&str]) -> Result<FilterQuery, ApiError> {
    let mut q = FilterQuery {
        filter: EventFilter::default(),
        consumer: None,
        extra: Vec::new(),
    };
    let bad = |key: &str, why: String| {
        ApiError::bad_request("invalid_query", format!("query parameter '{key}': {why}"))
    };
    let number = |key: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| bad(key, format!("'{v}' is not a non-negative integer")))
    };
    let mut seen = std::collections::HashSet::new();
    for (k, v) in query_pairs(raw)? {
        if k != "type" && !seen.insert(k.clone()) {
            return Err(bad(&k, "given twice".into()));
        }
        match k.as_str() {
            "type" => q
                .filter
                .types
                .push(EventType::parse(&v).map_err(|e| bad("type", e.to_string()))?),
            "sender" => q.filter.sender = Some(v),
            "recipient" => q.filter.recipient = Some(v),
            "topic_prefix" => q.filter.topic_prefix = Some(v),
            "correlation_id" => q.filter.correlation_id = Some(v),
            "causation_id" => q.filter.causation_id = Some(v),
            "attribute" => {
                let (key, value) = v
                    .split_once('=')
                    .ok_or_else(|| bad("attribute", format!("'{v}' is not KEY=VALUE")))?;
                q.filter.attribute = Some((key.to_string(), value.to_string()));
            }
            "from" => q.filter.from = Some(number("from", &v)?),
            "to" => q.filter.to = Some(number("to", &v)?),
            "limit" => {
                let n = number("limit", &v)?;
                if n == 0 || n > MAX_PAGE as u64 {
                    return Err(bad("limit", format!("must be 1..={MAX_PAGE}, got {n}")));
                }
                q.filter.limit = Some(n as usize);
            }
            "order" => {
                q.filter.newest_first = match v.as_str() {
                    "asc" => false,
                    "desc" => true,
                    _ => return Err(bad("order", format!("'{v}' is not asc or desc"))),
                }
            }
            "consumer" => q.consumer = Some(v),
            other if extra.contains(&other) => q.extra.push((k, v)),
            other => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("unknown query parameter '{other}'"),
                ))
            }
        }
    }
    Ok(q)
}

/// `GET /v1/missions/{m}/events`: a filtered page. `next` is where the
/// next page starts (`from` for ascending, `to` for `order=desc`, `null`
/// when the range is exhausted going down).
pub(crate) async fn events_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let mission = path(m)?;
    let mut q = filter_query(raw.as_deref(), &[])?;
    q.filter.limit.get_or_insert(DEFAULT_PAGE);
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        let reader = match &actor {
            Actor::Operator => None,
            Actor::Participant(name) => Some(name.as_str()),
        };
        let page = app
            .bus
            .read_events(&mission, reader, &q.filter, q.consumer.as_deref())?;
        let next = if q.filter.newest_first {
            page.next
        } else {
            // Stopped at the limit: right after the last record examined;
            // otherwise past the end of the range (or where it started).
            let from = q.filter.from.unwrap_or(1).max(1);
            let end = q.filter.to.unwrap_or(u64::MAX).min(page.head_sequence);
            Some(page.next.unwrap_or_else(|| from.max(end.saturating_add(1))))
        };
        // Handoffs carry their lifecycle as of now (the console draws it):
        // `lifecycle: {state, leased_until}` when the state still knows them.
        let state = app.bus.state(&mission)?;
        let events: Vec<Value> = page
            .events
            .iter()
            .map(|e| {
                let mut v = event_to_json(e);
                if let (Some(h), Some(obj)) = (
                    (e.event_type() == EventType::Handoff)
                        .then(|| state.handoff(&e.id))
                        .flatten(),
                    v.as_object_mut(),
                ) {
                    let info = handoff_info_to_json(h);
                    obj.insert(
                        "lifecycle".into(),
                        json!({"state": h.status.as_str(), "leased_until": info["lease_expires_at"]}),
                    );
                }
                v
            })
            .collect();
        Ok(Json(json!({
            "events": events,
            "next": next,
            "head_sequence": page.head_sequence,
        }))
        .into_response())
    })
    .await
}

// ----- handoff lifecycle ---------------------------------------------------

fn handoff_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|e| {
        ApiError::bad_request(
            "invalid_path",
            format!("handoff id '{id}' is not a UUID: {e}"),
        )
    })
}

/// A JSON body that may be empty (then `T::default()`).
pub(crate) fn optional_body<T: serde::de::DeserializeOwned + Default>(
    raw: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = raw.map_err(|r| ApiError::bad_request("invalid_body", r.body_text()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("request body: {e}")))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StepBody {
    #[serde(default)]
    lease_ms: Option<u64>,
    #[serde(default)]
    note: Option<String>,
    /// Checked against the token's owner, never trusted.
    #[serde(default)]
    sender: Option<String>,
}

/// Lease of an acceptance or heartbeat when the body names none (60 s).
pub(crate) const DEFAULT_LEASE_MS: u64 = 60_000;

/// `POST /v1/missions/{m}/handoffs/{id}/{step}` with step one of `accept`,
/// `heartbeat`, `complete`, `decline`, `release`; the token's owner acts.
pub(crate) async fn handoff_step(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (mission, id, step) = path(p)?;
    let id = handoff_id(&id)?;
    let req: StepBody = optional_body(raw)?;
    if !matches!(
        step.as_str(),
        "accept" | "heartbeat" | "complete" | "decline" | "release"
    ) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no handoff step '{step}' (accept, heartbeat, complete, decline, release)"),
        ));
    }
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        actor.check_claimed_sender(req.sender.as_deref())?;
        let me = actor.participant()?;
        let bus: &MissionBus = &app.bus;
        let lease = req.lease_ms.unwrap_or(DEFAULT_LEASE_MS);
        let note = req.note.as_deref().unwrap_or("");
        let event = match step.as_str() {
            "accept" => bus.accept_handoff(&mission, me, id, lease)?,
            "heartbeat" => bus.heartbeat(&mission, me, id, lease)?,
            "complete" => bus.complete_handoff(&mission, me, id, note)?,
            "decline" => bus.decline_handoff(&mission, me, id, note)?,
            _ => bus.release_handoff(&mission, me, id, note)?,
        };
        let info = bus.handoff_info(&mission, &id)?;
        Ok((
            StatusCode::CREATED,
            Json(json!({"event": event_to_json(&event), "handoff": handoff_info_to_json(&info)})),
        )
            .into_response())
    })
    .await
}

/// `GET /v1/missions/{m}/handoffs?recipient=NAME`: handoffs addressed to
/// `recipient` (a participant's own by default; everyone's for the admin
/// without `recipient`), open first, newest first, with their status.
pub(crate) async fn list_handoffs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let mission = path(m)?;
    let mut recipient = None;
    for (k, v) in query_pairs(raw.as_deref())? {
        match k.as_str() {
            "recipient" => recipient = Some(v),
            other => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("unknown query parameter '{other}'"),
                ))
            }
        }
    }
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        require(app, &mission, &actor, Capability::Read)?;
        let who = match (&recipient, &actor) {
            (Some(r), _) => Some(r.as_str()),
            (None, Actor::Participant(me)) => Some(me.as_str()),
            (None, Actor::Operator) => None,
        };
        let list = app.bus.handoffs(&mission, who)?;
        let items: Vec<Value> = list.iter().map(handoff_info_to_json).collect();
        Ok(Json(json!({"handoffs": items})).into_response())
    })
    .await
}

/// `GET /v1/missions/{m}/handoffs/{id}`: one handoff's lifecycle record.
pub(crate) async fn get_handoff(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (mission, id) = path(p)?;
    let id = handoff_id(&id)?;
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        require(app, &mission, &actor, Capability::Read)?;
        let info = app.bus.handoff_info(&mission, &id)?;
        Ok(Json(handoff_info_to_json(&info)).into_response())
    })
    .await
}

// ----- checkpoints ---------------------------------------------------------

/// `GET /v1/missions/{m}/checkpoints?sender=&before=&limit=`: newest first.
pub(crate) async fn list_checkpoints(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let mission = path(m)?;
    let q = filter_query(raw.as_deref(), &["before"])?;
    let f = &q.filter;
    if !f.types.is_empty()
        || q.consumer.is_some()
        || f.recipient.is_some()
        || f.topic_prefix.is_some()
        || f.correlation_id.is_some()
        || f.causation_id.is_some()
        || f.attribute.is_some()
        || f.from.is_some()
        || f.to.is_some()
        || f.newest_first
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "checkpoints take sender, before and limit",
        ));
    }
    let before = match q.extra.first() {
        Some((_, v)) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::bad_request("invalid_query", format!("before: '{v}' is not a sequence"))
        })?),
        None => None,
    };
    let limit = q.filter.limit.unwrap_or(100);
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        require(app, &mission, &actor, Capability::Read)?;
        let list = app
            .bus
            .checkpoints(&mission, q.filter.sender.as_deref(), before, limit)?;
        let next = (list.len() == limit).then(|| list.last().map(|e| e.sequence));
        let items: Vec<Value> = list.iter().map(event_to_json).collect();
        Ok(Json(json!({"checkpoints": items, "next_before": next.flatten()})).into_response())
    })
    .await
}

/// `GET /v1/missions/{m}/checkpoints/{id}`, or `.../checkpoints/latest?sender=NAME`
/// (a participant's own latest by default).
pub(crate) async fn get_checkpoint(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let (mission, id) = path(p)?;
    let mut sender = None;
    for (k, v) in query_pairs(raw.as_deref())? {
        match k.as_str() {
            "sender" if id == "latest" => sender = Some(v),
            other => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("unknown query parameter '{other}'"),
                ))
            }
        }
    }
    let by_id = if id == "latest" {
        None
    } else {
        Some(Uuid::parse_str(&id).map_err(|e| {
            ApiError::bad_request(
                "invalid_path",
                format!("checkpoint id '{id}' is not a UUID or 'latest': {e}"),
            )
        })?)
    };
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        require(app, &mission, &actor, Capability::Read)?;
        let event = match (by_id, sender, &actor) {
            (Some(id), _, _) => app.bus.checkpoint_in(&mission, &id)?,
            (None, Some(s), _) => app.bus.latest_checkpoint(&mission, &s)?,
            (None, None, Actor::Participant(me)) => app.bus.latest_checkpoint(&mission, me)?,
            (None, None, Actor::Operator) => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "'sender=NAME' is required with the admin token",
                ))
            }
        };
        Ok(Json(event_to_json(&event)).into_response())
    })
    .await
}

// ----- membership and tokens -------------------------------------------------

/// `DELETE /v1/missions/{m}/participants/{name}`: remove (admin or lead).
pub(crate) async fn remove_participant(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (mission, name) = path(p)?;
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        let event = app
            .bus
            .remove_participant(&mission, actor.sender(), &name)?;
        Ok(Json(event_to_json(&event)).into_response())
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    #[serde(default)]
    role: String,
    /// Checked against the token's owner, never trusted.
    #[serde(default)]
    sender: Option<String>,
}

/// `PATCH /v1/missions/{m}/participants/{name}` with `{"role": R}` (admin or lead).
pub(crate) async fn change_role(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (mission, name) = path(p)?;
    let req: RoleBody = optional_body(raw)?;
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        actor.check_claimed_sender(req.sender.as_deref())?;
        let event = app
            .bus
            .change_role(&mission, actor.sender(), &name, &req.role)?;
        Ok(Json(event_to_json(&event)).into_response())
    })
    .await
}

/// `POST /v1/missions/{m}/token`: a participant rotates its own token; every
/// earlier token of it stops working.
pub(crate) async fn rotate_own_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let mission = path(m)?;
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        let me = actor.participant()?.to_string();
        let (token, revoked) = app.bus.reissue_token(&mission, &me)?;
        Ok((
            StatusCode::CREATED,
            Json(json!({"name": me, "token": token, "revoked": revoked})),
        )
            .into_response())
    })
    .await
}

// ----- consumers ------------------------------------------------------------

fn consumer_json(c: &ConsumerPosition) -> Value {
    json!({
        "participant": c.participant,
        "consumer": c.consumer,
        "position": c.position,
        "updated_at": c.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AckBody {
    #[serde(default)]
    sequence: Option<u64>,
    /// Checked against the token's owner, never trusted.
    #[serde(default)]
    sender: Option<String>,
}

/// `POST /v1/missions/{m}/consumers/{name}/ack` with `{"sequence": N}`.
pub(crate) async fn ack(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (mission, consumer) = path(p)?;
    let req: AckBody = optional_body(raw)?;
    let sequence = req
        .sequence
        .ok_or_else(|| ApiError::bad_request("invalid_body", "'sequence' is required"))?;
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        actor.check_claimed_sender(req.sender.as_deref())?;
        let me = actor.participant()?;
        require(app, &mission, &actor, Capability::Read)?;
        let position = app.bus.ack(&mission, me, &consumer, sequence)?;
        Ok(
            Json(json!({"participant": me, "consumer": consumer, "position": position}))
                .into_response(),
        )
    })
    .await
}

/// `GET /v1/missions/{m}/consumers`: a participant's own; every
/// participant's for the admin, leads and auditors (capability `audit`).
pub(crate) async fn list_consumers(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let mission = path(m)?;
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        require(app, &mission, &actor, Capability::Read)?;
        let who = match &actor {
            Actor::Operator => None,
            Actor::Participant(me) => {
                if app.bus.allowed(&mission, me, Capability::Audit)? {
                    None
                } else {
                    Some(me.as_str())
                }
            }
        };
        let list = app.bus.consumers(&mission, who)?;
        let items: Vec<Value> = list.iter().map(consumer_json).collect();
        Ok(Json(json!({"consumers": items})).into_response())
    })
    .await
}

/// `DELETE /v1/missions/{m}/consumers/{name}`: forget one of my consumers.
pub(crate) async fn delete_consumer(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (mission, consumer) = path(p)?;
    call(&app, &headers, move |app, caller| {
        let actor = caller.in_mission(&mission)?;
        let me = actor.participant()?;
        if !app.bus.delete_consumer(&mission, me, &consumer)? {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("'{me}' has no consumer '{consumer}' in mission '{mission}'"),
            ));
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}
