//! `wharf service`: create, change, show and list services, and rotate their deploy secret.

use anyhow::Context;
use wharf_client::ApiClient;
use wharf_wire::{
    CreateService, DeploySettings, ListServices, RotateDeploySecret, Service, ShowService,
    Strategy, UpdateService,
};

use super::args::{DeployFlags, ServiceCommand, ServiceFlags};
use super::render::{print_list, print_one, service_summary, services_table};

/// Runs one `wharf service` verb.
pub(super) async fn run(client: &ApiClient, command: ServiceCommand) -> anyhow::Result<()> {
    match command {
        ServiceCommand::Create {
            name,
            settings,
            project,
            cancel_running,
            json,
        } => {
            let service = client
                .send(&settings.new_service(name, project, cancel_running)?)
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
            settings,
            cancel_running,
            json,
        } => {
            let current = client.send(&ShowService { name }).await?;
            let service = client
                .send(&UpdateService {
                    service: settings.changed_service(current, cancel_running)?,
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

impl ServiceFlags {
    /// The service `wharf service create` asks for: these settings over the documented
    /// defaults, each as given.
    fn new_service(
        self,
        name: String,
        project: Option<String>,
        cancel_running: bool,
    ) -> anyhow::Result<CreateService> {
        Ok(CreateService {
            name,
            project,
            // Required by `wharf service create`'s arguments, so clap has refused their absence.
            repo: self.repo.context("--repo is required")?,
            branch: self.branch.context("--branch is required")?,
            dockerfile: self.dockerfile,
            context: self.context,
            compose: self.compose,
            port: self.port,
            health_path: self.health_path,
            domain: self.domain,
            cancel_running,
            deploy: Some(self.deploy.apply(DeploySettings::default())?),
        })
    }

    /// `current` as `wharf service update` changes it: a setting given is set, one given empty
    /// (or a port of 0) is cleared, one not given stays as it is. The name and the project
    /// never change.
    fn changed_service(
        self,
        current: Service,
        cancel_running: Option<bool>,
    ) -> anyhow::Result<CreateService> {
        let optional = |given: Option<String>, current: Option<String>| match given {
            Some(value) if value.is_empty() => None,
            Some(value) => Some(value),
            None => current,
        };
        Ok(CreateService {
            name: current.name,
            project: Some(current.project),
            repo: self.repo.unwrap_or(current.repo),
            branch: self.branch.unwrap_or(current.branch),
            dockerfile: optional(self.dockerfile, current.dockerfile),
            context: optional(self.context, current.context),
            compose: optional(self.compose, current.compose),
            port: match self.port {
                Some(0) => None,
                Some(port) => Some(port),
                None => current.port,
            },
            health_path: optional(self.health_path, current.health_path),
            domain: optional(self.domain, current.domain),
            cancel_running: cancel_running.unwrap_or(current.cancel_running),
            deploy: Some(self.deploy.apply(current.deploy)?),
        })
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

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use wharf_wire::{CreateService, DeploySettings, Service, Strategy};

    use crate::cli::args::{ClientCommand, ServiceCommand, parse};
    use crate::cli::samples;

    /// The service `wharf service create ARGS` asks for.
    fn created(args: &[&str]) -> anyhow::Result<CreateService> {
        let command = parse(&[&["service", "create"], args].concat())?;
        let ClientCommand::Service {
            command:
                ServiceCommand::Create {
                    name,
                    settings,
                    project,
                    cancel_running,
                    ..
                },
            ..
        } = command
        else {
            panic!("{args:?} is not a service create");
        };
        settings.new_service(name, project, cancel_running)
    }

    /// What `wharf service update NAME ARGS` sends when the server has `current`.
    fn changed(current: Service, args: &[&str]) -> anyhow::Result<CreateService> {
        let command = parse(&[&["service", "update", &current.name], args].concat())?;
        let ClientCommand::Service {
            command:
                ServiceCommand::Update {
                    settings,
                    cancel_running,
                    ..
                },
            ..
        } = command
        else {
            panic!("{args:?} is not a service update");
        };
        settings.changed_service(current, cancel_running)
    }

    /// The sample service as an update that changes nothing sends it.
    fn unchanged() -> CreateService {
        let service = samples::service();
        CreateService {
            name: service.name,
            project: Some(service.project),
            repo: service.repo,
            branch: service.branch,
            dockerfile: service.dockerfile,
            context: service.context,
            compose: service.compose,
            port: service.port,
            health_path: service.health_path,
            domain: service.domain,
            cancel_running: service.cancel_running,
            deploy: Some(service.deploy),
        }
    }

    fn deploy(service: &mut CreateService) -> &mut DeploySettings {
        service.deploy.get_or_insert_with(DeploySettings::default)
    }

    /// What a test expects of the sample service.
    type Change = fn(&mut CreateService);

    /// Checks that `wharf service update web ARGS` sends the sample service as `change` leaves it.
    fn check_update(args: &[&str], change: Change) {
        let mut expected = unchanged();
        change(&mut expected);
        assert_eq!(
            changed(samples::service(), args).unwrap(),
            expected,
            "{args:?}"
        );
    }

    #[test]
    fn update_sets_what_is_given_clears_what_is_given_empty_and_keeps_the_rest() {
        let cases: [(&[&str], Change); 10] = [
            (&[], |_| {}),
            (&["--repo", "acme/site", "--branch", "release"], |service| {
                service.repo = "acme/site".to_owned();
                service.branch = "release".to_owned();
            }),
            (
                &[
                    "--dockerfile",
                    "",
                    "--context",
                    "",
                    "--health-path",
                    "",
                    "--domain",
                    "",
                ],
                |service| {
                    service.dockerfile = None;
                    service.context = None;
                    service.health_path = None;
                    service.domain = None;
                },
            ),
            (&["--port", "0"], |service| service.port = None),
            (&["--port", "9090", "--compose", "compose.yml"], |service| {
                service.port = Some(9090);
                service.compose = Some("compose.yml".to_owned());
            }),
            (&["--cancel-running", "true"], |service| {
                service.cancel_running = true;
            }),
            (
                &["--host", "label:eu,edge-b", "--health-deadline-ms", "45000"],
                |service| {
                    deploy(service).hosts = vec!["label:eu".to_owned(), "edge-b".to_owned()];
                    deploy(service).health.deadline_ms = 45_000;
                },
            ),
            (&["--no-auto-deploy", "--compose-allow", ""], |service| {
                deploy(service).auto_deploy = false;
                deploy(service).compose_allow = Vec::new();
            }),
            (
                &["--alias", "www.example.com", "--alias", "shop.example.com"],
                |service| {
                    deploy(service).aliases =
                        vec!["www.example.com".to_owned(), "shop.example.com".to_owned()];
                },
            ),
            (
                &[
                    "--environment",
                    "staging",
                    "--strategy",
                    "recreate",
                    "--replicas",
                    "2",
                    "--keep-images",
                    "1",
                ],
                |service| {
                    deploy(service).environment = "staging".to_owned();
                    deploy(service).strategy = Some(Strategy::Recreate);
                    deploy(service).replicas = 2;
                    deploy(service).keep_images = 1;
                },
            ),
        ];
        for (args, change) in cases {
            check_update(args, change);
        }
    }

    #[test]
    fn auto_deploy_comes_back_on_when_asked() {
        let service = samples::compose_service();
        assert!(!service.deploy.auto_deploy);
        let sent = changed(service, &["--auto-deploy"]).unwrap();
        assert!(sent.deploy.unwrap().auto_deploy);
    }

    #[test]
    fn create_sends_the_flags_as_given_over_the_defaults() {
        assert_eq!(
            created(&["web", "--repo", "acme/web", "--branch", "main"]).unwrap(),
            CreateService {
                name: "web".to_owned(),
                repo: "acme/web".to_owned(),
                branch: "main".to_owned(),
                deploy: Some(DeploySettings::default()),
                ..CreateService::default()
            }
        );
        // Empty values and port 0 go to the server, which judges them as it judges any value.
        let mut expected = unchanged();
        expected.port = Some(0);
        expected.domain = Some(String::new());
        expected.cancel_running = true;
        deploy(&mut expected).hosts = vec!["edge-a".to_owned()];
        deploy(&mut expected).health.retries = 3;
        let args = [
            "web",
            "--repo",
            "acme/web",
            "--branch",
            "main",
            "--project",
            "shop",
            "--dockerfile",
            "docker/Dockerfile",
            "--context",
            "docker",
            "--port",
            "0",
            "--health-path",
            "/healthz",
            "--domain",
            "",
            "--cancel-running",
            "--host",
            "edge-a",
            "--health-retries",
            "3",
        ];
        assert_eq!(created(&args).unwrap(), expected);
    }

    #[test]
    fn create_and_update_refuse_what_they_refused_before_sharing_their_flags() {
        let cases: [(&[&str], ErrorKind); 6] = [
            (
                &["service", "create", "web"],
                ErrorKind::MissingRequiredArgument,
            ),
            (
                &["service", "create", "web", "--branch", "main"],
                ErrorKind::MissingRequiredArgument,
            ),
            (
                &[
                    "service",
                    "create",
                    "web",
                    "--repo",
                    "a/b",
                    "--branch",
                    "main",
                    "--cancel-running",
                    "true",
                ],
                ErrorKind::UnknownArgument,
            ),
            (
                &[
                    "service",
                    "create",
                    "web",
                    "--repo",
                    "a/b",
                    "--branch",
                    "main",
                    "--auto-deploy",
                    "--no-auto-deploy",
                ],
                ErrorKind::ArgumentConflict,
            ),
            (
                &["service", "update", "web", "--project", "other"],
                ErrorKind::UnknownArgument,
            ),
            (
                &["service", "update", "web", "--cancel-running"],
                ErrorKind::InvalidValue,
            ),
        ];
        for (args, kind) in cases {
            let refused = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_eq!(refused.kind(), kind, "{args:?}: {refused}");
        }
        let missing = parse(&["service", "create", "web"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            missing.contains("--repo <REPO>") && missing.contains("--branch <BRANCH>"),
            "{missing}"
        );
    }

    #[test]
    fn an_unknown_strategy_is_refused_before_anything_is_sent() {
        let refused = created(&[
            "web",
            "--repo",
            "a/b",
            "--branch",
            "main",
            "--strategy",
            "sideways",
        ])
        .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "unknown strategy \"sideways\": use blue-green or recreate"
        );
        assert!(changed(samples::service(), &["--strategy", "sideways"]).is_err());
    }
}
