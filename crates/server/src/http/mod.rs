//! The HTTP edge: one module per resource, each exposing `router()`, merged here.

pub(crate) mod agent_api;
mod agents;
mod auth;
mod builds;
mod error;
mod github_setup;
mod health;
mod releases;
pub(crate) mod services;
mod webhooks;

use axum::Router;

use crate::core::Core;

pub(crate) use error::HttpError;

pub(crate) fn router(state: Core) -> Router {
    Router::new()
        .merge(webhooks::router())
        .merge(github_setup::router())
        .merge(services::router())
        .merge(builds::router())
        .merge(agents::router())
        .merge(agent_api::router())
        .merge(releases::router())
        .merge(health::router())
        .fallback(|| async { HttpError::NotFound("no such endpoint".to_owned()) })
        .with_state(state)
}
