//! The auditor's console in a real headless Chromium, driven over WebDriver
//! (chromedriver), against the real `mission-bus serve` binary on seeded
//! data directories: the missions list, the timeline's lanes and handoff
//! arrows, the event detail's hashes (equal to the API's), verify intact
//! and then damaged after the store is tampered with while the server is
//! down, a live event on screen within a second (and the stream resumed
//! without a gap or duplicate after a server restart), a read token that sees
//! nothing of another mission, and the open time of a 1M-event mission's
//! timeline (measured in the browser and reported, not asserted).
//!
//! Screenshots of each page go to `target/console-screenshots/`, with the
//! measured timings in `timings.txt` there.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages
//! `chromium` and `chromium-driver`; `.ci/run` installs them). Without
//! them the test prints "skipped" and passes, so a plain `cargo test` works
//! anywhere.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mission_bus::{Action, AppendOptions, Durability, Json, MissionBus, NewMission};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Upper bound on any single wait.
const DEADLINE: Duration = Duration::from_secs(60);

const A: &str = "mission-a";
const A_TITLE: &str = "Port the parser";
const B: &str = "ops-hidden";
const B_TITLE: &str = "Secret mission B";
const BIG: &str = "big";
/// Events in the big mission: 1M, or `MISSION_BUS_CONSOLE_BIG_EVENTS`.
fn big_events() -> u64 {
    std::env::var("MISSION_BUS_CONSOLE_BIG_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}
/// The payload marker of the record the test tampers with.
const TAMPER_ME: &str = "tamper-me";

// ----- HTTP ------------------------------------------------------------------

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(DEADLINE))
        .build()
        .into()
}

/// One JSON exchange: (status, body or Null).
fn http(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let resp = match method {
        "GET" | "DELETE" => {
            let mut r = if method == "GET" {
                agent.get(url)
            } else {
                agent.delete(url)
            };
            if let Some(t) = token {
                r = r.header("Authorization", format!("Bearer {t}"));
            }
            r.call()
        }
        _ => {
            let mut r = agent.post(url);
            if let Some(t) = token {
                r = r.header("Authorization", format!("Bearer {t}"));
            }
            r.header("Content-Type", "application/json")
                .send(body.map_or(String::new(), |b| b.to_string()))
        }
    };
    let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: {text:?}: {e}"))
    };
    (status, value)
}

// ----- the server process ------------------------------------------------------

/// `mission-bus --data DIR serve --listen 127.0.0.1:0`, as a user runs it.
struct Server {
    child: Child,
    addr: SocketAddr,
    admin: String,
    http: ureq::Agent,
}

impl Server {
    fn start(data: &Path) -> Server {
        Server::start_at(data, "127.0.0.1:0")
    }

