//! Releases over HTTP: listing them, their deploy logs (a page or a live stream), deploying and rolling back without a rebuild, the
//! service's CI deploy-hook secret, and the hook itself (`POST /deploy`).

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use wharf_domain::signature;
use wharf_wire::{
    DeploySecret, DeployService, Release, ReleaseLogs, ReleaseState, RollbackService,
};

use crate::core::Core;
use crate::core::releases::HookProof;
use crate::http::HttpError;
use crate::http::auth::Admin;
use crate::http::error::JsonBody;
use crate::http::limits::read_body_within;
use crate::http::logs::{LogsQuery, MAX_LOG_WAIT, log_events, resume_after};

/// A deploy hook body names a service and an image: small.
const MAX_HOOK_BYTES: usize = 64 * 1024;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/v1/services/{name}/releases", get(list))
        .route("/v1/releases/{id}", get(show))
        .route("/v1/releases/{id}/logs", get(logs))
        .route("/v1/releases/{id}/logs/stream", get(stream_logs))
        .route("/v1/services/{name}/deploy", post(deploy))
        .route("/v1/services/{name}/rollback", post(rollback))
        .route("/v1/services/{name}/deploy-secret", post(rotate_secret))
        .route("/deploy", post(hook))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

async fn list(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Release>>, HttpError> {
    Ok(Json(core.releases(&name, query.limit).await?))
}

async fn show(
    _: Admin,
    State(core): State<Core>,
    Path(id): Path<i64>,
) -> Result<Json<Release>, HttpError> {
    Ok(Json(core.release(id).await?))
}

async fn logs(
    _: Admin,
    State(core): State<Core>,
    Path(id): Path<i64>,
    Query(query): Query<LogsQuery>,
) -> Result<Json<ReleaseLogs>, HttpError> {
    Ok(Json(
        core.follow_release_log(id, query.after, query.wait())
            .await?,
    ))
}

/// The release's deploy log as server-sent events (see [`log_events`]).
async fn stream_logs(
    _: Admin,
    State(core): State<Core>,
    Path(id): Path<i64>,
    Query(query): Query<LogsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    core.release(id).await?;
    Ok(log_events(resume_after(&headers, &query), move |after| {
        let core = core.clone();
        async move { core.follow_release_log(id, after, MAX_LOG_WAIT).await }
    }))
}

async fn deploy(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<DeployService>,
) -> Result<(StatusCode, Json<Release>), HttpError> {
    Ok((
        StatusCode::CREATED,
        Json(core.deploy(&name, request).await?),
    ))
}

async fn rollback(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<RollbackService>,
) -> Result<(StatusCode, Json<Release>), HttpError> {
    Ok((
        StatusCode::CREATED,
        Json(core.rollback(&name, request).await?),
    ))
}

async fn rotate_secret(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<DeploySecret>, HttpError> {
    Ok(Json(core.rotate_deploy_secret(&name).await?))
}

/// `POST /deploy`: the CI deploy hook, authenticated by the signature of its time and body
/// with the service's deploy secret, and good once. The answer waits for the rollout's outcome: 200 live, 422 when the
/// image could not be pulled (nothing running was touched), 502 when the new version was
/// unhealthy and rolled back, 409 when a newer release replaced it, 202 when it is still
/// rolling out after the wait.
async fn hook(State(core): State<Core>, headers: HeaderMap, body: Body) -> Response {
    // The route is not under the request timeout (it waits for the rollout): its body is.
    let deadline = core.config.limits.body_timeout;
    let body = match read_body_within(&headers, body, MAX_HOOK_BYTES, deadline).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let proof = HookProof {
        timestamp: headers
            .get(signature::TIMESTAMP_HEADER)
            .map(|value| value.as_bytes()),
        signature: headers
            .get("x-hub-signature-256")
            .map(|value| value.as_bytes()),
    };
    match core.deploy_hook(&body, proof).await {
        Ok(answer) => {
            let status = match answer.state {
                ReleaseState::Live => StatusCode::OK,
                ReleaseState::Failed => StatusCode::UNPROCESSABLE_ENTITY,
                ReleaseState::RolledBack => StatusCode::BAD_GATEWAY,
                ReleaseState::Superseded => StatusCode::CONFLICT,
                _ => StatusCode::ACCEPTED,
            };
            (status, Json(answer)).into_response()
        }
        Err(error) => HttpError::from(error).into_response(),
    }
}
