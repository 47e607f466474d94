//! A small ripgrep-style harness: a temp [`Dir`] per test and a
//! [`TestCommand`] that runs the built `mission-bus` binary in it, so tests
//! read like the commands a user types.

#![allow(dead_code)] // each test crate uses a different subset

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

/// A temporary working directory for one test. The binary runs inside it,
/// so the default data dir is `./mission-bus-data` in here.
pub struct Dir {
    tmp: tempfile::TempDir,
    /// Run commands against a `mission-bus serve` on the data dir, started
    /// on first use, instead of on the files (`tests/cli_remote.rs`).
    remote: bool,
    /// In remote mode, act with the token of the participant named by
    /// `--as NAME` (or `resume --for NAME`) instead of the admin token
    /// (`tests/cli_participant.rs`).
    as_participant: bool,
    server: OnceLock<Server>,
    /// Participant tokens issued so far, by (mission, name).
    tokens: Mutex<HashMap<(String, String), String>>,
}

/// A `mission-bus serve` on a [`Dir`]'s data dir: its URL and admin token.
struct Server {
    child: Child,
    url: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn test_binary() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// True in the `cli_remote` and `cli_participant` test binaries: there
/// every [`Dir::new`] runs its commands with `--server` (the same cases as
/// tests/cli.rs and tests/cli_lifecycle.rs, over HTTP).
pub fn remote_mode() -> bool {
    let name = test_binary();
    name.starts_with("cli_remote") || name.starts_with("cli_participant")
}

/// True in the `cli_participant` test binary: commands that name a
/// participant (`--as NAME`, `resume --for NAME`) use that participant's
/// own token, so the ordinary endpoints are held to the local outputs.
pub fn participant_mode() -> bool {
    test_binary().starts_with("cli_participant")
}

/// The mission and the acting participant of a command line: the first
/// two positional arguments are the command and the mission; the actor is
/// `--as NAME`, or `--for NAME` of `resume`.
fn actor_of(args: &[&str]) -> Option<(String, String)> {
    let mut positional = Vec::new();
    let mut actor = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a.starts_with("--") && !a.contains('=') {
            let value = args.get(i + 1).copied();
            match a {
                "--as" => actor = value,
                "--for" if positional.first() == Some(&"resume") => actor = value,
                _ => {}
            }
            // Flags that take no value in the commands' grammar.
            if !matches!(
                a,
                "--latest" | "--rotate" | "--yes" | "--help" | "--version"
            ) {
                i += 1;
            }
        } else if !a.starts_with("--") {
            positional.push(a);
        }
        i += 1;
    }
    Some((positional.get(1)?.to_string(), actor?.to_string()))
}

