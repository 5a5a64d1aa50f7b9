//! Dashboard sign-in: the admin token, or a user's name and password, starts a session; its id
//! (random, shown to the browser once, in a cookie) finds it again; signing out ends it. The
//! store keeps only the id's hash, so its rows let no one in; each session has its own CSRF
//! token for its writes and the role it signed in with.
//!
//! Users' passwords are made here (random, shown once) and kept as argon2id hashes; checking
//! one runs off the async workers, and an unknown name costs the same check, so how long a
//! sign-in takes does not tell which names exist.

use std::sync::LazyLock;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::distr::{Alphanumeric, SampleString};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wharf_domain::names::DnsLabel;
use wharf_store::{NewSession, StoredUser, hash_token};
use wharf_wire::{CreateUser, User, UserCredentials, UserRole, format_millis};

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
    /// Who signed in; `None` for the admin token.
    pub user: Option<String>,
    pub role: UserRole,
}

impl Session {
    /// Whether the session may change anything (a viewer's may not).
    pub fn can_write(&self) -> bool {
        self.role == UserRole::Admin
    }
}

/// A random token of 43 alphanumerics (about 256 bits).
pub(crate) fn random_token() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 43)
}

/// Password checks and hashes running at once, at most one per core: each takes about 19 MiB
/// and a core for tens of milliseconds, so a flood of sign-ins waits its turn (cheaply) instead
/// of taking the machine's memory and every thread.
static PASSWORD_TURNS: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, usize::from))
});

/// Runs `work` (an argon2 hash or check) off the async workers, when its turn comes.
async fn password_work<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CoreError> {
    let _turn = PASSWORD_TURNS
        .acquire()
        .await
        .map_err(|error| CoreError::Internal(error.into()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| CoreError::Internal(error.into()))
}

/// A hash checked when the name given is no user's, so that it costs what a real check does.
static NO_USER_HASH: LazyLock<String> = LazyLock::new(|| hash_password(&random_token()));

fn hash_password(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    let Ok(salt) = SaltString::encode_b64(&salt) else {
        return String::new();
    };
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .unwrap_or_default()
}

fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

fn user_of(stored: StoredUser) -> User {
    User {
        role: UserRole::parse(&stored.role).unwrap_or(UserRole::Viewer),
        created_at: format_millis(stored.created_at),
        name: stored.name,
    }
}

impl Core {
    /// Whether `given` is the admin token, compared in constant time whatever the lengths.
    pub fn is_admin_token(&self, given: &str) -> bool {
        let expected = Sha256::digest(self.config.admin_token.expose_secret().as_bytes());
        bool::from(expected.ct_eq(&Sha256::digest(given.as_bytes())))
    }

    /// The SHA-256 of the admin token, as sessions of the admin token keep it.
    fn admin_token_hash(&self) -> String {
        hash_token(self.config.admin_token.expose_secret())
    }

    /// Starts a session for whoever holds the admin token (`user` empty) or the password of
    /// `user`; `None` for anything else.
    pub async fn sign_in(
        &self,
        user: Option<&str>,
        secret: &str,
    ) -> Result<Option<Session>, CoreError> {
        let (user, role) = match user {
            None if self.is_admin_token(secret) => (None, UserRole::Admin),
            None => return Ok(None),
            Some(name) => {
                let stored = self.store.user(name).await?;
                let hash = stored
                    .as_ref()
                    .map_or_else(|| NO_USER_HASH.clone(), |user| user.password_hash.clone());
                let secret = secret.to_owned();
                let matches = password_work(move || password_matches(&hash, &secret)).await?;
                match stored {
                    Some(stored) if matches => (
                        Some(stored.name),
                        UserRole::parse(&stored.role).unwrap_or(UserRole::Viewer),
                    ),
                    _ => return Ok(None),
                }
            }
        };
        let session = Session {
            id: random_token(),
            csrf_token: random_token(),
            user,
            role,
        };
        let now = now_millis();
        let lifetime = i64::try_from(SESSION_LIFETIME.as_millis()).unwrap_or(i64::MAX);
        let admin_token_hash = session.user.is_none().then(|| self.admin_token_hash());
        self.store
            .start_dashboard_session(
                &NewSession {
                    id_hash: &hash_token(&session.id),
                    csrf_token: &session.csrf_token,
                    user: session.user.as_deref(),
                    admin_token_hash: admin_token_hash.as_deref(),
                    role: session.role.as_str(),
                    expires_at: now.saturating_add(lifetime),
                },
                now,
            )
            .await?;
        tracing::info!(user = session.user.as_deref().unwrap_or("(admin token)"), role = %session.role, "signed in to the dashboard");
        Ok(Some(session))
    }

    /// The session whose cookie holds `id`, while it lasts.
    pub async fn session(&self, id: &str) -> Result<Option<Session>, CoreError> {
        let found = self
            .store
            .dashboard_session(&hash_token(id), now_millis())
            .await?;
        // A session of an admin token that is no longer the admin token has ended.
        let found = found.filter(|stored| {
            stored.user.is_some()
                || stored
                    .admin_token_hash
                    .as_deref()
                    .is_some_and(|hash| hash == self.admin_token_hash())
        });
        Ok(found.map(|stored| Session {
            id: id.to_owned(),
            csrf_token: stored.csrf_token,
            user: stored.user,
            role: UserRole::parse(&stored.role).unwrap_or(UserRole::Viewer),
        }))
    }

    /// Ends the session whose cookie holds `id`.
    pub async fn sign_out(&self, id: &str) -> Result<(), CoreError> {
        self.store.end_dashboard_session(&hash_token(id)).await?;
        Ok(())
    }

    /// Adds a user with a new password, shown this once.
    pub async fn create_user(&self, request: &CreateUser) -> Result<UserCredentials, CoreError> {
        let name = DnsLabel::parse("user name", &request.name)?;
        let password = Alphanumeric.sample_string(&mut rand::rng(), 24);
        let to_hash = password.clone();
        let password_hash = password_work(move || hash_password(&to_hash)).await?;
        let stored = StoredUser {
            name: name.as_str().to_owned(),
            role: request.role.as_str().to_owned(),
            password_hash,
            created_at: now_millis(),
        };
        self.store.create_user(&stored).await?;
        tracing::info!(user = %stored.name, role = %request.role, "dashboard user added");
        Ok(UserCredentials {
            user: user_of(stored),
            password,
        })
    }

    pub async fn users(&self) -> Result<Vec<User>, CoreError> {
        Ok(self.store.users().await?.into_iter().map(user_of).collect())
    }

    /// Removes the user named `name`, ending their sessions; answers the users left.
    pub async fn remove_user(&self, name: &str) -> Result<Vec<User>, CoreError> {
        if !self.store.remove_user(name).await? {
            return Err(CoreError::NotFound(format!("no user named {name:?}")));
        }
        tracing::info!(user = %name, "dashboard user removed; their sessions ended");
        self.users().await
    }
}
