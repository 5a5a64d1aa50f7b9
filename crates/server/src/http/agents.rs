//! `/v1/agents`: issuing agent tokens and listing agents (admin).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use rand::distr::{Alphanumeric, SampleString};
use wharf_domain::names::DnsLabel;
use wharf_wire::{Agent, AgentCredentials, CreateAgent};

use crate::http::HttpError;
use crate::http::auth::Admin;
use crate::http::error::JsonBody;
use crate::{AppState, now_millis};

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/v1/agents", post(create).get(list))
}

/// A new agent token: a recognisable prefix and 40 random alphanumerics (about 238 bits).
pub(crate) fn new_agent_token() -> String {
    format!(
        "wharf_agent_{}",
        Alphanumeric.sample_string(&mut rand::rng(), 40)
    )
}

async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateAgent>,
) -> Result<(StatusCode, Json<AgentCredentials>), HttpError> {
    let name = DnsLabel::parse("agent name", &request.name)?;
    let token = new_agent_token();
    let agent = state
        .store
        .create_agent(
            name.as_str(),
            &wharf_store::hash_token(&token),
            now_millis(),
        )
        .await?;
    tracing::info!(agent = %agent.name, "agent token issued");
    Ok((StatusCode::CREATED, Json(AgentCredentials { agent, token })))
}

async fn list(_: Admin, State(state): State<AppState>) -> Result<Json<Vec<Agent>>, HttpError> {
    Ok(Json(state.store.list_agents().await?))
}
