//! Agents: issuing their tokens, finding an agent by its token, and registering one when it
//! starts (a restarted agent's half-done rollouts start over).

use rand::distr::{Alphanumeric, SampleString};
use wharf_domain::names::DnsLabel;
use wharf_store::Store;
use wharf_wire::{Agent, AgentCredentials, AgentSettings, CreateAgent, RegisterAgent};

use wharf_wire::text::{DETAIL_CHARS, clip};

use crate::core::{Core, CoreError, now_millis};

impl Core {
    /// Creates an agent and issues its token.
    pub async fn create_agent(&self, request: &CreateAgent) -> Result<AgentCredentials, CoreError> {
        let name = DnsLabel::parse("agent name", &request.name)?;
        let token = new_agent_token();
        let agent = self
            .store
            .create_agent(
                name.as_str(),
                &wharf_store::hash_token(&token),
                now_millis(),
            )
            .await?;
        tracing::info!(agent = %agent.name, "agent token issued");
        Ok(AgentCredentials { agent, token })
    }

    pub async fn agents(&self) -> Result<Vec<Agent>, CoreError> {
        Ok(self.store.list_agents().await?)
    }

    /// The agent whose token is `token`. The lookup is by the token's SHA-256, so timing
    /// reveals nothing about stored tokens.
    pub async fn agent_by_token(&self, token: &str) -> Result<Option<Agent>, CoreError> {
        Ok(self
            .store
            .agent_by_token_hash(&wharf_store::hash_token(token))
            .await?)
    }

    /// Records a (re)starting agent's labels and version and answers its settings. A starting
    /// agent runs nothing, so the rollouts it was in the middle of start over.
    pub async fn register_agent(
        &self,
        agent: &Agent,
        request: &RegisterAgent,
    ) -> Result<AgentSettings, CoreError> {
        wharf_wire::protocol::check_agent_protocol(request.protocol, SERVER_VERSION)
            .map_err(CoreError::Incompatible)?;
        let labels: Vec<String> = request
            .labels
            .iter()
            .map(|label| label.trim().to_owned())
            .filter(|label| !label.is_empty())
            .collect();
        if labels.iter().any(|label| {
            label.len() > 63
                || !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) {
            return Err(CoreError::Invalid(
                "labels are letters, digits, '-' and '_', at most 63 each".to_owned(),
            ));
        }
        let short = |value: &Option<String>| value.as_deref().map(|text| clip(text, DETAIL_CHARS));
        let agent = self
            .store
            .register_agent(
                agent.id,
                &labels,
                short(&request.version).as_deref(),
                short(&request.hostname).as_deref(),
                now_millis(),
            )
            .await?;
        tracing::info!(agent = %agent.name, labels = ?agent.labels, "agent registered");
        let reset = self.store.reset_rollouts(agent.id, now_millis()).await?;
        if !reset.is_empty() {
            tracing::warn!(agent = %agent.name, rollouts = ?reset, "agent restarted mid-rollout; rollouts start over");
            self.signals.releases.notify();
        }
        let lease_ms = self.config.lease.as_millis() as u64;
        Ok(AgentSettings {
            agent,
            lease_ms,
            // Heartbeats also carry cancellations to the agent, so they come often whatever the lease.
            heartbeat_ms: (lease_ms / 3).clamp(100, 2000),
            protocol: wharf_wire::protocol::AGENT_PROTOCOL,
            server_version: Some(SERVER_VERSION.to_owned()),
            registry: self.config.registry.clone(),
            registry_insecure: self.config.registry_insecure,
        })
    }
}

/// This server's Wharf version.
const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A new agent token: a recognisable prefix and 40 random alphanumerics (about 238 bits).
fn new_agent_token() -> String {
    format!(
        "wharf_agent_{}",
        Alphanumeric.sample_string(&mut rand::rng(), 40)
    )
}

/// Issues a fresh token for the agent named `name`, creating the agent when it does not exist.
pub(crate) async fn issue_agent_token(store: &Store, name: &str) -> anyhow::Result<String> {
    let token = new_agent_token();
    let hash = wharf_store::hash_token(&token);
    if store.agent_by_name(name).await?.is_some() {
        store.replace_agent_token(name, &hash).await?;
    } else {
        store.create_agent(name, &hash, now_millis()).await?;
    }
    Ok(token)
}
