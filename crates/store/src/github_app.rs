//! The GitHub App made from the dashboard through GitHub's manifest flow: one row at most, its
//! private key and webhook secret sealed by the server before they reach the store.

use crate::{Result, Store, on_pool};

/// The GitHub App made from the dashboard, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredGithubApp {
    pub app_id: i64,
    pub slug: String,
    pub html_url: String,
    pub private_key_sealed: String,
    pub webhook_secret_sealed: String,
    pub created_at: i64,
}

impl Store {
    /// Keeps the GitHub App made from the dashboard; false when one is kept already (it stays).
    pub async fn save_github_app(&self, app: &StoredGithubApp) -> Result<bool> {
        let inserted = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO github_app (singleton, app_id, slug, html_url, private_key_sealed, \
                 webhook_secret_sealed, created_at) VALUES (1, $1, $2, $3, $4, $5, $6) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(app.app_id)
            .bind(&app.slug)
            .bind(&app.html_url)
            .bind(&app.private_key_sealed)
            .bind(&app.webhook_secret_sealed)
            .bind(app.created_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(inserted == 1)
    }

    /// The GitHub App made from the dashboard, if one was.
    pub async fn github_app(&self) -> Result<Option<StoredGithubApp>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT app_id, slug, html_url, private_key_sealed, webhook_secret_sealed, \
                 created_at FROM github_app",
            )
            .fetch_optional(pool)
            .await?
        }))
    }
}
