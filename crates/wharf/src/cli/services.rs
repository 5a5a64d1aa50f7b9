//! `wharf service`: create, change, show and list services, and rotate their deploy secret.

use anyhow::Context;
use wharf_client::ApiClient;
use wharf_wire::{
    CreateService, DeploySettings, ListServices, RotateDeploySecret, ShowService, Strategy,
    UpdateService,
};

use super::args::{DeployFlags, ServiceCommand};
use super::render::{print_list, print_one, service_summary, services_table};

/// Runs one `wharf service` verb.
pub(super) async fn run(client: &ApiClient, command: ServiceCommand) -> anyhow::Result<()> {
    match command {
        ServiceCommand::Create {
            name,
            repo,
            branch,
            project,
            dockerfile,
            context,
            compose,
            port,
            health_path,
            domain,
            cancel_running,
            deploy,
            json,
        } => {
            let service = client
                .send(&CreateService {
                    name,
                    project,
                    repo,
                    branch,
                    dockerfile,
                    context,
                    compose,
                    port,
                    health_path,
                    domain,
                    cancel_running,
                    deploy: Some(deploy.apply(DeploySettings::default())?),
                })
                .await?;
            print_one(&service, json, |service| {
                format!(
                    "Created service {} ({}, branch {}) in project {}\n",
                    service.name, service.repo, service.branch, service.project
                )
            })
        }
        ServiceCommand::Update {
            name,
            repo,
            branch,
            dockerfile,
            context,
            compose,
            port,
            health_path,
            domain,
            cancel_running,
            deploy,
            json,
        } => {
            let current = client.send(&ShowService { name: name.clone() }).await?;
            // Given: set; given empty: cleared; not given: as it is.
            let optional = |given: Option<String>, current: Option<String>| match given {
                Some(value) if value.is_empty() => None,
                Some(value) => Some(value),
                None => current,
            };
            let service = client
                .send(&UpdateService {
                    service: CreateService {
                        name,
                        project: Some(current.project),
                        repo: repo.unwrap_or(current.repo),
                        branch: branch.unwrap_or(current.branch),
                        dockerfile: optional(dockerfile, current.dockerfile),
                        context: optional(context, current.context),
                        compose: optional(compose, current.compose),
                        port: match port {
                            Some(0) => None,
                            Some(port) => Some(port),
                            None => current.port,
                        },
                        health_path: optional(health_path, current.health_path),
                        domain: optional(domain, current.domain),
                        cancel_running: cancel_running.unwrap_or(current.cancel_running),
                        deploy: Some(deploy.apply(current.deploy)?),
                    },
                })
                .await?;
            print_one(&service, json, |service| {
                format!(
                    "Changed service {}; new settings apply from its next build and release\n",
                    service.name
                )
            })
        }
        ServiceCommand::DeploySecret { name, json } => {
            let secret = client
                .send(&RotateDeploySecret {
                    service: name.clone(),
                })
                .await?;
            print_one(&secret, json, |secret| {
                format!(
                    "The deploy secret of {name}, shown only now (the previous one no longer works):\n\n    {}\n\nSign POST /deploy bodies with it (X-Hub-Signature-256: sha256=HMAC-SHA256 of the body).\n",
                    secret.secret.expose()
                )
            })
        }
        ServiceCommand::List { json } => {
            let services = client.send(&ListServices {}).await?;
            print_list(&services, json, services_table)
        }
        ServiceCommand::Show { name, json } => {
            let service = client.send(&ShowService { name }).await?;
            print_one(&service, json, service_summary)
        }
    }
}

impl DeployFlags {
    /// `settings` with what these flags set.
    fn apply(self, mut settings: DeploySettings) -> anyhow::Result<DeploySettings> {
        if let Some(environment) = self.environment {
            settings.environment = environment;
        }
        if let Some(hosts) = self.hosts {
            settings.hosts = hosts;
        }
        if let Some(replicas) = self.replicas {
            settings.replicas = replicas;
        }
        if let Some(strategy) = self.strategy {
            settings.strategy = Some(Strategy::parse(&strategy).with_context(|| {
                format!("unknown strategy {strategy:?}: use blue-green or recreate")
            })?);
        }
        if self.no_auto_deploy || self.auto_deploy {
            settings.auto_deploy = self.auto_deploy;
        }
        let health = &mut settings.health;
        for (value, field) in [
            (self.health_interval_ms, &mut health.interval_ms),
            (self.health_timeout_ms, &mut health.timeout_ms),
            (self.health_start_period_ms, &mut health.start_period_ms),
            (self.health_deadline_ms, &mut health.deadline_ms),
        ] {
            if let Some(value) = value {
                *field = value;
            }
        }
        if let Some(status) = self.health_status {
            health.status = status;
        }
        if let Some(retries) = self.health_retries {
            health.retries = retries;
        }
        if let Some(drain) = self.drain_ms {
            settings.drain_ms = drain;
        }
        if let Some(keep) = self.keep_images {
            settings.keep_images = keep;
        }
        if let Some(allowed) = self.compose_allow {
            settings.compose_allow = allowed.into_iter().filter(|p| !p.is_empty()).collect();
        }
        if let Some(aliases) = self.aliases {
            settings.aliases = aliases.into_iter().filter(|a| !a.is_empty()).collect();
        }
        Ok(settings)
    }
}
