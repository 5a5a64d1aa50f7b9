//! Printing a log (a build's, a release's) page by page, and following it to its end.

use std::time::Duration;

use wharf_wire::LogLine;

use super::render::{self, emit};

/// How long the server may hold a follower's request open.
pub(super) const FOLLOW_WAIT_MS: u64 = 25_000;
/// How long one page may take, the server's wait included.
pub(super) const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// One page of a log as the server answered it.
pub(super) struct Page {
    pub lines: Vec<LogLine>,
    /// Nothing more will be written to the log.
    pub complete: bool,
    /// Why the work the log tells of did not succeed, when it ended so.
    pub failure: Option<String>,
}

/// Prints a log page by page, from its first line: `fetch(after, wait_ms)` reads the page after
/// line `after`, the server waiting up to `wait_ms` for new lines. Following reads until the
/// log is complete, and fails with the page's `failure` when the work ended badly.
pub(super) async fn print(
    follow: bool,
    mut fetch: impl AsyncFnMut(i64, u64) -> anyhow::Result<Page>,
) -> anyhow::Result<()> {
    let mut after = 0;
    loop {
        let page = fetch(after, if follow { FOLLOW_WAIT_MS } else { 0 }).await?;
        after = page.lines.last().map_or(after, |line| line.seq);
        emit(&render::log_lines(&page.lines))?;
        if page.lines.is_empty() && (!follow || page.complete) {
            if follow && let Some(failure) = page.failure {
                anyhow::bail!(failure);
            }
            return Ok(());
        }
    }
}
