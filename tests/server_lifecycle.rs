//! The resuming agent's API over real HTTP: the handoff lifecycle (with the
//! server's lease timer), checkpoint and handoff reads, the resume
//! fallback, membership from the API, self token rotation, filtered pages
//! and exactly-once filtered streams, and consumer positions across a
//! SIGKILL of the server process.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mission_bus::server::{self, Limits};
use mission_bus::MissionBus;
use serde_json::{json, Value};

const ADMIN: &str = "test-admin-token-0123456789abcdef";
const DEADLINE: Duration = Duration::from_secs(60);

struct TestServer {
    addr: SocketAddr,
    bus: MissionBus,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<mission_bus::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    fn start() -> Self {
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
                let limits = Limits::default();
                server::run_with_limits(listener, server_bus, ADMIN.into(), limits, async {
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

    fn base(&self) -> String {
        format!("http://{}", self.addr)
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

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(DEADLINE))
        .build()
        .into()
}

#[derive(Clone)]
struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Client {
    fn new(base: &str, token: &str) -> Self {
        Client {
            agent: agent(),
            base: base.into(),
            token: token.into(),
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let result = match method {
            "GET" => self.agent.get(&url).header("Authorization", &auth).call(),
            "DELETE" => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            m => {
                let r = match m {
                    "POST" => self.agent.post(&url),
                    "PATCH" => self.agent.patch(&url),
                    other => panic!("method {other}"),
                };
                r.header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .send(body.map(|b| b.to_string()).unwrap_or_default())
            }
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {text:?}: {e}"))
        };
        (status, v)
    }
    fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None)
    }
    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, Some(body))
    }
    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.send(method, path, body);
        assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
        v
    }
}

#[track_caller]
fn assert_status(got: (u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
}

/// Mission `m`: lead, writers ada, bob, cy, auditor otto. Clients by name.
fn seeded(base: &str) -> std::collections::BTreeMap<&'static str, Client> {
    let admin = Client::new(base, ADMIN);
    let v = admin.ok(
        "POST",
        "/v1/missions",
        Some(json!({"mission_id": "m", "title": "t", "lead": "lead"})),
    );
    let lead = Client::new(base, v["lead_token"].as_str().unwrap());
    let mut out = std::collections::BTreeMap::new();
    for (name, role) in [
        ("ada", "write"),
        ("bob", "write"),
        ("cy", "write"),
        ("otto", "audit"),
    ] {
        let v = lead.ok(
            "POST",
            "/v1/missions/m/participants",
            Some(json!({"name": name, "role": role})),
        );
        out.insert(name, Client::new(base, v["token"].as_str().unwrap()));
    }
    out.insert("lead", lead);
    out.insert("admin", admin);
    out
}

fn checkpoint(c: &Client, n: i64) -> String {
    let v = c.ok(
        "POST",
        "/v1/missions/m/checkpoints",
        Some(json!({"summary": format!("step {n}"), "state": {"n": n}})),
    );
    v["checkpoint_id"].as_str().unwrap().to_string()
}

fn offer(c: &Client, to: &str, cp: &str) -> String {
    let v = c.ok(
        "POST",
        "/v1/missions/m/handoffs",
        Some(json!({"recipient": to, "checkpoint_id": cp, "note": "go"})),
    );
    v["handoff_id"].as_str().unwrap().to_string()
}

/// Reads an SSE response event by event: (id, data).
struct Sse {
    lines: BufReader<Box<dyn Read + Send>>,
}

impl Sse {
    fn open(base: &str, token: &str, query: &str) -> Self {
        let resp = agent()
            .get(format!("{base}/v1/missions/m/events/stream{query}"))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        Sse {
            lines: BufReader::new(Box::new(resp.into_body().into_reader())),
        }
    }

    fn next(&mut self) -> Option<(u64, Value)> {
        let (mut id, mut data) = (None, String::new());
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if let Some(id) = id {
                    return Some((id, serde_json::from_str(&data).unwrap()));
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().parse().unwrap());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    }
}

