//! The bus server over real HTTP on 127.0.0.1:0: every endpoint and status
//! code, token scoping, forged senders, the SSE stream (catch-up then live,
//! exactly once, Last-Event-ID, stalled readers), limits, graceful shutdown,
//! and a SIGKILL crash of the real `mission-bus serve` process.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mission_bus::server::{self, Limits};
use mission_bus::{Action, Json, MissionBus};
use serde_json::{json, Value};

const ADMIN: &str = "test-admin-token-0123456789abcdef";
/// Upper bound on any single wait in these tests.
const DEADLINE: Duration = Duration::from_secs(60);

// ----- harness ---------------------------------------------------------------

/// A server running `server::run_with_limits` on its own runtime thread.
struct TestServer {
    addr: SocketAddr,
    bus: MissionBus,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<mission_bus::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    fn start() -> Self {
        Self::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Self {
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

    /// Trigger the graceful shutdown and wait for `run` to return.
    fn shutdown(&mut self) -> mission_bus::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().expect("server thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
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

/// One HTTP exchange: (status, JSON body or Null).
fn request(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut resp = match (method, body) {
        ("GET", _) => {
            let mut r = agent.get(url);
            if let Some(t) = token {
                r = r.header("Authorization", format!("Bearer {t}"));
            }
            r.call()
        }
        (m, b) => {
            let mut r = match m {
                "POST" => agent.post(url),
                "PUT" => agent.put(url),
                other => panic!("method {other}"),
            };
            if let Some(t) = token {
                r = r.header("Authorization", format!("Bearer {t}"));
            }
            r.header("Content-Type", "application/json")
                .send(b.unwrap_or("").to_string())
        }
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: body {text:?}: {e}"))
    };
    (status, value)
}

/// A small client bound to one server and one token.
#[derive(Clone)]
struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(base: &str, token: Option<&str>) -> Self {
        Client {
            agent: agent(),
            base: base.to_string(),
            token: token.map(str::to_string),
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        request(
            &self.agent,
            "GET",
            &format!("{}{path}", self.base),
            self.token.as_deref(),
            None,
        )
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string())
    }

    fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        request(
            &self.agent,
            "POST",
            &format!("{}{path}", self.base),
            self.token.as_deref(),
            Some(body),
        )
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {v}"))
}

/// Assert status and error code; the message must be non-empty.
#[track_caller]
fn assert_error(got: (u16, Value), status: u16, expected_code: &str) {
    assert_eq!(got.0, status, "body: {}", got.1);
    assert_eq!(code(&got.1), expected_code, "body: {}", got.1);
    assert!(
        !got.1["error"]["message"].as_str().unwrap().is_empty(),
        "empty message"
    );
}

/// Create a mission as admin; returns the lead's token.
fn create_mission(admin: &Client, mission: &str, lead: &str) -> String {
    let (status, body) = admin.post(
        "/v1/missions",
        json!({"mission_id": mission, "title": format!("{mission} title"), "lead": lead}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["mission_id"], mission);
    body["lead_token"].as_str().unwrap().to_string()
}

/// Add a participant as `by`; returns its token.
fn add_participant(by: &Client, mission: &str, name: &str, role: &str) -> String {
    let (status, body) = by.post(
        &format!("/v1/missions/{mission}/participants"),
        json!({"name": name, "role": role}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], name);
    assert_eq!(body["role"], role);
    body["token"].as_str().unwrap().to_string()
}

/// A mission with lead `lead`, writer `ada`, writer `bob`, reader `rita`,
/// auditor `otto`. Returns the clients by name (plus "admin").
fn seeded(srv: &TestServer, mission: &str) -> BTreeMap<&'static str, Client> {
    let base = srv.url("");
    let admin = Client::new(&base, Some(ADMIN));
    let lead = Client::new(&base, Some(&create_mission(&admin, mission, "lead")));
    let mut out = BTreeMap::new();
    for (name, role) in [
        ("ada", "write"),
        ("bob", "write"),
        ("rita", "read"),
        ("otto", "audit"),
    ] {
        let token = add_participant(&lead, mission, name, role);
        out.insert(name, Client::new(&base, Some(&token)));
    }
    out.insert("lead", lead);
    out.insert("admin", admin);
    out
}

// ----- SSE client --------------------------------------------------------------

/// One Server-Sent Event: (id, parsed data).
type SseItem = (u64, Value);

/// Reads an SSE response line by line.
struct SseReader {
    lines: BufReader<Box<dyn Read + Send>>,
}

impl SseReader {
    /// Open the stream; panics unless the server answers 200 text/event-stream.
    fn open(base: &str, mission: &str, token: &str, query: &str, last_id: Option<u64>) -> Self {
        let agent = agent();
        let mut req = agent
            .get(format!("{base}/v1/missions/{mission}/events/stream{query}"))
            .header("Authorization", format!("Bearer {token}"))
            .header("Accept", "text/event-stream");
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.call().unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        let reader: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
        SseReader {
            lines: BufReader::new(reader),
        }
    }

    /// The next event, or None at the end of the stream. Comments
    /// (keep-alives) are skipped.
    fn next(&mut self) -> Option<SseItem> {
        let mut id = None;
        let mut data = String::new();
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

// ----- endpoints and status codes ----------------------------------------------

#[test]
fn health_and_unknown_routes() {
    let srv = TestServer::start();
    let anon = Client::new(&srv.url(""), None);
    let (status, body) = anon.get("/v1/health");
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_error(anon.get("/v1/nope"), 404, "not_found");
    let admin = Client::new(&srv.url(""), Some(ADMIN));
    assert_error(
        request(
            &admin.agent,
            "PUT",
            &srv.url("/v1/missions"),
            Some(ADMIN),
            Some("{}"),
        ),
        405,
        "method_not_allowed",
    );
}

#[test]
fn authentication_failures_are_401() {
    let srv = TestServer::start();
    let base = srv.url("");
    let admin = Client::new(&base, Some(ADMIN));
    create_mission(&admin, "m1", "lead");
    let body = json!({"mission_id": "m2", "title": "t", "lead": "x"});
    assert_error(
        Client::new(&base, None).post("/v1/missions", body.clone()),
        401,
        "missing_token",
    );
    assert_error(
        Client::new(
            &base,
            Some("mb_0000000000000000000000000000000000000000000000000000000000000000"),
        )
        .post("/v1/missions", body.clone()),
        401,
        "unknown_token",
    );
    // Not a bearer scheme.
    let (status, v) = {
        let mut resp = admin
            .agent
            .get(srv.url("/v1/missions/m1/events"))
            .header("Authorization", format!("Basic {ADMIN}"))
            .call()
            .unwrap();
        let status = resp.status().as_u16();
        assert!(resp.headers().contains_key("www-authenticate"));
        (status, resp.body_mut().read_json::<Value>().unwrap())
    };
    assert_error((status, v), 401, "missing_token");
    for path in [
        "/v1/missions/m1/events",
        "/v1/missions/m1/verify",
        "/v1/missions/m1/resume?for=lead",
        "/v1/missions/m1/events/stream",
    ] {
        assert_error(Client::new(&base, None).get(path), 401, "missing_token");
        assert_error(
            Client::new(&base, Some("wrong-token")).get(path),
            401,
            "unknown_token",
        );
    }
}

#[test]
fn missions_and_participants() {
    let srv = TestServer::start();
    let base = srv.url("");
    let admin = Client::new(&base, Some(ADMIN));

    // Create with custom profiles; the lead token works at once.
    let (status, body) = admin.post(
        "/v1/missions",
        json!({
            "mission_id": "m1", "title": "first", "lead": "lead",
            "profiles": {"roles": {"lead": ["publish", "checkpoint", "handoff", "read", "audit"],
                                   "scribe": ["publish", "read"]}}
        }),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["head_sequence"], 2);
    let lead = Client::new(&base, Some(body["lead_token"].as_str().unwrap()));
    let scribe = Client::new(&base, Some(&add_participant(&lead, "m1", "sam", "scribe")));
    assert_eq!(
        scribe
            .post(
                "/v1/missions/m1/messages",
                json!({"topic": "t", "payload": 1})
            )
            .0,
        201
    );
    // `write` is not defined by this mission's roles.
    assert_error(
        lead.post(
            "/v1/missions/m1/participants",
            json!({"name": "w", "role": "write"}),
        ),
        400,
        "unknown_role",
    );

    // 409 on an existing mission, 400 on malformed input, 403 for participants.
    assert_error(
        admin.post(
            "/v1/missions",
            json!({"mission_id": "m1", "title": "again", "lead": "x"}),
        ),
        409,
        "mission_exists",
    );
    assert_error(
        admin.post_raw("/v1/missions", "{not json"),
        400,
        "invalid_body",
    );
    assert_error(
        admin.post("/v1/missions", json!({"title": "no id", "lead": "x"})),
        400,
        "invalid_body",
    );
    assert_error(
        admin.post(
            "/v1/missions",
            json!({"mission_id": "m3", "title": "t", "lead": "x", "extra": 1}),
        ),
        400,
        "invalid_body",
    );
    assert_error(
        admin.post(
            "/v1/missions",
            json!({"mission_id": "m3", "title": "t", "lead": "x",
                                          "profiles": {"roles": {"lead": ["fly"]}}}),
        ),
        400,
        "invalid_config",
    );
    assert_error(
        admin.post(
            "/v1/missions",
            json!({"mission_id": "", "title": "t", "lead": "x"}),
        ),
        400,
        "invalid_input",
    );
    assert_error(
        lead.post(
            "/v1/missions",
            json!({"mission_id": "m4", "title": "t", "lead": "x"}),
        ),
        403,
        "admin_only",
    );

    // Participants: admin or lead may add; a scribe may not; duplicates 409.
    let admin_added = add_participant(&admin, "m1", "ann", "scribe");
    assert!(admin_added.starts_with("mb_"));
    assert_error(
        scribe.post(
            "/v1/missions/m1/participants",
            json!({"name": "z", "role": "scribe"}),
        ),
        403,
        "permission_denied",
    );
    assert_error(
        lead.post(
            "/v1/missions/m1/participants",
            json!({"name": "ann", "role": "scribe"}),
        ),
        409,
        "participant_exists",
    );
    assert_error(
        admin.post(
            "/v1/missions/nope/participants",
            json!({"name": "a", "role": "read"}),
        ),
        404,
        "mission_not_found",
    );
    assert_error(
        lead.post(
            "/v1/missions/m1/participants",
            json!({"name": "q", "role": "scribe", "sender": "ann"}),
        ),
        403,
        "sender_mismatch",
    );
    // Metadata is stored on the join event.
    let (status, body) = lead.post(
        "/v1/missions/m1/participants",
        json!({"name": "meta", "role": "scribe", "metadata": {"host": "h1"}}),
    );
    assert_eq!(status, 201);
    let seq = body["sequence"].as_u64().unwrap();
    let (_, page) = lead.get(&format!("/v1/missions/m1/events?from={seq}&limit=1"));
    assert_eq!(page["events"][0]["metadata"]["host"], "h1");
    assert_eq!(page["events"][0]["sender"], "lead");
}

#[test]
fn messages_checkpoints_handoffs_and_resume() {
    let srv = TestServer::start();
    let c = seeded(&srv, "m1");
    let (ada, bob, admin) = (&c["ada"], &c["bob"], &c["admin"]);

    let (status, msg) = ada.post(
        "/v1/missions/m1/messages",
        json!({"topic": "status", "payload": {"step": 1}}),
    );
    assert_eq!(status, 201, "{msg}");
    assert_eq!(msg["event_type"], "message");
    assert_eq!(msg["sender"], "ada");
    assert_eq!(msg["topic"], "status");
    assert_eq!(msg["payload"]["step"], 1);
    let head = msg["sequence"].as_u64().unwrap();
    assert_eq!(head, 7); // created, lead, 4 joins, this

    // Optimistic concurrency.
    assert_error(
        ada.post(
            "/v1/missions/m1/messages",
            json!({"topic": "t", "payload": 2, "expected_sequence": head - 1}),
        ),
        409,
        "sequence_conflict",
    );
    let (status, ok) = ada.post(
        "/v1/missions/m1/messages",
        json!({"topic": "t", "payload": 2, "expected_sequence": head}),
    );
    assert_eq!((status, ok["sequence"].as_u64()), (201, Some(head + 1)));

    // Safe retries with event_id; same id with other content is a conflict.
    let id = "01900000-0000-7000-8000-000000000001";
    let first = ada.post(
        "/v1/missions/m1/messages",
        json!({"topic": "r", "payload": 3, "event_id": id}),
    );
    let again = ada.post(
        "/v1/missions/m1/messages",
        json!({"topic": "r", "payload": 3, "event_id": id}),
    );
    assert_eq!(first.0, 201);
    assert_eq!(first.1, again.1);
    assert_eq!(first.1["message_id"], id);
    assert_error(
        ada.post(
            "/v1/missions/m1/messages",
            json!({"topic": "r", "payload": 4, "event_id": id}),
        ),
        409,
        "event_id_conflict",
    );
    assert_error(
        ada.post(
            "/v1/missions/m1/messages",
            json!({"topic": "r", "payload": 4, "event_id": "nope"}),
        ),
        400,
        "invalid_body",
    );
    assert_error(
        ada.post("/v1/missions/m1/messages", json!({"payload": 4})),
        400,
        "invalid_body",
    );
    assert_error(
        ada.post(
            "/v1/missions/m1/messages",
            json!({"topic": "", "payload": 4}),
        ),
        400,
        "invalid_input",
    );
    assert_error(
        admin.post(
            "/v1/missions/m1/messages",
            json!({"topic": "t", "payload": 1}),
        ),
        403,
        "participant_only",
    );
    assert_error(
        ada.post(
            "/v1/missions/nope/messages",
            json!({"topic": "t", "payload": 1}),
        ),
        403,
        "wrong_mission",
    );

    // Checkpoint, then handoff to bob.
    let (status, cp) = ada.post(
        "/v1/missions/m1/checkpoints",
        json!({"summary": "lexer done", "state": {"next": "parser"}, "artifacts": ["lexer.rs"]}),
    );
    assert_eq!(status, 201, "{cp}");
    assert_eq!(cp["event_type"], "checkpoint");
    assert_eq!(cp["artifacts"], json!(["lexer.rs"]));
    let cp_id = cp["checkpoint_id"].as_str().unwrap().to_string();
    assert_error(
        ada.post(
            "/v1/missions/m1/handoffs",
            json!({"recipient": "bob", "checkpoint_id": "01900000-0000-7000-8000-0000000000ff"}),
        ),
        404,
        "checkpoint_not_found",
    );
    assert_error(
        ada.post(
            "/v1/missions/m1/handoffs",
            json!({"recipient": "nobody", "checkpoint_id": cp_id}),
        ),
        404,
        "participant_not_found",
    );
    let (status, h) = ada.post(
        "/v1/missions/m1/handoffs",
        json!({"recipient": "bob", "checkpoint_id": cp_id, "note": "your turn"}),
    );
    assert_eq!(status, 201, "{h}");
    assert_eq!(h["event_type"], "handoff");
    let h_id = h["handoff_id"].as_str().unwrap().to_string();

    // Resume by handoff id and by recipient.
    let (status, packet) = bob.get(&format!("/v1/missions/m1/handoffs/{h_id}/resume"));
    assert_eq!(status, 200, "{packet}");
    assert_eq!(packet["recipient"], "bob");
    assert_eq!(packet["sender"], "ada");
    assert_eq!(packet["handoff_note"], "your turn");
    assert_eq!(packet["checkpoint"]["checkpoint_id"], cp_id.as_str());
    assert!(packet["participants"]["rita"].is_object());
    assert!(packet["isolation_profiles"].as_array().unwrap().len() >= 3);
    let (status, latest) = bob.get("/v1/missions/m1/resume");
    assert_eq!(status, 200);
    assert_eq!(latest["handoff_id"], h_id.as_str());
    let (status, by_admin) = admin.get("/v1/missions/m1/resume?for=bob");
    assert_eq!((status, &by_admin["handoff_id"]), (200, &json!(h_id)));
    assert_error(admin.get("/v1/missions/m1/resume"), 400, "invalid_query");
    assert_error(
        bob.get("/v1/missions/m1/resume?for=rita"),
        404,
        "handoff_not_found",
    );
    assert_error(
        bob.get("/v1/missions/m1/handoffs/01900000-0000-7000-8000-0000000000ff/resume"),
        404,
        "handoff_not_found",
    );
    assert_error(
        bob.get("/v1/missions/m1/handoffs/not-a-uuid/resume"),
        400,
        "invalid_path",
    );
    assert_error(
        bob.get("/v1/missions/m1/resume?bogus=1"),
        400,
        "invalid_query",
    );
    // A handoff id of another mission is not found through this one.
    let c2 = seeded(&srv, "m2");
    assert_error(
        c2["lead"].get(&format!("/v1/missions/m2/handoffs/{h_id}/resume")),
        404,
        "handoff_not_found",
    );
}

#[test]
fn event_pages_and_verify() {
    let srv = TestServer::start();
    let c = seeded(&srv, "m1");
    for i in 0..25 {
        assert_eq!(
            c["ada"]
                .post(
                    "/v1/missions/m1/messages",
                    json!({"topic": "n", "payload": i})
                )
                .0,
            201
        );
    }
    let head = 6 + 25;
    // Page through as the read-only participant.
    let mut from = 0;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (status, page) = c["rita"].get(&format!("/v1/missions/m1/events?from={from}&limit=7"));
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            assert_eq!(page["next"].as_u64().unwrap(), head + 1);
            break;
        }
        assert!(events.len() <= 7);
        seen.extend(events.iter().map(|e| e["sequence"].as_u64().unwrap()));
        from = page["next"].as_u64().unwrap();
    }
    assert_eq!(seen, (1..=head).collect::<Vec<_>>());
    let (_, default_page) = c["admin"].get("/v1/missions/m1/events");
    assert_eq!(
        default_page["events"].as_array().unwrap().len() as u64,
        head
    );
    assert_error(
        c["rita"].get("/v1/missions/m1/events?limit=0"),
        400,
        "invalid_query",
    );
    assert_error(
        c["rita"].get("/v1/missions/m1/events?limit=100000"),
        400,
        "invalid_query",
    );
    assert_error(
        c["rita"].get("/v1/missions/m1/events?from=-1"),
        400,
        "invalid_query",
    );
    assert_error(
        c["admin"].get("/v1/missions/nope/events"),
        404,
        "mission_not_found",
    );

    // Verify needs `audit`.
    for who in ["otto", "lead", "admin"] {
        let (status, report) = c[who].get("/v1/missions/m1/verify");
        assert_eq!(status, 200, "{who}: {report}");
        assert_eq!(report["intact"], true);
        assert_eq!(report["head_sequence"].as_u64(), Some(head));
    }
    assert_error(
        c["ada"].get("/v1/missions/m1/verify"),
        403,
        "permission_denied",
    );
    assert_error(
        c["admin"].get("/v1/missions/nope/verify"),
        404,
        "mission_not_found",
    );
}

#[test]
fn reissued_tokens_revoke_the_old_ones() {
    let srv = TestServer::start();
    let clients = seeded(&srv, "m");
    let base = srv.url("");
    let old_ada = &clients["ada"];
    let page = "/v1/missions/m/events";
    assert_eq!(old_ada.get(page).0, 200);

    // A writer may not reissue; a lead and the admin may.
    assert_error(
        clients["bob"].post("/v1/missions/m/participants/ada/token", json!({})),
        403,
        "lead_only",
    );
    let (status, body) = clients["lead"].post("/v1/missions/m/participants/ada/token", json!({}));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["revoked"], 1);
    let new_ada = Client::new(&base, body["token"].as_str());
    assert_error(old_ada.get(page), 401, "unknown_token");
    assert_eq!(new_ada.get(page).0, 200);

    let (status, body) = clients["admin"].post("/v1/missions/m/participants/ada/token", json!({}));
    assert_eq!(status, 201, "{body}");
    assert_error(new_ada.get(page), 401, "unknown_token");
    let newest = Client::new(&base, body["token"].as_str());
    let (status, ev) = newest.post(
        "/v1/missions/m/messages",
        json!({"topic": "t", "payload": 1}),
    );
    assert_eq!((status, ev["sender"].as_str()), (201, Some("ada")));

    assert_error(
        clients["lead"].post("/v1/missions/m/participants/ghost/token", json!({})),
        404,
        "participant_not_found",
    );
    // Other participants' tokens are untouched.
    assert_eq!(clients["bob"].get(page).0, 200);
}

#[test]
fn token_of_mission_a_cannot_read_or_write_mission_b() {
    let srv = TestServer::start();
    let a = seeded(&srv, "mission-a");
    let b = seeded(&srv, "mission-b");
    let (_, cp) = b["ada"].post(
        "/v1/missions/mission-b/checkpoints",
        json!({"summary": "s", "state": {}}),
    );
    let cp_id = cp["checkpoint_id"].as_str().unwrap().to_string();
    let (_, h) = b["ada"].post(
        "/v1/missions/mission-b/handoffs",
        json!({"recipient": "bob", "checkpoint_id": cp_id}),
    );
    let h_id = h["handoff_id"].as_str().unwrap().to_string();
    let before = srv.bus.state("mission-b").unwrap().head;
    for who in ["lead", "ada", "rita", "otto"] {
        let c = &a[who];
        let posts = [
            (
                "/v1/missions/mission-b/messages",
                json!({"topic": "t", "payload": 1}),
            ),
            (
                "/v1/missions/mission-b/checkpoints",
                json!({"summary": "s", "state": {}}),
            ),
            (
                "/v1/missions/mission-b/handoffs",
                json!({"recipient": "bob", "checkpoint_id": cp_id}),
            ),
            (
                "/v1/missions/mission-b/participants",
                json!({"name": "intruder", "role": "lead"}),
            ),
        ];
        for (path, body) in posts {
            assert_error(c.post(path, body), 403, "wrong_mission");
        }
        for path in [
            "/v1/missions/mission-b/events".to_string(),
            "/v1/missions/mission-b/events/stream".to_string(),
            "/v1/missions/mission-b/verify".to_string(),
            "/v1/missions/mission-b/resume?for=bob".to_string(),
            format!("/v1/missions/mission-b/handoffs/{h_id}/resume"),
        ] {
            assert_error(c.get(&path), 403, "wrong_mission");
        }
    }
    assert_eq!(
        srv.bus.state("mission-b").unwrap().head,
        before,
        "nothing was written"
    );
}

#[test]
fn read_participant_cannot_publish_and_forged_senders_are_refused() {
    let srv = TestServer::start();
    let c = seeded(&srv, "m1");
    let head = srv.bus.state("m1").unwrap().head;
    let rita = &c["rita"];
    assert_error(
        rita.post(
            "/v1/missions/m1/messages",
            json!({"topic": "t", "payload": 1}),
        ),
        403,
        "permission_denied",
    );
    assert_error(
        rita.post(
            "/v1/missions/m1/checkpoints",
            json!({"summary": "s", "state": {}}),
        ),
        403,
        "permission_denied",
    );
    assert_error(
        rita.post(
            "/v1/missions/m1/participants",
            json!({"name": "x", "role": "read"}),
        ),
        403,
        "permission_denied",
    );
    // The auditor may read and verify but not write either.
    assert_error(
        c["otto"].post(
            "/v1/missions/m1/messages",
            json!({"topic": "t", "payload": 1}),
        ),
        403,
        "permission_denied",
    );

    // ada claims to be bob, on every write endpoint.
    let (_, cp) = c["ada"].post(
        "/v1/missions/m1/checkpoints",
        json!({"summary": "s", "state": {}}),
    );
    let cp_id = cp["checkpoint_id"].as_str().unwrap().to_string();
    let head_after_cp = head + 1;
    let forged = [
        (
            "/v1/missions/m1/messages",
            json!({"topic": "t", "payload": 1, "sender": "bob"}),
        ),
        (
            "/v1/missions/m1/checkpoints",
            json!({"summary": "s", "state": {}, "sender": "bob"}),
        ),
        (
            "/v1/missions/m1/handoffs",
            json!({"recipient": "bob", "checkpoint_id": cp_id, "sender": "bob"}),
        ),
    ];
    for (path, body) in forged {
        assert_error(c["ada"].post(path, body), 403, "sender_mismatch");
    }
    // Naming yourself is fine.
    let (status, own) = c["ada"].post(
        "/v1/missions/m1/messages",
        json!({"topic": "t", "payload": 1, "sender": "ada"}),
    );
    assert_eq!((status, own["sender"].as_str()), (201, Some("ada")));
    assert_eq!(srv.bus.state("m1").unwrap().head, head_after_cp + 1);
}

#[test]
fn oversized_bodies_are_413() {
    let srv = TestServer::with_limits(Limits::default().max_body_bytes(16 * 1024));
    let c = seeded(&srv, "m1");
    let big = "x".repeat(20 * 1024);
    assert_error(
        c["ada"].post(
            "/v1/missions/m1/messages",
            json!({"topic": "t", "payload": big}),
        ),
        413,
        "body_too_large",
    );
    // Under the body limit but over the library's payload limit (64 KiB):
    // only reachable with the default body limit.
    let srv = TestServer::start();
    let c = seeded(&srv, "m1");
    let big = "x".repeat(80 * 1024);
    assert_error(
        c["ada"].post(
            "/v1/missions/m1/messages",
            json!({"topic": "t", "payload": big}),
        ),
        413,
        "too_large",
    );
    assert_eq!(srv.bus.state("m1").unwrap().head, 6);
}

// ----- the event stream ------------------------------------------------------------

#[test]
fn subscriber_from_zero_sees_32_publishers_exactly_once_in_order() {
    const AGENTS: usize = 32;
    const EACH: usize = 12;
    let srv = TestServer::start();
    let base = srv.url("");
    let admin = Client::new(&base, Some(ADMIN));
    let lead_token = create_mission(&admin, "m1", "lead");
    let lead = Client::new(&base, Some(&lead_token));
    let tokens: Vec<String> = (0..AGENTS)
        .map(|i| add_participant(&lead, "m1", &format!("agent-{i}"), "write"))
        .collect();
    let setup_head = 2 + AGENTS as u64;
    let total = setup_head + (AGENTS * EACH) as u64;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let published = Arc::new(AtomicUsize::new(0));
    let (first_acks, enough) = mpsc::channel::<()>();
    let publishers: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            let client = Client::new(&base, Some(&token));
            let acked = Arc::clone(&acked);
            let published = Arc::clone(&published);
            let first_acks = first_acks.clone();
            thread::spawn(move || {
                for n in 0..EACH {
                    let (status, e) = client.post(
                        "/v1/missions/m1/messages",
                        json!({"topic": "work", "payload": {"agent": i, "n": n}}),
                    );
                    assert_eq!(status, 201, "{e}");
                    acked.lock().unwrap().push((
                        e["sequence"].as_u64().unwrap(),
                        e["message_id"].as_str().unwrap().to_string(),
                    ));
                    if published.fetch_add(1, Ordering::SeqCst) + 1 == AGENTS * 2 {
                        let _ = first_acks.send(());
                    }
                }
            })
        })
        .collect();
    drop(first_acks);
    // Connect while the agents are publishing: part catch-up, part live.
    let _ = enough.recv_timeout(DEADLINE);
    let mut sse = SseReader::open(&base, "m1", &lead_token, "?from=0", None);
    let mut got = Vec::new();
    while let Some((id, data)) = sse.next() {
        assert_eq!(data["sequence"].as_u64(), Some(id));
        got.push((id, data));
        if id >= total {
            break;
        }
    }
    for p in publishers {
        p.join().unwrap();
    }
    let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        (1..=total).collect::<Vec<_>>(),
        "every event once, in order"
    );
    // Each acknowledged event arrived with the id it was acknowledged with.
    let acked = acked.lock().unwrap();
    assert_eq!(acked.len(), AGENTS * EACH);
    for (seq, id) in acked.iter() {
        assert_eq!(got[*seq as usize - 1].1["message_id"], id.as_str());
    }
}

