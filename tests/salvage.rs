//! `mission-bus salvage DAMAGED --to NEW`, as typed: recovering a store from
//! its raw files, with damage placed in the real `db` file.

mod util;

use std::collections::BTreeMap;
use std::path::Path;

use mission_bus::{MissionBus, NewMission};
use serde_json::{json, Value};
use util::Dir;

/// Three missions with messages, a checkpoint and a handoff; returns the
/// JSON Lines export of each, as `mission-bus export` prints it.
fn build(dir: &Path) -> BTreeMap<String, Vec<Value>> {
    let bus = MissionBus::open(dir).unwrap();
    for m in ["alpha", "beta", "gamma"] {
        bus.create_mission(NewMission::new(m, format!("title {m}")).lead("lead"))
            .unwrap();
        bus.join(m, "ada", "write", json!({}).into()).unwrap();
        bus.join(m, "bob", "write", json!({}).into()).unwrap();
        for i in 0..20 {
            bus.publish(
                m,
                "ada",
                "t",
                json!({"m": m, "i": i, "marker": format!("{m}-msg-{i:03}")}).into(),
            )
            .unwrap();
        }
        let cp = bus
            .create_checkpoint(
                m,
                "ada",
                "half",
                json!({"at": 20}).into(),
                vec!["a.rs".into()],
            )
            .unwrap();
        bus.handoff(m, "ada", "bob", cp.id, "yours").unwrap();
        for i in 20..30 {
            bus.publish(
                m,
                "bob",
                "t",
                json!({"m": m, "i": i, "marker": format!("{m}-msg-{i:03}")}).into(),
            )
            .unwrap();
        }
    }
    drop(bus);
    exports(dir)
}

fn exports(dir: &Path) -> BTreeMap<String, Vec<Value>> {
    let bus = MissionBus::open(dir).unwrap();
    let mut out = BTreeMap::new();
    for m in bus.mission_ids() {
        let events: Vec<Value> = bus
            .events(&m, 1, u64::MAX)
            .unwrap()
            .map(|e| mission_bus::document::event_to_json(&e.unwrap()))
            .collect();
        out.insert(m, events);
    }
    out
}

fn heads(dir: &Path) -> BTreeMap<String, String> {
    let bus = MissionBus::open(dir).unwrap();
    bus.mission_ids()
        .into_iter()
        .map(|m| {
            let r = bus.verify(&m).unwrap();
            assert!(r.is_intact(), "{m}: {:?}", r.problems);
            (m, r.head_hash)
        })
        .collect()
}

fn files_digest(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        out.push((
            entry.strip_prefix(dir).unwrap().display().to_string(),
            std::fs::read(&entry).unwrap(),
        ));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Every offset in `hay` where `needle` starts.
fn positions(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Run salvage and return (exit code, report printed on stdout).
fn salvage(d: &Dir, from: &Path, to: &Path) -> (i32, Value, String) {
    let out = d
        .mb(&[
            "salvage",
            from.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ])
        .output();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(out.status.code(), Some(101), "salvage panicked: {stderr}");
    let report = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("salvage printed no report ({e}): {stdout}\n{stderr}"));
    (out.status.code().unwrap(), report, stderr)
}

fn mission<'a>(report: &'a Value, m: &str) -> &'a Value {
    report["missions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["mission_id"] == m)
        .unwrap_or_else(|| panic!("{m} not in {report:#}"))
}

#[test]
fn an_intact_store_comes_back_whole_with_the_same_head_hashes_and_is_never_written() {
    let d = Dir::new();
    let src = d.path().join("src");
    let before = build(&src);
    let head_before = heads(&src);
    let digest = files_digest(&src);
    let to = d.path().join("new");
    let (code, report, stderr) = salvage(&d, &src, &to);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(report["complete"], true);
    assert_eq!(report["tokens_recovered"], false);
    for m in ["alpha", "beta", "gamma"] {
        let r = mission(&report, m);
        assert_eq!(r["recovered"], json!([1, 36]), "{r}");
        assert_eq!(r["lost"], json!([]));
        assert_eq!(r["matches_ledger"], true, "{r}");
        assert_eq!(r["recovered_head_hash"], r["ledger_head"]["hash"]);
    }
    assert_eq!(report["ledger"], "read");
    assert_eq!(exports(&to), before);
    assert_eq!(
        heads(&to),
        head_before,
        "events keep ids, timestamps, hashes"
    );
    assert_eq!(files_digest(&src), digest, "the damaged dir is only read");
    assert!(to.join("salvage/report.json").is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&to.join("salvage")), 0o700);
        assert_eq!(mode(&to.join("salvage/report.json")), 0o600);
    }
    assert!(!to.join("salvage/after-gaps.jsonl").exists());
    // The new store is a working store.
    d.mb(&[
        "--data",
        to.to_str().unwrap(),
        "publish",
        "alpha",
        "--as",
        "ada",
        "--topic",
        "t",
        "--payload",
        "1",
    ])
    .json();
}