#[test]
fn every_handoff_transition_over_http() {
    let srv = TestServer::start();
    let c = seeded(&srv.base());
    let cp = checkpoint(&c["ada"], 1);
    let h1 = offer(&c["ada"], "bob", &cp);
    let h2 = offer(&c["ada"], "bob", &cp);

    // Bob lists the handoffs addressed to him, newest first, with status.
    let v = c["bob"].ok("GET", "/v1/missions/m/handoffs", None);
    let list = v["handoffs"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["handoff_id"], h2.as_str());
    assert_eq!(list[0]["status"], "offered");

    // Someone else cannot accept; a bad step is a 404; bad bodies are 400.
    let p = |h: &str, step: &str| format!("/v1/missions/m/handoffs/{h}/{step}");
    assert_status(
        c["cy"].post(&p(&h1, "accept"), json!({})),
        403,
        "permission_denied",
    );
    assert_status(c["bob"].post(&p(&h1, "steal"), json!({})), 404, "not_found");
    assert_status(
        c["bob"].post(&p(&h1, "accept"), json!({"lease_ms": "x"})),
        400,
        "invalid_body",
    );
    assert_status(
        c["bob"].post(&p(&h1, "accept"), json!({"lease_ms": 0})),
        400,
        "invalid_input",
    );
    assert_status(
        c["bob"].post(&p(&h1, "heartbeat"), json!({})),
        409,
        "conflict",
    );

    let v = c["bob"].ok("POST", &p(&h1, "accept"), Some(json!({"lease_ms": 30000})));
    assert_eq!(v["handoff"]["status"], "accepted");
    assert_eq!(v["event"]["event_type"], "handoff_accepted");
    assert!(v["handoff"]["lease_expires_at"].is_string());
    let v = c["bob"].ok(
        "POST",
        &p(&h1, "heartbeat"),
        Some(json!({"lease_ms": 60000})),
    );
    assert_eq!(v["event"]["lease_ms"], 60000);
    let v = c["bob"].ok("POST", &p(&h1, "complete"), Some(json!({"note": "done"})));
    assert_eq!(v["handoff"]["status"], "completed");
    let v = c["bob"].ok("POST", &p(&h2, "decline"), Some(json!({"note": "busy"})));
    assert_eq!(v["handoff"]["status"], "declined");
    assert_eq!(v["handoff"]["returned_to"], "ada");

    let h3 = offer(&c["ada"], "bob", &cp);
    c["bob"].ok("POST", &p(&h3, "accept"), None);
    let v = c["bob"].ok("POST", &p(&h3, "release"), None);
    assert_eq!(v["handoff"]["status"], "released");
    let v = c["ada"].ok("GET", &format!("/v1/missions/m/handoffs/{h3}"), None);
    assert_eq!(v["status"], "released");
    // Pages carry each handoff's lifecycle as of now (the console draws it).
    let v = c["ada"].ok("GET", "/v1/missions/m/events?type=handoff", None);
    let states: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["lifecycle"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["completed", "declined", "released"]);
    // Offering the declined work again (h3, same checkpoint) settled h2;
    // ada's resume packet lists the released h3 as returned to her.
    let v = c["ada"].ok("GET", &format!("/v1/missions/m/handoffs/{h2}"), None);
    assert_eq!(v["reoffered_as"], h3.as_str());
    let v = c["ada"].ok("GET", "/v1/missions/m/resume", None);
    let returned = v["returned"].as_array().unwrap();
    assert_eq!(returned.len(), 1, "{v}");
    assert_eq!(returned[0]["handoff_id"], h3.as_str());
}

