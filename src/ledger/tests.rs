//! Unit tests of the ledger file: round trips, torn tails, damage,
//! compaction, step entries and their confirmation.
use super::*;

fn head(sequence: u64, b: u8) -> LedgerHead {
    LedgerHead {
        sequence,
        hash: [b; 32],
    }
}

/// The ledger's bytes up to where its entries end (without the free space).
fn logical(dir: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(dir.join(FILE_NAME)).unwrap();
    let s = parse(&dir.join(FILE_NAME), &bytes);
    assert!(s.damage.is_none(), "{:?}", s.damage);
    bytes.truncate(s.intact_len as usize);
    bytes
}

#[test]
fn heads_round_trip_and_later_entries_win() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(read_heads(dir.path()).unwrap(), None);
    let mut l = Ledger::create(dir.path(), BTreeMap::new(), Vec::new()).unwrap();
    l.append(&[("a", head(1, 1)), ("b", head(2, 2))], &[], true)
        .unwrap();
    l.append(&[("a", head(5, 5))], &[], false).unwrap();
    let heads = read_heads(dir.path()).unwrap().unwrap();
    assert_eq!(heads["a"], head(5, 5));
    assert_eq!(heads["b"], head(2, 2));
    assert_eq!(heads.len(), 2);
}

#[test]
fn torn_tails_are_tolerated_and_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = Ledger::create(dir.path(), BTreeMap::new(), Vec::new()).unwrap();
    l.append(&[("a", head(1, 1))], &[], true).unwrap();
    let good = logical(dir.path());
    l.append(&[("a", head(2, 2))], &[], true).unwrap();
    let full = logical(dir.path());
    let path = dir.path().join(FILE_NAME);
    // Every cut inside the last entry (a file without free space, as
    // before preallocation), and zeros in place of its tail.
    for cut in good.len() + 1..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let s = scan(dir.path()).unwrap().unwrap();
        assert!(s.damage.is_none(), "cut at {cut}: {:?}", s.damage);
        assert_eq!(s.heads["a"], head(1, 1));
        let mut zeroed = full[..cut].to_vec();
        zeroed.resize(full.len() + 100, 0);
        std::fs::write(&path, &zeroed).unwrap();
        let s = scan(dir.path()).unwrap().unwrap();
        assert!(s.damage.is_none(), "zeroed from {cut}: {:?}", s.damage);
        assert_eq!(s.intact_len, good.len() as u64);
    }
    // Opening cuts the torn bytes off; appending then works.
    std::fs::write(&path, &full[..full.len() - 3]).unwrap();
    let mut l =
        Ledger::open_with(dir.path(), scan(dir.path()).unwrap().unwrap(), false, true).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good.len() as u64);
    l.append(&[("a", head(3, 3))], &[], true).unwrap();
    assert_eq!(read_heads(dir.path()).unwrap().unwrap()["a"], head(3, 3));
}

#[test]
fn damage_before_the_tail_is_reported_with_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = Ledger::create(dir.path(), BTreeMap::new(), Vec::new()).unwrap();
    l.append(&[("a", head(1, 1))], &[], true).unwrap();
    l.append(&[("a", head(2, 2))], &[], true).unwrap();
    let path = dir.path().join(FILE_NAME);
    let full = logical(dir.path());
    let first_entry = FILE_HEADER;
    // Every single-bit flip outside the last entry is damage; the
    // offset named is the entry (or header) holding the flipped byte.
    let last_entry = full.len() - (full.len() - FILE_HEADER) / 2;
    for byte in 0..last_entry {
        for bit in [0, 7] {
            let mut b = full.clone();
            b[byte] ^= 1 << bit;
            std::fs::write(&path, &b).unwrap();
            let err = read_heads(dir.path()).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Integrity);
            let s = scan(dir.path()).unwrap().unwrap();
            let d = s.damage.unwrap();
            let expect = if byte < first_entry {
                d.offset <= 8
            } else {
                d.offset == first_entry as u64
            };
            assert!(expect, "flip at {byte}: {d:?}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
    }
}

