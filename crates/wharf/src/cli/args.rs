//! What the CLI verbs accept: the clap types of every verb, its flags and their help.

use anyhow::Context;
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use wharf_client::ApiClient;

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
    pub(super) server: String,
    /// The admin token.
    #[arg(
        long,
        env = "WHARF_TOKEN",
        hide_env_values = true,
        global = true,
        value_parser = crate::config::secret_value
    )]
    pub(super) token: Option<SecretString>,
}

impl Connection {
    pub(super) fn client(&self) -> anyhow::Result<ApiClient> {
        let token = self
            .token
            .clone()
            .filter(|token| !token.expose_secret().is_empty())
            .context("no token: set WHARF_TOKEN (wharf up prints one and keeps it in .wharf/admin-token)")?;
        Ok(ApiClient::new(&self.server, token)?)
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
    /// Print a build's log, or with --release a release's deploy log (every host's lines);
    /// with -f, follow it live until the build ends or the release has settled.
    Logs {
        /// The build.
        #[arg(required_unless_present = "release", conflicts_with = "release")]
        id: Option<i64>,
        /// The release whose deploy log to print instead.
        #[arg(long, value_name = "ID")]
        release: Option<i64>,
        /// Keep printing new lines until the build finishes or the release settles (exits 1 if
        /// the build did not complete, or the release failed or was rolled back).
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
    /// List pull request previews: every service's, or one's.
    Previews {
        service: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Approve, start or remove a pull request's preview.
    Preview {
        #[command(subcommand)]
        command: PreviewCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Add, list and remove dashboard users (admins, and viewers who change nothing).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Add, list, test and remove notification sinks; see and retry their messages.
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Subcommand)]
pub enum PreviewCommand {
    /// Let a pull request's commit build its preview (a fork's, or an author's who may not
    /// push); every new commit needs a new approval.
    Approve {
        service: String,
        pr: u64,
        /// The commit approved (default: the head Wharf knows).
        #[arg(long)]
        commit: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Bring back a preview stopped to keep within the service's limit, as a push would.
    Start {
        service: String,
        pr: u64,
        #[arg(long)]
        json: bool,
    },
    /// Remove a pull request's preview from every host now; a push to it brings it back.
    Destroy {
        service: String,
        pr: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Create a service that builds a repository's branch.
    // A new service needs its repository and branch; changing one needs neither.
    #[command(
        mut_arg("repo", |repo| repo.required(true)),
        mut_arg("branch", |branch| branch.required(true))
    )]
    Create {
        /// The service's name: a DNS label (lowercase letters, digits, hyphens).
        name: String,
        #[command(flatten)]
        settings: ServiceFlags,
        /// The project the service belongs to.
        #[arg(long)]
        project: Option<String>,
        /// A newer push also cancels running builds, not only pending ones.
        #[arg(long)]
        cancel_running: bool,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Change a service's settings: those given change, the rest stay (an empty value clears an
    /// optional one, such as --domain ''). They apply from the next build and release; `wharf
    /// deploy SERVICE` rolls the live build out again with them.
    Update {
        name: String,
        #[command(flatten)]
        settings: ServiceFlags,
        /// Whether a newer push also cancels running builds.
        #[arg(long)]
        cancel_running: Option<bool>,
        /// Link the service again to the repository of its name as GitHub knows it now, after
        /// the repository was deleted and created again (pushes from it build nothing until
        /// then).
        #[arg(long)]
        relink_repository: bool,
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

/// A service's settings, as `wharf service create` sets them and `wharf service update`
/// changes them: each is optional here; create requires --repo and --branch, update keeps
/// what is not given and clears an optional value given empty.
#[derive(Args, Debug, Clone, Default)]
pub struct ServiceFlags {
    /// owner/name of a repository of the GitHub App, an https:// URL of a public one, or (with
    /// `wharf up`) a git repository on the server's machine by its path (`./examples/hello`).
    #[arg(long)]
    pub(super) repo: Option<String>,
    /// The branch whose pushes build and deploy.
    #[arg(long)]
    pub(super) branch: Option<String>,
    /// The Dockerfile or Containerfile, relative to the repository.
    #[arg(long)]
    pub(super) dockerfile: Option<String>,
    /// The build context, relative to the repository.
    #[arg(long)]
    pub(super) context: Option<String>,
    /// A compose file to build and deploy instead of a Dockerfile.
    #[arg(long)]
    pub(super) compose: Option<String>,
    /// The port the service listens on inside its container (on update, 0 removes it).
    #[arg(long)]
    pub(super) port: Option<u16>,
    /// The HTTP path its health probe asks.
    #[arg(long)]
    pub(super) health_path: Option<String>,
    /// The host name that routes to it.
    #[arg(long)]
    pub(super) domain: Option<String>,
    /// What a build's RUN steps may reach: isolated (the internet, not the build host nor
    /// link-local addresses; the default) or open (the engine's default network, the host
    /// included).
    #[arg(long)]
    pub(super) build_network: Option<String>,
    #[command(flatten)]
    pub(super) deploy: DeployFlags,
}

/// How a service deploys; on create, each default is the documented one.
#[derive(Args, Debug, Clone, Default)]
pub struct DeployFlags {
    /// The environment releases go to.
    #[arg(long)]
    pub(super) environment: Option<String>,
    /// Agent names or label:NAME to run on (repeat or comma-separate); default: the agent named local.
    #[arg(long = "host", value_delimiter = ',')]
    pub(super) hosts: Option<Vec<String>>,
    /// Containers per host.
    #[arg(long)]
    pub(super) replicas: Option<u32>,
    /// blue-green or recreate (default: blue-green with a port, recreate without).
    #[arg(long)]
    pub(super) strategy: Option<String>,
    /// Completed builds do not deploy by themselves.
    #[arg(long, conflicts_with = "auto_deploy")]
    pub(super) no_auto_deploy: bool,
    /// Completed builds of the tracked branch deploy by themselves (the default).
    #[arg(long)]
    pub(super) auto_deploy: bool,
    /// Milliseconds the old version keeps its in-flight requests after traffic moved.
    #[arg(long)]
    pub(super) drain_ms: Option<u64>,
    /// The HTTP status the health probe expects.
    #[arg(long)]
    pub(super) health_status: Option<u16>,
    #[arg(long)]
    pub(super) health_interval_ms: Option<u64>,
    #[arg(long)]
    pub(super) health_timeout_ms: Option<u64>,
    /// Failed probes in a row that make the new version unhealthy (0: until the deadline).
    #[arg(long)]
    pub(super) health_retries: Option<u32>,
    #[arg(long)]
    pub(super) health_start_period_ms: Option<u64>,
    /// The new version must be healthy within this many milliseconds.
    #[arg(long)]
    pub(super) health_deadline_ms: Option<u64>,
    /// Images kept on each host for rollback besides the live one.
    #[arg(long)]
    pub(super) keep_images: Option<u32>,
    /// What a compose file may ask for: privileged, cap_add, host_bind, socket, host_network,
    /// host_pid, publish ('' for nothing).
    #[arg(long, value_delimiter = ',')]
    pub(super) compose_allow: Option<Vec<String>>,
    /// More host names routed to the service besides --domain (repeat or comma-separate; ''
    /// for none).
    #[arg(long = "alias", value_delimiter = ',')]
    pub(super) aliases: Option<Vec<String>>,
    #[command(flatten)]
    pub(super) previews: PreviewFlags,
}

/// How a service makes previews of its pull requests.
#[derive(Args, Debug, Clone, Default)]
pub struct PreviewFlags {
    /// Pull requests into the service's branch get preview environments.
    #[arg(long, conflicts_with = "no_previews")]
    pub(super) previews: bool,
    /// No previews; turning them off removes the running ones.
    #[arg(long)]
    pub(super) no_previews: bool,
    /// The preview host name, with {pr}, {service} and {domain} (default pr-{pr}.{domain};
    /// '' for the default).
    #[arg(long)]
    pub(super) preview_domain: Option<String>,
    /// Previews running at once (default 5): past it the least recently pushed one stops.
    #[arg(long)]
    pub(super) preview_limit: Option<u32>,
    /// A preview without a push for this long is removed, e.g. 7d (the default) or 12h.
    #[arg(long, value_parser = parse_ttl)]
    pub(super) preview_ttl: Option<u64>,
    /// Agent names or label:NAME for previews (default: the service's hosts; '' for those).
    #[arg(long = "preview-host", value_delimiter = ',')]
    pub(super) preview_hosts: Option<Vec<String>>,
    /// Draft pull requests get previews too.
    #[arg(long)]
    pub(super) preview_drafts: Option<bool>,
    /// A label that approves a pull request's head commit for its preview ('' for none).
    #[arg(long)]
    pub(super) preview_label: Option<String>,
}

fn parse_ttl(text: &str) -> Result<u64, String> {
    wharf_domain::duration::parse_duration(text)
        .map(|duration| duration.as_millis() as u64)
        .ok_or_else(|| format!("{text:?} is not a duration such as 7d, 12h or 30m"))
}

/// Whether a deploy or rollback waits for its outcome.
#[derive(Args, Debug, Clone)]
pub struct WaitFlags {
    /// Return once the release is created instead of following it to its outcome.
    #[arg(long)]
    pub(super) no_wait: bool,
    /// Print the release as JSON.
    #[arg(long)]
    pub(super) json: bool,
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
        /// NAME=VALUE, or NAME alone to read the value from standard input (so a secret stays
        /// out of the process list and the shell's history).
        assignment: String,
        /// Keep the value secret: sealed at rest, never shown again, masked in build logs.
        #[arg(long)]
        secret: bool,
        /// Also give it to image builds (a build argument, or a build secret with --secret).
        #[arg(long)]
        build: bool,
        /// The compose members that get it (repeat for several), `all`, or `routed` (the member
        /// that takes the service's traffic: a new variable's default; a variable set again
        /// keeps its members). A service that is not a compose stack gives its one container
        /// every variable.
        #[arg(long = "member", value_name = "NAME")]
        members: Vec<String>,
        /// Only for the service's previews, where it overrides the service's variable of its
        /// name.
        #[arg(long)]
        preview: bool,
        #[arg(long)]
        json: bool,
    },
    /// List a service's variables, its previews' too (secret values are never shown).
    List {
        service: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a variable.
    Unset {
        service: String,
        name: String,
        /// The previews' variable of this name.
        #[arg(long)]
        preview: bool,
    },
}

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// Issue a token for a new agent (shown once), saying what it may do.
    Create {
        name: String,
        /// The labels the agent may register with (comma-separate): build to take builds,
        /// deploy to run releases, others for services hosted on label:NAME; default: build,deploy.
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// A project whose services the agent may serve (repeat or comma-separate); with
        /// neither --project nor --service, any service.
        #[arg(long = "project", value_delimiter = ',')]
        projects: Vec<String>,
        /// A service the agent may serve (repeat or comma-separate).
        #[arg(long = "service", value_delimiter = ',')]
        services: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List agents: their labels, what their tokens allow, and whether they were revoked.
    List {
        #[arg(long)]
        json: bool,
    },
    /// End an agent's token at once: its builds go back to the queue, its unfinished
    /// rollouts fail, and what is live on its host stays live.
    Revoke {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Add a user who signs in to the dashboard with a password Wharf makes (shown once).
    Create {
        name: String,
        /// admin (changes things, as the admin token does) or viewer (sees everything,
        /// changes nothing).
        #[arg(long, default_value = "viewer", value_parser = parse_role)]
        role: wharf_wire::UserRole,
        #[arg(long)]
        json: bool,
    },
    /// List the users and their roles.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a user; their sessions end at once.
    Remove {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

fn parse_role(role: &str) -> Result<wharf_wire::UserRole, String> {
    wharf_wire::UserRole::parse(role)
        .ok_or_else(|| format!("{role:?} is not a role: admin or viewer"))
}

// Made once per run of the CLI: the size of `Add` costs nothing worth boxing it for.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum NotifyCommand {
    /// Add a sink: a webhook (signed with a secret, generated and shown once when not given),
    /// a Slack or a Discord webhook URL, or email through an SMTP server. A value of `-` is
    /// read from standard input, so a URL holding a token or a secret need not show in the
    /// process list; an SMTP password is always read from standard input.
    #[command(group(clap::ArgGroup::new("sink").required(true).args(["webhook", "slack", "discord", "email"])))]
    Add {
        name: String,
        /// A URL that gets Wharf's signed JSON.
        #[arg(long, value_name = "URL")]
        webhook: Option<String>,
        /// A Slack incoming webhook's URL.
        #[arg(long, value_name = "URL")]
        slack: Option<String>,
        /// A Discord webhook's URL.
        #[arg(long, value_name = "URL")]
        discord: Option<String>,
        /// Email to this address (repeatable), sent through --smtp as --from.
        #[arg(long, value_name = "ADDR", requires_all = ["from", "smtp"])]
        email: Vec<String>,
        /// The email's sender: an address, or `Name <address>`.
        #[arg(long, value_name = "ADDR", requires = "email")]
        from: Option<String>,
        /// The SMTP server, smtp://[USER@]HOST[:PORT] (port 587, STARTTLS required). When it
        /// names a user, its password is read from standard input.
        #[arg(long, value_name = "URL", requires = "email")]
        smtp: Option<String>,
        /// The webhook's signing secret.
        #[arg(long, conflicts_with_all = ["slack", "discord", "email"])]
        secret: Option<String>,
        /// Only these events (comma-separated): build.failed, release.live, release.failed,
        /// release.rolled_back, rollout.stuck, agent.offline, agent.online. Default: all.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Only this service's events (repeatable). Default: every service's, and the agents'.
        #[arg(long)]
        service: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the sinks.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Send a sink a test message.
    Test { name: String },
    /// Remove a sink and its messages.
    Remove { name: String },
    /// A sink's messages, newest first.
    Deliveries {
        name: String,
        /// Only dead ones and those whose last attempt failed.
        #[arg(long)]
        failed: bool,
        #[arg(long)]
        json: bool,
    },
    /// Send a sink's dead messages again.
    Retry { name: String },
}

/// Reads a client command line as `wharf` does (without the program's name).
#[cfg(test)]
pub(super) fn parse(words: &[&str]) -> Result<ClientCommand, clap::Error> {
    use clap::Parser;

    #[derive(Parser)]
    struct Wharf {
        #[command(subcommand)]
        command: ClientCommand,
    }
    let words = std::iter::once("wharf").chain(words.iter().copied());
    Wharf::try_parse_from(words).map(|wharf| wharf.command)
}
