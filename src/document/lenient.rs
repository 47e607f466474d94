//! Seed documents as the prototype's `from_dict` accepts them: camelCase
//! id fields (`missionId`, `eventType`, `messageId`, `checkpointId`,
//! `handoffId`, `eventId`) and events without a `timestamp` or id. What is
//! renamed or filled in is reported, one line each, so an import says what
//! it did not find in the file.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::log_from_seed;
use crate::error::{Error, Result};
use crate::event::{now_micros, Event};

/// A seed document turned into a log, with what had to be filled in.
#[derive(Debug, Clone)]
pub struct SeedImport {
    /// The complete log, ready for [`crate::MissionBus::import_log`].
    pub events: Vec<Event>,
    /// One line per field renamed or filled in (e.g.
    /// `events[2]: timestamp missing, filled with ... (the previous event's)`).
    pub filled: Vec<String>,
}

const RENAMES: [(&str, &str); 6] = [
    ("missionId", "mission_id"),
    ("eventType", "event_type"),
    ("messageId", "message_id"),
    ("checkpointId", "checkpoint_id"),
    ("handoffId", "handoff_id"),
    ("eventId", "event_id"),
];

fn rename(obj: &mut Map<String, Value>, at: &str, notes: &mut Vec<String>) -> Result<()> {
    for (camel, snake) in RENAMES {
        let Some(v) = obj.remove(camel) else { continue };
        match obj.get(snake) {
            Some(existing) if *existing != v => {
                return Err(Error::invalid(
                    format!("{at}{camel}"),
                    format!("differs from {snake} given alongside it"),
                ))
            }
            Some(_) => {}
            None => {
                notes.push(format!("{at}{camel}: read as {snake}"));
                obj.insert(snake.to_string(), v);
            }
        }
    }
    Ok(())
}

/// Parse a seed document leniently (see the module docs); strict parsing
/// rules apply to everything else.
pub fn log_from_seed_lenient(doc: &Value) -> Result<SeedImport> {
    let mut doc = doc.clone();
    let mut notes = Vec::new();
    let Some(obj) = doc.as_object_mut() else {
        return Err(Error::invalid("seed document", "expected a JSON object"));
    };
    rename(obj, "", &mut notes)?;
    if let Some(Value::Array(events)) = obj.get_mut("events") {
        let first_known = events.iter().find_map(|e| {
            e.get("timestamp")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        let mut previous: Option<String> = None;
        for (i, e) in events.iter_mut().enumerate() {
            let Some(eo) = e.as_object_mut() else {
                continue;
            };
            let at = format!("events[{i}].");
            rename(eo, &at, &mut notes)?;
            match eo.get("timestamp") {
                None | Some(Value::Null) => {
                    let (t, whose) = match (&previous, &first_known) {
                        (Some(p), _) => (p.clone(), "the previous event's"),
                        (None, Some(f)) => (f.clone(), "the first timestamp in the document"),
                        (None, None) => (
                            now_micros().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                            "the import time",
                        ),
                    };
                    notes.push(format!("{at}timestamp: missing, filled with {t} ({whose})"));
                    eo.insert("timestamp".into(), Value::String(t.clone()));
                    previous = Some(t);
                }
                Some(Value::String(t)) => previous = Some(t.clone()),
                Some(_) => {}
            }
            let id_field = match eo.get("event_type").and_then(Value::as_str) {
                Some("message") => "message_id",
                Some("checkpoint") => "checkpoint_id",
                Some("handoff") => "handoff_id",
                _ => continue,
            };
            if matches!(eo.get(id_field), None | Some(Value::Null)) {
                let id = Uuid::now_v7().to_string();
                notes.push(format!("{at}{id_field}: missing, filled with {id}"));
                eo.insert(id_field.into(), Value::String(id));
            }
        }
    }
    let events = log_from_seed(&doc)?;
    Ok(SeedImport {
        events,
        filled: notes,
    })
}
