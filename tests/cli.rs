//! The `mission-bus` command, run as a user would: every call is its own
//! process against a temp data dir, so everything asserted after a write
//! has also survived that process exiting.
//!
//! tests/cli_remote.rs runs these same cases with `--server` against a
//! `mission-bus serve` on the data dir (`Dir::new` there starts one) with
//! the admin token, and tests/cli_participant.rs with each `--as`
//! participant's own token, so the modes are held to the same outputs and
//! exit codes. Cases about the files themselves use `Dir::local`.

pub(crate) mod util;

use serde_json::{json, Value};
use util::Dir;

const M: &str = "mission-883";

/// A mission with a lead (lena), two writers (ada, bob), a reader (rita)
/// and an auditor (audra): heads at sequence 6.
fn team(dir: &Dir) {
    dir.mb(&["create", M, "--title", "Port the parser", "--lead", "lena"])
        .ok();
    for (name, role) in [
        ("ada", "write"),
        ("bob", "write"),
        ("rita", "read"),
        ("audra", "audit"),
    ] {
        dir.mb(&["join", M, name, "--role", role]).json();
    }
}

fn head(dir: &Dir, mission: &str) -> u64 {
    dir.mb(&["missions"])
        .json_lines()
        .into_iter()
        .find(|m| m["mission_id"] == mission)
        .unwrap_or_else(|| panic!("mission {mission} not listed"))["head_sequence"]
        .as_u64()
        .unwrap()
}

fn checkpoint(dir: &Dir, who: &str) -> Value {
    dir.mb(&[
        "checkpoint",
        M,
        "--as",
        who,
        "--summary",
        "lexer done",
        "--state",
        r#"{"next":"parser"}"#,
        "--artifact",
        "src/lexer.rs",
        "--artifact",
        "tests/lexer.rs",
    ])
    .json()
}

fn id(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
        .to_string()
}

#[test]
fn help_and_version_exit_zero() {
    let dir = Dir::local();
    let help = dir.mb(&["--help"]).ok();
    for cmd in [
        "create",
        "join",
        "publish",
        "checkpoint",
        "handoff",
        "resume",
        "replay",
        "export",
        "import",
        "missions",
        "verify",
        "serve",
        "demo",
    ] {
        assert!(help.contains(cmd), "--help does not list {cmd}");
    }
    assert!(dir
        .mb(&["--version"])
        .ok()
        .starts_with(concat!("mission-bus ", env!("CARGO_PKG_VERSION"))));
    // Help never opens (or creates) a data dir.
    assert!(!dir.data().exists());
}

#[test]
fn create_prints_its_events_and_uses_the_default_data_dir() {
    let dir = Dir::local();
    let out = dir
        .mb(&["create", M, "--title", "Port the parser", "--lead", "lena"])
        .json_lines();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0]["event_type"], "mission_created");
    assert_eq!(out[0]["sequence"], 1);
    assert_eq!(out[0]["mission_id"], M);
    assert_eq!(out[0]["title"], "Port the parser");
    assert_eq!(out[0]["config"]["roles"]["lead"][0], "publish");
    assert_eq!(out[1]["event_type"], "participant_joined");
    assert_eq!(out[1]["sequence"], 2);
    assert_eq!(out[1]["participant"], "lena");
    assert_eq!(out[1]["role"], "lead");
    assert!(dir.data().is_dir(), "./mission-bus-data was not created");

    // $MISSION_BUS_DATA, then --data, override the default.
    let env_dir = dir.path().join("from-env");
    dir.mb(&["create", "m-env", "--title", "t", "--lead", "l"])
        .env("MISSION_BUS_DATA", &env_dir)
        .ok();
    let listed = dir
        .mb(&["missions"])
        .env("MISSION_BUS_DATA", &env_dir)
        .json_lines();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["mission_id"], "m-env");
    // --data wins over the environment: that directory holds no store, and
    // a read-only command creates none (exit 4, naming the path).
    let flag_dir = dir.path().join("from-flag");
    let err = dir
        .mb(&["--data", flag_dir.to_str().unwrap(), "missions"])
        .env("MISSION_BUS_DATA", &env_dir)
        .fails(4);
    assert!(err.contains("from-flag"), "{err}");
    assert!(!flag_dir.exists());
}

#[test]
fn missions_lists_counts_and_heads_sorted() {
    let dir = Dir::new();
    // No store yet (a server always has one: it creates it).
    if !dir.is_remote() {
        dir.mb(&["missions"]).fails(4);
    }
    dir.mb(&["create", "m-b", "--title", "Second", "--lead", "lena"])
        .ok();
    dir.mb(&[
        "publish",
        "m-b",
        "--as",
        "lena",
        "--topic",
        "t",
        "--payload",
        "1",
    ])
    .json();
    dir.mb(&["create", "m-a", "--title", "First", "--lead", "lena"])
        .ok();
    let listed = dir.mb(&["missions"]).json_lines();
    assert_eq!(
        listed,
        vec![
            json!({"mission_id": "m-a", "title": "First", "events": 2, "head_sequence": 2}),
            json!({"mission_id": "m-b", "title": "Second", "events": 3, "head_sequence": 3}),
        ]
    );
}