impl Dir {
    /// A fresh empty directory; in the `cli_remote` binary, its commands go
    /// through a server (see [`remote_mode`]).
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().expect("create temp dir"),
            remote: remote_mode(),
            as_participant: participant_mode(),
            server: OnceLock::new(),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh empty directory whose commands always open the files (for
    /// cases about the files themselves).
    pub fn local() -> Dir {
        Dir {
            remote: false,
            ..Dir::new()
        }
    }

    /// How many tokens of `name` in `mission` this harness issued itself
    /// (participant mode), which a rotation also revokes.
    pub fn harness_tokens(&self, mission: &str, name: &str) -> u64 {
        let key = (mission.to_string(), name.to_string());
        u64::from(self.tokens.lock().unwrap().contains_key(&key))
    }

    /// Whether commands here go through a server.
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// The server's URL and admin token (started on first use).
    pub fn server(&self) -> (String, String) {
        let s = self.server.get_or_init(|| start_server(&self.data()));
        (s.url.clone(), s.token.clone())
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The default data dir of commands run here.
    pub fn data(&self) -> PathBuf {
        self.path().join("mission-bus-data")
    }

    /// Write `contents` to `name` inside the directory; returns its path.
    pub fn create(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }

    /// `mission-bus ARGS...`, run in this directory with a clean environment
    /// (no `MISSION_BUS_DATA`).
    pub fn mb(&self, args: &[&str]) -> TestCommand {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mission-bus"));
        cmd.current_dir(self.path())
            .env_remove("MISSION_BUS_DATA")
            .env_remove("MISSION_BUS_URL")
            .env_remove("MISSION_BUS_TOKEN")
            .env_remove("MISSION_BUS_STORE")
            .args(args);
        // PostgreSQL mode: the commands use this directory's database.
        if let Some(url) = pg_url(&self.data()).filter(|_| !self.remote) {
            cmd.env("MISSION_BUS_STORE", url);
        }
        if self.remote {
            let (url, mut token) = self.server();
            if self.as_participant {
                // A rotation revokes the token kept here: issue a new one
                // when next needed.
                let pos: Vec<&str> = args
                    .iter()
                    .copied()
                    .filter(|a| !a.starts_with("--"))
                    .collect();
                if pos.first() == Some(&"token") && args.contains(&"--rotate") && pos.len() >= 3 {
                    let key = (pos[1].to_string(), pos[2].to_string());
                    self.tokens.lock().unwrap().remove(&key);
                }
                if let Some((mission, name)) = actor_of(args) {
                    token = self.participant_token(&url, &token, &mission, &name);
                }
            }
            cmd.env("MISSION_BUS_URL", url)
                .env("MISSION_BUS_TOKEN", token);
        }
        TestCommand {
            cmd,
            stdin: None,
            shown: format!("mission-bus {}", args.join(" ")),
        }
    }
}

impl Dir {
    /// `name`'s token in `mission` (issued by the admin once, the earlier
    /// ones kept), or the admin token when there is no such participant.
    fn participant_token(&self, url: &str, admin: &str, mission: &str, name: &str) -> String {
        let key = (mission.to_string(), name.to_string());
        let mut tokens = self.tokens.lock().unwrap();
        if let Some(t) = tokens.get(&key) {
            return t.clone();
        }
        let seg = |s: &str| {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        };
        let resp = ureq::post(format!(
            "{url}/v1/missions/{}/participants/{}/token",
            seg(mission),
            seg(name)
        ))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Authorization", format!("Bearer {admin}"))
        .send(r#"{"rotate": false}"#);
        let token = match resp {
            Ok(mut r) if r.status().as_u16() == 201 => r
                .body_mut()
                .read_json::<Value>()
                .ok()
                .and_then(|v| v["token"].as_str().map(str::to_string)),
            _ => None,
        };
        match token {
            Some(t) => {
                tokens.insert(key, t.clone());
                t
            }
            None => admin.to_string(),
        }
    }
}

/// Start `mission-bus serve --listen 127.0.0.1:0` on `data`; wait for its
/// "listening on" line and read the admin token it wrote.
fn start_server(data: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mission-bus"))
        .args(["--data", data.to_str().expect("UTF-8 path")])
        .args(["serve", "--listen", "127.0.0.1:0", "--log-level", "error"])
        .env_remove("MISSION_BUS_URL")
        .env_remove("MISSION_BUS_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn mission-bus serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout pipe")).lines();
    let first = lines
        .next()
        .and_then(|l| l.ok())
        .expect("serve exited before listening");
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    let _ = lines.next(); // "admin token: PATH"
    std::thread::spawn(move || for _ in lines {}); // keep the pipe drained
    let token = std::fs::read_to_string(data.join("admin.token"))
        .expect("read admin.token")
        .trim()
        .to_string();
    Server {
        child,
        url: format!("http://{addr}"),
        token,
    }
}

/// One invocation of the binary, with assertions on how it ended.
pub struct TestCommand {
    cmd: Command,
    stdin: Option<Vec<u8>>,
    shown: String,
}

impl TestCommand {
    /// Set an environment variable for the child.
    pub fn env(&mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.cmd.env(key, value);
        self
    }

    /// Feed `bytes` on stdin.
    pub fn stdin(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Run to completion and return everything it did.
    pub fn output(&mut self) -> Output {
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("spawn mission-bus");
        if let Some(bytes) = self.stdin.take() {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(&bytes).expect("write stdin");
        }
        child.wait_with_output().expect("wait for mission-bus")
    }

    /// Expect exit 0 and nothing on stderr; return stdout.
    pub fn ok(&mut self) -> String {
        let out = self.output();
        let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "`{}` failed with {}\nstderr: {stderr}\nstdout: {stdout}",
            self.shown,
            out.status
        );
        assert!(
            stderr.is_empty(),
            "`{}` wrote to stderr: {stderr}",
            self.shown
        );
        stdout
    }

    /// Expect exit 0 and exactly one JSON object on stdout.
    pub fn json(&mut self) -> Value {
        let stdout = self.ok();
        assert_eq!(
            stdout.lines().count(),
            1,
            "`{}` printed more than one line: {stdout}",
            self.shown
        );
        parse(&stdout, &self.shown)
    }

    /// Expect exit 0 and JSON Lines on stdout.
    pub fn json_lines(&mut self) -> Vec<Value> {
        let stdout = self.ok();
        stdout.lines().map(|l| parse(l, &self.shown)).collect()
    }

    /// Expect exit `code`, nothing on stdout and exactly one `error: ...`
    /// line on stderr; return that line.
    pub fn fails(&mut self, code: i32) -> String {
        let out = self.output();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "`{}`: wrong exit code\nstderr: {stderr}\nstdout: {stdout}",
            self.shown
        );
        assert!(
            stdout.is_empty(),
            "`{}` failed but wrote to stdout: {stdout}",
            self.shown
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "`{}`: stderr should be one line: {stderr}",
            self.shown
        );
        assert!(
            stderr.starts_with("error: "),
            "`{}`: stderr should start with 'error: ': {stderr}",
            self.shown
        );
        stderr.trim_end().to_string()
    }
}

fn parse(text: &str, shown: &str) -> Value {
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("`{shown}` printed non-JSON ({e}): {text}"))
}

