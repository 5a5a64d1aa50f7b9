//! `/v1/builds`: list, show, cancel and retry builds, and read or follow a build's log (long-poll
//! or server-sent events).

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
use wharf_wire::{Build, BuildLogs};

use wharf_wire::text::{ECHOED_CHARS, clip};

use crate::core::Core;
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

/// The longest a log request is held open waiting for lines.
const MAX_LOG_WAIT: Duration = Duration::from_secs(30);

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

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default)]
    after: i64,
    /// Hold the request up to this long (capped at 30 s) while no new line has come and the
    /// build runs, so followers need no polling interval.
    #[serde(default)]
    wait_ms: u64,
}

async fn logs(
    _: Admin,
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Json<BuildLogs>, HttpError> {
    let wait = Duration::from_millis(query.wait_ms).min(MAX_LOG_WAIT);
    Ok(Json(
        core.follow_log(build_id(&id)?, query.after, wait).await?,
    ))
}

/// Server-sent events: `line` events (id = the line's number, data = the line as JSON) and a
/// final `done` event whose data names the build's final state. `Last-Event-ID` resumes.
async fn stream_logs(
    _: Admin,
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(query): Query<LogsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    let id = build_id(&id)?;
    core.build(id).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i64>().ok())
        .unwrap_or(query.after);
    let stream = futures_util::stream::unfold(Some((core, resume)), move |follow| async move {
        let (core, mut after) = follow?;
        loop {
            let page = core.follow_log(id, after, MAX_LOG_WAIT).await.ok()?;
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
                return Some((events, Some((core, after))));
            }
            if page.complete {
                let data = json!({"state": page.state, "truncated": page.truncated}).to_string();
                return Some((vec![Event::default().event("done").data(data)], None));
            }
        }
    })
    .flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok)));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
