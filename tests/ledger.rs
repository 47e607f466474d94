//! The commit ledger on the real files: nothing acknowledged is lost in
//! silence.
//!
//! - A child process appends under load (default durability) and prints
//!   every acknowledged (mission, sequence, event id); the parent SIGKILLs
//!   it, damages the tail of sled's `db` file (truncation, a flipped bit in
//!   the last 4 KiB, a zeroed last block), reopens and checks that every
//!   trial either lost nothing or reports each damaged mission (library and
//!   `mission-bus verify`, exit 6) with the missing acknowledged range, that
//!   such missions refuse writes, and that no acknowledged sequence is ever
//!   given to another event.
//! - Damage to the ledger file itself is reported with file and offset; a
//!   torn last entry is not.
//! - `accept-loss` records the cut in the log and the ledger; writes resume.
//! - Read-only commands on a directory without a store: exit 4, nothing
//!   created. Data directory 0700, files 0600.
//!
//! The seed of a run is printed; set `MISSION_BUS_LEDGER_SEED` to replay it.

mod util;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mission_bus::{ErrorKind, Json, MissionBus, NewMission};
use serde_json::json;
use util::Dir;
use uuid::Uuid;

const CHILD_DIR: &str = "MISSION_BUS_LEDGER_CHILD_DIR";
const MISSIONS: [&str; 3] = ["la", "lb", "lc"];
/// Not a synchronisation: a guard so a broken child cannot hang the test.
const GUARD: Duration = Duration::from_secs(120);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    if let Ok(s) = std::env::var("MISSION_BUS_LEDGER_SEED") {
        return s.parse().expect("MISSION_BUS_LEDGER_SEED is a u64");
    }
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("random seed");
    u64::from_le_bytes(b) | 1
}

/// The child: create the missions, then append from two threads forever,
/// printing each acknowledged event as `ACK mission sequence id`.
fn child(dir: &Path) -> ! {
    use std::io::Write;
    let emit = |line: String| {
        let mut out = std::io::stdout().lock();
        out.write_all(line.as_bytes()).expect("stdout");
        out.write_all(b"\n").expect("stdout");
        out.flush().expect("stdout");
    };
    let bus = MissionBus::open(dir).expect("child: open");
    for m in MISSIONS {
        for e in bus
            .create_mission(NewMission::new(m, "ledger").lead("lead"))
            .expect("child: create")
        {
            emit(format!("ACK {m} {} {}", e.sequence, e.id));
        }
    }
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for n in 0u64.. {
                    let m = MISSIONS[((n + t) % 3) as usize];
                    let payload = json!({"t": t, "n": n, "pad": "p".repeat(200)});
                    let e = bus
                        .publish(m, "lead", "load", payload.into())
                        .expect("child: publish");
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ACK {m} {} {}", e.sequence, e.id);
                    let _ = out.flush();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    std::process::exit(101);
}

/// Run the child until it has acknowledged `acks` events, SIGKILL it, and
/// return every acknowledged (mission, sequence) -> id it printed.
fn run_and_kill(dir: &Path, acks: usize) -> BTreeMap<(String, u64), Uuid> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "sigkill_then_damaged_tail_never_loses_an_ack_in_silence",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut buf = String::new();
        while matches!(out.read_line(&mut buf), Ok(n) if n > 0) {
            // A line cut short by the kill does not count.
            if buf.ends_with('\n') && tx.send(buf.trim_end().to_string()).is_err() {
                break;
            }
            buf.clear();
        }
    });
    let mut acked = BTreeMap::new();
    let mut record = |line: &str| {
        let f: Vec<&str> = line.split(' ').collect();
        if let ["ACK", m, seq, id] = f[..] {
            let prev = acked.insert((m.to_string(), seq.parse().unwrap()), id.parse().unwrap());
            assert!(prev.is_none(), "sequence acknowledged twice: {line}");
        }
    };
    let deadline = Instant::now() + GUARD;
    let mut seen = 0;
    while seen < acks {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("child stopped acknowledging");
        record(&line);
        seen += 1;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    for line in rx.try_iter() {
        record(&line);
    }
    acked
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Truncate(u64),
    FlipBit(u64),
    ZeroLastBlock,
}

fn damage(dir: &Path, how: Damage) {
    let db = dir.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    let len = bytes.len() as u64;
    match how {
        Damage::Truncate(n) => bytes.truncate(len.saturating_sub(n) as usize),
        Damage::FlipBit(bit) => {
            let at = len.saturating_sub(4096) + (bit / 8) % len.min(4096);
            bytes[at as usize] ^= 1 << (bit % 8);
        }
        Damage::ZeroLastBlock => {
            let from = (len.saturating_sub(1) / 4096 * 4096) as usize;
            bytes[from..].fill(0);
        }
    }
    std::fs::write(&db, bytes).unwrap();
}

