//! `wharf service`: create, change, show and list services, and rotate their deploy secret.

use anyhow::Context;
use wharf_client::ApiClient;
use wharf_wire::{
    BuildNetwork, CreateService, DeploySettings, ListServices, PreviewSettings, RotateDeploySecret,
    Service, ShowService, Strategy, UpdateService,
};

use super::args::{DeployFlags, PreviewFlags, ServiceCommand, ServiceFlags};
use super::render::{self, emit};

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
            emit(&render::one(&service, json, render::service_created)?)
        }
        ServiceCommand::Update {
            name,
            settings,
            cancel_running,
            relink_repository,
            json,
        } => {
            let current = client.send(&ShowService { name }).await?;
            let service = client
                .send(&UpdateService {
                    service: settings.changed_service(current, cancel_running)?,
                    relink_repository,
                })
                .await?;
            emit(&render::one(&service, json, render::service_changed)?)
        }
        ServiceCommand::DeploySecret { name, json } => {
            let secret = client
                .send(&RotateDeploySecret {
                    service: name.clone(),
                })
                .await?;
            emit(&render::one(&secret, json, |secret| {
                render::deploy_secret(&name, secret)
            })?)
        }
        ServiceCommand::List { json } => {
            let services = client.send(&ListServices {}).await?;
            emit(&render::list(&services, json, render::SERVICES)?)
        }
        ServiceCommand::Show { name, json } => {
            let service = client.send(&ShowService { name }).await?;
            emit(&render::one(&service, json, render::service_summary)?)
        }
    }
}

/// Where a service's code is, as the server takes it.
struct Repository {
    /// owner/name, an https:// URL, or the absolute path of a git repository on this machine.
    repo: String,
    /// For a directory inside a local git repository: the directory, relative to the
    /// repository's root, and its Dockerfile or Containerfile, when it has one.
    inside: Option<(String, Option<String>)>,
}