#[test]
fn compaction_keeps_every_head_and_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = Ledger::create_with(dir.path(), BTreeMap::new(), Vec::new(), true).unwrap();
    let loss = AcceptedLoss {
        mission: "m0".into(),
        first: 3,
        last: 4,
        ledger_hash: [9; 32],
        at_micros: 42,
    };
    l.append(&[], std::slice::from_ref(&loss), false).unwrap();
    for i in 0..40_000u64 {
        let m = format!("m{}", i % 10);
        l.append(&[(m.as_str(), head(i, i as u8))], &[], false)
            .unwrap();
    }
    let size = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
    assert!(size <= chunk_end(COMPACT_MIN + 200), "compacted: {size}");
    assert_eq!(size % CHUNK, 0, "preallocated in chunks");
    let s = scan(dir.path()).unwrap().unwrap();
    assert!(s.damage.is_none());
    assert!(
        s.intact_len <= COMPACT_MIN + 200,
        "compacted: {}",
        s.intact_len
    );
    assert_eq!(s.heads.len(), 10);
    assert_eq!(s.heads["m9"], head(39_999, 39_999u64 as u8));
    assert_eq!(s.losses, vec![loss]);
    assert!(!dir.path().join(TMP_NAME).exists());
}

fn step(m: &str, prev: LedgerHead, new: LedgerHead) -> Step {
    Step {
        mission: m.into(),
        prev,
        new,
    }
}

#[test]
fn a_step_entry_counts_once_confirmed_or_followed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut l = Ledger::create(dir.path(), BTreeMap::new(), Vec::new()).unwrap();
    l.append(&[("a", head(1, 1))], &[], true).unwrap();
    let off = l
        .write_step(&[
            step("a", head(1, 1), head(3, 3)),
            step("b", head(0, 0), head(2, 2)),
        ])
        .unwrap();
    // Unconfirmed: a tail, not among the (confirmed) heads.
    let s = scan(dir.path()).unwrap().unwrap();
    assert!(s.damage.is_none());
    let t = s.tail.as_ref().expect("tail");
    assert_eq!(t.offset, off);
    assert_eq!(t.steps[1].prev, head(0, 0));
    assert_eq!(s.heads["a"], head(1, 1));
    assert!(!s.heads.contains_key("b"));
    assert_eq!(read_heads(dir.path()).unwrap().unwrap()["a"], head(1, 1));
    // Confirmed: the heads move, no tail.
    l.confirm(off).unwrap();
    let confirmed = logical(dir.path());
    assert_eq!(confirmed[confirmed.len() - 27..], encode_confirm(off)[..]);
    let s = scan(dir.path()).unwrap().unwrap();
    assert!(s.tail.is_none());
    assert_eq!(s.heads["a"], head(3, 3));
    assert_eq!(s.heads["b"], head(2, 2));
    // A later entry confirms it too (a confirmation write that failed).
    let off2 = l.write_step(&[step("a", head(3, 3), head(4, 4))]).unwrap();
    l.write_step(&[step("a", head(4, 4), head(5, 5))]).unwrap();
    let s = scan(dir.path()).unwrap().unwrap();
    assert_eq!(s.heads["a"], head(4, 4));
    assert!(s.tail.as_ref().is_some_and(|t| t.offset > off2));
    // A confirmation naming another entry is damage.
    let mut bad = logical(dir.path());
    bad.extend_from_slice(&encode_confirm(off2));
    std::fs::write(&path, &bad).unwrap();
    let s = scan(dir.path()).unwrap().unwrap();
    assert!(s.damage.unwrap().reason.contains("confirms the entry"));
}

#[test]
fn opening_drops_a_rejected_tail_or_keeps_an_accepted_one() {
    for drop_tail in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut l = Ledger::create(dir.path(), BTreeMap::new(), Vec::new()).unwrap();
        l.append(&[("a", head(1, 1))], &[], true).unwrap();
        let off = l.write_step(&[step("a", head(1, 1), head(2, 2))]).unwrap();
        drop(l);
        let mut l = Ledger::open_with(
            dir.path(),
            scan(dir.path()).unwrap().unwrap(),
            drop_tail,
            true,
        )
        .unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len == off, drop_tail);
        let want = if drop_tail { head(1, 1) } else { head(2, 2) };
        assert_eq!(read_heads(dir.path()).unwrap().unwrap()["a"], want);
        // The next group follows (and so confirms) what was kept.
        let next = l
            .write_step(&[step("a", want.clone(), head(7, 7))])
            .unwrap();
        l.confirm(next).unwrap();
        assert_eq!(read_heads(dir.path()).unwrap().unwrap()["a"], head(7, 7));
    }
}

