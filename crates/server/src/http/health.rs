//! `GET /healthz` (the store answers) and `GET /metrics` (Prometheus text).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::core::Core;
use crate::http::HttpError;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

async fn healthz(State(core): State<Core>) -> impl IntoResponse {
    if core.store_answers().await {
        (StatusCode::OK, Json(json!({"status": "ok"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "error": "the database does not answer"})),
        )
    }
}

async fn metrics(State(core): State<Core>) -> Result<impl IntoResponse, HttpError> {
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        core.metrics_text().await?,
    ))
}
