//! `/v1/users`: adding dashboard users (the password is shown once), listing and removing them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use wharf_wire::{CreateUser, User, UserCredentials};

use crate::core::Core;
use crate::http::HttpError;
use crate::http::auth::Admin;
use crate::http::error::JsonBody;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/v1/users", post(create).get(list))
        .route("/v1/users/{name}", delete(remove))
}

async fn create(
    _: Admin,
    State(core): State<Core>,
    JsonBody(request): JsonBody<CreateUser>,
) -> Result<(StatusCode, Json<UserCredentials>), HttpError> {
    Ok((StatusCode::CREATED, Json(core.create_user(&request).await?)))
}

async fn list(_: Admin, State(core): State<Core>) -> Result<Json<Vec<User>>, HttpError> {
    Ok(Json(core.users().await?))
}

async fn remove(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<Vec<User>>, HttpError> {
    Ok(Json(core.remove_user(&name).await?))
}
