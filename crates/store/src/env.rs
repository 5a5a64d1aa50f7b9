//! Per-service variables (the service's own, and those only its previews get, which override
//! the service's there), and per-installation registry credentials. Secret values arrive sealed by the server and are stored only so;
//! the store never sees them in the clear. A variable's compose members are kept as JSON, NULL
//! meaning every member (what variables from before members were named reach).

use wharf_wire::{VariableMembers, format_millis};

use crate::{Result, Store, StoreError, on_pool};

/// A variable as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEnv {
    pub name: String,
    /// The value, for plain variables.
    pub value: Option<String>,
    /// The sealed value, for secrets.
    pub sealed: Option<String>,
    pub secret: bool,
    pub build: bool,
    /// The compose members it reaches.
    pub members: VariableMembers,
    /// Only the service's previews get it (overriding the service's variable of its name).
    pub preview: bool,
    pub updated_at: String,
}

#[derive(sqlx::FromRow)]
struct EnvRow {
    name: String,
    value: Option<String>,
    sealed: Option<String>,
    secret: bool,
    build: bool,
    members: Option<String>,
    updated_at: i64,
    preview: bool,
}

/// The `members` column for `members`: NULL for every member.
fn members_column(members: &VariableMembers) -> Option<String> {
    match members {
        VariableMembers::All => None,
        other => Some(serde_json::to_string(other).unwrap_or_default()),
    }
}

/// The members a `members` column holds.
fn members_from_column(column: Option<String>) -> Result<VariableMembers> {
    match column {
        None => Ok(VariableMembers::All),
        Some(text) => serde_json::from_str(&text)
            .map_err(|error| StoreError::Database(sqlx::Error::Decode(Box::new(error)))),
    }
}

impl Store {
    /// Sets one variable of a service, or of its previews (replacing it when it exists).
    pub async fn set_env(&self, service_id: i64, variable: &StoredEnv, now: i64) -> Result<()> {
        let sql = if variable.preview {
            "INSERT INTO preview_env (service_id, name, value, sealed, secret, build, updated_at, members) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (service_id, name) DO UPDATE SET value = $3, sealed = $4, secret = $5, \
             build = $6, updated_at = $7, members = $8"
        } else {
            "INSERT INTO service_env (service_id, name, value, sealed, secret, build, updated_at, members) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (service_id, name) DO UPDATE SET value = $3, sealed = $4, secret = $5, \
             build = $6, updated_at = $7, members = $8"
        };
        on_pool!(self, pool => {
            sqlx::query(sql)
                .bind(service_id)
                .bind(&variable.name)
                .bind(&variable.value)
                .bind(&variable.sealed)
                .bind(variable.secret)
                .bind(variable.build)
                .bind(now)
                .bind(members_column(&variable.members))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Removes one variable of a service, or of its previews.
    pub async fn unset_env(&self, service_id: i64, name: &str, preview: bool) -> Result<()> {
        let sql = if preview {
            "DELETE FROM preview_env WHERE service_id = $1 AND name = $2"
        } else {
            "DELETE FROM service_env WHERE service_id = $1 AND name = $2"
        };
        let removed = on_pool!(self, pool => {
            sqlx::query(sql)
                .bind(service_id)
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if removed == 0 {
            let scope = if preview {
                "preview variable"
            } else {
                "variable"
            };
            return Err(StoreError::NotFound(format!("no {scope} named {name}")));
        }
        Ok(())
    }

    /// A service's variables, by name: its own, then its previews'.
    pub async fn list_env(&self, service_id: i64) -> Result<Vec<StoredEnv>> {
        let rows: Vec<EnvRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT name, value, sealed, secret, build, members, updated_at, FALSE AS preview \
                 FROM service_env WHERE service_id = $1 \
                 UNION ALL SELECT name, value, sealed, secret, build, members, updated_at, \
                 TRUE AS preview FROM preview_env WHERE service_id = $1 ORDER BY preview, name",
            )
            .bind(service_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|row| {
                Ok(StoredEnv {
                    name: row.name,
                    value: row.value,
                    sealed: row.sealed,
                    secret: row.secret,
                    build: row.build,
                    members: members_from_column(row.members)?,
                    preview: row.preview,
                    updated_at: format_millis(row.updated_at),
                })
            })
            .collect()
    }
}

impl Store {
    /// Sets the registry credentials of an installation's builds (the password sealed).
    pub async fn set_registry_credentials(
        &self,
        installation_id: i64,
        username: &str,
        sealed_password: &str,
        now: i64,
    ) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO registry_credentials (installation_id, username, sealed_password, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (installation_id) DO UPDATE SET username = $2, \
                 sealed_password = $3, updated_at = $4",
            )
            .bind(installation_id)
            .bind(username)
            .bind(sealed_password)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The registry credentials of an installation: (username, sealed password).
    pub async fn registry_credentials(
        &self,
        installation_id: i64,
    ) -> Result<Option<(String, String)>> {
        let row = on_pool!(self, pool => {
            sqlx::query_as("SELECT username, sealed_password FROM registry_credentials WHERE installation_id = $1")
                .bind(installation_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    /// Removes an installation's registry credentials.
    pub async fn remove_registry_credentials(&self, installation_id: i64) -> Result<()> {
        let removed = on_pool!(self, pool => {
            sqlx::query("DELETE FROM registry_credentials WHERE installation_id = $1")
                .bind(installation_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if removed == 0 {
            return Err(StoreError::NotFound(format!(
                "installation {installation_id} has no registry credentials"
            )));
        }
        Ok(())
    }
}
