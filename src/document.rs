//! JSON shapes at the edges: events, resume packets, whole-mission documents.
//!
//! Field names are the Python prototype's (`event_type`, `sender`,
//! `sequence`, `timestamp`, `message_id`/`checkpoint_id`/`handoff_id`,
//! `topic`, `payload`, `summary`, `state`, `artifacts`, `recipient`, `note`),
//! so existing tools read our exports and we read theirs. Events the
//! prototype did not have (`mission_created`, `participant_joined`,
//! `role_changed`) carry their id as `event_id`.
//!
//! Two document formats:
//! - **seed**: the prototype's whole-mission document (`mission_id`, `title`,
//!   `config`, `participants`, `events`), whose `events` hold only messages,
//!   checkpoints and handoffs. Importing one synthesizes the creation and
//!   membership events, so stream events get new sequence numbers (ids,
//!   timestamps, payloads and order are kept).
//! - **jsonl**: every event, one JSON object per line, lossless.

use std::collections::BTreeMap;

mod lenient;
pub use lenient::{log_from_seed_lenient, SeedImport};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::bus::ResumePacket;
use crate::error::{Error, Result};
use crate::event::{now_micros, Event, EventBody, EventType, Json, OPERATOR};
use crate::profiles::MissionConfig;
use crate::state::{HandoffInfo, MissionState, Participant};

/// 64 hex digits to 32 bytes.
fn parse_hash(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// An event as JSON with the prototype's field names.
pub fn event_to_json(e: &Event) -> Value {
    let mut m = Map::new();
    m.insert("event_type".into(), json!(e.event_type().as_str()));
    let id_field = match e.event_type() {
        EventType::Message => "message_id",
        EventType::Checkpoint => "checkpoint_id",
        EventType::Handoff => "handoff_id",
        EventType::CellStarted => "cell_id",
        _ => "event_id",
    };
    m.insert(id_field.into(), json!(e.id.to_string()));
    m.insert("sender".into(), json!(e.sender));
    m.insert("sequence".into(), json!(e.sequence));
    m.insert("timestamp".into(), json!(e.timestamp_rfc3339()));
    match &e.body {
        EventBody::MissionCreated {
            mission_id,
            title,
            config,
        } => {
            m.insert("mission_id".into(), json!(mission_id));
            m.insert("title".into(), json!(title));
            m.insert("config".into(), config.to_json());
        }
        EventBody::ParticipantJoined {
            name,
            role,
            metadata,
        } => {
            m.insert("participant".into(), json!(name));
            m.insert("role".into(), json!(role));
            m.insert("metadata".into(), metadata.value());
        }
        EventBody::RoleChanged { name, role } => {
            m.insert("participant".into(), json!(name));
            m.insert("role".into(), json!(role));
        }
        EventBody::Message { topic, payload } => {
            m.insert("topic".into(), json!(topic));
            m.insert("payload".into(), payload.value());
        }
        EventBody::Checkpoint {
            summary,
            state,
            artifacts,
        } => {
            m.insert("summary".into(), json!(summary));
            m.insert("state".into(), state.value());
            m.insert("artifacts".into(), json!(artifacts));
        }
        EventBody::Handoff {
            recipient,
            checkpoint_id,
            note,
        } => {
            m.insert("recipient".into(), json!(recipient));
            m.insert("checkpoint_id".into(), json!(checkpoint_id.to_string()));
            m.insert("note".into(), json!(note));
        }
        EventBody::LossAccepted {
            first,
            last,
            ledger_hash,
        } => {
            m.insert("lost_first".into(), json!(first));
            m.insert("lost_last".into(), json!(last));
            let hex: String = ledger_hash.iter().map(|b| format!("{b:02x}")).collect();
            m.insert("ledger_head_hash".into(), json!(hex));
        }
        EventBody::HandoffAccepted {
            handoff_id,
            lease_ms,
        }
        | EventBody::HandoffHeartbeat {
            handoff_id,
            lease_ms,
        } => {
            m.insert("handoff_id".into(), json!(handoff_id.to_string()));
            m.insert("lease_ms".into(), json!(lease_ms));
        }
        EventBody::HandoffCompleted { handoff_id, note }
        | EventBody::HandoffDeclined { handoff_id, note }
        | EventBody::HandoffReleased { handoff_id, note } => {
            m.insert("handoff_id".into(), json!(handoff_id.to_string()));
            m.insert("note".into(), json!(note));
        }
        EventBody::HandoffExpired { handoff_id, at } => {
            m.insert("handoff_id".into(), json!(handoff_id.to_string()));
            m.insert(
                "at".into(),
                json!(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            );
        }
        EventBody::ParticipantRemoved { name } => {
            m.insert("participant".into(), json!(name));
        }
        EventBody::CellStarted {
            profile,
            mechanism,
            workspace,
            command,
        } => {
            m.insert("profile".into(), json!(profile));
            m.insert("mechanism".into(), json!(mechanism));
            m.insert("workspace".into(), json!(workspace));
            m.insert("command".into(), json!(command));
        }
        EventBody::CellExited {
            cell_id,
            exit_code,
            signal,
            duration_ms,
            error,
        } => {
            m.insert("cell_id".into(), json!(cell_id.to_string()));
            m.insert("exit_code".into(), json!(exit_code));
            m.insert("signal".into(), json!(signal));
            m.insert("duration_ms".into(), json!(duration_ms));
            m.insert("error".into(), json!(error));
        }
    }
    Value::Object(m)
}

/// A required array of strings (a cell's command).
fn strings(v: Option<&Value>, field: &str) -> Result<Vec<String>> {
    let Some(Value::Array(items)) = v else {
        return Err(Error::invalid(field, "must be an array of strings"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::invalid(format!("{field}[{i}]"), "must be a string"))
        })
        .collect()
}

/// An optional 32-bit integer (`null` or missing: none).
fn optional_i32(v: Option<&Value>, field: &str) -> Result<Option<i32>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| Error::invalid(field, "must be a 32-bit integer or null")),
    }
}

