//! The release scheduler, which turns completed builds into releases, and the jobs agents
//! receive for a release's rollouts.
//!
//! The scheduler reads builds the store marked `release_pending` when they completed, so a
//! crash between "build completed" and "release created" loses nothing: the mark and the
//! release are written in one transaction. Several replicas may run it at once; the mark is a
//! compare-and-set.

use tokio::sync::watch;
use wharf_domain::agents::AgentScope;
use wharf_domain::deployment::environment_url;
use wharf_domain::names::{image_registry, image_repository};
use wharf_domain::preview::{PreviewStatus, images_to_remove, preview_host, preview_number};
use wharf_store::{NewRelease, RolloutRef};
use wharf_wire::{
    Agent, Build, EnvVarValue, Release, ReleaseTrigger, RolloutJob, ScopedEnvVarValue, SecretText,
    Service, VariableMembers,
};

use crate::core::{Core, CoreError, jobs, now_millis};

/// Turns completed builds into releases, and removes torn-down environments' images from the
/// registry, until shutdown.
pub(crate) async fn run(core: Core, mut shutdown: watch::Receiver<bool>) {
    let mut wake_ups = core.signals.releases.subscribe();
    loop {
        wake_ups.borrow_and_update();
        if let Err(error) = schedule(&core).await {
            tracing::error!(%error, "release scheduling failed; trying again shortly");
        }
        if let Err(error) = core.clean_torn_down_images().await {
            tracing::error!(%error, "removing torn-down images from the registry failed; trying again shortly");
        }
        tokio::select! {
            _ = wake_ups.changed() => {}
            _ = tokio::time::sleep(core.config.lease_check_interval) => {}
            _ = jobs::stopped(&mut shutdown) => return,
        }
    }
}

/// One pass: every completed build not looked at yet becomes a release, when its service
/// deploys automatically, it built the tracked branch, and no newer build completed since.
async fn schedule(core: &Core) -> Result<(), CoreError> {
    for build_id in core.store.builds_awaiting_release(100).await? {
        let build = core.store.build(build_id).await?;
        let service = core.store.service_by_id(build.service_id).await?;
        let newest = core
            .store
            .latest_completed_build(service.id, &build.environment)
            .await?;
        let preview = preview_number(&service.name, &build.environment).is_some();
        let release = if preview {
            preview_release(core, &service, &build, newest).await?
        } else if !service.deploy.auto_deploy {
            tracing::info!(build = build.id, service = %service.name, "auto-deploy is off; not releasing");
            None
        } else if build.branch.as_deref() != Some(service.branch.as_str()) {
            None
        } else if newest.is_some_and(|newest| newest > build.id) {
            tracing::info!(build = build.id, service = %service.name, "a newer build completed; not releasing this one");
            None
        } else {
            match new_release(&service, &build, ReleaseTrigger::Build) {
                Ok(release) => Some(release),
                Err(error) => {
                    tracing::warn!(build = build.id, service = %service.name, %error, "not releasing this build");
                    None
                }
            }
        };
        if let Some(release) = core
            .store
            .release_build(build.id, release.as_ref(), now_millis())
            .await?
        {
            announce(core, &release);
        }
    }
    Ok(())
}

/// The release of a preview's completed build: only while the preview is open, of its head
/// commit, and when no newer build of it completed.
async fn preview_release(
    core: &Core,
    service: &Service,
    build: &Build,
    newest: Option<i64>,
) -> Result<Option<NewRelease>, CoreError> {
    let Some(preview) = core
        .store
        .preview_of_environment(service.id, &build.environment)
        .await?
    else {
        return Ok(None);
    };
    let open = PreviewStatus::parse(&preview.state) == PreviewStatus::Open;
    if !open
        || preview.head_sha != build.commit_sha
        || newest.is_some_and(|newest| newest > build.id)
    {
        tracing::info!(build = build.id, service = %service.name, environment = %build.environment, "the preview moved on; not releasing this build");
        return Ok(None);
    }
    match new_release(service, build, ReleaseTrigger::Build) {
        Ok(release) => Ok(Some(release)),
        Err(error) => {
            tracing::warn!(build = build.id, service = %service.name, %error, "not releasing this build");
            Ok(None)
        }
    }
}

