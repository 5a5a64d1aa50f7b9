//! The `wharf` binary: `wharf server`, `wharf agent`, `wharf up` (both in one process on
//! SQLite), the CLI verbs that talk to a server's REST API, and the operator's verbs that work
//! on the host itself (`backup`, `restore`, `doctor`, `completions`).

mod cli;
mod config;
mod operations;

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::SecretString;
use tokio::sync::watch;
use wharf_agent::{AgentConfig, ImageBuilder};
use wharf_runtime::registry::LocalRegistry;
use wharf_store::{Store, StoreOptions};

/// Where `wharf up` runs its own registry when none is configured.
const LOCAL_REGISTRY: &str = "127.0.0.1:5000";

use crate::config::{AgentArgs, BuildArgs, ServerArgs};

#[derive(Parser)]
#[command(name = "wharf", version, about = "Self-hosted push-to-deploy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane.
    Server(ServerArgs),
    /// Run an agent that claims and runs builds.
    Agent {
        #[command(flatten)]
        agent: AgentArgs,
        #[command(flatten)]
        build: BuildArgs,
    },
    /// Run the server and one local agent in one process, on SQLite in the data directory.
    Up {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        build: BuildArgs,
    },
    #[command(flatten)]
    Client(cli::ClientCommand),
    #[command(flatten)]
    Operations(operations::OperationsCommand),
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Err(error) = config::load_config_file(&args) {
        return fail(&error, 2);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return fail(
                &anyhow::Error::from(error).context("cannot start the async runtime"),
                1,
            );
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => {
                init_logging();
                run_server(args).await
            }
            Command::Agent { agent, build } => {
                init_logging();
                run_agent(agent, build).await
            }
            Command::Up { server, build } => {
                init_logging();
                run_up(server, build).await
            }
            Command::Client(command) => cli::run(command).await,
            Command::Operations(command) => {
                operations::run(command, <Cli as clap::CommandFactory>::command()).await
            }
        }
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => fail(&error, 1),
    }
}

/// Reports an error and its causes as one line on stderr, and exits with `code`: 2 for a
/// configuration that cannot be read (as clap does for a command line), 1 for the rest.
fn fail(error: &anyhow::Error, code: u8) -> std::process::ExitCode {
    eprintln!("error: {error:#}");
    std::process::ExitCode::from(code)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Turns true on Ctrl-C or SIGTERM.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        tracing::info!("shutting down");
        let _ = sender.send(true);
    });
    receiver
}

async fn open_store(args: &ServerArgs) -> anyhow::Result<Store> {
    let url = args.state.database_url()?;
    let options = StoreOptions {
        sqlite_synchronous: args.sqlite_synchronous,
    };
    let store = Store::connect_with(&url, options)
        .await
        .context("cannot open the database")?;
    // What SQLite itself says, so the log shows the mode in force.
    if let Some(mode) = store.sqlite_synchronous().await? {
        let synchronous = match mode {
            2 => "full",
            1 => "normal",
            _ => "other",
        };
        tracing::info!(synchronous, "SQLite database opened");
    }
    Ok(store)
}

/// The registry `wharf up` runs itself: its address, for a server that has none configured.
struct UpRegistry {
    address: String,
}

async fn start_server(
    args: &ServerArgs,
    store: Store,
    admin_token: SecretString,
    local_registry: Option<UpRegistry>,
    local_repositories: bool,
) -> anyhow::Result<wharf_server::RunningServer> {
    // A database restored from a backup has sealed values and no key yet: the server must not
    // make a new one that cannot open them.
    let summary = store.summary().await.context("cannot read the database")?;
    let sealed_values = summary
        .contents
        .map_or(0, |contents| contents.sealed_values);
    let mut server_config = args.server_config(admin_token, sealed_values)?;
    server_config.local_repositories = local_repositories;
    if let Some(local) = local_registry {
        server_config.registry = Some(local.address);
        server_config.registry_insecure = true;
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    wharf_server::start(listener, store, server_config)
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let admin_token = config::admin_token(&args)?.context(
        "no admin token: set WHARF_TOKEN (or WHARF_TOKEN_FILE); `wharf up` generates one for you",
    )?;
    let store = open_store(&args).await?;
    let server = start_server(&args, store, admin_token, None, false).await?;
    let mut shutdown = shutdown_signal();
    let handle = server.shutdown_handle();
    tokio::spawn(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
        let _ = handle.send(true);
    });
    server.wait().await
}

