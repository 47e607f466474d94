//! Event record decoder: any bytes stored at any sequence must decode or be
//! rejected as corruption, never panic.
//!
//! Input: 8 bytes of sequence (big-endian), then the record value exactly as
//! sled would hand it to the store
//! (`[version][crc32 BE of bytes 5..][prev hash 32][bincode body]`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mission_bus::fuzzing::decode_record;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let seq = u64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
    let _ = decode_record(seq, &data[8..]);
});
