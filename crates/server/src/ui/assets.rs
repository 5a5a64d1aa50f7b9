//! The dashboard's assets, compiled into the binary: htmx and its server-sent events extension
//! (vendored, Zero-Clause BSD), the style sheet and a small script of Wharf's own. Their names
//! carry their versions, so browsers may keep them for a year.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::core::Core;

/// `(path, content type, body)` of every asset.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        HTMX,
        "text/javascript; charset=utf-8",
        include_str!("../../assets/htmx-2.0.11.min.js"),
    ),
    (
        HTMX_SSE,
        "text/javascript; charset=utf-8",
        include_str!("../../assets/htmx-ext-sse-2.2.4.min.js"),
    ),
    (
        SCRIPT,
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard.js"),
    ),
    (
        STYLE,
        "text/css; charset=utf-8",
        include_str!("../../assets/dashboard.css"),
    ),
];

pub(crate) const HTMX: &str = "/assets/htmx-2.0.11.min.js";
pub(crate) const HTMX_SSE: &str = "/assets/htmx-ext-sse-2.2.4.min.js";
pub(crate) const SCRIPT: &str = concat!("/assets/dashboard-", env!("CARGO_PKG_VERSION"), ".js");
pub(crate) const STYLE: &str = concat!("/assets/dashboard-", env!("CARGO_PKG_VERSION"), ".css");

pub(crate) fn router() -> Router<Core> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(
                path,
                get(move || async move {
                    (
                        [
                            (header::CONTENT_TYPE, content_type),
                            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                        ],
                        body,
                    )
                        .into_response()
                }),
            )
        })
}
