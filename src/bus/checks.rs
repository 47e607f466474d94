//! Stateless input checks (names, sizes) and the capability check.

use super::{
    Limits, MAX_ARTIFACTS, MAX_NAME_BYTES, MAX_RECORD_BYTES, MAX_TEXT_BYTES, MAX_TOPIC_BYTES,
};

use crate::error::{Error, Result};
use crate::event::{EventBody, Json};
use crate::profiles::Capability;
use crate::state::MissionState;

pub(super) fn at_sequence(err: Error, seq: u64) -> Error {
    match err {
        Error::InvalidInput { field, reason } => Error::InvalidInput {
            field: format!("{field} (sequence {seq})"),
            reason,
        },
        Error::TooLarge { field, size, limit } => Error::TooLarge {
            field: format!("{field} (sequence {seq})"),
            size,
            limit,
        },
        other => other,
    }
}

pub(super) fn require(state: &MissionState, name: &str, capability: Capability) -> Result<()> {
    let Some(p) = state.participants.get(name) else {
        return Err(Error::NotAParticipant {
            mission: state.mission_id.clone(),
            sender: name.to_string(),
        });
    };
    if state.config.role_allows(&p.role, capability) {
        Ok(())
    } else {
        Err(Error::PermissionDenied {
            mission: state.mission_id.clone(),
            sender: name.to_string(),
            role: p.role.clone(),
            capability: capability.as_str().to_string(),
        })
    }
}

// ----- stateless validation ------------------------------------------------

pub(super) fn check_text(field: &str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return Err(Error::TooLarge {
            field: field.to_string(),
            size: s.len(),
            limit: max,
        });
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(Error::invalid(
            field,
            format!("contains control character U+{:04X}", c as u32),
        ));
    }
    Ok(())
}

/// Ids, names, roles and topics: non-empty, bounded, no control characters,
/// no surrounding whitespace.
pub(super) fn check_name(field: &str, s: &str) -> Result<()> {
    check_label(field, s, MAX_NAME_BYTES)
}

pub(super) fn check_label(field: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(field, "is empty"));
    }
    if s.len() > max {
        return Err(Error::invalid(
            field,
            format!("is {} bytes, longer than {max}", s.len()),
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(
            field,
            format!("contains control character U+{:04X}", c as u32),
        ));
    }
    if s.trim() != s {
        return Err(Error::invalid(field, "has leading or trailing whitespace"));
    }
    Ok(())
}

/// The grammar of mission ids and participant names where they *enter* the
/// store (creation, join, import): 1 to [`MAX_NAME_BYTES`] bytes of letters
/// and digits (Unicode alphanumerics), `-`, `_` and `.`; not starting with `-` or `.`; no `..`. So a
/// name is safe as a path segment, a file name, a command-line argument and
/// in a terminal (no `/`, no control or bidirectional characters). Names
/// already stored by earlier versions are still accepted where they are
/// *referenced* (senders, recipients, lookups): see [`check_participant_name`].
pub(crate) fn check_identifier(field: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(field, "is empty"));
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(
            field,
            format!("is {} bytes, longer than {MAX_NAME_BYTES}", s.len()),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        let what = if c.is_control() {
            format!("control character U+{:04X}", c as u32)
        } else if c.is_whitespace() {
            format!("whitespace U+{:04X}", c as u32)
        } else if !c.is_ascii() {
            format!("character U+{:04X}", c as u32)
        } else {
            format!("'{c}'")
        };
        return Err(Error::invalid(
            field,
            // Escaped, so a bidirectional or control character in the name
            // cannot reorder or hide the message around it.
            format!(
                "'{}' contains {what}; names may hold only letters, digits, '-', '_' and '.'",
                s.escape_default()
            ),
        ));
    }
    if s.starts_with(['-', '.']) {
        return Err(Error::invalid(
            field,
            format!("'{s}' starts with '{}'", &s[..1]),
        ));
    }
    if s.contains("..") {
        return Err(Error::invalid(field, format!("'{s}' contains '..'")));
    }
    Ok(())
}

/// Participant metadata: a JSON object (possibly empty), or `null` for none.
pub(super) fn check_metadata(j: &Json) -> Result<()> {
    // `Json` holds canonical text: an object, and only an object, starts with '{'.
    if j.as_str().starts_with('{') || j.as_str() == "null" {
        Ok(())
    } else {
        Err(Error::invalid(
            "metadata",
            format!(
                "must be a JSON object (or null), got {}",
                truncated(j.as_str())
            ),
        ))
    }
}

