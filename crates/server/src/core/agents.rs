//! Agents: issuing their tokens with what each allows, finding an agent by its token,
//! registering one when it starts (with no label its token lacks; a restarted agent's half-done
//! rollouts start over), and revoking a token.

use rand::distr::{Alphanumeric, SampleString};
use wharf_domain::agents::{AgentScope, RegisterError};
use wharf_domain::names::DnsLabel;
use wharf_store::Store;
use wharf_wire::{
    Agent, AgentCredentials, AgentSettings, CreateAgent, RegisterAgent, RevokedAgent,
};

use wharf_wire::text::{DETAIL_CHARS, clip};

use crate::core::{Core, CoreError, now_millis};

impl Core {
    /// Creates an agent and issues its token, allowing the labels asked for (default `build`
    /// and `deploy`) for the projects and services asked for (default any).
    pub async fn create_agent(&self, request: &CreateAgent) -> Result<AgentCredentials, CoreError> {
        let name = DnsLabel::parse("agent name", &request.name)?;
        let scope = AgentScope::issue(&request.labels, &request.projects, &request.services)
            .map_err(CoreError::Invalid)?;
        let token = new_agent_token();
        let agent = self
            .store
            .create_agent(
                name.as_str(),
                &wharf_store::hash_token(&token),
                &scope,
                now_millis(),
            )
            .await?;
        tracing::info!(agent = %agent.name, labels = ?agent.allowed_labels, projects = ?agent.projects, services = ?agent.services, "agent token issued");
        Ok(AgentCredentials { agent, token })
    }

    /// Revokes the token of the agent named `name` at once: its builds go back to the queue and
    /// its unfinished rollouts fail; what is live on its host stays so.
    pub async fn revoke_agent(&self, name: &str) -> Result<RevokedAgent, CoreError> {
        let revoked = self.store.revoke_agent(name, now_millis()).await?;
        tracing::warn!(agent = %name, builds = ?revoked.requeued_builds, rollouts = ?revoked.failed_rollouts, "agent token revoked");
        if !revoked.requeued_builds.is_empty() {
            self.signals.queue.notify();
            self.signals.states.notify();
        }
        if !revoked.failed_rollouts.is_empty() {
            self.signals.releases.notify();
            self.signals.states.notify();
        }
        Ok(revoked)
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
        // Registering narrows what the token allows; it never widens it.
        let labels =
            AgentScope::of(agent)
                .register(&request.labels)
                .map_err(|error| match error {
                    RegisterError::Malformed(message) => CoreError::Invalid(message),
                    RegisterError::NotAllowed(error) => CoreError::Forbidden(error.to_string()),
                })?;
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

/// Issues a fresh token for the agent named `name`, creating the agent (allowed `build` and
/// `deploy`, for any service) when it does not exist.
/// Issues the token of `wharf up`'s own agent, on the server's machine: it alone may build
/// services whose repository is a local path.
pub(crate) async fn issue_local_agent_token(store: &Store, name: &str) -> anyhow::Result<String> {
    let token = issue_agent_token(store, name).await?;
    store.allow_local_repositories(name).await?;
    Ok(token)
}

pub(crate) async fn issue_agent_token(store: &Store, name: &str) -> anyhow::Result<String> {
    let token = new_agent_token();
    let hash = wharf_store::hash_token(&token);
    if store.agent_by_name(name).await?.is_some() {
        store.replace_agent_token(name, &hash).await?;
    } else {
        store
            .create_agent(name, &hash, &AgentScope::default_token(), now_millis())
            .await?;
    }
    Ok(token)
}