/// The main job, each step a separate process: publish, checkpoint,
/// handoff, resume from the packet alone, replay as an auditor.
#[test]
fn multi_process_story() {
    let dir = Dir::new();
    team(&dir);
    let msg = dir
        .mb(&[
            "publish",
            M,
            "--as",
            "ada",
            "--topic",
            "status",
            "--payload",
            r#"{"step": 1, "ok": true}"#,
        ])
        .json();
    assert_eq!(msg["event_type"], "message");
    assert_eq!(msg["sequence"], 7);
    assert_eq!(msg["sender"], "ada");
    assert_eq!(msg["topic"], "status");
    assert_eq!(msg["payload"], json!({"step": 1, "ok": true}));
    uuid::Uuid::parse_str(&id(&msg, "message_id")).unwrap();
    assert!(id(&msg, "timestamp").ends_with('Z'));

    let cp = checkpoint(&dir, "ada");
    assert_eq!(cp["event_type"], "checkpoint");
    assert_eq!(cp["sequence"], 8);
    assert_eq!(cp["summary"], "lexer done");
    assert_eq!(cp["state"], json!({"next": "parser"}));
    assert_eq!(cp["artifacts"], json!(["src/lexer.rs", "tests/lexer.rs"]));
    let cp_id = id(&cp, "checkpoint_id");

    let ho = dir
        .mb(&[
            "handoff",
            M,
            "--as",
            "ada",
            "--to",
            "bob",
            "--checkpoint",
            &cp_id,
            "--note",
            "parser is yours",
        ])
        .json();
    assert_eq!(ho["event_type"], "handoff");
    assert_eq!(ho["sequence"], 9);
    assert_eq!(ho["recipient"], "bob");
    assert_eq!(ho["checkpoint_id"], cp_id.as_str());
    assert_eq!(ho["note"], "parser is yours");
    let ho_id = id(&ho, "handoff_id");

    // bob's fresh process knows only its name.
    let packet = dir.mb(&["resume", M, "--for", "bob"]).json();
    assert_eq!(packet["mission_id"], M);
    assert_eq!(packet["title"], "Port the parser");
    assert_eq!(packet["recipient"], "bob");
    assert_eq!(packet["sender"], "ada");
    assert_eq!(packet["handoff_id"], ho_id.as_str());
    assert_eq!(packet["handoff_note"], "parser is yours");
    assert_eq!(packet["checkpoint"], cp);
    assert_eq!(packet["stream_length"], 3);
    assert_eq!(packet["head_sequence"], 9);
    assert_eq!(packet["isolation_profiles"].as_array().unwrap().len(), 3);
    let participants = packet["participants"].as_object().unwrap();
    assert_eq!(participants.len(), 5);
    assert_eq!(
        packet["participants"]["rita"],
        json!({"name": "rita", "role": "read", "metadata": {}})
    );
    // The same packet by handoff id.
    assert_eq!(dir.mb(&["resume", M, "--handoff", &ho_id]).json(), packet);

    // bob carries on; the auditor replays everything in order.
    dir.mb(&[
        "publish",
        M,
        "--as",
        "bob",
        "--topic",
        "status",
        "--payload",
        r#""resumed""#,
    ])
    .json();
    let all = dir.mb(&["replay", M, "--as", "audra"]).json_lines();
    let seqs: Vec<u64> = all
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    assert_eq!(all[6], msg);
    assert_eq!(all[7], cp);
    assert_eq!(all[8], ho);
    assert_eq!(all[9]["payload"], "resumed");

    // --from/--to bound the range, --type filters (repeatable).
    let window = dir
        .mb(&["replay", M, "--as", "rita", "--from", "7", "--to", "8"])
        .json_lines();
    assert_eq!(window, vec![msg.clone(), cp.clone()]);
    let typed = dir
        .mb(&[
            "replay",
            M,
            "--as",
            "rita",
            "--type",
            "handoff",
            "--type",
            "checkpoint",
        ])
        .json_lines();
    assert_eq!(typed, vec![cp.clone(), ho.clone()]);
    let joined = dir
        .mb(&[
            "replay",
            M,
            "--as",
            "rita",
            "--type",
            "participant_joined",
            "--to",
            "3",
        ])
        .json_lines();
    assert_eq!(joined.len(), 2);
    assert_eq!(joined[1]["participant"], "ada");
    // Past the head is simply empty.
    assert_eq!(
        dir.mb(&["replay", M, "--as", "rita", "--from", "11"]).ok(),
        ""
    );
    assert_eq!(head(&dir, M), 10);
    dir.mb(&["verify", M]).json();
}

