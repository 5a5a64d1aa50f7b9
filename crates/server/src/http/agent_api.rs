//! `/v1/agent/…`: what agents call, authenticated by their own tokens: register, claim a build
//! by long-poll, heartbeat, report progress, and fetch clone credentials.

use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::ExposeSecret;
use wharf_domain::names::RepoSource;
use wharf_store::{RolloutReport, StateReport};
use wharf_wire::{
    AgentSettings, AppendLogs, AppendLogsAnswer, Build, BuildArg, BuildJob, BuildSecret, Claim,
    ClaimBuild, CloneCredentials, Heartbeat, HeartbeatAnswer, RegisterAgent, RegistryLogin,
    ReportBuildState, SecretText, format_millis,
};
use wharf_wire::{ClaimRollout, Desired, ReleaseState, ReportRollout, Rollout, RolloutClaim};

use crate::core::{Core, now_millis};
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
        .route("/v1/agent/desired", get(desired))
}

/// Claimers look at the queue at least this often even without a wake-up, which covers builds
/// queued by another server replica and builds returned by lease expiry elsewhere.
const CLAIM_RECHECK: Duration = Duration::from_secs(1);

async fn register(
    AgentIdentity(agent): AgentIdentity,
    State(state): State<Core>,
    JsonBody(request): JsonBody<RegisterAgent>,
) -> Result<Json<AgentSettings>, HttpError> {
    let labels: Vec<String> = request
        .labels
        .iter()
        .map(|label| label.trim().to_owned())
        .filter(|label| !label.is_empty())
        .collect();
    if labels.iter().any(|label| {
        label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) {
        return Err(HttpError::BadRequest(
            "labels are letters, digits, '-' and '_', at most 63 each".to_owned(),
        ));
    }
    let short = |value: &Option<String>| {
        value
            .as_deref()
            .map(|text| text.chars().take(200).collect::<String>())
    };
    let agent = state
        .store
        .register_agent(
            agent.id,
            &labels,
            short(&request.version).as_deref(),
            short(&request.hostname).as_deref(),
            now_millis(),
        )
        .await?;
    tracing::info!(agent = %agent.name, labels = ?agent.labels, "agent registered");
    // A (re)starting agent runs nothing: the rollouts it was in the middle of start over.
    let reset = state.store.reset_rollouts(agent.id, now_millis()).await?;
    if !reset.is_empty() {
        tracing::warn!(agent = %agent.name, rollouts = ?reset, "agent restarted mid-rollout; rollouts start over");
        state.signals.releases.notify();
    }
    let lease_ms = state.config.lease.as_millis() as u64;
    Ok(Json(AgentSettings {
        agent,
        lease_ms,
        // Heartbeats also carry cancellations to the agent, so they come often whatever the lease.
        heartbeat_ms: (lease_ms / 3).clamp(100, 2000),
    }))
}

async fn claim(
    AgentIdentity(agent): AgentIdentity,
    State(state): State<Core>,
    JsonBody(request): JsonBody<ClaimBuild>,
) -> Result<Json<Claim>, HttpError> {
    let wait = Duration::from_millis(request.wait_ms).min(state.config.max_claim_wait);
    let deadline = Instant::now() + wait;
    let mut wake_ups = state.signals.queue.subscribe();
    let lease_ms = state.config.lease.as_millis() as i64;
    let _waiting = state.metrics.claim_waiting();
    loop {
        // Marking the current version seen before looking means a build queued after this
        // point always wakes the wait below.
        wake_ups.borrow_and_update();
        if let Some(claimed) = state
            .store
            .claim_build(agent.id, lease_ms, now_millis())
            .await?
        {
            state.signals.github_reports.notify();
            state
                .metrics
                .observe_claim_latency(claimed.queued_for_ms.max(0) as f64 / 1000.0);
            let service = state.store.service_by_id(claimed.build.service_id).await?;
            let clone_url = match RepoSource::parse(&service.repo)? {
                RepoSource::PublicUrl(url) => Some(url),
                RepoSource::GitHub(_) => None,
            };
            let registry_login = match claimed.build.installation_id {
                Some(installation_id) => registry_login(&state, installation_id).await?,
                None => None,
            };
            let (build_args, build_secrets) = match build_variables(&state, service.id).await {
                Ok(variables) => variables,
                Err(error) => {
                    // The build cannot run without its secrets: it fails with the reason, and
                    // this agent looks for other work.
                    tracing::error!(build = claimed.build.id, %error, "cannot hand out the build's secrets");
                    let report = StateReport {
                        agent_id: agent.id,
                        build_id: claimed.build.id,
                        state: wharf_wire::BuildState::Failed,
                        reason: Some(format!("{error}")),
                        image: None,
                        digest: None,
                        failure: None,
                        images: Vec::new(),
                        compose_file: None,
                    };
                    state
                        .store
                        .report_build_state(&report, now_millis())
                        .await?;
                    continue;
                }
            };
            tracing::info!(build = claimed.build.id, agent = %agent.name, attempt = claimed.build.attempt, "build claimed");
            return Ok(Json(Claim {
                job: Some(BuildJob {
                    build: claimed.build,
                    service,
                    clone_url,
                    lease_expires_at: format_millis(claimed.lease_expires_at),
                    build_args,
                    build_secrets,
                    registry_login,
                }),
            }));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Json(Claim { job: None }));
        }
        let pause = (deadline - now).min(CLAIM_RECHECK);
        let _ = tokio::time::timeout(pause, wake_ups.changed()).await;
    }
}

