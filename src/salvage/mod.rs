//! Salvage: recover every intact event from a damaged store, without sled.
//!
//! sled may refuse a damaged `db` file outright, or roll back silently. This
//! module never opens the damaged store: it scans the raw files for
//! version-2 records (each carries a magic, its length, mission id,
//! sequence and a CRC; see `docs/format.md`), keeps those whose checksum
//! holds, rebuilds each mission's hash chain from the copies found
//! (choosing by the chain, and by the ledger's head when there is one,
//! where sled's log holds several versions of a sequence), and writes the
//! contiguous prefix of each mission into a new store through
//! [`MissionBus::import_log`], so events keep their ids, timestamps and
//! contents, and therefore their hashes. Events found after a gap cannot
//! enter a store whose sequences are contiguous: they are kept, with their
//! hashes, in `NEW_DIR/salvage/after-gaps.jsonl`, flagged `proven` when the
//! hash chain links them to the ledger's head. See `docs/mission-bus.md`
//! (salvage) for what is and is not recovered.

pub(crate) mod evidence;
mod scan;

pub use evidence::{DEFAULT_EVIDENCE_LIMIT, EVIDENCE_SUBDIR};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::codec::{Hash, GENESIS};
use crate::document::event_to_json;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::ledger::{self, LedgerHead};
use crate::store::hex;
use crate::MissionBus;
use scan::Found;

/// Sub-directory of the new store holding the salvage report and the
/// events that could not enter the store.
pub const SALVAGE_SUBDIR: &str = "salvage";

/// What salvage recovered of one mission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissionSalvage {
    /// The mission id.
    pub mission_id: String,
    /// Sequences `1..=recovered_to` are in the new store (0: none).
    pub recovered_to: u64,
    /// Hex chain hash of the recovered head (empty when nothing was recovered).
    pub recovered_head_hash: String,
    /// Sequence ranges (inclusive) known to exist that were not found intact.
    pub lost: Vec<(u64, u64)>,
    /// The ledger's head for this mission: (sequence, hex hash).
    pub ledger_head: Option<(u64, String)>,
    /// Whether the recovered chain contains the ledger's head (every
    /// acknowledged event is back, proven by the chain). `None` without a
    /// ledger entry.
    pub matches_ledger: Option<bool>,
    /// Recovered events past the ledger's head (durable, never acknowledged).
    pub beyond_ledger: u64,
    /// Events found after a gap, kept in `salvage/after-gaps.jsonl`.
    pub after_gaps: u64,
    /// How many of those the hash chain links to the ledger's head.
    pub after_gaps_proven: u64,
    /// Sequences where more than one intact version was found.
    pub forks: u64,
    /// Why the recovered prefix could not be written, if it could not.
    pub error: Option<String>,
}

impl MissionSalvage {
    /// Nothing lost, nothing left out, and the ledger (if any) agrees.
    pub fn is_complete(&self) -> bool {
        self.lost.is_empty()
            && self.after_gaps == 0
            && self.error.is_none()
            && self.matches_ledger != Some(false)
    }

    fn to_json(&self) -> Value {
        json!({
            "mission_id": self.mission_id,
            "complete": self.is_complete(),
            "recovered": if self.recovered_to > 0 { json!([1, self.recovered_to]) } else { Value::Null },
            "recovered_head_hash": self.recovered_head_hash,
            "lost": self.lost.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
            "ledger_head": self.ledger_head.as_ref().map(|(s, h)| json!({"sequence": s, "hash": h})),
            "matches_ledger": self.matches_ledger,
            "beyond_ledger": self.beyond_ledger,
            "after_gaps": self.after_gaps,
            "after_gaps_proven": self.after_gaps_proven,
            "forks": self.forks,
            "error": self.error,
        })
    }
}

