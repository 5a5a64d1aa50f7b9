//! Dashboard sessions: a signed-in browser's session, found by the SHA-256 of the id its cookie
//! holds, with its CSRF token and its end.

use crate::{Result, Store, on_pool};

/// A session as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSession {
    /// The token every form and htmx request of the session carries.
    pub csrf_token: String,
    pub expires_at: i64,
}

impl Store {
    /// Starts a session whose id hashes to `id_hash`, ending at `expires_at`; forgets the
    /// sessions that ended before `now` on the way.
    pub async fn start_dashboard_session(
        &self,
        id_hash: &str,
        csrf_token: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO dashboard_sessions (id_hash, csrf_token, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id_hash)
            .bind(csrf_token)
            .bind(now)
            .bind(expires_at)
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
        let row: Option<(String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT csrf_token, expires_at FROM dashboard_sessions \
                 WHERE id_hash = $1 AND expires_at > $2",
            )
            .bind(id_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(csrf_token, expires_at)| DashboardSession {
            csrf_token,
            expires_at,
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
}
