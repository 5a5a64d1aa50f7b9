//! Services: their settings, checked before they are stored, and their variables, secret ones
//! sealed before they reach the store.

use wharf_domain::compose::ComposePermission;
use wharf_domain::names::{
    BranchName, DnsLabel, RepoSource, check_domain, check_env_name, check_http_path,
    check_repo_path,
};
use wharf_domain::preview::{check_preview_template, preview_environment};
use wharf_store::{NewService, StoredEnv};
use wharf_wire::{
    CreateService, DeploySettings, EnvVar, PreviewSettings, Service, SetEnv, Strategy,
    UpdateService, VariableMembers,
};

use crate::core::sealing::{preview_variable_context, variable_context};
use crate::core::{Core, CoreError, now_millis};

/// The longest value a variable may hold.
const MAX_ENV_VALUE: usize = 64 * 1024;

impl Core {
    /// Creates a service, its settings checked first.
    pub async fn create_service(&self, request: &CreateService) -> Result<Service, CoreError> {
        let new = validate(request, self.config.local_repositories)?;
        let service = self.store.create_service(&new, now_millis()).await?;
        tracing::info!(service = %service.name, repo = %service.repo, branch = %service.branch, "service created");
        Ok(service)
    }

    /// Replaces a service's settings, checked as at creation. Its name and project are part of
    /// its images' names, so they stay.
    pub async fn update_service(
        &self,
        name: &str,
        request: &UpdateService,
    ) -> Result<Service, CoreError> {
        let current = self.store.service_by_name(name).await?;
        let new = validate(&request.service, self.config.local_repositories)?;
        if new.name != current.name {
            return Err(CoreError::Invalid(format!(
                "a service cannot be renamed ({} to {}): its name is part of its images' names",
                current.name, new.name
            )));
        }
        if new.project != current.project {
            return Err(CoreError::Invalid(format!(
                "service {} cannot move from project {} to {}: the project is part of its images' names",
                current.name, current.project, new.project
            )));
        }
        let service = self
            .store
            .update_service(current.id, &new, request.relink_repository)
            .await?;
        tracing::info!(service = %service.name, repo = %service.repo, branch = %service.branch, "service changed");
        if current.deploy.previews.enabled && !service.deploy.previews.enabled {
            self.remove_previews_of(&service).await?;
        }
        Ok(service)
    }

    pub async fn services(&self) -> Result<Vec<Service>, CoreError> {
        Ok(self.store.list_services().await?)
    }

    pub async fn service(&self, name: &str) -> Result<Service, CoreError> {
        Ok(self.store.service_by_name(name).await?)
    }

    /// Sets a variable of the service `service_name`; a secret one is sealed first. Without
    /// members named, a variable that exists keeps its members and a new one reaches the
    /// member that takes the service's traffic (`routed`, which the agent resolves when it plans
    /// the stack).
    pub async fn set_variable(
        &self,
        service_name: &str,
        request: &SetEnv,
    ) -> Result<EnvVar, CoreError> {
        let service = self.store.service_by_name(service_name).await?;
        check_env_name(&request.name)?;
        let value = request.value.expose();
        if value.len() > MAX_ENV_VALUE || value.contains('\0') {
            return Err(CoreError::Invalid(format!(
                "the value of {} must be at most 64 KiB, without NUL bytes",
                request.name
            )));
        }
        let (value, sealed) = if request.secret {
            let context = match request.preview {
                true => preview_variable_context(service.id, &request.name),
                false => variable_context(service.id, &request.name),
            };
            let sealed = self
                .config
                .sealing_key
                .seal(&context, value)
                .map_err(|error| CoreError::Internal(error.into()))?;
            (None, Some(sealed))
        } else {
            (Some(value.to_owned()), None)
        };
        let members = match &request.members {
            Some(members) => checked_members(members)?,
            None => self
                .store
                .list_env(service.id)
                .await?
                .into_iter()
                .find(|existing| {
                    existing.name == request.name && existing.preview == request.preview
                })
                .map_or(VariableMembers::Routed, |existing| existing.members),
        };
        if members == VariableMembers::Routed && service.compose.is_some() && service.port.is_none()
        {
            return Err(CoreError::Invalid(format!(
                "service {} has no port, so no member of its stack takes its traffic: say which \
                 members get {} (--member NAME, or --member all)",
                service.name, request.name
            )));
        }
        let variable = StoredEnv {
            name: request.name.clone(),
            value,
            sealed,
            secret: request.secret,
            build: request.build,
            members,
            preview: request.preview,
            updated_at: String::new(),
        };
        self.store
            .set_env(service.id, &variable, now_millis())
            .await?;
        tracing::info!(service = %service.name, variable = %request.name, secret = request.secret, members = %variable.members, preview = request.preview, "variable set");
        let stored = self
            .store
            .list_env(service.id)
            .await?
            .into_iter()
            .find(|candidate| {
                candidate.name == request.name && candidate.preview == request.preview
            })
            .ok_or_else(|| {
                CoreError::Internal(anyhow::anyhow!("a variable vanished after it was set"))
            })?;
        Ok(shown(stored))
    }

    /// The service's variables as users see them: secret values withheld.
    pub async fn variables(&self, service_name: &str) -> Result<Vec<EnvVar>, CoreError> {
        let service = self.store.service_by_name(service_name).await?;
        let variables = self.store.list_env(service.id).await?;
        Ok(variables.into_iter().map(shown).collect())
    }

    /// Removes a variable of the service, or of its previews; answers the variables left.
    pub async fn unset_variable(
        &self,
        service_name: &str,
        variable: &str,
        preview: bool,
    ) -> Result<Vec<EnvVar>, CoreError> {
        let service = self.store.service_by_name(service_name).await?;
        self.store.unset_env(service.id, variable, preview).await?;
        self.variables(service_name).await
    }

