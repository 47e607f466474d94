//! The server under abuse and its new surfaces, over real HTTP on loopback:
//! slow-client floods (headers and bodies trickled a byte at a time, idle
//! connections) while other clients are still served within a second;
//! connections per client address; stream limits per mission and per token;
//! stalled stream readers whose memory stays bounded and is given back;
//! event ids scoped per mission; the name grammar; the batch endpoint;
//! `/metrics` read by a Prometheus text-format parser; JSON logs.
//!
//! The flood tests bind their abusive clients to 127.0.0.2 (all of 127/8 is
//! loopback on Linux) and the well-behaved ones to 127.0.0.1, which is what
//! the per-address limit tells apart. About 15 s in all.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mission_bus::server::{self, Limits};
use mission_bus::MissionBus;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN: &str = "test-admin-token-0123456789abcdef";
const DEADLINE: Duration = Duration::from_secs(60);

// ----- harness ---------------------------------------------------------------

struct TestServer {
    addr: SocketAddr,
    bus: MissionBus,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<mission_bus::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    fn start(limits: Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus = MissionBus::open(dir.path()).unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server_bus = bus.clone();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                server::run_with_limits(listener, server_bus, ADMIN.to_string(), limits, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        TestServer {
            addr,
            bus,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.bus.close();
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// (status, JSON body or the text as a JSON string).
fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    call_with(&agent(DEADLINE), method, url, token, body)
}

fn call_with(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match method {
        "GET" => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        _ => {
            let mut r = agent.post(url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.header("Content-Type", "application/json")
                .send(body.unwrap_or(Value::Null).to_string())
        }
    };
    let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A mission with a lead; returns the lead's token.
fn mission(base: &str, id: &str) -> String {
    let (s, v) = call(
        "POST",
        &format!("{base}/v1/missions"),
        Some(ADMIN),
        Some(json!({"mission_id": id, "title": "t", "lead": "lead"})),
    );
    assert_eq!(s, 201, "{v}");
    v["lead_token"].as_str().unwrap().to_string()
}

fn join(base: &str, m: &str, name: &str, role: &str) -> String {
    let (s, v) = call(
        "POST",
        &format!("{base}/v1/missions/{m}/participants"),
        Some(ADMIN),
        Some(json!({"name": name, "role": role})),
    );
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A raw TCP connection to `to` from `local` (an address on loopback).
async fn connect_from(local: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Read until the peer closes (Ok(bytes)) or `limit` passes (Err).
async fn read_until_closed(
    s: &mut tokio::net::TcpStream,
    limit: Duration,
) -> Result<Vec<u8>, Vec<u8>> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return Err(got),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

// ----- slow clients ------------------------------------------------------------

#[test]
fn slow_client_flood_cannot_lock_out_other_clients() {
    let header_timeout = Duration::from_millis(1500);
    let srv = TestServer::start(
        Limits::default()
            .max_connections(48)
            .max_connections_per_address(16)
            .header_timeout(header_timeout)
            .body_timeout(header_timeout),
    );
    let addr = srv.addr;
    // 30 tricklers (one byte of headers every 100 ms, for up to 4 s), 10
    // silent connections and 10 body tricklers, all from 127.0.0.2: more
    // than the whole server's connection limit.
    let (done_tx, done_rx) = mpsc::channel();
    let flood = thread::spawn(move || {
        rt().block_on(async move {
            let began = tokio::time::Instant::now();
            let mut tasks = Vec::new();
            for i in 0..50 {
                tasks.push(tokio::spawn(async move {
                    let mut s = connect_from("127.0.0.2", addr).await;
                    let opened = tokio::time::Instant::now();
                    let kind = i % 5;
                    let outcome = match kind {
                        // silent
                        0 => read_until_closed(&mut s, Duration::from_secs(5)).await,
                        // body trickler: complete headers, then a byte of body at a time
                        1 => {
                            let head = "POST /v1/missions HTTP/1.1\r\nHost: x\r\n\
                                        Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
                            if s.write_all(head.as_bytes()).await.is_err() {
                                Ok(Vec::new())
                            } else {
                                trickle(&mut s, b"{").await
                            }
                        }
                        // header trickler
                        _ => trickle(&mut s, b"GET /v1/health HTTP/1.1\r\nX-Slow: ").await,
                    };
                    (kind, opened.elapsed(), outcome)
                }));
            }
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.unwrap());
            }
            let _ = done_tx.send(());
            (began.elapsed(), results)
        })
    });
    // Meanwhile a well-behaved client (127.0.0.1) is served, each probe
    // within a second, for as long as the flood lasts.
    let probe = agent(Duration::from_secs(1));
    let mut probes = 0;
    loop {
        let t = Instant::now();
        let (status, v) = call_with(&probe, "GET", &srv.url("/v1/health"), None, None);
        assert_eq!(status, 200, "{v}");
        assert!(t.elapsed() < Duration::from_secs(1));
        probes += 1;
        match done_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("flood thread: {e}"),
        }
    }
    let (flood_time, results) = flood.join().unwrap();
    assert!(probes >= 5, "only {probes} probes during {flood_time:?}");
    // Every flood connection was closed by the server, the trickled ones at
    // their fixed deadline: trickling did not extend it.
    let limit = header_timeout * 2 + Duration::from_millis(1500);
    for (kind, lived, outcome) in &results {
        let answer = match outcome {
            Ok(bytes) => String::from_utf8_lossy(bytes).to_string(),
            Err(_) => panic!("kind {kind}: still open after {lived:?}"),
        };
        assert!(*lived < limit, "kind {kind} lived {lived:?}");
        if *kind == 1 && !answer.is_empty() {
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        }
    }
    // Those beyond the per-address share were refused at once.
    let refused = results
        .iter()
        .filter(|(_, lived, o)| *lived < Duration::from_millis(500) && o.is_ok())
        .count();
    assert!(refused >= 50 - 16, "{refused} refused at once");
}

/// Send `prefix` one byte every 100 ms for up to 4 s; Ok when the server
/// closes the connection (with whatever it answered).
async fn trickle(s: &mut tokio::net::TcpStream, prefix: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    let bytes: Vec<u8> = prefix
        .iter()
        .copied()
        .chain(std::iter::repeat(b'a'))
        .take(40)
        .collect();
    for b in bytes {
        if s.write_all(&[b]).await.is_err() {
            return Ok(Vec::new());
        }
        if let Ok(closed) = read_until_closed(s, Duration::from_millis(100)).await {
            return Ok(closed);
        }
    }
    read_until_closed(s, Duration::from_secs(1)).await
}

// ----- streams -----------------------------------------------------------------

/// Open an event stream on a raw connection; (status, the connection).
/// The client's receive buffer is small (4 KiB), so a reader that does not
/// read soon makes the server's side of the connection fill up.
fn open_stream(addr: SocketAddr, m: &str, token: &str) -> (u16, std::net::TcpStream) {
    let s = rt().block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(addr).await.unwrap()
    });
    let mut s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    write!(
        s,
        "GET /v1/missions/{m}/events/stream HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed mid-headers");
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head[9..12]).parse().unwrap();
    (status, s)
}

fn metric(base: &str, name: &str) -> f64 {
    let (_, text) = call("GET", &format!("{base}/metrics"), None, None);
    let text = text.as_str().unwrap().to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing"))
        .parse()
        .unwrap()
}

#[test]
fn stream_limits_are_per_mission_and_per_token() {
    let srv = TestServer::start(
        Limits::default()
            .max_streams(100)
            .max_streams_per_mission(3)
            .max_streams_per_token(2),
    );
    let base = srv.url("");
    let lead_a = mission(&base, "ma");
    let lead_b = mission(&base, "mb");
    let r1 = join(&base, "ma", "r1", "read");
    let r2 = join(&base, "ma", "r2", "read");
    let mut open = Vec::new();
    for _ in 0..2 {
        let (s, c) = open_stream(srv.addr, "ma", &lead_a);
        assert_eq!(s, 200);
        open.push(c);
    }
    assert_eq!(open_stream(srv.addr, "ma", &lead_a).0, 503, "per token");
    let (s, c) = open_stream(srv.addr, "ma", &r1);
    assert_eq!(s, 200);
    open.push(c);
    assert_eq!(open_stream(srv.addr, "ma", &r2).0, 503, "per mission");
    // Mission A is full; mission B's readers are not affected.
    let (s, _b) = open_stream(srv.addr, "mb", &lead_b);
    assert_eq!(s, 200);
    assert_eq!(metric(&base, "mission_bus_open_streams"), 4.0);
    // A closed stream gives its slot back (once the server notices).
    drop(open.pop());
    let t = Instant::now();
    while metric(&base, "mission_bus_open_streams") > 3.0 {
        // The server notices on its next write to the stream: make one.
        let (st, v) = call(
            "POST",
            &format!("{base}/v1/missions/ma/messages"),
            Some(&lead_a),
            Some(json!({"topic": "t", "payload": 1})),
        );
        assert_eq!(st, 201, "{v}");
        assert!(t.elapsed() < DEADLINE, "slot never came back");
    }
    assert_eq!(open_stream(srv.addr, "ma", &r2).0, 200);
}

// ----- a real server process ------------------------------------------------------

struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

impl ServerProcess {
    fn spawn(data: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mission-bus"))
            .arg("--data")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().unwrap().unwrap();
        thread::spawn(move || for _ in lines {});
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = first
            .strip_prefix("listening on ")
            .unwrap()
            .parse()
            .unwrap();
        ServerProcess {
            child,
            addr,
            stderr: rx,
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Resident memory of the server process, bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        kb * 1024
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Write `rounds` batches of four 60 KB messages to each mission.
fn write_big(base: &str, missions: &[(String, String)], rounds: usize) {
    let payload = "x".repeat(60 * 1024);
    let item = json!({"type": "message", "topic": "big", "payload": payload});
    for round in 0..rounds {
        for (m, lead) in missions {
            let (s, v) = call(
                "POST",
                &format!("{base}/v1/missions/{m}/batch"),
                Some(lead),
                Some(json!({"events": [item, item, item, item]})),
            );
            assert_eq!(s, 201, "round {round}: {v}");
        }
    }
}

#[test]
fn stalled_readers_hold_bounded_memory_that_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), format!("{ADMIN}\n")).unwrap();
    let srv = ServerProcess::spawn(dir.path(), &["--log-level", "warn"]);
    let base = srv.base();
    let new_missions = |prefix: &str| -> Vec<(String, String)> {
        (0..8)
            .map(|i| {
                let m = format!("{prefix}{i}");
                let lead = mission(&base, &m);
                (m, lead)
            })
            .collect()
    };
    // The control: the same writes with nobody reading, so the store's own
    // growth (sled's cache, its write buffers) is measured apart.
    let quiet = new_missions("quiet");
    let read = new_missions("read");
    let start = srv.rss();
    write_big(&base, &quiet, 5);
    let without_readers = srv.rss();
    // Four readers per mission that never read, with tiny receive buffers
    // so the kernel absorbs little and the server's side fills up.
    let mut readers = Vec::new();
    for (m, lead) in &read {
        for _ in 0..4 {
            let (status, s) = open_stream(srv.addr, m, lead);
            assert_eq!(status, 200);
            readers.push(s);
        }
    }
    // 8 missions x 20 events of 60 KB (about 10 MB) towards stalled readers.
    write_big(&base, &read, 5);
    let stalled = srv.rss();
    // The documented bound per stream (docs/api.md): one chunk (64 KiB of
    // event JSON plus the event that crosses it) and hyper's write buffer
    // (about 400 KiB).
    let per_stream: u64 = 64 * 1024 + 64 * 1024 + 400 * 1024;
    let store_growth = without_readers.saturating_sub(start);
    let bound = without_readers + store_growth + readers.len() as u64 * per_stream + (8 << 20);
    eprintln!(
        "stalled readers: RSS start {} MiB, after quiet writes {} MiB, with {} stalled readers {} MiB (bound {} MiB)",
        start >> 20,
        without_readers >> 20,
        readers.len(),
        stalled >> 20,
        bound >> 20
    );
    assert!(
        stalled <= bound,
        "RSS {} MiB over the bound {} MiB",
        stalled >> 20,
        bound >> 20
    );
    drop(readers);
    // The streams end (the server notices at its next write to each) and
    // give their slots and buffers back.
    let t = Instant::now();
    while metric(&base, "mission_bus_open_streams") > 0.0 {
        for (m, lead) in &read {
            call(
                "POST",
                &format!("{base}/v1/missions/{m}/messages"),
                Some(lead),
                Some(json!({"topic": "t", "payload": 1})),
            );
        }
        assert!(t.elapsed() < DEADLINE, "streams never closed");
    }
    // More writes after they left cost no more than writes without readers.
    write_big(&base, &read, 5);
    let after = srv.rss();
    eprintln!("after the readers left and 10 MB more: {} MiB", after >> 20);
    assert!(
        after <= stalled + store_growth + (8 << 20),
        "RSS kept growing after the readers left: {} MiB",
        after >> 20
    );
}

#[test]
fn json_logs_carry_request_fields_and_never_a_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), format!("{ADMIN}\n")).unwrap();
    let srv = ServerProcess::spawn(dir.path(), &["--log-format", "json", "--log-level", "info"]);
    let base = srv.base();
    let lead = mission(&base, "logged");
    let (s, _) = call(
        "POST",
        &format!("{base}/v1/missions/logged/messages"),
        Some(&lead),
        Some(json!({"topic": "t", "payload": 1})),
    );
    assert_eq!(s, 201);
    let mut seen = Vec::new();
    let t = Instant::now();
    while seen.len() < 2 {
        let line = srv.stderr.recv_timeout(DEADLINE).expect("no log line");
        assert!(
            !line.contains(&lead) && !line.contains(ADMIN),
            "token logged: {line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        if v["message"] == "request" {
            seen.push(v);
        }
        assert!(t.elapsed() < DEADLINE);
    }
    let post = &seen[1];
    assert_eq!(post["route"], "/v1/missions/{m}/messages", "{post}");
    assert_eq!(post["mission"], "logged");
    assert_eq!(post["status"], 201);
    assert!(post["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(post["latency_us"].as_u64().is_some());
}

// ----- event ids, names, batches, metrics ------------------------------------------

#[test]
fn event_ids_are_scoped_to_their_mission_over_http() {
    let srv = TestServer::start(Limits::default());
    let base = srv.url("");
    let a = mission(&base, "ma");
    let b = mission(&base, "mb");
    let id = uuid::Uuid::now_v7().to_string();
    let post = |m: &str, token: &str, topic: &str| {
        call(
            "POST",
            &format!("{base}/v1/missions/{m}/messages"),
            Some(token),
            Some(json!({"topic": topic, "payload": 1, "event_id": id})),
        )
    };
    let (s, ea) = post("ma", &a, "from a");
    assert_eq!(s, 201, "{ea}");
    // B may use the same id: its own event, not A's, and no conflict.
    let (s, eb) = post("mb", &b, "from b");
    assert_eq!(s, 201, "{eb}");
    assert_eq!(eb["topic"], "from b");
    assert_eq!(post("mb", &b, "from b").1, eb, "retry in B is idempotent");
    let (s, err) = post("mb", &b, "other");
    assert_eq!(s, 409, "{err}");
    let text = err.to_string();
    assert!(!text.contains("ma"), "names another mission: {text}");
    assert_eq!(post("ma", &a, "from a").1, ea);
}

#[test]
fn names_metadata_and_event_ids_are_checked_by_the_server() {
    let srv = TestServer::start(Limits::default());
    let base = srv.url("");
    let lead = mission(&base, "good");
    for bad in ["a/b", "..", "-x", "evil\u{202e}", "a..b"] {
        let (s, v) = call(
            "POST",
            &format!("{base}/v1/missions"),
            Some(ADMIN),
            Some(json!({"mission_id": bad, "title": "t", "lead": "lead"})),
        );
        assert_eq!(s, 400, "{bad:?}: {v}");
        assert!(v.to_string().contains("mission id"), "{v}");
        let (s, v) = call(
            "POST",
            &format!("{base}/v1/missions/good/participants"),
            Some(&lead),
            Some(json!({"name": bad, "role": "write"})),
        );
        assert_eq!(s, 400, "{bad:?}: {v}");
        assert!(v.to_string().contains("participant name"), "{v}");
    }
    let (s, v) = call(
        "POST",
        &format!("{base}/v1/missions/good/participants"),
        Some(&lead),
        Some(json!({"name": "ada", "role": "write", "metadata": [1, 2]})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("metadata"), "{v}");
    let (s, v) = call(
        "POST",
        &format!("{base}/v1/missions/good/messages"),
        Some(&lead),
        Some(json!({"topic": "t", "payload": 1, "event_id": uuid::Uuid::nil()})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("nil"), "{v}");
    assert_eq!(srv.bus.state("good").unwrap().head, 2, "nothing written");
}

#[test]
fn batch_is_atomic_and_checks_the_expected_sequence() {
    let srv = TestServer::start(Limits::default());
    let base = srv.url("");
    let lead = mission(&base, "mb");
    let url = format!("{base}/v1/missions/mb/batch");
    let (s, v) = call(
        "POST",
        &url,
        Some(&lead),
        Some(json!({"expected_sequence": 2, "events": [
            {"type": "message", "topic": "a", "payload": {"n": 1}},
            {"type": "checkpoint", "summary": "s", "state": {"k": 1}},
            {"type": "message", "topic": "b"},
        ]})),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["head_sequence"], 5);
    assert_eq!(v["events"].as_array().unwrap().len(), 3);
    let checkpoint = v["events"][1]["checkpoint_id"]
        .as_str()
        .unwrap()
        .to_string();
    // A stale expected sequence: 409, nothing written.
    let (s, v) = call(
        "POST",
        &url,
        Some(&lead),
        Some(json!({"expected_sequence": 2, "events": [{"type": "message", "topic": "x"}]})),
    );
    assert_eq!(s, 409, "{v}");
    // One bad item refuses the whole batch, and the error names it.
    let (s, v) = call(
        "POST",
        &url,
        Some(&lead),
        Some(json!({"events": [
            {"type": "message", "topic": "fine"},
            {"type": "handoff", "recipient": "nobody", "checkpoint_id": checkpoint},
        ]})),
    );
    assert_eq!(s, 404, "{v}");
    assert_eq!(srv.bus.state("mb").unwrap().head, 5);
    let (s, v) = call(
        "POST",
        &url,
        Some(&lead),
        Some(json!({"events": [{"type": "message", "topic": "x", "event_id": uuid::Uuid::nil()}]})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("events[0]"), "{v}");
    assert!(srv.bus.verify("mb").unwrap().is_intact());
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_with_appends() {
    let srv = TestServer::start(Limits::default());
    let base = srv.url("");
    let lead = mission(&base, "mm");
    let scrape = || {
        let (s, text) = call("GET", &format!("{base}/metrics"), None, None);
        assert_eq!(s, 200);
        let text = text.as_str().unwrap().to_string();
        let lines = text.lines().map(|l| Ok(l.to_string()));
        prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text")
    };
    let value = |scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(ref h) => {
                    h.iter().map(|c| c.count).fold(0.0, f64::max)
                }
                _ => 0.0,
            })
            .sum::<f64>()
    };
    let before = scrape();
    for i in 0..5 {
        let (s, _) = call(
            "POST",
            &format!("{base}/v1/missions/mm/messages"),
            Some(&lead),
            Some(json!({"topic": "t", "payload": i})),
        );
        assert_eq!(s, 201);
    }
    let (s, _) = call(
        "POST",
        &format!("{base}/v1/missions/mm/messages"),
        Some(&lead),
        Some(json!({"topic": "t", "payload": 0, "expected_sequence": 1})),
    );
    assert_eq!(s, 409);
    let after = scrape();
    let ok = Some(("outcome", "ok"));
    assert_eq!(
        value(&after, "mission_bus_appends_total", ok)
            - value(&before, "mission_bus_appends_total", ok),
        5.0
    );
    assert_eq!(
        value(
            &after,
            "mission_bus_appends_total",
            Some(("outcome", "sequence_conflict"))
        ),
        1.0
    );
    assert!(
        value(&after, "mission_bus_events_written_total", None)
            >= value(&before, "mission_bus_events_written_total", None) + 5.0
    );
    assert!(
        value(&after, "mission_bus_flush_seconds", None)
            > value(&before, "mission_bus_flush_seconds", None),
        "flush histogram moved"
    );
    assert!(value(&after, "mission_bus_commit_group_events", None) >= 5.0);
    assert!(value(&after, "mission_bus_disk_bytes", None) > 0.0);
    assert!(value(&after, "mission_bus_open_connections", None) >= 1.0);
    let route = Some(("route", "/v1/missions/:m/messages"));
    assert!(value(&after, "mission_bus_http_requests_total", route) >= 6.0);
}
