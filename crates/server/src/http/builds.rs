//! `/v1/builds`: list, show, cancel and retry builds.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use wharf_domain::build::check_retry;
use wharf_store::{BuildFilter, NewBuild};
use wharf_wire::{Build, BuildLogs, BuildTrigger};

use crate::core::{Core, now_millis};
use crate::http::HttpError;
use crate::http::auth::Admin;

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
    State(state): State<Core>,
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
    State(state): State<Core>,
    Path(id): Path<String>,
) -> Result<Json<Build>, HttpError> {
    Ok(Json(state.store.build(build_id(&id)?).await?))
}

async fn cancel(
    _: Admin,
    State(state): State<Core>,
    Path(id): Path<String>,
) -> Result<Json<Build>, HttpError> {
    let build = state
        .store
        .cancel_build(build_id(&id)?, "cancelled by a user", now_millis())
        .await?;
    state.signals.logs.notify();
    state.signals.github_reports.notify();
    tracing::info!(build = build.id, "build cancelled");
    Ok(Json(build))
}

async fn retry(
    _: Admin,
    State(state): State<Core>,
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
    let build = state
        .store
        .queue_build(
            &NewBuild {
                service_id: original.service_id,
                commit_sha: original.commit_sha.clone(),
                branch: original.branch.clone(),
                trigger: BuildTrigger::Retry,
                installation_id: original.installation_id,
                delivery_id: None,
                retry_of: Some(id),
                max_attempts: state.config.max_attempts,
            },
            now_millis(),
        )
        .await?;
    state.signals.queue.notify();
    state.signals.github_reports.notify();
    tracing::info!(build = build.id, retry_of = id, "build retried");
    Ok((StatusCode::CREATED, Json(build)))
}

/// How many lines one answer carries at most.
const LOG_PAGE: i64 = 2000;

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default)]
    after: i64,
    /// Hold the request up to this long (capped at 30 s) while no new line has come and the
    /// build runs, so followers need no polling interval.
    #[serde(default)]
    wait_ms: u64,
}

/// One page of lines after `after`, and whether the log is complete.
async fn log_page(state: &Core, id: i64, after: i64) -> Result<BuildLogs, HttpError> {
    // The state is read before the lines: a build seen finished has all its lines stored.
    let build = state.store.build(id).await?;
    let lines = state.store.logs_after(id, after, LOG_PAGE).await?;
    let complete = build.state.is_final() && (lines.len() as i64) < LOG_PAGE;
    Ok(BuildLogs {
        lines,
        state: build.state,
        complete,
        truncated: build.log_truncated,
    })
}

async fn logs(
    _: Admin,
    State(state): State<Core>,
    Path(id): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Json<BuildLogs>, HttpError> {
    let id = build_id(&id)?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(query.wait_ms.min(30_000));
    let mut changes = state.signals.logs.subscribe();
    loop {
        changes.borrow_and_update();
        let page = log_page(&state, id, query.after).await?;
        if !page.lines.is_empty() || page.complete || tokio::time::Instant::now() >= deadline {
            return Ok(Json(page));
        }
        let pause = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(Duration::from_secs(1));
        let _ = tokio::time::timeout(pause, changes.changed()).await;
    }
}

/// Server-sent events: `line` events (id = the line's number, data = the line as JSON) and a
/// final `done` event whose data names the build's final state. `Last-Event-ID` resumes.
async fn stream_logs(
    _: Admin,
    State(state): State<Core>,
    Path(id): Path<String>,
    Query(query): Query<LogsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    let id = build_id(&id)?;
    state.store.build(id).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i64>().ok())
        .unwrap_or(query.after);
    let changes = state.signals.logs.subscribe();
    let stream =
        futures_util::stream::unfold(Some((state, resume, changes)), move |follow| async move {
            let (state, mut after, mut changes) = follow?;
            loop {
                changes.borrow_and_update();
                let page = match log_page(&state, id, after).await {
                    Ok(page) => page,
                    Err(_) => return None,
                };
                if !page.lines.is_empty() {
                    let mut events = Vec::with_capacity(page.lines.len());
                    for line in &page.lines {
                        after = line.seq;
                        let data = serde_json::to_string(line).unwrap_or_default();
                        events.push(
                            Event::default()
                                .event("line")
                                .id(line.seq.to_string())
                                .data(data),
                        );
                    }
                    return Some((events, Some((state, after, changes))));
                }
                if page.complete {
                    let data =
                        json!({"state": page.state, "truncated": page.truncated}).to_string();
                    return Some((vec![Event::default().event("done").data(data)], None));
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
            }
        })
        .flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok)));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
