//! The commit ledger's unconfirmed last group, on the real files.
//!
//! Under `Durability::Sync` a group's ledger entry is synced in parallel
//! with sled's flush and confirmed (a 27-byte record, plain `write`) before
//! the group is acknowledged. These tests build the files a crash can leave
//! (a copy of sled's files taken before the last group, the ledger with or
//! without that group's confirmation) and check what opening them says:
//! - an unconfirmed last entry whose group is not in sled (sled exactly at
//!   the heads before it) is tolerated: no loss, writes go on, and the
//!   sequence it named is given out again (it was never acknowledged);
//! - the same entry confirmed is an acknowledged loss, reported and refused;
//! - a torn confirmation record counts as no confirmation;
//! - an unconfirmed entry with sled further behind than its group is a loss.
//!
//! A record that never reached the disk reads as zeros where it would have
//! been (space the file system allocated, or a preallocated ledger's free
//! space): "cutting" a record zeroes it in place; a file cut short is read
//! the same.

mod util;

use std::path::{Path, PathBuf};

use mission_bus::{ErrorKind, MissionBus, NewMission};
use serde_json::json;
use util::Dir;

/// Bytes of one confirmation record (12-byte entry header + 15-byte body).
const CONFIRM: usize = 27;

/// A store with mission `m` at head 4 (created, lead joined, 2 messages),
/// closed; then a copy of sled's files; then `groups` more single-event
/// groups (each a publish to `m`, or with `create` one group creating
/// `late`). Returns the copy of sled's files.
fn store_then_groups(data: &Path, publishes: usize, create: bool) -> PathBuf {
    let bus = MissionBus::open(data).unwrap();
    bus.create_mission(NewMission::new("m", "tail").lead("lead"))
        .unwrap();
    for i in 0..2 {
        bus.publish("m", "lead", "t", json!(i).into()).unwrap();
    }
    assert_eq!(bus.state("m").unwrap().head, 4);
    bus.close();
    drop(bus);
    let saved = data.with_extension("saved");
    copy_sled_files(data, &saved);
    let bus = MissionBus::open(data).unwrap();
    for i in 0..publishes {
        bus.publish("m", "lead", "t", json!(i).into()).unwrap();
    }
    if create {
        bus.create_mission(NewMission::new("late", "in the last group").lead("lead"))
            .unwrap();
    }
    bus.close();
    saved
}

