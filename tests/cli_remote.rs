//! The CLI as a client of a running server: every case of tests/cli.rs and
//! tests/cli_lifecycle.rs, run
//! again with `--server URL --token ADMIN` (through `MISSION_BUS_URL` and
//! `MISSION_BUS_TOKEN`) against a `mission-bus serve` on the test's data
//! dir, so outputs and exit codes are compared with the local mode rather
//! than re-typed. Cases about the files themselves (`Dir::local`) run on
//! the files here too. Plus what only the remote mode has.

#[path = "cli.rs"]
mod cases;

// Each case file is also its own test binary, so each declares the
// harness module itself; here both are compiled into one binary.
#[allow(clippy::duplicate_mod)]
#[path = "cli_lifecycle.rs"]
mod lifecycle_cases;

use cases::util::Dir;

/// `mission-bus serve` holds the data dir: the local CLI says where the
/// server listens, and `--server` with that URL then works.
#[test]
fn data_dir_held_by_a_server_names_its_url() {
    let dir = Dir::local();
    let (url, token) = dir.server();
    let err = dir.mb(&["missions"]).fails(1);
    assert!(err.contains("in use"), "{err}");
    assert!(err.contains(&format!("use --server {url}")), "{err}");
    dir.mb(&[
        "--server", &url, "--token", &token, "create", "m1", "--title", "t", "--lead", "l",
    ])
    .json_lines();
    let listed = dir
        .mb(&["missions"])
        .env("MISSION_BUS_URL", &url)
        .env("MISSION_BUS_TOKEN", &token)
        .json();
    assert_eq!(listed["mission_id"], "m1");
    assert_eq!(listed["head_sequence"], 2);
}

/// What only the remote mode can get wrong: no token, a bad token, a
/// participant's token on the operator's commands and on another
/// participant's, no server, and commands that need the files.
#[test]
fn remote_failures_exit_with_the_cli_codes() {
    let dir = Dir::local();
    let (url, token) = dir.server();
    let create = ["create", "m1", "--title", "t", "--lead", "l"];
    let with = |args: &[&str], token: &str| {
        let mut full = vec!["--server", url.as_str(), "--token", token];
        full.extend_from_slice(args);
        dir.mb(&full)
    };
    let err = dir
        .mb(&[&["--server", url.as_str()][..], &create[..]].concat())
        .fails(2);
    assert!(err.contains("MISSION_BUS_TOKEN"), "{err}");
    let err = with(&create, "mb_not-a-token").fails(3);
    assert!(err.contains("token"), "{err}");
    with(&create, &token).json_lines();
    // A participant token is not the operator's.
    let v: serde_json::Value = ureq::post(format!("{url}/v1/missions/m1/participants/l/token"))
        .header("Authorization", format!("Bearer {token}"))
        .send_empty()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let lead_token = v["token"].as_str().unwrap();
    let err = with(&["export", "m1"], lead_token).fails(3);
    assert!(err.contains("admin"), "{err}");
    // A participant token acts as its owner: the owner's writes work,
    // anyone else's are refused as a forged sender would be.
    let publish = |who: &str| {
        [
            "publish",
            "m1",
            "--as",
            who,
            "--topic",
            "t",
            "--payload",
            "1",
        ]
        .map(str::to_string)
    };
    let args = publish("l");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = with(&args, lead_token).json();
    assert_eq!(
        (e["sender"].as_str(), e["sequence"].as_u64()),
        (Some("l"), Some(3))
    );
    with(&["join", "m1", "ada", "--role", "write"], &token).json();
    let args = publish("ada");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = with(&args, lead_token).fails(3);
    assert!(err.contains("token belongs to 'l'"), "{err}");
    let err = with(&["replay", "m1", "--as", "ada"], lead_token).fails(3);
    assert!(err.contains("token belongs to 'l'"), "{err}");
    // The admin's own commands say what they need.
    let err = with(&["expire", "m1"], lead_token).fails(3);
    assert!(err.contains("admin"), "{err}");
    // Commands that need the files say so.
    for cmd in [&["demo"][..], &["serve"][..]] {
        let err = with(cmd, &token).fails(2);
        assert!(err.contains("--server"), "{err}");
    }
    // Nothing listening: exit 1, naming the URL.
    let gone = "http://127.0.0.1:9";
    let err = dir
        .mb(&["--server", gone, "--token", &token, "missions"])
        .fails(1);
    assert!(err.contains(gone), "{err}");
    // Bad URL: usage.
    let err = dir
        .mb(&["--server", "ftp://x", "--token", &token, "missions"])
        .fails(2);
    assert!(err.contains("--server"), "{err}");
}

