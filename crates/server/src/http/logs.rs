//! What build logs and release deploy logs share over HTTP: the page query, and the
//! server-sent event stream that follows a log from a line on (`Last-Event-ID` resumes) until
//! it is complete.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_wire::{BuildLogs, LogLine, ReleaseLogs};

use crate::core::CoreError;

/// The longest a log request is held open waiting for lines.
pub(crate) const MAX_LOG_WAIT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
pub(crate) struct LogsQuery {
    #[serde(default)]
    pub after: i64,
    /// Hold the request up to this long (capped at 30 s) while no new line has come and the
    /// log's build or release is still at work, so followers need no polling interval.
    #[serde(default)]
    pub wait_ms: u64,
}

impl LogsQuery {
    pub fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms).min(MAX_LOG_WAIT)
    }
}

/// A page of a log, whichever it is.
pub(crate) trait LogPage {
    fn lines(&self) -> &[LogLine];
    /// Whether every line is in this page or before it, and none can come.
    fn complete(&self) -> bool;
    /// What the final `done` event says: the final state, and whether the log was cut.
    fn done(&self) -> Value;
}

/// The pages of build logs and of release deploy logs differ only in the type of their state.
macro_rules! log_page {
    ($($page:ty),*) => {$(
        impl LogPage for $page {
            fn lines(&self) -> &[LogLine] {
                &self.lines
            }
            fn complete(&self) -> bool {
                self.complete
            }
            fn done(&self) -> Value {
                json!({"state": self.state, "truncated": self.truncated})
            }
        }
    )*};
}

log_page!(BuildLogs, ReleaseLogs);

/// The line a stream starts after: `Last-Event-ID` when a reconnect sends it, else `after`.
pub(crate) fn resume_after(headers: &HeaderMap, query: &LogsQuery) -> i64 {
    headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i64>().ok())
        .unwrap_or(query.after)
}

/// Server-sent events of a log from line `resume` on: `line` events (id = the line's number,
/// data = the line as JSON) and a final `done` event. `follow(after)` gives the next page after
/// line `after`, waiting for lines.
pub(crate) fn log_events<Page, Next>(
    resume: i64,
    follow: impl Fn(i64) -> Next + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    Page: LogPage + Send + 'static,
    Next: Future<Output = Result<Page, CoreError>> + Send + 'static,
{
    let stream = futures_util::stream::unfold(Some(resume), move |after| {
        let next = after.map(&follow);
        async move {
            let mut after = after?;
            let page = next?.await.ok()?;
            if !page.lines().is_empty() {
                let events = page
                    .lines()
                    .iter()
                    .map(|line| {
                        after = line.seq;
                        Event::default()
                            .event("line")
                            .id(line.seq.to_string())
                            .data(serde_json::to_string(line).unwrap_or_default())
                    })
                    .collect();
                return Some((events, Some(after)));
            }
            if page.complete() {
                let done = Event::default().event("done").data(page.done().to_string());
                return Some((vec![done], None));
            }
            Some((Vec::new(), Some(after)))
        }
    })
    .flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok)));
    Sse::new(stream).keep_alive(KeepAlive::default())
}
