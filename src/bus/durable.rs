//! Step 6b of the write path: making a commit group durable in sled and in
//! the commit ledger. Under `Durability::Sync` the ledger's step entry is
//! written, then `fdatasync`ed on a dedicated thread while the writer
//! flushes and syncs sled; once both are done a confirmation record is
//! appended (a plain `write`) and only then is the group acknowledged.
//! See `src/ledger.rs` and `docs/architecture.md` (write path, recovery).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::writer::Writer;
use crate::codec::{self, Hash};
use crate::error::{Error, Result};
use crate::keys::MissionNo;
use crate::ledger::{LedgerHead, Step};
use crate::store::{Durability, PlannedAppend};

/// The ledger's sync thread: `fdatasync`s the file it is handed and
/// answers. One request at a time (the writer waits for each answer).
pub(super) struct Syncer {
    tx: Option<Sender<Arc<File>>>,
    rx: Receiver<io::Result<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    fn spawn() -> io::Result<Syncer> {
        let (tx, jobs) = mpsc::channel::<Arc<File>>();
        let (done, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mission-bus-ledger-sync".into())
            .spawn(move || {
                while let Ok(file) = jobs.recv() {
                    if done.send(file.sync_data()).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Syncer {
            tx: Some(tx),
            rx,
            thread: Some(thread),
        })
    }

    /// Start syncing `file`; false if the thread is gone.
    fn start(&self, file: Arc<File>) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(file).is_ok())
    }

    fn wait(&self) -> io::Result<()> {
        self.rx.recv().unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the ledger sync thread stopped",
            ))
        })
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The head each mission of a group had before it, by mission number:
/// (0, genesis) for a mission the group creates.
pub(super) type PrevHeads = HashMap<MissionNo, (u64, Hash)>;

impl Writer {
    /// Make a committed group durable: sled flush (+ fsync) and, with the
    /// ledger, its step entry synced in parallel, then the confirmation.
    /// Under `Relaxed` the heads wait for a real flush (see
    /// `write_pending_heads`).
    pub(super) fn make_durable(
        &self,
        plans: &[PlannedAppend],
        heads: &[(u64, Hash)],
        new_names: &HashMap<String, MissionNo>,
        prev: &PrevHeads,
    ) -> Result<()> {
        let mut ledger = self.ledger.borrow_mut();
        let Some(l) = ledger.as_mut() else {
            return self.store.flush(self.durability);
        };
        let steps = self.steps(plans, heads, new_names, prev);
        if self.durability == Durability::Relaxed {
            let mut pending = self.ledger_pending.borrow_mut();
            for s in steps {
                pending.insert(s.mission, s.new);
            }
            return Ok(());
        }
        if steps.is_empty() {
            return self.store.flush(self.durability);
        }
        let offset = l.write_step(&steps)?;
        let flushed = if self.durability == Durability::Sync {
            let syncer = match self.ledger_sync.get() {
                Some(s) => Some(s),
                None => Syncer::spawn()
                    .ok()
                    .map(|s| self.ledger_sync.get_or_init(|| s)),
            };
            match syncer {
                Some(s) if s.start(l.handle()) => {
                    let sled = self.store.flush(self.durability);
                    let synced = s.wait().map_err(|e| Error::io(l.path(), e));
                    sled.and(synced)
                }
                // No thread: sync here, one after the other.
                _ => self
                    .store
                    .flush(self.durability)
                    .and_then(|()| l.handle().sync_data().map_err(|e| Error::io(l.path(), e))),
            }
        } else {
            // Flush: the entry reached the OS with its write; no sync.
            self.store.flush(self.durability)
        };
        if let Err(e) = flushed {
            l.abandon_step(offset, &steps);
            return Err(e);
        }
        l.confirm(offset)
    }

    /// The group's step per mission: its head before the group and after
    /// it (a mission with several plans in the group: the last one wins).
    fn steps(
        &self,
        plans: &[PlannedAppend],
        heads: &[(u64, Hash)],
        new_names: &HashMap<String, MissionNo>,
        prev: &PrevHeads,
    ) -> Vec<Step> {
        let mut latest: BTreeMap<String, Step> = BTreeMap::new();
        for (plan, (sequence, hash)) in plans.iter().zip(heads) {
            // A mission created in this group is not in the directory yet.
            let name = plan
                .register
                .clone()
                .or_else(|| self.shared.name_of(plan.mission))
                .or_else(|| {
                    new_names
                        .iter()
                        .find(|(_, no)| **no == plan.mission)
                        .map(|(n, _)| n.clone())
                });
            let Some(name) = name else {
                debug_assert!(false, "a committed plan's mission has no name");
                continue;
            };
            let (prev_seq, prev_hash) = prev.get(&plan.mission).copied().unwrap_or_else(|| {
                debug_assert!(false, "a committed plan's mission has no previous head");
                (plan.prev_seq, codec::GENESIS)
            });
            let new = LedgerHead {
                sequence: *sequence,
                hash: *hash,
            };
            latest
                .entry(name.clone())
                .and_modify(|s| s.new = new.clone())
                .or_insert(Step {
                    mission: name,
                    prev: LedgerHead {
                        sequence: prev_seq,
                        hash: prev_hash,
                    },
                    new,
                });
        }
        latest.into_values().collect()
    }

    /// `Durability::Relaxed`: make sled durable (flush + fsync), then record
    /// the heads written since the last time in the ledger.
    pub(super) fn write_pending_heads(&self) -> Result<()> {
        let pending = std::mem::take(&mut *self.ledger_pending.borrow_mut());
        if pending.is_empty() {
            return Ok(());
        }
        let mut ledger = self.ledger.borrow_mut();
        let Some(l) = ledger.as_mut() else {
            return Ok(());
        };
        self.store.flush(Durability::Sync)?;
        let items: Vec<(&str, LedgerHead)> = pending
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        l.append(&items, &[], true)
    }
}
