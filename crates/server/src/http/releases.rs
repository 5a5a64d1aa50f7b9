//! Releases over HTTP: listing them, deploying and rolling back without a rebuild, the
//! service's CI deploy-hook secret, and the hook itself (`POST /deploy`).

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::distr::{Alphanumeric, SampleString};
use serde::Deserialize;
use wharf_domain::names::{check_image_ref, check_image_tag};
use wharf_domain::signature;
use wharf_store::NewRelease;
use wharf_wire::{
    DeployHook, DeployHookAnswer, DeploySecret, DeployService, Release, ReleaseState,
    ReleaseTrigger, RollbackService, SecretText, Service,
};

use crate::core::release_scheduler::{announce, image_repository, new_release};
use crate::core::{Core, now_millis};
use crate::http::HttpError;
use crate::http::auth::Admin;
use crate::http::error::JsonBody;

/// A deploy hook body names a service and an image: small.
const MAX_HOOK_BYTES: usize = 64 * 1024;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/v1/services/{name}/releases", get(list))
        .route("/v1/releases/{id}", get(show))
        .route("/v1/services/{name}/deploy", post(deploy))
        .route("/v1/services/{name}/rollback", post(rollback))
        .route("/v1/services/{name}/deploy-secret", post(rotate_secret))
        .route(
            "/deploy",
            post(hook).layer(DefaultBodyLimit::max(MAX_HOOK_BYTES)),
        )
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

