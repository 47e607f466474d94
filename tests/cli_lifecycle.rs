//! The resuming agent's commands, run as typed: handoff lifecycle steps,
//! `expire --at` (explicit time, no sleeping), handoff and checkpoint
//! listings, `resume --for` falling back to a checkpoint, role changes and
//! removals, tokens, consumer positions and filtered `replay`. Every call is
//! its own process, so each assertion also holds after a restart.
//! tests/cli_remote.rs and tests/cli_participant.rs run these cases again
//! over a server (admin token; each participant's own token).

mod util;

use serde_json::{json, Value};
use util::Dir;

const M: &str = "m";

fn team(dir: &Dir) {
    dir.mb(&["create", M, "--title", "t", "--lead", "lena"])
        .ok();
    for (name, role) in [
        ("ada", "write"),
        ("bob", "write"),
        ("cy", "write"),
        ("audra", "audit"),
    ] {
        dir.mb(&["join", M, name, "--role", role]).json();
    }
}

fn checkpoint(dir: &Dir, who: &str, n: i64) -> String {
    let state = json!({ "n": n }).to_string();
    let v = dir
        .mb(&[
            "checkpoint",
            M,
            "--as",
            who,
            "--summary",
            "s",
            "--state",
            &state,
        ])
        .json();
    v["checkpoint_id"].as_str().unwrap().to_string()
}

fn offer(dir: &Dir, from: &str, to: &str, cp: &str) -> String {
    let v = dir
        .mb(&["handoff", M, "--as", from, "--to", to, "--checkpoint", cp])
        .json();
    v["handoff_id"].as_str().unwrap().to_string()
}

#[test]
fn a_crashed_holder_s_work_expires_returns_and_is_picked_up() {
    let dir = Dir::new();
    team(&dir);
    let cp1 = checkpoint(&dir, "ada", 1);
    let h = offer(&dir, "ada", "bob", &cp1);
    let listed = dir.mb(&["handoffs", M, "--for", "bob"]).json_lines();
    assert_eq!(listed[0]["status"], "offered");

    // Only bob may accept it (exit 3); then bob holds a 5 s lease.
    dir.mb(&["accept", M, "--as", "cy", "--handoff", &h])
        .fails(3);
    let acc = dir
        .mb(&[
            "accept",
            M,
            "--as",
            "bob",
            "--handoff",
            &h,
            "--lease-ms",
            "5000",
        ])
        .json();
    assert_eq!(acc["event_type"], "handoff_accepted");
    dir.mb(&[
        "heartbeat",
        M,
        "--as",
        "bob",
        "--handoff",
        &h,
        "--lease-ms",
        "5000",
    ])
    .json();
    let cp2 = checkpoint(&dir, "bob", 2);
    let info = &dir.mb(&["handoffs", M, "--for", "bob"]).json_lines()[0];
    let deadline =
        chrono::DateTime::parse_from_rfc3339(info["lease_expires_at"].as_str().unwrap()).unwrap();

    // bob dies. Expiry judged at explicit times: before, then at the deadline.
    let before = (deadline - chrono::Duration::milliseconds(1)).to_rfc3339();
    assert_eq!(dir.mb(&["expire", M, "--at", &before]).ok(), "");
    let at = deadline.to_rfc3339();
    let expired = dir.mb(&["expire", "--at", &at]).json_lines();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["event_type"], "handoff_expired");
    dir.mb(&["heartbeat", M, "--as", "bob", "--handoff", &h])
        .fails(5);
    dir.mb(&["expire", "--at", "yesterday"]).fails(2);

    // The work shows in ada's resume packet, to resume from bob's checkpoint.
    let ada = dir.mb(&["resume", M, "--for", "ada"]).json();
    assert_eq!(ada["returned"][0]["status"], "expired");
    assert_eq!(ada["returned"][0]["resume_checkpoint_id"], cp2.as_str());
    let h2 = offer(&dir, "ada", "cy", &cp2);
    dir.mb(&["accept", M, "--as", "cy", "--handoff", &h2])
        .json();
    let cy = dir.mb(&["resume", M, "--for", "cy"]).json();
    assert_eq!(cy["handoff_status"], "accepted");
    assert_eq!(cy["checkpoint"]["state"], json!({"n": 2}));
    dir.mb(&[
        "complete",
        M,
        "--as",
        "cy",
        "--handoff",
        &h2,
        "--note",
        "done",
    ])
    .json();
    // Decline and release, for completeness.
    let h3 = offer(&dir, "ada", "bob", &cp1);
    dir.mb(&["release", M, "--as", "bob", "--handoff", &h3])
        .fails(5);
    dir.mb(&[
        "decline",
        M,
        "--as",
        "bob",
        "--handoff",
        &h3,
        "--note",
        "no",
    ])
    .json();
    let h4 = offer(&dir, "ada", "bob", &cp1);
    dir.mb(&["accept", M, "--as", "bob", "--handoff", &h4])
        .json();
    dir.mb(&["release", M, "--as", "bob", "--handoff", &h4])
        .json();
    let all: Vec<String> = dir
        .mb(&["handoffs", M])
        .json_lines()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all, ["released", "declined", "completed", "expired"]);
    assert_eq!(dir.mb(&["verify", M]).json()["intact"], true);
}