#[test]
fn a_version_1_file_is_read_and_rewritten_as_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut v1 = file_header().to_vec();
    v1[8..12].copy_from_slice(&OLD_VERSION.to_be_bytes());
    let crc = crc32fast::hash(&v1[..12]);
    v1[12..16].copy_from_slice(&crc.to_be_bytes());
    let h = head(4, 4);
    v1.extend_from_slice(&encode_entry(&[("a", &h)], &[]));
    std::fs::write(&path, &v1).unwrap();
    let s = scan(dir.path()).unwrap().unwrap();
    assert!(s.damage.is_none());
    assert_eq!(s.version, OLD_VERSION);
    assert_eq!(s.heads["a"], h);
    drop(Ledger::open_with(dir.path(), s, false, true).unwrap());
    let s = scan(dir.path()).unwrap().unwrap();
    assert_eq!(s.version, VERSION);
    assert_eq!(s.heads["a"], h);
}

#[test]
fn the_file_is_preallocated_and_entries_overwrite_its_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut l = Ledger::create_with(dir.path(), BTreeMap::new(), Vec::new(), true).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), CHUNK);
    let mut prev = head(0, 0);
    let mut sizes = Vec::new();
    // Enough groups to cross a few chunk boundaries.
    for i in 1..=2_000u64 {
        let new = head(i, i as u8);
        let off = l
            .write_step(&[step("a", prev.clone(), new.clone())])
            .unwrap();
        l.confirm(off).unwrap();
        prev = new;
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(size % CHUNK, 0, "after group {i}: {size}");
        sizes.push(size);
    }
    assert!(sizes.last().unwrap() > &CHUNK, "grew a chunk at a time");
    // Where the entries end is the ledger's end; only zeros follow.
    let bytes = std::fs::read(&path).unwrap();
    let s = scan(dir.path()).unwrap().unwrap();
    assert!(s.damage.is_none(), "{:?}", s.damage);
    assert_eq!(s.intact_len, l.len);
    assert_eq!(s.torn_bytes, 0);
    assert!(bytes[l.len as usize..].iter().all(|&b| b == 0));
    assert_eq!(s.heads["a"], head(2_000, 2_000u64 as u8));
    drop(l);
    // Reopened, the next entry goes where the entries end (not after the
    // zeros), and the free space is kept.
    let mut l = Ledger::open_with(dir.path(), s, false, true).unwrap();
    let off = l.write_step(&[step("a", prev, head(2_001, 9))]).unwrap();
    assert_eq!(off, scan(dir.path()).unwrap().unwrap().tail.unwrap().offset);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes.len() as u64);
    l.confirm(off).unwrap();
    assert_eq!(
        read_heads(dir.path()).unwrap().unwrap()["a"],
        head(2_001, 9)
    );
}

#[test]
fn torn_tails_in_a_preallocated_file_are_tolerated_and_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut l = Ledger::create_with(dir.path(), BTreeMap::new(), Vec::new(), true).unwrap();
    l.append(&[("a", head(1, 1))], &[], true).unwrap();
    let good = logical(dir.path()).len();
    l.append(&[("a", head(2, 2))], &[], true).unwrap();
    drop(l);
    let full = std::fs::read(&path).unwrap();
    let end = logical(dir.path()).len();
    assert_eq!(full.len() as u64, CHUNK);
    // The last entry only partly written over the free space: every
    // prefix of it, the rest of the chunk still zeros.
    for cut in good..end {
        let mut torn = full.clone();
        torn[cut..end].fill(0);
        std::fs::write(&path, &torn).unwrap();
        let s = scan(dir.path()).unwrap().unwrap();
        assert!(s.damage.is_none(), "cut at {cut}: {:?}", s.damage);
        assert_eq!(s.intact_len, good as u64, "cut at {cut}");
        assert_eq!(s.heads["a"], head(1, 1));
        let written = full[good..cut].iter().any(|&b| b != 0);
        assert_eq!(s.torn_bytes > 0, written, "cut at {cut}");
    }
    // Opening clears the torn bytes (the file is cut at the last whole
    // entry), and the next append is read back after it.
    let mut torn = full.clone();
    torn[good + 20..end].fill(0);
    std::fs::write(&path, &torn).unwrap();
    let mut l =
        Ledger::open_with(dir.path(), scan(dir.path()).unwrap().unwrap(), false, true).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good as u64);
    l.append(&[("a", head(3, 3))], &[], true).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), CHUNK);
    let s = scan(dir.path()).unwrap().unwrap();
    assert!(s.damage.is_none(), "{:?}", s.damage);
    assert_eq!(s.heads["a"], head(3, 3));
}

