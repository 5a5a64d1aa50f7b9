//! `POST /api/webhooks/github`: verify, parse, store with its effects, wake the queue, answer.
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
use wharf_domain::webhook::{
    InstallationAction, InstallationEvent, InstallationRepositoriesEvent, PullRequestEvent,
    PushEvent, PushTarget, WebhookEvent, WebhookRepository,
};
use wharf_store::{DeliveryEffect, DeliveryOutcome, InstallationChange, NewDelivery};

use crate::core::Core;
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

async fn receive(State(state): State<Core>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(response) => response,
        Err((label, error)) => {
            state
                .metrics
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

async fn handle(state: &Core, headers: &HeaderMap, body: &Bytes) -> Result<Response, Failure> {
    let secret = state
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

    let max_attempts = state.config.max_attempts;
    let effect = match &event {
        WebhookEvent::Ignored(name) => {
            state.metrics.count_delivery(name, DeliveryLabel::Ignored);
            return Ok((
                StatusCode::OK,
                Json(json!({"delivery": delivery_id, "outcome": format!("ignored: Wharf does not use {name} events")})),
            )
                .into_response());
        }
        WebhookEvent::Ping => DeliveryEffect::Nothing {
            outcome: "pong".to_owned(),
        },
        WebhookEvent::Push(push) => push_effect(push, max_attempts),
        WebhookEvent::PullRequest(pull_request) => pull_request_effect(pull_request),
        WebhookEvent::Installation(installation) => installation_effect(installation),
        WebhookEvent::InstallationRepositories(change) => repositories_effect(change),
    };
    let dedupe_key = match &event {
        WebhookEvent::Push(push) => push.dedupe_key(),
        _ => None,
    };
    // The body parsed as JSON, so it is UTF-8; this cannot fail, but is checked rather than assumed.
    let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8".to_owned()))?;
    let delivery = NewDelivery {
        id: delivery_id.to_owned(),
        event: event.name().to_owned(),
        action: event.action().map(str::to_owned),
        dedupe_key,
        body: text.to_owned(),
    };
    let outcome = state
        .deliveries
        .record(delivery, effect)
        .await
        .map_err(|error| (DeliveryLabel::Error, HttpError::from(error)))?;
    match outcome {
        DeliveryOutcome::Duplicate => {
            state
                .metrics
                .count_delivery(event.name(), DeliveryLabel::Duplicate);
            Ok((
                StatusCode::OK,
                Json(json!({"delivery": delivery_id, "outcome": "duplicate: already received"})),
            )
                .into_response())
        }
        DeliveryOutcome::Recorded { outcome, build_ids } => {
            if !build_ids.is_empty() {
                state.signals.queue.notify();
                state.signals.github_reports.notify();
            }
            state
                .metrics
                .count_delivery(event.name(), DeliveryLabel::Accepted);
            tracing::info!(delivery = delivery_id, event = event.name(), %outcome, "webhook delivery stored");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"delivery": delivery_id, "outcome": outcome, "builds": build_ids})),
            )
                .into_response())
        }
    }
}

fn push_effect(push: &PushEvent, max_attempts: i64) -> DeliveryEffect {
    match &push.target {
        PushTarget::Branch { branch, after } => DeliveryEffect::QueueBuilds {
            repo_key: push.repository.full_name.key(),
            repo_full_name: push.repository.full_name.to_string(),
            branch: branch.to_string(),
            commit_sha: after.to_string(),
            installation_id: push.installation_id.and_then(|id| i64::try_from(id).ok()),
            max_attempts,
        },
        PushTarget::BranchDeleted { branch } => DeliveryEffect::Nothing {
            outcome: format!("branch {branch} was deleted: nothing to build"),
        },
        PushTarget::OtherRef => DeliveryEffect::Nothing {
            outcome: format!("{} is not a branch: nothing to build", push.git_ref),
        },
    }
}

/// Pull requests are stored and routed here; preview environments will act on them.
fn pull_request_effect(event: &PullRequestEvent) -> DeliveryEffect {
    DeliveryEffect::Nothing {
        outcome: format!(
            "pull request #{} {} on {}: stored (preview environments are not enabled)",
            event.number, event.action, event.repository.full_name
        ),
    }
}

fn repository_row(repository: &WebhookRepository) -> (i64, String, bool) {
    (
        i64::try_from(repository.id).unwrap_or(i64::MAX),
        repository.full_name.to_string(),
        repository.private,
    )
}

fn installation_effect(event: &InstallationEvent) -> DeliveryEffect {
    let mut change = InstallationChange {
        installation_id: i64::try_from(event.installation_id).unwrap_or(i64::MAX),
        account_login: event.account.login.clone(),
        account_type: event.account.kind.clone(),
        outcome: format!(
            "installation {} for {}: {}",
            event.installation_id,
            event.account.login,
            event.action.as_str()
        ),
        ..InstallationChange::default()
    };
    match event.action {
        InstallationAction::Created => {
            change.suspended = Some(false);
            change.add_repositories = event.repositories.iter().map(repository_row).collect();
        }
        InstallationAction::Deleted => change.deleted = true,
        InstallationAction::Suspend => change.suspended = Some(true),
        InstallationAction::Unsuspend => change.suspended = Some(false),
        InstallationAction::NewPermissionsAccepted | InstallationAction::Other => {}
    }
    DeliveryEffect::Installation(change)
}

fn repositories_effect(event: &InstallationRepositoriesEvent) -> DeliveryEffect {
    DeliveryEffect::Installation(InstallationChange {
        installation_id: i64::try_from(event.installation_id).unwrap_or(i64::MAX),
        account_login: event.account.login.clone(),
        account_type: event.account.kind.clone(),
        add_repositories: event.added.iter().map(repository_row).collect(),
        remove_repositories: event
            .removed
            .iter()
            .map(|repository| i64::try_from(repository.id).unwrap_or(i64::MAX))
            .collect(),
        outcome: format!(
            "installation {}: {} repositories added, {} removed",
            event.installation_id,
            event.added.len(),
            event.removed.len()
        ),
        ..InstallationChange::default()
    })
}