/// The heart of the issue: after the damage, either every acknowledged event
/// is there, or the mission is reported with its missing acknowledged range
/// and refuses writes. Returns (lost missions, whole store refused).
fn check_after_damage(
    dir: &Path,
    acked: &BTreeMap<(String, u64), Uuid>,
    what: &str,
) -> (usize, bool) {
    let bus = match MissionBus::open(dir) {
        Ok(bus) => bus,
        // sled refused the file: an integrity error naming it, never "Other".
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Integrity, "{what}: {e}");
            assert!(e.to_string().contains("db"), "{what}: {e}");
            assert!(e.to_string().contains("salvage"), "{what}: {e}");
            return (0, true);
        }
    };
    let lost: BTreeMap<String, (u64, u64)> = bus
        .missions_with_loss()
        .into_iter()
        .map(|(m, a, b)| (m, (a, b)))
        .collect();
    for m in MISSIONS {
        let max_acked = acked
            .keys()
            .filter(|(am, _)| am == m)
            .map(|(_, s)| *s)
            .max()
            .unwrap_or(0);
        if let Some(&(first, last)) = lost.get(m) {
            // Reported: the range covers every acknowledged event that is
            // gone, verify says so, and writes are refused.
            let report = bus.verify(m).unwrap();
            let text = format!("acknowledged events {first}..{last} of mission {m} are missing");
            assert!(
                report.problems.iter().any(|p| p.what.contains(&text)),
                "{what}: {m}: {:?}",
                report.problems
            );
            assert!(
                last >= max_acked,
                "{what}: {m}: acked up to {max_acked}, range {first}..{last}"
            );
            let err = bus
                .publish(m, "lead", "t", Json::empty_object())
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Integrity, "{what}: {err}");
            assert!(
                err.to_string().contains(&format!("{first}..{last}")),
                "{err}"
            );
            for ((am, seq), id) in acked.iter().filter(|((am, _), _)| am == m) {
                if *seq < first {
                    let e = bus.events(am, *seq, *seq).unwrap().next();
                    let e = e.unwrap().unwrap();
                    assert_eq!(e.id, *id, "{what}: {am} {seq} changed below the loss");
                }
            }
            continue;
        }
        // Not reported: every acknowledged event is there, verify is clean,
        // and the next append gets a fresh sequence.
        let report = bus.verify(m).unwrap();
        assert!(report.is_intact(), "{what}: {m}: {:?}", report.problems);
        for ((am, seq), id) in acked.iter().filter(|((am, _), _)| am == m) {
            let e = bus.events(am, *seq, *seq).unwrap().next();
            let e = e
                .unwrap_or_else(|| panic!("{what}: acknowledged {am} {seq} lost in silence"))
                .unwrap();
            assert_eq!(e.id, *id, "{what}: {am} {seq} is another event");
        }
        let next = bus.publish(m, "lead", "t", Json::empty_object()).unwrap();
        assert!(
            next.sequence > max_acked,
            "{what}: sequence {} reused",
            next.sequence
        );
    }
    (lost.len(), false)
}

#[test]
fn sigkill_then_damaged_tail_never_loses_an_ack_in_silence() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(Path::new(&dir));
    }
    let seed = seed();
    eprintln!("MISSION_BUS_LEDGER_SEED={seed}");
    let mut rng = Rng(seed);
    let mut outcomes = BTreeMap::new();
    for trial in 0..12u64 {
        let how = match trial % 3 {
            0 => Damage::Truncate(1 + rng.below(8192)),
            1 => Damage::FlipBit(rng.below(4096 * 8)),
            _ => Damage::ZeroLastBlock,
        };
        let tmp = tempfile::tempdir().unwrap();
        let acked = run_and_kill(tmp.path(), 20 + rng.below(150) as usize);
        damage(tmp.path(), how);
        let what = format!("trial {trial} ({how:?}, {} acks)", acked.len());
        let (lost, refused) = check_after_damage(tmp.path(), &acked, &what);
        eprintln!("{what}: {lost} missions reported lost, store refused: {refused}");
        *outcomes
            .entry(match (lost, refused) {
                (_, true) => "refused (integrity)",
                (0, _) => "nothing lost",
                _ => "loss reported",
            })
            .or_insert(0) += 1;
        if trial == 0 {
            // The CLI as typed: exit 6 when anything is lost or refused.
            let dir = Dir::new();
            let data = tmp.path().to_str().unwrap();
            let mut cmd = dir.mb(&["--data", data, "verify"]);
            let out = cmd.output();
            if lost > 0 || refused {
                assert_eq!(out.status.code(), Some(6), "{what}");
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    stderr.contains("acknowledged events") || stderr.contains("salvage"),
                    "{stderr}"
                );
            }
        }
    }
    eprintln!("outcomes: {outcomes:?}");
}

