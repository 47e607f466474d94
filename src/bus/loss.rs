//! Acknowledged events the store lost: what the commit ledger found at
//! open, and the operator's explicit acceptance of a loss.

use super::MissionBus;

use crate::error::Error;

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