#[test]
fn usage_errors_exit_2_and_name_the_flag() {
    let dir = Dir::new();
    team(&dir);
    let before = head(&dir, M);
    for (args, needle) in [
        (vec!["create", "m-x", "--title", "t"], "--lead"),
        (vec!["frobnicate"], "frobnicate"),
        (
            vec![
                "publish",
                M,
                "--as",
                "ada",
                "--topic",
                "t",
                "--payload",
                "{nope",
            ],
            "--payload",
        ),
        (
            vec![
                "checkpoint",
                M,
                "--as",
                "ada",
                "--summary",
                "s",
                "--state",
                "[1,",
            ],
            "--state",
        ),
        (
            vec!["join", M, "zed", "--role", "write", "--metadata", "{"],
            "--metadata",
        ),
        (vec!["join", M, "zed", "--role", "admiral"], "admiral"),
        (vec!["join", M, "@root", "--role", "write"], "@root"),
        (
            vec![
                "handoff",
                M,
                "--as",
                "ada",
                "--to",
                "bob",
                "--checkpoint",
                "not-a-uuid",
            ],
            "--checkpoint",
        ),
        (
            vec![
                "publish",
                M,
                "--as",
                "ada",
                "--topic",
                "t",
                "--payload",
                "1",
                "--event-id",
                "x",
            ],
            "--event-id",
        ),
        (
            vec!["publish", M, "--as", "ada", "--topic", "", "--payload", "1"],
            "topic",
        ),
        (vec!["resume", M], "--for"),
        (
            vec!["resume", M, "--for", "bob", "--handoff", "x"],
            "--handoff",
        ),
        (vec!["resume", M, "--handoff", "x"], "--handoff"),
        (
            vec!["replay", M, "--as", "rita", "--type", "gossip"],
            "gossip",
        ),
        (vec!["replay", M, "--as", "rita", "--from", "0"], "--from"),
        (
            vec!["replay", M, "--as", "rita", "--from", "5", "--to", "2"],
            "--to",
        ),
        (vec!["export", M, "--format", "xml"], "xml"),
        (vec!["import", "no-such-file.json"], "no-such-file.json"),
        (vec!["serve", "--listen", "not-an-address"], "--listen"),
        (
            vec![
                "create",
                "m-x",
                "--title",
                "t",
                "--lead",
                "l",
                "--profiles",
                "missing.json",
            ],
            "missing.json",
        ),
    ] {
        let err = dir.mb(&args).fails(2);
        assert!(
            err.contains(needle),
            "{args:?}: '{err}' does not mention {needle}"
        );
    }
    // Malformed profiles: named by file, and by what is wrong in it.
    let bad = dir.create("bad.json", r#"{"roles": {"lead": ["publish", "fly"]}}"#);
    let err = dir
        .mb(&[
            "create",
            "m-x",
            "--title",
            "t",
            "--lead",
            "l",
            "--profiles",
            bad.to_str().unwrap(),
        ])
        .fails(2);
    assert!(err.contains("bad.json") && err.contains("fly"), "{err}");
    dir.create("garbage.jsonl", "this is not json\n");
    let err = dir.mb(&["import", "garbage.jsonl"]).fails(2);
    assert!(err.contains("line 1"), "{err}");
    // Oversized payloads are refused before they reach the store.
    let big = format!("\"{}\"", "x".repeat(70 * 1024));
    let err = dir
        .mb(&[
            "publish",
            M,
            "--as",
            "ada",
            "--topic",
            "t",
            "--payload",
            &big,
        ])
        .fails(2);
    assert!(err.contains("payload") && err.contains("limit"), "{err}");
    // Nothing above wrote anything.
    assert_eq!(head(&dir, M), before);
    assert_eq!(dir.mb(&["missions"]).json_lines().len(), 1);
}

#[test]
fn profiles_file_defines_the_roles() {
    let dir = Dir::new();
    let profiles = dir.create(
        "profiles.json",
        r#"{"roles": {"lead": ["publish", "checkpoint", "handoff", "read", "audit"],
                      "scribe": ["publish"]},
            "isolation_profiles": [{"name": "box", "label": "Box", "level": 2,
                                    "mechanism": "mount_namespace"}]}"#,
    );
    let created = dir
        .mb(&[
            "create",
            M,
            "--title",
            "t",
            "--lead",
            "lena",
            "--profiles",
            "profiles.json",
        ])
        .json_lines();
    assert_eq!(
        created[0]["config"]["roles"]["scribe"],
        json!(["publish"]),
        "{}",
        profiles.display()
    );
    assert_eq!(created[0]["config"]["isolation_profiles"][0]["name"], "box");
    dir.mb(&["join", M, "sam", "--role", "scribe"]).json();
    dir.mb(&[
        "publish",
        M,
        "--as",
        "sam",
        "--topic",
        "t",
        "--payload",
        "1",
    ])
    .json();
    // "write" is not defined by this file.
    let err = dir.mb(&["join", M, "ada", "--role", "write"]).fails(2);
    assert!(err.contains("'write'"), "{err}");
    // scribe has no read.
    dir.mb(&["replay", M, "--as", "sam"]).fails(3);
}

