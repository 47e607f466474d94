//! Several processes on one PostgreSQL database, as users run them: live
//! streams and token caches follow what OTHER processes do.
//!
//! - two `mission-bus serve` processes: an SSE reader on server A sees, in
//!   order and exactly once, the events appended through server B; after
//!   A's LISTEN connection is killed (`pg_terminate_backend`, and kept out
//!   while B appends), the stream still catches up;
//! - `MissionBus::subscribe_mission` in one bus gets another bus's events
//!   and its own, interleaved, in order and once each;
//! - a token rotated through server B, or revoked by another process, is
//!   refused by server A, which had it cached; also while A's LISTEN
//!   connection is down.
//!
//! Skipped (saying so) where PostgreSQL cannot run.

mod util;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mission_bus::{Json, MissionBus, NewMission};
use serde_json::{json, Value};

/// How long anything may take before the test fails (never a measure).
const DEADLINE: Duration = Duration::from_secs(60);

/// A database owned by a role of its own, which the servers log in as (so
/// that `ALTER ROLE … NOLOGIN` keeps a killed listener out, while the
/// superuser's psql and the other tests' servers still get in).
fn database(cluster: &util::pg::Cluster, role: &str) -> String {
    cluster
        .psql("postgres", &format!("CREATE ROLE {role} LOGIN"))
        .unwrap();
    let db = format!("db_{role}");
    cluster
        .psql("postgres", &format!("CREATE DATABASE {db} OWNER {role}"))
        .unwrap();
    format!("postgres://{role}@127.0.0.1:{}/{db}", cluster.port)
}

/// A `mission-bus serve` process on `url`.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(url: &str, admin_file: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mission-bus"))
        .args(["--store", url, "serve", "--listen", "127.0.0.1:0"])
        .args(["--log-level", "error", "--admin-token-file"])
        .arg(admin_file)
        .env_remove("MISSION_BUS_URL")
        .env_remove("MISSION_BUS_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn mission-bus serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(|l| l.ok()).expect("serve exited");
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base: format!("http://{addr}"),
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(DEADLINE))
        .build()
        .into()
}

/// One exchange: (status, JSON body).
fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let a = agent();
    let auth = format!("Bearer {token}");
    let resp = match method {
        "GET" => a.get(url).header("Authorization", &auth).call(),
        _ => a
            .post(url)
            .header("Authorization", &auth)
            .content_type("application/json")
            .send(body.unwrap_or(json!({})).to_string()),
    }
    .unwrap();
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The admin token the first server wrote.
fn admin(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

/// Events of an SSE stream, read on a thread: (id, data).
fn sse(base: &str, mission: &str, token: &str) -> mpsc::Receiver<(u64, Value)> {
    let resp = agent()
        .get(format!("{base}/v1/missions/{mission}/events/stream"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Accept", "text/event-stream")
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let reader: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(reader);
        let (mut id, mut data) = (None, String::new());
        loop {
            let mut line = String::new();
            if lines.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if let Some(i) = id.take() {
                    let v = serde_json::from_str(&data).unwrap();
                    if tx.send((i, v)).is_err() {
                        return;
                    }
                }
                data.clear();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().parse::<u64>().unwrap());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    });
    rx
}

/// Take events from `rx` until sequence `last`; each must be the next one.
fn take_until(rx: &mpsc::Receiver<(u64, Value)>, next: &mut u64, last: u64) -> Vec<Value> {
    let mut got = Vec::new();
    while *next <= last {
        let (id, v) = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("the stream stalled before sequence {next} (of {last})"));
        assert_eq!(id, *next, "in order, exactly once");
        assert_eq!(v["sequence"], json!(id));
        *next += 1;
        got.push(v);
    }
    got
}

/// The backends of server `pid`'s LISTEN connection.
fn listeners(cluster: &util::pg::Cluster, pid: u32) -> usize {
    cluster
        .psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'mission-bus listen {pid}'"
            ),
        )
        .unwrap()
        .parse()
        .unwrap()
}