async fn run_agent(args: AgentArgs, build: BuildArgs) -> anyhow::Result<()> {
    let token = config::secret(args.token.clone(), args.token_file.clone(), "the agent token")?
        .context("no agent token: pass --token or set WHARF_AGENT_TOKEN (issue one with `wharf agents create NAME`)")?;
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| config::default_work_dir(None));
    let builder_config = build.builder()?;
    if std::env::var_os("WHARF_REGISTRY").is_some() {
        tracing::warn!(
            "WHARF_REGISTRY is the server's setting: this agent pushes to the registry the server names"
        );
    }
    let agent_config = AgentConfig {
        server: args.server.clone(),
        token,
        labels: args.labels.clone(),
        deploy: Some(build.deployer(&builder_config, work_dir.join("edge"))),
        work_dir,
        claim_wait: Duration::from_secs(25),
    };
    let builder = ImageBuilder {
        config: builder_config,
    };
    wharf_agent::run(agent_config, builder, shutdown_signal()).await
}

/// The admin token of `wharf up`: given, or generated once and kept in the data directory.
fn up_admin_token(args: &ServerArgs) -> anyhow::Result<SecretString> {
    if let Some(token) = config::admin_token(args)? {
        return Ok(token);
    }
    let path = args.state.data_dir.join("admin-token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_owned();
        if !token.is_empty() {
            let token = SecretString::from(token);
            config::check_admin_token(&token)
                .with_context(|| format!("the admin token in {}", path.display()))?;
            eprintln!(
                "Admin token: in {} (export WHARF_TOKEN=$(cat {}))",
                path.display(),
                path.display()
            );
            return Ok(token);
        }
    }
    use rand::distr::{Alphanumeric, SampleString};
    let token = format!(
        "wharf_admin_{}",
        Alphanumeric.sample_string(&mut rand::rng(), 40)
    );
    config::create_data_dir(&args.state.data_dir)?;
    write_private_file(&path, &token)?;
    eprintln!(
        "Admin token (shown once, kept in {}):\n\n    export WHARF_TOKEN={token}\n",
        path.display()
    );
    Ok(SecretString::from(token))
}

/// Writes a file only its owner can read.
pub(crate) fn write_private_file(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    wharf_runtime::files::write_private_file(path, contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

async fn run_up(args: ServerArgs, build: BuildArgs) -> anyhow::Result<()> {
    config::create_data_dir(&args.state.data_dir)?;
    let admin_token = up_admin_token(&args)?;
    let store = open_store(&args).await?;
    let agent_token =
        wharf_server::issue_local_agent_token(&store, wharf_wire::DEFAULT_HOST).await?;
    // With no registry configured, `wharf up` runs one on this machine (its data in the data
    // directory), so a first push has somewhere to go.
    let mut local_registry = None;
    let mut up_registry = None;
    let builder_config = build.builder()?;
    if args.registry.as_deref().is_none_or(str::is_empty) {
        match LocalRegistry::start(&args.state.data_dir.join("registry"), LOCAL_REGISTRY).await {
            Ok(registry) => {
                eprintln!(
                    "Registry: {} (local, plain HTTP; set WHARF_REGISTRY to use another)",
                    registry.address
                );
                up_registry = Some(UpRegistry {
                    address: registry.address.clone(),
                });
                local_registry = Some(registry);
            }
            Err(error) => eprintln!(
                "No registry: {error}. Builds will fail until WHARF_REGISTRY names one (or docker-registry is installed)."
            ),
        }
    }
    let server = start_server(&args, store, admin_token, up_registry, true).await?;
    let server_url = format!("http://{}", server.addr);
    eprintln!(
        "Wharf is up: {server_url} (data in {})\nDashboard: {server_url}/ (sign in with the admin token)",
        args.state.data_dir.display()
    );
    let shutdown = shutdown_signal();
    let work_dir = config::default_work_dir(Some(&args.state.data_dir));
    let agent_config = AgentConfig {
        server: server_url,
        token: SecretString::from(agent_token),
        labels: vec!["build".to_owned(), "deploy".to_owned()],
        deploy: Some(build.deployer(&builder_config, args.state.data_dir.join("edge"))),
        work_dir,
        claim_wait: Duration::from_secs(25),
    };
    let builder = ImageBuilder {
        config: builder_config,
    };
    let agent = tokio::spawn(wharf_agent::run(agent_config, builder, shutdown.clone()));
    let handle = server.shutdown_handle();
    let mut server_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let _ = server_shutdown.wait_for(|stop| *stop).await;
        let _ = handle.send(true);
    });
    let server_outcome = server.wait().await;
    agent.await??;
    drop(local_registry);
    server_outcome
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
