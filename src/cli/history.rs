//! History management commands: fork, delete, prune, retention,
//! tombstones (on the data directory or, with `--server`, over the admin
//! API), archives (verify, restore; written from the store) and
//! compaction (a sled directory rewritten, or PostgreSQL's `VACUUM FULL`).

use std::io::Write;
use std::path::{Path, PathBuf};

use mission_bus::document::{event_to_json, prune_report_to_json, tombstone_to_json};
use mission_bus::{read_archive, Archive, MissionBus, Retention, OPERATOR};
use serde_json::{json, Value};

use super::args::Command;
use super::commands::{open, open_existing, parse_uuid};
use super::remote::{seg, Remote};
use super::{CliResult, Failure, EXIT_INTEGRITY};

/// Run one history command.
pub(crate) fn run(
    cmd: Command,
    data: &Path,
    server: Option<&str>,
    token: Option<&str>,
    out: &mut dyn Write,
) -> CliResult {
    let remote =
        || -> CliResult<Option<Remote>> { server.map(|url| Remote::new(url, token)).transpose() };
    let local_only = |what: &str| -> CliResult {
        if server.is_some() {
            return Err(Failure::usage(format!(
                "{what} works on a data directory and cannot use --server \
                 (run it where the data directory is, with --data)"
            )));
        }
        Ok(())
    };
    let line = |out: &mut dyn Write, v: Value| -> CliResult {
        writeln!(out, "{v}")?;
        Ok(())
    };
    match cmd {
        Command::Fork { source, at, new_id } => {
            let at = parse_uuid("--at", &at)?;
            let events = match remote()? {
                Some(r) => r.admin(
                    &format!("/v1/admin/missions/{}/fork", seg(&source)),
                    Some(json!({"checkpoint_id": at, "new_mission_id": new_id})),
                )?["events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                None => open(data)?
                    .fork(&source, &at, &new_id)?
                    .iter()
                    .map(event_to_json)
                    .collect(),
            };
            for e in events {
                line(out, e)?;
            }
            Ok(())
        }
        Command::Delete { mission, yes, by } => {
            if !yes {
                return Err(Failure::usage(format!(
                    "delete removes every event of mission '{mission}' for good (a tombstone \
                     stays); archive it first (`mission-bus archive {mission} --to FILE`), \
                     then repeat with --yes"
                )));
            }
            let v = match remote()? {
                Some(r) => r.admin(
                    &format!("/v1/admin/missions/{}/delete", seg(&mission)),
                    Some(json!({"deleted_by": by})),
                )?,
                None => tombstone_to_json(&open_existing(data)?.delete_mission(&mission, &by)?),
            };
            line(out, v)
        }
        Command::Prune {
            mission,
            before,
            archive,
        } => {
            let v = match remote()? {
                Some(_) if archive.is_some() => {
                    return Err(Failure::usage(
                        "prune --archive writes a file next to the data directory and \
                         cannot use --server",
                    ))
                }
                Some(r) => r.admin(
                    &format!("/v1/admin/missions/{}/prune", seg(&mission)),
                    Some(json!({"before": before})),
                )?,
                None => {
                    let bus = open_existing(data)?;
                    let mut v = json!({});
                    if let Some(file) = &archive {
                        let info = write_archive(&bus, &mission, Some(before), file)?;
                        v["archive"] = info;
                    }
                    let mut r = prune_report_to_json(&bus.prune(&mission, before)?);
                    if let Some(a) = v.get("archive") {
                        r["archive"] = a.clone();
                    }
                    r
                }
            };
            line(out, v)
        }
        Command::Retention {
            mission,
            max_age,
            max_count,
        } => {
            let v = match remote()? {
                Some(r) => r.admin(
                    &format!("/v1/admin/missions/{}/retention", seg(&mission)),
                    Some(json!({"max_age_s": max_age, "max_count": max_count})),
                )?,
                None => event_to_json(&open_existing(data)?.set_retention(
                    &mission,
                    OPERATOR,
                    Retention {
                        max_age_s: max_age,
                        max_count,
                    },
                )?),
            };
            line(out, v)
        }
        Command::ApplyRetention => {
            let v = match remote()? {
                Some(r) => r.admin("/v1/admin/retention/apply", Some(json!({})))?,
                None => {
                    let bus = open_existing(data)?;
                    let mut pruned = Vec::new();
                    let mut errors = Vec::new();
                    for (m, r) in bus.apply_retention(chrono::Utc::now()) {
                        match r {
                            Ok(r) => pruned.push(prune_report_to_json(&r)),
                            Err(e) => errors.push(json!({"mission_id": m, "error": e.to_string()})),
                        }
                    }
                    json!({"pruned": pruned, "errors": errors})
                }
            };
            let failed = v["errors"].as_array().is_some_and(|e| !e.is_empty());
            line(out, v)?;
            if failed {
                return Err(Failure::other(
                    "retention failed for some missions (see errors)",
                ));
            }
            Ok(())
        }
        Command::Tombstones { mission } => {
            let list: Vec<Value> = match remote()? {
                Some(r) => {
                    let path = match &mission {
                        Some(m) => format!("/v1/admin/tombstones?mission={}", seg(m)),
                        None => "/v1/admin/tombstones".to_string(),
                    };
                    r.admin(&path, None)?["tombstones"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                }
                None => open_existing(data)?
                    .tombstones(mission.as_deref())?
                    .iter()
                    .map(tombstone_to_json)
                    .collect(),
            };
            for t in list {
                line(out, t)?;
            }
            Ok(())
        }
        Command::Archive {
            mission,
            to,
            before,
        } => {
            local_only("archive")?;
            let bus = open_existing(data)?;
            let info = write_archive(&bus, &mission, before, &to)?;
            line(out, info)
        }
        Command::VerifyArchive { files } => {
            let archives = read_archives(&files)?;
            for a in &archives {
                line(out, a.info.to_json())?;
            }
            let span = mission_bus::chain_archives(&archives)?;
            line(out, json!({"verified": true, "span": span.to_json()}))
        }
        Command::Restore { files } => {
            local_only("restore")?;
            let archives = read_archives(&files)?;
            let info = open(data)?.restore(archives)?;
            line(out, json!({"restored": info.to_json()}))
        }
        Command::Compact => {
            local_only("compact")?;
            if let Some(url) = super::store_override() {
                // PostgreSQL: VACUUM FULL of the store's tables.
                let bus = open_existing(data)?;
                let (before, after) = bus.compact_database()?;
                bus.close();
                return line(
                    out,
                    json!({"bytes_before": before, "bytes_after": after,
                           "store": url.to_string()}),
                );
            }
            compact(data, out)
        }
        _ => unreachable!("routed here by commands::run"),
    }
}

/// Write an archive to `file` (which must not exist): the header JSON.
fn write_archive(
    bus: &MissionBus,
    mission: &str,
    before: Option<u64>,
    file: &Path,
) -> CliResult<Value> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .map_err(|e| Failure::usage(format!("cannot create {}: {e}", file.display())))?;
    let mut w = std::io::BufWriter::new(f);
    let written = bus.archive(mission, before, &mut w);
    let info = match written {
        Ok(info) => info,
        Err(e) => {
            drop(w);
            let _ = std::fs::remove_file(file);
            return Err(e.into());
        }
    };
    w.into_inner()
        .map_err(|e| Failure::other(format!("writing {}: {e}", file.display())))?
        .sync_all()
        .map_err(|e| Failure::other(format!("syncing {}: {e}", file.display())))?;
    let mut v = info.to_json();
    v["file"] = json!(file.display().to_string());
    Ok(v)
}

/// Read and verify archive files; a tampered one is exit 6.
fn read_archives(files: &[PathBuf]) -> CliResult<Vec<Archive>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", f.display())))?;
        out.push(read_archive(&f.display().to_string(), &text)?);
    }
    Ok(out)
}

