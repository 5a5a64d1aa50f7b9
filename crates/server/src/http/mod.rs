//! The REST API, an edge of the core: one module per resource, each exposing `router()`, merged
//! here. A handler reads the request (path, query, body, credentials), calls the core and turns
//! its answer or its [`crate::core::CoreError`] into a response; what Wharf does lives in the core.

mod agent_api;
mod agents;
mod auth;
mod builds;
mod error;
mod github_setup;
mod health;
mod limits;
pub(crate) mod logs;
mod notifications;
mod openapi;
mod previews;
mod releases;
mod services;
mod users;
mod webhooks;

use axum::Router;
use axum::middleware::from_fn_with_state;

use crate::core::Core;

pub(crate) use error::HttpError;

/// Every route, under the limits of [`limits`]: the time bound inside (it sees which route
/// matched), the count of failed authentications outside (it sees every answer).
pub(crate) fn router(core: Core) -> Router {
    let limits = limits::Limits::new(&core.config.limits);
    Router::new()
        .merge(webhooks::router())
        .merge(github_setup::router())
        .merge(services::router())
        .merge(builds::router())
        .merge(agents::router())
        .merge(agent_api::router())
        .merge(releases::router())
        .merge(notifications::router())
        .merge(previews::router())
        .merge(users::router())
        .merge(health::router())
        .merge(openapi::router())
        .merge(crate::ui::router())
        .fallback(|| async { HttpError::NotFound("no such endpoint".to_owned()) })
        .layer(from_fn_with_state(limits.clone(), limits::bound_each_route))
        .layer(from_fn_with_state(limits, limits::refuse_repeated_failures))
        .with_state(core)
}
