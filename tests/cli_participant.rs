//! The CLI as a client of a running server with participants' own tokens:
//! every case of tests/cli.rs and tests/cli_lifecycle.rs, run again with
//! `--server URL` where each command that names a participant (`--as
//! NAME`, `resume --for NAME`) carries NAME's token, and the others the
//! admin token. So the ordinary (non-admin) endpoints are held to the
//! local mode's outputs and exit codes (tests/util `participant_mode`).

#[path = "cli.rs"]
mod cases;

// Each case file is also its own test binary, so each declares the
// harness module itself; here both are compiled into one binary.
#[allow(clippy::duplicate_mod)]
#[path = "cli_lifecycle.rs"]
mod lifecycle_cases;