/// `backup` over HTTP (the admin's `POST /v1/admin/backup`): the copy is
/// written on the server's machine, and verifies and opens as a store of
/// its own while the server keeps running; a relative target is a usage
/// error, a participant token is refused, and neither writes anything.
#[test]
fn remote_backup_verifies_and_opens() {
    let dir = Dir::local();
    let (url, admin) = dir.server();
    let with = |token: &str, args: &[&str]| {
        let mut full = vec!["--server", url.as_str(), "--token", token];
        full.extend_from_slice(args);
        dir.mb(&full)
    };
    with(&admin, &["create", "m1", "--title", "t", "--lead", "lena"]).json_lines();
    with(&admin, &["join", "m1", "ada", "--role", "write"]).json();
    let cp = with(
        &admin,
        &[
            "checkpoint",
            "m1",
            "--as",
            "ada",
            "--summary",
            "s",
            "--state",
            "{}",
        ],
    )
    .json();
    let cp_id = cp["checkpoint_id"].as_str().unwrap();
    with(
        &admin,
        &[
            "handoff",
            "m1",
            "--as",
            "ada",
            "--to",
            "lena",
            "--checkpoint",
            cp_id,
        ],
    )
    .json();

    let copy = dir.path().join("copy");
    let copy_arg = copy.to_str().unwrap();
    let report = with(&admin, &["backup", "--to", copy_arg]).json();
    assert_eq!(report["missions"], 1, "{report}");
    assert_eq!(report["events"], 5, "{report}");

    // The copy is a store of its own: verify, list, resume, write.
    let on_copy = |args: &[&str]| {
        let mut full = vec!["--data", copy_arg];
        full.extend_from_slice(args);
        dir.mb(&full)
    };
    let verified = on_copy(&["verify"]).json();
    assert_eq!(verified["intact"], true, "{verified}");
    assert_eq!(verified["head_sequence"], 5);
    let listed = on_copy(&["missions"]).json();
    assert_eq!(
        (
            listed["mission_id"].as_str(),
            listed["head_sequence"].as_u64()
        ),
        (Some("m1"), Some(5))
    );
    let packet = on_copy(&["resume", "m1", "--for", "lena"]).json();
    assert_eq!(packet["checkpoint"]["checkpoint_id"], cp_id);
    on_copy(&[
        "publish",
        "m1",
        "--as",
        "ada",
        "--topic",
        "t",
        "--payload",
        "1",
    ])
    .json();
    // The original is untouched by writes to the copy.
    let live = with(&admin, &["missions"]).json();
    assert_eq!(live["head_sequence"], 5);

    let err = with(&admin, &["backup", "--to", "relative/dir"]).fails(2);
    assert!(err.contains("absolute"), "{err}");
    assert!(!dir.path().join("relative").exists());
    let lead = with(&admin, &["token", "m1", "lena"]).json();
    let other = dir.path().join("copy2");
    let err = with(
        lead["token"].as_str().unwrap(),
        &["backup", "--to", other.to_str().unwrap()],
    )
    .fails(3);
    assert!(err.contains("admin"), "{err}");
    assert!(!other.exists());
}