#[test]
fn permission_denied_exits_3_and_writes_nothing() {
    let dir = Dir::new();
    team(&dir);
    let cp = checkpoint(&dir, "ada");
    let cp_id = id(&cp, "checkpoint_id");
    let before = head(&dir, M);
    for (args, needle) in [
        (
            vec![
                "publish",
                M,
                "--as",
                "rita",
                "--topic",
                "t",
                "--payload",
                "1",
            ],
            "publish",
        ),
        (
            vec![
                "checkpoint",
                M,
                "--as",
                "audra",
                "--summary",
                "s",
                "--state",
                "{}",
            ],
            "checkpoint",
        ),
        (
            vec![
                "handoff",
                M,
                "--as",
                "rita",
                "--to",
                "bob",
                "--checkpoint",
                &cp_id,
            ],
            "handoff",
        ),
        (
            vec![
                "publish",
                M,
                "--as",
                "mallory",
                "--topic",
                "t",
                "--payload",
                "1",
            ],
            "mallory",
        ),
        (vec!["replay", M, "--as", "mallory"], "mallory"),
    ] {
        let err = dir.mb(&args).fails(3);
        assert!(err.contains("permission denied"), "{err}");
        assert!(
            err.contains(needle),
            "{args:?}: '{err}' does not mention {needle}"
        );
    }
    assert_eq!(head(&dir, M), before);
}

#[test]
fn not_found_exits_4() {
    let dir = Dir::new();
    team(&dir);
    let cp = checkpoint(&dir, "ada");
    let cp_id = id(&cp, "checkpoint_id");
    let unknown = "01890000-0000-7000-8000-000000000000";
    let before = head(&dir, M);
    for (args, needle) in [
        (
            vec![
                "publish",
                "m-none",
                "--as",
                "ada",
                "--topic",
                "t",
                "--payload",
                "1",
            ],
            "m-none",
        ),
        (vec!["join", "m-none", "ada", "--role", "write"], "m-none"),
        (vec!["replay", "m-none", "--as", "ada"], "m-none"),
        (vec!["export", "m-none"], "m-none"),
        (vec!["verify", "m-none"], "m-none"),
        (vec!["resume", "m-none", "--for", "bob"], "m-none"),
        (
            vec![
                "handoff",
                M,
                "--as",
                "ada",
                "--to",
                "bob",
                "--checkpoint",
                unknown,
            ],
            unknown,
        ),
        (
            vec![
                "handoff",
                M,
                "--as",
                "ada",
                "--to",
                "nobody",
                "--checkpoint",
                &cp_id,
            ],
            "nobody",
        ),
        (vec!["resume", M, "--for", "bob"], "bob"),
        (vec!["resume", M, "--handoff", unknown], unknown),
    ] {
        let err = dir.mb(&args).fails(4);
        assert!(
            err.contains(needle),
            "{args:?}: '{err}' does not mention {needle}"
        );
    }
    assert_eq!(head(&dir, M), before);

    // A handoff of another mission is not found in this one.
    dir.mb(&["create", "m-other", "--title", "t", "--lead", "olga"])
        .ok();
    dir.mb(&["join", "m-other", "oz", "--role", "write"]).json();
    let other_cp = dir
        .mb(&[
            "checkpoint",
            "m-other",
            "--as",
            "olga",
            "--summary",
            "s",
            "--state",
            "{}",
        ])
        .json();
    let other_ho = dir
        .mb(&[
            "handoff",
            "m-other",
            "--as",
            "olga",
            "--to",
            "oz",
            "--checkpoint",
            &id(&other_cp, "checkpoint_id"),
        ])
        .json();
    let err = dir
        .mb(&["resume", M, "--handoff", &id(&other_ho, "handoff_id")])
        .fails(4);
    // The operator on the files may be told where it is; a server never
    // names another mission in an error.
    assert_eq!(err.contains("m-other"), !dir.is_remote(), "{err}");
    // Nor can a handoff here point at that mission's checkpoint.
    dir.mb(&[
        "handoff",
        M,
        "--as",
        "ada",
        "--to",
        "bob",
        "--checkpoint",
        &id(&other_cp, "checkpoint_id"),
    ])
    .fails(4);
    assert_eq!(head(&dir, M), before);
}

