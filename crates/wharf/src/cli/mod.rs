//! The CLI verbs: thin clients of the REST API. `args` holds what the command line accepts,
//! one module per resource sends the requests, and `render` turns the answers into text:
//! listings print a table, or JSON with `--json`; errors are one line on stderr and a
//! non-zero exit.

mod agents;
mod args;
mod builds;
mod input;
mod logs;
mod notify;
mod previews;
mod registry;
mod releases;
mod render;
mod services;
mod users;
mod variables;

#[cfg(test)]
mod samples;

pub use args::ClientCommand;

/// Runs one CLI verb against the server its connection names.
pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Service {
            command,
            connection,
        } => services::run(&connection.client()?, command).await,
        ClientCommand::Builds {
            service,
            json,
            connection,
        } => builds::list(&connection.client()?, service, json).await,
        ClientCommand::Build {
            command,
            connection,
        } => builds::run(&connection.client()?, command).await,
        ClientCommand::Logs {
            id,
            release: Some(release),
            follow,
            connection,
        } if id.is_none() => releases::print_logs(&connection.client()?, release, follow).await,
        ClientCommand::Logs {
            id: Some(id),
            release: None,
            follow,
            connection,
        } => builds::print_logs(&connection.client()?, id, follow).await,
        ClientCommand::Logs { .. } => {
            anyhow::bail!("name a build, or a release with --release, but not both")
        }
        ClientCommand::RegistryLogin {
            installation,
            username,
            connection,
        } => registry::login(&connection.client()?, installation, username).await,
        ClientCommand::Env {
            command,
            connection,
        } => variables::run(&connection.client()?, command).await,
        ClientCommand::Deploy {
            service,
            build,
            image,
            wait,
            connection,
        } => releases::deploy(&connection.client()?, service, build, image, wait).await,
        ClientCommand::Rollback {
            service,
            to,
            wait,
            connection,
        } => releases::rollback(&connection.client()?, service, to, wait).await,
        ClientCommand::Releases {
            service,
            json,
            connection,
        } => releases::list(&connection.client()?, service, json).await,
        ClientCommand::Agents {
            command,
            connection,
        } => agents::run(&connection.client()?, command).await,
        ClientCommand::Previews {
            service,
            json,
            connection,
        } => previews::list(&connection.client()?, service, json).await,
        ClientCommand::Preview {
            command,
            connection,
        } => previews::run(&connection.client()?, command).await,
        ClientCommand::Users {
            command,
            connection,
        } => users::run(&connection.client()?, command).await,
        ClientCommand::Notify {
            command,
            connection,
        } => notify::run(&connection.client()?, command).await,
    }
}