/// Bytes of every file under `dir`.
fn bytes_on_disk(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => total += bytes_on_disk(&e.path()),
                Ok(_) => total += e.metadata().map_or(0, |m| m.len()),
                Err(_) => {}
            }
        }
    }
    total
}

/// Copy the store key for key into a fresh directory (a backup: sled
/// writes only live data), then swap it in: DATA -> DATA.old-PID,
/// copy -> DATA, remove the old one. The files the server keeps next to
/// the store (the admin token) move along.
fn compact(data: &Path, out: &mut dyn Write) -> CliResult {
    let before = bytes_on_disk(data);
    let parent = data.parent().unwrap_or(Path::new("."));
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let pid = std::process::id();
    let fresh = parent.join(format!("{name}.compact-{pid}"));
    let old = parent.join(format!("{name}.old-{pid}"));
    {
        let bus = open_existing(data)?;
        bus.backup(&fresh)?;
        bus.close();
    }
    let token = data.join("admin.token");
    if token.exists() {
        std::fs::copy(&token, fresh.join("admin.token"))
            .map_err(|e| Failure::other(format!("copying {}: {e}", token.display())))?;
    }
    let fail = |what: &str, e: std::io::Error| {
        Failure::new(
            EXIT_INTEGRITY,
            format!(
                "compact: {what}: {e} (the compacted copy is {}, the original {})",
                fresh.display(),
                data.display()
            ),
        )
    };
    std::fs::rename(data, &old).map_err(|e| fail("moving the store aside", e))?;
    // Evidence kept by an earlier open of a damaged store moves along.
    let evidence = old.join("evidence");
    if evidence.exists() {
        std::fs::rename(&evidence, fresh.join("evidence"))
            .map_err(|e| fail("moving evidence/ along", e))?;
    }
    std::fs::rename(&fresh, data).map_err(|e| fail("moving the copy in", e))?;
    std::fs::remove_dir_all(&old).map_err(|e| fail("removing the old store", e))?;
    // Proves the swapped-in store opens.
    open_existing(data)?.close();
    let after = bytes_on_disk(data);
    writeln!(
        out,
        "{}",
        json!({"bytes_before": before, "bytes_after": after, "data": data.display().to_string()})
    )?;
    Ok(())
}
