//! `/v1/previews` and `/v1/services/{name}/previews`: pull requests' preview environments,
//! listed, approved and removed.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use wharf_wire::{ApprovePreview, Preview};

use crate::core::Core;
use crate::http::HttpError;
use crate::http::auth::Admin;
use crate::http::error::JsonBody;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/v1/previews", get(list_all))
        .route("/v1/services/{name}/previews", get(list))
        .route("/v1/services/{name}/previews/{pr}/approve", post(approve))
        .route("/v1/services/{name}/previews/{pr}/start", post(start))
        .route("/v1/services/{name}/previews/{pr}/destroy", post(destroy))
}

async fn list_all(_: Admin, State(core): State<Core>) -> Result<Json<Vec<Preview>>, HttpError> {
    Ok(Json(core.previews(None).await?))
}

async fn list(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Preview>>, HttpError> {
    Ok(Json(core.previews(Some(&name)).await?))
}

async fn approve(
    _: Admin,
    State(core): State<Core>,
    Path((name, pr)): Path<(String, u64)>,
    JsonBody(request): JsonBody<ApprovePreview>,
) -> Result<Json<Preview>, HttpError> {
    let preview = core
        .approve_preview(&name, pr, request.commit_sha.as_deref(), "admin")
        .await?;
    Ok(Json(preview))
}

async fn start(
    _: Admin,
    State(core): State<Core>,
    Path((name, pr)): Path<(String, u64)>,
) -> Result<Json<Preview>, HttpError> {
    Ok(Json(core.start_preview(&name, pr).await?))
}

async fn destroy(
    _: Admin,
    State(core): State<Core>,
    Path((name, pr)): Path<(String, u64)>,
) -> Result<Json<Preview>, HttpError> {
    Ok(Json(core.destroy_preview(&name, pr).await?))
}
