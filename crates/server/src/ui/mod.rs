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
use axum::http::{HeaderValue, header};
use axum::response::Response;

use crate::core::Core;

/// Every page of the dashboard, its sign-in and its assets, none of which another site may
/// frame (a click on a framed button would be the user's) or a cache keep (assets excepted).
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
        .layer(axum::middleware::map_response(not_framed_nor_kept))
}

/// Forbids framing every answer and caching every answer that does not say otherwise.
async fn not_framed_nor_kept(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
