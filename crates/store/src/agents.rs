//! Agents and their tokens. Only a SHA-256 of each token is stored: the token itself is shown
//! once, when it is issued. Tokens are long random strings, so a fast hash is enough.

use sha2::{Digest, Sha256};
use wharf_wire::{Agent, format_millis};

use crate::{Result, Store, StoreError, is_unique_violation, on_pool};

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: i64,
    name: String,
    labels: String,
    version: Option<String>,
    hostname: Option<String>,
    created_at: i64,
    last_seen_at: Option<i64>,
}

impl From<AgentRow> for Agent {
    fn from(row: AgentRow) -> Agent {
        Agent {
            id: row.id,
            name: row.name,
            labels: row
                .labels
                .split(',')
                .filter(|label| !label.is_empty())
                .map(str::to_owned)
                .collect(),
            version: row.version,
            hostname: row.hostname,
            created_at: format_millis(row.created_at),
            last_seen_at: row.last_seen_at.map(format_millis),
        }
    }
}

/// The stored form of an agent token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

macro_rules! select_agent {
    () => {
        "SELECT id, name, labels, version, hostname, created_at, last_seen_at FROM agents"
    };
}

impl Store {
    /// Records a new agent with the hash of its token.
    pub async fn create_agent(&self, name: &str, token_hash: &str, now: i64) -> Result<Agent> {
        let inserted: std::result::Result<AgentRow, sqlx::Error> = on_pool!(self, pool => {
            sqlx::query_as(
                "INSERT INTO agents (name, token_hash, created_at) VALUES ($1, $2, $3) \
                 RETURNING id, name, labels, version, hostname, created_at, last_seen_at",
            )
            .bind(name)
            .bind(token_hash)
            .bind(now)
            .fetch_one(pool)
            .await
        });
        match inserted {
            Ok(row) => Ok(row.into()),
            Err(error) if is_unique_violation(&error) => Err(StoreError::Conflict(format!(
                "an agent named {name} already exists"
            ))),
            Err(error) => Err(error.into()),
        }
    }

    /// The agent whose token hashes to `token_hash`.
    pub async fn agent_by_token_hash(&self, token_hash: &str) -> Result<Option<Agent>> {
        let row: Option<AgentRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(select_agent!(), " WHERE token_hash = $1"))
                .bind(token_hash)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(Agent::from))
    }

    /// The agent named `name`.
    pub async fn agent_by_name(&self, name: &str) -> Result<Option<Agent>> {
        let row: Option<AgentRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(select_agent!(), " WHERE name = $1"))
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(Agent::from))
    }

    /// Replaces the token of the agent named `name` (used by `wharf up` for its local agent).
    pub async fn replace_agent_token(&self, name: &str, token_hash: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE agents SET token_hash = $1 WHERE name = $2")
                .bind(token_hash)
                .bind(name)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records what a starting agent says about itself.
    pub async fn register_agent(
        &self,
        id: i64,
        labels: &[String],
        version: Option<&str>,
        hostname: Option<&str>,
        now: i64,
    ) -> Result<Agent> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE agents SET labels = $1, version = $2, hostname = $3, last_seen_at = $4 WHERE id = $5",
            )
            .bind(labels.join(","))
            .bind(version)
            .bind(hostname)
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?;
        });
        let row: Option<AgentRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(select_agent!(), " WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(Agent::from)
            .ok_or_else(|| StoreError::NotFound(format!("no agent with id {id}")))
    }

    /// Every agent, by name.
    pub async fn list_agents(&self) -> Result<Vec<Agent>> {
        let rows: Vec<AgentRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(select_agent!(), " ORDER BY name"))
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(Agent::from).collect())
    }
}
