//! A consistent copy of the whole store into a new directory (backups).
//!
//! Every tree is copied key for key, so records, heads, indexes, snapshots,
//! tokens and the `meta` keys come out byte-identical and every mission
//! keeps its internal number and head hash (version-1 records included,
//! whose hashes commit to that number). The caller (the bus's writer)
//! guarantees that nothing commits while the copy runs.

use std::path::Path;

use super::{
    keys, SledStore, META_MISSION_NO_BASE, TREE_EVENTS, TREE_META, TREE_MISSIONS, TREE_TOKENS,
};
use crate::codec;
use crate::error::{Error, Result};

/// Writes per batch while copying.
const BATCH: usize = 10_000;

/// What a copy holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CopyCounts {
    pub(crate) missions: u64,
    pub(crate) events: u64,
    pub(crate) tokens: u64,
}

impl SledStore {
    /// Copy every tree into a new sled database at `to` (which the caller
    /// checked is absent or empty), flush it and close it.
    pub(crate) fn copy_to(&self, to: &Path) -> Result<CopyCounts> {
        super::create_private_dir(to)?;
        let target = sled::Config::new().path(to).flush_every_ms(None).open()?;
        let mut counts = CopyCounts::default();
        let mut top_no = self.mission_no_base;
        for name in self.db.tree_names() {
            let from = self.db.open_tree(&name)?;
            let into = target.open_tree(&name)?;
            let mut batch = sled::Batch::default();
            let mut pending = 0;
            let mut n = 0u64;
            for item in from.iter() {
                let (k, v) = item?;
                if name == TREE_MISSIONS.as_bytes() {
                    if let Ok(no) = codec::decode_mission_entry(&v) {
                        top_no = top_no.max(no.saturating_add(1));
                    }
                }
                if name == TREE_EVENTS.as_bytes() {
                    if let Some((no, _)) = keys::parse_event_key(&k) {
                        top_no = top_no.max(no.saturating_add(1));
                    }
                }
                batch.insert(k, v);
                pending += 1;
                n += 1;
                if pending == BATCH {
                    into.apply_batch(std::mem::take(&mut batch))?;
                    pending = 0;
                }
            }
            into.apply_batch(batch)?;
            match name.as_ref() {
                n_ if n_ == TREE_MISSIONS.as_bytes() => counts.missions = n,
                n_ if n_ == TREE_EVENTS.as_bytes() => counts.events = n,
                n_ if n_ == TREE_TOKENS.as_bytes() => counts.tokens = n,
                _ => {}
            }
        }
        // sled's id generator starts again at 0 in the copy: offset it past
        // every mission number copied.
        target
            .open_tree(TREE_META)?
            .insert(META_MISSION_NO_BASE, &top_no.to_be_bytes())?;
        target.flush()?;
        let lock = to.join("db");
        drop(target);
        // sled's flush ends in sync_file_range: make the copy durable.
        for file in [to.join("db"), to.join("conf")] {
            if let Ok(f) = std::fs::File::open(&file) {
                f.sync_all().map_err(|e| Error::io(&file, e))?;
            }
        }
        crate::ledger::sync_dir(to)?;
        if !crate::bus::wait_for_unlock(&lock, std::time::Duration::from_secs(5)) {
            return Err(Error::io(
                &lock,
                std::io::Error::other("the copy was not released in time"),
            ));
        }
        super::make_private(to);
        Ok(counts)
    }
}
