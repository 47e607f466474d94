//! Bad input, table-driven: every row is one malformed or forbidden request.
//!
//! For each row the test checks the exact error variant (and its
//! [`ErrorKind`]) AND that nothing changed: the bus's view (every mission's
//! summary, state and full log) is compared before and after, and, after
//! closing the bus, a BLAKE3 fingerprint of every key and value of every
//! sled tree is compared with the one taken before the table ran. Each row
//! opens the store afresh, so a row that wrote anything is caught at that row.

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mission_bus::document::{event_from_json, log_from_jsonl, log_from_seed};
use mission_bus::{
    Action, AppendOptions, Error, ErrorKind, Event, EventBody, Json, MissionBus, MissionConfig,
    MissionState, MissionSummary, NewMission, OPERATOR,
};
use serde_json::json;
use uuid::Uuid;

/// The payload limit the table runs with (bytes of canonical JSON).
const LIMIT: usize = 256;

fn open(path: &Path) -> MissionBus {
    util::builder_at(path)
        .max_payload_bytes(LIMIT)
        .open()
        .expect("open")
}

/// Ids created by the fixture, for rows that need real ones.
struct Env {
    path: PathBuf,
    bad_config_file: PathBuf,
    /// A checkpoint of mission `alpha`, one of `beta`.
    cp_alpha: Uuid,
    cp_beta: Uuid,
    /// A message and a handoff of `alpha`.
    msg_alpha: Uuid,
    handoff_alpha: Uuid,
    /// The whole log of `alpha`, for import rows.
    alpha_log: Vec<Event>,
}

/// `alpha`: lead `lead`, writers `ada` and `bob`, reader `rex`, a message,
/// a checkpoint and a handoff to `bob`. `beta`: lead `lead`, writer `ada`, a
/// checkpoint.
fn fixture(dir: &Path) -> Env {
    let path = dir.join("data");
    let bus = open(&path);
    bus.create_mission(NewMission::new("alpha", "Alpha").lead("lead"))
        .unwrap();
    bus.join("alpha", "ada", "write", Json::empty_object())
        .unwrap();
    bus.join("alpha", "bob", "write", Json::empty_object())
        .unwrap();
    bus.join("alpha", "rex", "read", Json::empty_object())
        .unwrap();
    let msg = bus
        .publish("alpha", "ada", "status", json!({"ok": true}).into())
        .unwrap();
    let cp = bus
        .create_checkpoint("alpha", "ada", "cp", json!({"n": 1}).into(), vec![])
        .unwrap();
    let h = bus.handoff("alpha", "ada", "bob", cp.id, "go").unwrap();
    bus.create_mission(NewMission::new("beta", "Beta").lead("lead"))
        .unwrap();
    bus.join("beta", "ada", "write", Json::empty_object())
        .unwrap();
    let cp_beta = bus
        .create_checkpoint("beta", "ada", "cp", json!({}).into(), vec![])
        .unwrap();
    let alpha_log = bus
        .events("alpha", 1, u64::MAX)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    bus.close();
    let bad_config_file = dir.join("bad-profiles.json");
    std::fs::write(
        &bad_config_file,
        r#"{"roles": {"lead": ["publish", "teleport"]}}"#,
    )
    .unwrap();
    Env {
        path,
        bad_config_file,
        cp_alpha: cp.id,
        cp_beta: cp_beta.id,
        msg_alpha: msg.id,
        handoff_alpha: h.id,
        alpha_log,
    }
}

// ----- fingerprints -----------------------------------------------------------

/// What a user of the bus can see: every mission's summary, state and log.
type BusView = Vec<(MissionSummary, MissionState, Vec<Event>)>;

fn bus_view(bus: &MissionBus) -> BusView {
    bus.missions()
        .unwrap()
        .into_iter()
        .map(|s| {
            let state = (*bus.state(&s.mission_id).unwrap()).clone();
            let log = bus
                .events(&s.mission_id, 1, u64::MAX)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            (s, state, log)
        })
        .collect()
}

fn heads(view: &BusView) -> Vec<(&str, u64)> {
    view.iter()
        .map(|(s, ..)| (s.mission_id.as_str(), s.head_sequence))
        .collect()
}

/// BLAKE3 over every key and value of every sled tree, per tree. Only on a
/// closed store (sled locks the directory).
fn store_fingerprint(path: &Path) -> BTreeMap<String, (usize, String)> {
    if util::postgres_mode() {
        let mut out = BTreeMap::new();
        for table in [
            "mb_missions",
            "mb_events",
            "mb_event_ids",
            "mb_checkpoints",
            "mb_handoffs",
            "mb_snapshots",
            "mb_tokens",
            "mb_consumers",
        ] {
            let got = util::pg_sql(
                path,
                &format!(
                    "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' \
                     ORDER BY t::text)), '') FROM {table} t"
                ),
            );
            let (n, h) = got.split_once(' ').unwrap_or((got.as_str(), ""));
            out.insert(table.to_string(), (n.parse().unwrap(), h.to_string()));
        }
        return out;
    }
    let db = sled::open(path).unwrap();
    let mut out = BTreeMap::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        let mut h = blake3::Hasher::new();
        let mut n = 0;
        for item in tree.iter() {
            let (k, v) = item.unwrap();
            h.update(&(k.len() as u64).to_be_bytes());
            h.update(&k);
            h.update(&(v.len() as u64).to_be_bytes());
            h.update(&v);
            n += 1;
        }
        out.insert(
            String::from_utf8_lossy(&name).into_owned(),
            (n, h.finalize().to_hex().to_string()),
        );
    }
    out
}

