//! PLACEHOLDER until the `ledger` branch lands (it owns this file; take
//! theirs on merge). Only the read API of the contract
//! (/work/briefs/contract.md), answering "no ledger" for every store.

/// A mission's last acknowledged head, as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LedgerHead {
    pub(crate) sequence: u64,
    pub(crate) hash: [u8; 32],
}

/// Read the ledger of the store at `dir` (never creates anything).
pub(crate) fn read_heads(
    _dir: &std::path::Path,
) -> crate::Result<Option<std::collections::BTreeMap<String, LedgerHead>>> {
    Ok(None)
}