/// A holder that dies: the server's timer expires its lease, the work
/// returns to the sender (the expiry arrives on a filtered stream: no
/// sleeping), and the next agent resumes from the dead holder's checkpoint.
#[test]
fn a_dead_holder_s_work_returns_and_the_next_agent_resumes_from_its_checkpoint() {
    let srv = TestServer::start();
    let c = seeded(&srv.base());
    let cp1 = checkpoint(&c["ada"], 1);
    let h = offer(&c["ada"], "bob", &cp1);
    let mut expiries = Sse::open(&srv.base(), &c["ada"].token, "?type=handoff_expired");
    c["bob"].ok(
        "POST",
        &format!("/v1/missions/m/handoffs/{h}/accept"),
        Some(json!({"lease_ms": 300})),
    );
    let cp2 = checkpoint(&c["bob"], 2);
    // bob dies here: no heartbeat. The server timer notices.
    let (_, expired) = expiries.next().expect("an expiry event");
    assert_eq!(expired["handoff_id"], h.as_str());
    assert_eq!(expired["sender"], "@operator");

    let ada = c["ada"].ok("GET", "/v1/missions/m/resume", None);
    let returned = &ada["returned"][0];
    assert_eq!(returned["status"], "expired");
    assert_eq!(returned["resume_checkpoint_id"], cp2.as_str());
    let late = c["bob"].post(&format!("/v1/missions/m/handoffs/{h}/heartbeat"), json!({}));
    assert_status(late, 409, "conflict");

    let h2 = offer(
        &c["ada"],
        "cy",
        returned["resume_checkpoint_id"].as_str().unwrap(),
    );
    c["cy"].ok(
        "POST",
        &format!("/v1/missions/m/handoffs/{h2}/accept"),
        None,
    );
    let v = c["cy"].ok("GET", "/v1/missions/m/resume", None);
    assert_eq!(v["source"], "handoff");
    assert_eq!(v["handoff_status"], "accepted");
    assert_eq!(v["handoff_id"], h2.as_str());
    assert_eq!(v["checkpoint"]["checkpoint_id"], cp2.as_str());
    assert_eq!(v["checkpoint"]["state"], json!({"n": 2}));
}

#[test]
fn checkpoint_reads_and_the_resume_fallback() {
    let srv = TestServer::start();
    let c = seeded(&srv.base());
    let mine: Vec<String> = (0..5).map(|n| checkpoint(&c["cy"], n)).collect();
    checkpoint(&c["ada"], 9);
    let v = c["otto"].ok("GET", "/v1/missions/m/checkpoints?sender=cy&limit=2", None);
    let page: Vec<_> = v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["checkpoint_id"].clone())
        .collect();
    assert_eq!(page, vec![json!(mine[4]), json!(mine[3])]);
    let before = v["next_before"].as_u64().unwrap();
    let v = c["otto"].ok(
        "GET",
        &format!("/v1/missions/m/checkpoints?sender=cy&limit=2&before={before}"),
        None,
    );
    assert_eq!(v["checkpoints"][0]["checkpoint_id"], mine[2].as_str());
    let v = c["otto"].ok(
        "GET",
        &format!("/v1/missions/m/checkpoints/{}", mine[1]),
        None,
    );
    assert_eq!(v["state"], json!({"n": 1}));
    let v = c["cy"].ok("GET", "/v1/missions/m/checkpoints/latest", None);
    assert_eq!(v["checkpoint_id"], mine[4].as_str());
    let v = c["otto"].ok("GET", "/v1/missions/m/checkpoints/latest?sender=ada", None);
    assert_eq!(v["summary"], "step 9");
    assert_status(
        c["otto"].get("/v1/missions/m/checkpoints/nope"),
        400,
        "invalid_path",
    );
    // cy was never handed work: resume falls back to its latest checkpoint.
    let v = c["cy"].ok("GET", "/v1/missions/m/resume", None);
    assert_eq!(v["source"], "checkpoint");
    assert_eq!(v["handoff_id"], Value::Null);
    assert_eq!(v["checkpoint"]["checkpoint_id"], mine[4].as_str());
    assert_status(
        c["bob"].get("/v1/missions/m/resume"),
        404,
        "handoff_not_found",
    );
}

