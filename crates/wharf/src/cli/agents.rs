//! `wharf agents`: issue agent tokens and list agents.

use wharf_client::ApiClient;
use wharf_wire::{CreateAgent, ListAgents};

use super::args::AgentsCommand;
use super::render::{self, emit};

/// Runs one `wharf agents` verb.
pub(super) async fn run(client: &ApiClient, command: AgentsCommand) -> anyhow::Result<()> {
    match command {
        AgentsCommand::Create { name, json } => {
            let credentials = client.send(&CreateAgent { name }).await?;
            emit(&render::one(&credentials, json, render::agent_created)?)
        }
        AgentsCommand::List { json } => {
            let agents = client.send(&ListAgents {}).await?;
            emit(&render::list(&agents, json, render::AGENTS)?)
        }
    }
}
