//! Per-event metadata (correlation id, causation id, attributes): set by
//! every edge (library, batch, CLI, HTTP incl. batch, import), stored in the
//! record (so the chain covers it), filterable, exported in both formats
//! and kept across an export/import round trip and a reopen.

mod util;

use mission_bus::document;
use mission_bus::server;
use mission_bus::{Action, AppendOptions, Error, EventFilter, EventMeta, Json, NewMission};
use serde_json::{json, Value};
use util::Dir;

fn publish(topic: &str) -> Action {
    Action::Publish {
        topic: topic.into(),
        payload: Json::from_value(&json!({"t": topic})),
    }
}

fn with_meta(meta: EventMeta) -> AppendOptions {
    AppendOptions {
        meta,
        ..AppendOptions::default()
    }
}

#[test]
fn library_metadata_is_stored_filtered_exported_and_reimported() {
    let dir = tempfile::tempdir().unwrap();
    let bus = util::bus_at(dir.path()).unwrap();
    bus.create_mission(NewMission::new("m", "t").lead("lena"))
        .unwrap();
    let meta = EventMeta::default()
        .correlation("req-7")
        .causation("cause-1")
        .attribute("tool", "grep")
        .attribute("run", "42");
    let a = bus
        .append("m", "lena", publish("a"), &with_meta(meta.clone()))
        .unwrap();
    assert_eq!(a.meta, meta);
    bus.append("m", "lena", publish("b"), &AppendOptions::default())
        .unwrap();
    let batch = bus
        .append_batch_with_meta(
            "m",
            vec![
                (
                    "lena".into(),
                    publish("c"),
                    EventMeta::default().correlation("req-7"),
                ),
                (
                    "lena".into(),
                    publish("d"),
                    EventMeta::default().correlation("req-8"),
                ),
            ],
            None,
        )
        .unwrap();
    assert_eq!(batch[0].meta.correlation_id.as_deref(), Some("req-7"));

    // Filters: correlation, causation, one attribute.
    let read = |f: EventFilter| {
        bus.read_events("m", None, &f, None)
            .unwrap()
            .events
            .into_iter()
            .map(|e| e.sequence)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        read(EventFilter {
            correlation_id: Some("req-7".into()),
            ..EventFilter::default()
        }),
        [a.sequence, batch[0].sequence]
    );
    assert_eq!(
        read(EventFilter {
            causation_id: Some("cause-1".into()),
            ..EventFilter::default()
        }),
        [a.sequence]
    );
    assert_eq!(
        read(EventFilter {
            attribute: Some(("tool".into(), "grep".into())),
            ..EventFilter::default()
        }),
        [a.sequence]
    );
    assert!(read(EventFilter {
        attribute: Some(("tool".into(), "sed".into())),
        ..EventFilter::default()
    })
    .is_empty());

    // Exported in both formats.
    let log: Vec<_> = bus
        .events("m", 1, u64::MAX)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    let jsonl: String = log
        .iter()
        .map(|e| document::event_to_json(e).to_string() + "\n")
        .collect();
    let first = document::event_to_json(&a);
    assert_eq!(first["correlation_id"], "req-7");
    assert_eq!(first["causation_id"], "cause-1");
    assert_eq!(first["attributes"], json!({"run": "42", "tool": "grep"}));
    // An event without metadata has none of the fields.
    let plain = document::event_to_json(&log[3]);
    assert!(plain.get("correlation_id").is_none() && plain.get("attributes").is_none());
    let state = bus.state("m").unwrap();
    let seed = document::seed_document(&state, log.iter().cloned().map(Ok)).unwrap();
    assert_eq!(seed["events"][0]["correlation_id"], "req-7");

    // Re-imported into another store: the same events, the same head hash.
    let other = tempfile::tempdir().unwrap();
    let bus2 = util::bus_at(other.path()).unwrap();
    bus2.import_log(document::log_from_jsonl(&jsonl).unwrap(), |_| {})
        .unwrap();
    let log2: Vec<_> = bus2
        .events("m", 1, u64::MAX)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(log2, log);
    let v1 = bus.verify("m").unwrap();
    let v2 = bus2.verify("m").unwrap();
    assert!(v1.is_intact() && v2.is_intact());
    assert_eq!(v1.head_hash, v2.head_hash);
    // From the seed document, metadata of the stream events survives too.
    let bus3_dir = tempfile::tempdir().unwrap();
    let bus3 = util::bus_at(bus3_dir.path()).unwrap();
    bus3.import_log(document::log_from_seed(&seed).unwrap(), |_| {})
        .unwrap();
    let seeded: Vec<_> = bus3
        .events("m", 1, u64::MAX)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert!(seeded.iter().any(|e| e.meta == meta));

    // A retry with the same id and other metadata is a conflict.
    let id = uuid::Uuid::now_v7();
    let opts = AppendOptions {
        event_id: Some(id),
        meta: EventMeta::default().correlation("x"),
        ..AppendOptions::default()
    };
    bus.append("m", "lena", publish("e"), &opts).unwrap();
    let again = bus.append("m", "lena", publish("e"), &opts).unwrap();
    assert_eq!(again.meta.correlation_id.as_deref(), Some("x"));
    let other_meta = AppendOptions {
        meta: EventMeta::default().correlation("y"),
        ..opts
    };
    assert!(matches!(
        bus.append("m", "lena", publish("e"), &other_meta),
        Err(Error::EventIdConflict { .. })
    ));

    // Reopened: still there.
    drop(bus);
    let bus = util::bus_at(dir.path()).unwrap();
    assert_eq!(
        bus.events("m", 1, u64::MAX)
            .unwrap()
            .nth(2)
            .unwrap()
            .unwrap()
            .meta,
        meta
    );
    assert!(bus.verify("m").unwrap().is_intact());
}