/// Parse an event from JSON. `at` names where it came from in errors
/// (e.g. `line 7` or `events[3]`). When `sequence` is `None` the JSON's
/// `sequence` field is required and used.
pub fn event_from_json(v: &Value, at: &str, sequence: Option<u64>) -> Result<Event> {
    let obj = v
        .as_object()
        .ok_or_else(|| Error::invalid(at, "expected a JSON object"))?;
    let field = |name: &str| format!("{at}: {name}");
    let get = |name: &str| {
        obj.get(name)
            .ok_or_else(|| Error::invalid(field(name), "missing"))
    };
    let string = |name: &str| -> Result<String> {
        get(name)?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::invalid(field(name), "must be a string"))
    };
    let string_or = |name: &str, default: &str| -> Result<String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(Error::invalid(field(name), "must be a string")),
        }
    };
    let uuid = |name: &str| -> Result<Uuid> {
        let s = string(name)?;
        Uuid::parse_str(&s)
            .map_err(|e| Error::invalid(field(name), format!("'{s}' is not a UUID: {e}")))
    };
    let event_type = EventType::parse(&string("event_type")?)
        .map_err(|e| Error::invalid(field("event_type"), e.to_string()))?;
    let id = uuid(match event_type {
        EventType::Message => "message_id",
        EventType::Checkpoint => "checkpoint_id",
        EventType::Handoff => "handoff_id",
        EventType::CellStarted => "cell_id",
        _ => "event_id",
    })?;
    let sequence = match sequence {
        Some(s) => s,
        None => get("sequence")?
            .as_u64()
            .filter(|s| *s > 0)
            .ok_or_else(|| Error::invalid(field("sequence"), "must be a positive integer"))?,
    };
    let timestamp = parse_timestamp(&string("timestamp")?)
        .map_err(|reason| Error::invalid(field("timestamp"), reason))?;
    let positive = |name: &str| -> Result<u64> {
        get(name)?
            .as_u64()
            .filter(|s| *s > 0)
            .ok_or_else(|| Error::invalid(field(name), "must be a positive integer"))
    };
    let lease = |name: &str| -> Result<u64> {
        get(name)?
            .as_u64()
            .ok_or_else(|| Error::invalid(field(name), "must be a non-negative integer"))
    };
    let json_field = |name: &str, default: Value| -> Json {
        Json::from_value(obj.get(name).unwrap_or(&default))
    };
    let body = match event_type {
        EventType::MissionCreated => EventBody::MissionCreated {
            mission_id: string("mission_id")?,
            title: string("title")?,
            config: match obj.get("config") {
                None | Some(Value::Null) => MissionConfig::default(),
                Some(c) => MissionConfig::from_json(c)
                    .map_err(|reason| Error::invalid(field("config"), reason))?,
            },
        },
        EventType::ParticipantJoined => EventBody::ParticipantJoined {
            name: string("participant")?,
            role: string("role")?,
            metadata: json_field("metadata", json!({})),
        },
        EventType::RoleChanged => EventBody::RoleChanged {
            name: string("participant")?,
            role: string("role")?,
        },
        EventType::Message => EventBody::Message {
            topic: string("topic")?,
            payload: json_field("payload", Value::Null),
        },
        EventType::Checkpoint => EventBody::Checkpoint {
            summary: string_or("summary", "")?,
            state: json_field("state", json!({})),
            artifacts: match obj.get("artifacts") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        a.as_str().map(str::to_string).ok_or_else(|| {
                            Error::invalid(field(&format!("artifacts[{i}]")), "must be a string")
                        })
                    })
                    .collect::<Result<_>>()?,
                Some(_) => {
                    return Err(Error::invalid(
                        field("artifacts"),
                        "must be an array of strings",
                    ))
                }
            },
        },
        EventType::LossAccepted => EventBody::LossAccepted {
            first: positive("lost_first")?,
            last: positive("lost_last")?,
            ledger_hash: {
                let s = string("ledger_head_hash")?;
                parse_hash(&s).ok_or_else(|| {
                    Error::invalid(field("ledger_head_hash"), "must be 64 hex digits")
                })?
            },
        },
        EventType::Handoff => EventBody::Handoff {
            recipient: string("recipient")?,
            checkpoint_id: uuid("checkpoint_id")?,
            note: string_or("note", "")?,
        },
        EventType::HandoffAccepted => EventBody::HandoffAccepted {
            handoff_id: uuid("handoff_id")?,
            lease_ms: lease("lease_ms")?,
        },
        EventType::HandoffHeartbeat => EventBody::HandoffHeartbeat {
            handoff_id: uuid("handoff_id")?,
            lease_ms: lease("lease_ms")?,
        },
        EventType::HandoffCompleted => EventBody::HandoffCompleted {
            handoff_id: uuid("handoff_id")?,
            note: string_or("note", "")?,
        },
        EventType::HandoffDeclined => EventBody::HandoffDeclined {
            handoff_id: uuid("handoff_id")?,
            note: string_or("note", "")?,
        },
        EventType::HandoffReleased => EventBody::HandoffReleased {
            handoff_id: uuid("handoff_id")?,
            note: string_or("note", "")?,
        },
        EventType::HandoffExpired => EventBody::HandoffExpired {
            handoff_id: uuid("handoff_id")?,
            at: parse_timestamp(&string("at")?)
                .map_err(|reason| Error::invalid(field("at"), reason))?,
        },
        EventType::ParticipantRemoved => EventBody::ParticipantRemoved {
            name: string("participant")?,
        },
        EventType::CellStarted => EventBody::CellStarted {
            profile: string("profile")?,
            mechanism: string("mechanism")?,
            workspace: string("workspace")?,
            command: strings(obj.get("command"), &field("command"))?,
        },
        EventType::CellExited => EventBody::CellExited {
            cell_id: uuid("cell_id")?,
            exit_code: optional_i32(obj.get("exit_code"), &field("exit_code"))?,
            signal: optional_i32(obj.get("signal"), &field("signal"))?,
            duration_ms: lease("duration_ms")?,
            error: string_or("error", "")?,
        },
    };
    Ok(Event {
        id,
        sequence,
        timestamp,
        sender: string("sender")?,
        body,
    })
}

