//! `/v1/services`: create, change and list services, and trigger a manual build of one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use wharf_domain::compose_deploy::ComposePermission;
use wharf_domain::names::{
    BranchName, CommitSha, DnsLabel, RepoSource, check_domain, check_env_name, check_http_path,
    check_repo_path,
};
use wharf_store::{NewBuild, NewService, StoredEnv};
use wharf_wire::{
    Build, BuildTrigger, CreateService, DeploySettings, EnvVar, Service, SetEnv, Strategy,
    TriggerBuild, UpdateService,
};

use crate::core::{Core, now_millis};
use crate::http::HttpError;
use crate::http::auth::Admin;
use crate::http::error::JsonBody;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/v1/services", post(create).get(list))
        .route("/v1/services/{name}", get(show).put(update))
        .route("/v1/services/{name}/builds", post(trigger))
        .route("/v1/services/{name}/env", post(set_env).get(list_env))
        .route("/v1/services/{name}/env/{variable}", delete(unset_env))
}

/// Checks every field and gives the store what it stores.
fn validate(request: &CreateService) -> Result<NewService, HttpError> {
    let name = DnsLabel::parse("service name", &request.name)?;
    let project = DnsLabel::parse(
        "project name",
        request.project.as_deref().unwrap_or("default"),
    )?;
    let source = RepoSource::parse(&request.repo)?;
    let branch = BranchName::parse(&request.branch)?;
    for (what, value) in [
        ("dockerfile path", &request.dockerfile),
        ("build context", &request.context),
        ("compose file path", &request.compose),
    ] {
        if let Some(value) = value {
            check_repo_path(what, value)?;
        }
    }
    if let Some(path) = &request.health_path {
        check_http_path("health path", path)?;
    }
    if let Some(domain) = &request.domain {
        check_domain(domain)?;
    }
    if request.port == Some(0) {
        return Err(HttpError::BadRequest(
            "port must be between 1 and 65535".to_owned(),
        ));
    }
    if request.dockerfile.is_some() && request.compose.is_some() {
        return Err(HttpError::BadRequest(
            "give either a Dockerfile or a compose file, not both".to_owned(),
        ));
    }
    let deploy = request.deploy.clone().unwrap_or_default();
    check_deploy_settings(&deploy, request.port, request.compose.is_some())?;
    Ok(NewService {
        name: name.to_string(),
        project: project.to_string(),
        repo: source.to_text(),
        repo_key: source.github_key(),
        branch: branch.to_string(),
        dockerfile: request.dockerfile.clone(),
        context: request.context.clone(),
        compose: request.compose.clone(),
        port: request.port,
        health_path: request.health_path.clone(),
        domain: request.domain.clone(),
        cancel_running: request.cancel_running,
        deploy,
    })
}

fn check_deploy_settings(
    deploy: &DeploySettings,
    port: Option<u16>,
    compose: bool,
) -> Result<(), HttpError> {
    let bad = |message: String| Err(HttpError::BadRequest(message));
    DnsLabel::parse("environment", &deploy.environment)?;
    for host in &deploy.hosts {
        let name = host.strip_prefix("label:").unwrap_or(host);
        if name.is_empty()
            || name.len() > 63
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad(format!(
                "host {host:?} is neither an agent name nor label:NAME (letters, digits, '-', '_')"
            ));
        }
    }
    if !(1..=32).contains(&deploy.replicas) {
        return bad("replicas must be between 1 and 32".to_owned());
    }
    if compose && deploy.replicas != 1 {
        return bad(
            "replicas apply to a service built from a Dockerfile: a compose stack runs one container per compose service"
                .to_owned(),
        );
    }
    if deploy.aliases.len() > 20 {
        return bad("a service takes at most 20 aliases".to_owned());
    }
    for alias in &deploy.aliases {
        check_domain(alias)?;
    }
    if deploy.strategy == Some(Strategy::BlueGreen) && port.is_none() {
        return bad(
            "blue-green needs the service's port, to move traffic to the new version".to_owned(),
        );
    }
    let health = &deploy.health;
    if !(100..=599).contains(&health.status) {
        return bad("the expected health status must be an HTTP status (100-599)".to_owned());
    }
    if health.interval_ms < 50 || health.timeout_ms < 50 {
        return bad("health interval and timeout must be at least 50 ms".to_owned());
    }
    if health.deadline_ms < health.interval_ms || health.deadline_ms > 3_600_000 {
        return bad(
            "the health deadline must be at least one interval and at most an hour".to_owned(),
        );
    }
    if deploy.drain_ms > 600_000 {
        return bad("drain must be at most 10 minutes".to_owned());
    }
    if let Some(unknown) = deploy
        .compose_allow
        .iter()
        .find(|permission| ComposePermission::parse(permission).is_none())
    {
        let known: Vec<&str> = ComposePermission::ALL.iter().map(|p| p.name()).collect();
        return bad(format!(
            "unknown compose permission {unknown:?}; known: {}",
            known.join(", ")
        ));
    }
    Ok(())
}