#[test]
fn bad_metadata_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bus = util::bus_at(dir.path()).unwrap();
    bus.create_mission(NewMission::new("m", "t").lead("lena"))
        .unwrap();
    let head = bus.state("m").unwrap().head;
    let too_many = (0..33).fold(EventMeta::default(), |m, i| {
        m.attribute(format!("k{i}"), "v")
    });
    for (meta, what) in [
        (EventMeta::default().correlation(""), "correlation_id"),
        (
            EventMeta::default().causation("x".repeat(129)),
            "causation_id",
        ),
        (
            EventMeta::default().correlation("a\u{7}b"),
            "correlation_id",
        ),
        (too_many, "attributes"),
        (
            EventMeta::default().attribute("k", "v".repeat(1025)),
            "attributes.k",
        ),
    ] {
        let err = bus
            .append("m", "lena", publish("a"), &with_meta(meta))
            .unwrap_err();
        assert!(err.to_string().contains(what), "{err} should name {what}");
    }
    assert_eq!(bus.state("m").unwrap().head, head);
}

#[test]
fn cli_sets_and_filters_metadata() {
    let dir = Dir::local();
    dir.mb(&["create", "m", "--title", "t", "--lead", "lena"])
        .ok();
    let e = dir
        .mb(&[
            "publish",
            "m",
            "--as",
            "lena",
            "--topic",
            "x",
            "--payload",
            "1",
            "--correlation-id",
            "req-1",
            "--causation-id",
            "c-1",
            "--attr",
            "tool=grep",
        ])
        .json();
    assert_eq!(e["correlation_id"], "req-1");
    assert_eq!(e["attributes"], json!({"tool": "grep"}));
    dir.mb(&[
        "publish",
        "m",
        "--as",
        "lena",
        "--topic",
        "y",
        "--payload",
        "2",
    ])
    .ok();
    let lines = dir
        .mb(&["replay", "m", "--as", "lena", "--correlation", "req-1"])
        .json_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["topic"], "x");
    let lines = dir
        .mb(&["replay", "m", "--as", "lena", "--with-attr", "tool=grep"])
        .json_lines();
    assert_eq!(lines.len(), 1);
    let jsonl = dir.mb(&["export", "m", "--format", "jsonl"]).json_lines();
    assert!(jsonl.iter().any(|l| l["causation_id"] == "c-1"));
    let err = dir
        .mb(&[
            "publish",
            "m",
            "--as",
            "lena",
            "--topic",
            "x",
            "--payload",
            "1",
            "--attr",
            "novalue",
        ])
        .fails(2);
    assert!(err.contains("KEY=VALUE"), "{err}");
}

#[test]
fn http_sets_and_filters_metadata_single_and_batch() {
    let dir = tempfile::tempdir().unwrap();
    let bus = util::bus_at(dir.path()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_bus = bus.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            server::run(
                l,
                server_bus,
                "admin-token-0123456789abcdef".into(),
                async {
                    let _ = stopped.await;
                },
            )
            .await
        })
    });
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let base = format!("http://{addr}");
    let post = |path: &str, token: &str, body: Value| -> (u16, Value) {
        let mut r = agent
            .post(format!("{base}{path}"))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        (r.status().as_u16(), serde_json::from_str(&text).unwrap())
    };
    let get = |path: &str, token: &str| -> (u16, Value) {
        let mut r = agent
            .get(format!("{base}{path}"))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        (r.status().as_u16(), serde_json::from_str(&text).unwrap())
    };
    let (s, created) = post(
        "/v1/missions",
        "admin-token-0123456789abcdef",
        json!({"mission_id": "m", "title": "t", "lead": "lena"}),
    );
    assert_eq!(s, 201, "{created}");
    let token = created["lead_token"].as_str().unwrap().to_string();
    let (s, e) = post(
        "/v1/missions/m/messages",
        &token,
        json!({"topic": "x", "payload": 1, "correlation_id": "req-1",
               "attributes": {"k": "v"}}),
    );
    assert_eq!(s, 201, "{e}");
    assert_eq!(e["correlation_id"], "req-1");
    let (s, b) = post(
        "/v1/missions/m/batch",
        &token,
        json!({"events": [
            {"type": "message", "topic": "y", "payload": 2, "causation_id": e["message_id"]},
            {"type": "message", "topic": "z", "payload": 3, "correlation_id": "req-1"},
        ]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["events"][0]["causation_id"], e["message_id"]);
    let (s, page) = get("/v1/missions/m/events?correlation_id=req-1", &token);
    assert_eq!(s, 200, "{page}");
    let topics: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["topic"].clone())
        .collect();
    assert_eq!(topics, [json!("x"), json!("z")]);
    let (s, page) = get("/v1/missions/m/events?attribute=k%3Dv", &token);
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    let (s, bad) = post(
        "/v1/missions/m/messages",
        &token,
        json!({"topic": "x", "payload": 1, "correlation_id": ""}),
    );
    assert_eq!(s, 400, "{bad}");
    let _ = stop.send(());
    thread.join().unwrap().unwrap();
    bus.close();
}

/// Every test above, again on PostgreSQL (skipped, saying so, without it).
#[test]
fn postgres_half() {
    util::postgres_half();
}