/// The outcome of [`salvage`].
#[derive(Debug, Clone)]
pub struct SalvageReport {
    /// Per mission, sorted by id.
    pub missions: Vec<MissionSalvage>,
    /// The ledger: `Ok(true)` read, `Ok(false)` absent (an older store),
    /// `Err` damaged (salvage went on without it).
    pub ledger: std::result::Result<bool, String>,
    /// Raw files scanned.
    pub files: Vec<PathBuf>,
    /// Bytes scanned.
    pub bytes_scanned: u64,
    /// Intact record copies found (duplicates included).
    pub record_copies: u64,
    /// Magic occurrences rejected (damaged copies).
    pub rejected: u64,
}

impl SalvageReport {
    /// Every mission complete, and proven so by a readable ledger. Without
    /// a ledger (an older store) completeness cannot be proven: losses at
    /// the end of a mission, whole missions, and version-1 records (which
    /// salvage cannot find) would not show.
    pub fn is_complete(&self) -> bool {
        self.ledger == Ok(true) && self.missions.iter().all(MissionSalvage::is_complete)
    }

    /// The report as JSON, as `mission-bus salvage` prints it.
    pub fn to_json(&self) -> Value {
        json!({
            "complete": self.is_complete(),
            "ledger": match &self.ledger {
                Ok(true) => json!("read"),
                Ok(false) => json!("absent"),
                Err(e) => json!({"damaged": e}),
            },
            "files": self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "bytes_scanned": self.bytes_scanned,
            "record_copies": self.record_copies,
            "rejected": self.rejected,
            "tokens_recovered": false,
            "missions": self.missions.iter().map(MissionSalvage::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Whether `dir` holds a store (sled's `db` file).
pub fn holds_store(dir: &Path) -> bool {
    dir.join("db").is_file()
}

/// Recover every intact event of the store at `damaged` into a new store at
/// `to` (which must not exist or be empty). `damaged` is only read.
pub fn salvage(damaged: &Path, to: &Path) -> Result<SalvageReport> {
    if !holds_store(damaged) {
        return Err(Error::io(
            damaged,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no store here (no sled `db` file)",
            ),
        ));
    }
    check_empty_target(to)?;
    check_outside(damaged, to)?;
    let ledger = ledger::read_heads(damaged);
    let (heads, ledger_status) = match ledger {
        Ok(Some(h)) => (h, Ok(true)),
        Ok(None) => (BTreeMap::new(), Ok(false)),
        Err(e) => (BTreeMap::new(), Err(e.to_string())),
    };
    let (found, stats) = scan::scan_files(&raw_files(damaged)?)?;

    let mut by_mission: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    for f in found {
        by_mission.entry(f.mission_id.clone()).or_default().push(f);
    }
    for name in heads.keys() {
        by_mission.entry(name.clone()).or_default();
    }

    let bus = MissionBus::open(to)?;
    let mut missions = Vec::new();
    let mut after_gaps: Vec<Value> = Vec::new();
    for (name, copies) in by_mission {
        let plan = plan_mission(&name, copies, heads.get(&name));
        let mut m = plan.report;
        if !plan.prefix.is_empty() {
            let events: Vec<Event> = plan.prefix.iter().map(|f| f.event.clone()).collect();
            match bus.import_log(events, |_| {}) {
                Ok(_) => {
                    let stored = bus.verify(&name).map(|r| r.head_hash);
                    if stored.as_deref().ok() != Some(m.recovered_head_hash.as_str()) {
                        m.error = Some(format!(
                            "the new store's head hash differs from the salvaged chain ({stored:?})"
                        ));
                    }
                }
                Err(e) => {
                    m.error = Some(format!("could not write the recovered events: {e}"));
                    // Keep them where the reader can see them.
                    for f in &plan.prefix {
                        after_gaps.push(kept_line(f, false));
                    }
                    m.after_gaps += plan.prefix.len() as u64;
                    m.recovered_to = 0;
                }
            }
        }
        for (f, proven) in &plan.after {
            after_gaps.push(kept_line(f, *proven));
        }
        missions.push(m);
    }
    bus.close();
    drop(bus);

    let report = SalvageReport {
        missions,
        ledger: ledger_status,
        files: stats.files,
        bytes_scanned: stats.bytes,
        record_copies: stats.copies,
        rejected: stats.rejected,
    };
    // Mission content: private, like the store itself.
    let sub = to.join(SALVAGE_SUBDIR);
    let mut dir = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        dir.mode(0o700);
    }
    dir.create(&sub).map_err(|e| Error::io(&sub, e))?;
    let create = |path: &Path| {
        ledger::private_options()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(path, e))
    };
    if !after_gaps.is_empty() {
        let path = sub.join("after-gaps.jsonl");
        let mut out = std::io::BufWriter::new(create(&path)?);
        for line in &after_gaps {
            writeln!(out, "{line}").map_err(|e| Error::io(&path, e))?;
        }
        out.flush().map_err(|e| Error::io(&path, e))?;
    }
    let path = sub.join("report.json");
    let text = serde_json::to_string_pretty(&report.to_json()).expect("a Value serializes");
    create(&path)?
        .write_all(text.as_bytes())
        .map_err(|e| Error::io(&path, e))?;
    Ok(report)
}

/// The new store may not live inside the damaged directory, which salvage
/// never writes.
fn check_outside(damaged: &Path, to: &Path) -> Result<()> {
    let damaged = damaged.canonicalize().map_err(|e| Error::io(damaged, e))?;
    // `to` may not exist yet: resolve its nearest existing ancestor.
    let mut probe = if to.is_absolute() {
        to.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io(to, e))?
            .join(to)
    };
    loop {
        if let Ok(real) = probe.canonicalize() {
            if real.starts_with(&damaged) {
                return Err(Error::invalid(
                    "target directory",
                    format!(
                        "{} is inside the damaged store {}, which salvage never writes",
                        to.display(),
                        damaged.display()
                    ),
                ));
            }
            return Ok(());
        }
        if !probe.pop() {
            return Ok(());
        }
    }
}

/// `to` must not exist, or be an empty directory.
pub(crate) fn check_empty_target(to: &Path) -> Result<()> {
    match std::fs::read_dir(to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(to, e)),
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(Error::invalid(
                "target directory",
                format!("{} is not empty", to.display()),
            )),
        },
    }
}

