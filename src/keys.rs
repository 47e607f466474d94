//! Key layouts: big-endian fixed-width integers, so keys sort as numbers.
//!
//! Nothing else lives here. bincode is never used for keys: its integers are
//! little-endian varints and do not sort. See `docs/format.md`.

/// Internal compact id of a mission (the `missions` tree maps the user's string to it).
pub(crate) type MissionNo = u64;

/// `events` key: `[mission u64 BE][seq u64 BE]`.
pub(crate) fn event_key(mission: MissionNo, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mission.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Prefix of every `events` key of one mission; also the `heads` and `snapshots` key.
pub(crate) fn mission_key(mission: MissionNo) -> [u8; 8] {
    mission.to_be_bytes()
}

/// `event_ids` key (layout 2): `[mission u64 BE][event id 16 bytes]`, so
/// an event id is unique within its mission only.
pub(crate) fn event_id_key(mission: MissionNo, id: &[u8; 16]) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&mission.to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

/// Split an `events` key (or an index value, which has the same layout).
pub(crate) fn parse_event_key(k: &[u8]) -> Option<(MissionNo, u64)> {
    let k: &[u8; 16] = k.try_into().ok()?;
    let mission = u64::from_be_bytes(k[..8].try_into().ok()?);
    let seq = u64::from_be_bytes(k[8..].try_into().ok()?);
    Some((mission, seq))
}

/// Parse an 8-byte big-endian integer (`heads`/`snapshots` keys, mission numbers).
pub(crate) fn parse_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// Length of a head value: `[seq u64 BE][chain hash 32 bytes]`.
pub(crate) const HEAD_LEN: usize = 40;

/// `heads` value.
pub(crate) fn head_value(seq: u64, hash: &[u8; 32]) -> [u8; HEAD_LEN] {
    let mut v = [0u8; HEAD_LEN];
    v[..8].copy_from_slice(&seq.to_be_bytes());
    v[8..].copy_from_slice(hash);
    v
}

/// Parse a `heads` value.
pub(crate) fn parse_head(v: &[u8]) -> Option<(u64, [u8; 32])> {
    if v.len() != HEAD_LEN {
        return None;
    }
    let seq = parse_u64(&v[..8])?;
    let hash: [u8; 32] = v[8..].try_into().ok()?;
    Some((seq, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_sort_by_mission_then_sequence() {
        let mut keys = [
            event_key(2, 1),
            event_key(1, 256),
            event_key(1, 2),
            event_key(1, 1),
        ];
        keys.sort();
        let parsed: Vec<_> = keys.iter().map(|k| parse_event_key(k).unwrap()).collect();
        assert_eq!(parsed, vec![(1, 1), (1, 2), (1, 256), (2, 1)]);
    }

    #[test]
    fn head_round_trips_and_rejects_wrong_length() {
        let h = [7u8; 32];
        assert_eq!(parse_head(&head_value(42, &h)), Some((42, h)));
        assert_eq!(parse_head(&[0u8; 39]), None);
    }
}