/// Build a store with mission `m` (1 + 5 events), close it and return a
/// copy of sled's files at that point, then write `more` events.
fn store_with_rollback(dir: &Path, more: usize) -> PathBuf {
    let bus = MissionBus::open(dir).unwrap();
    bus.create_mission(NewMission::new("m", "rollback").lead("lead"))
        .unwrap();
    for i in 0..5 {
        bus.publish("m", "lead", "t", json!(i).into()).unwrap();
    }
    bus.close();
    drop(bus);
    let saved = dir.with_extension("saved");
    copy_sled_files(dir, &saved);
    let bus = MissionBus::open(dir).unwrap();
    for i in 0..more {
        bus.publish("m", "lead", "t", json!(i).into()).unwrap();
    }
    bus.create_mission(NewMission::new("late", "created after the copy").lead("lead"))
        .unwrap();
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

/// sled rolls back to an earlier, consistent state (what a damaged tail
/// does): the ledger names the lost range, writes are refused, and
/// `accept-loss` records the cut and lets writes resume.
#[test]
fn rollback_is_reported_and_accept_loss_records_the_cut() {
    let d = Dir::new();
    let data = d.path().join("data");
    let saved = store_with_rollback(&data, 5);
    // Heads before: m at 7 (created + lead joined + 5), late at 2. Roll
    // sled back to m at 7 - 5 ... i.e. put the saved sled files back.
    for e in std::fs::read_dir(&data).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "ledger" && e.file_type().unwrap().is_file() {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    copy_sled_files(&saved, &data);
    let ds = data.to_str().unwrap();

    // verify: both missions reported, exit 6, the range named.
    let mut cmd = d.mb(&["--data", ds, "verify"]);
    let out = cmd.output();
    assert_eq!(out.status.code(), Some(6));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("acknowledged events 8..12 of mission m are missing"),
        "{stdout}"
    );
    assert!(
        stdout.contains("acknowledged events 1..2 of mission late are missing"),
        "{stdout}"
    );
    // Writes are refused, naming mission and range; no sequence is reused.
    let err = d
        .mb(&[
            "--data",
            ds,
            "publish",
            "m",
            "--as",
            "lead",
            "--topic",
            "t",
            "--payload",
            "1",
        ])
        .fails(6);
    assert!(err.contains("8..12") && err.contains("'m'"), "{err}");
    let err = d
        .mb(&[
            "--data", ds, "create", "late", "--title", "again", "--lead", "x",
        ])
        .fails(6);
    assert!(err.contains("1..2"), "{err}");
    // accept-loss wants confirmation.
    d.mb(&["--data", ds, "accept-loss", "m"]).fails(2);
    let ev = d.mb(&["--data", ds, "accept-loss", "m", "--yes"]).json();
    assert_eq!(ev["event_type"], "loss_accepted");
    assert_eq!(ev["sequence"], 8);
    assert_eq!(ev["lost_first"], 8);
    assert_eq!(ev["lost_last"], 12);
    assert_eq!(ev["sender"], "@operator");
    assert_eq!(ev["ledger_head_hash"].as_str().unwrap().len(), 64);
    let gone = d.mb(&["--data", ds, "accept-loss", "late", "--yes"]).json();
    assert_eq!(gone["loss_accepted"], true);
    // Writes resume; the cut is in the log for every later reader.
    let next = d
        .mb(&[
            "--data",
            ds,
            "publish",
            "m",
            "--as",
            "lead",
            "--topic",
            "t",
            "--payload",
            "1",
        ])
        .json();
    assert_eq!(next["sequence"], 9);
    d.mb(&[
        "--data", ds, "create", "late", "--title", "again", "--lead", "x",
    ])
    .ok();
    let log = d
        .mb(&["--data", ds, "replay", "m", "--as", "lead"])
        .json_lines();
    assert_eq!(log.len(), 9);
    assert_eq!(log[7]["event_type"], "loss_accepted");
    d.mb(&["--data", ds, "verify"]).ok();
    // The acceptance is durable: a fresh process agrees.
    let bus = MissionBus::open(&data).unwrap();
    assert!(bus.missions_with_loss().is_empty());
    assert!(bus.verify("m").unwrap().is_intact());
    assert_eq!(bus.state("m").unwrap().head, 9);
    // A second accept-loss has nothing to accept.
    let err = bus.accept_loss("m").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
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

#[test]
fn ledger_damage_is_reported_and_a_torn_tail_is_not() {
    let d = Dir::new();
    let data = d.path().join("data");
    {
        let bus = MissionBus::open(&data).unwrap();
        bus.create_mission(NewMission::new("m", "t").lead("lead"))
            .unwrap();
        for i in 0..3 {
            bus.publish("m", "lead", "t", json!(i).into()).unwrap();
        }
    }
    let ledger = data.join("ledger");
    let good = std::fs::read(&ledger).unwrap();
    let ds = data.to_str().unwrap();

    // A torn last entry (the crash case): its last 5 bytes never written,
    // zeros in their place: tolerated, cut, writes go on.
    let end = ledger_end(&good);
    let mut torn = good.clone();
    torn[end - 5..end].fill(0);
    std::fs::write(&ledger, &torn).unwrap();
    d.mb(&["--data", ds, "verify"]).ok();
    d.mb(&[
        "--data",
        ds,
        "publish",
        "m",
        "--as",
        "lead",
        "--topic",
        "t",
        "--payload",
        "1",
    ])
    .ok();

    // A flipped bit before the last entry: damage, with file and offset.
    let good = std::fs::read(&ledger).unwrap();
    let mut bad = good.clone();
    bad[20] ^= 0x10;
    std::fs::write(&ledger, &bad).unwrap();
    let mut cmd = d.mb(&["--data", ds, "verify"]);
    let out = cmd.output();
    assert_eq!(out.status.code(), Some(6));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"ledger\":\"damaged\""), "{stdout}");
    assert!(stdout.contains("byte offset 16"), "{stdout}");
    assert!(stdout.contains(&ledger.display().to_string()), "{stdout}");
    // The mission itself still verifies (its report is printed too).
    assert!(stdout.contains("\"mission_id\":\"m\""), "{stdout}");
    let err = d
        .mb(&[
            "--data",
            ds,
            "publish",
            "m",
            "--as",
            "lead",
            "--topic",
            "t",
            "--payload",
            "1",
        ])
        .fails(6);
    assert!(
        err.contains("commit ledger damaged at byte offset 16"),
        "{err}"
    );

    // A deleted ledger on a store that had one is damage too.
    std::fs::remove_file(&ledger).unwrap();
    let bus = MissionBus::open(&data).unwrap();
    let e = bus.ledger_problem().expect("missing ledger reported");
    assert_eq!(e.kind(), ErrorKind::Integrity);
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn read_only_commands_never_create_a_store() {
    let d = Dir::new();
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for data in [d.path().join("typo"), empty.clone()] {
        let ds = data.to_str().unwrap();
        for args in [
            vec!["verify"],
            vec!["verify", "m"],
            vec!["missions"],
            vec!["replay", "m", "--as", "x"],
            vec!["export", "m"],
            vec!["resume", "m", "--for", "x"],
            vec!["accept-loss", "m", "--yes"],
        ] {
            let mut full = vec!["--data", ds];
            full.extend(&args);
            let err = d.mb(&full).fails(4);
            assert!(err.contains(ds), "{args:?}: {err}");
        }
    }
    assert!(!d.path().join("typo").exists());
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    let err = MissionBus::builder(d.path().join("typo"))
        .create_if_missing(false)
        .open()
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn data_dir_and_files_are_private() {
    let d = Dir::new();
    let data = d.path().join("a").join("data");
    let bus = MissionBus::open(&data).unwrap();
    bus.create_mission(NewMission::new("m", "t").lead("lead"))
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let check = || {
        assert_eq!(mode(&data), 0o700, "data directory");
        for e in std::fs::read_dir(&data).unwrap() {
            let p = e.unwrap().path();
            let want = if p.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode(&p), want, "{}", p.display());
        }
    };
    check();
    bus.close();
    drop(bus);
    // Reopening narrows anything sled created since (snapshots).
    drop(MissionBus::open(&data).unwrap());
    check();
    assert!(data.join("ledger").is_file());
    assert!(data.join("db").is_file());
}

#[test]
fn serve_warns_about_a_readable_admin_token_file() {
    let d = Dir::new();
    let token = d.create("admin.token", "a-long-enough-admin-secret\n");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mission-bus"))
        .current_dir(d.path())
        .args(["--data", "data", "serve", "--listen", "127.0.0.1:0"])
        .args(["--admin-token-file", token.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The warning comes before the server starts listening.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = err.read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(GUARD).unwrap_or_default();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        line.contains("readable by group or others") && line.contains("admin.token"),
        "{line}"
    );
}

/// The server answers a write to a mission with missing acknowledged
/// events with a 500 and a stable code, over real HTTP.
#[test]
fn server_refuses_writes_to_a_mission_with_lost_events() {
    let d = Dir::new();
    let data = d.path().join("data");
    let saved = store_with_rollback(&data, 2);
    for e in std::fs::read_dir(&data).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "ledger" && e.file_type().unwrap().is_file() {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    copy_sled_files(&saved, &data);
    let bus = MissionBus::open(&data).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_bus = bus.clone();
    let admin = "ledger-test-admin-token-0123456789";
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            mission_bus::server::run(listener, server_bus, admin.to_string(), async {
                let _ = stopped.await;
            })
            .await
        })
    });
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(GUARD))
        .build()
        .into();
    // "late" was acknowledged and then lost entirely: creating it again
    // would hand its acknowledged sequences to other events.
    let mut resp = agent
        .post(format!("http://{addr}/v1/missions"))
        .header("Authorization", format!("Bearer {admin}"))
        .header("Content-Type", "application/json")
        .send(json!({"mission_id": "late", "title": "again", "lead": "x"}).to_string())
        .unwrap();
    let status = resp.status().as_u16();
    let body: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let _ = stop.send(());
    thread.join().unwrap().unwrap();
    bus.close();
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        body["error"]["code"], "acknowledged_events_missing",
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("1..2") && message.contains("'late'"),
        "{message}"
    );
}

