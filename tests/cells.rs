//! Isolation cells as users run them: `mission-bus cell run` on the data
//! directory and against `serve` (`--server`), levels 1 to 3 where the
//! machine allows (skips print their reason), refusals that leave no trace.

mod util;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use util::Dir;

/// The inner command's way to publish: the participant endpoint, over
/// curl, with the token and address `cell run` put in its environment.
const PUBLISH: &str = r#"curl -sf -o /dev/null -X POST -H "Authorization: Bearer $MISSION_BUS_TOKEN" -H "Content-Type: application/json" -d '{"topic":"from-cell","payload":{"n":1}}' "$MISSION_BUS_URL/v1/missions/$MISSION_BUS_MISSION/messages""#;

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn mission(dir: &Dir) {
    dir.mb(&["create", "m1", "--title", "Cells", "--lead", "lena"])
        .ok();
    dir.mb(&["join", "m1", "ana", "--role", "write"]).ok();
}

fn events(dir: &Dir) -> Vec<Value> {
    dir.mb(&["export", "m1", "--format", "jsonl"]).json_lines()
}

fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event_type"] == t).collect()
}

/// The HTTP status of `GET URL/v1/missions/m1` with `token` (curl).
fn status_with(url: &str, token: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("{url}/v1/missions/m1"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A new participant token of `name`, issued through `mb ... token`.
fn token_of(dir: &Dir, name: &str) -> String {
    dir.mb(&["token", "m1", name]).json()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// How many participant tokens the store holds (a backup's count).
fn tokens_stored(dir: &Dir) -> u64 {
    let to = dir.path().join(format!("backup-{}", uuid::Uuid::new_v4()));
    dir.mb(&["backup", "--to", to.to_str().unwrap()]).json()["tokens"]
        .as_u64()
        .unwrap()
}

/// Whether unprivileged user + mount namespaces work here.
fn namespaces_work() -> Result<(), String> {
    if !have("unshare") {
        return Err("`unshare` (util-linux) is not installed".into());
    }
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "user namespaces do not work here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[test]
fn level1_runs_in_a_private_workspace_and_its_history_is_in_the_log() {
    if !have("curl") {
        println!("SKIP level1 publishing: curl is not installed");
        return;
    }
    let dir = Dir::local();
    mission(&dir);
    let script =
        format!("pwd > where.txt && env | grep ^MISSION_BUS_ > env.txt && {PUBLISH} && exit 3");
    let out = dir
        .mb(&[
            "cell",
            "run",
            "m1",
            "--as",
            "ana",
            "--profile",
            "level1-directory",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the command's status is cell run's: {stdout}"
    );
    let ws = dir.path().join("mission-bus-cells/m1/ana");
    let mode = std::fs::metadata(&ws).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "workspace is private");
    let cwd = std::fs::read_to_string(ws.join("where.txt")).unwrap();
    assert_eq!(Path::new(cwd.trim()), ws.canonicalize().unwrap());
    let env = std::fs::read_to_string(ws.join("env.txt")).unwrap();
    assert!(env.contains("MISSION_BUS_MISSION=m1"), "{env}");
    assert!(env.contains("MISSION_BUS_URL=http://127.0.0.1:"), "{env}");
    assert!(env.contains("MISSION_BUS_TOKEN=mb_"), "{env}");

    let log = events(&dir);
    let started = of_type(&log, "cell_started");
    let exited = of_type(&log, "cell_exited");
    let messages = of_type(&log, "message");
    assert_eq!((started.len(), exited.len(), messages.len()), (1, 1, 1));
    let (s, m, x) = (started[0], messages[0], exited[0]);
    assert_eq!(s["sender"], "ana");
    assert_eq!(s["profile"], "level1-directory");
    assert_eq!(s["mechanism"], "directory_workspace");
    assert_eq!(s["workspace"], ws.to_str().unwrap());
    assert_eq!(s["command"][0], "sh");
    assert_eq!(m["sender"], "ana", "published with the cell's own token");
    assert_eq!(m["topic"], "from-cell");
    assert_eq!(x["cell_id"], s["cell_id"]);
    assert_eq!(x["exit_code"], 3);
    assert!(x["signal"].is_null());
    assert!(x["duration_ms"].as_u64().is_some());
    let seq = |e: &Value| e["sequence"].as_u64().unwrap();
    assert!(seq(s) < seq(m) && seq(m) < seq(x));
    // cell run printed its two events.
    let printed: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed[0]["event_type"], "cell_started");
    assert_eq!(printed.last().unwrap()["event_type"], "cell_exited");
    // The log (with its cell events) survives export and import.
    let other = Dir::local();
    other
        .mb(&["import", "-", "--format", "jsonl"])
        .stdin(dir.mb(&["export", "m1", "--format", "jsonl"]).ok())
        .ok();
    assert_eq!(events(&other), log);
}

#[test]
fn against_a_server_the_command_gets_the_servers_address() {
    if !have("curl") {
        println!("SKIP cell run --server: curl is not installed");
        return;
    }
    let dir = Dir::local();
    mission(&dir);
    let (url, token) = dir.server();
    let script = format!("echo \"$MISSION_BUS_URL\" > url.txt && {PUBLISH}");
    dir.mb(&[
        "--server",
        &url,
        "--token",
        &token,
        "cell",
        "run",
        "m1",
        "--as",
        "ana",
        "--profile",
        "level1-directory",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .ok();
    let ws = dir.path().join("mission-bus-cells/m1/ana");
    assert_eq!(
        std::fs::read_to_string(ws.join("url.txt")).unwrap().trim(),
        url
    );
    let log: Vec<Value> = dir
        .mb(&[
            "--server", &url, "--token", &token, "export", "m1", "--format", "jsonl",
        ])
        .json_lines();
    assert_eq!(of_type(&log, "cell_started").len(), 1);
    assert_eq!(of_type(&log, "cell_exited")[0]["exit_code"], 0);
    assert_eq!(of_type(&log, "message")[0]["sender"], "ana");
    // Refusals come back with the same exit codes as locally.
    let err = dir
        .mb(&[
            "--server",
            &url,
            "--token",
            &token,
            "cell",
            "run",
            "m1",
            "--as",
            "ana",
            "--profile",
            "level1-directory-nope",
            "--",
            "true",
        ])
        .fails(4);
    assert!(err.contains("level1-directory-nope"), "{err}");
}

#[test]
fn a_profile_the_mission_lacks_or_may_not_use_starts_nothing() {
    let dir = Dir::local();
    mission(&dir);
    let before = events(&dir);
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let err = dir
        .mb(&[
            "cell",
            "run",
            "m1",
            "--as",
            "ana",
            "--profile",
            "level9",
            "--",
            "sh",
            "-c",
            &touch,
        ])
        .fails(4);
    assert!(
        err.contains("'level9'") && err.contains("level1-directory"),
        "{err}"
    );
    // A non-default profile needs configure_isolation (ana is `write`).
    let err = dir
        .mb(&[
            "cell",
            "run",
            "m1",
            "--as",
            "ana",
            "--profile",
            "level2-mount-namespace",
            "--workspace",
            "ws",
            "--",
            "sh",
            "-c",
            &touch,
        ])
        .output();
    let stderr = String::from_utf8_lossy(&err.stderr);
    // Where namespaces are missing, that is said first; either way nothing ran.
    assert!(
        stderr.contains("configure_isolation")
            || stderr.contains("cannot start a 'mount_namespace'"),
        "{stderr}"
    );
    assert_ne!(err.status.code(), Some(0));
    // Not a participant.
    dir.mb(&[
        "cell",
        "run",
        "m1",
        "--as",
        "zed",
        "--profile",
        "level1-directory",
        "--",
        "sh",
        "-c",
        &touch,
    ])
    .fails(3);
    assert!(!marker.exists(), "the command never ran");
    assert!(!dir.path().join("ws").exists(), "no workspace was made");
    assert_eq!(events(&dir), before, "nothing was recorded");
}

#[test]
fn a_missing_mechanism_is_named_and_records_nothing() {
    let dir = Dir::local();
    mission(&dir);
    let before = events(&dir);
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    // No unshare (nor anything else) on PATH.
    let err = dir
        .mb(&[
            "cell",
            "run",
            "m1",
            "--as",
            "lena",
            "--profile",
            "level2-mount-namespace",
            "--",
            "/bin/sh",
            "-c",
            &touch,
        ])
        .env("PATH", dir.path().join("empty-bin"))
        .fails(1);
    assert!(
        err.contains("`unshare`") && err.contains("nothing was started"),
        "{err}"
    );
    let err = dir
        .mb(&[
            "cell",
            "run",
            "m1",
            "--as",
            "lena",
            "--profile",
            "level3-rootless-podman",
            "--",
            "/bin/sh",
            "-c",
            &touch,
        ])
        .env("PATH", dir.path().join("empty-bin"))
        .fails(1);
    assert!(
        err.contains("`podman`") && err.contains("rootless_podman"),
        "{err}"
    );
    assert!(!marker.exists());
    assert!(!dir.path().join("mission-bus-cells").exists());
    assert_eq!(events(&dir), before);
}

#[test]
fn level2_cannot_write_outside_its_workspace() {
    if let Err(why) = namespaces_work() {
        println!("SKIP level 2: {why}");
        return;
    }
    let dir = Dir::local();
    mission(&dir);
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let outside = [
        dir.path().join("outside.txt"),
        dir.data().join("planted"),
        std::env::temp_dir().join(format!("mb-cell-escape-{}", std::process::id())),
        Path::new(&home).join(format!("mb-cell-escape-{}", std::process::id())),
    ];
    let mut script = String::from("echo inside > inside.txt; ");
    for (i, p) in outside.iter().enumerate() {
        script.push_str(&format!(
            "if {{ echo x > '{}'; }} 2>/dev/null; then echo wrote > r{i}; else echo refused > r{i}; fi; ",
            p.display()
        ));
    }
    script.push_str("if mount -o remount,bind,rw / 2>/dev/null; then echo yes > remount; else echo no > remount; fi");
    dir.mb(&[
        "cell",
        "run",
        "m1",
        "--as",
        "lena",
        "--profile",
        "level2-mount-namespace",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .json_lines();
    let ws = dir.path().join("mission-bus-cells/m1/lena");
    assert_eq!(
        std::fs::read_to_string(ws.join("inside.txt")).unwrap(),
        "inside\n"
    );
    for (i, p) in outside.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(ws.join(format!("r{i}"))).unwrap(),
            "refused\n",
            "wrote {}",
            p.display()
        );
        assert!(!p.exists(), "{} was created", p.display());
    }
    assert_eq!(std::fs::read_to_string(ws.join("remount")).unwrap(), "no\n");
    let log = events(&dir);
    assert_eq!(
        of_type(&log, "cell_started")[0]["mechanism"],
        "mount_namespace"
    );
    assert_eq!(of_type(&log, "cell_exited")[0]["exit_code"], 0);
    // The store is intact and still opens.
    dir.mb(&["verify", "m1"]).ok();
}

/// The user level 3 runs as when the tests run as root (rootless Podman
/// needs a non-root user with subordinate ids; `.ci/run` creates one).
const PODMAN_USER_ENV: &str = "MISSION_BUS_TEST_PODMAN_USER";

/// Run `sh -c script` as `user` (with its HOME), from `cwd`.
fn as_user(user: &str, cwd: &Path, script: &str) -> std::process::Output {
    let home = String::from_utf8(
        Command::new("getent")
            .args(["passwd", user])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .split(':')
    .nth(5)
    .unwrap_or("/")
    .to_string();
    Command::new("setpriv")
        .args(["--reuid", user, "--regid", user, "--init-groups", "--"])
        .args(["env", &format!("HOME={home}"), &format!("USER={user}")])
        .args(["sh", "-c", script])
        .current_dir(cwd)
        .env_remove("MISSION_BUS_DATA")
        .env_remove("MISSION_BUS_URL")
        .env_remove("MISSION_BUS_TOKEN")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap()
}

#[test]
fn level3_runs_in_rootless_podman_or_says_why_not() {
    let dir = Dir::local();
    mission(&dir);
    // As this user: with podman missing, or as root, it must refuse, naming why.
    let out = dir
        .mb(&[
            "cell",
            "run",
            "m1",
            "--as",
            "lena",
            "--profile",
            "level3-rootless-podman",
            "--image",
            "localhost/mission-bus-test-cell",
            "--",
            "sh",
            "-c",
            "true",
        ])
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        assert!(
            stderr.contains("cannot start a 'rootless_podman' cell"),
            "{stderr}"
        );
        assert!(of_type(&events(&dir), "cell_started").is_empty());
    }
    let user = match std::env::var(PODMAN_USER_ENV) {
        Ok(u) if !u.is_empty() => u,
        _ => {
            println!(
                "SKIP level 3 container run: {} (set {PODMAN_USER_ENV} to a non-root user with \
                 subordinate ids and a working rootless Podman, as .ci/run does)",
                stderr.trim()
            );
            return;
        }
    };
    // The whole scenario as that user, in a directory of its own.
    let tmp = tempfile::tempdir().unwrap();
    // The user must reach its directory through the temp dir.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = tmp.path().join("w");
    std::fs::create_dir(&work).unwrap();
    let chown = Command::new("chown")
        .args([&user, work.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());
    let mb = env!("CARGO_BIN_EXE_mission-bus");
    // An image without a registry: the host's dash and its libraries.
    let script = format!(
        r#"set -e
mkdir -p rootfs/bin rootfs/workspace && cp /bin/dash rootfs/bin/sh
for l in $(ldd /bin/dash | grep -o '/[^ ]*'); do mkdir -p rootfs$(dirname $l); cp -L $l rootfs$l; done
tar -C rootfs -cf rootfs.tar . && podman import -q rootfs.tar localhost/mission-bus-test-cell >/dev/null
{mb} create m1 --title T --lead lena >/dev/null
{mb} cell run m1 --as lena --profile level3-rootless-podman --image localhost/mission-bus-test-cell -- /bin/sh -c 'echo in > /workspace/in.txt; if [ -e {data} ]; then echo seen > seen.txt; fi; if {{ echo x > /escape; }} 2>/dev/null; then echo wrote > escape.txt; fi; exit 7' >/dev/null || test $? = 7
{mb} export m1 --format jsonl"#,
        data = work.join("mission-bus-data").display(),
    );
    let out = as_user(&user, &work, &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("cannot start a 'rootless_podman' cell") {
        println!("SKIP level 3 container run as {user}: {}", stderr.trim());
        return;
    }
    assert!(out.status.success(), "as {user}: {stderr}\n{stdout}");
    let ws = work.join("mission-bus-cells/m1/lena");
    assert_eq!(std::fs::read_to_string(ws.join("in.txt")).unwrap(), "in\n");
    assert!(
        !ws.join("seen.txt").exists(),
        "the store's directory is not in the container"
    );
    assert!(!ws.join("escape.txt").exists());
    let log: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        of_type(&log, "cell_started")[0]["mechanism"],
        "rootless_podman"
    );
    assert_eq!(of_type(&log, "cell_exited")[0]["exit_code"], 7);
}

#[test]
fn checkpoint_on_exit_attaches_the_workspace_with_content_hashes() {
    let dir = Dir::local();
    mission(&dir);
    let lines = dir
        .mb(&[
            "cell",
            "run",
            "m1",
            "--as",
            "ana",
            "--profile",
            "level1-directory",
            "--checkpoint-on-exit",
            "cell done",
            "--",
            "sh",
            "-c",
            "mkdir -p out && printf a > a.txt && printf bb > out/b.txt",
        ])
        .json_lines();
    assert_eq!(lines.len(), 3);
    let cp = &lines[2];
    assert_eq!(cp["event_type"], "checkpoint");
    assert_eq!(cp["sender"], "ana");
    assert_eq!(cp["summary"], "cell done");
    assert_eq!(cp["state"]["cell_id"], lines[0]["cell_id"]);
    let ws = dir.path().join("mission-bus-cells/m1/ana");
    let hash = |b: &[u8]| blake3::hash(b).to_hex().to_string();
    let artifacts: Vec<&str> = cp["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        artifacts,
        vec![
            format!("{}/a.txt#blake3={}", ws.display(), hash(b"a")),
            format!("{}/out/b.txt#blake3={}", ws.display(), hash(b"bb")),
        ]
    );
    assert_eq!(cp["state"]["files"][1]["path"], "out/b.txt");
    assert_eq!(cp["state"]["files"][1]["bytes"], 2);
    // It is the agent's latest checkpoint.
    let latest = dir
        .mb(&["checkpoints", "m1", "--by", "ana", "--latest"])
        .json();
    assert_eq!(latest["checkpoint_id"], cp["checkpoint_id"]);
}

#[test]
fn the_library_checks_cell_events() {
    use mission_bus::{Action, AppendOptions, ErrorKind, MissionBus, NewMission};
    let tmp = tempfile::tempdir().unwrap();
    let bus = MissionBus::open(tmp.path()).unwrap();
    bus.create_mission(NewMission::new("m1", "t").lead("lena"))
        .unwrap();
    bus.join("m1", "ana", "write", mission_bus::Json::empty_object())
        .unwrap();
    let start = |who: &str, profile: &str, mechanism: &str| {
        bus.append(
            "m1",
            who,
            Action::StartCell {
                profile: profile.into(),
                mechanism: mechanism.into(),
                workspace: "/w".into(),
                command: vec!["true".into()],
            },
            &AppendOptions::default(),
        )
    };
    let e = start("ana", "level1-directory", "mount_namespace").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = start("ana", "level3-rootless-podman", "rootless_podman").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let started = start("ana", "level1-directory", "directory_workspace").unwrap();
    assert_eq!(bus.state("m1").unwrap().cells.running.len(), 1);
    let end = |who: &str| {
        bus.append(
            "m1",
            who,
            Action::EndCell {
                cell_id: started.id,
                exit_code: Some(0),
                signal: None,
                duration_ms: 5,
                error: String::new(),
            },
            &AppendOptions::default(),
        )
    };
    // Only the cell's participant ends it, once.
    assert_eq!(end("lena").unwrap_err().kind(), ErrorKind::NotFound);
    end("ana").unwrap();
    assert_eq!(end("ana").unwrap_err().kind(), ErrorKind::NotFound);
    let state = bus.state("m1").unwrap();
    assert!(state.cells.running.is_empty());
    assert_eq!((state.cells.started, state.cells.exited), (1, 1));
}

#[test]
fn sigterm_to_cell_run_reaches_the_command_and_the_end_is_recorded() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = Dir::local();
    mission(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mission-bus"))
        .current_dir(dir.path())
        .env_remove("MISSION_BUS_DATA")
        .env_remove("MISSION_BUS_URL")
        .env_remove("MISSION_BUS_TOKEN")
        .args([
            "cell",
            "run",
            "m1",
            "--as",
            "ana",
            "--profile",
            "level1-directory",
            "--",
        ])
        .args([
            "sh",
            "-c",
            "echo \"$MISSION_BUS_TOKEN\" > token.txt; echo ready; exec sleep 60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(started["event_type"], "cell_started");
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let killed = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exited: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "cell run lived on and reports the signal"
    );
    assert_eq!(exited["event_type"], "cell_exited");
    assert_eq!(exited["signal"], 15);
    assert!(exited["exit_code"].is_null());
    assert!(exited["duration_ms"].as_u64().unwrap() < 60_000);
    let log = events(&dir);
    assert_eq!(
        of_type(&log, "cell_exited")[0]["cell_id"],
        started["cell_id"]
    );
    // The cell's token ended with it.
    let ws = dir.path().join("mission-bus-cells/m1/ana");
    let cell_token = std::fs::read_to_string(ws.join("token.txt")).unwrap();
    assert_eq!(tokens_stored(&dir), 0, "{cell_token}");
}

#[test]
fn a_command_that_cannot_start_is_recorded_as_such() {
    let dir = Dir::local();
    mission(&dir);
    // A workspace that is a file is refused before anything is recorded.
    dir.create("afile", "x");
    let err = dir
        .mb(&[
            "cell",
            "run",
            "m1",
            "--as",
            "ana",
            "--profile",
            "level1-directory",
            "--workspace",
            "afile",
            "--",
            "true",
        ])
        .fails(2);
    assert!(err.contains("not a directory"), "{err}");
    assert!(of_type(&events(&dir), "cell_started").is_empty());
    // A command that does not exist: the start was recorded, so is the failure.
    let out = dir
        .mb(&[
            "cell",
            "run",
            "m1",
            "--as",
            "ana",
            "--profile",
            "level1-directory",
            "--",
            "./no-such-program",
        ])
        .output();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot start './no-such-program'"),
        "{stderr}"
    );
    let log = events(&dir);
    let exited = of_type(&log, "cell_exited");
    assert_eq!(exited.len(), 1);
    assert!(exited[0]["exit_code"].is_null() && exited[0]["signal"].is_null());
    assert!(exited[0]["error"]
        .as_str()
        .unwrap()
        .contains("no-such-program"));
    assert!(dir.mb(&["verify", "m1"]).ok().contains("\"intact\":true"));
}

#[test]
fn the_cells_token_is_revoked_when_the_cell_ends() {
    if !have("curl") {
        println!("SKIP cell token revocation: curl is not installed");
        return;
    }
    let dir = Dir::local();
    mission(&dir);
    let own = token_of(&dir, "ana");
    // Used inside the cell (it publishes), then the cell exits non-zero.
    let script = format!("echo \"$MISSION_BUS_TOKEN\" > token.txt && {PUBLISH} && exit 5");
    let out = dir
        .mb(&[
            "cell",
            "run",
            "m1",
            "--as",
            "ana",
            "--profile",
            "level1-directory",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .output();
    assert_eq!(out.status.code(), Some(5));
    let ws = dir.path().join("mission-bus-cells/m1/ana");
    let cell_token = std::fs::read_to_string(ws.join("token.txt")).unwrap();
    let cell_token = cell_token.trim();
    assert!(cell_token.starts_with("mb_"), "{cell_token}");
    assert_eq!(of_type(&events(&dir), "message")[0]["sender"], "ana");
    assert_eq!(tokens_stored(&dir), 1, "only ana's own token is left");
    let (url, _admin) = dir.server();
    assert_eq!(
        status_with(&url, cell_token),
        "401",
        "the cell's token is revoked"
    );
    assert_eq!(
        status_with(&url, &own),
        "200",
        "ana's other tokens stay valid"
    );
}

#[test]
fn the_cells_token_is_revoked_when_its_command_cannot_start() {
    let dir = Dir::local();
    mission(&dir);
    let before = tokens_stored(&dir);
    let out = dir
        .mb(&[
            "cell",
            "run",
            "m1",
            "--as",
            "ana",
            "--profile",
            "level1-directory",
            "--",
            "./no-such-program",
        ])
        .output();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(of_type(&events(&dir), "cell_exited").len(), 1);
    assert_eq!(tokens_stored(&dir), before, "the cell's token is gone");
}

#[test]
fn a_participant_token_runs_a_cell_through_the_server() {
    if !have("curl") {
        println!("SKIP cell run --server with a participant token: curl is not installed");
        return;
    }
    let dir = Dir::local();
    mission(&dir);
    let ana = token_of(&dir, "ana");
    let (url, admin) = dir.server();
    let remote = |token: &str, name: &str, profile: &str, script: &str| {
        let mut c = dir.mb(&[
            "--server",
            &url,
            "--token",
            token,
            "cell",
            "run",
            "m1",
            "--as",
            name,
            "--profile",
            profile,
            "--workspace",
            "ws",
            "--",
            "sh",
            "-c",
            script,
        ]);
        c.output()
    };
    let export = || -> Vec<Value> {
        dir.mb(&[
            "--server", &url, "--token", &admin, "export", "m1", "--format", "jsonl",
        ])
        .json_lines()
    };
    // The default profile: ana, acting as itself, needs no capability.
    let script = format!("echo \"$MISSION_BUS_TOKEN\" > token.txt && {PUBLISH}");
    let out = remote(&ana, "ana", "level1-directory", &script);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = export();
    let started = of_type(&log, "cell_started");
    let exited = of_type(&log, "cell_exited");
    assert_eq!((started.len(), exited.len()), (1, 1));
    assert_eq!(started[0]["sender"], "ana");
    assert_eq!(exited[0]["sender"], "ana");
    assert_eq!(exited[0]["exit_code"], 0);
    assert_eq!(of_type(&log, "message")[0]["sender"], "ana");
    let cell_token = std::fs::read_to_string(dir.path().join("ws/token.txt")).unwrap();
    let cell_token = cell_token.trim();
    assert_ne!(cell_token, ana, "the cell has a token of its own");
    assert_eq!(
        status_with(&url, cell_token),
        "401",
        "revoked when the cell ended"
    );
    assert_eq!(
        status_with(&url, &ana),
        "200",
        "the caller's token stays valid"
    );

    // The workspace as ana's checkpoint, with ana's own token: the CLI's
    // remote writes fall back to the participant endpoints.
    let out = dir
        .mb(&[
            "--server",
            &url,
            "--token",
            &ana,
            "cell",
            "run",
            "m1",
            "--as",
            "ana",
            "--profile",
            "level1-directory",
            "--workspace",
            "ws2",
            "--checkpoint-on-exit",
            "workspace at exit",
            "--",
            "sh",
            "-c",
            "echo hi > out.txt",
        ])
        .output();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = export();
    let checkpoints = of_type(&log, "checkpoint");
    let cp = checkpoints.last().expect("a checkpoint was saved");
    assert_eq!(cp["sender"], "ana");
    assert_eq!(cp["summary"], "workspace at exit");
    let artifacts = cp["artifacts"].as_array().unwrap();
    assert!(
        artifacts
            .iter()
            .any(|a| a.as_str().unwrap().contains("out.txt#blake3=")),
        "{artifacts:?}"
    );

    // A non-default profile needs configure_isolation, which ana lacks;
    // acting as someone else is refused too. Nothing is recorded or run.
    let before = export();
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let out = remote(&ana, "ana", "level2-mount-namespace", &touch);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match namespaces_work() {
        Ok(()) => {
            assert_eq!(out.status.code(), Some(3), "{stderr}");
            assert!(stderr.contains("configure_isolation"), "{stderr}");
        }
        Err(why) => {
            println!("level 2 not available ({why}): its refusal comes first");
            assert!(
                stderr.contains("cannot start a 'mount_namespace'"),
                "{stderr}"
            );
        }
    }
    let out = remote(&ana, "lena", "level1-directory", &touch);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'lena'") && stderr.contains("'ana'"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the command never ran");
    assert_eq!(export(), before, "nothing was recorded");
}
