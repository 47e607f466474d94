//! The name grammar (docs/api.md, "Names") through the CLI as typed: every
//! place a mission id or participant name enters (create, join, import) and
//! participant metadata. The library rows live in tests/bad_input.rs, the
//! server's in tests/server_limits.rs.

mod util;

use util::Dir;

const BAD_NAMES: [(&str, &str); 6] = [
    ("a/b", "'/'"),
    ("..", "starts with '.'"),
    ("a..b", "'..'"),
    ("-rf", "starts with '-'"),
    ("evil\u{202e}txt", "U+202E"),
    ("tab\there", "U+0009"),
];

#[test]
fn cli_refuses_names_outside_the_grammar_and_writes_nothing() {
    let dir = Dir::new();
    dir.mb(&["create", "good", "--title", "t", "--lead", "lena"])
        .ok();
    for (bad, needle) in BAD_NAMES {
        // `--` so that a leading '-' reaches the command as a value.
        let err = dir
            .mb(&["create", "--title", "t", "--lead", "lena", "--", bad])
            .fails(2);
        assert!(
            err.contains("mission id") && err.contains(needle),
            "create {bad:?}: {err}"
        );
        let err = dir
            .mb(&["join", "--role", "write", "--", "good", bad])
            .fails(2);
        assert!(
            err.contains("participant name") && err.contains(needle),
            "join {bad:?}: {err}"
        );
    }
    let err = dir
        .mb(&["create", "other", "--title", "t", "--lead", "a/b"])
        .fails(2);
    assert!(err.contains("lead"), "{err}");
    let err = dir
        .mb(&[
            "join",
            "good",
            "ada",
            "--role",
            "write",
            "--metadata",
            "[1,2]",
        ])
        .fails(2);
    assert!(
        err.contains("metadata") && err.contains("JSON object"),
        "{err}"
    );
    // Nothing above was written: one mission, lead only.
    let missions = dir.mb(&["missions"]).json_lines();
    assert_eq!(missions.len(), 1, "{missions:?}");
    assert_eq!(missions[0]["head_sequence"], 2, "{missions:?}");
}

#[test]
fn cli_import_refuses_names_outside_the_grammar() {
    let dir = Dir::new();
    dir.mb(&["create", "good", "--title", "t", "--lead", "lena"])
        .ok();
    dir.mb(&["join", "good", "ada", "--role", "write"]).json();
    let log = dir.mb(&["export", "good", "--format", "jsonl"]).ok();
    for (what, edited) in [
        ("mission id", log.replacen("\"good\"", "\"a/b\"", 1)),
        ("participant name", log.replace("\"ada\"", "\"-ada\"")),
    ] {
        assert_ne!(edited, log);
        dir.create("edited.jsonl", &edited);
        let err = dir.mb(&["import", "edited.jsonl"]).fails(2);
        assert!(err.contains(what), "{what}: {err}");
    }
    assert_eq!(dir.mb(&["missions"]).json_lines().len(), 1);
}
