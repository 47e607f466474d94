//! Acknowledged events the store lost: what the commit ledger found at
//! open, and the operator's explicit acceptance of a loss.

use super::writer::Writer;
use super::MissionBus;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{now_micros, Event, EventBody, EventMeta, OPERATOR};
use crate::ledger::LedgerHead;
use crate::store::{Durability, PlannedAppend};

impl MissionBus {
    /// Every mission `verify` should look at: the store's missions plus
    /// those the commit ledger knows and the store lost entirely. Sorted.
    pub fn verify_ids(&self) -> Vec<String> {
        let mut ids = self.mission_ids();
        for name in self.inner.integrity.damaged_names() {
            if !ids.contains(&name) {
                ids.push(name);
            }
        }
        ids.sort();
        ids
    }

    /// Damage to the commit ledger itself (naming the file and offset),
    /// found when the store was opened. While it stands, every write is
    /// refused with this error.
    pub fn ledger_problem(&self) -> Option<Error> {
        self.inner
            .integrity
            .ledger_damage
            .as_ref()
            .map(|d| d.to_error())
    }

    /// Missions with acknowledged events missing, found when the store was
    /// opened: (mission, first missing sequence, last). They refuse writes
    /// until the loss is salvaged or accepted.
    pub fn missions_with_loss(&self) -> Vec<(String, u64, u64)> {
        self.inner
            .integrity
            .damaged
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(m, d)| (m.clone(), d.first, d.last))
            .collect()
    }
}

impl MissionBus {
    /// Accept, explicitly and on the record, that acknowledged events of
    /// `mission` are lost (as `verify` reports), so that writes resume.
    ///
    /// The acceptance is written twice: in the mission's own log, as a
    /// `loss_accepted` event (sender `@operator`) naming the lost range and
    /// the head hash the commit ledger held, at the sequence after the
    /// store's head, so a later reader sees exactly where history was cut
    /// and that the sequences of the lost range now name other events; and
    /// in the commit ledger, as an accepted-loss item. Returns that event, or
    /// `None` when the store lost the whole mission (it has no log to write
    /// into; the ledger records the acceptance and the id can be created
    /// again). Fails when the mission has no recorded loss, or when its log
    /// cannot be read (then `mission-bus salvage` is the way forward).
    pub fn accept_loss(&self, mission: &str) -> crate::Result<Option<crate::Event>> {
        self.send(|reply| super::Job::AcceptLoss {
            mission: mission.to_string(),
            reply,
        })
    }
}

impl Writer {
    /// See [`super::MissionBus::accept_loss`]. Runs alone on the writer.
    pub(super) fn accept_loss(&self, mission: &str) -> Result<Option<Event>> {
        if let Some(d) = &self.integrity.ledger_damage {
            return Err(d.to_error());
        }
        let Some(damage) = self.integrity.damage(mission) else {
            return Err(Error::invalid(
                "accept-loss",
                format!("mission '{mission}' has no missing acknowledged events to accept"),
            ));
        };
        let loss = crate::ledger::AcceptedLoss {
            mission: mission.to_string(),
            first: damage.first,
            last: damage.last,
            ledger_hash: damage.ledger.hash,
            at_micros: crate::event::to_micros(now_micros()),
        };
        let mut ledger = self.ledger.borrow_mut();
        let Some(l) = ledger.as_mut() else {
            return Err(Error::invalid(
                "accept-loss",
                "the commit ledger is disabled",
            ));
        };
        let recorded = match self.name_to_no(mission)? {
            None => {
                l.append(&[], std::slice::from_ref(&loss), true)?;
                None
            }
            Some(no) => {
                let cached = self.load(no, mission)?;
                let event = Event {
                    id: Uuid::now_v7(),
                    sequence: cached.state.head + 1,
                    timestamp: now_micros(),
                    sender: OPERATOR.to_string(),
                    body: EventBody::LossAccepted {
                        first: damage.first,
                        last: damage.last,
                        ledger_hash: damage.ledger.hash,
                    },
                    meta: EventMeta::default(),
                };
                let plan = PlannedAppend {
                    mission: no,
                    mission_id: mission.to_string(),
                    register: None,
                    replace_orphan_ids: false,
                    prev_seq: cached.state.head,
                    events: vec![event.clone()],
                };
                self.shared
                    .cache
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&no);
                let heads = self.store.commit(std::slice::from_ref(&plan))?;
                // Whatever the configured durability, this is fsynced.
                self.store.flush(Durability::Sync)?;
                let (sequence, hash) = heads[0];
                l.append(
                    &[(mission, LedgerHead { sequence, hash })],
                    std::slice::from_ref(&loss),
                    true,
                )?;
                Some(event)
            }
        };
        self.integrity
            .damaged
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(mission);
        tracing::warn!(
            mission,
            first = loss.first,
            last = loss.last,
            "operator accepted the loss of acknowledged events"
        );
        Ok(recorded)
    }
}