async fn create(
    _: Admin,
    State(state): State<Core>,
    JsonBody(request): JsonBody<CreateService>,
) -> Result<(StatusCode, Json<Service>), HttpError> {
    let new = validate(&request)?;
    let service = state.store.create_service(&new, now_millis()).await?;
    tracing::info!(service = %service.name, repo = %service.repo, branch = %service.branch, "service created");
    Ok((StatusCode::CREATED, Json(service)))
}

/// Replaces a service's settings, checked as at creation. Its name and project are part of its
/// images' names, so they stay.
async fn update(
    _: Admin,
    State(state): State<Core>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<UpdateService>,
) -> Result<Json<Service>, HttpError> {
    let current = state.store.service_by_name(&name).await?;
    let new = validate(&request.service)?;
    if new.name != current.name {
        return Err(HttpError::BadRequest(format!(
            "a service cannot be renamed ({} to {}): its name is part of its images' names",
            current.name, new.name
        )));
    }
    if new.project != current.project {
        return Err(HttpError::BadRequest(format!(
            "service {} cannot move from project {} to {}: the project is part of its images' names",
            current.name, current.project, new.project
        )));
    }
    let service = state.store.update_service(current.id, &new).await?;
    tracing::info!(service = %service.name, repo = %service.repo, branch = %service.branch, "service changed");
    Ok(Json(service))
}

async fn list(_: Admin, State(state): State<Core>) -> Result<Json<Vec<Service>>, HttpError> {
    Ok(Json(state.store.list_services().await?))
}