/// RFC 3339 (any offset, normalized to UTC), or a naive ISO 8601 date-time
/// taken as UTC (Python's `datetime.utcnow().isoformat()`).
fn parse_timestamp(s: &str) -> std::result::Result<DateTime<Utc>, String> {
    let parsed = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc()))
        .map_err(|_| format!("'{s}' is not an RFC 3339 timestamp"))?;
    crate::event::from_micros(parsed.timestamp_micros())
        .ok_or_else(|| format!("'{s}' is out of range"))
}

/// A participant as `{name, role, metadata}`.
pub fn participant_to_json(p: &Participant) -> Value {
    json!({"name": p.name, "role": p.role, "metadata": p.metadata.value()})
}

fn participants_to_json(ps: &BTreeMap<String, Participant>) -> Value {
    Value::Object(
        ps.iter()
            .map(|(n, p)| (n.clone(), participant_to_json(p)))
            .collect(),
    )
}

/// A resume packet with the prototype's fields (plus `handoff_id` and
/// `head_sequence`).
pub fn resume_packet_to_json(p: &ResumePacket) -> Value {
    json!({
        "mission_id": p.mission_id,
        "title": p.title,
        "recipient": p.recipient,
        "sender": p.sender,
        "handoff_id": p.handoff.as_ref().map(|h| h.id.to_string()),
        "handoff_note": p.handoff_note,
        "source": p.source.as_str(),
        "handoff_status": p.handoff_status.map(|s| s.as_str()),
        "returned": p.returned.iter().map(handoff_info_to_json).collect::<Vec<_>>(),
        "checkpoint": event_to_json(&p.checkpoint),
        "participants": participants_to_json(&p.participants),
        "isolation_profiles": p.isolation_profiles.iter().map(|x| x.to_json()).collect::<Vec<_>>(),
        "stream_length": p.stream_length,
        "head_sequence": p.head_sequence,
    })
}

