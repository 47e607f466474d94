//! The `mission-bus` command: parse arguments, run one command against the
//! data directory, map failures to exit codes.
//!
//! Contract with scripts:
//! - every write prints the stored event as one JSON object on stdout;
//! - failures print ONE line `error: ...` on stderr and exit with
//!   0 ok, 2 usage, 3 permission denied, 4 not found, 5 conflict,
//!   6 integrity, 1 anything else (I/O, data dir held by another process);
//! - commands that fail before producing output write nothing to stdout.
//!   `replay` and `export --format jsonl` stream, so a damaged record met
//!   mid-stream ends the output there (exit 6, the error names the sequence).

mod args;
mod backend;
mod cell;
mod cell_run;
mod commands;
mod demo;
mod lifecycle;
mod mcp;
mod progress;
mod remote;

use std::ffi::OsString;
use std::io::{self, Write};

use clap::Parser;
use mission_bus::{Error, ErrorKind};

use args::Cli;

/// Exit code: success.
pub(crate) const EXIT_OK: i32 = 0;
/// Exit code: anything not covered below (I/O, storage, data dir in use).
pub(crate) const EXIT_OTHER: i32 = 1;
/// Exit code: bad arguments or input.
pub(crate) const EXIT_USAGE: i32 = 2;
/// Exit code: the participant may not do that.
pub(crate) const EXIT_DENIED: i32 = 3;
/// Exit code: no such mission, participant, checkpoint or handoff.
pub(crate) const EXIT_NOT_FOUND: i32 = 4;
/// Exit code: mission exists, sequence or event-id conflict.
pub(crate) const EXIT_CONFLICT: i32 = 5;
/// Exit code: damaged or tampered data, or a failed `verify`.
pub(crate) const EXIT_INTEGRITY: i32 = 6;

/// Why a command failed: the exit code and the one line to print.
#[derive(Debug)]
pub(crate) struct Failure {
    code: i32,
    message: String,
    /// The reader went away (`mission-bus replay ... | head`): stop quietly.
    broken_pipe: bool,
}

impl Failure {
    pub(crate) fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            broken_pipe: false,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(EXIT_USAGE, message)
    }

    pub(crate) fn other(message: impl Into<String>) -> Self {
        Self::new(EXIT_OTHER, message)
    }

    /// The exit code.
    pub(crate) fn code(&self) -> i32 {
        self.code
    }

    /// The message, without the `error: ` prefix.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match e.kind() {
            ErrorKind::InvalidInput => EXIT_USAGE,
            ErrorKind::PermissionDenied => EXIT_DENIED,
            ErrorKind::NotFound => EXIT_NOT_FOUND,
            ErrorKind::Conflict => EXIT_CONFLICT,
            ErrorKind::Integrity => EXIT_INTEGRITY,
            _ => EXIT_OTHER,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        let mut f = Failure::other(format!("writing output: {e}"));
        f.broken_pipe = e.kind() == io::ErrorKind::BrokenPipe;
        f
    }
}

pub(crate) type CliResult<T = ()> = std::result::Result<T, Failure>;

/// The store `--store` / `MISSION_BUS_STORE` names when it is not a sled
/// directory (those become `--data`): set for the current command.
static STORE_OVERRIDE: std::sync::Mutex<Option<mission_bus::StoreUrl>> =
    std::sync::Mutex::new(None);

fn set_store_override(url: Option<mission_bus::StoreUrl>) {
    *STORE_OVERRIDE.lock().unwrap_or_else(|p| p.into_inner()) = url;
}

/// The PostgreSQL (or other non-directory) store of this command, if any.
pub(crate) fn store_override() -> Option<mission_bus::StoreUrl> {
    STORE_OVERRIDE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Run the command line `args` (program name first) and return the exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_failure(e),
    };
    set_store_override(None);
    if let Some(store) = cli.store.take() {
        match mission_bus::StoreUrl::parse(&store) {
            Ok(mission_bus::StoreUrl::Sled(path)) => cli.data = path,
            Ok(url) => set_store_override(Some(url)),
            Err(e) => {
                let f = Failure::from(e);
                let _ = writeln!(io::stderr().lock(), "error: {}", one_line(&f.message));
                return f.code;
            }
        }
    }
    if matches!(cli.command, args::Command::Mcp) {
        // MCP owns stdout (the protocol's channel): no lock held here.
        return match mcp::run(cli.server.as_deref(), cli.token.as_deref(), &cli.data) {
            Ok(()) => EXIT_OK,
            Err(f) => {
                let _ = writeln!(io::stderr().lock(), "error: {}", one_line(&f.message));
                f.code
            }
        };
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = commands::run(cli, &mut out).and_then(|()| out.flush().map_err(Failure::from));
    match result {
        Ok(()) => EXIT_OK,
        Err(f) if f.broken_pipe => EXIT_OK,
        Err(f) => {
            // The buffer may hold a partial answer; the contract is "nothing
            // written on error" for everything that has not streamed yet.
            drop(out.into_parts());
            let mut err = io::stderr().lock();
            let _ = writeln!(err, "error: {}", one_line(&f.message));
            f.code
        }
    }
}

/// clap's help and version go to stdout with exit 0; its usage errors are
/// folded into one `error: ...` line on stderr with exit 2.
fn clap_failure(e: clap::Error) -> i32 {
    use clap::error::ErrorKind as K;
    match e.kind() {
        K::DisplayHelp | K::DisplayVersion => {
            let _ = e.print();
            EXIT_OK
        }
        _ => {
            let text = e.render().to_string();
            let body: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                .collect();
            let line = body.join(" ");
            let line = line.strip_prefix("error: ").unwrap_or(&line);
            let _ = writeln!(
                io::stderr().lock(),
                "error: {line} (see 'mission-bus --help')"
            );
            EXIT_USAGE
        }
    }
}

/// Messages may quote user input; keep the error to one line regardless.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}
