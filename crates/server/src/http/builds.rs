//! `/v1/builds`: list, show, cancel and retry builds, and read or follow a build's log (long-poll
//! or server-sent events).

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use wharf_wire::{Build, BuildLogs};

use wharf_wire::text::{ECHOED_CHARS, clip};

use crate::core::Core;
use crate::http::HttpError;
use crate::http::auth::Admin;
use crate::http::logs::{LogsQuery, MAX_LOG_WAIT, log_events, resume_after};

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/v1/builds", get(list))
        .route("/v1/builds/{id}", get(show))
        .route("/v1/builds/{id}/cancel", post(cancel))
        .route("/v1/builds/{id}/retry", post(retry))
        .route("/v1/builds/{id}/logs", get(logs))
        .route("/v1/builds/{id}/logs/stream", get(stream_logs))
}

#[derive(Deserialize)]
struct ListQuery {
    service: Option<String>,
    limit: Option<i64>,
}

async fn list(
    _: Admin,
    State(core): State<Core>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Build>>, HttpError> {
    Ok(Json(core.builds(query.service, query.limit).await?))
}

/// Reads a build id from the path, answering 400 for anything but a positive integer.
fn build_id(raw: &str) -> Result<i64, HttpError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        HttpError::BadRequest(format!("invalid build id {:?}", clip(raw, ECHOED_CHARS)))
    })
}

async fn show(
    _: Admin,
    State(core): State<Core>,
    Path(id): Path<String>,
) -> Result<Json<Build>, HttpError> {
    Ok(Json(core.build(build_id(&id)?).await?))
}

async fn cancel(
    _: Admin,
    State(core): State<Core>,
    Path(id): Path<String>,
) -> Result<Json<Build>, HttpError> {
    Ok(Json(core.cancel_build(build_id(&id)?).await?))
}

async fn retry(
    _: Admin,
    State(core): State<Core>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Build>), HttpError> {
    Ok((
        StatusCode::CREATED,
        Json(core.retry_build(build_id(&id)?).await?),
    ))
}

async fn logs(
    _: Admin,
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Json<BuildLogs>, HttpError> {
    Ok(Json(
        core.follow_log(build_id(&id)?, query.after, query.wait())
            .await?,
    ))
}

/// The build's log as server-sent events (see [`log_events`]).
async fn stream_logs(
    _: Admin,
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(query): Query<LogsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    let id = build_id(&id)?;
    core.build(id).await?;
    Ok(log_events(resume_after(&headers, &query), move |after| {
        let core = core.clone();
        async move { core.follow_log(id, after, MAX_LOG_WAIT).await }
    }))
}
