//! Structured logs for `mission-bus serve`, with `tracing`.

use crate::error::{Error, Result};

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Install the process's log subscriber: `level` is a `tracing` filter
/// (`info`, `warn`, `mission_bus=debug,info`, ...), `format` text or JSON.
/// Each request is one INFO event with its request id, method, route,
/// mission, status and latency; tokens are never logged. Fails if the
/// filter does not parse; a second call in one process is a no-op.
pub fn init_logging(level: &str, format: LogFormat) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| Error::invalid("log level", format!("'{level}': {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}
