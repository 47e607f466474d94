//! `MissionBus::copy_into`: a whole store into another (any backend to
//! any backend), mission by mission through the import path, so ids,
//! timestamps and contents, and therefore the version-2 hash chain and
//! every head hash, are kept; then both sides are verified and their heads
//! compared.
//!
//! A pruned mission travels as its anchor (the chain hash and the state at
//! the cut, as stored) plus its events from the cut on: the copy's log
//! starts where the source's does, chains on the same anchor hash, and
//! verify proves it from the anchor exactly as in the source. An anchor
//! that does not match the `history_pruned` event recording it is refused.
//! Tombstones of deleted missions are carried too (their deletion stays on
//! the record).

use super::MissionBus;
use crate::error::{Error, Result};
use crate::verify::VerifyReport;

/// What [`MissionBus::copy_into`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Missions copied.
    pub missions: u64,
    /// Of them, missions copied from a prune anchor (their log starts
    /// after sequence 1).
    pub pruned: u64,
    /// Events copied.
    pub events: u64,
    /// Tombstones of deleted missions copied (a deletion already recorded
    /// in the target is not counted).
    pub tombstones: u64,
    /// Per mission: (id, head sequence, head hash in hex), equal on both sides.
    pub heads: Vec<(String, u64, String)>,
}

impl MissionBus {
    /// Copy every mission of this store into `to`, which must hold none of
    /// them, and every tombstone of a deleted mission. A pruned mission is
    /// copied from its prune anchor (see the module docs).
    /// `progress(mission, events_done, events_total)` is called as it
    /// goes. Each mission is verified in the source first (a damaged or
    /// tampered mission is refused, naming it, before anything of it is
    /// written) and in both stores afterwards, and must have the same head
    /// (sequence and hash): otherwise the copy fails naming the mission.
    /// Participant tokens and consumer positions are not copied (issue
    /// tokens again in the new store).
    pub fn copy_into(
        &self,
        to: &MissionBus,
        mut progress: impl FnMut(&str, u64, u64),
    ) -> Result<CopyReport> {
        let mut report = CopyReport::default();
        let store = self.inner.store();
        for id in self.mission_ids() {
            let a = self.verify(&id)?;
            refuse_problems(&id, "source", &a)?;
            let c = self.cached(&id)?;
            let anchor = store.anchor(c.no, &id)?;
            let first = anchor.as_ref().map_or(1, |a| a.before);
            // The import validates the whole log before writing any of it
            // (all or nothing per mission), so the log is held in memory.
            let events: Vec<_> = self
                .events(&id, first, c.state.head)?
                .collect::<Result<_>>()?;
            let total = events.len() as u64;
            progress(&id, 0, total);
            let (tx, rx) = std::sync::mpsc::channel();
            let send = move |n| {
                let _ = tx.send(n);
            };
            let written = match anchor {
                Some(anchor) => {
                    report.pruned += 1;
                    to.import_pruned(&id, anchor, events, send)?
                }
                None => to.import_log(events, send)?,
            };
            for n in rx.try_iter() {
                progress(&id, n, total);
            }
            progress(&id, written, total);
            let b = to.verify(&id)?;
            refuse_problems(&id, "copy", &b)?;
            if (a.head_sequence, &a.head_hash) != (b.head_sequence, &b.head_hash) {
                return Err(Error::corruption(
                    &id,
                    None,
                    format!(
                        "copy: heads differ: source {} {}, copy {} {} (version-1 records \
                         are written as version 2, which hashes differently)",
                        a.head_sequence, a.head_hash, b.head_sequence, b.head_hash
                    ),
                ));
            }
            report.missions += 1;
            report.events += written;
            report.heads.push((id, b.head_sequence, b.head_hash));
        }
        let target = to.inner.store();
        for mut t in store.tombstones(None)? {
            // Under a fresh number of the target: nothing there to clean up.
            t.mission_no = target.allocate_mission_no()?;
            if target.put_tombstone(&t)? {
                report.tombstones += 1;
            }
        }
        Ok(report)
    }
}

/// The first problem verify found in `side` ("source" or "copy"), as an
/// error naming the mission.
fn refuse_problems(id: &str, side: &str, r: &VerifyReport) -> Result<()> {
    match r.problems.first() {
        Some(p) => Err(Error::corruption(
            id,
            p.sequence,
            format!("copy: verify of the {side} found: {}", p.what),
        )),
        None => Ok(()),
    }
}
