//! The handoff lifecycle and membership changes: public calls and the
//! stateful checks the writer runs for them.
//!
//! Every transition is an event (see `src/state/handoffs.rs` for how the
//! reducer folds them). Lease expiry is an explicit operation,
//! [`MissionBus::expire_leases`], given the time to judge deadlines by, so
//! it is deterministic: tests pass a time instead of sleeping, and the
//! server calls it on a timer with the clock's time.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Action, AppendOptions, Draft, Job, MissionBus};
use crate::error::{Error, Result};
use crate::event::{to_micros, Event, EventBody, OPERATOR};
use crate::state::{lapsed, HandoffInfo, HandoffStatus, MissionState};

/// Longest lease one acceptance or heartbeat may ask for (24 hours).
pub const MAX_LEASE_MS: u64 = 24 * 60 * 60 * 1000;

pub(super) fn check_lease(lease_ms: u64) -> Result<()> {
    if lease_ms == 0 || lease_ms > MAX_LEASE_MS {
        return Err(Error::invalid(
            "lease_ms",
            format!("{lease_ms} is not in 1..={MAX_LEASE_MS} (milliseconds)"),
        ));
    }
    Ok(())
}

/// A lead (or the operator) removes `name`: it must exist and not be the
/// remover itself.
pub(super) fn check_removal(
    state: &MissionState,
    mission: &str,
    sender: &str,
    name: &str,
) -> Result<()> {
    if !state.participants.contains_key(name) {
        return Err(Error::ParticipantNotFound {
            mission: mission.to_string(),
            name: name.to_string(),
        });
    }
    if sender == name {
        return Err(Error::invalid(
            "participant name",
            format!("'{name}' cannot remove itself; another lead or the operator can"),
        ));
    }
    Ok(())
}

/// Stateful checks of a lifecycle step (`body`) by `sender` at time `at`.
pub(super) fn check_step(
    state: &MissionState,
    mission: &str,
    sender: &str,
    at: Option<DateTime<Utc>>,
    body: &EventBody,
) -> Result<()> {
    let Some(id) = body.lifecycle_handoff() else {
        return Err(Error::invalid(
            "event",
            format!("{} cannot be appended here", body.event_type()),
        ));
    };
    let refuse = |reason: String| Error::HandoffState {
        mission: mission.to_string(),
        handoff_id: id,
        reason,
    };
    let h: &HandoffInfo = match state.handoff(&id) {
        Some(h) => h,
        None => {
            return Err(Error::HandoffNotFound {
                what: format!("{id} in mission '{mission}'"),
            })
        }
    };
    let at_us = to_micros(at.unwrap_or_else(crate::event::now_micros));
    let lapsed = h.lease_expires_us.is_some_and(|d| d <= at_us);
    let wanted = match body {
        EventBody::HandoffAccepted { .. } | EventBody::HandoffDeclined { .. } => {
            HandoffStatus::Offered
        }
        _ => HandoffStatus::Accepted,
    };
    if let EventBody::HandoffExpired { at, .. } = body {
        if sender != OPERATOR {
            return Err(Error::invalid(
                "handoff_expired",
                "only the expiry operation (the operator) records an expiry",
            ));
        }
        if h.status != HandoffStatus::Accepted {
            return Err(refuse(format!("is {}, not accepted", h.status.as_str())));
        }
        let deadline = h.lease_expires_us.unwrap_or(i64::MAX);
        if to_micros(*at) < deadline {
            return Err(refuse(format!(
                "its lease runs until {} us, after {} us",
                deadline,
                to_micros(*at)
            )));
        }
        return Ok(());
    }
    if !state.participants.contains_key(sender) {
        return Err(Error::NotAParticipant {
            mission: mission.to_string(),
            sender: sender.to_string(),
        });
    }
    if h.recipient != sender {
        return Err(Error::PermissionDenied {
            mission: mission.to_string(),
            sender: sender.to_string(),
            role: state
                .participants
                .get(sender)
                .map(|p| p.role.clone())
                .unwrap_or_default(),
            capability: format!(
                "{} (handoff {id} is addressed to '{}')",
                body.event_type(),
                h.recipient
            ),
        });
    }
    if h.status != wanted {
        return Err(refuse(format!(
            "is {}, {} needs it {}",
            h.status.as_str(),
            body.event_type(),
            wanted.as_str()
        )));
    }
    if wanted == HandoffStatus::Accepted
        && lapsed
        && !matches!(body, EventBody::HandoffReleased { .. })
    {
        return Err(refuse(format!(
            "its lease lapsed at {} us; the work is being returned",
            h.lease_expires_us.unwrap_or_default()
        )));
    }
    Ok(())
}

impl MissionBus {
    /// Accept a handoff offered to `me`; `me` holds it for `lease_ms`
    /// milliseconds unless it sends a heartbeat.
    pub fn accept_handoff(
        &self,
        mission: &str,
        me: &str,
        handoff_id: Uuid,
        lease_ms: u64,
    ) -> Result<Event> {
        self.step(
            mission,
            me,
            Action::Accept {
                handoff_id,
                lease_ms,
            },
        )
    }

