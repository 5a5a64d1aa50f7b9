//! `/v1/services`: create, change and list services, trigger a manual build of one, and its
//! variables.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use wharf_wire::{Build, CreateService, EnvVar, Service, SetEnv, TriggerBuild, UpdateService};

use crate::core::Core;
use crate::http::HttpError;
use crate::http::auth::Admin;
use crate::http::error::JsonBody;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/v1/services", post(create).get(list))
        .route("/v1/services/{name}", get(show).put(update))
        .route("/v1/services/{name}/builds", post(trigger))
        .route("/v1/services/{name}/env", post(set_env).get(list_env))
        .route("/v1/services/{name}/env/{variable}", delete(unset_env))
        .route(
            "/v1/services/{name}/preview-env/{variable}",
            delete(unset_preview_env),
        )
}

async fn create(
    _: Admin,
    State(core): State<Core>,
    JsonBody(request): JsonBody<CreateService>,
) -> Result<(StatusCode, Json<Service>), HttpError> {
    Ok((
        StatusCode::CREATED,
        Json(core.create_service(&request).await?),
    ))
}

async fn update(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<UpdateService>,
) -> Result<Json<Service>, HttpError> {
    Ok(Json(core.update_service(&name, &request).await?))
}

async fn list(_: Admin, State(core): State<Core>) -> Result<Json<Vec<Service>>, HttpError> {
    Ok(Json(core.services().await?))
}

async fn show(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<Service>, HttpError> {
    Ok(Json(core.service(&name).await?))
}

async fn trigger(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<TriggerBuild>,
) -> Result<(StatusCode, Json<Build>), HttpError> {
    Ok((
        StatusCode::CREATED,
        Json(core.trigger_build(&name, &request).await?),
    ))
}

async fn set_env(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<SetEnv>,
) -> Result<(StatusCode, Json<EnvVar>), HttpError> {
    Ok((
        StatusCode::OK,
        Json(core.set_variable(&name, &request).await?),
    ))
}

async fn list_env(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<Vec<EnvVar>>, HttpError> {
    Ok(Json(core.variables(&name).await?))
}

async fn unset_env(
    _: Admin,
    State(core): State<Core>,
    Path((name, variable)): Path<(String, String)>,
) -> Result<Json<Vec<EnvVar>>, HttpError> {
    Ok(Json(core.unset_variable(&name, &variable, false).await?))
}

async fn unset_preview_env(
    _: Admin,
    State(core): State<Core>,
    Path((name, variable)): Path<(String, String)>,
) -> Result<Json<Vec<EnvVar>>, HttpError> {
    Ok(Json(core.unset_variable(&name, &variable, true).await?))
}
