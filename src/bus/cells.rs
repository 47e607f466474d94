//! Checks for the isolation-cell events (`cell_started`, `cell_exited`):
//! stateless sizes on the caller's thread, and the profile and capability
//! rules against the mission's state on the writer.
//!
//! Launching cells is not the bus's business (see `crate::cell` and
//! `mission-bus cell run`); the bus records where and how an agent ran.

use super::checks::{check_label, check_name, check_text, require};
use super::{MAX_ARTIFACTS, MAX_TEXT_BYTES};

use crate::error::{Error, Result};
use crate::event::{EventBody, OPERATOR};
use crate::profiles::Capability;
use crate::state::MissionState;

/// Longest workspace path recorded.
const MAX_PATH_BYTES: usize = 4096;
/// Most command-line words recorded.
const MAX_COMMAND_WORDS: usize = MAX_ARTIFACTS;

/// Stateless checks of a cell event; returns its variable size in bytes.
pub(super) fn check_cell_body(body: &EventBody) -> Result<usize> {
    match body {
        EventBody::CellStarted {
            profile,
            mechanism,
            workspace,
            command,
        } => {
            check_name("profile", profile)?;
            check_name("mechanism", mechanism)?;
            check_label("workspace", workspace, MAX_PATH_BYTES)?;
            if !workspace.starts_with('/') {
                return Err(Error::invalid(
                    "workspace",
                    format!("'{workspace}' is not an absolute path"),
                ));
            }
            if command.is_empty() {
                return Err(Error::invalid(
                    "command",
                    "is empty: give the command to run",
                ));
            }
            if command.len() > MAX_COMMAND_WORDS {
                return Err(Error::invalid(
                    "command",
                    format!("has {} words, at most {MAX_COMMAND_WORDS}", command.len()),
                ));
            }
            for (i, word) in command.iter().enumerate() {
                check_text(&format!("command[{i}]"), word, MAX_TEXT_BYTES)?;
            }
            Ok(profile.len()
                + mechanism.len()
                + workspace.len()
                + command.iter().map(String::len).sum::<usize>())
        }
        EventBody::CellExited { error, .. } => {
            check_text("error", error, MAX_TEXT_BYTES)?;
            Ok(error.len())
        }
        _ => Ok(0),
    }
}

/// The profile and capability rules, against the state the event lands on.
///
/// - `cell_started`: the profile is one of the mission's, the mechanism is
///   that profile's; the sender is a participant, and needs
///   `configure_isolation` for any profile but the mission's default (the
///   first of its `isolation_profiles`).
/// - `cell_exited`: the cell is running and was started by the sender (or
///   the operator records it).
pub(super) fn check_cell(state: &MissionState, sender: &str, body: &EventBody) -> Result<()> {
    let mission = &state.mission_id;
    match body {
        EventBody::CellStarted {
            profile, mechanism, ..
        } => {
            let profiles = &state.config.isolation_profiles;
            let Some(index) = profiles.iter().position(|p| p.name == *profile) else {
                return Err(Error::ProfileNotFound {
                    mission: mission.clone(),
                    profile: profile.clone(),
                    known: known_profiles(state),
                });
            };
            let p = &profiles[index];
            if p.mechanism != *mechanism {
                return Err(Error::invalid(
                    "mechanism",
                    format!(
                        "profile '{profile}' of mission '{mission}' uses mechanism '{}', not '{mechanism}'",
                        p.mechanism
                    ),
                ));
            }
            if index == 0 {
                // The default profile: any participant may run in it.
                if !state.participants.contains_key(sender) {
                    return Err(Error::NotAParticipant {
                        mission: mission.clone(),
                        sender: sender.to_string(),
                    });
                }
                Ok(())
            } else {
                require(state, sender, Capability::ConfigureIsolation)
            }
        }
        EventBody::CellExited { cell_id, .. } => match state.cells.running.get(cell_id) {
            Some(c) if c.participant == sender || sender == OPERATOR => Ok(()),
            _ => Err(Error::CellNotFound {
                mission: mission.clone(),
                participant: sender.to_string(),
                cell_id: *cell_id,
            }),
        },
        other => Err(Error::invalid(
            "event",
            format!("{} is not a cell event", other.event_type()),
        )),
    }
}

/// The mission's profile names, for errors.
pub(crate) fn known_profiles(state: &MissionState) -> String {
    let names: Vec<&str> = state
        .config
        .isolation_profiles
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}
