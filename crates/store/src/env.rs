//! Per-service variables, and per-installation registry credentials. Secret values arrive sealed by the server and are stored only so;
//! the store never sees them in the clear.

use wharf_wire::format_millis;

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
    pub updated_at: String,
}

type EnvRow = (String, Option<String>, Option<String>, bool, bool, i64);

impl Store {
    /// Sets one variable of a service (replacing it when it exists).
    pub async fn set_env(&self, service_id: i64, variable: &StoredEnv, now: i64) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO service_env (service_id, name, value, sealed, secret, build, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (service_id, name) DO UPDATE SET value = $3, sealed = $4, secret = $5, \
                 build = $6, updated_at = $7",
            )
            .bind(service_id)
            .bind(&variable.name)
            .bind(&variable.value)
            .bind(&variable.sealed)
            .bind(variable.secret)
            .bind(variable.build)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Removes one variable.
    pub async fn unset_env(&self, service_id: i64, name: &str) -> Result<()> {
        let removed = on_pool!(self, pool => {
            sqlx::query("DELETE FROM service_env WHERE service_id = $1 AND name = $2")
                .bind(service_id)
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if removed == 0 {
            return Err(StoreError::NotFound(format!("no variable named {name}")));
        }
        Ok(())
    }

    /// A service's variables, by name.
    pub async fn list_env(&self, service_id: i64) -> Result<Vec<StoredEnv>> {
        let rows: Vec<EnvRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT name, value, sealed, secret, build, updated_at FROM service_env \
                 WHERE service_id = $1 ORDER BY name",
            )
            .bind(service_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(name, value, sealed, secret, build, updated_at)| StoredEnv {
                    name,
                    value,
                    sealed,
                    secret,
                    build,
                    updated_at: format_millis(updated_at),
                },
            )
            .collect())
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