/// sled's data file, the copies of it kept by damaged opens
/// ([`evidence`]: they hold what sled's recovery cut) and every file under
/// `blobs/`.
fn raw_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = vec![dir.join("db")];
    files.extend(evidence::kept_copies(dir));
    let blobs = dir.join("blobs");
    let mut stack = vec![blobs];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut names: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                names.push(path);
            }
        }
        names.sort();
        files.extend(names);
    }
    Ok(files)
}

fn kept_line(f: &Found, proven: bool) -> Value {
    json!({
        "mission_id": f.mission_id,
        "sequence": f.sequence,
        "hash": hex(&f.hash),
        "prev_hash": hex(&f.prev),
        "proven": proven,
        "found_in": f.file.display().to_string(),
        "offset": f.offset,
        "event": event_to_json(&f.event),
    })
}

/// One mission's salvage plan: what enters the store, what is kept aside.
struct Plan {
    prefix: Vec<Found>,
    after: Vec<(Found, bool)>,
    report: MissionSalvage,
}

/// Choose each mission's chain from the copies found.
///
/// Walking from the genesis hash, sequence `n` takes the copy whose
/// previous hash is the hash chosen at `n - 1`; where several qualify (sled
/// keeps older page versions, and a rolled-back store may have reused a
/// sequence), the copy whose continuation reaches the ledger's head wins,
/// then the one with the longest continuation.
fn plan_mission(name: &str, copies: Vec<Found>, ledger: Option<&LedgerHead>) -> Plan {
    let mut by_seq: BTreeMap<u64, Vec<Found>> = BTreeMap::new();
    for f in copies {
        by_seq.entry(f.sequence).or_default().push(f);
    }
    let forks = by_seq.values().filter(|v| v.len() > 1).count() as u64;
    // Score every copy from the top down: (reaches the ledger head, length).
    let mut score: HashMap<(u64, Hash), (bool, u64)> = HashMap::new();
    for (&seq, here) in by_seq.iter().rev() {
        for f in here {
            let mut best = (false, 0u64);
            if let Some(next) = by_seq.get(&(seq + 1)) {
                for d in next.iter().filter(|d| d.prev == f.hash) {
                    best = best.max(score[&(seq + 1, d.hash)]);
                }
            }
            let at_ledger = ledger.is_some_and(|l| l.sequence == seq && l.hash == f.hash);
            score.insert((seq, f.hash), (best.0 || at_ledger, best.1 + 1));
        }
    }
    let mut prefix: Vec<Found> = Vec::new();
    let mut prev = GENESIS;
    let mut seq = 1u64;
    while let Some(here) = by_seq.get(&seq) {
        let Some(pick) = here
            .iter()
            .filter(|f| f.prev == prev)
            .max_by_key(|f| score[&(seq, f.hash)])
        else {
            break;
        };
        prev = pick.hash;
        prefix.push(pick.clone());
        seq += 1;
    }
    let k = prefix.len() as u64;
    // After the gap: the chain down from the ledger's head is proven.
    let mut proven: BTreeSet<(u64, Hash)> = BTreeSet::new();
    if let Some(l) = ledger.filter(|l| l.sequence > k + 1) {
        let mut want = (l.sequence, l.hash);
        while want.0 > k {
            let Some(f) = by_seq
                .get(&want.0)
                .and_then(|v| v.iter().find(|f| f.hash == want.1))
            else {
                break;
            };
            proven.insert(want);
            want = (want.0 - 1, f.prev);
        }
    }
    let after: Vec<(Found, bool)> = by_seq
        .range(k + 1..)
        .flat_map(|(_, v)| v.iter())
        .map(|f| (f.clone(), proven.contains(&(f.sequence, f.hash))))
        .collect();
    let present: BTreeSet<u64> = after.iter().map(|(f, _)| f.sequence).collect();
    let top = present
        .iter()
        .next_back()
        .copied()
        .unwrap_or(0)
        .max(ledger.map_or(0, |l| l.sequence));
    let mut lost = Vec::new();
    let mut s = k + 1;
    while s <= top {
        if present.contains(&s) {
            s += 1;
            continue;
        }
        let start = s;
        while s <= top && !present.contains(&s) {
            s += 1;
        }
        lost.push((start, s - 1));
    }
    let matches_ledger = ledger.map(|l| {
        prefix
            .get((l.sequence as usize).wrapping_sub(1))
            .is_some_and(|f| f.hash == l.hash)
    });
    let report = MissionSalvage {
        mission_id: name.to_string(),
        recovered_to: k,
        recovered_head_hash: prefix.last().map(|f| hex(&f.hash)).unwrap_or_default(),
        lost,
        ledger_head: ledger.map(|l| (l.sequence, hex(&l.hash))),
        matches_ledger,
        beyond_ledger: ledger.map_or(0, |l| k.saturating_sub(l.sequence)),
        after_gaps: after.len() as u64,
        after_gaps_proven: proven.len() as u64,
        forks,
        error: None,
    };
    Plan {
        prefix,
        after,
        report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_event;
    use crate::event::{EventBody, Json};

    fn found(seq: u64, prev: &Hash, tag: &str) -> Found {
        let event = Event {
            id: uuid::Uuid::now_v7(),
            sequence: seq,
            timestamp: crate::event::now_micros(),
            sender: "ada".into(),
            body: EventBody::Message {
                topic: tag.into(),
                payload: Json::null(),
            },
        };
        let enc = encode_event("m", &event, prev);
        Found {
            mission_id: "m".into(),
            sequence: seq,
            hash: enc.hash,
            prev: *prev,
            event,
            file: PathBuf::from("db"),
            offset: 0,
        }
    }

    /// 1 - 2 - 3a - 4a           (the acknowledged history, ledger at 4a)
    ///       \ 3b - 4b - 5b      (a longer branch: a reused sequence 3)
    fn forked() -> (Vec<Found>, LedgerHead) {
        let f1 = found(1, &GENESIS, "1");
        let f2 = found(2, &f1.hash, "2");
        let f3a = found(3, &f2.hash, "3a");
        let f4a = found(4, &f3a.hash, "4a");
        let f3b = found(3, &f2.hash, "3b");
        let f4b = found(4, &f3b.hash, "4b");
        let f5b = found(5, &f4b.hash, "5b");
        let ledger = LedgerHead {
            sequence: 4,
            hash: f4a.hash,
        };
        (vec![f5b, f3b, f1, f4a, f2, f4b, f3a], ledger)
    }

    fn topics(plan: &Plan) -> Vec<String> {
        plan.prefix
            .iter()
            .map(|f| match &f.event.body {
                EventBody::Message { topic, .. } => topic.clone(),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn the_ledger_head_decides_between_forks() {
        let (copies, ledger) = forked();
        let plan = plan_mission("m", copies, Some(&ledger));
        assert_eq!(topics(&plan), ["1", "2", "3a", "4a"]);
        assert_eq!(plan.report.matches_ledger, Some(true));
        assert_eq!(plan.report.forks, 2);
        // The other branch is kept aside, not proven.
        assert_eq!(plan.after.len(), 1);
        assert!(!plan.after[0].1);
        assert!(!plan.report.is_complete(), "a leftover branch is reported");
    }

    #[test]
    fn without_a_ledger_the_longest_chain_wins() {
        let (copies, _) = forked();
        let plan = plan_mission("m", copies, None);
        assert_eq!(topics(&plan), ["1", "2", "3b", "4b", "5b"]);
        assert_eq!(plan.report.matches_ledger, None);
    }

    #[test]
    fn after_a_gap_the_chain_down_from_the_ledger_head_is_proven() {
        let f1 = found(1, &GENESIS, "1");
        let f2 = found(2, &f1.hash, "2");
        let f3 = found(3, &f2.hash, "3");
        let f4 = found(4, &f3.hash, "4");
        let f5 = found(5, &f4.hash, "5");
        let stray = found(5, &[7; 32], "stray");
        let ledger = LedgerHead {
            sequence: 5,
            hash: f5.hash,
        };
        // Sequence 2 is lost.
        let plan = plan_mission("m", vec![f1, f3, f4, f5, stray], Some(&ledger));
        assert_eq!(plan.report.recovered_to, 1);
        assert_eq!(plan.report.lost, [(2, 2)]);
        assert_eq!(plan.report.matches_ledger, Some(false));
        assert_eq!(plan.report.after_gaps_proven, 3);
        let proven: Vec<(u64, bool)> = plan.after.iter().map(|(f, p)| (f.sequence, *p)).collect();
        assert_eq!(proven.len(), 4);
        assert_eq!(proven.iter().filter(|(_, p)| *p).count(), 3);
    }

    #[test]
    fn a_mission_the_ledger_knows_but_no_record_survived_is_lost_whole() {
        let ledger = LedgerHead {
            sequence: 9,
            hash: [1; 32],
        };
        let plan = plan_mission("m", Vec::new(), Some(&ledger));
        assert_eq!(plan.report.recovered_to, 0);
        assert_eq!(plan.report.lost, [(1, 9)]);
        assert_eq!(plan.report.matches_ledger, Some(false));
    }
}