/// The service's build-time variables: plain ones as build arguments, secret ones opened for
/// the agent as build secrets.
async fn build_variables(
    state: &Core,
    service_id: i64,
) -> Result<(Vec<BuildArg>, Vec<BuildSecret>), HttpError> {
    let mut args = Vec::new();
    let mut secrets = Vec::new();
    for variable in state.store.list_env(service_id).await? {
        if !variable.build {
            continue;
        }
        match (variable.secret, variable.value, variable.sealed) {
            (false, Some(value), _) => args.push(BuildArg {
                name: variable.name,
                value,
            }),
            (true, _, Some(sealed)) => {
                let value = state.config.sealing_key.open(
                    &crate::http::services::seal_context(service_id, &variable.name),
                    &sealed,
                )?;
                secrets.push(BuildSecret {
                    name: variable.name,
                    value: SecretText::new(value),
                });
            }
            _ => {}
        }
    }
    Ok((args, secrets))
}

/// The registry credentials of an installation, opened for the agent that builds for it.
pub(crate) async fn registry_login(
    state: &Core,
    installation_id: i64,
) -> Result<Option<RegistryLogin>, HttpError> {
    let Some((username, sealed)) = state.store.registry_credentials(installation_id).await? else {
        return Ok(None);
    };
    let password = state
        .config
        .sealing_key
        .open(&registry_login_context(installation_id), &sealed)?;
    Ok(Some(RegistryLogin {
        username,
        password: SecretText::new(password),
    }))
}

/// The context an installation's registry password is sealed under.
pub(crate) fn registry_login_context(installation_id: i64) -> String {
    format!("registry-login/{installation_id}")
}

async fn heartbeat(
    AgentIdentity(agent): AgentIdentity,
    State(state): State<Core>,
    JsonBody(request): JsonBody<Heartbeat>,
) -> Result<Json<HeartbeatAnswer>, HttpError> {
    if request.builds.len() > 1000 {
        return Err(HttpError::BadRequest(
            "at most 1000 builds per heartbeat".to_owned(),
        ));
    }
    let stop = state
        .store
        .heartbeat(
            agent.id,
            &request.builds,
            state.config.lease.as_millis() as i64,
            now_millis(),
        )
        .await?;
    Ok(Json(HeartbeatAnswer { stop }))
}

async fn report_state(
    AgentIdentity(agent): AgentIdentity,
    State(state): State<Core>,
    Path(id): Path<i64>,
    JsonBody(request): JsonBody<ReportBuildState>,
) -> Result<Json<Build>, HttpError> {
    let reason = request
        .reason
        .map(|reason| reason.chars().take(2000).collect::<String>());
    let build = state
        .store
        .report_build_state(
            &StateReport {
                agent_id: agent.id,
                build_id: id,
                state: request.state,
                reason,
                image: request.image,
                digest: request.digest,
                failure: request.failure.map(|mut failure| {
                    failure.output_tail.truncate(100);
                    failure
                }),
                images: request.images.into_iter().take(100).collect(),
                compose_file: request
                    .compose_file
                    .filter(|text| text.len() <= wharf_domain::compose::MAX_COMPOSE_BYTES),
            },
            now_millis(),
        )
        .await?;
    state.signals.logs.notify();
    if build.state == wharf_wire::BuildState::Completed {
        state.signals.releases.notify();
    }
    state.signals.github_reports.notify();
    tracing::info!(build = id, agent = %agent.name, state = %build.state, "build state reported");
    Ok(Json(build))
}

async fn append_logs(
    AgentIdentity(agent): AgentIdentity,
    State(state): State<Core>,
    Path(id): Path<i64>,
    JsonBody(request): JsonBody<AppendLogs>,
) -> Result<Json<AppendLogsAnswer>, HttpError> {
    if request.lines.len() > 10_000 {
        return Err(HttpError::BadRequest(
            "at most 10,000 lines per request".to_owned(),
        ));
    }
    let outcome = state
        .store
        .append_logs(
            id,
            agent.id,
            &request.lines,
            state.config.max_log_bytes,
            now_millis(),
        )
        .await?;
    if outcome.stored > 0 || outcome.truncated {
        state.signals.logs.notify();
    }
    Ok(Json(AppendLogsAnswer {
        truncated: outcome.truncated,
    }))
}

