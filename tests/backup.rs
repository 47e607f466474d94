//! Backups: the library call while writers run, the CLI command with a full
//! restore (backup, destroy the original, restore, verify, resume work),
//! and `POST /v1/admin/backup` on a running server over real HTTP.

mod util;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use mission_bus::server;
use mission_bus::{MissionBus, NewMission};
use serde_json::{json, Value};
use util::Dir;

const ADMIN: &str = "test-admin-token-0123456789abcdef";

fn build(bus: &MissionBus, missions: &[&str], messages: usize) {
    for m in missions {
        bus.create_mission(NewMission::new(*m, "t").lead("lead"))
            .unwrap();
        bus.join(m, "ada", "write", json!({}).into()).unwrap();
        for i in 0..messages {
            bus.publish(m, "ada", "t", json!({ "i": i }).into())
                .unwrap();
        }
        let cp = bus
            .create_checkpoint(m, "ada", "s", json!({}).into(), vec![])
            .unwrap();
        bus.handoff(m, "ada", "lead", cp.id, "n").unwrap();
    }
}

fn export(bus: &MissionBus, m: &str) -> Vec<Value> {
    bus.events(m, 1, u64::MAX)
        .unwrap()
        .map(|e| mission_bus::document::event_to_json(&e.unwrap()))
        .collect()
}

/// Every mission verifies; returns mission -> (head sequence, head hash).
fn verified_heads(bus: &MissionBus) -> BTreeMap<String, (u64, String)> {
    bus.mission_ids()
        .into_iter()
        .map(|m| {
            let r = bus.verify(&m).unwrap();
            assert!(r.is_intact(), "{m}: {:?}", r.problems);
            (m, (r.head_sequence, r.head_hash))
        })
        .collect()
}

#[test]
fn online_backup_is_a_consistent_prefix_with_the_same_hashes_tokens_and_fresh_mission_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let bus = MissionBus::open(&src).unwrap();
    build(&bus, &["a", "b", "c"], 50);
    let token = bus.issue_token("a", "ada").unwrap();
    // Writers keep appending while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|m| {
            let (bus, stop) = (bus.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) || n < 20 {
                    bus.publish(m, "ada", "live", json!(n).into()).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let to = dir.path().join("backup");
    let report = bus.backup(&to).unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        assert!(w.join().unwrap() >= 20);
    }
    assert_eq!(report.missions, 3);
    assert_eq!(report.tokens, 1);
    let source_heads = verified_heads(&bus);

    let copy = MissionBus::open(&to).unwrap();
    let copy_heads = verified_heads(&copy);
    assert_eq!(
        copy_heads.keys().collect::<Vec<_>>(),
        ["a", "b", "c"],
        "every mission"
    );
    assert_eq!(
        report.events,
        copy_heads.values().map(|(s, _)| s).sum::<u64>()
    );
    for (m, (seq, hash)) in &copy_heads {
        // A prefix of the source, event for event, with the same chain.
        let src_events = export(&bus, m);
        assert_eq!(export(&copy, m)[..], src_events[..*seq as usize], "{m}");
        let at = bus.events(m, *seq, *seq).unwrap().next().unwrap().unwrap();
        assert_eq!(
            mission_bus::document::event_to_json(&at),
            src_events[*seq as usize - 1]
        );
        if m == "c" {
            assert_eq!(source_heads[m], (*seq, hash.clone()), "untouched mission");
        }
    }
    // Tokens came along; the copy is a working store whose new missions
    // never collide with the copied ones.
    let owner = copy.authenticate(&token).unwrap().unwrap();
    assert_eq!(
        (owner.mission_id.as_str(), owner.name.as_str()),
        ("a", "ada")
    );
    build(&copy, &["d", "e"], 3);
    copy.publish("a", "ada", "after", json!(1).into()).unwrap();
    let after = verified_heads(&copy);
    assert_eq!(after.len(), 5);
    assert_eq!(after["b"], copy_heads["b"], "other missions untouched");
    drop(copy);
    // And it reopens cleanly (ledger and heads agree).
    verified_heads(&MissionBus::open(&to).unwrap());

    // A non-empty target is refused and left alone.
    let err = bus.backup(&to).unwrap_err();
    assert_eq!(err.kind(), mission_bus::ErrorKind::InvalidInput, "{err}");
}

