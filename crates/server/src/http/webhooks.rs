//! `POST /api/webhooks/github`: verify, parse, hand the delivery to the core (which stores it
//! with its effects and wakes the queue), answer.
//!
//! The signature is checked over the raw bytes before anything is parsed. A 2xx means the
//! delivery and everything it caused are committed to the store, so a crash right after the
//! answer loses nothing. Events Wharf does not use are answered 200 and not stored.
//!
//! The body is read here, with a deadline (`body_timeout`: 408 past it) and the size
//! GitHub allows (413 past it), so a slow sender cannot hold memory or a turn for long; the
//! route's turns ([`super::limits`]) bound how many bodies are in memory at once.

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
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
use crate::http::limits::read_body_within;
use crate::metrics::DeliveryLabel;

/// GitHub caps webhook payloads at 25 MB.
pub(crate) const MAX_WEBHOOK_BYTES: usize = 25 * 1024 * 1024;

pub(crate) fn router() -> Router<Core> {
    Router::new().route("/api/webhooks/github", post(receive))
}

async fn receive(State(core): State<Core>, headers: HeaderMap, body: Body) -> Response {
    let deadline = core.config.limits.body_timeout;
    let body = match read_body_within(&headers, body, MAX_WEBHOOK_BYTES, deadline).await {
        Ok(body) => body,
        Err(error) => {
            core.metrics.count_delivery(None, DeliveryLabel::BadRequest);
            return error.into_response();
        }
    };
    match handle(&core, &headers, &body).await {
        Ok(response) => response,
        Err(Failure {
            label,
            signed,
            error,
        }) => {
            // The event header names the metric's event only once the signature vouched for it.
            let event = signed.then(|| header(&headers, "x-github-event")).flatten();
            core.metrics.count_delivery(event, label);
            error.into_response()
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// A delivery that was not taken: how it counts, whether its signature was good, the answer.
struct Failure {
    label: DeliveryLabel,
    signed: bool,
    error: HttpError,
}

impl Failure {
    fn signed(label: DeliveryLabel, error: HttpError) -> Failure {
        Failure {
            label,
            signed: true,
            error,
        }
    }
}

async fn handle(core: &Core, headers: &HeaderMap, body: &Bytes) -> Result<Response, Failure> {
    let secret = match core.webhook_secret() {
        Some(secret) => Some(secret),
        None => {
            // An App made from the dashboard through another replica.
            core.load_github_app().await;
            core.webhook_secret()
        }
    };
    let secret = secret.ok_or_else(|| Failure {
        label: DeliveryLabel::Error,
        signed: false,
        error: HttpError::Unavailable(
            "webhooks are not accepted: WHARF_GITHUB_WEBHOOK_SECRET is not set".to_owned(),
        ),
    })?;
    signature::verify(
        secret.expose_secret().as_bytes(),
        body,
        headers
            .get("x-hub-signature-256")
            .map(|value| value.as_bytes()),
    )
    .map_err(|error| Failure {
        label: DeliveryLabel::BadSignature,
        signed: false,
        error: HttpError::Unauthorized(error.to_string()),
    })?;

    let bad = |message: String| {
        Failure::signed(DeliveryLabel::BadRequest, HttpError::BadRequest(message))
    };
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
            Failure::signed(label, HttpError::from(error))
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
        Some(DeliveryOutcome::Recorded {
            outcome, build_ids, ..
        }) => (
            DeliveryLabel::Accepted,
            StatusCode::ACCEPTED,
            json!({"delivery": delivery_id, "outcome": outcome, "builds": build_ids}),
        ),
    };
    core.metrics.count_delivery(Some(event.name()), label);
    Ok((status, Json(answer)).into_response())
}
