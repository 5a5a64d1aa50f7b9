//! Agents as an admin sees them: issuing an agent's token and listing the agents.

use serde::{Deserialize, Serialize};

use crate::api::api_request;

/// An agent as the server knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Agent {
    pub id: i64,
    pub name: String,
    pub labels: Vec<String>,
    pub version: Option<String>,
    pub hostname: Option<String>,
    pub created_at: String,
    pub last_seen_at: Option<String>,
}

/// `POST /v1/agents`: issues a token for a new agent. The token is shown once and stored hashed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct CreateAgent {
    pub name: String,
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
