//! Deploy-hook requests taken recently, by their signature, so that a captured request sent
//! again is refused by every server replica, not just the one that took it first.

use crate::{Result, Store};

impl Store {
    /// Remembers the signature of a deploy-hook request until `expires_at`. False when it was
    /// remembered already: the request was sent before.
    pub async fn remember_hook_signature(&self, signature: &str, expires_at: i64) -> Result<bool> {
        let inserted = crate::on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO hook_signatures (signature, expires_at) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(signature)
            .bind(expires_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(inserted == 1)
    }

    /// Forgets the signatures whose time passed before `now`; answers how many.
    pub async fn forget_expired_hook_signatures(&self, now: i64) -> Result<u64> {
        let removed = crate::on_pool!(self, pool => {
            sqlx::query("DELETE FROM hook_signatures WHERE expires_at < $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(removed)
    }
}