/// The commands that name no participant, run with a participant's own
/// token: they act as that participant (what its role allows), and the
/// operator's commands name the admin token.
#[test]
fn participant_tokens_on_commands_without_as() {
    let dir = Dir::local();
    let (url, admin) = dir.server();
    let with = |token: &str, args: &[&str]| {
        let mut full = vec!["--server", url.as_str(), "--token", token];
        full.extend_from_slice(args);
        dir.mb(&full)
    };
    with(&admin, &["create", "m1", "--title", "t", "--lead", "lena"]).json_lines();
    with(
        &admin,
        &["create", "m2", "--title", "other", "--lead", "lena"],
    )
    .json_lines();
    let lena = with(&admin, &["token", "m1", "lena"]).json();
    let lena = lena["token"].as_str().unwrap().to_string();

    // A lead adds participants: the event, and the new token once.
    let joined = with(&lena, &["join", "m1", "audra", "--role", "audit"]).json();
    assert_eq!(
        (
            joined["event_type"].as_str(),
            joined["participant"].as_str(),
            joined["sender"].as_str()
        ),
        (Some("participant_joined"), Some("audra"), Some("lena"))
    );
    let audra = joined["token"].as_str().unwrap().to_string();
    let ada = with(&lena, &["join", "m1", "ada", "--role", "write"]).json();
    let ada = ada["token"].as_str().unwrap().to_string();

    // An auditor verifies its own mission, by name or as "all".
    let report = with(&audra, &["verify", "m1"]).json();
    assert_eq!(report["intact"], true);
    let all = with(&audra, &["verify"]).json_lines();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["mission_id"], "m1");
    let err = with(&audra, &["verify", "m2"]).fails(3);
    assert!(err.contains("not valid for mission 'm2'"), "{err}");
    let err = with(&ada, &["verify", "m1"]).fails(3);
    assert!(err.contains("permission"), "{err}");
    let listed = with(&audra, &["missions"]).json_lines();
    assert_eq!(listed.len(), 1, "only its own mission: {listed:?}");

    // Listings through the ordinary endpoints.
    let cp = with(
        &ada,
        &[
            "checkpoint",
            "m1",
            "--as",
            "ada",
            "--summary",
            "s",
            "--state",
            "{}",
        ],
    )
    .json();
    let cp_id = cp["checkpoint_id"].as_str().unwrap();
    let h = with(
        &ada,
        &[
            "handoff",
            "m1",
            "--as",
            "ada",
            "--to",
            "audra",
            "--checkpoint",
            cp_id,
        ],
    )
    .json();
    let latest = with(&audra, &["checkpoints", "m1", "--latest"]).json();
    assert_eq!(latest["checkpoint_id"], cp_id);
    let mine = with(&audra, &["handoffs", "m1"]).json_lines();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["handoff_id"], h["handoff_id"]);
    assert!(
        with(&ada, &["handoffs", "m1"]).json_lines().is_empty(),
        "ada's own: none"
    );
    with(
        &audra,
        &["ack", "m1", "--as", "audra", "--consumer", "c", "2"],
    )
    .json();
    let consumers = with(&audra, &["consumers", "m1"]).json_lines();
    assert_eq!(consumers.len(), 1);
    assert_eq!(consumers[0]["position"], 2);

    // Membership as the lead, without --as.
    let v = with(&lena, &["role", "m1", "ada", "--role", "read"]).json();
    assert_eq!(
        (v["event_type"].as_str(), v["sender"].as_str()),
        (Some("role_changed"), Some("lena"))
    );
    let err = with(&lena, &["remove", "m1", "ada", "--as", "audra"]).fails(3);
    assert!(err.contains("token belongs to 'lena'"), "{err}");

    // A participant rotates its own token: the old one stops working.
    let rotated = with(&ada, &["token", "m1", "ada", "--rotate"]).json();
    assert_eq!(rotated["name"], "ada");
    let new_ada = rotated["token"].as_str().unwrap();
    with(&ada, &["handoffs", "m1"]).fails(3);
    with(new_ada, &["handoffs", "m1"]).json_lines();
    // Without --rotate a participant that is not a lead cannot issue one.
    let err = with(new_ada, &["token", "m1", "ada"]).fails(3);
    assert!(err.contains("lead"), "{err}");
    let v = with(&lena, &["remove", "m1", "ada"]).json();
    assert_eq!(v["event_type"], "participant_removed");

    // The operator's own commands.
    for args in [
        &["export", "m1"][..],
        &["create", "m3", "--title", "t", "--lead", "x"][..],
        &["expire", "m1"][..],
    ] {
        let err = with(&lena, args).fails(3);
        assert!(err.contains("admin"), "{args:?}: {err}");
    }
}
