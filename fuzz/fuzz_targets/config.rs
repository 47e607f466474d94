//! Roles/profiles config parser: any UTF-8 text must parse or be rejected
//! with `Error::Config`, never panic. A config that parses must survive a
//! round trip through its own JSON form unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mission_bus::{Error, MissionConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match MissionConfig::from_json_str(text, None) {
        Ok(config) => {
            let again = MissionConfig::from_json(&config.to_json())
                .expect("a parsed config's own JSON must parse");
            assert_eq!(again, config, "config changed in a round trip");
        }
        Err(Error::Config { .. }) => {}
        Err(other) => panic!("config parse failed with a non-config error: {other}"),
    }
});
