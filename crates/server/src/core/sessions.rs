//! Dashboard sessions: signing in with the admin token starts one, its id (random, shown to the
//! browser once, in a cookie) finds it again, signing out ends it. The store keeps only the id's
//! hash, so its rows let no one in; each session has its own CSRF token for its writes.

use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wharf_store::hash_token;

use crate::core::{Core, CoreError, now_millis};

/// How long a session lasts from its sign-in.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// A session, as the edge that started it or found it sees it.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The cookie's value: only the browser and this answer hold it.
    pub id: String,
    /// What the session's forms and htmx requests carry.
    pub csrf_token: String,
}

/// A random token of 43 alphanumerics (about 256 bits).
pub(crate) fn random_token() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 43)
}

impl Core {
    /// Whether `given` is the admin token, compared in constant time whatever the lengths.
    pub fn is_admin_token(&self, given: &str) -> bool {
        let expected = Sha256::digest(self.config.admin_token.expose_secret().as_bytes());
        bool::from(expected.ct_eq(&Sha256::digest(given.as_bytes())))
    }

    /// Starts a session for whoever holds the admin token; `None` for any other token.
    pub async fn sign_in(&self, token: &str) -> Result<Option<Session>, CoreError> {
        if !self.is_admin_token(token) {
            return Ok(None);
        }
        let session = Session {
            id: random_token(),
            csrf_token: random_token(),
        };
        let now = now_millis();
        let lifetime = i64::try_from(SESSION_LIFETIME.as_millis()).unwrap_or(i64::MAX);
        self.store
            .start_dashboard_session(
                &hash_token(&session.id),
                &session.csrf_token,
                now,
                now.saturating_add(lifetime),
            )
            .await?;
        Ok(Some(session))
    }

    /// The session whose cookie holds `id`, while it lasts.
    pub async fn session(&self, id: &str) -> Result<Option<Session>, CoreError> {
        let found = self
            .store
            .dashboard_session(&hash_token(id), now_millis())
            .await?;
        Ok(found.map(|stored| Session {
            id: id.to_owned(),
            csrf_token: stored.csrf_token,
        }))
    }

    /// Ends the session whose cookie holds `id`.
    pub async fn sign_out(&self, id: &str) -> Result<(), CoreError> {
        self.store.end_dashboard_session(&hash_token(id)).await?;
        Ok(())
    }
}