#[test]
fn conflicts_exit_5() {
    let dir = Dir::new();
    team(&dir);
    let err = dir
        .mb(&["create", M, "--title", "again", "--lead", "lena"])
        .fails(5);
    assert!(err.contains("already exists"), "{err}");
    let err = dir.mb(&["join", M, "ada", "--role", "read"]).fails(5);
    assert!(err.contains("'ada'"), "{err}");

    // --expect-seq: the head the caller expects before its event.
    let err = dir
        .mb(&[
            "publish",
            M,
            "--as",
            "ada",
            "--topic",
            "t",
            "--payload",
            "1",
            "--expect-seq",
            "5",
        ])
        .fails(5);
    assert!(
        err.contains("sequence 5 expected") && err.contains("head is 6"),
        "{err}"
    );
    assert_eq!(head(&dir, M), 6);
    let e = dir
        .mb(&[
            "publish",
            M,
            "--as",
            "ada",
            "--topic",
            "t",
            "--payload",
            "1",
            "--expect-seq",
            "6",
        ])
        .json();
    assert_eq!(e["sequence"], 7);
    let cp = dir
        .mb(&[
            "checkpoint",
            M,
            "--as",
            "ada",
            "--summary",
            "s",
            "--state",
            "{}",
            "--expect-seq",
            "7",
        ])
        .json();
    assert_eq!(cp["sequence"], 8);
    dir.mb(&[
        "checkpoint",
        M,
        "--as",
        "ada",
        "--summary",
        "s",
        "--state",
        "{}",
        "--expect-seq",
        "7",
    ])
    .fails(5);
    let cp_id = id(&cp, "checkpoint_id");
    dir.mb(&[
        "handoff",
        M,
        "--as",
        "ada",
        "--to",
        "bob",
        "--checkpoint",
        &cp_id,
        "--expect-seq",
        "99",
    ])
    .fails(5);
    let ho = dir
        .mb(&[
            "handoff",
            M,
            "--as",
            "ada",
            "--to",
            "bob",
            "--checkpoint",
            &cp_id,
            "--expect-seq",
            "8",
        ])
        .json();
    assert_eq!(ho["sequence"], 9);
    assert_eq!(head(&dir, M), 9);
}

