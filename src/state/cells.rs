//! Isolation cells, as folded by the reducer: the cells whose command is
//! still running (a `cell_started` without its `cell_exited`), and counts.
//!
//! A cell whose `mission-bus cell run` process was killed never gets its
//! `cell_exited`; so that such cells cannot grow the state without bound,
//! at most [`RUNNING_KEPT`] running cells are remembered (the oldest is
//! forgotten first, and is then counted as `cells_abandoned`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::Event;

/// Running cells remembered in the state.
pub const RUNNING_KEPT: usize = 1024;

/// A cell whose command has not (yet) been recorded as ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningCell {
    /// The participant the command runs as.
    pub participant: String,
    /// The isolation profile.
    pub profile: String,
    /// The sequence of its `cell_started`.
    pub sequence: u64,
}

/// The cells of a mission.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cells {
    /// Running cells by cell id (the `cell_started` event's id).
    pub running: BTreeMap<Uuid, RunningCell>,
    /// Cells started, ever.
    pub started: u64,
    /// Cells recorded as ended.
    pub exited: u64,
    /// Running cells forgotten to keep the state bounded.
    pub abandoned: u64,
}

impl Cells {
    pub(super) fn fold_started(&mut self, event: &Event, profile: &str) {
        self.started += 1;
        self.running.insert(
            event.id,
            RunningCell {
                participant: event.sender.clone(),
                profile: profile.to_string(),
                sequence: event.sequence,
            },
        );
        while self.running.len() > RUNNING_KEPT {
            let oldest = self
                .running
                .iter()
                .min_by_key(|(_, c)| c.sequence)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    self.running.remove(&id);
                    self.abandoned += 1;
                }
                None => break,
            }
        }
    }

    pub(super) fn fold_exited(&mut self, cell_id: &Uuid) {
        if self.running.remove(cell_id).is_some() {
            self.exited += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{now_micros, EventBody};

    fn started(seq: u64) -> Event {
        Event {
            id: Uuid::now_v7(),
            sequence: seq,
            timestamp: now_micros(),
            sender: "ana".into(),
            body: EventBody::CellStarted {
                profile: "p".into(),
                mechanism: "directory_workspace".into(),
                workspace: "/w".into(),
                command: vec!["true".into()],
            },
        }
    }

    #[test]
    fn running_cells_stay_bounded_and_the_oldest_go_first() {
        let mut cells = Cells::default();
        let first = started(1);
        cells.fold_started(&first, "p");
        let mut last = first.id;
        for seq in 2..=(RUNNING_KEPT as u64 + 5) {
            let e = started(seq);
            last = e.id;
            cells.fold_started(&e, "p");
        }
        assert_eq!(cells.running.len(), RUNNING_KEPT);
        assert_eq!(cells.abandoned, 5);
        assert!(!cells.running.contains_key(&first.id));
        cells.fold_exited(&last);
        cells.fold_exited(&first.id); // forgotten: not counted twice
        assert_eq!(cells.exited, 1);
        assert_eq!(cells.started, RUNNING_KEPT as u64 + 5);
    }
}
