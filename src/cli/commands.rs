//! One function per command. Each opens the store, does its work through the
//! library's public API, and writes its answer to `out`.
//!
//! The CLI runs with the operator's authority over the data directory (it
//! can open the files), so `join`, `export`, `import`, `missions` and
//! `verify` act as the operator; `publish`, `checkpoint`, `handoff` and
//! `replay` act as the participant named by `--as` and are checked against
//! its role.

use std::io::{Read, Write};
use std::path::Path;

use mission_bus::document;
use mission_bus::{
    Action, AppendOptions, Event, EventMeta, EventType, Json, MissionBus, MissionConfig,
};
use serde_json::{json, Value};
use uuid::Uuid;

use super::args::{Cli, Command, Format, Guard};
use super::backend::{Backend, Local};
use super::remote::Remote;
use super::{demo, CliResult, Failure, EXIT_INTEGRITY};

/// Run one parsed command line, on the data directory or, with
/// `--server`, against that server.
pub(crate) fn run(cli: Cli, out: &mut dyn Write) -> CliResult {
    let data = cli.data.as_path();
    let server = cli.server.clone();
    // The backend is opened only once the arguments are known to be good,
    // so a usage error never waits on the store or the network.
    let token = cli.token.clone();
    let connect = |create_if_missing: bool| -> CliResult<Box<dyn Backend>> {
        match &server {
            Some(url) => Ok(Box::new(Remote::new(url, token.as_deref())?)),
            None => Ok(Box::new(Local::open(data, create_if_missing)?)),
        }
    };
    // Writes create the store; commands that only read (or copy) need an
    // existing one: without it they exit 4 and create nothing.
    let backend = || connect(true);
    let existing = || connect(false);
    match cli.command {
        Command::Create {
            mission,
            title,
            lead,
            profiles,
        } => {
            let config = match profiles {
                Some(path) => load_profiles(&path)?,
                None => MissionConfig::default(),
            };
            for e in backend()?.create(&mission, &title, &lead, config)? {
                writeln!(out, "{e}")?;
            }
            Ok(())
        }
        Command::Join {
            mission,
            name,
            role,
            metadata,
        } => {
            let metadata = Json::parse("--metadata", &metadata)?;
            let e = backend()?.join(&mission, &name, &role, metadata)?;
            writeln!(out, "{e}")?;
            Ok(())
        }
        Command::Publish {
            mission,
            actor,
            topic,
            payload,
            guard,
        } => {
            let payload = Json::parse("--payload", &payload)?;
            let action = Action::Publish { topic, payload };
            append(&backend, out, &mission, &actor.name, action, &guard)
        }
        Command::Checkpoint {
            mission,
            actor,
            summary,
            state,
            artifacts,
            guard,
        } => {
            let state = Json::parse("--state", &state)?;
            let action = Action::Checkpoint {
                summary,
                state,
                artifacts,
            };
            append(&backend, out, &mission, &actor.name, action, &guard)
        }
        Command::Handoff {
            mission,
            actor,
            to,
            checkpoint,
            note,
            guard,
        } => {
            let checkpoint_id = parse_uuid("--checkpoint", &checkpoint)?;
            let action = Action::Handoff {
                recipient: to,
                checkpoint_id,
                note,
            };
            append(&backend, out, &mission, &actor.name, action, &guard)
        }
        Command::Resume {
            mission,
            handoff,
            recipient,
        } => {
            let handoff = handoff.map(|h| parse_uuid("--handoff", &h)).transpose()?;
            let packet = existing()?.resume(&mission, handoff, recipient.as_deref())?;
            writeln!(out, "{packet}")?;
            Ok(())
        }
        Command::Replay {
            mission,
            reader,
            from,
            to,
            types,
            filter,
        } => {
            let types = types
                .iter()
                .map(|t| {
                    EventType::parse(t).map_err(|_| {
                        Failure::usage(format!(
                            "invalid --type '{t}': expected one of {}",
                            type_names()
                        ))
                    })
                })
                .collect::<CliResult<Vec<_>>>()?;
            if let Some(to) = to {
                if to < from {
                    return Err(Failure::usage(format!("--to {to} is before --from {from}")));
                }
            }
            if filter.any() {
                let range = (from, to);
                return super::lifecycle::filtered_replay(
                    &*existing()?,
                    out,
                    &mission,
                    &reader,
                    range,
                    types,
                    &filter,
                );
            }
            let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
            existing()?.replay(&mission, &reader, from, to, &mut |e| {
                let kind = e["event_type"].as_str().unwrap_or("");
                if names.is_empty() || names.contains(&kind) {
                    writeln!(out, "{e}")?;
                }
                Ok(())
            })
        }
        Command::Export { mission, format } => existing()?.export(out, &mission, format),
        Command::Import { file, format } => {
            let text = read_input(&file)?;
            let (events, filled) = parse_log(&text, format, &file)?;
            let mission = events.first().map(mission_of).unwrap_or_default();
            let count = backend()?.import(events)?;
            writeln!(
                out,
                "{}",
                json!({"mission_id": mission, "imported": count, "head_sequence": count, "filled": filled})
            )?;
            Ok(())
        }
        Command::Missions => {
            for (mission_id, title, head, lineage) in existing()?.missions()? {
                let mut line = json!({
                    "mission_id": mission_id,
                    "title": title,
                    "events": head,
                    "head_sequence": head,
                });
                if !lineage.is_null() {
                    line["forked_from"] = lineage;
                }
                writeln!(out, "{line}")?;
            }
            Ok(())
        }
        Command::Verify { mission } => verify(&*existing()?, out, mission.as_deref()),
        // Run by `cli::run` before stdout is locked (MCP owns stdout).
        Command::Mcp => Err(Failure::other("mcp must run before the output is set up")),
        Command::Cell { command } => {
            super::cell::run(command, data, server.as_deref(), token.as_deref(), out)
        }
        Command::Backup { to } => {
            let report = existing()?.backup(&to)?;
            writeln!(out, "{report}")?;
            Ok(())
        }
        Command::Copy { from, to } => copy(out, &from, &to),
        Command::Serve { .. }
        | Command::Demo
        | Command::Salvage { .. }
        | Command::AcceptLoss { .. }
            if server.is_some() =>
        {
            Err(Failure::usage(
                "this command works on a data directory and cannot use --server \
             (run it where the data directory is, with --data)",
            ))
        }
        Command::AcceptLoss { mission, yes } => {
            if !yes {
                return Err(Failure::usage(format!(
                    "accept-loss records that acknowledged events of mission '{mission}' are \
                     gone for good; run `mission-bus verify {mission}` and consider \
                     `mission-bus salvage` first, then repeat with --yes"
                )));
            }
            let bus = open_existing(data)?;
            match bus.accept_loss(&mission)? {
                Some(e) => print_event(out, &e),
                None => {
                    writeln!(
                        out,
                        "{}",
                        json!({"mission_id": mission, "loss_accepted": true, "log": null})
                    )?;
                    Ok(())
                }
            }
        }
        Command::Serve {
            listen,
            admin_token_file,
            log_level,
            log_format,
        } => {
            use mission_bus::server::LogFormat;
            let format = match log_format {
                super::args::LogFormatArg::Text => LogFormat::Text,
                super::args::LogFormatArg::Json => LogFormat::Json,
            };
            mission_bus::server::init_logging(&log_level, format)?;
            mission_bus::server::serve_blocking(mission_bus::server::ServeOptions {
                data: data.to_path_buf(),
                store: super::store_override(),
                listen,
                admin_token_file,
            })?;
            Ok(())
        }
        Command::Demo => demo::run(data, out),
        c @ (Command::Fork { .. }
        | Command::Delete { .. }
        | Command::Prune { .. }
        | Command::Retention { .. }
        | Command::ApplyRetention
        | Command::Tombstones { .. }
        | Command::Archive { .. }
        | Command::VerifyArchive { .. }
        | Command::Restore { .. }
        | Command::Compact) => {
            super::history::run(c, data, server.as_deref(), token.as_deref(), out)
        }
        Command::Salvage { damaged, to } => salvage(out, &damaged, &to),
        other => super::lifecycle::run(other, &connect, out),
    }
}

