//! Dashboard sign-in: the users besides the admin token, with their role and password hash,
//! and the sessions of signed-in browsers, found by the SHA-256 of the id their cookie holds.

use crate::{Result, Store, StoreError, is_unique_violation, on_pool};

/// A session as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSession {
    /// The token every form and htmx request of the session carries.
    pub csrf_token: String,
    /// Who signed in; `None` for the admin token.
    pub user: Option<String>,
    /// For a session of the admin token, the token's SHA-256.
    pub admin_token_hash: Option<String>,
    /// `admin` or `viewer`.
    pub role: String,
    pub expires_at: i64,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    csrf_token: String,
    user_name: Option<String>,
    admin_token_hash: Option<String>,
    role: String,
    expires_at: i64,
}

/// A user as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredUser {
    pub name: String,
    pub role: String,
    /// The argon2id hash of the password, in the PHC string format.
    pub password_hash: String,
    pub created_at: i64,
}

/// A session to start.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub id_hash: &'a str,
    pub csrf_token: &'a str,
    pub user: Option<&'a str>,
    pub admin_token_hash: Option<&'a str>,
    pub role: &'a str,
    pub expires_at: i64,
}

impl Store {
    /// Starts a session; forgets the sessions that ended before `now` on the way.
    pub async fn start_dashboard_session(&self, session: &NewSession<'_>, now: i64) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO dashboard_sessions \
                 (id_hash, csrf_token, user_name, admin_token_hash, role, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(session.id_hash)
            .bind(session.csrf_token)
            .bind(session.user)
            .bind(session.admin_token_hash)
            .bind(session.role)
            .bind(now)
            .bind(session.expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The session whose id hashes to `id_hash`, unless it has ended by `now`.
    pub async fn dashboard_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<DashboardSession>> {
        let row: Option<SessionRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT csrf_token, user_name, admin_token_hash, role, expires_at \
                 FROM dashboard_sessions WHERE id_hash = $1 AND expires_at > $2",
            )
            .bind(id_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|row| DashboardSession {
            csrf_token: row.csrf_token,
            user: row.user_name,
            admin_token_hash: row.admin_token_hash,
            role: row.role,
            expires_at: row.expires_at,
        }))
    }

    /// Ends the session whose id hashes to `id_hash` (signing out); true when there was one.
    pub async fn end_dashboard_session(&self, id_hash: &str) -> Result<bool> {
        let removed = on_pool!(self, pool => {
            sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = $1")
                .bind(id_hash)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(removed == 1)
    }

    /// Adds a user; a name taken already is a conflict.
    pub async fn create_user(&self, user: &StoredUser) -> Result<()> {
        let inserted: std::result::Result<_, sqlx::Error> = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&user.name)
            .bind(&user.role)
            .bind(&user.password_hash)
            .bind(user.created_at)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        });
        match inserted {
            Ok(_) => Ok(()),
            Err(error) if is_unique_violation(&error) => Err(StoreError::Conflict(format!(
                "a user named {} already exists",
                user.name
            ))),
            Err(error) => Err(error.into()),
        }
    }

    /// The user named `name`.
    pub async fn user(&self, name: &str) -> Result<Option<StoredUser>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as("SELECT name, role, password_hash, created_at FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<StoredUser>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as("SELECT name, role, password_hash, created_at FROM users ORDER BY name")
                .fetch_all(pool)
                .await?
        }))
    }

    /// Removes the user named `name`, which ends their sessions; false when there was none.
    pub async fn remove_user(&self, name: &str) -> Result<bool> {
        let removed = on_pool!(self, pool => {
            sqlx::query("DELETE FROM users WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(removed == 1)
    }
}