    fn start_at(data: &Path, listen: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mission-bus"))
            .arg("--data")
            .arg(data)
            .args(["serve", "--listen", listen])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(|l| l.ok());
            let _ = tx.send(first);
            for _ in lines {} // keep the pipe drained
        });
        let first = rx
            .recv_timeout(DEADLINE)
            .expect("server printed nothing")
            .expect("server exited before listening");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .unwrap();
        let admin = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        Server {
            child,
            addr,
            admin,
            http: agent(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn get(&self, token: &str, path: &str) -> (u16, Value) {
        http(&self.http, "GET", &self.url(path), Some(token), None)
    }

    fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        http(
            &self.http,
            "POST",
            &self.url(path),
            Some(token),
            Some(&body),
        )
    }

    /// SIGTERM and wait for a clean exit (the store is closed after it).
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "server exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "server did not stop");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ----- WebDriver -----------------------------------------------------------------

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver and one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: ureq::Agent,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(shots: PathBuf) -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let client = agent();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(mut r) = client.get(format!("{base}/status")).call() {
                let v: Value =
                    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let (status, v) = http(
            &client,
            "POST",
            &format!("{base}/session"),
            None,
            Some(&caps),
        );
        assert_eq!(status, 200, "new session: {v}");
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        let b = Browser {
            driver,
            base,
            session,
            http: client,
            shots,
            _profile: profile,
        };
        b.cmd(
            "POST",
            "/timeouts",
            Some(json!({"script": 30_000, "pageLoad": 30_000})),
        );
        b
    }

    /// One WebDriver command on the session; its `value`, or a panic
    /// naming the WebDriver error.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let (status, v) = http(&self.http, method, &url, None, body.as_ref());
        assert_eq!(status, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    /// A fresh page load of `url`, even if only its fragment differs from
    /// the current one (which would otherwise not reload the page).
    fn load(&self, url: &str) {
        self.goto("about:blank");
        self.goto(url);
    }

    /// Run `script` (a function body; `arguments` are `args`) in the page.
    fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Run `script` asynchronously: it calls `arguments[arguments.length - 1]`
    /// with its result.
    fn js_async(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Poll `script` until it returns something truthy; returns that.
    fn wait(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.js(script, args.clone());
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.text();
                panic!("timed out waiting for {what}; page text:\n{text}");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("find {css}: {v}"))
            .to_string()
    }

    /// A real (WebDriver) click on the element matching `css`.
    fn click(&self, css: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        );
    }

    fn text(&self) -> String {
        self.js("return document.body.innerText;", json!([]))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn screenshot(&self, name: &str) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Sign in through the login form (the token is typed, as a user would).
    fn sign_in(&self, token: &str) {
        self.sign_in_with(token, false);
    }

    /// Sign in, ticking "keep it for this tab" when `keep`.
    fn sign_in_with(&self, token: &str, keep: bool) {
        self.wait(
            "the login form",
            "return !document.getElementById('login-view').hidden;",
            json!([]),
        );
        self.type_into("#token-input", token);
        let ticked = self.js(
            "return document.getElementById('keep-token').checked;",
            json!([]),
        );
        if ticked != json!(keep) {
            self.click("#keep-token");
        }
        self.click("#login-button");
        self.wait(
            "signed in",
            "return document.getElementById('login-view').hidden && \
             document.getElementById('whoami').textContent;",
            json!([]),
        );
    }

    fn sign_out(&self) {
        self.click("#signout");
        self.wait(
            "the login form",
            "return !document.getElementById('login-view').hidden;",
            json!([]),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = http(&self.http, "DELETE", &url, None, None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= if c == b'=' { 0 } else { val(c) } << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..4 - pad]);
    }
    out
}

// ----- seeding --------------------------------------------------------------------

/// Tokens of the seeded missions.
struct Seeded {
    ada: String,
    rita: String,
    /// Sequence of the message whose payload says `TAMPER_ME`.
    tamper_seq: u64,
}

/// Mission A: a lead, two writers, a reader and an auditor, messages,
/// checkpoints and three handoffs; mission B: someone else's.
fn seed_small(dir: &Path) -> Seeded {
    let bus = MissionBus::open(dir).unwrap();
    bus.create_mission(NewMission::new(A, A_TITLE).lead("lead"))
        .unwrap();
    for (name, role) in [
        ("ada", "write"),
        ("bob", "write"),
        ("rita", "read"),
        ("audrey", "audit"),
    ] {
        bus.join(A, name, role, json!({"host": format!("{name}-box")}).into())
            .unwrap();
    }
    bus.publish(
        A,
        "lead",
        "plan",
        json!({"steps": ["lex", "parse", "check"]}).into(),
    )
    .unwrap();
    let tamper_seq = bus
        .publish(A, "ada", "status", json!({"note": TAMPER_ME}).into())
        .unwrap()
        .sequence;
    let cp1 = bus
        .create_checkpoint(
            A,
            "ada",
            "lexer done",
            json!({"next": "parser", "tokens": 42}).into(),
            vec!["src/lexer.rs".into()],
        )
        .unwrap();
    bus.handoff(A, "ada", "bob", cp1.id, "your turn: the parser")
        .unwrap();
    bus.publish(A, "bob", "status", json!({"step": "parser"}).into())
        .unwrap();
    let cp2 = bus
        .create_checkpoint(
            A,
            "bob",
            "parser done",
            json!({"next": "checks"}).into(),
            vec!["src/parser.rs".into()],
        )
        .unwrap();
    bus.handoff(A, "bob", "lead", cp2.id, "please review")
        .unwrap();
    bus.publish(A, "lead", "review", json!({"ok": true}).into())
        .unwrap();
    let h3 = bus
        .handoff(A, "lead", "ada", cp2.id, "type checks next")
        .unwrap();
    // Later event types: a handoff lifecycle step and a cell's two events.
    bus.accept_handoff(A, "ada", h3.id, 600_000).unwrap();
    let cell = bus
        .append(
            A,
            "ada",
            Action::StartCell {
                profile: "level1-directory".into(),
                mechanism: "directory_workspace".into(),
                workspace: "/tmp/ada-cell".into(),
                command: vec!["cargo".into(), "test".into()],
            },
            &AppendOptions::default(),
        )
        .unwrap();
    bus.append(
        A,
        "ada",
        Action::EndCell {
            cell_id: cell.id,
            exit_code: Some(0),
            signal: None,
            duration_ms: 1200,
            error: String::new(),
        },
        &AppendOptions::default(),
    )
    .unwrap();
    bus.create_mission(NewMission::new(B, B_TITLE).lead("xavier"))
        .unwrap();
    bus.publish(B, "xavier", "classified", json!({"launch": "codes"}).into())
        .unwrap();
    let seeded = Seeded {
        ada: bus.issue_token(A, "ada").unwrap(),
        rita: bus.issue_token(A, "rita").unwrap(),
        tamper_seq,
    };
    bus.close();
    seeded
}

/// A mission of exactly `big_events()` events through the library (relaxed
/// durability, batches of 1000): four lanes, a checkpoint and four handoffs
/// per batch.
fn seed_big(dir: &Path) -> Duration {
    let started = Instant::now();
    let bus = MissionBus::builder(dir)
        .durability(Durability::Relaxed)
        .open()
        .unwrap();
    bus.create_mission(NewMission::new(BIG, "A million events").lead("lead"))
        .unwrap();
    for name in ["ada", "bob", "cy"] {
        bus.join(BIG, name, "write", Json::empty_object()).unwrap();
    }
    let names = ["lead", "ada", "bob", "cy"];
    let mut head = bus.state(BIG).unwrap().head;
    let mut round = 0usize;
    while head < big_events() {
        let sender = names[round % 4];
        let cp = bus
            .create_checkpoint(BIG, sender, "batch", json!({"round": round}).into(), vec![])
            .unwrap();
        head = cp.sequence;
        let n = (big_events() - head).min(999) as usize;
        if n == 0 {
            break;
        }
        let items: Vec<(String, Action)> = (0..n)
            .map(|i| {
                let from = names[(round + i) % 4];
                if i % 250 == 249 {
                    let to = names[(round + i + 1) % 4];
                    (
                        from.to_string(),
                        Action::Handoff {
                            recipient: to.to_string(),
                            checkpoint_id: cp.id,
                            note: format!("round {round}"),
                        },
                    )
                } else {
                    (
                        from.to_string(),
                        Action::Publish {
                            topic: "tick".into(),
                            payload: json!({"i": head + 1 + i as u64}).into(),
                        },
                    )
                }
            })
            .collect();
        head = bus
            .append_batch(BIG, items, None)
            .unwrap()
            .last()
            .unwrap()
            .sequence;
        round += 1;
    }
    assert_eq!(head, big_events());
    bus.close();
    started.elapsed()
}

/// Rewrite the payload of record `seq` of `mission` in place (same length,
/// valid CRC), as a forger would, with the server stopped.
fn tamper(dir: &Path, mission: &str, seq: u64) {
    let db = sled::open(dir).unwrap();
    let entry = db
        .open_tree("missions")
        .unwrap()
        .get(mission)
        .unwrap()
        .unwrap();
    let no = u64::from_be_bytes(entry[1..9].try_into().unwrap());
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&no.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    let events = db.open_tree("events").unwrap();
    let mut v = events.get(key).unwrap().unwrap().to_vec();
    let at = v
        .windows(TAMPER_ME.len())
        .position(|w| w == TAMPER_ME.as_bytes())
        .expect("marker in the record");
    v[at..at + TAMPER_ME.len()].copy_from_slice(b"TAMPERED!");
    let crc = crc32fast::hash(&v[5..]);
    v[1..5].copy_from_slice(&crc.to_be_bytes());
    events.insert(key, v).unwrap();
    db.flush().unwrap();
}

// ----- page helpers ------------------------------------------------------------------

fn wait_timeline(b: &Browser, mission: &str) -> Value {
    b.wait(
        "the timeline",
        "const t = document.getElementById('timeline'); \
         return t.getAttribute('data-mission') === arguments[0] && \
           ['ready', 'error'].includes(t.getAttribute('data-state')) && t.getAttribute('data-state');",
        json!([mission]),
    )
}

/// Run `action` (JS) in the page and measure, in the page, how long until
/// the timeline of `mission` is ready again and painted; returns
/// `{ms, from, to, marks}`.
fn timed_timeline(b: &Browser, mission: &str, action: &str) -> Value {
    let script = format!(
        "const done = arguments[arguments.length - 1]; \
         const t = document.getElementById('timeline'); \
         t.removeAttribute('data-state'); \
         const t0 = performance.now(); \
         {action}; \
         (function poll() {{ \
           if (t.getAttribute('data-mission') === arguments0 && t.getAttribute('data-state') === 'ready') {{ \
             requestAnimationFrame(() => done({{ms: performance.now() - t0, \
               from: Number(t.getAttribute('data-from')), to: Number(t.getAttribute('data-to')), \
               marks: t.querySelectorAll('.ev').length, \
               state: t.getAttribute('data-state')}})); \
           }} else if (t.getAttribute('data-state') === 'error') {{ \
             done({{ms: -1, state: 'error', text: document.getElementById('timeline-status').textContent}}); \
           }} else {{ requestAnimationFrame(poll); }} \
         }})();"
    )
    .replace("arguments0", &serde_json::to_string(mission).unwrap());
    let v = b.js_async(&script, json!([]));
    assert_eq!(v["state"], "ready", "{v}");
    v
}

/// The target directory (`CARGO_TARGET_TMPDIR` is `target/tmp`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn screenshots_dir() -> PathBuf {
    let dir = target_dir().join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Bump when `seed_big` changes what it writes.
const BIG_FIXTURE_VERSION: u32 = 2;

/// A private copy of the big mission's store, and how it was obtained.
///
/// Writing 1M events through this unoptimized test build takes minutes
/// (sled and the writer run without optimizations), so the store is
/// written once per target directory, events count and fixture version
/// into `target/console-fixtures/`, and copied from there on later runs.
/// The cache is filled by an atomic rename, so a half-written store is
/// never used; the server only ever opens the copy.
fn big_store() -> (tempfile::TempDir, String) {
    let fixtures = target_dir().join("console-fixtures");
    let cached = fixtures.join(format!("big-{}-v{BIG_FIXTURE_VERSION}", big_events()));
    let mut how = String::new();
    if !cached.exists() {
        std::fs::create_dir_all(&fixtures).unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let building = fixtures.join(format!("building-{}-{nanos}", std::process::id()));
        let took = seed_big(&building);
        if std::fs::rename(&building, &cached).is_err() {
            // Another run cached it first; theirs is as good.
            let _ = std::fs::remove_dir_all(&building);
        }
        how = format!(
            "written through the library in {:.1} s and cached in {}; ",
            took.as_secs_f64(),
            cached.display()
        );
    }
    let copy = tempfile::tempdir().unwrap();
    let started = Instant::now();
    copy_dir(&cached, copy.path());
    how += &format!(
        "copied from the cache in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (copy, how)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

// ----- the test ------------------------------------------------------------------------

#[test]
fn console_in_a_real_browser() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        println!("skipped: chromium/chromedriver not installed ({CHROMIUM}, {CHROMEDRIVER})");
        eprintln!("console test skipped: chromium/chromedriver not installed");
        return;
    }
    let test_started = Instant::now();
    let mut timings = String::new();

    // The 1M-event mission's store is prepared in the background meanwhile.
    let big_seed = thread::spawn(big_store);

    let dir = tempfile::tempdir().unwrap();
    let seeded = seed_small(dir.path());
    let server = Server::start(dir.path());
    let admin = server.admin.clone();
    let b = Browser::start(screenshots_dir());

    // ---- sign in; the page itself is served with a strict CSP --------------
    let resp = agent().get(server.url("/console/")).call().unwrap();
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    b.goto(&server.url("/console/"));
    b.wait(
        "the login form",
        "return !document.getElementById('login-view').hidden;",
        json!([]),
    );
    b.screenshot("01-login");
    b.sign_in(&admin);

    // ---- missions list ---------------------------------------------------------
    let rows = b.wait(
        "the missions list",
        "const r = [...document.querySelectorAll('#missions-body tr[data-mission]')]; \
         return r.length && r.map(tr => [tr.dataset.mission, tr.querySelector('.title').textContent, \
           tr.querySelector('.head').textContent, tr.querySelector('.participants').textContent]);",
        json!([]),
    );
    let (_, list) = server.get(&admin, "/v1/missions");
    let api_rows: Vec<Value> = list["missions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let participants: Vec<String> = m["participants"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    format!(
                        "{} ({})",
                        p["name"].as_str().unwrap(),
                        p["role"].as_str().unwrap()
                    )
                })
                .collect();
            json!([
                m["mission_id"],
                m["title"],
                m["head_sequence"].to_string(),
                participants.join(", ")
            ])
        })
        .collect();
    assert_eq!(rows, json!(api_rows), "the list shows what the API returns");
    assert_eq!(rows[0][0], A);
    assert_eq!(rows[0][1], A_TITLE);
    assert_eq!(rows[1][1], B_TITLE);
    // Search by title, then by id.
    b.type_into("#mission-search", "parser");
    let shown = b.js(
        "return [...document.querySelectorAll('#missions-body tr[data-mission]')].map(tr => tr.dataset.mission);",
        json!([]),
    );
    assert_eq!(shown, json!([A]));
    b.type_into("#mission-search", "hidden");
    let shown = b.js(
        "return [...document.querySelectorAll('#missions-body tr[data-mission]')].map(tr => tr.dataset.mission);",
        json!([]),
    );
    assert_eq!(shown, json!([B]));
    b.type_into("#mission-search", "");
    b.js(
        "document.getElementById('mission-search').dispatchEvent(new Event('input'));",
        json!([]),
    );
    b.screenshot("02-missions");

    // ---- timeline: one lane per participant, one arrow per handoff -----------
    b.click(&format!(
        "#missions-body tr[data-mission='{A}'] a.mission-link"
    ));
    assert_eq!(wait_timeline(&b, A), "ready");
    let (_, summary) = server.get(&admin, &format!("/v1/missions/{A}"));
    let head = summary["head_sequence"].as_u64().unwrap();
    let (_, page) = server.get(
        &admin,
        &format!("/v1/missions/{A}/events?from=1&limit=1000"),
    );
    let events = page["events"].as_array().unwrap().clone();
    assert_eq!(events.len() as u64, head);
    let lanes = b.js(
        "return [...document.querySelectorAll('#timeline .lane')].map(g => g.dataset.participant);",
        json!([]),
    );
    let participants: Vec<&str> = summary["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(participants.len(), 5);
    assert_eq!(lanes, json!(participants), "one lane per participant");
    let arrows = b.js(
        "return [...document.querySelectorAll('#timeline .handoff-arrow')].map(a => \
           [Number(a.dataset.seq), a.dataset.from, a.dataset.to]);",
        json!([]),
    );
    let handoffs: Vec<Value> = events
        .iter()
        .filter(|e| e["event_type"] == "handoff")
        .map(|e| json!([e["sequence"], e["sender"], e["recipient"]]))
        .collect();
    assert_eq!(handoffs.len(), 3);
    assert_eq!(
        arrows,
        json!(handoffs),
        "one arrow per handoff, sender to recipient"
    );
    let marks = b.js(
        "return [...document.querySelectorAll('#timeline .ev')].map(m => [Number(m.dataset.seq), m.dataset.type, m.dataset.sender]);",
        json!([]),
    );
    let expected: Vec<Value> = events
        .iter()
        .map(|e| json!([e["sequence"], e["event_type"], e["sender"]]))
        .collect();
    assert_eq!(
        marks,
        json!(expected),
        "every event, in order, with its type"
    );
    let checkpoint_marks = b.js(
        "return document.querySelectorAll('#timeline path.ev-checkpoint').length;",
        json!([]),
    );
    assert_eq!(checkpoint_marks, json!(summary["counts"]["checkpoints"]));
    // Later types are drawn in their family's colour, and the legend says so.
    let kinds = b.js(
        "return [...document.querySelectorAll('#timeline .ev')].filter(m => \
           ['handoff_accepted', 'cell_started', 'cell_exited'].includes(m.dataset.type)).map(m => \
           [m.dataset.type, m.classList.contains('ev-lifecycle'), m.classList.contains('ev-cell'), \
            m.classList.contains('ev-other')]);",
        json!([]),
    );
    assert_eq!(
        kinds,
        json!([
            ["handoff_accepted", true, false, false],
            ["cell_started", false, true, false],
            ["cell_exited", false, true, false],
        ]),
        "a lifecycle event and the cell events in their families' classes"
    );
    let legend = b.js(
        "return [...document.querySelectorAll('#legend .legend-item[data-family]')].map(i => \
           [i.dataset.family, i.textContent, getComputedStyle(i.querySelector('.swatch')).backgroundColor]);",
        json!([]),
    );
    let families: Vec<&str> = legend
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[0].as_str().unwrap())
        .collect();
    assert_eq!(
        families,
        [
            "lifecycle",
            "membership",
            "cell",
            "integrity",
            "history",
            "other"
        ]
    );
    assert_eq!(legend[0][1], "handoff lifecycle");
    assert_eq!(legend[2][1], "cells");
    let colours: BTreeSet<&str> = legend
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[2].as_str().unwrap())
        .collect();
    assert_eq!(colours.len(), 6, "one colour per family: {legend}");
    let drawn = |seq: &Value| {
        b.js(
            "const m = document.querySelector('#timeline .ev[data-seq=\"' + arguments[0] + '\"]'); \
             return m && getComputedStyle(m).fill;",
            json!([seq]),
        )
    };
    let cell_seq = &events
        .iter()
        .find(|e| e["event_type"] == "cell_started")
        .unwrap()["sequence"];
    assert_eq!(
        drawn(cell_seq),
        legend[2][2],
        "the cell mark has its legend colour"
    );
    // A type newer than the console (the server's answer rewritten in the
    // page) is still drawn, as "other".
    b.js(
        "window.__fetch = window.fetch; \
         window.fetch = async (...a) => { \
           const r = await window.__fetch(...a); \
           if (!String(a[0]).includes('/events?')) return r; \
           const body = await r.json(); \
           for (const e of body.events || []) if (e.event_type === 'cell_exited') e.event_type = 'zz_future_type'; \
           return new Response(JSON.stringify(body), {status: r.status, headers: r.headers}); }; \
         location.hash = '#/'; ",
        json!([]),
    );
    b.wait(
        "the missions list again",
        "return !document.getElementById('missions-view').hidden;",
        json!([]),
    );
    b.js(&format!("location.hash = '#/m/{A}';"), json!([]));
    let future = b.wait(
        "the rewritten timeline",
        "const m = document.querySelector('#timeline .ev[data-type=\"zz_future_type\"]'); \
         return m && [m.classList.contains('ev-other'), getComputedStyle(m).fill];",
        json!([]),
    );
    assert_eq!(future[0], true, "an unknown type draws as other");
    assert_eq!(future[1], legend[5][2], "in the 'other' legend colour");
    b.js(
        "window.fetch = window.__fetch; location.hash = '#/';",
        json!([]),
    );
    b.wait(
        "the missions list again",
        "return !document.getElementById('missions-view').hidden;",
        json!([]),
    );
    b.js(&format!("location.hash = '#/m/{A}';"), json!([]));
    assert_eq!(wait_timeline(&b, A), "ready");
    b.screenshot("03-timeline");

    // ---- event detail: hashes equal the API's and link up -------------------
    let cp = events
        .iter()
        .find(|e| e["event_type"] == "checkpoint")
        .unwrap();
    let cp_seq = cp["sequence"].as_u64().unwrap();
    b.click(&format!("#timeline .ev[data-seq='{cp_seq}']"));
    b.wait(
        "the event detail",
        "const d = document.getElementById('detail'); \
         return !d.hidden && d.getAttribute('data-state') === 'ready' && d.getAttribute('data-seq') === String(arguments[0]);",
        json!([cp_seq]),
    );
    let shown = b.js(
        "const t = id => document.getElementById(id).textContent; \
         return {seq: t('d-seq'), ts: t('d-ts'), id: t('d-id'), hash: t('d-hash'), prev: t('d-prev'), body: t('d-body')};",
        json!([]),
    );
    let (_, rec) = server.get(&admin, &format!("/v1/missions/{A}/events/{cp_seq}"));
    let (_, before) = server.get(&admin, &format!("/v1/missions/{A}/events/{}", cp_seq - 1));
    let (_, after) = server.get(&admin, &format!("/v1/missions/{A}/events/{}", cp_seq + 1));
    assert_eq!(shown["seq"], cp_seq.to_string());
    assert_eq!(shown["ts"], cp["timestamp"]);
    assert_eq!(shown["id"], cp["checkpoint_id"]);
    assert_eq!(shown["hash"], rec["hash"]);
    assert_eq!(shown["prev"], rec["previous_hash"]);
    assert_eq!(rec["previous_hash"], before["hash"], "the chain links");
    assert_eq!(after["previous_hash"], rec["hash"], "the chain links");
    assert_eq!(shown["hash"].as_str().unwrap().len(), 64);
    let state: Value = serde_json::from_str(shown["body"].as_str().unwrap()).unwrap();
    assert_eq!(state, cp["state"], "the state, pretty-printed");
    assert!(
        shown["body"].as_str().unwrap().contains("\n  "),
        "pretty-printed"
    );
    b.screenshot("04-detail");

    // ---- verify: intact ---------------------------------------------------
    b.click("#verify-button");
    let intact = b.wait(
        "the verify result",
        "return document.getElementById('verify-result').getAttribute('data-intact');",
        json!([]),
    );
    assert_eq!(intact, "true");
    let (_, report) = server.get(&admin, &format!("/v1/missions/{A}/verify"));
    let shown_head_hash = b.js(
        "return document.getElementById('verify-head-hash').textContent;",
        json!([]),
    );
    assert_eq!(shown_head_hash, report["head_hash"]);
    let (_, head_rec) = server.get(&admin, &format!("/v1/missions/{A}/events/{head}"));
    assert_eq!(
        head_rec["hash"], report["head_hash"],
        "the head record's hash is the head hash"
    );
    b.screenshot("05-verify-intact");

    // ---- live: a new event is on screen within a second -------------------
    b.click("#detail-close");
    let sent = Instant::now();
    let (status, ev) = server.post(
        &seeded.ada,
        &format!("/v1/missions/{A}/messages"),
        json!({"topic": "live", "payload": {"hello": "auditor"}}),
    );
    assert_eq!(status, 201, "{ev}");
    let live_seq = ev["sequence"].as_u64().unwrap();
    b.wait(
        "the live event",
        "return document.querySelector(`#timeline .ev[data-seq='${arguments[0]}']`) !== null;",
        json!([live_seq]),
    );
    let live_ms = sent.elapsed().as_secs_f64() * 1000.0;
    assert!(
        live_ms < 1000.0,
        "the live event took {live_ms:.0} ms to appear"
    );
    let head_pill = b.js(
        "return document.getElementById('m-head').textContent;",
        json!([]),
    );
    assert_eq!(head_pill, format!("head {live_seq}"));
    writeln!(
        timings,
        "live event on screen after the POST returned: {live_ms:.0} ms (incl. the POST)"
    )
    .unwrap();
    b.screenshot("06-live");

    // ---- the stream resumes after a restart, without a gap or duplicate ------
    let addr = server.addr.to_string();
    server.stop();
    b.wait(
        "the page to notice the stream ended",
        "return document.getElementById('m-live').textContent === 'offline';",
        json!([]),
    );
    let server = Server::start_at(dir.path(), &addr);
    // Written while the page is reconnecting: it must come from catch-up.
    let (status, ev) = server.post(
        &seeded.ada,
        &format!("/v1/missions/{A}/messages"),
        json!({"topic": "live", "payload": {"after": "restart"}}),
    );
    assert_eq!(status, 201, "{ev}");
    let resumed_seq = ev["sequence"].as_u64().unwrap();
    b.wait(
        "the stream to resume",
        "return document.getElementById('m-live').textContent === 'live' && \
           document.querySelector(`#timeline .ev[data-seq='${arguments[0]}']`) !== null;",
        json!([resumed_seq]),
    );
    let seqs = b.js(
        "return [...document.querySelectorAll('#timeline .ev')].map(m => Number(m.dataset.seq));",
        json!([]),
    );
    let all: Vec<u64> = (1..=resumed_seq).collect();
    assert_eq!(seqs, json!(all), "no gap, no duplicate after the reconnect");

    // ---- the token stays in the tab -----------------------------------------
    let leaks = b.js(
        "const tok = arguments[0]; \
         return {url: location.href.includes(tok), local: localStorage.length, \
           session: Object.keys(sessionStorage).map(k => sessionStorage.getItem(k)).some(v => v && v.includes(tok)), \
           cookie: document.cookie, \
           requested: performance.getEntriesByType('resource').some(e => e.name.includes(tok))};",
        json!([admin]),
    );
    assert_eq!(
        leaks,
        json!({"url": false, "local": 0, "session": false, "cookie": "", "requested": false})
    );

    // ---- a read token of mission A sees nothing of mission B ----------------
    b.sign_out();
    assert_eq!(
        b.js(
            "return document.querySelectorAll('#missions-body tr, #timeline *').length;",
            json!([])
        ),
        0,
        "signing out leaves nothing of the last token's data in the page"
    );
    b.load(&server.url("/console/#/"));
    b.sign_in(&seeded.rita);
    let rows = b.wait(
        "the missions list",
        "const r = [...document.querySelectorAll('#missions-body tr[data-mission]')]; return r.length && r.map(tr => tr.dataset.mission);",
        json!([]),
    );
    assert_eq!(rows, json!([A]));
    let text = b.text();
    assert!(!text.contains(B_TITLE) && !text.contains(B), "{text}");
    let who = b.js(
        "return document.getElementById('whoami').textContent;",
        json!([]),
    );
    assert_eq!(who, format!("rita (read) in {A}"));
    // Its own mission opens, without verify (no audit).
    b.js(&format!("location.hash = '#/m/{A}';"), json!([]));
    assert_eq!(wait_timeline(&b, A), "ready");
    assert_eq!(
        b.js(
            "return document.getElementById('verify-button').disabled;",
            json!([])
        ),
        true
    );
    // Mission B by direct URL: a fresh page load (the token lives in the tab
    // only, so it is asked for again), straight to B. This time the token
    // is kept for the tab (sessionStorage), so a reload keeps it.
    b.load(&server.url(&format!("/console/#/m/{B}")));
    b.sign_in_with(&seeded.rita, true);
    let flash = b.wait(
        "the refusal",
        "const f = document.getElementById('flash'); return !f.hidden && f.textContent;",
        json!([]),
    );
    assert!(flash.as_str().unwrap().contains("may not read"), "{flash}");
    let state = wait_timeline(&b, B);
    assert_eq!(state, "error");
    let seen = b.js(
        "return {lanes: document.querySelectorAll('#timeline .lane').length, \
           marks: document.querySelectorAll('#timeline .ev').length, text: document.body.innerText};",
        json!([]),
    );
    assert_eq!(seen["lanes"], 0);
    assert_eq!(seen["marks"], 0);
    let text = seen["text"].as_str().unwrap();
    assert!(
        !text.contains(B_TITLE) && !text.contains("xavier"),
        "{text}"
    );
    b.screenshot("07-read-token-denied");
    b.load(&server.url(&format!("/console/#/m/{B}")));
    b.wait(
        "still signed in after a reload",
        "return document.getElementById('whoami').textContent;",
        json!([]),
    );
    assert_eq!(wait_timeline(&b, B), "error", "still refused");
    let kept = b.js(
        "return {local: localStorage.length, url: location.href.includes(arguments[0]), \
           session: Object.values(sessionStorage).includes(arguments[0])};",
        json!([seeded.rita]),
    );
    assert_eq!(kept, json!({"local": 0, "url": false, "session": true}));
    b.sign_out();
    let left = b.js("return sessionStorage.length;", json!([]));
    assert_eq!(left, 0, "signing out forgets the kept token");
    // And the API agrees, endpoint by endpoint.
    let (_, list) = server.get(&seeded.rita, "/v1/missions");
    let ids: Vec<&str> = list["missions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mission_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [A]);
    for path in [
        format!("/v1/missions/{B}"),
        format!("/v1/missions/{B}/events?from=1"),
        format!("/v1/missions/{B}/events/1"),
        format!("/v1/missions/{B}/events/stream"),
        format!("/v1/missions/{B}/verify"),
    ] {
        let (status, body) = server.get(&seeded.rita, &path);
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"]["code"], "wrong_mission", "{path}");
        assert!(!body.to_string().contains(B_TITLE));
    }

    // ---- tamper with the store, restart, verify shows where -----------------
    server.stop();
    tamper(dir.path(), A, seeded.tamper_seq);
    let server = Server::start(dir.path());
    b.goto(&server.url(&format!("/console/#/m/{A}")));
    b.sign_in(&admin);
    // Reading the window hits the broken link (the record after the forged
    // one); every other event is still shown.
    assert_eq!(wait_timeline(&b, A), "error");
    let shown = b.js(
        "return [...document.querySelectorAll('#timeline .ev')].map(m => Number(m.dataset.seq));",
        json!([]),
    );
    let readable: Vec<u64> = (1..=resumed_seq)
        .filter(|s| *s != seeded.tamper_seq && *s != seeded.tamper_seq + 1)
        .collect();
    assert_eq!(shown, json!(readable));
    b.click("#verify-button");
    let intact = b.wait(
        "the verify result",
        "return document.getElementById('verify-result').getAttribute('data-intact');",
        json!([]),
    );
    assert_eq!(intact, "false");
    // The rewritten record has a valid checksum; the next record no longer
    // links to it, so the chain breaks there.
    let where_ = seeded.tamper_seq + 1;
    let (_, report) = server.get(&admin, &format!("/v1/missions/{A}/verify"));
    assert_eq!(report["problems"][0]["sequence"], where_, "{report}");
    let shown = b.js(
        "const r = document.getElementById('verify-result'); \
         return {text: r.innerText, first: Number(r.querySelector('li').dataset.seq), \
           band: document.querySelector(`#timeline [data-damaged-seq='${arguments[0]}']`) !== null};",
        json!([where_]),
    );
    assert_eq!(shown["first"], where_);
    assert_eq!(shown["band"], true, "the damage is marked on the timeline");
    let text = shown["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("sequence {where_}")) && text.contains("hash chain broken"),
        "{text}"
    );
    b.screenshot("08-verify-damaged");
    b.js("location.hash = '#/';", json!([]));
    let status = b.wait(
        "the missions list",
        "const c = document.querySelector(`#missions-body tr[data-mission='${arguments[0]}'] .verify-status`); return c && c.textContent;",
        json!([A]),
    );
    assert!(
        status
            .as_str()
            .unwrap()
            .contains(&format!("damaged at sequence {where_}")),
        "{status}"
    );
    b.screenshot("09-missions-damaged");
    server.stop();

    // ---- a 1M-event mission opens at its tail in under a second ------------
    let (big_dir, how) = big_seed.join().expect("seeding the big mission");
    writeln!(
        timings,
        "store of the {}-event mission: {how}",
        big_events()
    )
    .unwrap();
    let big = Server::start(big_dir.path());
    let (status, summary) = big.get(&big.admin, &format!("/v1/missions/{BIG}"));
    assert!(
        status == 200 && summary["head_sequence"] == big_events(),
        "the cached store in target/console-fixtures does not open as expected \
         (delete that directory to rebuild it): {status} {summary}"
    );
    b.goto(&big.url("/console/"));
    let list_started = Instant::now();
    b.sign_in(&big.admin);
    b.wait(
        "the missions list",
        "return document.querySelector(`#missions-body tr[data-mission='${arguments[0]}']`) !== null;",
        json!([BIG]),
    );
    let list_ms = list_started.elapsed().as_secs_f64() * 1000.0;
    // Opened three times (from the missions page each time): the first
    // open, and two more to show the spread on a busy machine.
    let mut opens = Vec::new();
    for i in 0..3 {
        if i > 0 {
            b.js("location.hash = '#/';", json!([]));
            b.wait(
                "the missions page",
                "return !document.getElementById('missions-view').hidden && \
                   document.querySelectorAll('#missions-body tr').length > 0;",
                json!([]),
            );
        }
        let open = timed_timeline(&b, BIG, &format!("location.hash = '#/m/{BIG}'"));
        assert_eq!(open["to"], big_events(), "opens at the tail");
        assert_eq!(open["from"], big_events() - 199);
        assert_eq!(open["marks"], 200, "only the window is loaded");
        opens.push(open["ms"].as_f64().unwrap());
    }
    let lanes = b.js(
        "return document.querySelectorAll('#timeline .lane').length;",
        json!([]),
    );
    assert_eq!(lanes, 4);
    b.screenshot("10-big-timeline");
    let wide = timed_timeline(&b, BIG, "document.getElementById('zoom-out').click()");
    let widest = timed_timeline(&b, BIG, "document.getElementById('zoom-out').click()");
    assert_eq!(widest["marks"], 1000);
    b.screenshot("11-big-timeline-1000");
    let older = timed_timeline(&b, BIG, "document.getElementById('page-older').click()");
    assert_eq!(older["to"], big_events() - 1000);
    let middle = big_events() / 2;
    let jump = timed_timeline(
        &b,
        BIG,
        &format!(
            "const j = document.getElementById('jump-input'); j.value = '{middle}'; \
             j.dispatchEvent(new Event('change'))"
        ),
    );
    assert!(
        jump["from"].as_u64().unwrap() <= middle && jump["to"].as_u64().unwrap() >= middle,
        "{jump}"
    );
    let first = timed_timeline(&b, BIG, "document.getElementById('page-first').click()");
    assert_eq!(first["from"], 1);
    b.screenshot("12-big-timeline-first");
    // Never more than one window in the page.
    let max_limit = b.js(
        "return Math.max(...performance.getEntriesByType('resource') \
           .map(e => new URL(e.name)).filter(u => u.pathname.endsWith('/events')) \
           .map(u => Number(u.searchParams.get('limit'))));",
        json!([]),
    );
    assert!(max_limit.as_u64().unwrap() <= 1000, "{max_limit}");
    let ms = |v: &Value| v["ms"].as_f64().unwrap();
    writeln!(
        timings,
        "1M-event mission, missions list after sign-in: {list_ms:.0} ms"
    )
    .unwrap();
    writeln!(
        timings,
        "1M-event mission, timeline open at the tail (200 events): {:.0} ms first, then {:.0} and {:.0} ms",
        opens[0], opens[1], opens[2]
    )
    .unwrap();
    writeln!(
        timings,
        "1M-event mission, zoom out to 500 events: {:.0} ms",
        ms(&wide)
    )
    .unwrap();
    writeln!(
        timings,
        "1M-event mission, zoom out to 1000 events: {:.0} ms",
        ms(&widest)
    )
    .unwrap();
    writeln!(
        timings,
        "1M-event mission, page older (1000 events): {:.0} ms",
        ms(&older)
    )
    .unwrap();
    writeln!(
        timings,
        "1M-event mission, jump to sequence {middle}: {:.0} ms",
        ms(&jump)
    )
    .unwrap();
    writeln!(
        timings,
        "1M-event mission, first page: {:.0} ms",
        ms(&first)
    )
    .unwrap();
    big.stop();
    writeln!(
        timings,
        "whole test: {:.1} s",
        test_started.elapsed().as_secs_f64()
    )
    .unwrap();
    std::fs::write(b.shots.join("timings.txt"), &timings).unwrap();
    let shots: BTreeSet<String> = std::fs::read_dir(&b.shots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(shots.len() >= 12, "{shots:?}");
    println!(
        "console timings (screenshots in {}):\n{timings}",
        b.shots.display()
    );
}

/// The console's files and JSON views over HTTP, without a browser (runs
/// everywhere): content types and CSP, who sees which missions, hashes
/// that link into the chain and end at the verify report's head hash.
#[test]
fn console_files_and_views_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = seed_small(dir.path());
    let server = Server::start(dir.path());
    let admin = server.admin.clone();
    let client = agent();

    for (path, ct) in [
        ("/console/", "text/html"),
        ("/console", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let resp = client.get(server.url(path)).call().unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let h = resp.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(ct),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    let html = client
        .get(server.url("/console/"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "no inline script or style"
    );

    // Who sees what.
    let (status, list) = server.get(&admin, "/v1/missions");
    assert_eq!(status, 200);
    assert_eq!(list["caller"]["kind"], "admin");
    let ids: Vec<&str> = list["missions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mission_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [A, B]);
    let a = &list["missions"][0];
    assert_eq!(a["title"], A_TITLE);
    assert_eq!(a["participants"].as_array().unwrap().len(), 5);
    assert_eq!(
        a["counts"],
        json!({"messages": 4, "checkpoints": 2, "handoffs": 3})
    );
    assert_eq!(a["verify"], Value::Null, "not verified yet");
    let (_, rita_list) = server.get(&seeded.rita, "/v1/missions");
    assert_eq!(rita_list["caller"]["name"], "rita");
    assert_eq!(rita_list["caller"]["capabilities"], json!(["read"]));
    assert_eq!(rita_list["missions"].as_array().unwrap().len(), 1);
    assert_eq!(rita_list["missions"][0]["mission_id"], A);
    let (status, body) = server.get(&seeded.rita, &format!("/v1/missions/{B}"));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("wrong_mission"))
    );
    // A participant whose role lacks `read` sees no mission at all.
    let (status, created) = server.post(
        &admin,
        "/v1/missions",
        json!({"mission_id": "blind", "title": "no read", "lead": "boss",
               "profiles": {"roles": {"lead": ["publish", "read", "audit"], "blind": ["publish"]}}}),
    );
    assert_eq!(status, 201, "{created}");
    let boss = created["lead_token"].as_str().unwrap().to_string();
    let (status, added) = server.post(
        &boss,
        "/v1/missions/blind/participants",
        json!({"name": "mole", "role": "blind"}),
    );
    assert_eq!(status, 201, "{added}");
    let mole = added["token"].as_str().unwrap();
    let (status, list) = server.get(mole, "/v1/missions");
    assert_eq!(status, 200);
    assert_eq!(list["missions"], json!([]));
    assert_eq!(list["caller"]["capabilities"], json!(["publish"]));
    let (status, body) = server.get(mole, "/v1/missions/blind");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("permission_denied"))
    );
    let (status, _) = server.get(mole, "/v1/missions/blind/events/1");
    assert_eq!(status, 403);
    let (status, _) = server.get("not-a-token-of-anyone", "/v1/missions");
    assert_eq!(status, 401);
    let (status, _) = http(&client, "GET", &server.url("/v1/missions"), None, None);
    assert_eq!(status, 401);

    // Hashes: each record's previous hash is the hash of the one before;
    // the head's is the verify report's head hash.
    let (_, summary) = server.get(&seeded.ada, &format!("/v1/missions/{A}"));
    let head = summary["head_sequence"].as_u64().unwrap();
    let mut prev = "0".repeat(64);
    for seq in 1..=head {
        let (status, rec) = server.get(&seeded.ada, &format!("/v1/missions/{A}/events/{seq}"));
        assert_eq!(status, 200, "{rec}");
        assert_eq!(rec["event"]["sequence"], seq);
        assert_eq!(rec["previous_hash"], prev.as_str(), "sequence {seq}");
        prev = rec["hash"].as_str().unwrap().to_string();
    }
    let (_, report) = server.get(&admin, &format!("/v1/missions/{A}/verify"));
    assert_eq!(report["head_hash"], prev.as_str());
    let (status, _) = server.get(&admin, &format!("/v1/missions/{A}/events/{}", head + 1));
    assert_eq!(status, 404);
    let (status, _) = server.get(&admin, &format!("/v1/missions/{A}/events/0"));
    assert_eq!(status, 400);
    // The verify outcome shows in the list from now on.
    let (_, list) = server.get(&admin, "/v1/missions");
    let by_id = |id: &str| {
        list["missions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mission_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id(A)["verify"]["intact"], true);
    assert_eq!(by_id(A)["verify"]["head_sequence"], head);
    assert_eq!(by_id(B)["verify"], Value::Null);
    server.stop();
}
