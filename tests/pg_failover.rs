//! Failover on loopback: a primary and one synchronous standby; a load on
//! two buses logs every acknowledged (mission, sequence, event id); the
//! primary is SIGKILLed mid-load and the standby promoted; the buses
//! reconnect by themselves through a multi-host URL with
//! `target_session_attrs=read-write`. Then every acknowledged event is
//! present once at its sequence, sequences are contiguous, verify is
//! clean, and retries by event id are idempotent. Skipped (saying so)
//! where PostgreSQL cannot run.

mod util;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mission_bus::{Action, AppendOptions, EventBody, Json, MissionBus, NewMission, StoreUrl};
use serde_json::json;
use util::pg::{as_postgres, Cluster};
use uuid::Uuid;

/// Poll `f` (an outside server's state) until it holds, at most `limit`.
fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn setup() -> Result<(Cluster, Cluster), String> {
    let d1 = Cluster::workdir("primary")?;
    let primary = Cluster::start_in(
        &d1,
        "-c wal_level=replica -c max_wal_senders=5 -c synchronous_standby_names=n2",
    )?;
    let d2 = Cluster::workdir("standby")?;
    let out = as_postgres(&format!(
        "{}/pg_basebackup -d 'host=127.0.0.1 port={} user=postgres application_name=n2' \
         -D {}/d -R -X stream",
        primary.bin.display(),
        primary.port,
        d2.display()
    ))
    .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let standby = Cluster {
        dir: d2,
        bin: primary.bin.clone(),
        port: util::pg::free_port(),
    };
    standby.start("")?;
    wait_until(
        Duration::from_secs(30),
        "the standby to be synchronous",
        || {
            primary
                .psql("postgres", "SELECT sync_state FROM pg_stat_replication")
                .is_ok_and(|s| s.contains("sync"))
        },
    );
    Ok((primary, standby))
}

#[test]
fn sigkill_of_the_primary_loses_no_acknowledged_event() {
    if util::pg::pg_bin().is_err() || util::pg::cluster().is_none() {
        return; // cluster() printed why
    }
    let (primary, standby) = setup().expect("primary + synchronous standby");
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let open = || {
        MissionBus::builder_url(StoreUrl::parse(&url).unwrap())
            .open()
            .unwrap()
    };
    let setup_bus = open();
    setup_bus
        .create_mission(NewMission::new("fo", "failover").lead("lead"))
        .unwrap();
    setup_bus
        .join("fo", "w", "write", Json::empty_object())
        .unwrap();
    drop(setup_bus);

    let acked: Mutex<Vec<(u64, Uuid, usize)>> = Mutex::new(Vec::new());
    let count = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let errors = AtomicU64::new(0);
    let killed_at = std::thread::scope(|s| {
        for b in 0..2 {
            let (acked, count, stop, errors) = (&acked, &count, &stop, &errors);
            let bus = open();
            for t in 0..2 {
                let bus = bus.clone();
                s.spawn(move || {
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let id = Uuid::now_v7();
                        let payload = json!([b, t, i]);
                        i += 1;
                        // Retry the same request (same id) until it is
                        // acknowledged: in-flight ones land once or not at all.
                        let deadline = Instant::now() + Duration::from_secs(60);
                        loop {
                            let r = bus.append(
                                "fo",
                                "w",
                                Action::Publish {
                                    topic: "t".into(),
                                    payload: payload.clone().into(),
                                },
                                &AppendOptions {
                                    expected_sequence: None,
                                    event_id: Some(id),
                                },
                            );
                            match r {
                                Ok(e) => {
                                    assert_eq!(e.id, id);
                                    acked.lock().unwrap().push((e.sequence, id, b));
                                    count.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                                Err(e) => {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                    assert!(Instant::now() < deadline, "no recovery: {e}");
                                    std::thread::sleep(Duration::from_millis(20));
                                }
                            }
                        }
                    }
                });
            }
        }
        wait_until(Duration::from_secs(60), "100 acknowledged", || {
            count.load(Ordering::Relaxed) >= 100
        });
        // SIGKILL the primary's postmaster mid-load, then promote.
        let pid = std::fs::read_to_string(primary.dir.join("d/postmaster.pid"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .to_string();
        let killed_at = count.load(Ordering::Relaxed);
        assert!(Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success());
        let out = as_postgres(&format!(
            "{}/pg_ctl -D {}/d -w promote",
            standby.bin.display(),
            standby.dir.display()
        ))
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_until(Duration::from_secs(60), "100 more acknowledged", || {
            count.load(Ordering::Relaxed) >= killed_at + 100
        });
        stop.store(true, Ordering::Relaxed);
        killed_at
    });
    let acked = acked.into_inner().unwrap();
    println!(
        "acknowledged {} ({} before the kill), {} failed attempts retried",
        acked.len(),
        killed_at,
        errors.load(Ordering::Relaxed)
    );
    let bus = open();
    let events: Vec<_> = bus
        .events("fo", 1, u64::MAX)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.sequence, i as u64 + 1, "contiguous");
    }
    let mut seen = BTreeMap::new();
    for (seq, id, _) in &acked {
        assert!(
            seen.insert(*seq, *id).is_none(),
            "sequence {seq} acknowledged twice"
        );
        assert_eq!(
            events[*seq as usize - 1].id,
            *id,
            "acknowledged event at {seq}"
        );
    }
    // Each id is stored once (no duplicate from a retried in-flight request).
    let mut ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), events.len());
    let report = bus.verify("fo").unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // A retry by id after the failover returns the stored event.
    let (seq, id, _) = acked[acked.len() / 3];
    let EventBody::Message { payload, .. } = &events[seq as usize - 1].body else {
        panic!("a message at {seq}");
    };
    let again = bus
        .append(
            "fo",
            "w",
            Action::Publish {
                topic: "t".into(),
                payload: payload.clone(),
            },
            &AppendOptions {
                expected_sequence: None,
                event_id: Some(id),
            },
        )
        .map(|e| (e.sequence, e.id));
    assert_eq!(again.unwrap(), (seq, id));
    standby.stop("immediate");
}