#[test]
fn cli_backup_destroy_restore_verify_resume() {
    let d = Dir::new();
    let data = d.data();
    {
        let bus = MissionBus::open(&data).unwrap();
        build(&bus, &["m1", "m2"], 30);
    }
    let before: Vec<Value> = d.mb(&["verify"]).json_lines();
    let exported = d.mb(&["export", "m1", "--format", "jsonl"]).ok();
    let out = d.mb(&["backup", "--to", "bk"]).json();
    assert_eq!(out["missions"], 2);
    assert_eq!(out["events"], 2 * 35);

    // Disaster: the data directory is gone.
    std::fs::remove_dir_all(&data).unwrap();
    // Restore, as docs/mission-bus.md says: copy the backup into place with
    // `backup` run on the backup itself, then verify.
    d.mb(&["--data", "bk", "backup", "--to", data.to_str().unwrap()])
        .json();
    let after: Vec<Value> = d.mb(&["verify"]).json_lines();
    assert_eq!(after, before, "same missions, heads and hashes");
    assert_eq!(d.mb(&["export", "m1", "--format", "jsonl"]).ok(), exported);
    // Resume work.
    let e = d
        .mb(&[
            "publish",
            "m1",
            "--as",
            "ada",
            "--topic",
            "t",
            "--payload",
            "{}",
        ])
        .json();
    assert_eq!(e["sequence"], 36);
    d.mb(&["verify", "m1"]).json_lines();

    // Refusals: a non-empty target (left alone), a directory with no store.
    std::fs::create_dir_all(d.path().join("full")).unwrap();
    d.create("full/keep", "x");
    let err = d.mb(&["backup", "--to", "full"]).fails(2);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_dir(d.path().join("full")).unwrap().count(), 1);
    d.mb(&["--data", "nothing-here", "backup", "--to", "x"])
        .fails(4);
    assert!(!d.path().join("nothing-here").exists());
    assert!(!d.path().join("x").exists());
}

/// A server on its own runtime thread, over real HTTP.
fn serve(
    bus: MissionBus,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    thread::JoinHandle<()>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let t = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            server::run_with_limits(l, bus, ADMIN.into(), server::Limits::default(), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        })
    });
    (format!("http://{addr}"), stop, t)
}

fn post(base: &str, token: &str, body: &str) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut resp = agent
        .post(format!("{base}/v1/admin/backup"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn admin_endpoint_backs_up_a_served_store() {
    let dir = tempfile::tempdir().unwrap();
    let bus = MissionBus::open(dir.path().join("src")).unwrap();
    build(&bus, &["s1"], 10);
    let lead = bus.issue_token("s1", "lead").unwrap();
    let (base, stop, t) = serve(bus.clone());
    let to = dir.path().join("bk");
    let body = |p: &Path| json!({ "to": p }).to_string();

    // Only the admin; only absolute paths; only empty targets.
    let (status, v) = post(&base, &lead, &body(&to));
    assert_eq!(status, 403, "{v}");
    let (status, v) = post(&base, ADMIN, r#"{"to": "relative/dir"}"#);
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("absolute"));
    assert!(!Path::new("relative").exists());
    let (status, _) = post(&base, ADMIN, r#"{"to": 5}"#);
    assert_eq!(status, 400);
    assert!(!to.exists(), "nothing written by refused requests");

    let (status, v) = post(&base, ADMIN, &body(&to));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["missions"], 1);
    assert_eq!(v["events"], 15);
    let (status, v) = post(&base, ADMIN, &body(&to));
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not empty"));

    let _ = stop.send(());
    t.join().unwrap();
    let src_heads = verified_heads(&bus);
    drop(bus);
    let copy = MissionBus::open(&to).unwrap();
    assert_eq!(verified_heads(&copy), src_heads);
    assert!(copy.authenticate(&lead).unwrap().is_some());
}
