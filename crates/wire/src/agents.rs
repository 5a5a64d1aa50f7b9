//! Agents as an admin sees them: issuing an agent's token with what it may do, listing the
//! agents, and revoking one.

use serde::{Deserialize, Serialize};

use crate::api::api_request;

/// The labels a token allows when its issuer names none, as every token issued before tokens
/// carried labels does.
pub const DEFAULT_AGENT_LABELS: [&str; 2] = ["build", "deploy"];

/// An agent as the server knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Agent {
    pub id: i64,
    pub name: String,
    /// The labels the agent registered with: always some of `allowed_labels`.
    pub labels: Vec<String>,
    /// The labels its token allows: `build` to take builds, `deploy` to run releases, any other
    /// label for the services whose hosts name `label:NAME`.
    #[serde(default)]
    pub allowed_labels: Vec<String>,
    /// The projects whose services it may serve; with `services`, empty for any service.
    #[serde(default)]
    pub projects: Vec<String>,
    /// The services it may serve besides those of `projects`; with `projects`, empty for any.
    #[serde(default)]
    pub services: Vec<String>,
    pub version: Option<String>,
    pub hostname: Option<String>,
    pub created_at: String,
    pub last_seen_at: Option<String>,
    /// When its token was revoked; a revoked token no longer authenticates.
    #[serde(default)]
    pub revoked_at: Option<String>,
}

/// `POST /v1/agents`: issues a token for a new agent. The token is shown once and stored hashed.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct CreateAgent {
    pub name: String,
    /// The labels the token allows; empty for [`DEFAULT_AGENT_LABELS`].
    #[serde(default)]
    pub labels: Vec<String>,
    /// The projects whose services the agent may serve; with `services`, empty for any.
    #[serde(default)]
    pub projects: Vec<String>,
    /// Services the agent may serve besides those of `projects`; with `projects`, empty for any.
    #[serde(default)]
    pub services: Vec<String>,
}

/// The answer to [`CreateAgent`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AgentCredentials {
    pub agent: Agent,
    pub token: String,
}

api_request!(CreateAgent: Post "/v1/agents" -> AgentCredentials);

/// `GET /v1/agents`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ListAgents {}

api_request!(ListAgents: Get "/v1/agents" -> Vec<Agent>);

/// `POST /v1/agents/{name}/revoke`: ends the agent's token at once. The builds it held go back
/// to the queue and the rollouts it had not finished fail; what is live on its host stays so.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RevokeAgent {
    #[serde(skip)]
    pub name: String,
}

api_request!(RevokeAgent: Post "/v1/agents/{}/revoke" [name] -> RevokedAgent);

/// The answer to [`RevokeAgent`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RevokedAgent {
    pub agent: Agent,
    /// The builds it held, back in the queue.
    pub requeued_builds: Vec<i64>,
    /// The rollouts it had not finished, failed.
    pub failed_rollouts: Vec<i64>,
}
