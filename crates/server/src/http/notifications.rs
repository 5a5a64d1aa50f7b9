//! `/v1/notifications`: the notification sinks, a test message, each sink's messages and
//! retrying its dead letters (admin).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use wharf_wire::{
    CreateSink, NotificationDelivery, NotificationSink, SinkCreated, SinkRetried, SinkTested,
};

use crate::core::Core;
use crate::http::HttpError;
use crate::http::auth::Admin;
use crate::http::error::JsonBody;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/v1/notifications", post(create).get(list))
        .route("/v1/notifications/{name}", delete(remove))
        .route("/v1/notifications/{name}/test", post(test))
        .route("/v1/notifications/{name}/deliveries", get(deliveries))
        .route("/v1/notifications/{name}/retry", post(retry))
}

async fn create(
    _: Admin,
    State(core): State<Core>,
    JsonBody(request): JsonBody<CreateSink>,
) -> Result<(StatusCode, Json<SinkCreated>), HttpError> {
    Ok((StatusCode::CREATED, Json(core.create_sink(&request).await?)))
}

async fn list(
    _: Admin,
    State(core): State<Core>,
) -> Result<Json<Vec<NotificationSink>>, HttpError> {
    Ok(Json(core.sinks().await?))
}

async fn remove(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<Vec<NotificationSink>>, HttpError> {
    Ok(Json(core.remove_sink(&name).await?))
}

async fn test(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<SinkTested>, HttpError> {
    Ok(Json(core.test_sink(&name).await?))
}

#[derive(Deserialize)]
struct DeliveriesQuery {
    #[serde(default)]
    failed: bool,
}

async fn deliveries(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<Vec<NotificationDelivery>>, HttpError> {
    Ok(Json(core.sink_deliveries(&name, query.failed).await?))
}

async fn retry(
    _: Admin,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<SinkRetried>, HttpError> {
    Ok(Json(core.retry_sink(&name).await?))
}
