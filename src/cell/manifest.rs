//! A workspace's files with their content hashes, for attaching a cell's
//! workspace to a checkpoint as artifacts.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One regular file of a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Path relative to the workspace, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// BLAKE3 of the content, lowercase hex.
    pub blake3: String,
}

impl ManifestEntry {
    /// The artifact string recorded in a checkpoint:
    /// `WORKSPACE/PATH#blake3=HEX`.
    pub fn artifact(&self, workspace: &Path) -> String {
        format!(
            "{}/{}#blake3={}",
            workspace.display().to_string().trim_end_matches('/'),
            self.path,
            self.blake3
        )
    }
}

/// Every regular file under `workspace` (symbolic links are not followed
/// and not listed), sorted by path. More than `max_files` files is an error
/// naming the count: a checkpoint holds a bounded number of artifacts.
pub fn workspace_manifest(workspace: &Path, max_files: usize) -> Result<Vec<ManifestEntry>> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = vec![workspace.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(workspace)
                    .map_err(|_| Error::invalid("workspace", "a file escaped the workspace"))?;
                let Some(rel) = rel.to_str() else {
                    return Err(Error::invalid(
                        "workspace",
                        format!("file name {} is not UTF-8", path.display()),
                    ));
                };
                let mut hasher = blake3::Hasher::new();
                let mut file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
                let bytes =
                    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(&path, e))?;
                out.push(ManifestEntry {
                    path: rel.to_string(),
                    bytes,
                    blake3: hasher.finalize().to_hex().to_string(),
                });
                if out.len() > max_files {
                    return Err(Error::invalid(
                        "workspace",
                        format!(
                            "{} holds more than {max_files} files, more than a checkpoint's artifacts",
                            workspace.display()
                        ),
                    ));
                }
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