#[test]
fn checkpoints_and_the_resume_fallback() {
    let dir = Dir::new();
    team(&dir);
    dir.mb(&["resume", M, "--for", "cy"]).fails(4);
    let cps: Vec<String> = (0..4).map(|n| checkpoint(&dir, "cy", n)).collect();
    checkpoint(&dir, "ada", 9);
    let v = dir.mb(&["resume", M, "--for", "cy"]).json();
    assert_eq!(v["source"], "checkpoint");
    assert_eq!(v["checkpoint"]["checkpoint_id"], cps[3].as_str());
    let page = dir
        .mb(&["checkpoints", M, "--by", "cy", "--limit", "2"])
        .json_lines();
    assert_eq!(page[0]["checkpoint_id"], cps[3].as_str());
    assert_eq!(page[1]["checkpoint_id"], cps[2].as_str());
    let before = page[1]["sequence"].as_u64().unwrap().to_string();
    let next = dir
        .mb(&[
            "checkpoints",
            M,
            "--by",
            "cy",
            "--limit",
            "2",
            "--before",
            &before,
        ])
        .json_lines();
    assert_eq!(next[0]["checkpoint_id"], cps[1].as_str());
    let one = dir.mb(&["checkpoints", M, "--id", &cps[0]]).json();
    assert_eq!(one["state"], json!({"n": 0}));
    let latest = dir.mb(&["checkpoints", M, "--latest"]).json();
    assert_eq!(latest["sender"], "ada");
    let latest_cy = dir.mb(&["checkpoints", M, "--latest", "--by", "cy"]).json();
    assert_eq!(latest_cy["checkpoint_id"], cps[3].as_str());
    dir.mb(&["checkpoints", M, "--id", "nope"]).fails(2);
}

#[test]
fn roles_removal_tokens_and_consumers() {
    let dir = Dir::new();
    team(&dir);
    dir.mb(&["role", M, "bob", "--role", "read", "--as", "ada"])
        .fails(3);
    let v = dir
        .mb(&["role", M, "bob", "--role", "read", "--as", "lena"])
        .json();
    assert_eq!(v["event_type"], "role_changed");
    dir.mb(&[
        "publish",
        M,
        "--as",
        "bob",
        "--topic",
        "t",
        "--payload",
        "1",
    ])
    .fails(3);
    let t1 = dir.mb(&["token", M, "bob"]).json();
    let own = dir.harness_tokens(M, "bob");
    let t2 = dir.mb(&["token", M, "bob", "--rotate"]).json();
    assert_eq!(t2["revoked"], 1 + own);
    assert_ne!(t1["token"], t2["token"]);
    for n in 0..5 {
        dir.mb(&[
            "publish",
            M,
            "--as",
            "ada",
            "--topic",
            "t",
            "--payload",
            &n.to_string(),
        ])
        .json();
    }
    let v = dir
        .mb(&["ack", M, "--as", "bob", "--consumer", "main", "8"])
        .json();
    assert_eq!(v["position"], 8);
    dir.mb(&["ack", M, "--as", "bob", "--consumer", "main", "999"])
        .fails(2);
    let rest = dir
        .mb(&["replay", M, "--as", "bob", "--consumer", "main"])
        .json_lines();
    assert_eq!(rest.first().map(|e| e["sequence"].clone()), Some(json!(9)));
    let listed = dir.mb(&["consumers", M]).json_lines();
    assert_eq!(listed, vec![listed[0].clone()]);
    assert_eq!(listed[0]["position"], 8);

    dir.mb(&["remove", M, "bob", "--as", "ada"]).fails(3);
    let v = dir.mb(&["remove", M, "bob"]).json();
    assert_eq!(v["event_type"], "participant_removed");
    dir.mb(&["replay", M, "--as", "bob"]).fails(3);
    assert!(dir.mb(&["consumers", M]).json_lines().is_empty());
    dir.mb(&["remove", M, "bob"]).fails(4);
}