#[test]
fn last_event_id_resumes_exactly_after_the_last_event_seen() {
    let srv = TestServer::start();
    let c = seeded(&srv, "m1");
    let token = c["rita"].token.clone().unwrap();
    let base = srv.url("");
    for i in 0..10 {
        c["ada"].post(
            "/v1/missions/m1/messages",
            json!({"topic": "n", "payload": i}),
        );
    }
    // Read up to sequence 9, then hang up.
    let mut sse = SseReader::open(&base, "m1", &token, "", None);
    let mut last = 0;
    while let Some((id, _)) = sse.next() {
        assert_eq!(id, last + 1);
        last = id;
        if id == 9 {
            break;
        }
    }
    drop(sse);
    for i in 10..15 {
        c["ada"].post(
            "/v1/missions/m1/messages",
            json!({"topic": "n", "payload": i}),
        );
    }
    let head = srv.bus.state("m1").unwrap().head;
    assert_eq!(head, 6 + 15);
    // Reconnect as an EventSource would: Last-Event-ID wins over ?from=.
    let mut sse = SseReader::open(&base, "m1", &token, "?from=1", Some(last));
    let mut resumed = Vec::new();
    while let Some((id, _)) = sse.next() {
        resumed.push(id);
        if id >= head {
            break;
        }
    }
    assert_eq!(resumed, (10..=head).collect::<Vec<_>>());
    // ?from= alone starts there; live events follow the catch-up.
    let mut sse = SseReader::open(&base, "m1", &token, &format!("?from={head}"), None);
    assert_eq!(sse.next().unwrap().0, head);
    c["ada"].post(
        "/v1/missions/m1/messages",
        json!({"topic": "n", "payload": "live"}),
    );
    let (id, data) = sse.next().unwrap();
    assert_eq!((id, data["payload"].as_str()), (head + 1, Some("live")));

    // Bad Last-Event-ID; and a participant without `read` is refused.
    let resp = agent()
        .get(srv.url("/v1/missions/m1/events/stream"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Last-Event-ID", "abc")
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

#[test]
fn stalled_subscriber_blocks_no_writer_and_catches_up_from_the_log() {
    let srv = TestServer::start();
    let c = seeded(&srv, "m1");
    let token = c["rita"].token.clone().unwrap();
    let mut stalled = SseReader::open(&srv.url(""), "m1", &token, "", None);
    assert_eq!(stalled.next().unwrap().0, 1);
    // More events, and more bytes, than the broadcast channel (4096) and the
    // loopback socket buffers hold, written while the subscriber reads nothing.
    let payload = Json::from(json!("p".repeat(2048)));
    let batches = 20;
    let per_batch = 400;
    let writer = {
        let bus = srv.bus.clone();
        thread::spawn(move || {
            for _ in 0..batches {
                let items = (0..per_batch)
                    .map(|_| {
                        (
                            "ada".to_string(),
                            Action::Publish {
                                topic: "bulk".into(),
                                payload: payload.clone(),
                            },
                        )
                    })
                    .collect();
                bus.append_batch("m1", items, None).unwrap();
            }
        })
    };
    // Meanwhile a second, live subscriber and an HTTP writer are not held up.
    let mut other = SseReader::open(&srv.url(""), "m1", &token, "?from=6", None);
    assert_eq!(other.next().unwrap().0, 6);
    let (status, _) = c["bob"].post(
        "/v1/missions/m1/messages",
        json!({"topic": "t", "payload": 1}),
    );
    assert_eq!(status, 201);
    writer.join().unwrap();
    let head = srv.bus.state("m1").unwrap().head;
    assert_eq!(head, 6 + 1 + batches * per_batch);
    // The stalled subscriber resumes reading and gets everything, once, in order.
    let mut expected = 2;
    while let Some((id, data)) = stalled.next() {
        assert_eq!(id, expected, "gap or duplicate");
        assert_eq!(data["sequence"].as_u64(), Some(id));
        expected += 1;
        if id == head {
            break;
        }
    }
    assert_eq!(expected, head + 1);
}

#[test]
fn stream_ends_when_the_reader_loses_read() {
    let srv = TestServer::start();
    let base = srv.url("");
    let admin = Client::new(&base, Some(ADMIN));
    let (status, body) = admin.post(
        "/v1/missions",
        json!({"mission_id": "m1", "title": "t", "lead": "lead",
               "profiles": {"roles": {"lead": ["publish", "checkpoint", "handoff", "read", "audit"],
                                      "read": ["read"], "muted": ["publish"]}}}),
    );
    assert_eq!(status, 201, "{body}");
    let token = add_participant(&admin, "m1", "rita", "read");
    let mut sse = SseReader::open(&base, "m1", &token, "", None);
    assert_eq!(sse.next().unwrap().0, 1);
    assert_eq!(sse.next().unwrap().0, 2);
    assert_eq!(sse.next().unwrap().0, 3);
    let change = Action::ChangeRole {
        name: "rita".into(),
        role: "muted".into(),
    };
    srv.bus
        .append("m1", mission_bus::OPERATOR, change, &Default::default())
        .unwrap();
    srv.bus
        .publish("m1", "lead", "secret", Json::null())
        .unwrap();
    // The role change itself may be seen; nothing after it.
    let mut after = Vec::new();
    while let Some((id, data)) = sse.next() {
        after.push((id, data["event_type"].as_str().unwrap().to_string()));
    }
    assert!(after.len() <= 1, "{after:?}");
    if let Some((id, kind)) = after.first() {
        assert_eq!((*id, kind.as_str()), (4, "role_changed"));
    }
    assert_error(
        Client::new(&base, Some(&token)).get("/v1/missions/m1/events/stream"),
        403,
        "permission_denied",
    );
}

#[test]
fn stream_limit_is_503() {
    let srv = TestServer::with_limits(Limits::default().max_streams(1));
    let c = seeded(&srv, "m1");
    let token = c["rita"].token.clone().unwrap();
    let mut first = SseReader::open(&srv.url(""), "m1", &token, "", None);
    assert_eq!(first.next().unwrap().0, 1);
    assert_error(
        c["rita"].get("/v1/missions/m1/events/stream"),
        503,
        "too_many_streams",
    );
    drop(first);
    // The slot comes back once the server notices the hang-up.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, _) = {
            let resp = agent()
                .get(srv.url("/v1/missions/m1/events/stream?from=99"))
                .header("Authorization", format!("Bearer {token}"))
                .call()
                .unwrap();
            (resp.status().as_u16(), ())
        };
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "stream slot never came back");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn idle_and_trickling_connections_are_closed() {
    use std::io::Write;
    let srv = TestServer::with_limits(
        Limits::default()
            .idle_timeout(Duration::from_millis(300))
            .max_connections(2),
    );
    let silent = std::net::TcpStream::connect(srv.addr).unwrap();
    let mut trickle = std::net::TcpStream::connect(srv.addr).unwrap();
    trickle.write_all(b"GET /v1/health HTTP/1.1\r\n").unwrap();
    for mut conn in [silent, trickle] {
        conn.set_read_timeout(Some(DEADLINE)).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 512];
        // EOF (or a reset) well before the deadline: the server hung up.
        match conn.read(&mut buf) {
            Ok(n) => assert!(n == 0 || buf[..n].starts_with(b"HTTP/1.1 408"), "{n} bytes"),
            Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
        }
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    // Both slots are free again.
    let anon = Client::new(&srv.url(""), None);
    assert_eq!(anon.get("/v1/health").0, 200);
    assert_eq!(anon.get("/v1/health").0, 200);
}

#[test]
fn graceful_shutdown_ends_streams_and_returns() {
    let mut srv = TestServer::start();
    let c = seeded(&srv, "m1");
    let token = c["rita"].token.clone().unwrap();
    let mut sse = SseReader::open(&srv.url(""), "m1", &token, "", None);
    let mut last = 0;
    // Read the backlog (6 events), then shut down while the stream is live.
    while last < 6 {
        last = sse.next().unwrap().0;
    }
    let started = Instant::now();
    srv.shutdown().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "took {:?}",
        started.elapsed()
    );
    assert!(sse.next().is_none(), "stream ends at shutdown");
    // The listener is closed.
    assert!(std::net::TcpStream::connect(srv.addr).is_err());
}

// ----- the real process: SIGTERM and SIGKILL ----------------------------------------

/// A `mission-bus serve` child process on 127.0.0.1:0.
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
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(|l| l.ok());
            let second = lines.next().and_then(|l| l.ok());
            let _ = tx.send((first, second));
            for _ in lines {} // keep the pipe drained
        });
        let (first, second) = rx.recv_timeout(DEADLINE).expect("server printed nothing");
        let first = first.expect("server exited before listening");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .unwrap();
        let second = second.unwrap();
        assert_eq!(
            second,
            format!("admin token: {}", data.join("admin.token").display())
        );
        ServerProcess { child, addr }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for exit with a deadline.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Start a server on a fresh directory with mission `m1`, a lead and
