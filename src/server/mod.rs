//! The HTTP/JSON bus server (`mission-bus serve`).
//!
//! CONTRACT (being built in parallel): `ServeOptions` and `serve_blocking`
//! keep these signatures; the CLI's `serve` command calls them.

use std::net::SocketAddr;
use std::path::PathBuf;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Data directory (held exclusively while serving).
    pub data: PathBuf,
    /// Address to listen on (default `127.0.0.1:7411`).
    pub listen: SocketAddr,
    /// Where the admin token is read from / written to (default `DATA/admin.token`).
    pub admin_token_file: Option<PathBuf>,
}

/// Run the server until SIGINT/SIGTERM; returns after a graceful shutdown.
pub fn serve_blocking(opts: ServeOptions) -> crate::Result<()> {
    let _ = opts;
    Err(crate::Error::Closed)
}