async fn show(
    _: Admin,
    State(state): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<Service>, HttpError> {
    Ok(Json(state.store.service_by_name(&name).await?))
}

async fn trigger(
    _: Admin,
    State(state): State<Core>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<TriggerBuild>,
) -> Result<(StatusCode, Json<Build>), HttpError> {
    let service = state.store.service_by_name(&name).await?;
    let source = RepoSource::parse(&service.repo)?;
    let installation_id = match &source {
        RepoSource::GitHub(repo) => Some(
            state
                .store
                .installation_for_repo(&repo.key())
                .await?
                .ok_or_else(|| {
                    HttpError::Conflict(format!(
                        "no installation of the GitHub App grants access to {repo}: install the App on it, \
                         or point the service at https://github.com/{repo} if it is public"
                    ))
                })?,
        ),
        RepoSource::PublicUrl(_) => None,
    };
    let commit = match &request.git_ref {
        Some(git_ref) => CommitSha::parse(git_ref)?,
        None => resolve_branch_head(&state, &service, &source, installation_id).await?,
    };
    let build = state
        .store
        .queue_build(
            &NewBuild {
                service_id: service.id,
                commit_sha: commit.to_string(),
                branch: Some(service.branch.clone()),
                trigger: BuildTrigger::Manual,
                installation_id,
                delivery_id: None,
                retry_of: None,
                max_attempts: state.config.max_attempts,
            },
            now_millis(),
        )
        .await?;
    state.signals.queue.notify();
    state.signals.github_reports.notify();
    tracing::info!(build = build.id, service = %service.name, commit = %build.commit_sha, "manual build queued");
    Ok((StatusCode::CREATED, Json(build)))
}

/// The commit the service's branch points at now.
async fn resolve_branch_head(
    state: &Core,
    service: &Service,
    source: &RepoSource,
    installation_id: Option<i64>,
) -> Result<CommitSha, HttpError> {
    let sha = match (source, installation_id) {
        (RepoSource::GitHub(repo), Some(installation_id)) => {
            let app = state.github_app().ok_or_else(|| {
                HttpError::Unavailable(
                    "the GitHub App is not configured: pass --ref SHA".to_owned(),
                )
            })?;
            app.branch_head(
                installation_id as u64,
                repo.owner(),
                repo.name(),
                &service.branch,
            )
            .await
            .map_err(|error| match error.status() {
                Some(404 | 422) => {
                    HttpError::NotFound(format!("branch {} not found in {repo}", service.branch))
                }
                _ => HttpError::BadGateway(error.to_string()),
            })?
        }
        (RepoSource::PublicUrl(url), _) => ls_remote(url, &service.branch).await?,
        (RepoSource::GitHub(repo), None) => {
            return Err(HttpError::Conflict(format!(
                "no installation grants access to {repo}"
            )));
        }
    };
    Ok(CommitSha::parse(&sha)?)
}

/// Asks a public repository for its branch head, never prompting.
async fn ls_remote(url: &str, branch: &str) -> Result<String, HttpError> {
    use wharf_runtime::git::{BranchHeadError, branch_head};
    branch_head(url, branch, std::time::Duration::from_secs(30))
        .await
        .map_err(|error| match error {
            BranchHeadError::Spawn(error) => {
                HttpError::Internal(anyhow::anyhow!("cannot run git: {error}"))
            }
            BranchHeadError::NoSuchBranch { .. } => HttpError::NotFound(error.to_string()),
            BranchHeadError::TimedOut { .. } | BranchHeadError::Failed { .. } => {
                HttpError::BadGateway(error.to_string())
            }
        })
}

/// The context a secret of a service is sealed under: it binds the value to its row.
pub(crate) fn seal_context(service_id: i64, name: &str) -> String {
    format!("service-env/{service_id}/{name}")
}

fn shown(variable: StoredEnv) -> EnvVar {
    EnvVar {
        name: variable.name,
        value: if variable.secret {
            None
        } else {
            variable.value
        },
        secret: variable.secret,
        build: variable.build,
        updated_at: variable.updated_at,
    }
}

/// The longest value a variable may hold.
const MAX_ENV_VALUE: usize = 64 * 1024;

async fn set_env(
    _: Admin,
    State(state): State<Core>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<SetEnv>,
) -> Result<(StatusCode, Json<EnvVar>), HttpError> {
    let service = state.store.service_by_name(&name).await?;
    check_env_name(&request.name)?;
    let value = request.value.expose();
    if value.len() > MAX_ENV_VALUE || value.contains('\0') {
        return Err(HttpError::BadRequest(format!(
            "the value of {} must be at most 64 KiB, without NUL bytes",
            request.name
        )));
    }
    let variable = if request.secret {
        let sealed = state
            .config
            .sealing_key
            .seal(&seal_context(service.id, &request.name), value)
            .map_err(|error| HttpError::Internal(error.into()))?;
        StoredEnv {
            name: request.name.clone(),
            value: None,
            sealed: Some(sealed),
            secret: true,
            build: request.build,
            updated_at: String::new(),
        }
    } else {
        StoredEnv {
            name: request.name.clone(),
            value: Some(value.to_owned()),
            sealed: None,
            secret: false,
            build: request.build,
            updated_at: String::new(),
        }
    };
    state
        .store
        .set_env(service.id, &variable, now_millis())
        .await?;
    tracing::info!(service = %service.name, variable = %request.name, secret = request.secret, "variable set");
    let stored = state
        .store
        .list_env(service.id)
        .await?
        .into_iter()
        .find(|candidate| candidate.name == request.name)
        .ok_or_else(|| {
            HttpError::Internal(anyhow::anyhow!("a variable vanished after it was set"))
        })?;
    Ok((StatusCode::OK, Json(shown(stored))))
}

async fn list_env(
    _: Admin,
    State(state): State<Core>,
    Path(name): Path<String>,
) -> Result<Json<Vec<EnvVar>>, HttpError> {
    let service = state.store.service_by_name(&name).await?;
    let variables = state.store.list_env(service.id).await?;
    Ok(Json(variables.into_iter().map(shown).collect()))
}

async fn unset_env(
    _: Admin,
    State(state): State<Core>,
    Path((name, variable)): Path<(String, String)>,
) -> Result<Json<Vec<EnvVar>>, HttpError> {
    let service = state.store.service_by_name(&name).await?;
    state.store.unset_env(service.id, &variable).await?;
    let variables = state.store.list_env(service.id).await?;
    Ok(Json(variables.into_iter().map(shown).collect()))
}