#[test]
fn a_dropped_or_abandoned_step_leaves_only_zeros_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut l = Ledger::create_with(dir.path(), BTreeMap::new(), Vec::new(), true).unwrap();
    l.append(&[("a", head(1, 1))], &[], true).unwrap();
    // A long step entry abandoned (its group failed), then a short one:
    // nothing of the long one may follow the short one.
    let many: Vec<Step> = (0..20)
        .map(|i| step(&format!("m{i}"), head(0, 0), head(1, 1)))
        .collect();
    let off = l.write_step(&many).unwrap();
    l.abandon_step(off, &many);
    let off = l.write_step(&[step("a", head(1, 1), head(2, 2))]).unwrap();
    l.confirm(off).unwrap();
    let s = scan(dir.path()).unwrap().unwrap();
    assert!(s.damage.is_none(), "{:?}", s.damage);
    assert_eq!(s.torn_bytes, 0);
    assert_eq!(s.heads.len(), 1);
    assert_eq!(s.heads["a"], head(2, 2));
    // The same for a long unconfirmed entry dropped at open.
    let off = l.write_step(&many).unwrap();
    drop(l);
    let s = scan(dir.path()).unwrap().unwrap();
    assert_eq!(s.tail.as_ref().map(|t| t.offset), Some(off));
    let mut l = Ledger::open_with(dir.path(), s, true, true).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), off);
    let off = l.write_step(&[step("a", head(2, 2), head(3, 3))]).unwrap();
    l.confirm(off).unwrap();
    let s = scan(dir.path()).unwrap().unwrap();
    assert!(s.damage.is_none(), "{:?}", s.damage);
    assert_eq!(s.torn_bytes, 0);
    assert_eq!(s.heads.len(), 1);
    assert_eq!(s.heads["a"], head(3, 3));
}

#[test]
fn bytes_in_the_free_space_are_damage_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut l = Ledger::create_with(dir.path(), BTreeMap::new(), Vec::new(), true).unwrap();
    l.append(&[("a", head(1, 1))], &[], true).unwrap();
    let end = l.len as usize;
    drop(l);
    let good = std::fs::read(&path).unwrap();
    // Past the 12 bytes an entry header would take: no append tears
    // there, so it is damage, located where the entries end.
    for at in [end + ENTRY_HEADER, end + 1000, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] = 0x40;
        std::fs::write(&path, &bad).unwrap();
        let d = scan(dir.path()).unwrap().unwrap().damage.expect("damage");
        assert_eq!(d.offset, end as u64, "byte {at}");
    }
}

#[test]
fn without_preallocation_the_file_ends_with_its_last_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut l = Ledger::create_with(dir.path(), BTreeMap::new(), Vec::new(), false).unwrap();
    let off = l.write_step(&[step("a", head(0, 0), head(1, 1))]).unwrap();
    l.confirm(off).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), l.len);
    drop(l);
    // A preallocated file opened without preallocation keeps its zeros
    // and is written over them.
    let mut l = Ledger::create_with(
        dir.path(),
        read_heads(dir.path()).unwrap().unwrap(),
        Vec::new(),
        true,
    )
    .unwrap();
    drop(l);
    let s = scan(dir.path()).unwrap().unwrap();
    l = Ledger::open_with(dir.path(), s, false, false).unwrap();
    let off = l.write_step(&[step("a", head(1, 1), head(2, 2))]).unwrap();
    l.confirm(off).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), CHUNK);
    assert_eq!(read_heads(dir.path()).unwrap().unwrap()["a"], head(2, 2));
}
