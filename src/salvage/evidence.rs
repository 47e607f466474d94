//! Evidence kept from before sled opens a store.
//!
//! sled's recovery on open cuts its log at the first damaged message: the
//! intact records written after it are gone from `db` once any command has
//! opened the store, even when the open then fails (docs/faults.md measured
//! it). So before sled opens an existing store, the bus copies `db` aside,
//! holding sled's own lock (an exclusive `flock` on `db`) so the copy is
//! consistent and no other process writes meanwhile. If the open then finds
//! damage (sled refuses the file, or the commit ledger says acknowledged
//! events are missing, or the ledger itself is damaged), the copy is kept as
//! `DATA/evidence/db-before-open-<unix seconds>`; otherwise it is deleted.
//! `salvage` scans every file under `DATA/evidence/` as well as `db`, so the
//! records sled's recovery cut are still found.
//!
//! Only the first damaged open keeps a copy: while `DATA/evidence/` holds
//! one, no new copy is taken (later copies would only hold what the first
//! open's recovery left). Remove the directory once the store is salvaged
//! or the loss accepted. Taking the copy never fails an open: when it cannot
//! be taken (no space, a store larger than the limit, a directory held by
//! another process) the open goes on without it and says so in the log.

use std::fs::File;
use std::path::{Path, PathBuf};

/// Sub-directory of a store holding the copies kept by damaged opens.
pub const EVIDENCE_SUBDIR: &str = "evidence";
/// Prefix of a kept copy's file name.
const KEPT_PREFIX: &str = "db-before-open-";
/// Suffix of a copy still being taken or judged.
const TMP_SUFFIX: &str = ".tmp";

/// The largest `db` file copied aside before opening, by default: 128 MiB.
/// Copying is `copy_file_range` (a reflink where the file system has them,
/// else an in-kernel copy). Measured on our 2-core machines at load 14:
/// 128 MiB in 0.3 to 0.8 s, 1 GiB in 13.7 s (the page cache throttles a
/// large copy to the disk's write speed), which every open would pay.
pub const DEFAULT_EVIDENCE_LIMIT: u64 = 128 << 20;

/// A copy of `db` taken before sled opened it; deleted on drop unless kept.
#[derive(Debug)]
pub(crate) struct PreOpenCopy {
    tmp: Option<PathBuf>,
    dir: PathBuf,
}

impl PreOpenCopy {
    /// Copy `store/db` aside before sled opens it, when there is one, it is
    /// at most `limit` bytes, no other process holds it and no earlier copy
    /// is kept. Never fails: without a copy, the result keeps nothing.
    pub(crate) fn take(store: &Path, limit: u64) -> PreOpenCopy {
        let mut copy = PreOpenCopy {
            tmp: None,
            dir: store.join(EVIDENCE_SUBDIR),
        };
        if limit == 0 {
            return copy;
        }
        match copy.try_take(store, limit) {
            Ok(tmp) => copy.tmp = tmp,
            Err(e) => tracing::warn!(
                store = %store.display(),
                error = %e,
                "could not copy the data file aside before opening; if the open finds damage, \
                 run `mission-bus salvage` before any other command"
            ),
        }
        copy
    }

    fn try_take(&self, store: &Path, limit: u64) -> std::io::Result<Option<PathBuf>> {
        let db_path = store.join("db");
        let db = match File::open(&db_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = db.metadata()?.len();
        if len > limit {
            tracing::info!(
                store = %store.display(),
                bytes = len,
                limit,
                "data file larger than the evidence limit: not copied aside before opening"
            );
            return Ok(None);
        }
        // sled holds an exclusive flock on `db` while the store is open.
        // Holding it ourselves makes the copy consistent; when another
        // process holds it, sled's open is about to say so: no copy.
        match db.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        if self.holds_kept_copy()? {
            return Ok(None);
        }
        if !self.dir.is_dir() {
            let mut b = std::fs::DirBuilder::new();
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            b.create(&self.dir)?;
        }
        // Copies left by a process that died while opening: we hold the
        // lock, so no live process is taking one.
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.to_string_lossy().ends_with(TMP_SUFFIX) {
                let _ = std::fs::remove_file(&path);
            }
        }
        let tmp = self.dir.join(format!(
            ".db-before-open-{}{TMP_SUFFIX}",
            std::process::id()
        ));
        let mut out = crate::ledger::private_options()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let copied = std::io::copy(&mut &db, &mut out);
        if let Err(e) = copied {
            drop(out);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(Some(tmp))
    }

    fn holds_kept_copy(&self) -> std::io::Result<bool> {
        match std::fs::read_dir(&self.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
            Ok(entries) => {
                for entry in entries {
                    if entry?
                        .file_name()
                        .to_string_lossy()
                        .starts_with(KEPT_PREFIX)
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }

    /// The open found damage: keep the copy for `salvage`.
    pub(crate) fn keep(mut self) {
        let Some(tmp) = self.tmp.take() else {
            return;
        };
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let kept = self.dir.join(format!("{KEPT_PREFIX}{secs}"));
        let synced = File::open(&tmp).and_then(|f| f.sync_all());
        match synced.and_then(|()| std::fs::rename(&tmp, &kept)) {
            Ok(()) => {
                let _ = File::open(&self.dir).and_then(|d| d.sync_all());
                tracing::warn!(
                    copy = %kept.display(),
                    "damage found: kept a copy of the data file as it was before this open; \
                     `mission-bus salvage` reads it"
                );
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::error!(error = %e, "could not keep the pre-open copy of the data file");
            }
        }
    }
}

impl Drop for PreOpenCopy {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(&tmp);
            // Leave no empty evidence directory behind.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Kept copies under `store/evidence/`, oldest first (for salvage).
pub(crate) fn kept_copies(store: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(store.join(EVIDENCE_SUBDIR)) else {
        return Vec::new();
    };
    let mut kept: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(KEPT_PREFIX))
        .map(|e| e.path())
        .collect();
    kept.sort();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_db(bytes: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), bytes).unwrap();
        dir
    }

    #[test]
    fn a_kept_copy_holds_the_bytes_from_before_and_blocks_later_copies() {
        let dir = store_with_db(b"before");
        let copy = PreOpenCopy::take(dir.path(), DEFAULT_EVIDENCE_LIMIT);
        std::fs::write(dir.path().join("db"), b"after the cut").unwrap();
        copy.keep();
        let kept = kept_copies(dir.path());
        assert_eq!(kept.len(), 1);
        assert_eq!(std::fs::read(&kept[0]).unwrap(), b"before");
        // A second damaged open keeps nothing new: the first copy is the
        // more complete one.
        PreOpenCopy::take(dir.path(), DEFAULT_EVIDENCE_LIMIT).keep();
        assert_eq!(kept_copies(dir.path()), kept);
    }

    #[test]
    fn a_healthy_open_leaves_nothing_behind() {
        let dir = store_with_db(b"fine");
        drop(PreOpenCopy::take(dir.path(), DEFAULT_EVIDENCE_LIMIT));
        assert!(!dir.path().join(EVIDENCE_SUBDIR).exists());
    }

    #[test]
    fn no_copy_above_the_limit_or_while_another_holder_has_the_lock() {
        let dir = store_with_db(b"0123456789");
        PreOpenCopy::take(dir.path(), 5).keep();
        assert!(kept_copies(dir.path()).is_empty());
        let holder = File::open(dir.path().join("db")).unwrap();
        holder.lock().unwrap();
        PreOpenCopy::take(dir.path(), DEFAULT_EVIDENCE_LIMIT).keep();
        assert!(kept_copies(dir.path()).is_empty());
    }
}
