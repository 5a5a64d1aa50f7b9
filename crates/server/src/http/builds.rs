//! `/v1/builds`: list, show, cancel and retry builds.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use wharf_domain::build::check_retry;
use wharf_store::{BuildFilter, NewBuild};
use wharf_wire::{Build, BuildTrigger};

use crate::http::HttpError;
use crate::http::auth::Admin;
use crate::{AppState, now_millis};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/builds", get(list))
        .route("/v1/builds/{id}", get(show))
        .route("/v1/builds/{id}/cancel", post(cancel))
        .route("/v1/builds/{id}/retry", post(retry))
}

#[derive(Deserialize)]
struct ListQuery {
    service: Option<String>,
    limit: Option<i64>,
}

async fn list(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Build>>, HttpError> {
    if let Some(service) = &query.service {
        // An unknown service is an error, not an empty list.
        state.store.service_by_name(service).await?;
    }
    let filter = BuildFilter {
        service: query.service,
        limit: query.limit,
    };
    Ok(Json(state.store.list_builds(&filter).await?))
}

/// Reads a build id from the path, answering 400 for anything but a positive integer.
fn build_id(raw: &str) -> Result<i64, HttpError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        HttpError::BadRequest(format!(
            "invalid build id {:?}",
            raw.chars().take(40).collect::<String>()
        ))
    })
}

async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Build>, HttpError> {
    Ok(Json(state.store.build(build_id(&id)?).await?))
}

async fn cancel(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Build>, HttpError> {
    let build = state
        .store
        .cancel_build(build_id(&id)?, "cancelled by a user", now_millis())
        .await?;
    tracing::info!(build = build.id, "build cancelled");
    Ok(Json(build))
}

async fn retry(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Build>), HttpError> {
    let id = build_id(&id)?;
    let original = state.store.build(id).await?;
    check_retry(original.state).map_err(|_| {
        HttpError::Conflict(format!(
            "build #{id} is still {}: cancel it first or wait for it to finish",
            original.state
        ))
    })?;
    let installation_id = state.store.build_installation(id).await?;
    let build = state
        .store
        .queue_build(
            &NewBuild {
                service_id: original.service_id,
                commit_sha: original.commit_sha.clone(),
                branch: original.branch.clone(),
                trigger: BuildTrigger::Retry,
                installation_id,
                delivery_id: None,
                retry_of: Some(id),
                max_attempts: state.config.max_attempts,
            },
            now_millis(),
        )
        .await?;
    state.queue.notify();
    tracing::info!(build = build.id, retry_of = id, "build retried");
    Ok((StatusCode::CREATED, Json(build)))
}
