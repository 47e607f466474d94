//! Progress on stderr for long operations, only when a person is watching.
//!
//! A bar appears when stderr is a terminal and the job is large; otherwise
//! nothing is drawn, so pipes and scripts see only the machine-readable output.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Jobs with fewer events than this finish too fast for a bar to help.
const LARGE: u64 = 5_000;

/// A progress bar that may be invisible. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar for `total` events of `what` ("replay", "export", "import").
    pub(crate) fn new(what: &str, total: u64) -> Self {
        if total < LARGE || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template(
            "{prefix:>7} [{bar:40}] {human_pos}/{human_len} events ({elapsed} elapsed, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(what.to_string());
        Progress(Some(bar))
    }

    /// Count one more event done.
    pub(crate) fn inc(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }

    /// Set the number of events done.
    pub(crate) fn set(&self, done: u64) {
        if let Some(b) = &self.0 {
            b.set_position(done);
        }
    }

    /// Remove the bar (it must not linger above the command's own output).
    pub(crate) fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