/// A release of a completed build's image.
pub(crate) fn new_release(
    service: &Service,
    build: &Build,
    trigger: ReleaseTrigger,
) -> Result<NewRelease, CoreError> {
    let image = build_image(build).ok_or_else(|| {
        CoreError::Conflict(format!("build #{} has no pushed image to deploy", build.id))
    })?;
    Ok(NewRelease {
        build_id: Some(build.id),
        environment: build.environment.clone(),
        hosts: environment_hosts(service, &build.environment),
        ..image_release(service, image, trigger)
    })
}

/// The hosts an environment of the service runs on: a preview's own when the service names
/// them, else the service's.
pub(crate) fn environment_hosts(service: &Service, environment: &str) -> Vec<String> {
    let previews = &service.deploy.previews;
    if preview_number(&service.name, environment).is_some() && !previews.hosts.is_empty() {
        previews.hosts.clone()
    } else {
        service.deploy.hosts.clone()
    }
}

/// A release of `image` as the service is set up now.
pub(crate) fn image_release(
    service: &Service,
    image: String,
    trigger: ReleaseTrigger,
) -> NewRelease {
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

/// The reference hosts pull for a build: its repository pinned by digest, so what runs is
/// exactly what was built even if the tag moves. A compose build pushed one image per compose
/// service and has no single image: its release names them all (`web=…@sha256:…
/// worker=…@sha256:…`), and the rollout job hands them to the agent one by one.
fn build_image(build: &Build) -> Option<String> {
    if build.compose_file.is_some() {
        let pinned = compose_images(build);
        return (!pinned.is_empty()).then(|| {
            pinned
                .iter()
                .map(|(component, image)| format!("{component}={image}"))
                .collect::<Vec<_>>()
                .join(" ")
        });
    }
    let image = build.image.as_deref()?;
    match &build.digest {
        Some(digest) => Some(format!("{}@{digest}", image_repository(image))),
        None => Some(image.to_owned()),
    }
}

/// A compose build's images, each pinned by digest: (compose service, image@digest).
fn compose_images(build: &Build) -> Vec<(String, String)> {
    build
        .images
        .iter()
        .filter_map(|image| {
            let component = image.component.clone()?;
            Some((
                component,
                format!("{}@{}", image_repository(&image.image), image.digest),
            ))
        })
        .collect()
}

/// Logs a new release and wakes the agents that wait for rollouts.
pub(crate) fn announce(core: &Core, release: &Release) {
    tracing::info!(
        release = release.id,
        service = %release.service,
        image = %release.image,
        state = %release.state,
        hosts = release.rollouts.len(),
        "release created"
    );
    core.signals.releases.notify();
    core.signals.states.notify();
}

/// Everything `agent` needs to run `rollout` on its host, when its token serves the release's
/// service: checked before any secret is opened.
pub(crate) async fn rollout_job(
    core: &Core,
    agent: &Agent,
    rollout: RolloutRef,
) -> Result<RolloutJob, CoreError> {
    let release = core.store.release(rollout.release_id).await?;
    let service = core.store.service_by_id(release.service_id).await?;
    if !AgentScope::of(agent).serves(&service.project, &service.name) {
        return Err(CoreError::Forbidden(format!(
            "agent {}'s token does not serve the service {} (project {})",
            agent.name, service.name, service.project
        )));
    }
    if release.trigger.takes_down() {
        return teardown_job(core, rollout, release, service).await;
    }
    let preview = match preview_number(&service.name, &release.environment) {
        Some(_) => {
            core.store
                .preview_of_environment(service.id, &release.environment)
                .await?
        }
        None => None,
    };
    let build = match release.build_id {
        Some(id) => Some(core.store.build(id).await?),
        None => None,
    };
    // The build's installation login goes with the release of its images, for the registry
    // they were pushed to and no other: a release of an image alone gets none.
    let pushed_to = build.as_ref().and_then(|build| {
        let image = build
            .image
            .as_deref()
            .or_else(|| build.images.first().map(|image| image.image.as_str()))?;
        Some((build.installation_id?, image_registry(image)))
    });
    let registry_login = match pushed_to {
        Some((installation_id, registry)) => {
            core.registry_login(installation_id, Some(registry)).await?
        }
        None => None,
    };
    let compose = build
        .as_ref()
        .and_then(|build| build.compose_file.clone().map(|file| (file, build)));
    let (compose_file, compose_images) = match compose {
        Some((file, build)) => (Some(file), compose_images(build)),
        None => (None, Vec::new()),
    };
    // A fork's preview runs code no one who may push wrote: it gets no secret.
    let secrets = !preview.as_ref().is_some_and(|preview| preview.from_fork);
    let (mut env, scoped_env) = runtime_env(
        core,
        service.id,
        compose_file.is_some(),
        secrets,
        preview.is_some(),
    )
    .await?;
    let domains = match &preview {
        Some(preview) => {
            let host = preview_domain(&service, preview.number);
            env.extend(preview_env(
                preview.number,
                host.as_deref(),
                &core.config.app_url_scheme,
            ));
            host.into_iter().collect()
        }
        None => service.host_names().map(str::to_owned).collect(),
    };
    Ok(RolloutJob {
        rollout_id: rollout.rollout_id,
        release_id: release.id,
        service: service.name.clone(),
        environment: release.environment.clone(),
        project: service.project.clone(),
        image: release.image,
        port: service.port,
        domains,
        health_path: service.health_path.clone(),
        env,
        scoped_env,
        settings: service.deploy,
        registry_login,
        compose_file,
        compose_images,
        teardown: false,
        keep_volumes: false,
        remove_images: Vec::new(),
    })
}

/// The job of a teardown's (or a stop's) rollout: the environment named, nothing to run, and
/// the images only it used for the host to remove.
async fn teardown_job(
    core: &Core,
    rollout: RolloutRef,
    release: Release,
    service: Service,
) -> Result<RolloutJob, CoreError> {
    let (ran, others) = core
        .store
        .environment_images(service.id, &release.environment)
        .await?;
    let remove_images = images_to_remove(&ran, &others);
    Ok(RolloutJob {
        rollout_id: rollout.rollout_id,
        release_id: release.id,
        service: service.name.clone(),
        environment: release.environment.clone(),
        project: service.project.clone(),
        image: String::new(),
        port: service.port,
        domains: Vec::new(),
        health_path: None,
        env: Vec::new(),
        scoped_env: Vec::new(),
        settings: service.deploy,
        registry_login: None,
        compose_file: None,
        compose_images: Vec::new(),
        teardown: true,
        keep_volumes: release.trigger == ReleaseTrigger::Stop,
        remove_images,
    })
}

/// The host name of a service's preview of pull request `number`, when it routes one.
pub(crate) fn preview_domain(service: &Service, number: i64) -> Option<String> {
    let number = u64::try_from(number).ok()?;
    preview_host(
        service.deploy.previews.domain.as_deref(),
        &service.name,
        service.domain.as_deref(),
        number,
    )
    .ok()
    .flatten()
}

/// The variables every preview's containers get besides the service's.
fn preview_env(number: i64, host: Option<&str>, scheme: &str) -> Vec<EnvVarValue> {
    let plain = |name: &str, value: String| EnvVarValue {
        name: name.to_owned(),
        value: SecretText::new(value),
        secret: false,
    };
    let mut env = vec![
        plain("WHARF_PREVIEW", "true".to_owned()),
        plain("WHARF_PR_NUMBER", number.to_string()),
    ];
    if let Some(url) = environment_url(scheme, host) {
        env.push(plain("WHARF_PREVIEW_URL", url));
    }
    env
}

/// The service's variables (a preview's with its own in place of the service's of their names)
/// with their values, secrets opened (or left out, without `secrets`), for the containers it
/// runs:
/// those for every container, and a stack's for some of its members only. A service that is
/// not a stack runs one container, which gets them all.
async fn runtime_env(
    core: &Core,
    service_id: i64,
    stack: bool,
    secrets: bool,
    preview: bool,
) -> Result<(Vec<EnvVarValue>, Vec<ScopedEnvVarValue>), CoreError> {
    let mut env = Vec::new();
    let mut scoped_env = Vec::new();
    for variable in core.environment_variables(service_id, preview).await? {
        if variable.secret && !secrets {
            continue;
        }
        let Some(value) = core.variable_value(service_id, &variable)? else {
            continue;
        };
        let value = SecretText::new(value);
        match variable.members {
            VariableMembers::All => env.push(EnvVarValue {
                name: variable.name,
                value,
                secret: variable.secret,
            }),
            _ if !stack => env.push(EnvVarValue {
                name: variable.name,
                value,
                secret: variable.secret,
            }),
            members => scoped_env.push(ScopedEnvVarValue {
                name: variable.name,
                value,
                members,
                secret: variable.secret,
            }),
        }
    }
    Ok((env, scoped_env))
}
