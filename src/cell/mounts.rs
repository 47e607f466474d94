//! Level 2: the mount table, and the set-up script run by `sh` inside the
//! new user + mount namespace.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::error::{Error, Result};

/// Run as `sh -c SETUP_SCRIPT mission-bus-cell MOUNT UNSHARE WS N MP1..MPN
/// COMMAND...` by `unshare --user --map-root-user --mount`:
/// 1. bind the workspace onto itself (a mount of its own, writable);
/// 2. remount every other mount point read-only (`/proc` is left alone: the
///    nested `unshare` writes its uid map there);
/// 3. enter the workspace and run the command in a NESTED user + mount
///    namespace: mounts inherited from a more privileged namespace are
///    locked, so the command cannot remount them read-write or unmount them.
///
/// Any failing step stops the cell (`set -e`): never a weaker cell.
pub(super) const SETUP_SCRIPT: &str = r#"set -e
mount="$1"; unshare="$2"; ws="$3"; n="$4"; shift 4
"$mount" --bind "$ws" "$ws"
i=0
while [ "$i" -lt "$n" ]; do
  mp="$1"; shift; i=$((i + 1))
  if [ "$mp" = "$ws" ]; then continue; fi
  "$mount" -o remount,bind,ro "$mp"
done
cd "$ws"
exec "$unshare" --user --map-root-user --mount --propagation unchanged -- "$@"
"#;

/// Every mount point of this process's mount namespace, in mount order,
/// except `/proc` and what is mounted below it.
pub(super) fn mount_points() -> Result<Vec<OsString>> {
    let path = "/proc/self/mountinfo";
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut points = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        // id parent major:minor root MOUNT_POINT options ...
        let Some(field) = line.split(|b| *b == b' ').nth(4) else {
            continue;
        };
        let point = unescape(field);
        if point == b"/proc" || point.starts_with(b"/proc/") {
            continue;
        }
        points.push(OsString::from_vec(point));
    }
    if points.is_empty() {
        return Err(Error::invalid(path, "lists no mount points"));
    }
    Ok(points)
}

/// The kernel writes space, tab, newline and backslash as `\ooo` (octal).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 4 <= field.len() {
            let digits = &field[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(br"/mnt/a\040b"), b"/mnt/a b");
        assert_eq!(unescape(br"/x\134y\011"), b"/x\\y\t");
        assert_eq!(unescape(br"/trailing\04"), br"/trailing\04");
        assert_eq!(unescape(b"/plain"), b"/plain");
    }
}