async fn list(
    _: Admin,
    State(state): State<Core>,
    Path(name): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Release>>, HttpError> {
    let service = state.store.service_by_name(&name).await?;
    let limit = query.limit.unwrap_or(20).clamp(1, 500);
    Ok(Json(state.store.list_releases(service.id, limit).await?))
}

async fn show(
    _: Admin,
    State(state): State<Core>,
    Path(id): Path<i64>,
) -> Result<Json<Release>, HttpError> {
    Ok(Json(state.store.release(id).await?))
}

async fn deploy(
    _: Admin,
    State(state): State<Core>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<DeployService>,
) -> Result<(StatusCode, Json<Release>), HttpError> {
    let service = state.store.service_by_name(&name).await?;
    let new = match (request.build, request.image) {
        (Some(_), Some(_)) => {
            return Err(HttpError::BadRequest(
                "give a build or an image, not both".to_owned(),
            ));
        }
        (Some(build_id), None) => release_of_build(&state, &service, build_id).await?,
        (None, Some(image)) => {
            check_image_ref(&image)?;
            image_release(&service, image, ReleaseTrigger::Manual)
        }
        (None, None) => {
            let build_id = state
                .store
                .latest_completed_build(service.id)
                .await?
                .ok_or_else(|| {
                    HttpError::Conflict(format!(
                        "{} has no completed build to deploy; name an image with --image",
                        service.name
                    ))
                })?;
            release_of_build(&state, &service, build_id).await?
        }
    };
    let release = state.store.create_release(&new, now_millis()).await?;
    announce(&state, &release);
    Ok((StatusCode::CREATED, Json(release)))
}

async fn release_of_build(
    state: &Core,
    service: &Service,
    build_id: i64,
) -> Result<NewRelease, HttpError> {
    let build = state.store.build(build_id).await?;
    if build.service_id != service.id {
        return Err(HttpError::BadRequest(format!(
            "build #{build_id} is not a build of {}",
            service.name
        )));
    }
    if build.state != wharf_wire::BuildState::Completed {
        return Err(HttpError::Conflict(format!(
            "build #{build_id} is {}, not completed",
            build.state
        )));
    }
    new_release(service, &build, ReleaseTrigger::Manual)
}

fn image_release(service: &Service, image: String, trigger: ReleaseTrigger) -> NewRelease {
    NewRelease {
        service_id: service.id,
        environment: service.deploy.environment.clone(),
        build_id: None,
        image,
        trigger,
        rollback_of: None,
        hosts: service.deploy.hosts.clone(),
    }
}

async fn rollback(
    _: Admin,
    State(state): State<Core>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<RollbackService>,
) -> Result<(StatusCode, Json<Release>), HttpError> {
    let service = state.store.service_by_name(&name).await?;
    let target_id = match request.to {
        Some(id) => id,
        None => state
            .store
            .previous_live_release(service.id, &service.deploy.environment)
            .await?
            .ok_or_else(|| {
                HttpError::Conflict(format!(
                    "{} has no earlier live release to roll back to",
                    service.name
                ))
            })?,
    };
    let target = state.store.release(target_id).await?;
    if target.service_id != service.id {
        return Err(HttpError::BadRequest(format!(
            "release #{target_id} is not a release of {}",
            service.name
        )));
    }
    let new = NewRelease {
        build_id: target.build_id,
        rollback_of: Some(target.id),
        ..image_release(&service, target.image, ReleaseTrigger::Rollback)
    };
    let release = state.store.create_release(&new, now_millis()).await?;
    announce(&state, &release);
    Ok((StatusCode::CREATED, Json(release)))
}

/// The context a service's deploy-hook secret is sealed under.
fn deploy_secret_context(service_id: i64) -> String {
    format!("deploy-secret/{service_id}")
}

async fn rotate_secret(
    _: Admin,
    State(state): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<DeploySecret>, HttpError> {
    let service = state.store.service_by_name(&name).await?;
    let secret = format!("whd_{}", Alphanumeric.sample_string(&mut rand::rng(), 40));
    let sealed = state
        .config
        .sealing_key
        .seal(&deploy_secret_context(service.id), &secret)?;
    state.store.set_deploy_secret(service.id, &sealed).await?;
    tracing::info!(service = %service.name, "deploy-hook secret replaced");
    Ok(Json(DeploySecret {
        secret: SecretText::new(secret),
    }))
}

/// `POST /deploy`: the CI deploy hook. Only the service's name is read before the signature
/// is checked (it says whose secret signs the body); nothing else is looked at or acted on
/// until the signature matches. The answer waits for the rollout's outcome: 200 live, 422 when
/// the image could not be pulled (nothing running was touched), 502 when the new version was
/// unhealthy and rolled back, 409 when a newer release replaced it, 202 when it is still
/// rolling out after the wait.
async fn hook(State(state): State<Core>, headers: HeaderMap, body: Bytes) -> Response {
    match run_hook(&state, &headers, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn run_hook(state: &Core, headers: &HeaderMap, body: &[u8]) -> Result<Response, HttpError> {
    #[derive(Deserialize)]
    struct Target {
        service: String,
    }
    let refused = || {
        HttpError::Unauthorized(
            "the signature does not match the service's deploy secret (or it has none: \
             make one with `wharf service deploy-secret NAME`)"
                .to_owned(),
        )
    };
    let target: Target = serde_json::from_slice(body).map_err(|error| {
        HttpError::BadRequest(format!("the body is not a deploy request: {error}"))
    })?;
    let service = match state.store.service_by_name(&target.service).await {
        Ok(service) => service,
        Err(wharf_store::StoreError::NotFound(_)) => return Err(refused()),
        Err(error) => return Err(error.into()),
    };
    let sealed = state
        .store
        .deploy_secret(service.id)
        .await?
        .ok_or_else(refused)?;
    let secret = state
        .config
        .sealing_key
        .open(&deploy_secret_context(service.id), &sealed)?;
    let header = headers
        .get("x-hub-signature-256")
        .map(|value| value.as_bytes());
    signature::verify(secret.as_bytes(), body, header).map_err(|_| refused())?;

    let request: DeployHook = serde_json::from_slice(body).map_err(|error| {
        HttpError::BadRequest(format!("the body is not a deploy request: {error}"))
    })?;
    let image = match (request.image, request.image_sha) {
        (Some(image), None) => {
            check_image_ref(&image)?;
            image
        }
        (None, Some(tag)) => {
            check_image_tag(&tag)?;
            format!("{}:{tag}", service_repository(state, &service).await?)
        }
        _ => {
            return Err(HttpError::BadRequest(
                "give exactly one of \"image\" and \"image_sha\"".to_owned(),
            ));
        }
    };
    let release = state
        .store
        .create_release(
            &image_release(&service, image, ReleaseTrigger::Hook),
            now_millis(),
        )
        .await?;
    announce(state, &release);
    let release = wait_until_settled(state, release.id, hook_wait(&service)).await?;
    let status = match release.state {
        ReleaseState::Live => StatusCode::OK,
        ReleaseState::Failed => StatusCode::UNPROCESSABLE_ENTITY,
        ReleaseState::RolledBack => StatusCode::BAD_GATEWAY,
        ReleaseState::Superseded => StatusCode::CONFLICT,
        _ => StatusCode::ACCEPTED,
    };
    let answer = DeployHookAnswer {
        release: release.id,
        state: release.state,
        reason: release.reason.clone(),
        log_url: format!(
            "{}/v1/releases/{}",
            state.config.public_url.trim_end_matches('/'),
            release.id
        ),
    };
    Ok((status, Json(answer)).into_response())
}

/// `{registry}/{project}/{service}`: from the server's registry setting, else from the
/// service's last pushed image.
async fn service_repository(state: &Core, service: &Service) -> Result<String, HttpError> {
    if let Some(registry) = &state.config.registry {
        return Ok(format!(
            "{}/{}/{}",
            registry.trim_end_matches('/'),
            service.project,
            service.name
        ));
    }
    let last = match state.store.latest_completed_build(service.id).await? {
        Some(id) => state.store.build(id).await?.image,
        None => None,
    };
    last.map(|image| image_repository(&image).to_owned())
        .ok_or_else(|| {
            HttpError::Conflict(
                "image_sha needs the registry: set WHARF_REGISTRY on the server, or send \"image\""
                    .to_owned(),
            )
        })
}

/// How long the hook waits for an outcome: the health deadline and room for the pull.
fn hook_wait(service: &Service) -> Duration {
    Duration::from_millis(service.deploy.health.deadline_ms) + Duration::from_secs(600)
}

async fn wait_until_settled(
    state: &Core,
    release_id: i64,
    wait: Duration,
) -> Result<Release, HttpError> {
    let deadline = Instant::now() + wait;
    let mut wake_ups = state.signals.releases.subscribe();
    loop {
        wake_ups.borrow_and_update();
        let release = state.store.release(release_id).await?;
        let now = Instant::now();
        if release.state.is_settled() || now >= deadline {
            return Ok(release);
        }
        let pause = (deadline - now).min(Duration::from_secs(1));
        let _ = tokio::time::timeout(pause, wake_ups.changed()).await;
    }
}