// ----- the backends: the conformance suite runs its tests on both -----------

pub mod pg;

/// The variable that runs a test binary's tests on PostgreSQL.
pub const BACKEND_VAR: &str = "MISSION_BUS_TEST_BACKEND";

/// True when this test process runs its tests on PostgreSQL.
pub fn postgres_mode() -> bool {
    std::env::var(BACKEND_VAR).as_deref() == Ok("postgres")
}

/// Where the store "at" `dir` lives: the sled directory itself, or (in
/// PostgreSQL mode) a database of its own, made on first use and
/// remembered for this process so that reopening finds the same one (the
/// directory itself is left untouched).
pub fn store_url(dir: &Path) -> mission_bus::StoreUrl {
    if let Some(url) = pg_url(dir) {
        return mission_bus::StoreUrl::parse(&url).unwrap();
    }
    mission_bus::StoreUrl::Sled(dir.to_path_buf())
}

/// PostgreSQL mode: the database URL standing for `dir` (made on first use).
pub fn pg_url(dir: &Path) -> Option<String> {
    static DBS: std::sync::Mutex<Option<std::collections::HashMap<PathBuf, String>>> =
        std::sync::Mutex::new(None);
    if !postgres_mode() {
        return None;
    }
    let c = pg::cluster()?;
    let mut dbs = DBS.lock().unwrap_or_else(|p| p.into_inner());
    let url = dbs
        .get_or_insert_with(Default::default)
        .entry(dir.to_path_buf())
        .or_insert_with(|| c.database());
    Some(url.clone())
}

/// `MissionBus::open` on the store at `dir` (see [`store_url`]).
pub fn bus_at(dir: impl AsRef<Path>) -> mission_bus::Result<mission_bus::MissionBus> {
    builder_at(dir).open()
}

/// `MissionBus::builder` on the store at `dir` (see [`store_url`]).
pub fn builder_at(dir: impl AsRef<Path>) -> mission_bus::MissionBusBuilder {
    mission_bus::MissionBus::builder_url(store_url(dir.as_ref()))
}

/// The PostgreSQL half of a test binary: run this same binary again with
/// [`BACKEND_VAR`]=postgres (every test but this one) and require it to
/// pass. Prints `skipped: PostgreSQL half (...)` where PostgreSQL cannot
/// run, and passes.
pub fn postgres_half() {
    if postgres_mode() {
        return;
    }
    let why = pg::pg_bin().err().or_else(|| {
        (!Command::new("id")
            .arg("postgres")
            .output()
            .is_ok_and(|o| o.status.success()))
        .then(|| "there is no 'postgres' user to run the server as".to_string())
    });
    if let Some(why) = why {
        println!("skipped: PostgreSQL half ({why})");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .env(BACKEND_VAR, "postgres")
        .args(["--skip", "postgres_half", "--test-threads", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("test result") || l.contains("FAILED") || l.contains("skipped"))
        .collect();
    println!("PostgreSQL half: {}", summary.join(" | "));
    assert!(
        out.status.success(),
        "the PostgreSQL half failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PostgreSQL mode: run SQL on the database of the store at `dir`.
pub fn pg_sql(dir: &Path, sql: &str) -> String {
    let url = pg_url(dir).expect("a PostgreSQL store here");
    let db = url.rsplit('/').next().unwrap().to_string();
    pg::cluster().unwrap().psql(&db, sql).unwrap()
}

/// True (after saying so) in PostgreSQL mode, for a test of sled's own
/// bytes (trees, layouts): the caller returns.
pub fn sled_only(what: &str) -> bool {
    if postgres_mode() {
        println!("sled only: {what}");
        return true;
    }
    false
}
