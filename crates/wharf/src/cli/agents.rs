//! `wharf agents`: issue agent tokens, list agents and revoke a token.

use wharf_client::ApiClient;
use wharf_wire::{CreateAgent, ListAgents, RevokeAgent};

use super::args::AgentsCommand;
use super::render::{self, emit};

/// Runs one `wharf agents` verb.
pub(super) async fn run(client: &ApiClient, command: AgentsCommand) -> anyhow::Result<()> {
    match command {
        AgentsCommand::Create {
            name,
            labels,
            projects,
            services,
            json,
        } => {
            let request = CreateAgent {
                name,
                labels,
                projects,
                services,
            };
            let credentials = client.send(&request).await?;
            emit(&render::one(&credentials, json, render::agent_created)?)
        }
        AgentsCommand::List { json } => {
            let agents = client.send(&ListAgents {}).await?;
            emit(&render::list(&agents, json, render::AGENTS)?)
        }
        AgentsCommand::Revoke { name, json } => {
            let revoked = client.send(&RevokeAgent { name }).await?;
            emit(&render::one(&revoked, json, render::agent_revoked)?)
        }
    }
}