/// A repository as the server takes it: a path on this machine (`./examples/hello`, `../app`,
/// `/srv/app`) becomes the absolute path of the git repository holding it, with the directory
/// inside it; anything else stays as given.
fn repository(repo: String) -> anyhow::Result<Repository> {
    let is_path =
        repo.starts_with('/') || repo.starts_with("./") || repo.starts_with("../") || repo == ".";
    if !is_path {
        return Ok(Repository { repo, inside: None });
    }
    let directory = std::fs::canonicalize(&repo)
        .with_context(|| format!("--repo {repo}: no such directory on this machine"))?;
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(&directory)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .with_context(|| format!("--repo {repo}: cannot run git"))?;
    if !output.status.success() {
        anyhow::bail!("--repo {repo}: not inside a git repository (git init it, and commit)");
    }
    let root = std::fs::canonicalize(String::from_utf8_lossy(&output.stdout).trim())
        .with_context(|| format!("--repo {repo}: cannot read its git repository's root"))?;
    let text = |path: &std::path::Path| {
        path.to_str()
            .map(str::to_owned)
            .with_context(|| format!("--repo {repo}: the path is not UTF-8"))
    };
    let inside = match directory.strip_prefix(&root) {
        Ok(relative) if !relative.as_os_str().is_empty() => {
            let relative = text(relative)?;
            let dockerfile = ["Dockerfile", "Containerfile"]
                .into_iter()
                .find(|name| directory.join(name).is_file())
                .map(|name| format!("{relative}/{name}"));
            Some((relative, dockerfile))
        }
        _ => None,
    };
    Ok(Repository {
        repo: text(&root)?,
        inside,
    })
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
        // Required by `wharf service create`'s arguments, so clap has refused their absence.
        let Repository { repo, inside } = repository(self.repo.context("--repo is required")?)?;
        let (context, dockerfile) = inside.unzip();
        Ok(CreateService {
            name,
            project,
            repo,
            branch: self.branch.context("--branch is required")?,
            dockerfile: self.dockerfile.or(dockerfile.flatten()),
            context: self.context.or(context),
            compose: self.compose,
            port: self.port,
            health_path: self.health_path,
            domain: self.domain,
            cancel_running,
            build_network: build_network(self.build_network, BuildNetwork::default())?,
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
        let (repo, inside) = match self.repo {
            Some(repo) => {
                let Repository { repo, inside } = repository(repo)?;
                (repo, inside)
            }
            None => (current.repo, None),
        };
        let (context, dockerfile) = inside.unzip();
        Ok(CreateService {
            name: current.name,
            project: Some(current.project),
            repo,
            branch: self.branch.unwrap_or(current.branch),
            dockerfile: optional(self.dockerfile.or(dockerfile.flatten()), current.dockerfile),
            context: optional(self.context.or(context), current.context),
            compose: optional(self.compose, current.compose),
            port: match self.port {
                Some(0) => None,
                Some(port) => Some(port),
                None => current.port,
            },
            health_path: optional(self.health_path, current.health_path),
            domain: optional(self.domain, current.domain),
            cancel_running: cancel_running.unwrap_or(current.cancel_running),
            build_network: build_network(self.build_network, current.build_network)?,
            deploy: Some(self.deploy.apply(current.deploy)?),
        })
    }
}

/// The `--build-network` given, else `current`.
fn build_network(given: Option<String>, current: BuildNetwork) -> anyhow::Result<BuildNetwork> {
    match given {
        None => Ok(current),
        Some(name) => BuildNetwork::parse(&name)
            .with_context(|| format!("--build-network is isolated or open, not {name:?}")),
    }
}

impl DeployFlags {
    /// `settings` with what these flags set.
    fn apply(self, mut settings: DeploySettings) -> anyhow::Result<DeploySettings> {
        set(&mut settings.environment, self.environment);
        set(&mut settings.hosts, self.hosts);
        set(&mut settings.replicas, self.replicas);
        if let Some(strategy) = self.strategy {
            settings.strategy = Some(Strategy::parse(&strategy).with_context(|| {
                format!("unknown strategy {strategy:?}: use blue-green or recreate")
            })?);
        }
        if self.no_auto_deploy || self.auto_deploy {
            settings.auto_deploy = self.auto_deploy;
        }
        let health = &mut settings.health;
        set(&mut health.status, self.health_status);
        set(&mut health.interval_ms, self.health_interval_ms);
        set(&mut health.timeout_ms, self.health_timeout_ms);
        set(&mut health.retries, self.health_retries);
        set(&mut health.start_period_ms, self.health_start_period_ms);
        set(&mut health.deadline_ms, self.health_deadline_ms);
        set(&mut settings.drain_ms, self.drain_ms);
        set(&mut settings.keep_images, self.keep_images);
        // An empty value (`--alias ''`) stands for none.
        let non_empty =
            |values: Vec<String>| values.into_iter().filter(|v| !v.is_empty()).collect();
        set(
            &mut settings.compose_allow,
            self.compose_allow.map(non_empty),
        );
        set(&mut settings.aliases, self.aliases.map(non_empty));
        settings.previews = self.previews.apply(settings.previews);
        Ok(settings)
    }
}

impl PreviewFlags {
    /// `settings` with what these flags set.
    fn apply(self, mut settings: PreviewSettings) -> PreviewSettings {
        if self.previews || self.no_previews {
            settings.enabled = self.previews;
        }
        if let Some(domain) = self.preview_domain {
            settings.domain = Some(domain).filter(|domain| !domain.is_empty());
        }
        set(&mut settings.limit, self.preview_limit);
        set(&mut settings.ttl_ms, self.preview_ttl);
        set(
            &mut settings.hosts,
            self.preview_hosts
                .map(|hosts| hosts.into_iter().filter(|host| !host.is_empty()).collect()),
        );
        set(&mut settings.drafts, self.preview_drafts);
        if let Some(label) = self.preview_label {
            settings.label = Some(label).filter(|label| !label.is_empty());
        }
        settings
    }
}

/// Sets `setting` to the value given, if one was.
fn set<T>(setting: &mut T, given: Option<T>) {
    if let Some(value) = given {
        *setting = value;
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use wharf_wire::{BuildNetwork, CreateService, DeploySettings, Service, Strategy};

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
            build_network: service.build_network,
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
        let cases: [(&[&str], Change); 12] = [
            (&[], |_| {}),
            (&["--build-network", "open"], |service| {
                service.build_network = BuildNetwork::Open;
            }),
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
            (
                &[
                    "--health-status",
                    "204",
                    "--health-interval-ms",
                    "500",
                    "--health-timeout-ms",
                    "300",
                    "--health-retries",
                    "0",
                    "--health-start-period-ms",
                    "100",
                    "--drain-ms",
                    "0",
                ],
                |service| {
                    let deploy = deploy(service);
                    deploy.health.status = 204;
                    deploy.health.interval_ms = 500;
                    deploy.health.timeout_ms = 300;
                    deploy.health.retries = 0;
                    deploy.health.start_period_ms = 100;
                    deploy.drain_ms = 0;
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
    fn create_requires_repo_and_branch_and_each_verb_refuses_the_flags_of_the_other() {
        let cases = [
            ("service create web", ErrorKind::MissingRequiredArgument),
            (
                "service create web --branch main",
                ErrorKind::MissingRequiredArgument,
            ),
            (
                "service create web --repo a/b --branch main --cancel-running true",
                ErrorKind::UnknownArgument,
            ),
            (
                "service create web --repo a/b --branch main --auto-deploy --no-auto-deploy",
                ErrorKind::ArgumentConflict,
            ),
            (
                "service update web --project other",
                ErrorKind::UnknownArgument,
            ),
            (
                "service update web --cancel-running",
                ErrorKind::InvalidValue,
            ),
        ];
        for (line, kind) in cases {
            let words: Vec<&str> = line.split_whitespace().collect();
            let refused = parse(&words)
                .err()
                .unwrap_or_else(|| panic!("{line:?} parsed"));
            assert_eq!(refused.kind(), kind, "{line:?}: {refused}");
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
        let refused = changed(samples::service(), &["--build-network", "closed"]).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "--build-network is isolated or open, not \"closed\""
        );
        let open = created(&[
            "web",
            "--repo",
            "a/b",
            "--branch",
            "main",
            "--build-network",
            "open",
        ])
        .unwrap();
        assert_eq!(open.build_network, BuildNetwork::Open);
        let default = created(&["web", "--repo", "a/b", "--branch", "main"]).unwrap();
        assert_eq!(default.build_network, BuildNetwork::Isolated);
    }
}