#[test]
fn replay_filters_match_the_http_parameters() {
    let dir = Dir::new();
    team(&dir);
    for n in 0..4 {
        dir.mb(&[
            "publish",
            M,
            "--as",
            "ada",
            "--topic",
            &format!("build/{n}"),
            "--payload",
            "1",
        ])
        .json();
        dir.mb(&[
            "publish",
            M,
            "--as",
            "bob",
            "--topic",
            "chat",
            "--payload",
            "2",
        ])
        .json();
    }
    let cp = checkpoint(&dir, "ada", 0);
    offer(&dir, "ada", "cy", &cp);
    let run = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec!["replay", M, "--as", "audra"];
        args.extend_from_slice(extra);
        dir.mb(&args).json_lines()
    };
    let ada = run(&[
        "--type",
        "message",
        "--sender",
        "ada",
        "--topic-prefix",
        "build/",
    ]);
    assert_eq!(ada.len(), 4);
    let last2 = run(&["--sender", "bob", "--order", "desc", "--limit", "2"]);
    let seqs: Vec<u64> = last2
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert!(seqs[0] > seqs[1]);
    assert!(last2.iter().all(|e| e["sender"] == "bob"));
    let to_cy = run(&["--recipient", "cy"]);
    assert_eq!(to_cy.len(), 1);
    let bounded = run(&["--from", "7", "--to", "9", "--sender", "ada"]);
    assert!(bounded
        .iter()
        .all(|e| (7..=9).contains(&e["sequence"].as_u64().unwrap())));
    dir.mb(&["replay", M, "--as", "audra", "--order", "sideways"])
        .fails(2);
    dir.mb(&["replay", M, "--as", "audra", "--limit", "0"])
        .fails(2);
}

/// The prototype's `from_dict` takes camelCase ids and events without
/// timestamps; so does `import`, and it says what it filled in.
#[test]
fn seed_import_accepts_what_the_prototype_accepts_and_says_what_it_filled() {
    let dir = Dir::new();
    let doc = json!({
        "missionId": "proto",
        "title": "From the prototype",
        "participants": {
            "a": {"name": "a", "role": "write"},
            "b": {"name": "b", "role": "write"}
        },
        "events": [
            {"eventType": "message", "messageId": "7d9f1c2e-4b1a-4c3e-9a55-0e1f2a3b4c5d",
             "sender": "a", "topic": "plan", "payload": {"goal": 1}},
            {"event_type": "checkpoint", "checkpointId": "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d",
             "sender": "a", "timestamp": "2024-05-01T12:05:00Z", "summary": "s", "state": {}},
            {"event_type": "handoff", "sender": "a", "recipient": "b",
             "checkpointId": "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d", "note": "go"}
        ]
    });
    dir.create("seed.json", &doc.to_string());
    let v = dir.mb(&["import", "seed.json"]).json();
    assert_eq!(v["mission_id"], "proto");
    let filled: Vec<String> = v["filled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    let has = |needle: &str| filled.iter().any(|f| f.contains(needle));
    assert!(has("missionId: read as mission_id"), "{filled:?}");
    assert!(
        has("events[0].timestamp: missing, filled with 2024-05-01T12:05:00Z"),
        "{filled:?}"
    );
    assert!(
        has("events[2].timestamp: missing, filled with 2024-05-01T12:05:00Z (the previous"),
        "{filled:?}"
    );
    assert!(
        has("events[2].handoff_id: missing, filled with"),
        "{filled:?}"
    );
    let events = dir
        .mb(&["export", "proto", "--format", "jsonl"])
        .json_lines();
    assert_eq!(
        events[3]["message_id"],
        "7d9f1c2e-4b1a-4c3e-9a55-0e1f2a3b4c5d"
    );
    let packet = dir.mb(&["resume", "proto", "--for", "b"]).json();
    assert_eq!(
        packet["checkpoint"]["checkpoint_id"],
        "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d"
    );
    // camelCase and snake_case that disagree are refused, naming the field.
    let bad = json!({"missionId": "x", "mission_id": "y", "events": []});
    dir.create("bad.json", &bad.to_string());
    let err = dir.mb(&["import", "bad.json", "--format", "seed"]).fails(2);
    assert!(err.contains("missionId"), "{err}");
}
