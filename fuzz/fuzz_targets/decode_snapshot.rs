//! Snapshot decoder: any bytes in the `snapshots` tree must decode or be
//! rejected (the state is then rebuilt from the log), never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mission_bus::fuzzing::decode_snapshot;

fuzz_target!(|data: &[u8]| {
    let _ = decode_snapshot(data);
});
