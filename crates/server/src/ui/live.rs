//! The dashboard's live parts as server-sent events: a look at the store whenever something a
//! page shows may have changed (the core's change signal) and at least every
//! [`LOOK_AGAIN`], sending only what is new.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::{Stream, StreamExt};
use maud::{Markup, html};

use crate::core::{Core, CoreError};
use crate::ui::page::{PageError, frame};
use crate::ui::session::SignedIn;

/// How often a live part looks again without a wake-up: changes another server replica made,
/// agents going quiet, ages growing.
const LOOK_AGAIN: Duration = Duration::from_secs(2);

/// What one look found: the events to send, and what the next look starts from (`None` ends
/// the stream).
pub(crate) struct Look<S> {
    pub events: Vec<Event>,
    pub next: Option<S>,
}

/// What wakes a live part to look again (besides [`LOOK_AGAIN`]).
pub(crate) enum Wake {
    /// Any log line or state: for logs.
    Changes,
    /// A build's or a release's state, not its log: for whole pages, which log lines do not
    /// change.
    StateChanges,
}

/// Events from repeated looks for the session whose cookie holds `session`, starting from
/// `start`. A look that found nothing to send is followed by a wait for a change (`wake`); one
/// that sent something by another look at once. The stream ends when the session does (signed
/// out, its user removed, expired): each look checks it first.
pub(crate) fn live<S, F, Fut>(
    core: Core,
    session: String,
    wake: Wake,
    start: S,
    look: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    S: Send + 'static,
    F: Fn(Core, S) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Look<S>, CoreError>> + Send + 'static,
{
    let wake_ups = match wake {
        Wake::Changes => core.changes(),
        Wake::StateChanges => core.state_changes(),
    };
    let stream = futures_util::stream::unfold(Some((start, wake_ups, false)), move |cursor| {
        let (core, look, session) = (core.clone(), look.clone(), session.clone());
        async move {
            let (state, mut wake_ups, wait) = cursor?;
            if wait {
                let _ = tokio::time::timeout(LOOK_AGAIN, wake_ups.changed()).await;
            }
            // Marked seen before looking: a change from here on ends the next wait at once.
            wake_ups.borrow_and_update();
            if !matches!(core.session(&session).await, Ok(Some(_))) {
                return None;
            }
            match look(core, state).await {
                Ok(found) => {
                    let wait = found.events.is_empty();
                    let next = found.next.map(|state| (state, wake_ups, wait));
                    Some((found.events, next))
                }
                Err(error) => {
                    tracing::warn!(%error, "a live dashboard stream ended");
                    None
                }
            }
        }
    })
    .flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok)));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A part of a page rendered again at every look and sent as a `fragment` event whenever it
/// differs from what was sent last, for the session whose cookie holds `session`.
pub(crate) fn live_fragment<F, Fut>(
    core: Core,
    session: String,
    render: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: Fn(Core) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Markup, CoreError>> + Send + 'static,
{
    live(
        core,
        session,
        Wake::StateChanges,
        String::new(),
        move |core, sent: String| {
            let render = render.clone();
            async move {
                let html = render(core).await?.into_string();
                let events = if html == sent {
                    Vec::new()
                } else {
                    vec![Event::default().event("fragment").data(&html)]
                };
                Ok(Look {
                    events,
                    next: Some(html),
                })
            }
        },
    )
}

/// A part of a page kept live by the `fragment` events of `stream`.
pub(crate) fn live_part(stream: &str, body: Markup) -> Markup {
    html! { div hx-ext="sse" sse-connect=(stream) sse-swap="fragment" { (body) } }
}

/// A page that is one live part: `path` shows what `render` makes, titled `title`, and
/// `stream` sends it again whenever it changes.
pub(crate) fn live_page<F, Fut>(
    path: &'static str,
    stream: &'static str,
    title: &'static str,
    render: F,
) -> Router<Core>
where
    F: Fn(Core) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Markup, CoreError>> + Send + 'static,
{
    let shown = render.clone();
    Router::new()
        .route(
            path,
            get(
                move |SignedIn(session): SignedIn, State(core): State<Core>| async move {
                    let body = shown(core).await?;
                    Ok::<_, PageError>(frame(title, Some(&session), live_part(stream, body)))
                },
            ),
        )
        .route(
            stream,
            get(
                move |SignedIn(session): SignedIn, State(core): State<Core>| async move {
                    live_fragment(core, session.id, render)
                },
            ),
        )
}