    /// The variables an environment of the service `service_id` gets: the service's own, and
    /// in a preview (`preview`), the previews' ones in place of the service's of their names.
    pub(crate) async fn environment_variables(
        &self,
        service_id: i64,
        preview: bool,
    ) -> Result<Vec<StoredEnv>, CoreError> {
        let mut variables: Vec<StoredEnv> = Vec::new();
        // The service's come first, so a preview's replaces the one of its name.
        for variable in self.store.list_env(service_id).await? {
            if variable.preview {
                if !preview {
                    continue;
                }
                variables.retain(|kept| kept.name != variable.name);
            }
            variables.push(variable);
        }
        Ok(variables)
    }

    /// The value of a stored variable of the service `service_id`, a secret one opened; `None`
    /// for a row that holds neither.
    pub(crate) fn variable_value(
        &self,
        service_id: i64,
        variable: &StoredEnv,
    ) -> Result<Option<String>, CoreError> {
        match (variable.secret, &variable.value, &variable.sealed) {
            (false, Some(value), _) => Ok(Some(value.clone())),
            (true, _, Some(sealed)) => {
                let context = match variable.preview {
                    true => preview_variable_context(service_id, &variable.name),
                    false => variable_context(service_id, &variable.name),
                };
                Ok(Some(self.config.sealing_key.open(&context, sealed)?))
            }
            _ => Ok(None),
        }
    }
}

/// A stored variable as users see it: a secret one without its value.
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
        members: variable.members,
        preview: variable.preview,
        updated_at: variable.updated_at,
    }
}

/// The members a request names, each a compose service name (a DNS label), none twice.
fn checked_members(members: &VariableMembers) -> Result<VariableMembers, CoreError> {
    if let VariableMembers::Named(names) = members {
        if names.is_empty() {
            return Err(CoreError::Invalid(
                "name at least one member, or \"all\"".to_owned(),
            ));
        }
        for (index, name) in names.iter().enumerate() {
            DnsLabel::parse("compose service name", name)?;
            if names[..index].contains(name) {
                return Err(CoreError::Invalid(format!(
                    "the member {name} is named twice"
                )));
            }
        }
    }
    Ok(members.clone())
}

/// Checks every field and gives the store what it stores. A repository on a local path is
/// refused unless `local_repositories` (the server of `wharf up`).
fn validate(request: &CreateService, local_repositories: bool) -> Result<NewService, CoreError> {
    let name = DnsLabel::parse("service name", &request.name)?;
    let project = DnsLabel::parse(
        "project name",
        request.project.as_deref().unwrap_or("default"),
    )?;
    let source = RepoSource::parse(&request.repo)?;
    if matches!(source, RepoSource::LocalPath(_)) && !local_repositories {
        return Err(CoreError::Invalid(format!(
            "{} is a path on the server's machine: only `wharf up` builds local repositories (with its own agent); \
             use owner/name or an https:// URL",
            request.repo
        )));
    }
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
        return Err(CoreError::Invalid(
            "port must be between 1 and 65535".to_owned(),
        ));
    }
    if request.dockerfile.is_some() && request.compose.is_some() {
        return Err(CoreError::Invalid(
            "give either a Dockerfile or a compose file, not both".to_owned(),
        ));
    }
    let deploy = request.deploy.clone().unwrap_or_default();
    check_deploy_settings(&deploy, request.port, request.compose.is_some())?;
    check_preview_settings(&deploy.previews, &name, request.domain.as_deref())?;
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
        build_network: request.build_network,
        deploy,
    })
}

fn check_preview_settings(
    previews: &PreviewSettings,
    service: &DnsLabel,
    domain: Option<&str>,
) -> Result<(), CoreError> {
    let bad = |message: String| Err(CoreError::Invalid(message));
    if let Some(template) = &previews.domain {
        check_preview_template(template, &service.to_string(), domain)?;
    }
    if previews.enabled {
        // The longest pull request number GitHub hands out for years still fits.
        preview_environment(&service.to_string(), 999_999).map_err(|_| {
            CoreError::Invalid(format!(
                "service name {service} is too long for previews: its preview environments \
                 ({service}-pr-N) must be DNS labels of at most 63 characters"
            ))
        })?;
    }
    if !(1..=100).contains(&previews.limit) {
        return bad("the preview limit must be between 1 and 100".to_owned());
    }
    if previews.ttl_ms < 60_000 {
        return bad("the preview time-to-live must be at least a minute".to_owned());
    }
    check_hosts(&previews.hosts)?;
    if let Some(label) = &previews.label
        && (label.trim().is_empty() || label.len() > 50)
    {
        return bad(format!(
            "invalid preview label {label:?}: 1 to 50 characters"
        ));
    }
    Ok(())
}

/// Agent names or `label:NAME`.
fn check_hosts(hosts: &[String]) -> Result<(), CoreError> {
    for host in hosts {
        let name = host.strip_prefix("label:").unwrap_or(host);
        if name.is_empty()
            || name.len() > 63
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(CoreError::Invalid(format!(
                "host {host:?} is neither an agent name nor label:NAME (letters, digits, '-', '_')"
            )));
        }
    }
    Ok(())
}

fn check_deploy_settings(
    deploy: &DeploySettings,
    port: Option<u16>,
    compose: bool,
) -> Result<(), CoreError> {
    let bad = |message: String| Err(CoreError::Invalid(message));
    DnsLabel::parse("environment", &deploy.environment)?;
    check_hosts(&deploy.hosts)?;
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