#[test]
fn event_id_retry_returns_the_stored_event() {
    let dir = Dir::new();
    team(&dir);
    let eid = uuid::Uuid::now_v7().to_string();
    let publish = |payload: &str| {
        dir.mb(&[
            "publish",
            M,
            "--as",
            "ada",
            "--topic",
            "status",
            "--payload",
            payload,
            "--event-id",
            &eid,
        ])
    };
    let first = publish(r#"{"step":1}"#).json();
    assert_eq!(first["message_id"], eid.as_str());
    assert_eq!(first["sequence"], 7);
    // Something else lands in between; the retry still gets the original.
    dir.mb(&[
        "publish",
        M,
        "--as",
        "bob",
        "--topic",
        "t",
        "--payload",
        "2",
    ])
    .json();
    // A retry (same id, same content, even if the JSON is spelled differently).
    let retry = publish(r#"{ "step" : 1 }"#).json();
    assert_eq!(retry, first);
    assert_eq!(head(&dir, M), 8);
    // Same id, other content: a conflict naming the stored sequence.
    let err = publish(r#"{"step":2}"#).fails(5);
    assert!(err.contains(&eid) && err.contains("sequence 7"), "{err}");
    // A checkpoint retried with its id is not duplicated either.
    let cid = uuid::Uuid::now_v7().to_string();
    let args = [
        "checkpoint",
        M,
        "--as",
        "ada",
        "--summary",
        "s",
        "--state",
        "{}",
        "--event-id",
        &cid,
    ];
    let cp = dir.mb(&args).json();
    assert_eq!(dir.mb(&args).json(), cp);
    assert_eq!(cp["checkpoint_id"], cid.as_str());
    assert_eq!(head(&dir, M), 9);
}

#[test]
fn data_dir_held_by_another_process_exits_1() {
    let dir = Dir::local();
    dir.mb(&["create", M, "--title", "t", "--lead", "lena"])
        .ok();
    let held = mission_bus::MissionBus::open(dir.data()).expect("open in the test process");
    for args in [
        vec!["missions"],
        vec![
            "publish",
            M,
            "--as",
            "lena",
            "--topic",
            "t",
            "--payload",
            "1",
        ],
        vec!["verify"],
    ] {
        let err = dir.mb(&args).fails(1);
        assert!(err.contains("in use"), "{err}");
        assert!(err.contains("mission-bus-data"), "{err}");
        assert!(err.contains("serve"), "{err}");
    }
    held.close();
    drop(held);
    // Released: the same command now works.
    assert_eq!(head(&dir, M), 2);
}

/// A document in the Python prototype's shape imports and resumes.
#[test]
fn prototype_seed_document_imports_and_resumes() {
    let dir = Dir::new();
    let doc = json!({
        "mission_id": "mission-proto",
        "title": "Prototype mission",
        "config": {
            "roles": {
                "lead": ["publish", "checkpoint", "handoff", "read", "audit", "configure_isolation"],
                "write": ["publish", "checkpoint", "handoff", "read"],
                "read": ["read"]
            },
            "isolation_profiles": [
                {"name": "level1-directory", "label": "Level 1", "level": 1,
                 "mechanism": "directory_workspace"}
            ]
        },
        "participants": {
            "lead": {"name": "lead", "role": "lead", "metadata": {"model": "big"}},
            "agent-a": {"name": "agent-a", "role": "write", "metadata": {}},
            "agent-b": {"name": "agent-b", "role": "write", "metadata": {"gpu": false}}
        },
        "events": [
            {"event_type": "message", "message_id": "7d9f1c2e-4b1a-4c3e-9a55-0e1f2a3b4c5d",
             "sender": "lead", "sequence": 1, "timestamp": "2024-05-01T12:00:00.123456",
             "topic": "plan", "payload": {"goal": "port"}},
            {"event_type": "checkpoint", "checkpoint_id": "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d",
             "sender": "agent-a", "sequence": 2, "timestamp": "2024-05-01T12:05:00+00:00",
             "summary": "lexer done", "state": {"next": "parser", "files": 3},
             "artifacts": ["lexer.py"]},
            {"event_type": "handoff", "handoff_id": "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
             "sender": "agent-a", "sequence": 3, "timestamp": "2024-05-01T12:06:00Z",
             "recipient": "agent-b", "checkpoint_id": "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d",
             "note": "your turn"}
        ]
    });
    dir.create("seed.json", &serde_json::to_string_pretty(&doc).unwrap());
    // Detected as seed from its content.
    let imported = dir.mb(&["import", "seed.json"]).json();
    assert_eq!(
        imported,
        json!({"mission_id": "mission-proto", "imported": 7, "head_sequence": 7, "filled": []})
    );
    let packet = dir
        .mb(&["resume", "mission-proto", "--for", "agent-b"])
        .json();
    assert_eq!(packet["mission_id"], "mission-proto");
    assert_eq!(packet["title"], "Prototype mission");
    assert_eq!(packet["recipient"], "agent-b");
    assert_eq!(packet["sender"], "agent-a");
    assert_eq!(packet["handoff_note"], "your turn");
    assert_eq!(packet["handoff_id"], "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b");
    let cp = &packet["checkpoint"];
    assert_eq!(cp["checkpoint_id"], "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d");
    assert_eq!(cp["summary"], "lexer done");
    assert_eq!(cp["state"], json!({"next": "parser", "files": 3}));
    assert_eq!(cp["artifacts"], json!(["lexer.py"]));
    assert_eq!(cp["timestamp"], "2024-05-01T12:05:00.000000Z");
    assert_eq!(packet["stream_length"], 3);
    assert_eq!(
        packet["participants"]["lead"],
        json!({"name": "lead", "role": "lead", "metadata": {"model": "big"}})
    );
    assert_eq!(packet["participants"].as_object().unwrap().len(), 3);
    assert_eq!(packet["isolation_profiles"][0]["name"], "level1-directory");
    assert_eq!(packet["isolation_profiles"][0]["supports_resume"], true);
    // The naive prototype timestamp was read as UTC.
    let msgs = dir
        .mb(&[
            "replay",
            "mission-proto",
            "--as",
            "agent-b",
            "--type",
            "message",
        ])
        .json_lines();
    assert_eq!(msgs[0]["timestamp"], "2024-05-01T12:00:00.123456Z");
    assert_eq!(
        msgs[0]["message_id"],
        "7d9f1c2e-4b1a-4c3e-9a55-0e1f2a3b4c5d"
    );
    dir.mb(&["verify", "mission-proto"]).json();

    // The same document from stdin with --format seed, into a fresh store.
    let other = Dir::new();
    other
        .mb(&["import", "-", "--format", "seed"])
        .stdin(doc.to_string())
        .json();
    assert_eq!(
        other
            .mb(&["resume", "mission-proto", "--for", "agent-b"])
            .json(),
        packet
    );
    // A seed whose handoff points at a checkpoint it does not hold is refused.
    let mut broken = doc.clone();
    broken["events"].as_array_mut().unwrap().remove(1);
    broken["mission_id"] = json!("mission-broken");
    let other = Dir::new();
    other
        .mb(&["import", "-"])
        .stdin(broken.to_string())
        .fails(4);
    assert_eq!(other.mb(&["missions"]).ok(), "");
}

/// Our seed export is the prototype's shape and reloads with the same
/// resume packet (into a fresh store: event ids are unique per store).
#[test]
fn seed_export_reimports_with_the_same_resume_packet() {
    let dir = Dir::new();
    team(&dir);
    dir.mb(&[
        "join",
        M,
        "zoe",
        "--role",
        "write",
        "--metadata",
        r#"{"tier": 2}"#,
    ])
    .json();
    dir.mb(&[
        "publish",
        M,
        "--as",
        "lena",
        "--topic",
        "plan",
        "--payload",
        "[1,2]",
    ])
    .json();
    let cp = checkpoint(&dir, "ada");
    dir.mb(&[
        "handoff",
        M,
        "--as",
        "ada",
        "--to",
        "bob",
        "--checkpoint",
        &id(&cp, "checkpoint_id"),
        "--note",
        "go",
    ])
    .json();
    let packet = dir.mb(&["resume", M, "--for", "bob"]).json();

    let seed_text = dir.mb(&["export", M]).ok(); // seed is the default
    let seed: Value = serde_json::from_str(&seed_text).unwrap();
    let keys: Vec<&str> = seed
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["config", "events", "mission_id", "participants", "title"]
    );
    assert_eq!(seed["mission_id"], M);
    assert_eq!(seed["participants"]["zoe"]["metadata"], json!({"tier": 2}));
    let types: Vec<&str> = seed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["message", "checkpoint", "handoff"]);
    assert_eq!(
        dir.mb(&["export", M, "--format", "seed"]).ok(),
        seed_text,
        "explicit --format seed differs from the default"
    );

    let fresh = Dir::new();
    fresh.create("seed.json", &seed_text);
    fresh
        .mb(&["import", "seed.json", "--format", "seed"])
        .json();
    assert_eq!(fresh.mb(&["resume", M, "--for", "bob"]).json(), packet);
    // And exporting again gives the same document.
    assert_eq!(fresh.mb(&["export", M]).ok(), seed_text);
    // Importing it again where it already exists is a conflict.
    let err = fresh.mb(&["import", "seed.json"]).fails(5);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn jsonl_export_import_is_lossless() {
    let dir = Dir::new();
    team(&dir);
    dir.mb(&[
        "publish",
        M,
        "--as",
        "ada",
        "--topic",
        "t",
        "--payload",
        r#"{"é":"ü","n":null}"#,
    ])
    .json();
    let cp = checkpoint(&dir, "bob");
    dir.mb(&[
        "handoff",
        M,
        "--as",
        "bob",
        "--to",
        "ada",
        "--checkpoint",
        &id(&cp, "checkpoint_id"),
    ])
    .json();
    let jsonl = dir.mb(&["export", M, "--format", "jsonl"]).ok();
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 9);
    assert_eq!(lines, dir.mb(&["replay", M, "--as", "audra"]).json_lines());

    // Into a fresh store, from stdin, format detected.
    let fresh = Dir::new();
    let imported = fresh.mb(&["import", "-"]).stdin(jsonl.clone()).json();
    assert_eq!(imported["imported"], 9);
    assert_eq!(fresh.mb(&["export", M, "--format", "jsonl"]).ok(), jsonl);
    fresh.mb(&["verify", M]).json();
    // Importing the same log again: the mission exists.
    fresh.create("log.jsonl", &jsonl);
    fresh
        .mb(&["import", "log.jsonl", "--format", "jsonl"])
        .fails(5);
    // A log with a gap is refused and leaves nothing behind.
    let gappy: String = jsonl
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 4)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let other = Dir::new();
    let err = other.mb(&["import", "-"]).stdin(gappy).fails(2);
    assert!(err.contains("sequence"), "{err}");
    assert_eq!(other.mb(&["missions"]).ok(), "");
}

