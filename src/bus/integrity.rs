//! Checking the store against the commit ledger at open, and what the bus
//! then knows: which missions lost acknowledged events (they refuse writes)
//! and whether the ledger itself is damaged (then every write is refused).
//!
//! See `src/ledger.rs` for the file and `docs/architecture.md` (Recovery)
//! for the rules.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;

use crate::error::{Error, Result};
use crate::ledger::{self, Ledger, LedgerDamage, LedgerHead};
use crate::store::Store;
use crate::verify::{Problem, VerifyReport};

/// Acknowledged events of one mission that the store no longer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MissionDamage {
    pub(super) first: u64,
    pub(super) last: u64,
    /// The head the ledger holds for the mission.
    pub(super) ledger: LedgerHead,
    pub(super) reason: String,
}

/// What the open-time check found; shared by the handle and the writer.
#[derive(Debug, Default)]
pub(super) struct Integrity {
    pub(super) damaged: RwLock<BTreeMap<String, MissionDamage>>,
    pub(super) ledger_damage: Option<LedgerDamage>,
}

impl Integrity {
    /// Whether the check found anything wrong (a mission that lost
    /// acknowledged events, or a damaged ledger).
    pub(super) fn found_damage(&self) -> bool {
        self.ledger_damage.is_some()
            || !self
                .damaged
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    /// The error a write to `mission` gets, if it must be refused.
    pub(super) fn refuse_write(&self, mission: &str) -> Option<Error> {
        if let Some(d) = &self.ledger_damage {
            return Some(d.to_error());
        }
        self.damage(mission).map(|d| d.to_error(mission))
    }

    pub(super) fn damage(&self, mission: &str) -> Option<MissionDamage> {
        self.damaged
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(mission)
            .cloned()
    }

    /// Missions the ledger knows that the store lost entirely.
    pub(super) fn damaged_names(&self) -> Vec<String> {
        self.damaged
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Add this mission's damage (if any) to its verify report, after the
    /// store's own findings (they say precisely what is wrong in the log;
    /// the ledger says what that cost). When the store found nothing (sled
    /// rolled back to a consistent but earlier state) it is the only one.
    pub(super) fn annotate(&self, report: &mut VerifyReport) {
        if let Some(d) = self.damage(&report.mission_id) {
            report.problems.push(Problem {
                sequence: Some(d.first),
                what: d.describe(&report.mission_id),
            });
        }
    }

    /// The report for a mission the ledger knows and the store does not.
    pub(super) fn report_for_missing(&self, mission: &str) -> Option<VerifyReport> {
        let d = self.damage(mission)?;
        let mut report = VerifyReport {
            mission_id: mission.to_string(),
            events_checked: 0,
            head_sequence: 0,
            head_hash: String::new(),
            problems: Vec::new(),
            notes: Vec::new(),
        };
        report.problems.push(Problem {
            sequence: Some(d.first),
            what: d.describe(mission),
        });
        Some(report)
    }
}

impl MissionDamage {
    pub(super) fn describe(&self, mission: &str) -> String {
        format!(
            "acknowledged events {}..{} of mission {mission} are missing ({}; the commit \
             ledger holds head {} with hash {})",
            self.first,
            self.last,
            self.reason,
            self.ledger.sequence,
            crate::store::hex(&self.ledger.hash)
        )
    }

    pub(super) fn to_error(&self, mission: &str) -> Error {
        Error::AcknowledgedLoss {
            mission: mission.to_string(),
            first: self.first,
            last: self.last,
            reason: self.reason.clone(),
        }
    }
}

/// Compare every mission's head in the store with the ledger, and open the
/// ledger for appending (creating it for a store that has none yet;
/// `preallocate`: see [`Ledger::open_with`]). Damage is recorded, never an
/// error: one damaged mission (or a damaged ledger) does not stop the rest
/// of the store from opening.
pub(super) fn check_at_open(
    store: &Store,
    dir: &Path,
    preallocate: bool,
) -> Result<(Option<Ledger>, Integrity)> {
    let missions: BTreeMap<String, u64> = store.missions()?.into_iter().collect();
    let mut integrity = Integrity::default();
    let mut scan = match ledger::scan(dir)? {
        Some(scan) => {
            if !store.has_ledger()? {
                store.mark_ledger()?;
            }
            scan
        }
        None if store.has_ledger()? => {
            integrity.ledger_damage = Some(LedgerDamage {
                path: dir.join(ledger::FILE_NAME),
                offset: 0,
                reason: "the file is missing, but this store has kept a ledger".into(),
            });
            return Ok((None, integrity));
        }
        None => {
            // A store written before the ledger existed: start one from
            // what the store holds now (nothing to compare it with).
            let mut heads = BTreeMap::new();
            for (name, no) in &missions {
                if let Ok((sequence, hash)) = store.head(*no, name) {
                    heads.insert(name.clone(), LedgerHead { sequence, hash });
                }
            }
            let l = Ledger::create_with(dir, heads, Vec::new(), preallocate)?;
            store.mark_ledger()?;
            return Ok((Some(l), integrity));
        }
    };
    let drop_tail = judge_tail(store, &missions, &mut scan);
    let mut damaged = BTreeMap::new();
    for (name, lh) in &scan.heads {
        if let Some(d) = check_mission(store, &missions, name, lh) {
            tracing::warn!(mission = %name, "{}", d.describe(name));
            damaged.insert(name.clone(), d);
        }
    }
    integrity.damaged = RwLock::new(damaged);
    if let Some(d) = scan.damage {
        tracing::warn!(path = %d.path.display(), offset = d.offset, "commit ledger damaged: {}", d.reason);
        integrity.ledger_damage = Some(d);
        return Ok((None, integrity));
    }
    Ok((
        Some(Ledger::open_with(dir, scan, drop_tail, preallocate)?),
        integrity,
    ))
}

/// An unconfirmed last step entry (its group was synced in parallel with
/// sled's flush, and the process or machine stopped before acknowledging
/// it): if the store holds the group, it counts as confirmed; if every one
/// of its missions is exactly at the head it had before the group, the
/// group never reached sled and was never acknowledged: tolerated, and the
/// entry is dropped (returns true). Anything else is checked like a
/// confirmed entry (so a loss is reported).
fn judge_tail(store: &Store, missions: &BTreeMap<String, u64>, scan: &mut ledger::Scan) -> bool {
    let Some(tail) = &scan.tail else {
        return false;
    };
    let landed = tail
        .steps
        .iter()
        .all(|s| check_mission(store, missions, &s.mission, &s.new).is_none());
    let before = tail
        .steps
        .iter()
        .all(|s| at_head(store, missions, &s.mission, &s.prev));
    if !landed && before {
        tracing::info!(
            offset = tail.offset,
            missions = tail.steps.len(),
            "commit ledger: the last group was never confirmed and is not in the store \
             (it was never acknowledged); ignoring it"
        );
        // Ledger::open_with cuts the file at the tail's offset.
        return true;
    }
    scan.confirm_tail();
    false
}

/// Whether the store's head of `name` is exactly `head` (sequence 0: the
/// mission is absent or empty).
fn at_head(store: &Store, missions: &BTreeMap<String, u64>, name: &str, head: &LedgerHead) -> bool {
    let Some(&no) = missions.get(name) else {
        return head.sequence == 0;
    };
    match store.head(no, name) {
        Ok((0, _)) => head.sequence == 0,
        Ok((seq, hash)) => seq == head.sequence && hash == head.hash,
        Err(_) => false,
    }
}

fn check_mission(
    store: &Store,
    missions: &BTreeMap<String, u64>,
    name: &str,
    lh: &LedgerHead,
) -> Option<MissionDamage> {
    let damage = |first: u64, reason: String| {
        Some(MissionDamage {
            first,
            last: lh.sequence,
            ledger: lh.clone(),
            reason,
        })
    };
    let Some(&no) = missions.get(name) else {
        return damage(1, "the mission is missing from the store".into());
    };
    let head = match store.head(no, name) {
        Ok((seq, _)) => seq,
        Err(e) => return damage(1, format!("its head cannot be read: {e}")),
    };
    if head < lh.sequence {
        return damage(
            head + 1,
            format!(
                "the store's head is sequence {head}, the ledger's is {}",
                lh.sequence
            ),
        );
    }
    match store.record_hash(no, lh.sequence) {
        Ok(Some(h)) if h == lh.hash => None,
        Ok(Some(h)) => damage(
            lh.sequence,
            format!(
                "the record at sequence {} hashes to {}, not to the acknowledged head",
                lh.sequence,
                crate::store::hex(&h)
            ),
        ),
        // Pruned since the ledger recorded it (a `Relaxed` ledger lags):
        // the anchor proves the record at `before - 1`; below it, the
        // history_pruned event on the record is what the operator did.
        Ok(None) => match store.anchor(no, name) {
            Ok(Some(a)) if lh.sequence + 1 == a.before && a.hash == lh.hash => None,
            Ok(Some(a)) if lh.sequence + 1 < a.before => None,
            _ => damage(
                lh.sequence,
                format!(
                    "the record at sequence {} is missing or damaged",
                    lh.sequence
                ),
            ),
        },
        Err(e) => damage(
            lh.sequence,
            format!("the record at sequence {} cannot be read: {e}", lh.sequence),
        ),
    }
}
