//! Agents and their tokens. Only a SHA-256 of each token is stored: the token itself is shown
//! once, when it is issued. Tokens are long random strings, so a fast hash is enough. Each
//! token carries what it allows (`AgentScope`: labels, projects, services), set when it is
//! issued; a revoked token no longer finds its agent.

use sha2::{Digest, Sha256};
use wharf_domain::agents::{AgentScope, join_list, split_list};
use wharf_wire::{Agent, RevokedAgent, format_millis};

use crate::builds::leased_states;
use crate::releases::{refresh_release, unsettled_states};
use crate::{Result, Store, StoreError, in_transaction, is_unique_violation, on_pool};

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: i64,
    name: String,
    labels: String,
    allowed_labels: String,
    projects: String,
    services: String,
    version: Option<String>,
    hostname: Option<String>,
    created_at: i64,
    last_seen_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl From<AgentRow> for Agent {
    fn from(row: AgentRow) -> Agent {
        Agent {
            id: row.id,
            name: row.name,
            labels: split_list(&row.labels).collect(),
            allowed_labels: split_list(&row.allowed_labels).collect(),
            projects: split_list(&row.projects).collect(),
            services: split_list(&row.services).collect(),
            version: row.version,
            hostname: row.hostname,
            created_at: format_millis(row.created_at),
            last_seen_at: row.last_seen_at.map(format_millis),
            revoked_at: row.revoked_at.map(format_millis),
        }
    }
}

/// The reason kept on the rollouts an agent had not finished when its token was revoked.
pub fn revoked_reason(agent: &str) -> String {
    format!("agent {agent} was revoked")
}

/// The stored form of an agent token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// SQL that holds when the comma-separated list in the column `$list` has the item `$item` (an
/// expression), exactly: `replace` is case-sensitive and has no wildcards on both databases,
/// where `LIKE` has them and ignores case on SQLite.
macro_rules! list_holds {
    ($list:literal, $item:literal) => {
        concat!(
            "(replace(',' || ",
            $list,
            " || ',', ',' || ",
            $item,
            " || ',', '') <> (',' || ",
            $list,
            " || ','))"
        )
    };
}
pub(crate) use list_holds;

macro_rules! agent_columns {
    () => {
        "id, name, labels, allowed_labels, projects, services, version, hostname, created_at, \
         last_seen_at, revoked_at"
    };
}

macro_rules! select_agent {
    () => {
        concat!("SELECT ", agent_columns!(), " FROM agents")
    };
}

impl Store {
    /// Records a new agent with the hash of its token and what the token allows.
    pub async fn create_agent(
        &self,
        name: &str,
        token_hash: &str,
        scope: &AgentScope,
        now: i64,
    ) -> Result<Agent> {
        let inserted: std::result::Result<AgentRow, sqlx::Error> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "INSERT INTO agents (name, token_hash, allowed_labels, projects, services, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
                agent_columns!()
            ))
            .bind(name)
            .bind(token_hash)
            .bind(join_list(&scope.labels))
            .bind(join_list(&scope.projects))
            .bind(join_list(&scope.services))
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

    /// The agent whose token hashes to `token_hash`, unless the token was revoked.
    pub async fn agent_by_token_hash(&self, token_hash: &str) -> Result<Option<Agent>> {
        let row: Option<AgentRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(select_agent!(), " WHERE token_hash = $1 AND revoked_at IS NULL"))
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
    /// The new token works even if the old one was revoked; it keeps the old one's scope.
    pub async fn replace_agent_token(&self, name: &str, token_hash: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE agents SET token_hash = $1, revoked_at = NULL WHERE name = $2")
                .bind(token_hash)
                .bind(name)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Allows the agent named `name` to build services on a local path: `wharf up`'s own agent,
    /// which runs on the server's machine.
    pub async fn allow_local_repositories(&self, name: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE agents SET local_repositories = TRUE WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records what a starting agent says about itself. The caller has checked that its token
    /// allows `labels`.
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

    /// Revokes the token of the agent named `name`, in one transaction: the token stops
    /// authenticating, the builds the agent held go back to the queue, and the rollouts it had
    /// not finished fail with the reason (as `abandon_rollouts` fails a silent host's). Its live
    /// rollouts stay live: the release running on its host before stays what that host should
    /// run. Revoking a revoked agent changes nothing.
    pub async fn revoke_agent(&self, name: &str, now: i64) -> Result<RevokedAgent> {
        let reason = revoked_reason(name);
        let changed = in_transaction!(self, tx => {
            let revoked: Option<(i64,)> = sqlx::query_as(
                "UPDATE agents SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL RETURNING id",
            )
            .bind(now)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            match revoked {
                None => None,
                Some((agent_id,)) => {
                    let requeued: Vec<(i64,)> = sqlx::query_as(concat!(
                        "UPDATE builds SET state = 'pending', agent_id = NULL, lease_expires_at = NULL, \
                         updated_at = $1 WHERE agent_id = $2 AND state IN ",
                        leased_states!(),
                        " RETURNING id"
                    ))
                    .bind(now)
                    .bind(agent_id)
                    .fetch_all(&mut *tx)
                    .await?;
                    let failed: Vec<(i64, i64)> = sqlx::query_as(concat!(
                        "UPDATE rollouts SET state = 'failed', reason = $1, updated_at = $2, \
                         finished_at = $2 WHERE agent_id = $3 AND state IN ",
                        unsettled_states!(),
                        " RETURNING id, release_id"
                    ))
                    .bind(&reason)
                    .bind(now)
                    .bind(agent_id)
                    .fetch_all(&mut *tx)
                    .await?;
                    for (_, release_id) in &failed {
                        refresh_release!(tx, *release_id, now);
                    }
                    Some((requeued, failed))
                }
            }
        });
        let agent = self
            .agent_by_name(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no agent named {name}")))?;
        let (mut requeued_builds, mut failed_rollouts): (Vec<i64>, Vec<i64>) = match changed {
            Some((requeued, failed)) => (
                requeued.into_iter().map(|(id,)| id).collect(),
                failed.into_iter().map(|(id, _)| id).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        requeued_builds.sort_unstable();
        failed_rollouts.sort_unstable();
        Ok(RevokedAgent {
            agent,
            requeued_builds,
            failed_rollouts,
        })
    }
}
