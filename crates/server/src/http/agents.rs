//! `/v1/agents`: issuing agent tokens and listing agents (admin).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use wharf_domain::names::DnsLabel;
use wharf_wire::{Agent, AgentCredentials, CreateAgent, RegistryLoginSet, SetRegistryLogin};

use crate::core::{Core, now_millis};
use crate::http::HttpError;
use crate::http::auth::Admin;
use crate::http::error::JsonBody;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/v1/agents", post(create).get(list))
        .route(
            "/v1/installations/{id}/registry-login",
            post(set_registry_login).delete(remove_registry_login),
        )
}

async fn set_registry_login(
    _: Admin,
    State(state): State<Core>,
    Path(installation_id): Path<i64>,
    JsonBody(request): JsonBody<SetRegistryLogin>,
) -> Result<Json<RegistryLoginSet>, HttpError> {
    if request.username.is_empty()
        || request.username.len() > 255
        || request.username.contains(':')
        || request.password.expose().is_empty()
        || request.password.expose().len() > 4096
    {
        return Err(HttpError::BadRequest(
            "give a username (without ':') and a password".to_owned(),
        ));
    }
    let sealed = state.config.sealing_key.seal(
        &crate::http::agent_api::registry_login_context(installation_id),
        request.password.expose(),
    )?;
    state
        .store
        .set_registry_credentials(installation_id, &request.username, &sealed, now_millis())
        .await?;
    tracing::info!(installation = installation_id, username = %request.username, "registry login set");
    Ok(Json(RegistryLoginSet {
        installation_id,
        username: request.username,
    }))
}

async fn remove_registry_login(
    _: Admin,
    State(state): State<Core>,
    Path(installation_id): Path<i64>,
) -> Result<StatusCode, HttpError> {
    state
        .store
        .remove_registry_credentials(installation_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create(
    _: Admin,
    State(state): State<Core>,
    JsonBody(request): JsonBody<CreateAgent>,
) -> Result<(StatusCode, Json<AgentCredentials>), HttpError> {
    let name = DnsLabel::parse("agent name", &request.name)?;
    let token = crate::core::agents::new_agent_token();
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

async fn list(_: Admin, State(state): State<Core>) -> Result<Json<Vec<Agent>>, HttpError> {
    Ok(Json(state.store.list_agents().await?))
}
