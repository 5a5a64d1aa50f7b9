//! The CLI verbs: thin clients of the REST API. Listings print a table, or JSON with `--json`;
//! errors are one line on stderr and a non-zero exit.

use std::fmt::Write as _;

use anyhow::Context;
use clap::{Args, Subcommand};
use secrecy::SecretString;
use serde::Serialize;
use wharf_client::ApiClient;
use wharf_wire::{
    Agent, Build, BuildState, CancelBuild, CreateAgent, CreateService, EnvVar, GetLogs, ListAgents,
    ListBuilds, ListEnv, ListServices, LogStream, RetryBuild, SecretText, Service, SetEnv,
    SetRegistryLogin, ShowBuild, ShowService, TriggerBuild, UnsetEnv, UpdateService,
};
use wharf_wire::{
    DeployService, DeploySettings, ListReleases, Release, ReleaseState, RollbackService,
    RotateDeploySecret, ShowRelease, Strategy,
};

/// Where the server is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The Wharf server's URL.
    #[arg(
        long,
        env = "WHARF_SERVER",
        default_value = "http://127.0.0.1:8420",
        global = true
    )]
    server: String,
    /// The admin token.
    #[arg(long, env = "WHARF_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

impl Connection {
    fn client(&self) -> anyhow::Result<ApiClient> {
        let token = self
            .token
            .clone()
            .filter(|token| !token.is_empty())
            .context("no token: set WHARF_TOKEN (wharf up prints one and keeps it in .wharf/admin-token)")?;
        Ok(ApiClient::new(&self.server, SecretString::from(token))?)
    }
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Create and list services.
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// List builds, newest first.
    Builds {
        /// Only this service's builds.
        #[arg(long)]
        service: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show, cancel, retry or trigger a build.
    Build {
        #[command(subcommand)]
        command: BuildCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Set, list and unset a service's variables.
    Env {
        #[command(subcommand)]
        command: EnvCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Set the registry login that builds of one GitHub App installation push with; the
    /// password is read from standard input (so it never shows in the process list).
    RegistryLogin {
        /// The installation's id (GitHub's).
        installation: i64,
        #[arg(long)]
        username: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Print a build's log; with -f, follow it live until the build ends.
    Logs {
        id: i64,
        /// Keep printing new lines until the build finishes (exits 1 if it did not complete).
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Deploy a service without rebuilding: its latest completed build, a given build, or
    /// an image; waits for the outcome unless told not to.
    Deploy {
        service: String,
        /// The build whose image to deploy.
        #[arg(long, conflicts_with = "image")]
        build: Option<i64>,
        /// An image reference to deploy.
        #[arg(long)]
        image: Option<String>,
        #[command(flatten)]
        wait: WaitFlags,
        #[command(flatten)]
        connection: Connection,
    },
    /// Deploy an earlier release's image again: by default the one live before the current.
    Rollback {
        service: String,
        /// The release to go back to.
        #[arg(long)]
        to: Option<i64>,
        #[command(flatten)]
        wait: WaitFlags,
        #[command(flatten)]
        connection: Connection,
    },
    /// List a service's releases, newest first.
    Releases {
        service: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Issue agent tokens and list agents.
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
        #[command(flatten)]
        connection: Connection,
    },
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Create a service that builds a repository's branch.
    Create {
        /// The service's name: a DNS label (lowercase letters, digits, hyphens).
        name: String,
        /// owner/name of a repository of the GitHub App, or an https:// URL of a public one.
        #[arg(long)]
        repo: String,
        /// The branch whose pushes build and deploy.
        #[arg(long)]
        branch: String,
        /// The project the service belongs to.
        #[arg(long)]
        project: Option<String>,
        /// The Dockerfile or Containerfile, relative to the repository.
        #[arg(long)]
        dockerfile: Option<String>,
        /// The build context, relative to the repository.
        #[arg(long)]
        context: Option<String>,
        /// A compose file to build and deploy instead of a Dockerfile.
        #[arg(long)]
        compose: Option<String>,
        /// The port the service listens on inside its container.
        #[arg(long)]
        port: Option<u16>,
        /// The HTTP path its health probe asks.
        #[arg(long)]
        health_path: Option<String>,
        /// The host name that routes to it.
        #[arg(long)]
        domain: Option<String>,
        /// A newer push also cancels running builds, not only pending ones.
        #[arg(long)]
        cancel_running: bool,
        #[command(flatten)]
        deploy: DeployFlags,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Change a service's settings: those given change, the rest stay (an empty value clears an
    /// optional one, such as --domain ''). They apply from the next build and release; `wharf
    /// deploy SERVICE` rolls the live build out again with them.
    Update {
        name: String,
        #[arg(long)]
        repo: Option<String>,
        #[arg(long)]
        branch: Option<String>,
        #[arg(long)]
        dockerfile: Option<String>,
        #[arg(long)]
        context: Option<String>,
        #[arg(long)]
        compose: Option<String>,
        /// The port the service listens on inside its container (0: none).
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        health_path: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        /// Whether a newer push also cancels running builds.
        #[arg(long)]
        cancel_running: Option<bool>,
        #[command(flatten)]
        deploy: DeployFlags,
        #[arg(long)]
        json: bool,
    },
    /// Make a new secret for the CI deploy hook (`POST /deploy`) and print it once; the old
    /// one stops working.
    DeploySecret {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List services.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a service and its settings.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

/// How a service deploys (`wharf service create`); each default is the documented one.
#[derive(Args, Debug, Clone, Default)]
pub struct DeployFlags {
    /// The environment releases go to.
    #[arg(long)]
    environment: Option<String>,
    /// Agent names or label:NAME to run on (repeat or comma-separate); default: the agent named local.
    #[arg(long = "host", value_delimiter = ',')]
    hosts: Option<Vec<String>>,
    /// Containers per host.
    #[arg(long)]
    replicas: Option<u32>,
    /// blue-green or recreate (default: blue-green with a port, recreate without).
    #[arg(long)]
    strategy: Option<String>,
    /// Completed builds do not deploy by themselves.
    #[arg(long, conflicts_with = "auto_deploy")]
    no_auto_deploy: bool,
    /// Completed builds of the tracked branch deploy by themselves (the default).
    #[arg(long)]
    auto_deploy: bool,
    /// Milliseconds the old version keeps its in-flight requests after traffic moved.
    #[arg(long)]
    drain_ms: Option<u64>,
    /// The HTTP status the health probe expects.
    #[arg(long)]
    health_status: Option<u16>,
    #[arg(long)]
    health_interval_ms: Option<u64>,
    #[arg(long)]
    health_timeout_ms: Option<u64>,
    /// Failed probes in a row that make the new version unhealthy (0: until the deadline).
    #[arg(long)]
    health_retries: Option<u32>,
    #[arg(long)]
    health_start_period_ms: Option<u64>,
    /// The new version must be healthy within this many milliseconds.
    #[arg(long)]
    health_deadline_ms: Option<u64>,
    /// Images kept on each host for rollback besides the live one.
    #[arg(long)]
    keep_images: Option<u32>,
    /// What a compose file may ask for: privileged, cap_add, host_bind, socket, host_network,
    /// host_pid ('' for nothing).
    #[arg(long, value_delimiter = ',')]
    compose_allow: Option<Vec<String>>,
    /// More host names routed to the service besides --domain (repeat or comma-separate; ''
    /// for none).
    #[arg(long = "alias", value_delimiter = ',')]
    aliases: Option<Vec<String>>,
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

/// Whether a deploy or rollback waits for its outcome.
#[derive(Args, Debug, Clone)]
pub struct WaitFlags {
    /// Return once the release is created instead of following it to its outcome.
    #[arg(long)]
    no_wait: bool,
    /// Print the release as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum BuildCommand {
    /// Show one build.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a build that has not finished.
    Cancel {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Queue a new build of the same commit.
    Retry {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Queue a build of a service's branch head, or of one commit.
    Trigger {
        service: String,
        /// A full commit SHA; the branch's head when absent.
        #[arg(long = "ref")]
        git_ref: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum EnvCommand {
    /// Set a variable (replacing it when it exists).
    Set {
        service: String,
        /// NAME=VALUE
        assignment: String,
        /// Keep the value secret: sealed at rest, never shown again, masked in build logs.
        #[arg(long)]
        secret: bool,
        /// Also give it to image builds (a build argument, or a build secret with --secret).
        #[arg(long)]
        build: bool,
        #[arg(long)]
        json: bool,
    },
    /// List a service's variables (secret values are never shown).
    List {
        service: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a variable.
    Unset { service: String, name: String },
}

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// Issue a token for a new agent (shown once).
    Create {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List agents.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Service {
            command,
            connection,
        } => {
            let client = connection.client()?;
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
        ClientCommand::Builds {
            service,
            json,
            connection,
        } => {
            let builds = connection.client()?.send(&ListBuilds { service }).await?;
            print_list(&builds, json, builds_table)
        }
        ClientCommand::Build {
            command,
            connection,
        } => {
            let client = connection.client()?;
            let (build, json) = match command {
                BuildCommand::Show { id, json } => (client.send(&ShowBuild { id }).await?, json),
                BuildCommand::Cancel { id, json } => {
                    (client.send(&CancelBuild { id }).await?, json)
                }
                BuildCommand::Retry { id, json } => (client.send(&RetryBuild { id }).await?, json),
                BuildCommand::Trigger {
                    service,
                    git_ref,
                    json,
                } => (client.send(&TriggerBuild { service, git_ref }).await?, json),
            };
            print_one(&build, json, build_details)
        }
        ClientCommand::Logs {
            id,
            follow,
            connection,
        } => print_logs(&connection.client()?, id, follow).await,
        ClientCommand::RegistryLogin {
            installation,
            username,
            connection,
        } => {
            let client = connection.client()?;
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("cannot read the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            anyhow::ensure!(!password.is_empty(), "no password on standard input");
            let set = client
                .send(&SetRegistryLogin {
                    installation_id: installation,
                    username,
                    password: SecretText::new(password),
                })
                .await?;
            emit(&format!(
                "Builds of installation {} push as {}\n",
                set.installation_id, set.username
            ))
        }
        ClientCommand::Env {
            command,
            connection,
        } => {
            let client = connection.client()?;
            match command {
                EnvCommand::Set {
                    service,
                    assignment,
                    secret,
                    build,
                    json,
                } => {
                    let (name, value) =
                        assignment.split_once('=').context("expected NAME=VALUE")?;
                    let variable = client
                        .send(&SetEnv {
                            service: service.clone(),
                            name: name.to_owned(),
                            value: SecretText::new(value),
                            secret,
                            build,
                        })
                        .await?;
                    print_one(&variable, json, |variable| {
                        format!(
                            "Set {} on {service}{}\n",
                            variable.name,
                            if variable.secret { " (secret)" } else { "" }
                        )
                    })
                }
                EnvCommand::List { service, json } => {
                    let variables = client.send(&ListEnv { service }).await?;
                    print_list(&variables, json, env_table)
                }
                EnvCommand::Unset { service, name } => {
                    client
                        .send(&UnsetEnv {
                            service: service.clone(),
                            name: name.clone(),
                        })
                        .await?;
                    emit(&format!("Removed {name} from {service}\n"))
                }
            }
        }
        ClientCommand::Deploy {
            service,
            build,
            image,
            wait,
            connection,
        } => {
            let client = connection.client()?;
            let release = client
                .send(&DeployService {
                    service,
                    build,
                    image,
                })
                .await?;
            follow_release(&client, release, wait).await
        }
        ClientCommand::Rollback {
            service,
            to,
            wait,
            connection,
        } => {
            let client = connection.client()?;
            let release = client.send(&RollbackService { service, to }).await?;
            follow_release(&client, release, wait).await
        }
        ClientCommand::Releases {
            service,
            json,
            connection,
        } => {
            let releases = connection.client()?.send(&ListReleases { service }).await?;
            print_list(&releases, json, releases_table)
        }
        ClientCommand::Agents {
            command,
            connection,
        } => {
            let client = connection.client()?;
            match command {
                AgentsCommand::Create { name, json } => {
                    let credentials = client.send(&CreateAgent { name }).await?;
                    print_one(&credentials, json, |credentials| {
                        format!(
                            "Agent {} created. Its token is shown only now:\n\n    WHARF_AGENT_TOKEN={}\n\nRun it with: wharf agent --server URL --token \"$WHARF_AGENT_TOKEN\"\n",
                            credentials.agent.name, credentials.token
                        )
                    })
                }
                AgentsCommand::List { json } => {
                    let agents = client.send(&ListAgents {}).await?;
                    print_list(&agents, json, agents_table)
                }
            }
        }
    }
}

/// Prints each state a release passes through until it settles; a release that did not go
/// live is an error (exit code 1) carrying its reason.
async fn follow_release(
    client: &ApiClient,
    mut release: Release,
    wait: WaitFlags,
) -> anyhow::Result<()> {
    if !wait.json {
        emit(&format!(
            "Release #{} of {}: {} ({})\n",
            release.id, release.service, release.image, release.state
        ))?;
    }
    let mut shown = release.state;
    while !wait.no_wait && !release.state.is_settled() {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        release = client.send(&ShowRelease { id: release.id }).await?;
        if release.state != shown && !wait.json {
            emit(&format!("  {}\n", release.state))?;
        }
        shown = release.state;
    }
    if wait.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&release)?))?;
    }
    match release.state {
        ReleaseState::Failed | ReleaseState::RolledBack | ReleaseState::Superseded => {
            anyhow::bail!(
                "release #{} {}: {}",
                release.id,
                release.state,
                release.reason.as_deref().unwrap_or("no reason given")
            )
        }
        _ => Ok(()),
    }
}

fn releases_table(releases: &[Release]) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec![
            "ID", "STATE", "TRIGGER", "BUILD", "IMAGE", "CREATED", "REASON",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect(),
    ];
    for release in releases {
        rows.push(vec![
            release.id.to_string(),
            release.state.to_string(),
            release.trigger.as_str().to_owned(),
            release
                .build_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            release.image.clone(),
            release.created_at.clone(),
            release.reason.clone().unwrap_or_default(),
        ]);
    }
    rows
}

/// A service as a few lines for people.
fn service_summary(service: &Service) -> String {
    let none = || "-".to_owned();
    let deploy = &service.deploy;
    let hosts = if deploy.hosts.is_empty() {
        wharf_wire::DEFAULT_HOST.to_owned()
    } else {
        deploy.hosts.join(", ")
    };
    let names: Vec<&str> = service.host_names().collect();
    format!(
        "Service {} (project {})\n  repository   {} (branch {})\n  build        {}\n  port         {}\n  \
         host names   {}\n  environment  {} on {} ({} per host), auto-deploy {}\n  health       {} \
         (every {} ms, healthy within {} ms)\n",
        service.name,
        service.project,
        service.repo,
        service.branch,
        service
            .compose
            .as_ref()
            .map(|compose| format!("compose file {compose}"))
            .or_else(|| service.dockerfile.clone())
            .unwrap_or_else(|| "Dockerfile or Containerfile at the root".to_owned()),
        service.port.map_or_else(none, |port| port.to_string()),
        if names.is_empty() {
            none()
        } else {
            names.join(", ")
        },
        deploy.environment,
        hosts,
        deploy.replicas,
        if deploy.auto_deploy { "on" } else { "off" },
        service.health_path.as_deref().unwrap_or("/"),
        deploy.health.interval_ms,
        deploy.health.deadline_ms,
    )
}

fn print_one<T: Serialize>(
    value: &T,
    json: bool,
    human: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        emit(&format!("{}\n", serde_json::to_string_pretty(value)?))
    } else {
        emit(&human(value))
    }
}

fn print_list<T: Serialize>(
    values: &[T],
    json: bool,
    table: impl Fn(&[T]) -> Vec<Vec<String>>,
) -> anyhow::Result<()> {
    if json {
        emit(&format!("{}\n", serde_json::to_string_pretty(values)?))
    } else {
        emit(&render_table(&table(values)))
    }
}

/// Writes to stdout; a reader that went away (`wharf builds | head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Renders rows as left-aligned columns; the first row is the header.
fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(column, cell)| format!("{cell:<width$}", width = widths[column]))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn services_table(services: &[Service]) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec!["NAME", "PROJECT", "REPO", "BRANCH", "PORT", "DOMAIN"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
    ];
    for service in services {
        rows.push(vec![
            service.name.clone(),
            service.project.clone(),
            service.repo.clone(),
            service.branch.clone(),
            service
                .port
                .map(|port| port.to_string())
                .unwrap_or_else(|| "-".to_owned()),
            service.domain.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    rows
}

fn short_sha(sha: &str) -> String {
    sha.chars().take(12).collect()
}

fn builds_table(builds: &[Build]) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec![
            "ID", "SERVICE", "COMMIT", "STATE", "TRIGGER", "ATTEMPT", "CREATED", "REASON",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect(),
    ];
    for build in builds {
        rows.push(vec![
            build.id.to_string(),
            build.service.clone(),
            short_sha(&build.commit_sha),
            build.state.to_string(),
            build.trigger.as_str().to_owned(),
            format!("{}/{}", build.attempt, build.max_attempts),
            build.created_at.clone(),
            build
                .reason
                .clone()
                .map(|reason| reason.chars().take(60).collect())
                .unwrap_or_default(),
        ]);
    }
    rows
}

fn build_details(build: &Build) -> String {
    let mut out = String::new();
    let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let _ = writeln!(out, "Build #{}", build.id);
    let _ = writeln!(out, "  service:   {}", build.service);
    let _ = writeln!(out, "  commit:    {}", build.commit_sha);
    let _ = writeln!(out, "  branch:    {}", optional(&build.branch));
    let _ = writeln!(out, "  state:     {}", build.state);
    let _ = writeln!(out, "  trigger:   {}", build.trigger.as_str());
    let _ = writeln!(
        out,
        "  attempt:   {} of {}",
        build.attempt, build.max_attempts
    );
    let _ = writeln!(out, "  agent:     {}", optional(&build.agent));
    let _ = writeln!(out, "  created:   {}", build.created_at);
    let _ = writeln!(out, "  claimed:   {}", optional(&build.claimed_at));
    let _ = writeln!(out, "  finished:  {}", optional(&build.finished_at));
    if let Some(reason) = &build.reason {
        let _ = writeln!(out, "  reason:    {reason}");
    }
    if let Some(retry_of) = build.retry_of {
        let _ = writeln!(out, "  retry of:  #{retry_of}");
    }
    out
}

fn env_table(variables: &[EnvVar]) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec!["NAME", "VALUE", "SECRET", "BUILD", "UPDATED"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
    ];
    for variable in variables {
        rows.push(vec![
            variable.name.clone(),
            variable
                .value
                .clone()
                .unwrap_or_else(|| "********".to_owned()),
            if variable.secret { "yes" } else { "no" }.to_owned(),
            if variable.build { "yes" } else { "no" }.to_owned(),
            variable.updated_at.clone(),
        ]);
    }
    rows
}

fn agents_table(agents: &[Agent]) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec!["NAME", "LABELS", "VERSION", "HOST", "LAST SEEN"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
    ];
    for agent in agents {
        rows.push(vec![
            agent.name.clone(),
            agent.labels.join(","),
            agent.version.clone().unwrap_or_else(|| "-".to_owned()),
            agent.hostname.clone().unwrap_or_else(|| "-".to_owned()),
            agent
                .last_seen_at
                .clone()
                .unwrap_or_else(|| "never".to_owned()),
        ]);
    }
    rows
}

/// Prints a build's log page by page; following waits on the server for new lines.
async fn print_logs(client: &ApiClient, id: i64, follow: bool) -> anyhow::Result<()> {
    let mut after = 0;
    loop {
        let request = GetLogs {
            id,
            after,
            wait_ms: if follow { 25_000 } else { 0 },
        };
        let page = client
            .send_with_timeout(&request, std::time::Duration::from_secs(60))
            .await?;
        let mut text = String::new();
        for line in &page.lines {
            after = line.seq;
            match line.stream {
                LogStream::Wharf => {
                    let _ = writeln!(text, "==> {}", line.text);
                }
                _ => {
                    let _ = writeln!(text, "{}", line.text);
                }
            }
        }
        emit(&text)?;
        if page.lines.is_empty() && (!follow || page.complete) {
            if follow && page.state != BuildState::Completed {
                anyhow::bail!("build #{id} ended {}", page.state);
            }
            return Ok(());
        }
    }
}
