//! `mission-bus mcp`: placeholder.
use std::path::Path;

use super::{CliResult, Failure};

pub(crate) fn run(_server: Option<&str>, _token: Option<&str>, _data: &Path) -> CliResult {
    Err(Failure::other("mcp is not built yet"))
}
