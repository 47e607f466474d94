//! Online backups: a consistent copy of the whole store, made on the writer
//! so that nothing commits while it runs (appends wait, as for `verify`).

use super::{Job, MissionBus};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use crate::error::Result;
use crate::ledger::{self, LedgerHead};
use crate::store::Store;

/// What [`MissionBus::backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup's directory: a complete store, openable as is.
    pub path: PathBuf,
    /// Missions copied.
    pub missions: u64,
    /// Events copied (every mission's whole log).
    pub events: u64,
    /// Participant token hashes copied.
    pub tokens: u64,
}

impl BackupReport {
    /// The report as JSON (`backup`, `missions`, `events`, `tokens`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "backup": self.path.display().to_string(),
            "missions": self.missions,
            "events": self.events,
            "tokens": self.tokens,
        })
    }
}

impl MissionBus {
    /// Copy the whole store (every mission's events with their ids and
    /// timestamps, so head hashes match; heads, indexes, snapshots, token
    /// hashes, the commit ledger) into `to`, which must not exist or be an empty directory.
    /// The copy is consistent: it runs on the writer, so appends wait until
    /// it is done, and it is flushed before this returns. The result opens
    /// as a store (`MissionBus::open(to)`) and verifies. Restore by using
    /// the copy as the data directory (see `docs/mission-bus.md`).
    pub fn backup(&self, to: impl AsRef<Path>) -> Result<BackupReport> {
        let to = to.as_ref().to_path_buf();
        self.send(|reply| Job::Backup { to, reply })
    }
}

/// Run on the writer thread: check the target, copy, give the copy its
/// commit ledger, report.
pub(super) fn run(store: &Store, to: &Path) -> Result<BackupReport> {
    crate::salvage::check_empty_target(to)?;
    let counts = store.copy_to(to)?;
    if store.has_ledger()? {
        // The copy's ledger holds exactly the copied heads (nothing commits
        // meanwhile), plus the losses an operator accepted in the original.
        let mut heads = BTreeMap::new();
        for (name, no) in store.missions()? {
            let (sequence, hash) = store.head(no, &name)?;
            heads.insert(name, LedgerHead { sequence, hash });
        }
        let losses = match ledger::scan(store.path())? {
            Some(scan) => scan.losses,
            None => Vec::new(),
        };
        ledger::Ledger::create(to, heads, losses)?;
    }
    Ok(BackupReport {
        path: to.to_path_buf(),
        missions: counts.missions,
        events: counts.events,
        tokens: counts.tokens,
    })
}
