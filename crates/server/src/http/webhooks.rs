//! `POST /api/webhooks/github`: verify, parse, hand the delivery to the core (which stores it
//! with its effects and wakes the queue), answer.
//!
//! The signature is checked over the raw bytes before anything is parsed. A 2xx means the
//! delivery and everything it caused are committed to the store, so a crash right after the
//! answer loses nothing. Events Wharf does not use are answered 200 and not stored.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::ExposeSecret;
use serde_json::json;
use wharf_domain::signature;
use wharf_domain::webhook::WebhookEvent;
use wharf_store::DeliveryOutcome;

use crate::core::{Core, CoreError};
use crate::http::HttpError;
use crate::metrics::DeliveryLabel;

/// GitHub caps webhook payloads at 25 MB.
pub(crate) const MAX_WEBHOOK_BYTES: usize = 25 * 1024 * 1024;

pub(crate) fn router() -> Router<Core> {
    Router::new().route(
        "/api/webhooks/github",
        post(receive).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES)),
    )
}

async fn receive(State(core): State<Core>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&core, &headers, &body).await {
        Ok(response) => response,
        Err((label, error)) => {
            core.metrics
                .count_delivery(&event_name(&headers, label), label);
            error.into_response()
        }
    }
}

/// The event name for metrics: trusted only once the signature was good.
fn event_name(headers: &HeaderMap, label: DeliveryLabel) -> String {
    match label {
        DeliveryLabel::BadSignature => "unknown".to_owned(),
        _ => header(headers, "x-github-event")
            .unwrap_or("unknown")
            .to_owned(),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

type Failure = (DeliveryLabel, HttpError);

async fn handle(core: &Core, headers: &HeaderMap, body: &Bytes) -> Result<Response, Failure> {
    let secret = core
        .config
        .github
        .as_ref()
        .and_then(|github| github.webhook_secret.as_ref())
        .ok_or_else(|| {
            (
                DeliveryLabel::Error,
                HttpError::Unavailable(
                    "webhooks are not accepted: WHARF_GITHUB_WEBHOOK_SECRET is not set".to_owned(),
                ),
            )
        })?;
    signature::verify(
        secret.expose_secret().as_bytes(),
        body,
        headers
            .get("x-hub-signature-256")
            .map(|value| value.as_bytes()),
    )
    .map_err(|error| {
        (
            DeliveryLabel::BadSignature,
            HttpError::Unauthorized(error.to_string()),
        )
    })?;

    let bad = |message: String| (DeliveryLabel::BadRequest, HttpError::BadRequest(message));
    let event_name = header(headers, "x-github-event")
        .ok_or_else(|| bad("missing X-GitHub-Event header".to_owned()))?;
    let delivery_id = header(headers, "x-github-delivery")
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 100
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .ok_or_else(|| bad("missing or malformed X-GitHub-Delivery header".to_owned()))?;
    let event = WebhookEvent::parse(event_name, body).map_err(|error| bad(error.to_string()))?;

    let outcome = core
        .record_delivery(delivery_id, &event, body)
        .await
        .map_err(|error| {
            let label = match error {
                CoreError::Invalid(_) => DeliveryLabel::BadRequest,
                _ => DeliveryLabel::Error,
            };
            (label, HttpError::from(error))
        })?;
    let (label, status, answer) = match outcome {
        None => (
            DeliveryLabel::Ignored,
            StatusCode::OK,
            json!({"delivery": delivery_id, "outcome": format!("ignored: Wharf does not use {} events", event.name())}),
        ),
        Some(DeliveryOutcome::Duplicate) => (
            DeliveryLabel::Duplicate,
            StatusCode::OK,
            json!({"delivery": delivery_id, "outcome": "duplicate: already received"}),
        ),
        Some(DeliveryOutcome::Recorded { outcome, build_ids }) => (
            DeliveryLabel::Accepted,
            StatusCode::ACCEPTED,
            json!({"delivery": delivery_id, "outcome": outcome, "builds": build_ids}),
        ),
    };
    core.metrics.count_delivery(event.name(), label);
    Ok((status, Json(answer)).into_response())
}