/// sled's own files (not the ledger).
fn copy_sled_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name != "ledger" && e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// Put sled's files of `saved` back in `data` (the ledger stays).
fn roll_sled_back(data: &Path, saved: &Path) {
    for e in std::fs::read_dir(data).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "ledger" && e.file_type().unwrap().is_file() {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    copy_sled_files(saved, data);
}

/// Where the ledger's entries end (the free space after them is zeros):
/// walks the entry headers (length, body CRC, header CRC).
fn ledger_end(bytes: &[u8]) -> usize {
    let mut off = 16;
    while off + 12 <= bytes.len() {
        let h = &bytes[off..off + 12];
        if crc32fast::hash(&h[..8]).to_be_bytes() != h[8..12] {
            break;
        }
        off += 12 + u32::from_be_bytes(h[..4].try_into().unwrap()) as usize;
    }
    off
}

/// Unwrite the last `n` bytes of the ledger's entries (zeros in their
/// place, as if they never reached the disk); returns where they began.
fn cut_ledger(data: &Path, n: usize) -> u64 {
    let path = data.join("ledger");
    let mut bytes = std::fs::read(&path).unwrap();
    let end = ledger_end(&bytes);
    bytes[end - n..end].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    (end - n) as u64
}

#[test]
fn an_unconfirmed_last_group_missing_from_sled_is_not_a_loss() {
    let d = Dir::new();
    let data = d.path().join("data");
    let saved = store_then_groups(&data, 1, false);
    let len = cut_ledger(&data, CONFIRM);
    roll_sled_back(&data, &saved);

    d.mb(&["--data", data.to_str().unwrap(), "verify"]).ok();
    let bus = MissionBus::open(&data).unwrap();
    assert!(bus.missions_with_loss().is_empty());
    assert!(bus.ledger_problem().is_none());
    // The unconfirmed entry was cut off at open.
    let entry = ledger_end(&std::fs::read(data.join("ledger")).unwrap()) as u64;
    assert!(entry < len, "ledger {entry} bytes, was {len}");
    // Sequence 5 was never acknowledged: it is given out again, and the
    // new group is recorded (and confirmed) as usual.
    let e = bus
        .publish("m", "lead", "t", json!("again").into())
        .unwrap();
    assert_eq!(e.sequence, 5);
    bus.close();
    drop(bus);
    let bus = MissionBus::open(&data).unwrap();
    assert!(bus.missions_with_loss().is_empty());
    assert!(bus.verify("m").unwrap().is_intact());
}

#[test]
fn an_unconfirmed_group_that_created_a_mission_is_not_a_loss() {
    let d = Dir::new();
    let data = d.path().join("data");
    let saved = store_then_groups(&data, 0, true);
    cut_ledger(&data, CONFIRM);
    roll_sled_back(&data, &saved);
    let bus = MissionBus::open(&data).unwrap();
    assert!(bus.missions_with_loss().is_empty());
    assert_eq!(
        bus.state("late").unwrap_err().kind(),
        ErrorKind::NotFound,
        "the mission was never acknowledged"
    );
    bus.create_mission(NewMission::new("late", "again").lead("lead"))
        .unwrap();
}

#[test]
fn a_confirmed_last_group_missing_from_sled_is_reported() {
    let d = Dir::new();
    let data = d.path().join("data");
    let saved = store_then_groups(&data, 1, false);
    roll_sled_back(&data, &saved);
    let mut cmd = d.mb(&["--data", data.to_str().unwrap(), "verify"]);
    let out = cmd.output();
    assert_eq!(out.status.code(), Some(6));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("acknowledged events 5..5 of mission m are missing"),
        "{stdout}"
    );
    let bus = MissionBus::open(&data).unwrap();
    assert_eq!(bus.missions_with_loss(), vec![("m".to_string(), 5, 5)]);
    let err = bus.publish("m", "lead", "t", json!(1).into()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity);
}

#[test]
fn a_torn_confirmation_counts_as_none() {
    for torn in [1, 2, 14, CONFIRM - 1] {
        let d = Dir::new();
        let data = d.path().join("data");
        let saved = store_then_groups(&data, 1, false);
        let path = data.join("ledger");
        let full = std::fs::read(&path).unwrap();
        let end = ledger_end(&full);
        // The record cut short, or its tail never written (zeros).
        let mut bytes = full[..end - torn].to_vec();
        if torn % 2 == 0 {
            bytes.resize(full.len(), 0);
        }
        std::fs::write(&path, &bytes).unwrap();
        // sled holds the group: nothing is missing, the entry stands.
        {
            let bus = MissionBus::open(&data).unwrap();
            assert!(bus.missions_with_loss().is_empty(), "torn {torn}");
            assert_eq!(bus.state("m").unwrap().head, 5);
        }
        // sled without the group: tolerated (it was never confirmed).
        std::fs::write(&path, &bytes).unwrap();
        roll_sled_back(&data, &saved);
        let bus = MissionBus::open(&data).unwrap();
        assert!(bus.missions_with_loss().is_empty(), "torn {torn}");
        assert_eq!(bus.state("m").unwrap().head, 4);
    }
}

#[test]
fn an_unconfirmed_group_with_sled_further_behind_is_a_loss() {
    let d = Dir::new();
    let data = d.path().join("data");
    // Two groups after the copy: the first confirmed, the last not.
    let saved = store_then_groups(&data, 2, false);
    cut_ledger(&data, CONFIRM);
    roll_sled_back(&data, &saved);
    let bus = MissionBus::open(&data).unwrap();
    assert_eq!(bus.missions_with_loss(), vec![("m".to_string(), 5, 6)]);
    let err = bus.publish("m", "lead", "t", json!(1).into()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity);
}