/// Damage anywhere in sled's `db` file (a flipped bit, a zeroed 4 KiB
/// block): opening, verifying and writing either work or fail with an
/// integrity error; never a panic, never "storage error" (exit 1).
#[test]
fn damage_anywhere_in_the_data_file_is_an_integrity_error() {
    let seed = seed();
    eprintln!("MISSION_BUS_LEDGER_SEED={seed}");
    let mut rng = Rng(seed);
    let base = tempfile::tempdir().unwrap();
    {
        let bus = MissionBus::builder(base.path())
            .flush_every_ms(None)
            .open()
            .unwrap();
        for m in MISSIONS {
            bus.create_mission(NewMission::new(m, "whole file").lead("lead"))
                .unwrap();
            let items = (0..200)
                .map(|n| {
                    let action = mission_bus::Action::Publish {
                        topic: "t".into(),
                        payload: json!({"n": n, "pad": "x".repeat(100)}).into(),
                    };
                    ("lead".to_string(), action)
                })
                .collect();
            bus.append_batch(m, items, None).unwrap();
        }
    }
    let len = std::fs::metadata(base.path().join("db")).unwrap().len();
    let mut outcomes = BTreeMap::new();
    for trial in 0..30 {
        let tmp = tempfile::tempdir().unwrap();
        copy_sled_files(base.path(), tmp.path());
        std::fs::copy(base.path().join("ledger"), tmp.path().join("ledger")).unwrap();
        let mut bytes = std::fs::read(tmp.path().join("db")).unwrap();
        let at = rng.below(len) as usize;
        let how = if trial % 2 == 0 {
            bytes[at] ^= 1 << rng.below(8);
            format!("bit flip at {at}")
        } else {
            let from = at / 4096 * 4096;
            let to = (from + 4096).min(bytes.len());
            bytes[from..to].fill(0);
            format!("zeroed block at {from}")
        };
        std::fs::write(tmp.path().join("db"), &bytes).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let integrity = |e: mission_bus::Error| {
                assert_eq!(e.kind(), ErrorKind::Integrity, "{how}: {e}");
                assert!(!e.to_string().contains("offset None"), "{how}: {e}");
            };
            let bus = match MissionBus::open(tmp.path()) {
                Ok(b) => b,
                Err(e) => {
                    integrity(e);
                    return "refused (integrity)";
                }
            };
            let mut clean = true;
            for m in bus.verify_ids() {
                match bus.verify(&m) {
                    Ok(r) => clean &= r.is_intact(),
                    Err(e) => {
                        integrity(e);
                        clean = false;
                    }
                }
                if let Err(e) = bus.publish(&m, "lead", "t", Json::empty_object()) {
                    integrity(e);
                }
            }
            if clean {
                "intact"
            } else {
                "damage reported"
            }
        }));
        let outcome = outcome.unwrap_or_else(|_| panic!("trial {trial}: {how}: panicked"));
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    eprintln!("outcomes: {outcomes:?}");
}