#[test]
fn a_damaged_record_loses_only_itself_and_the_rest_is_kept_after_the_gap() {
    let d = Dir::new();
    let src = d.path().join("src");
    let before = build(&src);
    // Damage every copy of beta's message 10 (sequence 15) in the raw file.
    let db = src.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    let hits = positions(&bytes, b"beta-msg-010");
    assert!(!hits.is_empty());
    for p in hits {
        bytes[p + 5] ^= 0x01;
    }
    std::fs::write(&db, &bytes).unwrap();

    let to = d.path().join("new");
    let (code, report, stderr) = salvage(&d, &src, &to);
    assert_eq!(code, 6, "{report:#}");
    assert!(
        stderr.contains("mission 'beta': recovered 1..=14"),
        "{stderr}"
    );
    let beta = mission(&report, "beta");
    assert_eq!(beta["recovered"], json!([1, 14]));
    assert_eq!(beta["lost"], json!([[15, 15]]));
    assert_eq!(beta["after_gaps"], 21);
    // The ledger's head (36) is proven by the chain through every kept event.
    assert_eq!(beta["ledger_head"]["sequence"], 36);
    assert_eq!(beta["matches_ledger"], false);
    assert_eq!(beta["after_gaps_proven"], 21);
    for m in ["alpha", "gamma"] {
        assert_eq!(mission(&report, m)["lost"], json!([]), "{m}");
    }
    let after = exports(&to);
    assert_eq!(after["alpha"], before["alpha"]);
    assert_eq!(after["gamma"], before["gamma"]);
    assert_eq!(after["beta"][..], before["beta"][..14]);
    // Sequences 16..=36 are kept with their hashes, as the original events.
    let kept: Vec<Value> = std::fs::read_to_string(to.join("salvage/after-gaps.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = kept
        .iter()
        .map(|k| k["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (16..=36).collect::<Vec<_>>());
    for k in &kept {
        assert_eq!(k["mission_id"], "beta");
        let s = k["sequence"].as_u64().unwrap() as usize;
        assert_eq!(k["event"], before["beta"][s - 1]);
        assert_eq!(k["hash"].as_str().unwrap().len(), 64);
        assert_eq!(k["proven"], true);
    }
    assert_eq!(kept.last().unwrap()["hash"], beta["ledger_head"]["hash"]);
    // Each kept event links to the one before it.
    for w in kept.windows(2) {
        assert_eq!(w[1]["prev_hash"], w[0]["hash"]);
    }
}

#[test]
fn a_zeroed_block_loses_at_most_the_records_inside_it() {
    let d = Dir::new();
    let src = d.path().join("src");
    let before = build(&src);
    let db = src.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    // Zero the 4 KiB block holding the first copy of gamma's message 5.
    let at = positions(&bytes, b"gamma-msg-005")[0];
    let block = at / 4096 * 4096;
    let end = (block + 4096).min(bytes.len());
    // Which events have a copy wholly outside the block: those must return.
    let magic = b"MBUSREC2";
    let mut survivors = std::collections::BTreeSet::new();
    for p in positions(&bytes, magic) {
        let start = p - 37;
        let len = u32::from_be_bytes(bytes[p + 8..p + 12].try_into().unwrap()) as usize;
        if start + len <= block || start >= end {
            let seq = u64::from_be_bytes(bytes[p + 12..p + 20].try_into().unwrap());
            let n = u16::from_be_bytes(bytes[p + 20..p + 22].try_into().unwrap()) as usize;
            let name = String::from_utf8(bytes[p + 22..p + 22 + n].to_vec()).unwrap();
            survivors.insert((name, seq));
        }
    }
    bytes[block..end].fill(0);
    std::fs::write(&db, &bytes).unwrap();

    let to = d.path().join("new");
    let (code, report, _) = salvage(&d, &src, &to);
    assert!(code == 0 || code == 6, "{code}");
    let after = exports(&to);
    let kept = std::fs::read_to_string(to.join("salvage/after-gaps.jsonl")).unwrap_or_default();
    let mut recovered = std::collections::BTreeSet::new();
    for (m, events) in &after {
        for (i, e) in events.iter().enumerate() {
            assert_eq!(*e, before[m][i], "{m} {i}");
            recovered.insert((m.clone(), i as u64 + 1));
        }
    }
    for l in kept.lines() {
        let k: Value = serde_json::from_str(l).unwrap();
        let (m, s) = (
            k["mission_id"].as_str().unwrap(),
            k["sequence"].as_u64().unwrap(),
        );
        assert_eq!(k["event"], before[m][s as usize - 1]);
        recovered.insert((m.to_string(), s));
    }
    let missing: Vec<_> = survivors.difference(&recovered).collect();
    assert!(
        missing.is_empty(),
        "untouched events not recovered: {missing:?}\n{report:#}"
    );
    // And the report accounts for every event: recovered, kept or lost.
    for (m, events) in &before {
        let r = mission(&report, m);
        let mut covered = recovered.iter().filter(|(x, _)| x == m).count() as u64;
        for l in r["lost"].as_array().unwrap() {
            covered += l[1].as_u64().unwrap() - l[0].as_u64().unwrap() + 1;
        }
        // Without a ledger, losses at the very end of a mission are invisible.
        assert!(covered <= events.len() as u64, "{m}: {r}");
    }
}

#[test]
fn refuses_a_non_empty_target_and_a_directory_without_a_store() {
    let d = Dir::new();
    let src = d.path().join("src");
    build(&src);
    let busy = d.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("x"), "keep me").unwrap();
    let err = d
        .mb(&[
            "salvage",
            src.to_str().unwrap(),
            "--to",
            busy.to_str().unwrap(),
        ])
        .fails(2);
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(std::fs::read_to_string(busy.join("x")).unwrap(), "keep me");
    // Never inside the damaged store.
    let inside = src.join("rescued");
    let err = d
        .mb(&[
            "salvage",
            src.to_str().unwrap(),
            "--to",
            inside.to_str().unwrap(),
        ])
        .fails(2);
    assert!(err.contains("inside the damaged store"), "{err}");
    assert!(!inside.exists());
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let to = d.path().join("to");
    let err = d
        .mb(&[
            "salvage",
            empty.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ])
        .fails(4);
    assert!(err.contains("holds no store"), "{err}");
    assert!(
        !to.exists(),
        "nothing is created when there is nothing to salvage"
    );
    let missing = d.path().join("missing");
    d.mb(&[
        "salvage",
        missing.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ])
    .fails(4);
    assert!(!missing.exists());
}

#[test]
fn a_store_without_a_ledger_cannot_be_proven_complete() {
    // The version-1 fixture: written before the ledger and before records
    // carried a frame. Nothing can be found, and salvage says why.
    let d = Dir::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1/store");
    let to = d.path().join("new");
    let (code, report, stderr) = salvage(&d, &fixture, &to);
    assert_eq!(code, 6, "{report:#}");
    assert_eq!(report["ledger"], "absent");
    assert_eq!(report["complete"], false);
    assert!(stderr.contains("no commit ledger"), "{stderr}");
    assert!(
        stderr.contains("version-1 records cannot be salvaged"),
        "{stderr}"
    );
}

#[test]
fn verify_first_then_salvage_still_recovers_what_the_damage_did_not_touch() {
    // An operator runs `verify` on a damaged store before salvaging. sled's
    // recovery during that open cuts its log at the damage; the copy of
    // `db` kept in `evidence/` is what salvage still finds the rest in.
    let d = Dir::new();
    let src = d.path().join("src");
    let before = build(&src);
    // A healthy open keeps nothing.
    let verify = || d.mb(&["--data", src.to_str().unwrap(), "verify"]).output();
    assert_eq!(verify().status.code(), Some(0));
    assert!(!src.join("evidence").exists());

    let db = src.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    let at = positions(&bytes, b"alpha-msg-005")[0];
    let block = at / 4096 * 4096;
    let end = (block + 4096).min(bytes.len());
    bytes[block..end].fill(0);
    std::fs::write(&db, &bytes).unwrap();

    let out = verify();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept: Vec<_> = std::fs::read_dir(src.join("evidence"))
        .expect("the damaged open kept a copy")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("db-before-open-"));
    assert_eq!(
        std::fs::read(&kept[0]).unwrap(),
        bytes,
        "the copy holds the file as it was before sled opened it"
    );
    // A second damaged open keeps no second copy.
    assert_eq!(verify().status.code(), Some(6));
    assert_eq!(std::fs::read_dir(src.join("evidence")).unwrap().count(), 1);

    let to = d.path().join("new");
    let (code, report, _) = salvage(&d, &src, &to);
    assert!(code == 0 || code == 6, "{code}");
    // Every mission but alpha is untouched by the damage: whole again.
    let after = exports(&to);
    for m in ["beta", "gamma"] {
        assert_eq!(after[m], before[m], "{m}\n{report:#}");
        assert_eq!(mission(&report, m)["matches_ledger"], true, "{report:#}");
    }
}