/// Keep `role` from logging in and kill process `pid`'s LISTEN connection;
/// returns once it is gone (and cannot come back until [`let_in`]).
fn cut_listener(cluster: &util::pg::Cluster, role: &str, pid: u32) {
    assert_eq!(listeners(cluster, pid), 1, "server {pid} listens");
    cluster
        .psql("postgres", &format!("ALTER ROLE {role} NOLOGIN"))
        .unwrap();
    cluster
        .psql(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'mission-bus listen {pid}'"
            ),
        )
        .unwrap();
    let began = Instant::now();
    while listeners(cluster, pid) != 0 {
        assert!(began.elapsed() < DEADLINE, "the listener did not go");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn let_in(cluster: &util::pg::Cluster, role: &str) {
    cluster
        .psql("postgres", &format!("ALTER ROLE {role} LOGIN"))
        .unwrap();
}

fn publish(base: &str, token: &str, mission: &str, i: u64) -> u64 {
    let (status, e) = call(
        "POST",
        &format!("{base}/v1/missions/{mission}/messages"),
        token,
        Some(json!({"topic": "t", "payload": {"i": i}})),
    );
    assert_eq!(status, 201, "{e}");
    e["sequence"].as_u64().unwrap()
}

#[test]
fn sse_on_one_server_follows_appends_through_another_and_catches_up_after_listen_dies() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = database(cluster, "sse");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    let a = serve(&url, &token_file);
    let b = serve(&url, &token_file);
    let admin = admin(&token_file);
    let (status, created) = call(
        "POST",
        &format!("{}/v1/missions", a.base),
        &admin,
        Some(json!({"mission_id": "live", "title": "T", "lead": "lead"})),
    );
    assert_eq!(status, 201, "{created}");
    let lead = created["lead_token"].as_str().unwrap().to_string();
    let head = created["head_sequence"].as_u64().unwrap();

    let stream = sse(&a.base, "live", &lead);
    let mut next = 1;
    take_until(&stream, &mut next, head);

    // Appended through B, seen on A in order, once each.
    let mut last = head;
    for i in 0..20 {
        last = publish(&b.base, &lead, "live", i);
    }
    let got = take_until(&stream, &mut next, last);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e["payload"]["i"], json!(i), "{e}");
    }

    // A's LISTEN connection dies and stays out while B appends: those
    // commits are never notified to A.
    cut_listener(cluster, "sse", a.child.id());
    let before = last;
    for i in 100..110 {
        last = publish(&b.base, &lead, "live", i);
    }
    assert_eq!(last, before + 10);
    let_in(cluster, "sse");
    // A listens again, re-reads the heads and the stream catches up.
    let got = take_until(&stream, &mut next, last);
    for (k, e) in got.iter().enumerate() {
        assert_eq!(e["payload"]["i"], json!(100 + k as u64), "{e}");
    }
    let began = Instant::now();
    while listeners(cluster, a.child.id()) != 1 {
        assert!(began.elapsed() < DEADLINE, "A did not listen again");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A's own appends and B's, interleaved, still once each and in order.
    for i in 200..206 {
        let via = if i % 2 == 0 { &a.base } else { &b.base };
        last = publish(via, &lead, "live", i);
    }
    let got = take_until(&stream, &mut next, last);
    assert_eq!(got.len(), 6);
    assert!(
        stream.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing after the last event"
    );
}