/// `mission-bus copy`: progress lines on stderr, the report (missions,
/// pruned ones among them, events, tombstones, every head) as JSON on
/// stdout.
fn copy(out: &mut dyn Write, from: &str, to: &str) -> CliResult {
    let (from, to) = (
        mission_bus::StoreUrl::parse(from)?,
        mission_bus::StoreUrl::parse(to)?,
    );
    let source = MissionBus::builder_url(from.clone())
        .create_if_missing(false)
        .open()?;
    let target = MissionBus::builder_url(to.clone()).open()?;
    let mut err = std::io::stderr().lock();
    let report = source.copy_into(&target, |mission, done, total| {
        if done == 0 || done == total {
            let _ = writeln!(
                err,
                "copy {from} -> {to}: mission {mission}: {done}/{total} events"
            );
        }
    })?;
    let heads: Vec<Value> = report
        .heads
        .iter()
        .map(|(m, seq, hash)| json!({"mission_id": m, "head_sequence": seq, "head_hash": hash}))
        .collect();
    writeln!(
        out,
        "{}",
        json!({
            "missions": report.missions,
            "pruned": report.pruned,
            "events": report.events,
            "tombstones": report.tombstones,
            "verified": true,
            "heads": heads,
        })
    )?;
    Ok(())
}