    /// Extend the lease of a handoff `me` holds: it now ends `lease_ms`
    /// milliseconds from now. Refused once the lease has lapsed.
    pub fn heartbeat(
        &self,
        mission: &str,
        me: &str,
        handoff_id: Uuid,
        lease_ms: u64,
    ) -> Result<Event> {
        self.step(
            mission,
            me,
            Action::Heartbeat {
                handoff_id,
                lease_ms,
            },
        )
    }

    /// Finish a handoff `me` holds.
    pub fn complete_handoff(
        &self,
        mission: &str,
        me: &str,
        handoff_id: Uuid,
        note: &str,
    ) -> Result<Event> {
        let note = note.to_string();
        self.step(mission, me, Action::Complete { handoff_id, note })
    }

    /// Refuse a handoff offered to `me`; the work returns to its sender.
    pub fn decline_handoff(
        &self,
        mission: &str,
        me: &str,
        handoff_id: Uuid,
        note: &str,
    ) -> Result<Event> {
        let note = note.to_string();
        self.step(mission, me, Action::Decline { handoff_id, note })
    }

    /// Give back a handoff `me` holds; the work returns to its sender.
    pub fn release_handoff(
        &self,
        mission: &str,
        me: &str,
        handoff_id: Uuid,
        note: &str,
    ) -> Result<Event> {
        let note = note.to_string();
        self.step(mission, me, Action::Release { handoff_id, note })
    }

    /// Remove participant `name` (the sender must be a lead, or
    /// [`OPERATOR`]). Its tokens stop working at once; work offered to it or
    /// held by it returns to the senders.
    pub fn remove_participant(&self, mission: &str, sender: &str, name: &str) -> Result<Event> {
        let event = self.step(mission, sender, Action::Remove { name: name.into() })?;
        // The participant check in `authenticate` already refuses its
        // tokens; dropping them keeps a later re-join from reviving them.
        self.revoke_tokens(mission, name)?;
        Ok(event)
    }

    /// Change participant `name`'s role (the sender must be a lead, or
    /// [`OPERATOR`]). Takes effect for the next request.
    pub fn change_role(
        &self,
        mission: &str,
        sender: &str,
        name: &str,
        role: &str,
    ) -> Result<Event> {
        self.step(
            mission,
            sender,
            Action::ChangeRole {
                name: name.into(),
                role: role.into(),
            },
        )
    }

    fn step(&self, mission: &str, sender: &str, action: Action) -> Result<Event> {
        self.append(mission, sender, action, &AppendOptions::default())
    }

    /// Expire every lease of `mission` that ended at or before `now`: one
    /// `handoff_expired` event each (by the operator), returning the work to
    /// its sender (or the lead if the sender has left). Deterministic: the
    /// deadlines are judged against `now`, not the clock. A lease renewed
    /// meanwhile is skipped. Returns the events written.
    pub fn expire_leases(&self, mission: &str, now: DateTime<Utc>) -> Result<Vec<Event>> {
        let state = self.state(mission)?;
        let mut out = Vec::new();
        for handoff_id in lapsed(&state.open_handoffs, to_micros(now)) {
            let draft = Draft {
                id: None,
                timestamp: None,
                sender: OPERATOR.to_string(),
                body: EventBody::HandoffExpired {
                    handoff_id,
                    at: now,
                },
                meta: crate::event::EventMeta::default(),
            };
            let result = self.send(|reply| Job::Append {
                mission: mission.to_string(),
                drafts: vec![draft],
                expected: None,
                reply: super::Reply::Blocking(reply),
            });
            match result {
                Ok(mut events) => out.append(&mut events),
                // Renewed, released or completed since we looked.
                Err(Error::HandoffState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// [`MissionBus::expire_leases`] for every mission (the server's timer).
    /// Returns how many leases expired.
    pub fn expire_all_leases(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut n = 0;
        for mission in self.mission_ids() {
            n += self.expire_leases(&mission, now)?.len();
        }
        Ok(n)
    }

    /// Handoffs of `mission` addressed to `recipient` (all when `None`),
    /// open ones first (newest first), then the most recently closed ones.
    pub fn handoffs(&self, mission: &str, recipient: Option<&str>) -> Result<Vec<HandoffInfo>> {
        let state = self.state(mission)?;
        let mine = |h: &&HandoffInfo| recipient.is_none_or(|r| h.recipient == r);
        let mut open: Vec<HandoffInfo> =
            state.open_handoffs.values().filter(mine).cloned().collect();
        open.sort_by_key(|h| std::cmp::Reverse(h.sequence));
        open.extend(state.closed_handoffs.iter().rev().filter(mine).cloned());
        Ok(open)
    }

    /// One handoff's lifecycle record (open, or among the most recently closed).
    pub fn handoff_info(&self, mission: &str, handoff_id: &Uuid) -> Result<HandoffInfo> {
        self.state(mission)?
            .handoff(handoff_id)
            .cloned()
            .ok_or_else(|| Error::HandoffNotFound {
                what: format!("{handoff_id} in mission '{mission}'"),
            })
    }
}
