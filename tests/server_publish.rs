//! The writer answers a commit group as soon as what readers and
//! subscribers are promised is published, and writes snapshots (and fills
//! the recent-events cache) after the answers. Over real HTTP: an agent
//! that got its 201 reads its event at once through the events page, while
//! other agents write and a snapshot is due every few events; live
//! subscribers see every event once, in order; a store reopened from the
//! snapshots written after the answers has the state a full rebuild gives.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use mission_bus::server;
use mission_bus::MissionBus;
use serde_json::{json, Value};

const ADMIN: &str = "test-admin-token-0123456789abcdef";
const DEADLINE: Duration = Duration::from_secs(60);

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(DEADLINE))
        .build()
        .into()
}

/// One exchange: (status, JSON body).
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let resp = match body {
        None => agent.get(url).header("Authorization", &auth).call(),
        Some(b) => {
            assert_eq!(method, "POST");
            agent
                .post(url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(b.to_string())
        }
    };
    let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A server on its own 2-worker runtime over `bus`; stops when `stop` fires.
fn serve(
    bus: MissionBus,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    thread::JoinHandle<()>,
) {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", std_listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            server::run(listener, bus, ADMIN.to_string(), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        })
    });
    (base, stop, handle)
}

#[test]
fn an_acknowledged_event_is_readable_at_once_while_others_write() {
    const AGENTS: usize = 8;
    const EACH: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    // A snapshot every 7 events: many groups write one after answering.
    let bus = MissionBus::builder(dir.path())
        .snapshot_every(7)
        .open()
        .unwrap();
    let (base, stop, server) = serve(bus.clone());
    let http = agent();
    let (s, created) = call(
        &http,
        "POST",
        &format!("{base}/v1/missions"),
        ADMIN,
        Some(json!({"mission_id": "rw", "title": "t", "lead": "lead"})),
    );
    assert_eq!(s, 201, "{created}");
    let tokens: Vec<String> = (0..AGENTS)
        .map(|i| {
            let (s, p) = call(
                &http,
                "POST",
                &format!("{base}/v1/missions/rw/participants"),
                ADMIN,
                Some(json!({"name": format!("a{i}"), "role": "write"})),
            );
            assert_eq!(s, 201, "{p}");
            p["token"].as_str().unwrap().to_string()
        })
        .collect();
    // Live subscribers through the library: of this mission, and of all.
    let mut live = bus.subscribe_mission("rw");
    let mut all = bus.subscribe();
    let head_before = bus.state("rw").unwrap().head;

    let gate = Arc::new(Barrier::new(AGENTS));
    let workers: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            let (base, gate) = (base.clone(), Arc::clone(&gate));
            thread::spawn(move || {
                let http = agent();
                gate.wait();
                let mut mine = Vec::new();
                for n in 0..EACH {
                    let (s, ev) = call(
                        &http,
                        "POST",
                        &format!("{base}/v1/missions/rw/messages"),
                        &token,
                        Some(json!({"topic": "t", "payload": {"agent": i, "n": n}})),
                    );
                    assert_eq!(s, 201, "{ev}");
                    let seq = ev["sequence"].as_u64().unwrap();
                    let id = ev["message_id"].as_str().unwrap().to_string();
                    // Read-your-writes: the page from that sequence holds it.
                    let (s, page) = call(
                        &http,
                        "GET",
                        &format!("{base}/v1/missions/rw/events?from={seq}&limit=1"),
                        &token,
                        None,
                    );
                    assert_eq!(s, 200, "{page}");
                    assert_eq!(
                        page["events"][0]["message_id"].as_str(),
                        Some(id.as_str()),
                        "agent {i} wrote sequence {seq} and read {page}"
                    );
                    mine.push((seq, id));
                }
                mine
            })
        })
        .collect();
    let mut written: Vec<(u64, String)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    written.sort();
    let total = (AGENTS * EACH) as u64;
    assert_eq!(written.len() as u64, total);
    let head = bus.state("rw").unwrap().head;
    assert_eq!(
        head,
        head_before + total,
        "every acknowledged event is published"
    );
    // Every event reached the subscriber, in order, exactly once.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seen: Vec<(u64, String)> = rt.block_on(async {
        let mut seen = Vec::new();
        while seen.len() < written.len() {
            let c = tokio::time::timeout(DEADLINE, live.recv())
                .await
                .expect("subscriber fell silent")
                .expect("subscriber lagged or closed");
            let g = tokio::time::timeout(DEADLINE, all.recv())
                .await
                .expect("global subscriber fell silent")
                .expect("global subscriber lagged or closed");
            assert_eq!((g.event.id, g.mission_id.as_str()), (c.event.id, "rw"));
            seen.push((c.event.sequence, c.event.id.to_string()));
        }
        seen
    });
    assert_eq!(
        seen, written,
        "the subscribers saw every event once, in order"
    );

    let _ = stop.send(());
    server.join().unwrap();
    bus.close();
    drop(bus);
    // Reopened, the state (from the last snapshot plus the events after it)
    // equals a rebuild from the whole log.
    let bus = MissionBus::builder(dir.path())
        .snapshot_every(7)
        .open()
        .unwrap();
    let state = bus.state("rw").unwrap();
    assert_eq!(state.head, head);
    assert_eq!(state.messages, total);
    assert_eq!(*state, bus.rebuild_state("rw").unwrap());
    assert!(bus.verify("rw").unwrap().is_intact());
}
