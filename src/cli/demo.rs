//! `mission-bus demo`: one mission told as a story on the real store.
//!
//! A lead and two agents publish, one agent checkpoints and hands off, the
//! receiving agent is started as a fresh process that knows only its name
//! and resumes from the resume packet alone, and an auditor replays and
//! verifies the log. Every step is a real, durable write to the data dir.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use mission_bus::{EventBody, Json, MissionBus, NewMission};
use serde_json::{json, Value};

use super::commands::open;
use super::{CliResult, Failure};

const LEAD: &str = "lena";
const WRITER: &str = "ada";
const RECEIVER: &str = "bob";
const AUDITOR: &str = "audra";

/// Run the demo on the store at `data`.
pub(crate) fn run(data: &Path, out: &mut dyn Write) -> CliResult {
    let bus = open(data)?;
    let mission = create(&bus)?;
    let m = mission.as_str();
    writeln!(
        out,
        "mission-bus demo: a lead, two agents and an auditor share one durable mission log in {}\n",
        data.display()
    )?;
    writeln!(
        out,
        "1. The lead creates mission {m} and registers the team (role decides what each may do)"
    )?;
    for (name, role) in [(WRITER, "write"), (RECEIVER, "write"), (AUDITOR, "audit")] {
        bus.join(m, name, role, json!({"demo": true}).into())?;
    }
    let state = bus.state(m)?;
    let team: Vec<String> = state
        .participants
        .values()
        .map(|p| format!("{} ({})", p.name, p.role))
        .collect();
    writeln!(
        out,
        "   #1-#{} created, joined: {}\n",
        state.head,
        team.join(", ")
    )?;

    writeln!(
        out,
        "2. Agents publish messages; each is on disk before the call returns"
    )?;
    for (who, topic, payload) in [
        (
            LEAD,
            "plan",
            json!({"goal": "port the parser to Rust", "owner": WRITER}),
        ),
        (WRITER, "status", json!({"step": "lexer", "done": 0.8})),
        (
            RECEIVER,
            "status",
            json!({"step": "test corpus", "done": 1.0}),
        ),
    ] {
        let e = bus.publish(m, who, topic, payload.into())?;
        writeln!(out, "   {}", describe(&e))?;
    }

    writeln!(
        out,
        "\n3. {WRITER} saves a checkpoint and hands the work to {RECEIVER}"
    )?;
    let cp = bus.create_checkpoint(
        m,
        WRITER,
        "lexer done; parser next",
        json!({"next": "parser", "tokens": 42, "branch": "port-lexer"}).into(),
        vec!["src/lexer.rs".into(), "tests/lexer.rs".into()],
    )?;
    writeln!(out, "   {}", describe(&cp))?;
    let handoff = bus.handoff(
        m,
        WRITER,
        RECEIVER,
        cp.id,
        "lexer is green, the parser is yours",
    )?;
    writeln!(out, "   {}", describe(&handoff))?;

    // sled lets one process hold a data dir: release it for bob's process.
    bus.close();
    drop(bus);
    out.flush()?;
    writeln!(
        out,
        "\n4. {WRITER}'s process is gone. {RECEIVER} starts FRESH, knowing only the mission and his name:"
    )?;
    writeln!(out, "   $ mission-bus resume {m} --for {RECEIVER}")?;
    let packet = resume_in_fresh_process(data, m)?;
    let field = |path: &[&str]| -> Value {
        path.iter()
            .fold(&packet, |v, k| v.get(*k).unwrap_or(&Value::Null))
            .clone()
    };
    writeln!(
        out,
        "   packet: from {} with note {}; checkpoint #{} {}",
        field(&["sender"]).as_str().unwrap_or("?"),
        field(&["handoff_note"]),
        field(&["checkpoint", "sequence"]),
        field(&["checkpoint", "summary"]),
    )?;
    writeln!(
        out,
        "           state {}, artifacts {}",
        field(&["checkpoint", "state"]),
        field(&["checkpoint", "artifacts"])
    )?;
    writeln!(
        out,
        "           stream_length {}, participants {}",
        field(&["stream_length"]),
        packet
            .get("participants")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    )?;

    let bus = open(data)?;
    let next = field(&["checkpoint", "state", "next"]);
    let e = bus.publish(
        m,
        RECEIVER,
        "status",
        Json::from_value(&json!({
            "step": next,
            "resumed_from": field(&["checkpoint", "checkpoint_id"]),
        })),
    )?;
    writeln!(out, "   {RECEIVER} carries on: {}", describe(&e))?;

    writeln!(
        out,
        "\n5. Roles are enforced: {AUDITOR} (audit) tries to publish"
    )?;
    let head = bus.state(m)?.head;
    match bus.publish(m, AUDITOR, "status", json!({"sneaky": true}).into()) {
        Err(err) => writeln!(out, "   refused: {err}")?,
        Ok(_) => return Err(Failure::other("demo: the auditor was allowed to publish")),
    }
    let after = bus.state(m)?.head;
    if after != head {
        return Err(Failure::other("demo: a refused write moved the head"));
    }
    writeln!(out, "   nothing was written: head is still #{after}")?;

    writeln!(
        out,
        "\n6. {AUDITOR} audits: replays the whole stream and verifies the hash chain"
    )?;
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut replayed = 0;
    for e in bus.replay(m, AUDITOR, 1)? {
        *counts.entry(e?.event_type().as_str()).or_default() += 1;
        replayed += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    writeln!(out, "   replayed {replayed} events: {}", counts.join(", "))?;
    let rebuilt = bus.rebuild_state(m)? == *bus.state(m)?;
    writeln!(
        out,
        "   state rebuilt from the log matches the live state: {}",
        if rebuilt { "yes" } else { "NO" }
    )?;
    let report = bus.verify(m)?;
    match report.first_problem() {
        None => writeln!(
            out,
            "   verify: intact ({} records, head hash {}...)",
            report.events_checked,
            &report.head_hash[..report.head_hash.len().min(16)]
        )?,
        Some(p) => {
            return Err(Failure::new(
                super::EXIT_INTEGRITY,
                format!("mission '{m}' failed verification: {p}"),
            ))
        }
    }

    writeln!(out, "\nEverything above is in {}. Try:", data.display())?;
    let data_flag = if data == Path::new("mission-bus-data") {
        String::new()
    } else {
        format!("--data {} ", data.display())
    };
    for cmd in [
        format!("replay {m} --as {AUDITOR} --type handoff"),
        format!("resume {m} --for {RECEIVER}"),
        format!("export {m} --format seed"),
        "verify".to_string(),
    ] {
        writeln!(out, "   mission-bus {data_flag}{cmd}")?;
    }
    Ok(())
}

/// Create the demo mission under a fresh, time-based id (so the demo can
/// run again on the same store).
fn create(bus: &MissionBus) -> CliResult<String> {
    let base = chrono::Utc::now().format("demo-%Y%m%d-%H%M%S").to_string();
    for attempt in 1..100 {
        let id = if attempt == 1 {
            base.clone()
        } else {
            format!("{base}-{attempt}")
        };
        let created =
            bus.create_mission(NewMission::new(&id, "Port the parser to Rust").lead(LEAD));
        match created {
            Ok(_) => return Ok(id),
            Err(mission_bus::Error::MissionExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Failure::other(format!(
        "demo: could not find a free mission id after {base}-99"
    )))
}

/// Run `mission-bus resume MISSION --for bob` as a new process, as a
/// restarted agent would, and return the packet it printed.
fn resume_in_fresh_process(data: &Path, mission: &str) -> CliResult<Value> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::other(format!("demo: cannot find my own executable: {e}")))?;
    let output = Command::new(&exe)
        .arg("--data")
        .arg(data)
        .args(["resume", mission, "--for", RECEIVER])
        .output()
        .map_err(|e| Failure::other(format!("demo: cannot start {}: {e}", exe.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Failure::other(format!(
            "demo: the fresh resume process failed ({}): {}",
            output.status,
            stderr.trim().trim_start_matches("error: ")
        )));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| Failure::other(format!("demo: the resume process printed no packet: {e}")))
}

/// One short line per event: `#7 ada message status {...}`.
fn describe(e: &mission_bus::Event) -> String {
    let what = match &e.body {
        EventBody::Message { topic, payload } => format!("message [{topic}] {payload}"),
        EventBody::Checkpoint { summary, .. } => {
            format!("checkpoint \"{summary}\" (checkpoint_id {})", e.id)
        }
        EventBody::Handoff {
            recipient, note, ..
        } => format!("handoff -> {recipient} \"{note}\" (handoff_id {})", e.id),
        other => format!("{other:?}"),
    };
    format!("#{:<2} {:<5} {what}", e.sequence, e.sender)
}
