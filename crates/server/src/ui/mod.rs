//! The dashboard, an edge beside the REST API (`http/`): server-rendered pages, htmx for their
//! buttons (which call the REST API with the session's cookie and CSRF token) and server-sent
//! events for their live parts. It calls the same core as the API and holds no state of its own:
//! sessions live in the store, so any server replica serves any page.

mod agents;
mod ansi;
mod assets;
mod builds;
mod github;
mod live;
mod log_view;
mod overview;
mod page;
pub(crate) use page::PageError;
mod releases;
mod services;
pub(crate) mod session;
mod sign_in;

use axum::Router;

use crate::core::Core;

/// Every page of the dashboard, its sign-in and its assets.
pub(crate) fn router() -> Router<Core> {
    Router::new()
        .merge(sign_in::router())
        .merge(assets::router())
        .merge(overview::router())
        .merge(builds::router())
        .merge(releases::router())
        .merge(services::router())
        .merge(agents::router())
        .merge(github::router())
}