/// `agents` writers; returns (dir, server, admin token, agent tokens).
fn process_with_mission(agents: usize) -> (tempfile::TempDir, ServerProcess, String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(dir.path());
    let token_file = dir.path().join("admin.token");
    let admin_token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(admin_token.len(), 64, "32 random bytes, hex");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let admin = Client::new(&server.base(), Some(&admin_token));
    let lead = Client::new(&server.base(), Some(&create_mission(&admin, "m1", "lead")));
    let tokens = (0..agents)
        .map(|i| add_participant(&lead, "m1", &format!("a{i}"), "write"))
        .collect();
    (dir, server, admin_token, tokens)
}

/// Agents publish as fast as they can; once `after` events are acknowledged
/// the server gets `signal`. Returns every (sequence, id) that got a 201 and
/// the server's exit status.
fn publish_then_signal(
    server: &mut ServerProcess,
    tokens: Vec<String>,
    after: usize,
    signal: &str,
) -> (Vec<(u64, String)>, std::process::ExitStatus) {
    let acked = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let dead = Arc::new(AtomicBool::new(false));
    let (progress, progressed) = mpsc::channel::<()>();
    let agents: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let base = server.base();
            let acked = Arc::clone(&acked);
            let dead = Arc::clone(&dead);
            let progress = progress.clone();
            thread::spawn(move || {
                let agent = agent();
                for n in 0..5_000 {
                    if dead.load(Ordering::SeqCst) {
                        break;
                    }
                    let resp = agent
                        .post(format!("{base}/v1/missions/m1/messages"))
                        .header("Authorization", format!("Bearer {token}"))
                        .header("Content-Type", "application/json")
                        .send(json!({"topic": "load", "payload": {"n": n}}).to_string());
                    // Connection refused or cut: the server is gone.
                    let Ok(mut resp) = resp else { break };
                    if resp.status().as_u16() != 201 {
                        break;
                    }
                    let Ok(e) = resp.body_mut().read_json::<Value>() else {
                        break;
                    };
                    acked.lock().unwrap().push((
                        e["sequence"].as_u64().unwrap(),
                        e["message_id"].as_str().unwrap().to_string(),
                    ));
                    let _ = progress.send(());
                }
            })
        })
        .collect();
    drop(progress);
    // Signal once enough events are acknowledged, with requests in flight.
    for _ in 0..after {
        progressed.recv_timeout(DEADLINE).expect("agents stalled");
    }
    server.signal(signal);
    let status = server.wait();
    dead.store(true, Ordering::SeqCst);
    for a in agents {
        a.join().unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= after);
    (acked, status)
}

