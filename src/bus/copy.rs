//! `MissionBus::copy_into`: a whole store into another (any backend to
//! any backend), mission by mission through `import_log`, so ids,
//! timestamps and contents, and therefore the version-2 hash chain and
//! every head hash, are kept; then both sides are verified and their heads
//! compared.

use super::MissionBus;
use crate::error::{Error, Result};

/// What [`MissionBus::copy_into`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Missions copied.
    pub missions: u64,
    /// Events copied.
    pub events: u64,
    /// Per mission: (id, head sequence, head hash in hex), equal on both sides.
    pub heads: Vec<(String, u64, String)>,
}

impl MissionBus {
    /// Copy every mission of this store into `to`, which must hold none of
    /// them. `progress(mission, events_done, events_total)` is called as it
    /// goes. Each mission is verified in both stores afterwards and must
    /// have the same head (sequence and hash): otherwise the copy fails
    /// naming the mission. Participant tokens and consumer positions are
    /// not copied (issue tokens again in the new store).
    pub fn copy_into(
        &self,
        to: &MissionBus,
        mut progress: impl FnMut(&str, u64, u64),
    ) -> Result<CopyReport> {
        let mut report = CopyReport::default();
        for id in self.mission_ids() {
            let events: Vec<_> = self.events(&id, 1, u64::MAX)?.collect::<Result<_>>()?;
            let total = events.len() as u64;
            progress(&id, 0, total);
            let (tx, rx) = std::sync::mpsc::channel();
            let written = to.import_log(events, move |n| {
                let _ = tx.send(n);
            })?;
            for n in rx.try_iter() {
                progress(&id, n, total);
            }
            progress(&id, written, total);
            let (a, b) = (self.verify(&id)?, to.verify(&id)?);
            for r in [&a, &b] {
                if let Some(p) = r.problems.first() {
                    return Err(Error::corruption(
                        &id,
                        p.sequence,
                        format!("copy: verify found: {}", p.what),
                    ));
                }
            }
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
        Ok(report)
    }
}
