//! `wharf users`: add dashboard users (their password shown once), list and remove them.

use wharf_client::ApiClient;
use wharf_wire::{CreateUser, ListUsers, RemoveUser};

use super::args::UsersCommand;
use super::render::{self, emit};

/// Runs one `wharf users` verb.
pub(super) async fn run(client: &ApiClient, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create { name, role, json } => {
            let credentials = client.send(&CreateUser { name, role }).await?;
            emit(&render::one(&credentials, json, render::user_created)?)
        }
        UsersCommand::List { json } => {
            let users = client.send(&ListUsers {}).await?;
            emit(&render::list(&users, json, render::USERS)?)
        }
        UsersCommand::Remove { name, json } => {
            let users = client.send(&RemoveUser { name }).await?;
            emit(&render::list(&users, json, render::USERS)?)
        }
    }
}