#[test]
fn membership_changes_over_http_take_effect_at_once() {
    let srv = TestServer::start();
    let c = seeded(&srv.base());
    // Only a lead (or the admin) changes roles and removes.
    let patch = |by: &Client, who: &str, role: &str| {
        by.send(
            "PATCH",
            &format!("/v1/missions/m/participants/{who}"),
            Some(json!({"role": role})),
        )
    };
    assert_status(patch(&c["ada"], "bob", "read"), 403, "permission_denied");
    let (s, v) = patch(&c["lead"], "bob", "read");
    assert_eq!((s, v["event_type"].as_str()), (200, Some("role_changed")));
    assert_status(
        c["bob"].post(
            "/v1/missions/m/messages",
            json!({"topic": "t", "payload": 1}),
        ),
        403,
        "permission_denied",
    );
    let del = |by: &Client, who: &str| {
        by.send(
            "DELETE",
            &format!("/v1/missions/m/participants/{who}"),
            None,
        )
    };
    assert_status(del(&c["ada"], "bob"), 403, "permission_denied");
    assert_status(del(&c["lead"], "ghost"), 404, "participant_not_found");
    let (s, v) = del(&c["lead"], "bob");
    assert_eq!(
        (s, v["event_type"].as_str()),
        (200, Some("participant_removed"))
    );
    // bob's token stops working on the very next request.
    assert_status(c["bob"].get("/v1/missions/m/events"), 401, "unknown_token");
    let (s, _) = del(&c["admin"], "cy");
    assert_eq!(s, 200);
    assert_status(c["cy"].get("/v1/missions/m/events"), 401, "unknown_token");

    // A participant rotates its own token.
    let v = c["ada"].ok("POST", "/v1/missions/m/token", None);
    assert_eq!(v["revoked"], 1);
    assert_status(c["ada"].get("/v1/missions/m/events"), 401, "unknown_token");
    let fresh = Client::new(&srv.base(), v["token"].as_str().unwrap());
    fresh.ok("GET", "/v1/missions/m/events", None);
    assert_status(
        c["admin"].post("/v1/missions/m/token", json!({})),
        403,
        "participant_only",
    );
}

#[test]
fn filtered_pages_and_exactly_once_filtered_streams() {
    let srv = TestServer::start();
    let c = seeded(&srv.base());
    let publish = |who: &str, topic: &str, n: i64| {
        c[who].ok(
            "POST",
            "/v1/missions/m/messages",
            Some(json!({"topic": topic, "payload": n})),
        );
    };
    for n in 0..6 {
        publish("ada", &format!("build/{n}"), n);
        publish("bob", "chat", n);
    }
    let cp = checkpoint(&c["ada"], 0);
    offer(&c["ada"], "cy", &cp);
    let get = |q: &str| c["otto"].ok("GET", &format!("/v1/missions/m/events?{q}"), None);
    let seqs = |v: &Value| -> Vec<u64> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["sequence"].as_u64().unwrap())
            .collect()
    };
    let ada = get("type=message&sender=ada&topic_prefix=build%2F");
    assert_eq!(seqs(&ada).len(), 6);
    let last2 = get("type=message&sender=ada&order=desc&limit=2");
    let all = seqs(&ada);
    assert_eq!(seqs(&last2), vec![all[5], all[4]]);
    let two_types = get("type=checkpoint&type=handoff");
    assert_eq!(seqs(&two_types).len(), 2);
    let to_cy = get("recipient=cy");
    assert_eq!(to_cy["events"][0]["event_type"], "handoff");
    // ada and bob alternate: between ada's 1st and 3rd message, two of bob's.
    let bounded = get(&format!("from={}&to={}&sender=bob", all[0], all[2]));
    assert_eq!(seqs(&bounded), vec![all[0] + 1, all[1] + 1]);
    let paged = get("limit=3");
    let next = paged["next"].as_u64().unwrap();
    assert_eq!(next, seqs(&paged)[2] + 1);
    for bad in [
        "type=bogus",
        "order=up",
        "limit=0",
        "colour=red",
        "from=x",
        "sender=a&sender=b",
    ] {
        assert_status(
            c["otto"].get(&format!("/v1/missions/m/events?{bad}")),
            400,
            "invalid_query",
        );
    }

    // A filtered stream while two writers publish: every ada message once,
    // in order, nothing else.
    let head = srv.bus.state("m").unwrap().head;
    let mut stream = Sse::open(
        &srv.base(),
        &c["otto"].token,
        &format!("?sender=ada&type=message&from={head}"),
    );
    let writers: Vec<_> = ["ada", "bob"]
        .into_iter()
        .map(|who| {
            let client = c[who].clone();
            thread::spawn(move || {
                for n in 0..20 {
                    client.ok(
                        "POST",
                        "/v1/missions/m/messages",
                        Some(json!({"topic": "live", "payload": n})),
                    );
                }
            })
        })
        .collect();
    let mut got = Vec::new();
    while got.len() < 20 {
        let (id, e) = stream.next().expect("stream ended early");
        assert_eq!(e["sender"], "ada");
        assert_eq!(e["event_type"], "message");
        assert_eq!(id, e["sequence"].as_u64().unwrap());
        got.push((id, e["payload"].as_i64().unwrap()));
    }
    for w in writers {
        w.join().unwrap();
    }
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "in order, no duplicates"
    );
    let payloads: Vec<i64> = got.iter().map(|g| g.1).collect();
    assert_eq!(payloads, (0..20).collect::<Vec<_>>());
    // A bounded stream ends after `to`.
    let mut bounded = Sse::open(&srv.base(), &c["otto"].token, "?from=1&to=3");
    let ids: Vec<u64> = std::iter::from_fn(|| bounded.next().map(|e| e.0)).collect();
    assert_eq!(ids, vec![1, 2, 3]);
}

struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn spawn(data: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mission-bus"))
            .arg("--data")
            .arg(data)
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
            let _ = tx.send(lines.next().and_then(|l| l.ok()));
            for _ in lines {}
        });
        let first = rx.recv_timeout(DEADLINE).unwrap().expect("server exited");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap()
            .parse()
            .unwrap();
        ServerProcess { child, addr }
    }
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn consumer_positions_survive_a_sigkill_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut srv = ServerProcess::spawn(&data);
    let admin_token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let admin = admin_token.trim().to_string();
    let c = {
        let base = srv.base();
        let admin = Client::new(&base, &admin);
        let v = admin.ok(
            "POST",
            "/v1/missions",
            Some(json!({"mission_id": "m", "title": "t", "lead": "lead"})),
        );
        let lead = Client::new(&base, v["lead_token"].as_str().unwrap());
        let mut out = std::collections::BTreeMap::new();
        for (n, r) in [("ada", "write"), ("bob", "read"), ("otto", "audit")] {
            let v = lead.ok(
                "POST",
                "/v1/missions/m/participants",
                Some(json!({"name": n, "role": r})),
            );
            out.insert(n, v["token"].as_str().unwrap().to_string());
        }
        out
    };
    let ada = Client::new(&srv.base(), &c["ada"]);
    for n in 0..10 {
        ada.ok(
            "POST",
            "/v1/missions/m/messages",
            Some(json!({"topic": "t", "payload": n})),
        );
    }
    let bob = Client::new(&srv.base(), &c["bob"]);
    let v = bob.ok(
        "POST",
        "/v1/missions/m/consumers/main/ack",
        Some(json!({"sequence": 9})),
    );
    assert_eq!(v["position"], 9);
    let v = bob.ok(
        "POST",
        "/v1/missions/m/consumers/main/ack",
        Some(json!({"sequence": 4})),
    );
    assert_eq!(v["position"], 9, "never moves back");
    assert_status(
        bob.post(
            "/v1/missions/m/consumers/main/ack",
            json!({"sequence": 999}),
        ),
        400,
        "invalid_input",
    );

    // SIGKILL: no shutdown, no flush beyond what the ack already did.
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    let srv = ServerProcess::spawn(&data);
    let bob = Client::new(&srv.base(), &c["bob"]);
    let v = bob.ok("GET", "/v1/missions/m/events?consumer=main&limit=2", None);
    assert_eq!(v["events"][0]["sequence"], 10);
    let mut stream = Sse::open(&srv.base(), &c["bob"], "?consumer=main");
    assert_eq!(stream.next().unwrap().0, 10);
    // Visible to the auditor; a reader sees only its own.
    let ada = Client::new(&srv.base(), &c["ada"]);
    ada.ok(
        "POST",
        "/v1/missions/m/consumers/side/ack",
        Some(json!({"sequence": 1})),
    );
    let otto = Client::new(&srv.base(), &c["otto"]);
    let all = otto.ok("GET", "/v1/missions/m/consumers", None);
    assert_eq!(all["consumers"].as_array().unwrap().len(), 2);
    let own = bob.ok("GET", "/v1/missions/m/consumers", None);
    assert_eq!(own["consumers"].as_array().unwrap().len(), 1);
    assert_eq!(own["consumers"][0]["position"], 9);
    let (s, _) = bob.send("DELETE", "/v1/missions/m/consumers/main", None);
    assert_eq!(s, 204);
    assert_status(
        bob.send("DELETE", "/v1/missions/m/consumers/main", None),
        404,
        "not_found",
    );
}