/// Restart on `dir` and check every acknowledged event is stored unchanged,
/// sequences are contiguous and verify passes.
fn restart_and_check(dir: &Path, admin_token: &str, acked: &[(u64, String)]) -> ServerProcess {
    let server = ServerProcess::spawn(dir);
    let admin = Client::new(&server.base(), Some(admin_token));
    let mut log = BTreeMap::new();
    let mut from = 1;
    for _ in 0..10_000 {
        let (status, page) = admin.get(&format!("/v1/missions/m1/events?from={from}&limit=1000"));
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        for e in events {
            let id = e.get("message_id").or(e.get("event_id")).unwrap();
            log.insert(
                e["sequence"].as_u64().unwrap(),
                id.as_str().unwrap().to_string(),
            );
        }
        from = page["next"].as_u64().unwrap();
    }
    let seqs: Vec<u64> = log.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "contiguous"
    );
    let unique: HashSet<&String> = log.values().collect();
    assert_eq!(unique.len(), log.len());
    for (seq, id) in acked {
        assert_eq!(
            log.get(seq),
            Some(id),
            "acknowledged event {seq} lost or changed"
        );
    }
    let (status, report) = admin.get("/v1/missions/m1/verify");
    assert_eq!(status, 200);
    assert_eq!(report["intact"], true, "{report}");
    server
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_event() {
    let (dir, mut server, admin_token, tokens) = process_with_mission(8);
    let a0_token = tokens[0].clone();
    let (acked, status) = publish_then_signal(&mut server, tokens, 300, "-KILL");
    assert!(!status.success(), "killed, not exited: {status:?}");
    let mut server = restart_and_check(dir.path(), &admin_token, &acked);
    // Participant tokens survived the crash too.
    let a0 = Client::new(&server.base(), Some(&a0_token));
    assert_eq!(a0.get("/v1/missions/m1/events?limit=1").0, 200);

    // SIGTERM: graceful, exit 0, directory released for the CLI.
    server.signal("-TERM");
    let status = server.wait();
    assert!(status.success(), "SIGTERM exit: {status:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_mission-bus"))
        .arg("--data")
        .arg(dir.path())
        .args(["verify", "m1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_under_load_finishes_in_flight_requests_and_exits_0() {
    let (dir, mut server, admin_token, tokens) = process_with_mission(8);
    // While the server holds the directory the CLI says so clearly.
    let out = Command::new(env!("CARGO_BIN_EXE_mission-bus"))
        .arg("--data")
        .arg(dir.path())
        .arg("missions")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use"), "{stderr}");
    let (acked, status) = publish_then_signal(&mut server, tokens, 200, "-TERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
    drop(restart_and_check(dir.path(), &admin_token, &acked));
}

#[test]
fn signals_right_after_start_shut_down_cleanly() {
    for signal in ["-TERM", "-INT"] {
        let dir = tempfile::tempdir().unwrap();
        let mut server = ServerProcess::spawn(dir.path());
        server.signal(signal);
        assert_eq!(server.wait().code(), Some(0), "{signal}");
        // The token file survives for the next start, which reuses it.
        let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
        let mut again = ServerProcess::spawn(dir.path());
        let admin = Client::new(&again.base(), Some(token.trim()));
        create_mission(&admin, "m1", "lead");
        again.signal("-TERM");
        assert_eq!(again.wait().code(), Some(0));
    }
}