/// `mission-bus salvage`: the report always goes to stdout (flushed before
/// failing, so a lossy salvage still shows what it recovered).
fn salvage(out: &mut dyn Write, damaged: &Path, to: &Path) -> CliResult {
    if !mission_bus::salvage::holds_store(damaged) {
        return Err(Failure::new(
            super::EXIT_NOT_FOUND,
            format!("{} holds no store (no sled `db` file)", damaged.display()),
        ));
    }
    let report = mission_bus::salvage::salvage(damaged, to)?;
    writeln!(out, "{}", report.to_json())?;
    out.flush()?;
    if report.is_complete() {
        return Ok(());
    }
    let mut what: Vec<String> = Vec::new();
    match &report.ledger {
        Err(e) => what.push(format!("the ledger is damaged ({e})")),
        Ok(false) => what.push(
            "no commit ledger (an older store): completeness cannot be proven, \
             and version-1 records cannot be salvaged"
                .to_string(),
        ),
        Ok(true) => {}
    }
    for m in report.missions.iter().filter(|m| !m.is_complete()) {
        let lost: Vec<String> = m.lost.iter().map(|(a, b)| format!("{a}..={b}")).collect();
        let mut s = format!(
            "mission '{}': recovered 1..={}",
            m.mission_id, m.recovered_to
        );
        if !lost.is_empty() {
            s.push_str(&format!(", lost {}", lost.join(", ")));
        }
        if m.after_gaps > 0 {
            s.push_str(&format!(
                ", {} events after a gap kept in {}/salvage/after-gaps.jsonl",
                m.after_gaps,
                to.display()
            ));
        }
        if m.matches_ledger == Some(false) {
            s.push_str(", head does not match the ledger");
        }
        if let Some(e) = &m.error {
            s.push_str(&format!(", {e}"));
        }
        what.push(s);
    }
    Err(Failure::new(
        super::EXIT_INTEGRITY,
        format!("salvage incomplete: {}", what.join("; ")),
    ))
}

pub(crate) fn open(data: &Path) -> CliResult<MissionBus> {
    Ok(Local::open(data, true)?.bus().clone())
}

/// For commands that only read: a directory without a store is "not
/// found" (exit 4), and nothing is created.
pub(crate) fn open_existing(data: &Path) -> CliResult<MissionBus> {
    Ok(Local::open(data, false)?.bus().clone())
}

pub(crate) fn print_event(out: &mut dyn Write, e: &Event) -> CliResult {
    writeln!(out, "{}", mission_bus::document::event_to_json(e))?;
    Ok(())
}

fn type_names() -> String {
    EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn parse_uuid(flag: &str, s: &str) -> CliResult<Uuid> {
    Uuid::parse_str(s)
        .map_err(|e| Failure::usage(format!("invalid {flag}: '{s}' is not a UUID ({e})")))
}

/// A `--profiles` file the user named must exist (unlike the library's
/// `MissionConfig::load`, where a missing file means defaults).
fn load_profiles(path: &Path) -> CliResult<MissionConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("--profiles {}: cannot read: {e}", path.display())))?;
    Ok(MissionConfig::from_json_str(&text, Some(path))?)
}