// ----- the table ----------------------------------------------------------------

struct Row {
    name: &'static str,
    kind: ErrorKind,
    run: fn(&MissionBus, &Env) -> Result<(), Error>,
    expect: fn(&Error, &Env) -> bool,
}

/// `row!(name, Kind, |bus, env| call, Pattern [if guard])`
macro_rules! row {
    ($name:expr, $kind:ident, |$bus:ident, $env:ident| $body:expr, $pat:pat $(if $guard:expr)?) => {
        Row {
            name: $name,
            kind: ErrorKind::$kind,
            run: |$bus, $env| {
                let _ = (&$bus, &$env);
                $body.map(|_| ())
            },
            expect: |e, $env| {
                let _ = &$env;
                matches!(e, $pat $(if $guard)?)
            },
        }
    };
}

fn publish_as(
    bus: &MissionBus,
    mission: &str,
    sender: &str,
    payload: Json,
) -> Result<Event, Error> {
    bus.publish(mission, sender, "t", payload)
}

fn big_string(n: usize) -> String {
    "x".repeat(n)
}

fn named(n: &str) -> NewMission {
    NewMission::new(n, "t").lead("lead")
}

/// A handoff event as JSON (the prototype's field names), with `id` and
/// `checkpoint` as given.
fn handoff_json(id: &str, checkpoint: &str) -> serde_json::Value {
    json!({
        "event_type": "handoff", "handoff_id": id, "sender": "ada", "sequence": 3,
        "timestamp": "2026-01-01T00:00:00Z", "recipient": "bob",
        "checkpoint_id": checkpoint, "note": "n"
    })
}

/// `alpha`'s log renamed to `mission`, with fresh ids.
fn fresh_log(env: &Env, mission: &str) -> Vec<Event> {
    env.alpha_log
        .iter()
        .cloned()
        .map(|mut e| {
            e.id = Uuid::now_v7();
            if let EventBody::MissionCreated { mission_id, .. } = &mut e.body {
                *mission_id = mission.to_string();
            }
            e
        })
        .collect()
}

