//! `/v1/agent/…`: what agents call, authenticated by their own tokens: register, claim a build
//! by long-poll, heartbeat, report progress, fetch clone credentials, claim and report
//! rollouts and append to their deploy logs, and ask what their host should run.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use wharf_wire::{
    AgentSettings, AppendLogs, AppendLogsAnswer, AppendRolloutLogs, Build, Claim, ClaimBuild,
    ClaimRollout, CloneCredentials, Desired, Heartbeat, HeartbeatAnswer, RegisterAgent,
    ReportBuildState, ReportRollout, Rollout, RolloutClaim,
};

use crate::core::Core;
use crate::http::HttpError;
use crate::http::auth::AgentIdentity;
use crate::http::error::JsonBody;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/v1/agent/register", post(register))
        .route("/v1/agent/claim", post(claim))
        .route("/v1/agent/heartbeat", post(heartbeat))
        .route("/v1/agent/builds/{id}/state", post(report_state))
        .route("/v1/agent/builds/{id}/logs", post(append_logs))
        .route(
            "/v1/agent/builds/{id}/clone-credentials",
            post(clone_credentials),
        )
        .route("/v1/agent/rollouts/claim", post(claim_rollout))
        .route("/v1/agent/rollouts/{id}/state", post(report_rollout))
        .route("/v1/agent/rollouts/{id}/logs", post(append_rollout_logs))
        .route("/v1/agent/desired", get(desired))
}

async fn register(
    AgentIdentity(agent): AgentIdentity,
    State(core): State<Core>,
    JsonBody(request): JsonBody<RegisterAgent>,
) -> Result<Json<AgentSettings>, HttpError> {
    Ok(Json(core.register_agent(&agent, &request).await?))
}

async fn claim(
    AgentIdentity(agent): AgentIdentity,
    State(core): State<Core>,
    JsonBody(request): JsonBody<ClaimBuild>,
) -> Result<Json<Claim>, HttpError> {
    let wait = Duration::from_millis(request.wait_ms);
    let timeout = request.build_timeout_ms.map(Duration::from_millis);
    let job = core.claim_build(&agent, wait, timeout).await?;
    Ok(Json(Claim { job }))
}

async fn heartbeat(
    AgentIdentity(agent): AgentIdentity,
    State(core): State<Core>,
    JsonBody(request): JsonBody<Heartbeat>,
) -> Result<Json<HeartbeatAnswer>, HttpError> {
    Ok(Json(core.heartbeat(&agent, &request).await?))
}

async fn report_state(
    AgentIdentity(agent): AgentIdentity,
    State(core): State<Core>,
    Path(id): Path<i64>,
    JsonBody(request): JsonBody<ReportBuildState>,
) -> Result<Json<Build>, HttpError> {
    Ok(Json(core.report_build_state(&agent, id, request).await?))
}

async fn append_logs(
    AgentIdentity(agent): AgentIdentity,
    State(core): State<Core>,
    Path(id): Path<i64>,
    JsonBody(request): JsonBody<AppendLogs>,
) -> Result<Json<AppendLogsAnswer>, HttpError> {
    Ok(Json(core.append_logs(&agent, id, &request).await?))
}

async fn clone_credentials(
    AgentIdentity(agent): AgentIdentity,
    State(core): State<Core>,
    Path(id): Path<i64>,
) -> Result<Json<CloneCredentials>, HttpError> {
    Ok(Json(core.clone_credentials(&agent, id).await?))
}

async fn claim_rollout(
    AgentIdentity(agent): AgentIdentity,
    State(core): State<Core>,
    JsonBody(request): JsonBody<ClaimRollout>,
) -> Result<Json<RolloutClaim>, HttpError> {
    let wait = Duration::from_millis(request.wait_ms);
    let job = core.claim_rollout(&agent, wait).await?;
    Ok(Json(RolloutClaim { job }))
}

async fn append_rollout_logs(
    AgentIdentity(agent): AgentIdentity,
    State(core): State<Core>,
    Path(id): Path<i64>,
    JsonBody(request): JsonBody<AppendRolloutLogs>,
) -> Result<Json<AppendLogsAnswer>, HttpError> {
    Ok(Json(core.append_rollout_logs(&agent, id, &request).await?))
}

async fn report_rollout(
    AgentIdentity(agent): AgentIdentity,
    State(core): State<Core>,
    Path(id): Path<i64>,
    JsonBody(request): JsonBody<ReportRollout>,
) -> Result<Json<Rollout>, HttpError> {
    Ok(Json(core.report_rollout(&agent, id, request).await?))
}

/// What the agent's host should run now: a job for every release live on it.
async fn desired(
    AgentIdentity(agent): AgentIdentity,
    State(core): State<Core>,
) -> Result<Json<Desired>, HttpError> {
    Ok(Json(core.desired(&agent).await?))
}
