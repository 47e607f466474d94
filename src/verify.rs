//! Verification reports: what an auditor gets back from `verify`.

use std::fmt;

/// One problem found while verifying a mission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Sequence of the record at fault, when the problem is tied to one.
    pub sequence: Option<u64>,
    /// What is wrong, precisely.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sequence {
            Some(s) => write!(f, "sequence {s}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// The outcome of verifying one mission's log, chain, head and indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The mission verified.
    pub mission_id: String,
    /// Records read.
    pub events_checked: u64,
    /// Head sequence recorded in the `heads` tree (0 if none).
    pub head_sequence: u64,
    /// Hex of the head's chain hash (empty if none).
    pub head_hash: String,
    /// Problems in log order; the first is the first thing wrong. Capped at
    /// [`VerifyReport::MAX_PROBLEMS`].
    pub problems: Vec<Problem>,
    /// Remarks that are not problems (a fork's parent verified, deleted
    /// or pruned; a pruned log's anchor).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// Reporting stops after this many problems.
    pub const MAX_PROBLEMS: usize = 100;

    /// Whether the mission verified clean.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// Record a problem, up to [`VerifyReport::MAX_PROBLEMS`].
    pub(crate) fn add_problem(&mut self, sequence: Option<u64>, what: String) {
        if self.problems.len() < Self::MAX_PROBLEMS {
            self.problems.push(Problem { sequence, what });
        }
    }

    /// The first problem found, if any.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }

    /// The report as JSON (`mission_id`, `intact`, `events_checked`,
    /// `head_sequence`, `head_hash`, `problems`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "mission_id": self.mission_id,
            "intact": self.is_intact(),
            "events_checked": self.events_checked,
            "head_sequence": self.head_sequence,
            "head_hash": self.head_hash,
            "problems": self.problems.iter().map(|p| serde_json::json!({
                "sequence": p.sequence,
                "problem": p.what,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }
}
