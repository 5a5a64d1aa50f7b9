//! `/v1/agents`: issuing agent tokens, listing agents and revoking a token, and the registry
//! login of an installation's builds (admin).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use wharf_wire::{
    Agent, AgentCredentials, CreateAgent, RegistryLoginSet, RevokedAgent, SetRegistryLogin,
};

use crate::core::Core;
use crate::http::HttpError;
use crate::http::auth::Admin;
use crate::http::error::JsonBody;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/v1/agents", post(create).get(list))
        .route("/v1/agents/{name}/revoke", post(revoke))
        .route(
            "/v1/installations/{id}/registry-login",
            post(set_registry_login).delete(remove_registry_login),
        )
}

async fn set_registry_login(
    _: Admin,
    State(core): State<Core>,
    Path(installation_id): Path<i64>,
    JsonBody(request): JsonBody<SetRegistryLogin>,
) -> Result<Json<RegistryLoginSet>, HttpError> {
    Ok(Json(
        core.set_registry_login(installation_id, request).await?,
    ))
}

async fn remove_registry_login(
    _: Admin,
    State(core): State<Core>,
    Path(installation_id): Path<i64>,
) -> Result<StatusCode, HttpError> {
    core.remove_registry_login(installation_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create(
    _: Admin,
    State(core): State<Core>,
    JsonBody(request): JsonBody<CreateAgent>,
) -> Result<(StatusCode, Json<AgentCredentials>), HttpError> {
    Ok((
        StatusCode::CREATED,
        Json(core.create_agent(&request).await?),
    ))
}

async fn list(_: Admin, State(core): State<Core>) -> Result<Json<Vec<Agent>>, HttpError> {
    Ok(Json(core.agents().await?))
}

async fn revoke(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<RevokedAgent>, HttpError> {
    Ok(Json(core.revoke_agent(&name).await?))
}