/// The admin endpoints the CLI's `--server` mode uses with the admin
/// token (lifecycle steps, role and removal as a named participant, ack,
/// expire at a given time, filtered replay), and the checked `sender` of
/// the participant endpoints: every bad input is a clear error that
/// writes nothing.
#[test]
fn admin_acts_as_named_participants_and_bad_input_writes_nothing() {
    let srv = TestServer::start();
    let base = srv.base();
    let c = seeded(&base);
    let (admin, ada, bob) = (&c["admin"], &c["ada"], &c["bob"]);
    let cp = checkpoint(ada, 1);
    let h = offer(ada, "bob", &cp);
    let head = |who: &Client| {
        who.get("/v1/missions/m").1["head_sequence"]
            .as_u64()
            .unwrap()
    };
    let write = |body: Value| admin.post("/v1/admin/missions/m/events", body);

    // Refused, nothing written: a step by someone who is not the
    // recipient, an unknown handoff, an unknown field, a step its status
    // does not allow, a forged sender on the ordinary endpoint, a
    // participant token on the admin endpoint.
    let before = head(admin);
    let (s, v) = write(json!({"type": "accept", "sender": "cy", "handoff_id": h}));
    assert!(s == 403 || s == 409, "{s} {v}");
    assert_status(
        write(json!({"type": "accept", "sender": "bob",
                     "handoff_id": "01a2350d-0000-7000-8000-000000000000"})),
        404,
        "handoff_not_found",
    );
    assert_status(
        write(json!({"type": "accept", "sender": "bob", "handoff_id": h, "colour": 1})),
        400,
        "invalid_body",
    );
    assert_status(
        write(json!({"type": "complete", "sender": "bob", "handoff_id": h})),
        409,
        "conflict",
    );
    assert_status(
        ada.post(
            &format!("/v1/missions/m/handoffs/{h}/accept"),
            json!({"sender": "bob"}),
        ),
        403,
        "sender_mismatch",
    );
    assert_status(
        bob.post(
            "/v1/admin/missions/m/events",
            json!({"type": "accept", "sender": "bob", "handoff_id": h}),
        ),
        403,
        "admin_only",
    );
    assert_eq!(head(admin), before, "the refused calls wrote nothing");

    // The admin accepts as bob; bob's own token then holds the lease.
    let (s, v) =
        write(json!({"type": "accept", "sender": "bob", "handoff_id": h, "lease_ms": 1000}));
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["event_type"].as_str(), v["sender"].as_str()),
        (Some("handoff_accepted"), Some("bob"))
    );
    let hb = bob.post(
        &format!("/v1/missions/m/handoffs/{h}/heartbeat"),
        json!({"sender": "bob", "lease_ms": 1000}),
    );
    assert_eq!(hb.0, 201, "{}", hb.1);

    // Expire at an explicit time: a bad time is refused, a later one
    // returns the work to ada.
    assert_status(
        admin.post(
            "/v1/admin/expire",
            json!({"mission_id": "m", "at": "tomorrow"}),
        ),
        400,
        "invalid_body",
    );
    assert_status(ada.post("/v1/admin/expire", json!({})), 403, "admin_only");
    let v = admin.ok(
        "POST",
        "/v1/admin/expire",
        Some(json!({"mission_id": "m", "at": "2999-01-01T00:00:00Z"})),
    );
    let expired: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(expired, ["handoff_expired"]);
    let info = admin.get(&format!("/v1/missions/m/handoffs/{h}")).1;
    assert_eq!(
        (info["status"].as_str(), info["returned_to"].as_str()),
        (Some("expired"), Some("ada"))
    );

    // Role and removal as the operator or a named lead (not a writer).
    let (s, v) = write(json!({"type": "role", "sender": "ada", "name": "cy", "role": "read"}));
    assert_eq!(s, 403, "{v}");
    let v = admin.ok(
        "POST",
        "/v1/admin/missions/m/events",
        Some(json!({"type": "role", "sender": "lead", "name": "cy", "role": "read"})),
    );
    assert_eq!(
        (v["event_type"].as_str(), v["sender"].as_str()),
        (Some("role_changed"), Some("lead"))
    );
    let v = admin.ok(
        "POST",
        "/v1/admin/missions/m/events",
        Some(json!({"type": "remove", "name": "cy"})),
    );
    assert_eq!(v["event_type"], "participant_removed");
    assert_status(c["cy"].get("/v1/missions/m/events"), 401, "unknown_token");

    // Ack for a participant; past the head and unknown participants refused.
    let at = head(admin);
    let v = admin.ok(
        "POST",
        "/v1/admin/missions/m/ack",
        Some(json!({"participant": "otto", "consumer": "main", "sequence": 3})),
    );
    assert_eq!(v["position"], 3);
    let (s, _) = admin.post(
        "/v1/admin/missions/m/ack",
        json!({"participant": "otto", "consumer": "main", "sequence": at + 10}),
    );
    assert_eq!(s, 400);
    let (s, _) = admin.post(
        "/v1/admin/missions/m/ack",
        json!({"participant": "nobody", "consumer": "main", "sequence": 1}),
    );
    assert!(s == 403 || s == 404, "{s}");

    // Filtered replay as a reader: from otto's consumer, only handoff
    // events, newest first; the reader's `read` is checked.
    let page = admin.get("/v1/admin/missions/m/replay?as=otto&type=handoff_accepted&type=handoff_expired&order=desc").1;
    let types: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["handoff_expired", "handoff_accepted"]);
    let page = admin
        .get("/v1/admin/missions/m/replay?as=otto&consumer=main&limit=1")
        .1;
    assert_eq!(page["events"][0]["sequence"], 4);
    assert_status(
        admin.get("/v1/admin/missions/m/replay?from=1"),
        400,
        "invalid_query",
    );
    assert_status(
        admin.get("/v1/admin/missions/m/replay?as=otto&colour=red"),
        400,
        "invalid_query",
    );
    let (s, _) = admin.get("/v1/admin/missions/m/replay?as=nobody");
    assert_eq!(s, 403);

    // Tokens: rotate=false keeps the earlier ones.
    let v = admin.ok(
        "POST",
        "/v1/missions/m/participants/ada/token",
        Some(json!({"rotate": false})),
    );
    assert_eq!(v["revoked"], 0);
    assert_eq!(
        ada.get("/v1/missions/m").0,
        200,
        "ada's first token still works"
    );
    assert_status(
        admin.post(
            "/v1/missions/m/participants/ada/token",
            json!({"rotate": "yes"}),
        ),
        400,
        "invalid_body",
    );
}
