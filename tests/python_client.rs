//! The Python client (`clients/python`) and its LangGraph checkpointer,
//! driven from cargo: runs `python -m pytest clients/python/tests -q`
//! (each Python test starts and kills its own `mission-bus serve`, the
//! binary cargo built, passed as `MISSION_BUS_BIN`) and LangGraph's
//! published conformance suite against a real `mission-bus serve` started
//! here (its URL and admin token passed as `MISSION_BUS_URL` and
//! `MISSION_BUS_ADMIN_TOKEN`), printing the suite's report.
//!
//! The interpreter is `MISSION_BUS_TEST_PYTHON`, else
//! `target/ci-venv/bin/python` (made by `.ci/run`). When it or a needed
//! module is missing, the tests pass after printing `skipped: ...`, so a
//! plain `cargo test` passes anywhere; CI always has the venv.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const MODULES: &str =
    "httpx, pytest, pytest_asyncio, langgraph.graph, langgraph.checkpoint.conformance";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's interpreter with every module the Python side needs, or why not.
fn python() -> Result<PathBuf, String> {
    let py = std::env::var_os("MISSION_BUS_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/ci-venv/bin/python"));
    if !py.exists() {
        return Err(format!(
            "no Python interpreter at {} (run `bash .ci/run` to make the venv, or set MISSION_BUS_TEST_PYTHON)",
            py.display()
        ));
    }
    let out = Command::new(&py)
        .args(["-c", &format!("import {MODULES}")])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} cannot import {MODULES}: {}",
            py.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(py)
}

/// Python with the package's source first on the path (so the tests run
/// the worktree's code, not a stale install).
fn python_cmd(py: &Path) -> Command {
    let mut cmd = Command::new(py);
    cmd.current_dir(repo())
        .env("PYTHONPATH", repo().join("clients/python/src"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("MISSION_BUS_BIN", env!("CARGO_BIN_EXE_mission-bus"))
        .env_remove("MISSION_BUS_URL")
        .env_remove("MISSION_BUS_ADMIN_TOKEN")
        .stdin(Stdio::null());
    cmd
}

/// Print straight to the process's stderr (not the test harness's
/// captured output), so CI's log shows the report even on success.
fn show(title: &str, out: &Output) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\n===== {title} =====");
    let _ = err.write_all(&out.stdout);
    let _ = err.write_all(&out.stderr);
    let _ = writeln!(err, "===== end of {title} ({}) =====", out.status);
}

struct Server {
    child: Child,
    url: String,
    admin_token: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("bus");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mission-bus"))
            .arg("--data")
            .arg(&data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(|l| l.ok());
            let second = lines.next().and_then(|l| l.ok());
            let _ = tx.send((first, second));
            for _ in lines {}
        });
        let (first, second) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed nothing");
        let addr = first
            .expect("server exited before listening")
            .strip_prefix("listening on ")
            .expect("first line names the address")
            .to_string();
        let token_path = second
            .expect("second line names the admin token")
            .strip_prefix("admin token: ")
            .expect("second line names the admin token")
            .to_string();
        let admin_token = std::fs::read_to_string(token_path)
            .unwrap()
            .trim()
            .to_string();
        Server {
            child,
            url: format!("http://{addr}"),
            admin_token,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn python_client_pytest_suite() {
    let py = match python() {
        Ok(py) => py,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let out = python_cmd(&py)
        .args([
            "-m",
            "pytest",
            "clients/python/tests",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .output()
        .unwrap();
    show("pytest clients/python/tests", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the Python client's tests failed");
    assert!(
        text.contains(" passed") && !text.contains(" failed") && !text.contains(" skipped"),
        "expected every Python test to run and pass: {text}"
    );
}

#[test]
fn langgraph_conformance_suite() {
    let py = match python() {
        Ok(py) => py,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let server = Server::start();
    let out = python_cmd(&py)
        .arg("clients/python/conformance/run_conformance.py")
        .env("MISSION_BUS_URL", &server.url)
        .env("MISSION_BUS_ADMIN_TOKEN", &server.admin_token)
        .output()
        .unwrap();
    show("LangGraph checkpoint conformance (MissionBusSaver)", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "every base and extended capability must pass"
    );
    for cap in [
        "put",
        "put_writes",
        "get_tuple",
        "list",
        "delete_thread",
        "copy_thread",
        "prune",
        "delete_for_runs",
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains('✅') && l.split_whitespace().nth(1) == Some(cap)),
            "capability {cap} not reported as passed"
        );
    }
    assert!(text.contains("conformance: base capabilities all passed"));
    for cap in ["copy_thread", "prune", "delete_for_runs"] {
        assert!(
            text.contains(&format!("conformance: {cap} passed")),
            "{cap}"
        );
    }
}
