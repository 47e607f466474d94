//! sled's own snapshot files, seen from outside sled: what a crash can
//! leave of them that sled 0.34 mishandles.

use std::fs::File;
use std::path::Path;

/// Remove the snapshot files sled left unfinished.
///
/// sled 0.34 writes its recovery snapshot (while opening) to
/// `snap.<lsn>.generating`, syncs it, then renames it to `snap.<lsn>`; but
/// when it looks for the newest snapshot it does not skip `.generating`
/// files, so one left half-written by a process killed during that write
/// is taken for the newest snapshot and the open fails with "corrupted
/// data" (sled issue 1527), though the log and the previous snapshot are
/// intact. Such a file is never finished by anyone: it is removed here,
/// while holding sled's own lock (an exclusive `flock` on `db`), so no live
/// sled is writing it. Best effort: when another process holds the lock,
/// sled's open says the directory is in use.
pub(super) fn drop_unfinished(path: &Path) {
    let Ok(db) = File::open(path.join("db")) else {
        return;
    };
    if db.try_lock().is_err() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("snap.") && name.ends_with(".generating")) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => tracing::warn!(
                file = %entry.path().display(),
                "removed an unfinished sled snapshot left by a crash (sled would refuse to open with it)"
            ),
            Err(e) => tracing::warn!(
                file = %entry.path().display(),
                error = %e,
                "could not remove an unfinished sled snapshot; sled may refuse to open"
            ),
        }
    }
    // `db` is closed here, which releases the lock before sled takes it.
}