/// Progress bars only on a terminal: piped runs of large jobs keep stderr
/// empty and stdout machine-readable.
#[test]
fn large_jobs_stay_quiet_when_not_on_a_terminal() {
    let dir = Dir::new();
    let n = 6_000u64;
    let mut log = String::new();
    let t = "2024-05-01T12:00:00Z";
    log += &json!({"event_type": "mission_created", "event_id": uuid::Uuid::now_v7().to_string(),
        "sender": "@operator", "sequence": 1, "timestamp": t, "mission_id": "big", "title": "Big"})
    .to_string();
    log.push('\n');
    log += &json!({"event_type": "participant_joined", "event_id": uuid::Uuid::now_v7().to_string(),
        "sender": "@operator", "sequence": 2, "timestamp": t, "participant": "ada", "role": "write"})
    .to_string();
    log.push('\n');
    for seq in 3..=n {
        log += &json!({"event_type": "message", "message_id": uuid::Uuid::now_v7().to_string(),
            "sender": "ada", "sequence": seq, "timestamp": t, "topic": "t", "payload": seq})
        .to_string();
        log.push('\n');
    }
    dir.create("big.jsonl", &log);
    assert_eq!(dir.mb(&["import", "big.jsonl"]).json()["imported"], n);
    let replayed = dir.mb(&["replay", "big", "--as", "ada"]).ok();
    assert_eq!(replayed.lines().count() as u64, n);
    let exported = dir.mb(&["export", "big", "--format", "jsonl"]).ok();
    assert_eq!(exported, replayed);
    let seed: Value = serde_json::from_str(&dir.mb(&["export", "big"]).ok()).unwrap();
    assert_eq!(seed["events"].as_array().unwrap().len() as u64, n - 2);
}

