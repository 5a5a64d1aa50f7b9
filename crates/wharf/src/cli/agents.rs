//! `wharf agents`: issue agent tokens and list agents.

use wharf_client::ApiClient;
use wharf_wire::{CreateAgent, ListAgents};

use super::args::AgentsCommand;
use super::render::{agents_table, print_list, print_one};

/// Runs one `wharf agents` verb.
pub(super) async fn run(client: &ApiClient, command: AgentsCommand) -> anyhow::Result<()> {
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