async fn clone_credentials(
    AgentIdentity(agent): AgentIdentity,
    State(state): State<Core>,
    Path(id): Path<i64>,
) -> Result<Json<CloneCredentials>, HttpError> {
    let build = state.store.build(id).await?;
    if build.agent.as_deref() != Some(agent.name.as_str()) || !build.state.is_leased() {
        return Err(HttpError::Conflict(format!(
            "build #{id} is not leased to this agent"
        )));
    }
    let service = state.store.service_by_id(build.service_id).await?;
    match RepoSource::parse(&service.repo)? {
        RepoSource::PublicUrl(url) => Ok(Json(CloneCredentials {
            clone_url: url,
            token: None,
            expires_at: None,
        })),
        RepoSource::GitHub(repo) => {
            let app = state.github_app().ok_or_else(|| {
                HttpError::Unavailable("the GitHub App is not configured on the server".to_owned())
            })?;
            let installation_id = build.installation_id.ok_or_else(|| {
                HttpError::Conflict(format!(
                    "build #{id} has no GitHub App installation to clone with"
                ))
            })? as u64;
            let repository = app
                .repository(installation_id, repo.owner(), repo.name())
                .await
                .map_err(|error| HttpError::BadGateway(error.to_string()))?;
            let token = app
                .installation_token(installation_id)
                .await
                .map_err(|error| HttpError::BadGateway(error.to_string()))?;
            Ok(Json(CloneCredentials {
                clone_url: repository.clone_url,
                token: Some(SecretText::new(token.token.expose_secret())),
                expires_at: Some(format_millis(token.expires_at * 1000)),
            }))
        }
    }
}

async fn claim_rollout(
    AgentIdentity(agent): AgentIdentity,
    State(state): State<Core>,
    JsonBody(request): JsonBody<ClaimRollout>,
) -> Result<Json<RolloutClaim>, HttpError> {
    let wait = Duration::from_millis(request.wait_ms).min(state.config.max_claim_wait);
    let deadline = Instant::now() + wait;
    let mut wake_ups = state.signals.releases.subscribe();
    loop {
        wake_ups.borrow_and_update();
        if let Some(claimed) = state.store.claim_rollout(agent.id, now_millis()).await? {
            state.signals.releases.notify();
            match crate::core::release_scheduler::rollout_job(&state, claimed).await {
                Ok(job) => {
                    tracing::info!(rollout = claimed.rollout_id, release = claimed.release_id, agent = %agent.name, "rollout claimed");
                    return Ok(Json(RolloutClaim { job: Some(job) }));
                }
                Err(error) => {
                    // Without its secrets the release cannot run: it fails with the reason, and
                    // nothing on the host was touched.
                    tracing::error!(rollout = claimed.rollout_id, %error, "cannot hand out the rollout");
                    let mut report = RolloutReport {
                        agent_id: agent.id,
                        rollout_id: claimed.rollout_id,
                        state: ReleaseState::Failed,
                        reason: Some(error.to_string()),
                        probes: Vec::new(),
                        log_tail: Vec::new(),
                    };
                    report.reason = report
                        .reason
                        .map(|reason| reason.chars().take(2000).collect());
                    state.store.report_rollout(&report, now_millis()).await?;
                    continue;
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Json(RolloutClaim { job: None }));
        }
        let pause = (deadline - now).min(CLAIM_RECHECK);
        let _ = tokio::time::timeout(pause, wake_ups.changed()).await;
    }
}

async fn report_rollout(
    AgentIdentity(agent): AgentIdentity,
    State(state): State<Core>,
    Path(id): Path<i64>,
    JsonBody(request): JsonBody<ReportRollout>,
) -> Result<Json<Rollout>, HttpError> {
    let line = |text: String| text.chars().take(2000).collect::<String>();
    let rollout = state
        .store
        .report_rollout(
            &RolloutReport {
                agent_id: agent.id,
                rollout_id: id,
                state: request.state,
                reason: request.reason.map(line),
                probes: request.probes.into_iter().rev().take(50).rev().collect(),
                log_tail: request
                    .log_tail
                    .into_iter()
                    .rev()
                    .take(100)
                    .rev()
                    .map(line)
                    .collect(),
            },
            now_millis(),
        )
        .await?;
    state.signals.releases.notify();
    state.signals.github_reports.notify();
    tracing::info!(rollout = id, release = rollout.release_id, agent = %agent.name, state = %rollout.state, reason = rollout.reason.as_deref().unwrap_or(""), "rollout state reported");
    Ok(Json(rollout))
}

/// What the agent's host should run now: a job for every release live on it.
async fn desired(
    AgentIdentity(agent): AgentIdentity,
    State(state): State<Core>,
) -> Result<Json<Desired>, HttpError> {
    let mut live = Vec::new();
    for rollout in state.store.live_rollouts(agent.id).await? {
        live.push(crate::core::release_scheduler::rollout_job(&state, rollout).await?);
    }
    let rolling_out = state.store.rolling_out_releases(agent.id).await?;
    Ok(Json(Desired { live, rolling_out }))
}