/// An event id chosen by a caller: any UUID but the nil one.
pub(super) fn check_event_id(id: &uuid::Uuid) -> Result<()> {
    if id.is_nil() {
        return Err(Error::invalid(
            "event id",
            "the nil UUID (all zeros) is not a valid event id",
        ));
    }
    Ok(())
}

fn truncated(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

pub(super) fn check_participant_name(field: &str, s: &str) -> Result<()> {
    check_name(field, s)?;
    if s.starts_with('@') {
        return Err(Error::invalid(
            field,
            format!("'{s}' starts with '@', which is reserved for the operator"),
        ));
    }
    Ok(())
}

pub(super) fn check_json(field: &str, j: &Json, limits: Limits) -> Result<()> {
    if j.as_str().len() > limits.max_payload_bytes {
        return Err(Error::TooLarge {
            field: field.to_string(),
            size: j.as_str().len(),
            limit: limits.max_payload_bytes,
        });
    }
    Ok(())
}

pub(super) fn check_body(body: &EventBody, limits: Limits) -> Result<()> {
    let size = match body {
        EventBody::LossAccepted { first, last, .. } => {
            if first > last || *first == 0 {
                return Err(Error::invalid(
                    "loss_accepted",
                    format!("lost range {first}..{last} is empty"),
                ));
            }
            0
        }
        EventBody::MissionCreated {
            mission_id,
            title,
            config,
        } => {
            check_identifier("mission id", mission_id)?;
            check_text("title", title, MAX_TEXT_BYTES)?;
            // The config rides in the creation record: it counts too.
            title.len() + config.to_json().to_string().len()
        }
        EventBody::ParticipantJoined {
            name,
            role,
            metadata,
        } => {
            check_identifier("participant name", name)?;
            check_name("role", role)?;
            check_json("metadata", metadata, limits)?;
            check_metadata(metadata)?;
            metadata.as_str().len()
        }
        EventBody::RoleChanged { name, role } => {
            check_participant_name("participant name", name)?;
            check_name("role", role)?;
            0
        }
        EventBody::Message { topic, payload } => {
            check_label("topic", topic, MAX_TOPIC_BYTES)?;
            check_json("payload", payload, limits)?;
            payload.as_str().len()
        }
        EventBody::Checkpoint {
            summary,
            state,
            artifacts,
        } => {
            check_text("summary", summary, MAX_TEXT_BYTES)?;
            check_json("state", state, limits)?;
            if artifacts.len() > MAX_ARTIFACTS {
                return Err(Error::invalid(
                    "artifacts",
                    format!("{} given, at most {MAX_ARTIFACTS}", artifacts.len()),
                ));
            }
            for (i, a) in artifacts.iter().enumerate() {
                check_label(&format!("artifacts[{i}]"), a, 1024)?;
            }
            summary.len() + state.as_str().len() + artifacts.iter().map(String::len).sum::<usize>()
        }
        EventBody::Handoff {
            recipient, note, ..
        } => {
            check_participant_name("recipient", recipient)?;
            check_text("note", note, MAX_TEXT_BYTES)?;
            note.len()
        }
        EventBody::HandoffAccepted { lease_ms, .. }
        | EventBody::HandoffHeartbeat { lease_ms, .. } => {
            super::lifecycle::check_lease(*lease_ms)?;
            0
        }
        EventBody::HandoffCompleted { note, .. }
        | EventBody::HandoffDeclined { note, .. }
        | EventBody::HandoffReleased { note, .. } => {
            check_text("note", note, MAX_TEXT_BYTES)?;
            note.len()
        }
        EventBody::HandoffExpired { .. } => 0,
        EventBody::ParticipantRemoved { name } => {
            check_participant_name("participant name", name)?;
            0
        }
        EventBody::CellStarted { .. } | EventBody::CellExited { .. } => {
            super::cells::check_cell_body(body)?
        }
    };
    if size > MAX_RECORD_BYTES {
        return Err(Error::TooLarge {
            field: "record".into(),
            size,
            limit: MAX_RECORD_BYTES,
        });
    }
    Ok(())
}
