//! `mission-bus mcp` driven by the official Python `mcp` client
//! (tests/python/mcp_round_trip.py): initialize, list the tools, call each
//! (successes and tool errors), against a running server (`--server`,
//! admin token in MISSION_BUS_TOKEN), against it with a participant's own
//! token, and on a data directory. The interpreter is
//! MISSION_BUS_TEST_PYTHON, else target/ci-venv/bin/python (made by
//! .ci/run); without it, or without `mcp`, the test passes and prints
//! `skipped: ...`.

mod util;

use std::path::PathBuf;
use std::process::Command;

use util::Dir;

const M: &str = "mission-883";

/// The interpreter, if it can import `mcp`.
fn python() -> Option<PathBuf> {
    let py = std::env::var_os("MISSION_BUS_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin/python")
        });
    if !py.exists() {
        println!(
            "skipped: no Python at {} (run .ci/run to make the venv)",
            py.display()
        );
        return None;
    }
    let ok = Command::new(&py)
        .args(["-c", "import mcp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!(
            "skipped: the Python module `mcp` is not importable by {}",
            py.display()
        );
        return None;
    }
    Some(py)
}

/// A mission with a lead, two writers and a reader.
fn team(dir: &Dir, remote: &[&str]) {
    let mb = |args: &[&str]| dir.mb(&[remote, args].concat());
    mb(&["create", M, "--title", "Port the parser", "--lead", "lena"]).ok();
    for (name, role) in [("ada", "write"), ("bob", "write"), ("rita", "read")] {
        mb(&["join", M, name, "--role", role]).json();
    }
}

fn round_trip(py: &PathBuf, dir: &Dir, mcp_args: &[&str], token: Option<&str>) {
    run_script(py, dir, mcp_args, token, false);
}

/// Run the script; `participant`: the short flow of a participant token.
fn run_script(
    py: &PathBuf,
    dir: &Dir,
    mcp_args: &[&str],
    token: Option<&str>,
    participant: bool,
) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/mcp_round_trip.py");
    let mut full = vec![env!("CARGO_BIN_EXE_mission-bus")];
    full.extend_from_slice(mcp_args);
    let mut cmd = Command::new(py);
    cmd.arg(&script)
        .current_dir(dir.path())
        .env("MB_MISSION", M)
        .env("MB_MCP_ARGS", serde_json::to_string(&full).unwrap())
        .env_remove("MISSION_BUS_URL")
        .env_remove("MISSION_BUS_DATA");
    if participant {
        cmd.env("MB_PARTICIPANT", "1");
    } else {
        cmd.env_remove("MB_PARTICIPANT");
    }
    match token {
        Some(t) => cmd.env("MISSION_BUS_TOKEN", t),
        None => cmd.env_remove("MISSION_BUS_TOKEN"),
    };
    let out = cmd.output().expect("run the Python MCP client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "MCP round trip failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(seen["server"], "mission-bus");
    if participant {
        return seen;
    }
    assert_eq!(
        seen["tools"],
        serde_json::json!([
            "accept",
            "ack",
            "checkpoint",
            "checkpoints",
            "complete",
            "decline",
            "handoff",
            "handoffs",
            "heartbeat",
            "publish",
            "read",
            "release",
            "resume",
            "verify"
        ])
    );
    // Eleven writes (message, checkpoint, three handoffs and their six
    // lifecycle steps) after the team's five events; the refused calls
    // wrote nothing.
    assert_eq!(seen["head"], 16);
    assert_eq!(seen["errors"], 18);
    seen
}

#[test]
fn mcp_round_trip_against_a_server_and_a_data_dir() {
    let Some(py) = python() else { return };

    // Against a running server, with the admin token from the environment.
    let dir = Dir::local();
    let (url, token) = dir.server();
    team(&dir, &["--server", &url, "--token", &token]);
    round_trip(&py, &dir, &["--server", &url, "mcp"], Some(&token));
    let missions = dir
        .mb(&["--server", &url, "--token", &token, "missions"])
        .json();
    assert_eq!(
        missions["head_sequence"], 16,
        "the server saw exactly the tool writes"
    );

    // Against a running server with a participant's own token (ada, a
    // writer): ada's calls go through the ordinary endpoints.
    let dir = Dir::local();
    let (url, admin) = dir.server();
    team(&dir, &["--server", &url, "--token", &admin]);
    let ada = dir
        .mb(&["--server", &url, "--token", &admin, "token", M, "ada"])
        .json();
    let ada = ada["token"].as_str().expect("ada's token");
    let seen = run_script(&py, &dir, &["--server", &url, "mcp"], Some(ada), true);
    assert_eq!(seen["errors"], 3);
    let missions = dir
        .mb(&["--server", &url, "--token", &admin, "missions"])
        .json();
    assert_eq!(missions["head_sequence"], 8, "ada's three writes, no other");

    // On the data directory.
    let dir = Dir::local();
    team(&dir, &[]);
    round_trip(&py, &dir, &["mcp"], None);
    assert_eq!(dir.mb(&["missions"]).json()["head_sequence"], 16);
}