#[test]
fn verify_exits_0_when_intact_and_6_after_a_flipped_byte() {
    let dir = Dir::local();
    team(&dir);
    dir.mb(&["create", "m-other", "--title", "t", "--lead", "olga"])
        .ok();
    checkpoint(&dir, "ada");
    let report = dir.mb(&["verify", M]).json();
    assert_eq!(report["mission_id"], M);
    assert_eq!(report["intact"], true);
    assert_eq!(report["events_checked"], 7);
    assert_eq!(report["head_sequence"], 7);
    assert_eq!(report["problems"], json!([]));
    let all = dir.mb(&["verify"]).json_lines();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|r| r["intact"] == true), "{all:?}");

    // Damage the record at sequence 4 of M (the binary has exited).
    {
        let db = sled::open(dir.data()).expect("open the data dir with sled");
        let events = db.open_tree("events").unwrap();
        let m_no = {
            // The first key of the tree is M's sequence 1 (M was created first).
            let (k, _) = events.first().unwrap().unwrap();
            k[..8].to_vec()
        };
        let mut key = m_no.clone();
        key.extend_from_slice(&4u64.to_be_bytes());
        let mut value = events.get(&key).unwrap().expect("record 4 exists").to_vec();
        let mid = value.len() / 2;
        value[mid] ^= 0x01;
        events.insert(&key, value).unwrap();
        db.flush().unwrap();
    }
    let out = dir.mb(&["verify", M]).output();
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(M) && stderr.contains("sequence 4"),
        "{stderr}"
    );
    // The report itself is still printed for the auditor.
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["intact"], false);
    assert_eq!(report["problems"][0]["sequence"], 4);
    // Verifying the whole store fails too, and the other mission is intact.
    let out = dir.mb(&["verify"]).output();
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    // Reading past the damage is an integrity failure, never garbage.
    let err = dir.mb(&["export", M, "--format", "jsonl"]).fails(6);
    assert!(err.contains("sequence 4"), "{err}");
    // The mission's state cannot be rebuilt past the damage, so reading it
    // as a participant is refused too, naming the record.
    let err = dir.mb(&["replay", M, "--as", "audra"]).fails(6);
    assert!(err.contains("sequence 4"), "{err}");
    // The other mission is untouched.
    assert_eq!(
        dir.mb(&["replay", "m-other", "--as", "olga"])
            .json_lines()
            .len(),
        2
    );
    assert_eq!(dir.mb(&["verify", "m-other"]).json()["intact"], true);
}

#[test]
fn demo_runs_twice_on_the_default_store() {
    let dir = Dir::local();
    let first = dir.mb(&["demo"]).ok();
    for needle in [
        "resume",
        "--for bob",
        "lexer done",
        "permission denied",
        "intact",
    ] {
        assert!(
            first.contains(needle),
            "demo output lacks '{needle}':\n{first}"
        );
    }
    let second = dir.mb(&["demo"]).ok();
    let missions = dir.mb(&["missions"]).json_lines();
    assert_eq!(missions.len(), 2, "{missions:?}");
    assert_ne!(missions[0]["mission_id"], missions[1]["mission_id"]);
    for m in &missions {
        let mid = m["mission_id"].as_str().unwrap();
        assert!(second.contains(mid) || first.contains(mid), "{mid}");
        assert_eq!(m["head_sequence"], 11);
        // bob's resume, replayed by anyone later, still points at ada's checkpoint.
        let packet = dir.mb(&["resume", mid, "--for", "bob"]).json();
        assert_eq!(packet["sender"], "ada");
        assert_eq!(packet["checkpoint"]["state"]["next"], "parser");
    }
    dir.mb(&["verify"]).json_lines();
}