fn append(
    backend: &dyn Fn() -> CliResult<Box<dyn Backend>>,
    out: &mut dyn Write,
    mission: &str,
    sender: &str,
    action: Action,
    guard: &Guard,
) -> CliResult {
    let opts = AppendOptions {
        expected_sequence: guard.expect_seq,
        event_id: guard
            .event_id
            .as_deref()
            .map(|s| parse_uuid("--event-id", s))
            .transpose()?,
        meta: meta_args(guard)?,
    };
    let e = backend()?.append(mission, sender, action, &opts)?;
    writeln!(out, "{e}")?;
    Ok(())
}

/// `--correlation-id`, `--causation-id` and `--attr KEY=VALUE` as metadata.
pub(crate) fn meta_args(guard: &Guard) -> CliResult<EventMeta> {
    let mut meta = EventMeta {
        correlation_id: guard.correlation_id.clone(),
        causation_id: guard.causation_id.clone(),
        ..EventMeta::default()
    };
    for a in &guard.attributes {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--attr '{a}' is not KEY=VALUE")))?;
        meta.attributes.insert(k.to_string(), v.to_string());
    }
    Ok(meta)
}

fn read_input(file: &Path) -> CliResult<String> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::other(format!("reading stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(file)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
    }
    Ok(text)
}

/// Parse an import. Without `--format`, a single JSON object that is not an
/// event is a seed document; anything else is read as JSON Lines.
/// The log to import, and what a lenient seed parse filled in.
fn parse_log(
    text: &str,
    format: Option<Format>,
    file: &Path,
) -> CliResult<(Vec<Event>, Vec<String>)> {
    let name = file.display();
    let whole = || -> CliResult<Value> {
        serde_json::from_str(text)
            .map_err(|e| Failure::usage(format!("{name}: not a JSON seed document: {e}")))
    };
    let seed = |doc: &Value| -> CliResult<(Vec<Event>, Vec<String>)> {
        let s = document::log_from_seed_lenient(doc)?;
        Ok((s.events, s.filled))
    };
    let (events, filled) = match format {
        Some(Format::Seed) => seed(&whole()?)?,
        Some(Format::Jsonl) => (document::log_from_jsonl(text)?, Vec::new()),
        None => match serde_json::from_str::<Value>(text) {
            Ok(doc @ Value::Object(_))
                if doc.get("event_type").is_none() && doc.get("eventType").is_none() =>
            {
                seed(&doc)?
            }
            _ => (document::log_from_jsonl(text)?, Vec::new()),
        },
    };
    if events.is_empty() {
        return Err(Failure::usage(format!("{name}: no events to import")));
    }
    Ok((events, filled))
}

fn mission_of(e: &Event) -> String {
    e.body.created_mission().unwrap_or_default().to_string()
}

fn verify(backend: &dyn Backend, out: &mut dyn Write, mission: Option<&str>) -> CliResult {
    let mut failed = Vec::new();
    backend.verify(mission, &mut |report| {
        writeln!(out, "{report}")?;
        let m = report["mission_id"].as_str().unwrap_or("");
        if let Some(p) = report["problems"].as_array().and_then(|p| p.first()) {
            let what = p["problem"].as_str().unwrap_or("");
            let p = match p["sequence"].as_u64() {
                Some(s) => format!("sequence {s}: {what}"),
                None => what.to_string(),
            };
            failed.push(format!("mission '{m}' failed verification: {p}"));
        } else if let Some(e) = report["error"].as_str() {
            // A mission the store could not read at all.
            failed.push(format!("mission '{m}' failed verification: {e}"));
        } else if let Some(p) = report["problem"].as_str() {
            // The commit ledger itself is damaged.
            failed.push(p.to_string());
        } else if report["intact"] == false {
            failed.push(format!("mission '{m}' failed verification"));
        }
        Ok(())
    })?;
    // The reports are the auditor's answer even when verification fails:
    // get them out before the failure discards unflushed output.
    out.flush()?;
    match failed.len() {
        0 => Ok(()),
        1 => Err(Failure::new(EXIT_INTEGRITY, failed.remove(0))),
        n => Err(Failure::new(
            EXIT_INTEGRITY,
            format!("{} (and {} more problems)", failed.remove(0), n - 1),
        )),
    }
}