fn table() -> Vec<Row> {
    vec![
        // --- sizes (the payload limit is enforced before sled sees the bytes)
        row!("payload over the limit", InvalidInput,
            |bus, env| publish_as(bus, "alpha", "ada", json!(big_string(LIMIT)).into()),
            Error::TooLarge { field, size, limit: LIMIT } if field == "payload" && *size == LIMIT + 2),
        row!("payload one byte over the limit", InvalidInput,
            |bus, env| publish_as(bus, "alpha", "ada", json!(big_string(LIMIT - 1)).into()),
            Error::TooLarge { size, .. } if *size == LIMIT + 1),
        row!("checkpoint state over the limit", InvalidInput,
            |bus, env| bus.create_checkpoint("alpha", "ada", "s", json!({"k": big_string(LIMIT)}).into(), vec![]),
            Error::TooLarge { field, .. } if field == "state"),
        row!("join metadata over the limit", InvalidInput,
            |bus, env| bus.join("alpha", "zed", "write", json!([big_string(LIMIT)]).into()),
            Error::TooLarge { field, .. } if field == "metadata"),
        row!("title over 16 KiB", InvalidInput,
            |bus, env| bus.create_mission(NewMission::new("gamma", big_string(16 * 1024 + 1))),
            Error::TooLarge { field, .. } if field == "title"),
        row!("summary over 16 KiB", InvalidInput,
            |bus, env| bus.create_checkpoint("alpha", "ada", &big_string(16 * 1024 + 1), Json::null(), vec![]),
            Error::TooLarge { field, .. } if field == "summary"),
        row!("handoff note over 16 KiB", InvalidInput,
            |bus, env| bus.handoff("alpha", "ada", "bob", env.cp_alpha, &big_string(16 * 1024 + 1)),
            Error::TooLarge { field, .. } if field == "note"),
        row!("257 artifacts", InvalidInput,
            |bus, env| bus.create_checkpoint("alpha", "ada", "s", Json::null(), vec!["a".into(); 257]),
            Error::InvalidInput { field, .. } if field == "artifacts"),
        row!("empty artifact path", InvalidInput,
            |bus, env| bus.create_checkpoint("alpha", "ada", "s", Json::null(), vec!["ok".into(), String::new()]),
            Error::InvalidInput { field, .. } if field == "artifacts[1]"),
        row!("control character in an artifact path", InvalidInput,
            |bus, env| bus.create_checkpoint("alpha", "ada", "s", Json::null(), vec!["a\u{0}b".into()]),
            Error::InvalidInput { field, reason } if field == "artifacts[0]" && reason.contains("U+0000")),
        row!("control character in a summary", InvalidInput,
            |bus, env| bus.create_checkpoint("alpha", "ada", "a\u{1b}[2J", Json::null(), vec![]),
            Error::InvalidInput { field, .. } if field == "summary"),
        row!("empty topic", InvalidInput,
            |bus, env| bus.publish("alpha", "ada", "", Json::null()),
            Error::InvalidInput { field, .. } if field == "topic"),
        row!("topic over 256 bytes", InvalidInput,
            |bus, env| bus.publish("alpha", "ada", &big_string(257), Json::null()),
            Error::InvalidInput { field, .. } if field == "topic"),
        // --- JSON
        row!("non-JSON payload", InvalidInput,
            |bus, env| Json::parse("payload", "{not json").and_then(|p| publish_as(bus, "alpha", "ada", p)),
            Error::InvalidInput { field, reason } if field == "payload" && reason.contains("not valid JSON")),
        row!("payload with trailing garbage", InvalidInput,
            |bus, env| Json::parse("payload", "{} {}").and_then(|p| publish_as(bus, "alpha", "ada", p)),
            Error::InvalidInput { field, .. } if field == "payload"),
        row!("empty payload text", InvalidInput,
            |bus, env| Json::parse("payload", "").and_then(|p| publish_as(bus, "alpha", "ada", p)),
            Error::InvalidInput { field, .. } if field == "payload"),
        row!("non-JSON checkpoint state", InvalidInput,
            |bus, env| Json::parse("state", "[1, 2").and_then(|s| bus.create_checkpoint("alpha", "ada", "s", s, vec![])),
            Error::InvalidInput { field, .. } if field == "state"),
        row!("non-JSON metadata (NaN)", InvalidInput,
            |bus, env| Json::parse("metadata", "NaN").and_then(|m| bus.join("alpha", "zed", "write", m)),
            Error::InvalidInput { field, .. } if field == "metadata"),
        // --- mission ids
        row!("empty mission id", InvalidInput,
            |bus, env| bus.create_mission(named("")),
            Error::InvalidInput { field, reason } if field == "mission id" && reason == "is empty"),
        row!("mission id of 129 bytes", InvalidInput,
            |bus, env| bus.create_mission(named(&big_string(129))),
            Error::InvalidInput { field, reason } if field == "mission id" && reason.contains("longer than 128")),
        row!("mission id of 43 three-byte characters (129 bytes)", InvalidInput,
            |bus, env| bus.create_mission(named(&"\u{20ac}".repeat(43))),
            Error::InvalidInput { field, .. } if field == "mission id"),
        row!("NUL in a mission id", InvalidInput,
            |bus, env| bus.create_mission(named("a\u{0}b")),
            Error::InvalidInput { reason, .. } if reason.contains("control character U+0000")),
        row!("newline in a mission id", InvalidInput,
            |bus, env| bus.create_mission(named("a\nb")),
            Error::InvalidInput { reason, .. } if reason.contains("U+000A")),
        row!("escape sequence in a mission id", InvalidInput,
            |bus, env| bus.create_mission(named("\u{1b}[31mred")),
            Error::InvalidInput { reason, .. } if reason.contains("U+001B")),
        row!("DEL in a mission id", InvalidInput,
            |bus, env| bus.create_mission(named("a\u{7f}")),
            Error::InvalidInput { reason, .. } if reason.contains("U+007F")),
        row!("C1 control in a mission id", InvalidInput,
            |bus, env| bus.create_mission(named("a\u{85}")),
            Error::InvalidInput { reason, .. } if reason.contains("U+0085")),
        row!("mission id with surrounding whitespace", InvalidInput,
            |bus, env| bus.create_mission(named(" alpha")),
            Error::InvalidInput { reason, .. } if reason.contains("whitespace")),
        row!("mission id that already exists", Conflict,
            |bus, env| bus.create_mission(named("alpha")),
            Error::MissionExists { mission } if mission == "alpha"),
        // --- participant names
        row!("empty participant name", InvalidInput,
            |bus, env| bus.join("alpha", "", "write", Json::null()),
            Error::InvalidInput { field, .. } if field == "participant name"),
        row!("participant name of 129 bytes", InvalidInput,
            |bus, env| bus.join("alpha", &big_string(129), "write", Json::null()),
            Error::InvalidInput { field, .. } if field == "participant name"),
        row!("tab in a participant name", InvalidInput,
            |bus, env| bus.join("alpha", "a\tb", "write", Json::null()),
            Error::InvalidInput { reason, .. } if reason.contains("U+0009")),
        row!("participant name starting with '@'", InvalidInput,
            |bus, env| bus.join("alpha", "@admin", "write", Json::null()),
            Error::InvalidInput { reason, .. } if reason.contains("'@'")),
        // --- the name grammar (docs/api.md, "Names"), where names enter
        row!("slash in a mission id", InvalidInput,
            |bus, env| bus.create_mission(named("a/b")),
            Error::InvalidInput { field, reason } if field == "mission id" && reason.contains("'/'")),
        row!("mission id '..'", InvalidInput,
            |bus, env| bus.create_mission(named("..")),
            Error::InvalidInput { field, reason } if field == "mission id" && reason.contains("starts with '.'")),
        row!("'..' inside a mission id", InvalidInput,
            |bus, env| bus.create_mission(named("a..b")),
            Error::InvalidInput { reason, .. } if reason.contains("'..'")),
        row!("mission id starting with '-'", InvalidInput,
            |bus, env| bus.create_mission(named("-rf")),
            Error::InvalidInput { reason, .. } if reason.contains("starts with '-'")),
        row!("right-to-left override in a mission id", InvalidInput,
            |bus, env| bus.create_mission(named("abc\u{202e}gpj")),
            Error::InvalidInput { reason, .. } if reason.contains("U+202E")),
        row!("slash in a participant name", InvalidInput,
            |bus, env| bus.join("alpha", "../etc", "write", Json::null()),
            Error::InvalidInput { field, .. } if field == "participant name"),
        row!("participant name starting with '-'", InvalidInput,
            |bus, env| bus.join("alpha", "-x", "write", Json::null()),
            Error::InvalidInput { field, reason } if field == "participant name" && reason.contains("'-'")),
        row!("right-to-left override in a participant name", InvalidInput,
            |bus, env| bus.join("alpha", "eve\u{202e}", "write", Json::null()),
            Error::InvalidInput { reason, .. } if reason.contains("U+202E")),
        row!("lead name with a slash", InvalidInput,
            |bus, env| bus.create_mission(NewMission::new("gamma", "t").lead("a/b")),
            Error::InvalidInput { field, .. } if field == "lead"),
        row!("metadata that is an array", InvalidInput,
            |bus, env| bus.join("alpha", "newbie", "write", json!([1, 2]).into()),
            Error::InvalidInput { field, reason } if field == "metadata" && reason.contains("JSON object")),
        row!("metadata that is a string", InvalidInput,
            |bus, env| bus.join("alpha", "newbie", "write", json!("x").into()),
            Error::InvalidInput { field, .. } if field == "metadata"),
        row!("nil UUID as an event id", InvalidInput,
            |bus, env| bus.append("alpha", "ada", mission_bus::Action::Publish { topic: "t".into(), payload: Json::null() },
                &mission_bus::AppendOptions { expected_sequence: None, event_id: Some(uuid::Uuid::nil()) }).map(|_| ()),
            Error::InvalidInput { field, reason } if field == "event id" && reason.contains("nil")),
        row!("lead name starting with '@'", InvalidInput,
            |bus, env| bus.create_mission(NewMission::new("gamma", "t").lead("@lead")),
            Error::InvalidInput { field, .. } if field == "lead"),
        row!("sender starting with '@' (not the operator)", InvalidInput,
            |bus, env| publish_as(bus, "alpha", "@root", Json::null()),
            Error::InvalidInput { field, .. } if field == "sender"),
        row!("empty sender", InvalidInput,
            |bus, env| publish_as(bus, "alpha", "", Json::null()),
            Error::InvalidInput { field, .. } if field == "sender"),
        row!("recipient is the operator", InvalidInput,
            |bus, env| bus.handoff("alpha", "ada", OPERATOR, env.cp_alpha, "n"),
            Error::InvalidInput { field, .. } if field == "recipient"),
        row!("empty role", InvalidInput,
            |bus, env| bus.join("alpha", "zed", "", Json::null()),
            Error::InvalidInput { field, .. } if field == "role"),
        // --- roles and permissions
        row!("join with an unknown role", InvalidInput,
            |bus, env| bus.join("alpha", "zed", "admin", Json::null()),
            Error::UnknownRole { mission, role } if mission == "alpha" && role == "admin"),
        row!("change to an unknown role", InvalidInput,
            |bus, env| bus.append("alpha", "lead", Action::ChangeRole { name: "ada".into(), role: "root".into() }, &AppendOptions::default()),
            Error::UnknownRole { role, .. } if role == "root"),
        row!("change the role of a stranger", NotFound,
            |bus, env| bus.append("alpha", "lead", Action::ChangeRole { name: "zed".into(), role: "read".into() }, &AppendOptions::default()),
            Error::ParticipantNotFound { name, .. } if name == "zed"),
        row!("writer changes a role", PermissionDenied,
            |bus, env| bus.append("alpha", "ada", Action::ChangeRole { name: "rex".into(), role: "lead".into() }, &AppendOptions::default()),
            Error::PermissionDenied { sender, .. } if sender == "ada"),
        row!("reader publishes", PermissionDenied,
            |bus, env| publish_as(bus, "alpha", "rex", Json::null()),
            Error::PermissionDenied { sender, role, capability, .. } if sender == "rex" && role == "read" && capability == "publish"),
        row!("reader checkpoints", PermissionDenied,
            |bus, env| bus.create_checkpoint("alpha", "rex", "s", Json::null(), vec![]),
            Error::PermissionDenied { capability, .. } if capability == "checkpoint"),
        row!("stranger publishes", PermissionDenied,
            |bus, env| publish_as(bus, "alpha", "mallory", Json::null()),
            Error::NotAParticipant { sender, .. } if sender == "mallory"),
        row!("participant of another mission publishes", PermissionDenied,
            |bus, env| publish_as(bus, "beta", "bob", Json::null()),
            Error::NotAParticipant { mission, .. } if mission == "beta"),
        row!(
            "stranger replays",
            PermissionDenied,
            |bus, env| bus.replay("alpha", "mallory", 1),
            Error::NotAParticipant { .. }
        ),
        row!("join a participant twice", Conflict,
            |bus, env| bus.join("alpha", "ada", "write", Json::null()),
            Error::ParticipantExists { name, .. } if name == "ada"),
        // --- config
        row!("unknown capability in config", InvalidInput,
            |bus, env| MissionConfig::from_json_str(r#"{"roles": {"lead": ["publish", "fly"]}}"#, None)
                .and_then(|c| bus.create_mission(named("gamma").config(c))),
            Error::Config { reason, path: None } if reason.contains("unknown capability 'fly'")),
        row!("unknown capability in a config file", InvalidInput,
            |bus, env| MissionConfig::load(&env.bad_config_file)
                .and_then(|c| bus.create_mission(named("gamma").config(c))),
            Error::Config { reason, path: Some(p) } if reason.contains("teleport") && p.ends_with("bad-profiles.json")),
        row!("unknown key in config", InvalidInput,
            |bus, env| MissionConfig::from_json_str(r#"{"rolez": {}}"#, None).map(|_| ()),
            Error::Config { reason, .. } if reason.contains("unknown key 'rolez'")),
        row!("capabilities not a list", InvalidInput,
            |bus, env| MissionConfig::from_json_str(r#"{"roles": {"lead": "publish"}}"#, None).map(|_| ()),
            Error::Config { reason, .. } if reason.contains("role 'lead'")),
        row!("config is not JSON", InvalidInput,
            |bus, env| MissionConfig::from_json_str("roles: [lead]", None).map(|_| ()),
            Error::Config { reason, .. } if reason.contains("not valid JSON")),
        row!("config is a JSON array", InvalidInput,
            |bus, env| MissionConfig::from_json_str("[]", None).map(|_| ()),
            Error::Config { reason, .. } if reason.contains("expected a JSON object")),
        row!("isolation profile without a level", InvalidInput,
            |bus, env| MissionConfig::from_json_str(r#"{"isolation_profiles": [{"name": "p", "label": "l", "mechanism": "m"}]}"#, None).map(|_| ()),
            Error::Config { reason, .. } if reason.contains("missing 'level'")),
        row!("duplicate isolation profile", InvalidInput,
            |bus, env| MissionConfig::from_json_str(r#"{"isolation_profiles": [{"name": "p", "label": "l", "level": 1, "mechanism": "m"}, {"name": "p", "label": "l", "level": 2, "mechanism": "m"}]}"#, None).map(|_| ()),
            Error::Config { reason, .. } if reason.contains("duplicate profile name")),
        row!("mission using a role its config lacks", InvalidInput,
            |bus, env| MissionConfig::from_json_str(r#"{"roles": {"boss": ["publish"]}}"#, None)
                .and_then(|c| bus.create_mission(named("gamma").config(c))),
            Error::UnknownRole { role, .. } if role == "lead"),
        // --- ids that do not exist or belong elsewhere
        row!("handoff to an unknown checkpoint", NotFound,
            |bus, env| bus.handoff("alpha", "ada", "bob", Uuid::now_v7(), "n"),
            Error::CheckpointNotFound { mission, .. } if mission == "alpha"),
        row!("handoff naming another mission's checkpoint", NotFound,
            |bus, env| bus.handoff("alpha", "ada", "bob", env.cp_beta, "n"),
            Error::CheckpointNotFound { mission, checkpoint_id } if mission == "alpha" && *checkpoint_id == env.cp_beta),
        row!(
            "handoff naming a message, not a checkpoint",
            NotFound,
            |bus, env| bus.handoff("alpha", "ada", "bob", env.msg_alpha, "n"),
            Error::CheckpointNotFound { .. }
        ),
        row!(
            "handoff naming a handoff, not a checkpoint",
            NotFound,
            |bus, env| bus.handoff("alpha", "ada", "bob", env.handoff_alpha, "n"),
            Error::CheckpointNotFound { .. }
        ),
        row!("handoff to a stranger", NotFound,
            |bus, env| bus.handoff("alpha", "ada", "zed", env.cp_alpha, "n"),
            Error::ParticipantNotFound { name, .. } if name == "zed"),
        row!(
            "resume an unknown handoff",
            NotFound,
            |bus, env| bus.resume_packet(&Uuid::now_v7()),
            Error::HandoffNotFound { .. }
        ),
        row!(
            "resume from a checkpoint id",
            NotFound,
            |bus, env| bus.resume_packet(&env.cp_alpha),
            Error::HandoffNotFound { .. }
        ),
        row!(
            "latest handoff for someone who has none",
            NotFound,
            |bus, env| bus.latest_resume_packet("alpha", "rex"),
            Error::HandoffNotFound { .. }
        ),
        row!(
            "accept an unknown handoff",
            NotFound,
            |bus, env| bus.accept_handoff("alpha", "bob", Uuid::now_v7(), 1000),
            Error::HandoffNotFound { .. }
        ),
        row!(
            "accept a handoff addressed to someone else",
            PermissionDenied,
            |bus, env| bus.accept_handoff("alpha", "ada", env.handoff_alpha, 1000),
            Error::PermissionDenied { .. }
        ),
        row!(
            "accept with a zero lease",
            InvalidInput,
            |bus, env| bus.accept_handoff("alpha", "bob", env.handoff_alpha, 0),
            Error::InvalidInput { .. }
        ),
        row!(
            "heartbeat on a handoff not accepted",
            Conflict,
            |bus, env| bus.heartbeat("alpha", "bob", env.handoff_alpha, 1000),
            Error::HandoffState { .. }
        ),
        row!(
            "handoff of another mission, accepted here",
            NotFound,
            |bus, env| bus.accept_handoff("beta", "ada", env.handoff_alpha, 1000),
            Error::HandoffNotFound { .. }
        ),
        row!(
            "remove by a writer",
            PermissionDenied,
            |bus, env| bus.remove_participant("alpha", "ada", "bob"),
            Error::PermissionDenied { .. }
        ),
        row!(
            "remove an unknown participant",
            NotFound,
            |bus, env| bus.remove_participant("alpha", "lead", "ghost"),
            Error::ParticipantNotFound { .. }
        ),
        row!(
            "ack past the head",
            InvalidInput,
            |bus, env| bus.ack("alpha", "bob", "main", 99),
            Error::InvalidInput { .. }
        ),
        row!(
            "ack with an empty consumer name",
            InvalidInput,
            |bus, env| bus.ack("alpha", "bob", "", 1),
            Error::InvalidInput { .. }
        ),
        row!(
            "unknown checkpoint lookup",
            NotFound,
            |bus, env| bus.checkpoint(&Uuid::nil()),
            Error::CheckpointNotFound { .. }
        ),
        row!(
            "checkpoint lookup by a handoff id",
            NotFound,
            |bus, env| bus.checkpoint(&env.handoff_alpha),
            Error::CheckpointNotFound { .. }
        ),
        // --- malformed uuids (the JSON edges)
        row!("malformed handoff_id", InvalidInput,
            |bus, env| event_from_json(&handoff_json("not-a-uuid", "0190c0de-0000-7000-8000-000000000000"), "events[0]", None),
            Error::InvalidInput { field, reason } if field == "events[0]: handoff_id" && reason.contains("not a UUID")),
        row!("malformed checkpoint_id in a handoff", InvalidInput,
            |bus, env| event_from_json(&handoff_json("0190c0de-0000-7000-8000-000000000001", "1234"), "events[0]", None),
            Error::InvalidInput { field, .. } if field == "events[0]: checkpoint_id"),
        row!("uuid with one digit too many", InvalidInput,
            |bus, env| event_from_json(&handoff_json("0190c0de-0000-7000-8000-0000000000011", "0190c0de-0000-7000-8000-000000000000"), "e", None),
            Error::InvalidInput { field, .. } if field == "e: handoff_id"),
        row!("uuid that is a number", InvalidInput,
            |bus, env| event_from_json(&json!({"event_type": "message", "message_id": 7, "sender": "ada", "sequence": 1, "timestamp": "2026-01-01T00:00:00Z", "topic": "t"}), "e", None),
            Error::InvalidInput { field, reason } if field == "e: message_id" && reason == "must be a string"),
        row!("malformed message_id in a JSONL import", InvalidInput,
            |bus, env| log_from_jsonl(r#"{"event_type": "message", "message_id": "zzz", "sender": "ada", "sequence": 1, "timestamp": "2026-01-01T00:00:00Z", "topic": "t"}"#)
                .and_then(|log| bus.import_log(log, |_| {})),
            Error::InvalidInput { field, .. } if field == "line 1: message_id"),
        row!("malformed checkpoint_id in a seed document", InvalidInput,
            |bus, env| log_from_seed(&json!({"mission_id": "gamma", "events": [handoff_json("0190c0de-0000-7000-8000-000000000001", "x")]}))
                .and_then(|log| bus.import_log(log, |_| {})),
            Error::InvalidInput { field, .. } if field == "seed document: events[0]: checkpoint_id"),
        // --- missions that do not exist
        row!("publish to a missing mission", NotFound,
            |bus, env| publish_as(bus, "nope", "ada", Json::null()),
            Error::MissionNotFound { mission } if mission == "nope"),
        row!(
            "join a missing mission",
            NotFound,
            |bus, env| bus.join("nope", "ada", "write", Json::null()),
            Error::MissionNotFound { .. }
        ),
        row!(
            "batch into a missing mission",
            NotFound,
            |bus, env| bus.append_batch(
                "nope",
                vec![(
                    "ada".into(),
                    Action::Publish {
                        topic: "t".into(),
                        payload: Json::null()
                    }
                )],
                None
            ),
            Error::MissionNotFound { .. }
        ),
        row!(
            "append with expectation 0 to a missing mission",
            NotFound,
            |bus, env| bus.append(
                "nope",
                "ada",
                Action::Publish {
                    topic: "t".into(),
                    payload: Json::null()
                },
                &AppendOptions {
                    expected_sequence: Some(0),
                    event_id: None
                }
            ),
            Error::MissionNotFound { .. }
        ),
        row!(
            "verify a missing mission",
            NotFound,
            |bus, env| bus.verify("nope"),
            Error::MissionNotFound { .. }
        ),
        row!(
            "replay a missing mission",
            NotFound,
            |bus, env| bus.events("nope", 1, 10),
            Error::MissionNotFound { .. }
        ),
        row!(
            "mission ids are case-sensitive",
            NotFound,
            |bus, env| bus.state("ALPHA"),
            Error::MissionNotFound { .. }
        ),
        row!("event sequence 0", InvalidInput,
            |bus, env| bus.event("alpha", 0),
            Error::InvalidInput { field, .. } if field == "sequence"),
        row!("event past the head", InvalidInput,
            |bus, env| bus.event("alpha", 9),
            Error::InvalidInput { reason, .. } if reason.contains("head is 8")),
        // --- conflicts
        row!(
            "stale expected sequence",
            Conflict,
            |bus, env| bus.append(
                "alpha",
                "ada",
                Action::Publish {
                    topic: "t".into(),
                    payload: Json::null()
                },
                &AppendOptions {
                    expected_sequence: Some(3),
                    event_id: None
                }
            ),
            Error::SequenceConflict {
                expected: 3,
                head: 8,
                ..
            }
        ),
        row!(
            "event id reused with other content",
            Conflict,
            |bus, env| bus.append(
                "alpha",
                "ada",
                Action::Publish {
                    topic: "other".into(),
                    payload: Json::null()
                },
                &AppendOptions {
                    expected_sequence: None,
                    event_id: Some(env.msg_alpha)
                }
            ),
            Error::EventIdConflict { sequence: 6, .. }
        ),
        row!(
            "second open of the data dir",
            Busy,
            |bus, env| util::bus_at(&env.path),
            Error::DataDirInUse { .. }
        ),
        // --- batches are all or nothing
        row!("empty batch", InvalidInput,
            |bus, env| bus.append_batch("alpha", vec![], None),
            Error::InvalidInput { field, .. } if field == "batch"),
        row!("batch whose second item is forbidden", PermissionDenied,
            |bus, env| bus.append_batch("alpha", vec![
                ("ada".into(), Action::Publish { topic: "t".into(), payload: Json::null() }),
                ("rex".into(), Action::Publish { topic: "t".into(), payload: Json::null() }),
            ], None),
            Error::PermissionDenied { sender, .. } if sender == "rex"),
        row!(
            "batch whose last item is oversized",
            InvalidInput,
            |bus, env| bus.append_batch(
                "alpha",
                vec![
                    (
                        "ada".into(),
                        Action::Publish {
                            topic: "t".into(),
                            payload: Json::null()
                        }
                    ),
                    (
                        "ada".into(),
                        Action::Publish {
                            topic: "t".into(),
                            payload: json!(big_string(LIMIT)).into()
                        }
                    ),
                ],
                None
            ),
            Error::TooLarge { .. }
        ),
        // --- imports are validated completely before anything is written
        row!("import an empty log", InvalidInput,
            |bus, env| bus.import_log(vec![], |_| {}),
            Error::InvalidInput { field, .. } if field == "import"),
        row!("import a log that does not start with mission_created", InvalidInput,
            |bus, env| bus.import_log(fresh_log(env, "gamma")[1..].to_vec(), |_| {}),
            Error::InvalidInput { reason, .. } if reason.contains("not mission_created")),
        row!("import a log with a gap", InvalidInput,
            |bus, env| {
                let mut log = fresh_log(env, "gamma");
                log.remove(3);
                bus.import_log(log, |_| {})
            },
            Error::InvalidInput { reason, .. } if reason.contains("without gaps")),
        row!(
            "import over an existing mission",
            Conflict,
            |bus, env| bus.import_log(fresh_log(env, "alpha"), |_| {}),
            Error::MissionExists { .. }
        ),
        // (An id stored in another mission is no conflict: ids are scoped
        // per mission, see tests/event_ids.rs.)
        row!("import of a mission id with a slash", InvalidInput,
            |bus, env| bus.import_log(fresh_log(env, "a/b"), |_| {}),
            Error::InvalidInput { field, .. } if field == "mission id"),
        row!("import of a participant name with a right-to-left override", InvalidInput,
            |bus, env| {
                let mut log = fresh_log(env, "gamma");
                let joined = log.iter_mut().find(|e| matches!(e.body, EventBody::ParticipantJoined { .. })).unwrap();
                if let EventBody::ParticipantJoined { name, .. } = &mut joined.body {
                    name.push('\u{202e}');
                }
                bus.import_log(log, |_| {})
            },
            Error::InvalidInput { field, reason } if field.starts_with("participant name (sequence") && reason.contains("U+202E")),
        row!("import of participant metadata that is an array", InvalidInput,
            |bus, env| {
                let mut log = fresh_log(env, "gamma");
                let joined = log.iter_mut().find(|e| matches!(e.body, EventBody::ParticipantJoined { .. })).unwrap();
                if let EventBody::ParticipantJoined { metadata, .. } = &mut joined.body {
                    *metadata = json!([1, 2]).into();
                }
                bus.import_log(log, |_| {})
            },
            Error::InvalidInput { field, .. } if field.starts_with("metadata (sequence")),
        row!("import with the nil UUID as an event id", InvalidInput,
            |bus, env| {
                let mut log = fresh_log(env, "gamma");
                log[4].id = Uuid::nil();
                bus.import_log(log, |_| {})
            },
            Error::InvalidInput { field, .. } if field == "event id (sequence 5)"),
        row!("import with an id twice", InvalidInput,
            |bus, env| {
                let mut log = fresh_log(env, "gamma");
                log[5].id = log[4].id;
                bus.import_log(log, |_| {})
            },
            Error::InvalidInput { reason, .. } if reason.contains("appears twice")),
        row!("import whose 8th event names an unknown checkpoint", NotFound,
            |bus, env| {
                let mut log = fresh_log(env, "gamma");
                if let EventBody::Handoff { checkpoint_id, .. } = &mut log[7].body {
                    *checkpoint_id = Uuid::now_v7();
                }
                bus.import_log(log, |_| {})
            },
            Error::CheckpointNotFound { mission, .. } if mission == "gamma"),
        row!("import with an oversized payload at sequence 5", InvalidInput,
            |bus, env| {
                let mut log = fresh_log(env, "gamma");
                log[4].body = EventBody::Message { topic: "t".into(), payload: json!(big_string(LIMIT)).into() };
                bus.import_log(log, |_| {})
            },
            Error::TooLarge { field, .. } if field == "payload (sequence 5)"),
        row!("import with a control character in a sender", InvalidInput,
            |bus, env| {
                let mut log = fresh_log(env, "gamma");
                log[4].sender = "ad\u{0}a".into();
                bus.import_log(log, |_| {})
            },
            Error::InvalidInput { field, .. } if field == "sender (sequence 5)"),
    ]
}

#[test]
fn every_bad_input_is_a_typed_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = fixture(dir.path());
    let store_before = store_fingerprint(&env.path);
    let view_before = {
        let bus = open(&env.path);
        let v = bus_view(&bus);
        bus.close();
        v
    };
    assert_eq!(view_before.len(), 2);
    assert_eq!(view_before[0].0.head_sequence, 8);
    let rows = table();
    let mut names = std::collections::HashSet::new();
    for row in &rows {
        assert!(names.insert(row.name), "duplicate row name {}", row.name);
        if util::postgres_mode() && row.name == "second open of the data dir" {
            continue; // several processes share a database by design
        }
        let bus = open(&env.path);
        let err = match (row.run)(&bus, &env) {
            Ok(()) => panic!("row '{}': accepted", row.name),
            Err(e) => e,
        };
        assert!(
            (row.expect)(&err, &env),
            "row '{}': unexpected error {err:?}",
            row.name
        );
        assert_eq!(err.kind(), row.kind, "row '{}': {err:?}", row.name);
        assert!(!err.to_string().is_empty());
        let view = bus_view(&bus);
        assert!(
            view == view_before,
            "row '{}': the bus's view changed; heads before {:?}, after {:?}",
            row.name,
            heads(&view_before),
            heads(&view)
        );
        bus.close();
        drop(bus);
        assert_eq!(
            store_fingerprint(&env.path),
            store_before,
            "row '{}': a sled tree changed",
            row.name
        );
    }
    eprintln!("{} bad-input rows checked", rows.len());
}

/// The limits are where they say they are: the largest accepted value of
/// each is accepted (so the rows above fail for the right reason).
#[test]
fn values_at_the_limits_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    let id128 = "m".repeat(128);
    bus.create_mission(NewMission::new(id128.as_str(), "t").lead("l".repeat(128)))
        .unwrap();
    let lead = "l".repeat(128);
    // A JSON string of LIMIT - 2 characters is exactly LIMIT bytes.
    let e = bus
        .publish(
            &id128,
            &lead,
            &"t".repeat(256),
            json!(big_string(LIMIT - 2)).into(),
        )
        .unwrap();
    assert_eq!(e.sequence, 3);
    bus.create_checkpoint(
        &id128,
        &lead,
        &big_string(16 * 1024),
        json!(big_string(LIMIT - 2)).into(),
        vec!["a".into(); 256],
    )
    .unwrap();
    bus.join(&id128, "ünï", "write", Json::null()).unwrap();
    assert!(bus.verify(&id128).unwrap().is_intact());
}

#[test]
fn payload_limit_outside_its_range_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [0usize, 100 * 1024 + 1, usize::MAX] {
        let err = util::builder_at(dir.path())
            .max_payload_bytes(bad)
            .open()
            .err()
            .unwrap_or_else(|| panic!("max_payload_bytes({bad}) accepted"));
        assert!(
            matches!(&err, Error::InvalidInput { field, .. } if field == "max_payload_bytes"),
            "{err:?}"
        );
    }
    // Refused before the directory was even created.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Every test above, again on PostgreSQL (skipped, saying so, without it).
#[test]
fn postgres_half() {
    util::postgres_half();
}