#[test]
fn subscribers_of_one_bus_get_another_bus_events_and_their_own_in_order_once() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = cluster.database();
    let here = MissionBus::open_url(&url).unwrap();
    let there = MissionBus::open_url(&url).unwrap();
    here.create_mission(NewMission::new("m", "T").lead("lead"))
        .unwrap();
    here.join("m", "w", "write", Json::empty_object()).unwrap();
    let mut mine = here.subscribe_mission("m");
    let mut all = here.subscribe();
    let start = here.state("m").unwrap().head;
    const N: u64 = 40;
    // Two threads, one per bus, append at once.
    std::thread::scope(|s| {
        for (k, bus) in [&here, &there].into_iter().enumerate() {
            s.spawn(move || {
                for i in 0..N / 2 {
                    bus.publish("m", "w", "t", json!({"k": k, "i": i}).into())
                        .unwrap();
                }
            });
        }
    });
    for rx in [&mut mine, &mut all] {
        let mut expect = start + 1;
        let began = Instant::now();
        while expect <= start + N {
            match rx.try_recv() {
                Ok(c) => {
                    assert_eq!(c.mission_id, "m");
                    assert_eq!(c.event.sequence, expect, "in order, exactly once");
                    expect += 1;
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                    assert!(began.elapsed() < DEADLINE, "stalled before {expect}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    }
    // The cached state of `here` was folded forward to the database's head.
    assert_eq!(here.state("m").unwrap().head, start + N);
    assert_eq!(there.state("m").unwrap().head, start + N);
}

/// Poll `check` until it holds (or fail after [`DEADLINE`]).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let began = Instant::now();
    while !check() {
        assert!(began.elapsed() < DEADLINE, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tokens_revoked_through_another_process_are_refused_even_without_listen() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = database(cluster, "tok");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    let a = serve(&url, &token_file);
    let b = serve(&url, &token_file);
    let admin = admin(&token_file);
    let (status, _) = call(
        "POST",
        &format!("{}/v1/missions", a.base),
        &admin,
        Some(json!({"mission_id": "tok", "title": "T", "lead": "lead"})),
    );
    assert_eq!(status, 201);
    let (status, joined) = call(
        "POST",
        &format!("{}/v1/missions/tok/participants", a.base),
        &admin,
        Some(json!({"name": "w", "role": "write"})),
    );
    assert_eq!(status, 201, "{joined}");
    let first = joined["token"].as_str().unwrap().to_string();
    let read = |base: &str, token: &str| {
        call(
            "GET",
            &format!("{base}/v1/missions/tok/events"),
            token,
            None,
        )
        .0
    };
    // Both servers have seen (and cached) it.
    assert_eq!(read(&a.base, &first), 200);
    assert_eq!(read(&b.base, &first), 200);

    // Rotated through B: A refuses the old token, takes the new one.
    let (status, rotated) = call(
        "POST",
        &format!("{}/v1/missions/tok/participants/w/token", b.base),
        &admin,
        Some(json!({"rotate": true})),
    );
    assert_eq!(status, 201, "{rotated}");
    assert_eq!(rotated["revoked"], json!(1));
    let second = rotated["token"].as_str().unwrap().to_string();
    eventually("A still accepts the rotated token", || {
        read(&a.base, &first) == 401
    });
    assert_eq!(read(&a.base, &second), 200);

    // Revoked by another process (this one) through the library.
    let here = MissionBus::open_url(&url).unwrap();
    let third = here.issue_token("tok", "w").unwrap();
    assert_eq!(read(&a.base, &third), 200);
    assert!(here.revoke_token("tok", "w", &third).unwrap());
    eventually("A still accepts the revoked token", || {
        read(&a.base, &third) == 401
    });
    assert_eq!(read(&a.base, &second), 200, "the other token stays valid");

    // A's LISTEN connection is down (and kept out): a rotation through B
    // is still refused by A, from its store (its cache is not trusted).
    assert_eq!(read(&a.base, &second), 200);
    cut_listener(cluster, "tok", a.child.id());
    let (status, rotated) = call(
        "POST",
        &format!("{}/v1/missions/tok/participants/w/token", b.base),
        &admin,
        Some(json!({"rotate": true})),
    );
    assert_eq!(status, 201, "{rotated}");
    let fourth = rotated["token"].as_str().unwrap().to_string();
    eventually(
        "A accepts a token revoked while it was not listening",
        || read(&a.base, &second) == 401,
    );
    assert_eq!(read(&a.base, &fourth), 200, "A still serves");
    assert_eq!(listeners(cluster, a.child.id()), 0, "still not listening");
    let_in(cluster, "tok");
}

#[test]
fn a_stale_cached_state_is_brought_forward_from_the_new_events_only() {
    let Some(cluster) = util::pg::cluster() else {
        return;
    };
    let url = cluster.database();
    let db = url.rsplit('/').next().unwrap().to_string();
    let here = MissionBus::open_url(&url).unwrap();
    here.create_mission(NewMission::new("m", "T").lead("lead"))
        .unwrap();
    here.join("m", "w", "write", Json::empty_object()).unwrap();
    assert_eq!(here.state("m").unwrap().head, 3, "cached here");
    let there = MissionBus::open_url(&url).unwrap();
    for i in 0..3 {
        there
            .publish("m", "w", "t", json!({"i": i}).into())
            .unwrap();
    }
    // Damage an old record: a reload from the log would read it again.
    cluster
        .psql(
            &db,
            "UPDATE mb_events SET record = '\\x00' WHERE seq = 2 \
             AND mission = (SELECT no FROM mb_missions WHERE name = 'm')",
        )
        .unwrap();
    let state = here.state("m").unwrap();
    assert_eq!(state.head, 6, "folded forward from 4..=6 only");
    assert!(state.participants.contains_key("w"));
    // A process without the cached state must read the damaged record.
    let fresh = MissionBus::open_url(&url).unwrap();
    let err = fresh.state("m").unwrap_err();
    assert!(
        matches!(
            err,
            mission_bus::Error::Corruption {
                sequence: Some(2),
                ..
            }
        ),
        "{err}"
    );
}