/// A handoff's lifecycle record: `handoff_id`, `sender`, `recipient`,
/// `status`, `checkpoint_id`, `resume_checkpoint_id`, `lease_expires_at`,
/// `returned_to`, `reoffered_as`, `sequence`, `updated_sequence`.
pub fn handoff_info_to_json(h: &HandoffInfo) -> Value {
    let time = |us: i64| {
        crate::event::from_micros(us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    };
    json!({
        "handoff_id": h.handoff_id.to_string(),
        "sender": h.sender,
        "recipient": h.recipient,
        "status": h.status.as_str(),
        "checkpoint_id": h.checkpoint_id.to_string(),
        "resume_checkpoint_id": h.resume_checkpoint_id.to_string(),
        "lease_expires_at": h.lease_expires_us.and_then(time),
        "returned_to": h.returned_to,
        "reoffered_as": h.reoffered_as.map(|u| u.to_string()),
        "sequence": h.sequence,
        "updated_sequence": h.updated_sequence,
    })
}

/// The seed document of a mission: its state plus its stream events.
/// `stream_events` must be the mission's message, checkpoint and handoff
/// events in order; other kinds are skipped.
pub fn seed_document<I>(state: &MissionState, events: I) -> Result<Value>
where
    I: IntoIterator<Item = Result<Event>>,
{
    let mut out = Vec::new();
    for e in events {
        let e = e?;
        if e.event_type().is_stream() {
            out.push(event_to_json(&e));
        }
    }
    Ok(json!({
        "mission_id": state.mission_id,
        "title": state.title,
        "config": state.config.to_json(),
        "participants": participants_to_json(&state.participants),
        "events": out,
    }))
}

/// Turn a seed document into a complete log for [`crate::MissionBus::import_log`]:
/// `mission_created` and one `participant_joined` per participant (by the
/// operator), then the document's events in order, renumbered after them.
pub fn log_from_seed(doc: &Value) -> Result<Vec<Event>> {
    let obj = doc
        .as_object()
        .ok_or_else(|| Error::invalid("seed document", "expected a JSON object"))?;
    let string = |name: &str| -> Result<String> {
        obj.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                Error::invalid(format!("seed document: {name}"), "missing or not a string")
            })
    };
    let mission_id = string("mission_id")?;
    let title = match obj.get("title") {
        None | Some(Value::Null) => String::new(),
        Some(_) => string("title")?,
    };
    let config = match obj.get("config") {
        None | Some(Value::Null) => MissionConfig::default(),
        Some(c) => MissionConfig::from_json(c)
            .map_err(|reason| Error::invalid("seed document: config", reason))?,
    };
    let raw_events = match obj.get("events") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(Error::invalid("seed document: events", "must be an array")),
    };
    let mut stream = Vec::with_capacity(raw_events.len());
    for (i, v) in raw_events.iter().enumerate() {
        // Sequence is assigned below; a placeholder satisfies the parser.
        let e = event_from_json(v, &format!("seed document: events[{i}]"), Some(1))?;
        if !e.event_type().is_stream() {
            return Err(Error::invalid(
                format!("seed document: events[{i}]: event_type"),
                format!(
                    "'{}' cannot appear in a seed document's events",
                    e.event_type()
                ),
            ));
        }
        stream.push(e);
    }
    let created_at = stream
        .first()
        .map(|e| e.timestamp)
        .unwrap_or_else(now_micros);
    let mut log = vec![Event {
        id: Uuid::now_v7(),
        sequence: 1,
        timestamp: created_at,
        sender: OPERATOR.to_string(),
        body: EventBody::MissionCreated {
            mission_id,
            title,
            config,
        },
    }];
    match obj.get("participants") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ps)) => {
            for (key, p) in ps {
                let at = format!("seed document: participants.{key}");
                let po = p.as_object().ok_or_else(|| {
                    Error::invalid(&at, "expected an object {name, role, metadata}")
                })?;
                let name = match po.get("name") {
                    None => key.clone(),
                    Some(Value::String(n)) if n == key => n.clone(),
                    Some(Value::String(n)) => {
                        return Err(Error::invalid(
                            format!("{at}.name"),
                            format!("'{n}' differs from its key '{key}'"),
                        ))
                    }
                    Some(_) => {
                        return Err(Error::invalid(format!("{at}.name"), "must be a string"))
                    }
                };
                let role = po
                    .get("role")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::invalid(format!("{at}.role"), "missing or not a string"))?
                    .to_string();
                let metadata = Json::from_value(po.get("metadata").unwrap_or(&json!({})));
                log.push(Event {
                    id: Uuid::now_v7(),
                    sequence: 0,
                    timestamp: created_at,
                    sender: OPERATOR.to_string(),
                    body: EventBody::ParticipantJoined {
                        name,
                        role,
                        metadata,
                    },
                });
            }
        }
        Some(_) => {
            return Err(Error::invalid(
                "seed document: participants",
                "must be an object of name -> participant",
            ))
        }
    }
    log.extend(stream);
    for (i, e) in log.iter_mut().enumerate() {
        e.sequence = i as u64 + 1;
    }
    Ok(log)
}

/// Parse JSON Lines of events (as `export --format jsonl` writes them).
/// Blank lines are skipped; errors name the line.
pub fn log_from_jsonl(text: &str) -> Result<Vec<Event>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("line {}", i + 1);
        let v: Value = serde_json::from_str(line)
            .map_err(|e| Error::invalid(&at, format!("not valid JSON: {e}")))?;
        out.push(event_from_json(&v, &at, None)?);
    }
    Ok(out)
}
