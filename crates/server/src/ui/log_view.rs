//! A log on a page, build or release alike: the lines stored so far, rendered with their ANSI
//! colours, then followed live. The stream sends each new line as a `line` event (its id the
//! line's number, so a reconnect resumes after the last line seen, by `Last-Event-ID`), the page's
//! summary as a `summary` event whenever it changes, and a final `done` once the log is
//! complete, which closes the stream instead of letting the browser reconnect.

use std::convert::Infallible;
use std::future::Future;

use axum::response::sse::{Event, Sse};
use futures_util::Stream;
use maud::{Markup, html};
use wharf_wire::LogLine;

use crate::core::{Core, CoreError};
use crate::http::logs::LogPage;
use crate::ui::ansi;
use crate::ui::live::{Look, Wake, live};
use crate::ui::page::trusted;

/// The most lines a page shows before its stream takes over (a log is cut at its size limit
/// long before this).
const MOST_LINES_ON_A_PAGE: usize = 100_000;

/// Every line stored so far, page by page, and whether the log is complete.
pub(crate) async fn lines_so_far<Page, Next>(
    page: impl Fn(i64) -> Next,
) -> Result<(Vec<LogLine>, bool), CoreError>
where
    Page: LogPage,
    Next: Future<Output = Result<Page, CoreError>>,
{
    let mut lines: Vec<LogLine> = Vec::new();
    loop {
        let after = lines.last().map_or(0, |line| line.seq);
        let found = page(after).await?;
        let complete = found.complete();
        if found.lines().is_empty() || complete || lines.len() >= MOST_LINES_ON_A_PAGE {
            lines.extend_from_slice(found.lines());
            return Ok((lines, complete));
        }
        lines.extend_from_slice(found.lines());
    }
}

/// The log section of a page: `summary` above the lines, both live through `stream` (the events
/// URL, without a query) unless the log is complete.
pub(crate) fn section(summary: Markup, lines: &[LogLine], complete: bool, stream: &str) -> Markup {
    let after = lines.last().map_or(0, |line| line.seq);
    html! {
        @if complete {
            div.live {
                section #summary { (summary) }
                pre #log .log {
                    @for line in lines { (line_html(line)) }
                    @if lines.is_empty() { span.quiet { "Nothing was written to this log." } }
                }
            }
        } @else {
            div.live hx-ext="sse" sse-connect={ (stream) "?after=" (after) } sse-close="done" {
                section #summary sse-swap="summary" { (summary) }
                pre #log .log sse-swap="line" hx-swap="beforeend" { @for line in lines { (line_html(line)) } }
            }
        }
    }
}

/// One line: its number, the host that wrote it (deploy logs), its text with colours.
pub(crate) fn line_html(line: &LogLine) -> Markup {
    html! {
        span class={ "line " (line.stream.as_str()) } id={ "l" (line.seq) } {
            span.n { (line.seq) }
            @if let Some(host) = &line.host { span.host { (host) } }
            (trusted(ansi::to_html(&line.text)))
            "\n"
        }
    }
}

/// The live stream of a log from line `resume` on. Each look is one call of `look(core, after,
/// kept)`, which reads the page of lines after `after` and renders the summary, with `kept`:
/// what the previous look handed on (`start` the first time), so that what the lines already
/// tell need not be read again.
pub(crate) fn stream<Page, Kept, Looks, Next>(
    core: Core,
    session: String,
    resume: i64,
    start: Kept,
    look: Looks,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    Page: LogPage + Send + 'static,
    Kept: Send + 'static,
    Looks: Fn(Core, i64, Kept) -> Next + Clone + Send + Sync + 'static,
    Next: Future<Output = Result<(Page, Markup, Kept), CoreError>> + Send + 'static,
{
    live(
        core,
        session,
        Wake::Changes,
        (resume, String::new(), start),
        move |core, (after, sent, kept): (i64, String, Kept)| {
            let look = look.clone();
            async move {
                let (found, summary, kept) = look(core, after, kept).await?;
                let html = summary.into_string();
                let mut events = Vec::new();
                let mut last = after;
                for line in found.lines() {
                    last = line.seq;
                    events.push(
                        Event::default()
                            .event("line")
                            .id(line.seq.to_string())
                            .data(line_html(line).into_string()),
                    );
                }
                if html != sent {
                    events.push(Event::default().event("summary").data(&html));
                }
                if found.complete() {
                    // Browsers drop events with no data: `done` says something.
                    events.push(
                        Event::default()
                            .event("done")
                            .data(found.done().to_string()),
                    );
                    return Ok(Look { events, next: None });
                }
                Ok(Look {
                    events,
                    next: Some((last, html, kept)),
                })
            }
        },
    )
}
