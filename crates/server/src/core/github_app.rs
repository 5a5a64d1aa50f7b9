//! The GitHub App made from the dashboard with GitHub's manifest flow: the manifest Wharf
//! offers (its webhook, setup and callback URLs, the permissions and events it needs), the
//! exchange of the code GitHub hands back for the App's id, key and webhook secret (kept
//! sealed), and loading that App at start. `WHARF_GITHUB_*` settings, when set, win: the flow is
//! refused while they are, so no one wonders which App is in use.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use wharf_github::{AppConfig, GithubApp, ManifestApp, convert_manifest};
use wharf_store::StoredGithubApp;

use crate::config::GithubSettings;
use crate::core::sealing::{GITHUB_APP_KEY_CONTEXT, GITHUB_APP_WEBHOOK_SECRET_CONTEXT};
use crate::core::{Core, CoreError, now_millis};

/// Where the GitHub App in use comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AppOrigin {
    /// `WHARF_GITHUB_*` settings (an App id, or only a webhook secret).
    Environment { app_id: Option<u64> },
    /// Made from the dashboard.
    Dashboard {
        app_id: u64,
        slug: String,
        html_url: String,
    },
    /// None yet.
    Missing,
}

/// An installation of the App and the repositories it grants, as Wharf recorded them.
#[derive(Debug, Clone)]
pub(crate) struct InstallationView {
    pub id: i64,
    pub account: String,
    pub suspended: bool,
    pub deleted: bool,
    pub repositories: Vec<String>,
}

/// GitHub allows App names of at most this many characters.
const MAX_APP_NAME: usize = 34;

impl Core {
    /// Where the App in use comes from.
    pub async fn app_origin(&self) -> Result<AppOrigin, CoreError> {
        if let Some(github) = &self.config.github {
            return Ok(AppOrigin::Environment {
                app_id: github.app.as_ref().map(GithubApp::app_id),
            });
        }
        Ok(match self.store.github_app().await? {
            Some(stored) => AppOrigin::Dashboard {
                app_id: u64::try_from(stored.app_id).unwrap_or_default(),
                slug: stored.slug,
                html_url: stored.html_url,
            },
            None => AppOrigin::Missing,
        })
    }

    /// Puts the App made from the dashboard in use, when the environment configures none: at
    /// start, before the server answers. A key that cannot be opened is logged, and webhooks are
    /// refused until it can.
    pub async fn load_github_app(&self) {
        if self.config.github.is_some() {
            return;
        }
        match self.store.github_app().await {
            Ok(Some(stored)) => match self.open_github_app(&stored) {
                Ok(settings) => {
                    tracing::info!(app_id = stored.app_id, slug = %stored.slug, "using the GitHub App made from the dashboard");
                    self.github.send_replace(Some(Arc::new(settings)));
                }
                Err(error) => {
                    tracing::error!(%error, "the GitHub App made from the dashboard cannot be used")
                }
            },
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, "reading the GitHub App made from the dashboard failed")
            }
        }
    }

    fn open_github_app(&self, stored: &StoredGithubApp) -> Result<GithubSettings, CoreError> {
        let key = self
            .config
            .sealing_key
            .open(GITHUB_APP_KEY_CONTEXT, &stored.private_key_sealed)?;
        let webhook_secret = self.config.sealing_key.open(
            GITHUB_APP_WEBHOOK_SECRET_CONTEXT,
            &stored.webhook_secret_sealed,
        )?;
        let app = GithubApp::new(&AppConfig {
            app_id: u64::try_from(stored.app_id).unwrap_or_default(),
            private_key: SecretString::from(key),
            api_url: self.config.github_api_url.clone(),
        })
        .map_err(|error| CoreError::Internal(error.into()))?;
        Ok(GithubSettings {
            webhook_secret: Some(SecretString::from(webhook_secret)),
            app: Some(app),
        })
    }

    /// The manifest GitHub makes the App from: Wharf's webhook, the setup URL GitHub sends
    /// installers back to, the callback that takes the code, and what the App needs.
    pub fn app_manifest(&self) -> Value {
        let public_url = self.config.public_url.trim_end_matches('/');
        let host = public_url
            .split("://")
            .nth(1)
            .unwrap_or(public_url)
            .split('/')
            .next()
            .unwrap_or_default();
        let name: String = format!("Wharf {host}").chars().take(MAX_APP_NAME).collect();
        json!({
            "name": name,
            "url": public_url,
            "hook_attributes": {"url": format!("{public_url}/api/webhooks/github"), "active": true},
            "redirect_url": format!("{public_url}/github/manifest/callback"),
            "setup_url": format!("{public_url}/api/github/setup"),
            "setup_on_update": true,
            "public": false,
            "default_permissions": {
                "contents": "read",
                "metadata": "read",
                "deployments": "write",
                "statuses": "write",
                "checks": "write",
                "pull_requests": "write",
                "issues": "write"
            },
            "default_events": ["push", "pull_request"]
        })
    }

    /// Exchanges the code GitHub handed back for the App it made, keeps the App (its key and
    /// webhook secret sealed) and puts it in use at once.
    pub async fn create_app_from_manifest(&self, code: &str) -> Result<AppOrigin, CoreError> {
        match self.app_origin().await? {
            AppOrigin::Missing => {}
            AppOrigin::Environment { .. } => {
                return Err(CoreError::Conflict(
                    "the GitHub App is configured by WHARF_GITHUB_* settings, which win: unset \
                     them to use an App made here"
                        .to_owned(),
                ));
            }
            AppOrigin::Dashboard { slug, .. } => {
                return Err(CoreError::Conflict(format!(
                    "a GitHub App was made here already ({slug})"
                )));
            }
        }
        let made: ManifestApp = convert_manifest(&self.config.github_api_url, code)
            .await
            .map_err(|error| match error.status() {
                Some(404 | 422) => CoreError::Invalid(
                    "GitHub does not know this code (it is used once and expires within an hour): \
                     create the App again"
                        .to_owned(),
                ),
                _ => CoreError::Upstream(error.to_string()),
            })?;
        let sealing = &self.config.sealing_key;
        let stored = StoredGithubApp {
            app_id: i64::try_from(made.id)
                .map_err(|_| CoreError::Upstream(format!("GitHub gave the App id {}", made.id)))?,
            slug: made.slug.clone(),
            html_url: made.html_url.clone(),
            private_key_sealed: sealing.seal(GITHUB_APP_KEY_CONTEXT, made.pem.expose_secret())?,
            webhook_secret_sealed: sealing.seal(
                GITHUB_APP_WEBHOOK_SECRET_CONTEXT,
                made.webhook_secret.expose_secret(),
            )?,
            created_at: now_millis(),
        };
        let settings = self.open_github_app(&stored)?;
        if !self.store.save_github_app(&stored).await? {
            return Err(CoreError::Conflict(
                "a GitHub App was made here meanwhile".to_owned(),
            ));
        }
        self.github.send_replace(Some(Arc::new(settings)));
        tracing::info!(app_id = made.id, slug = %made.slug, "GitHub App made from the manifest, in use");
        Ok(AppOrigin::Dashboard {
            app_id: made.id,
            slug: made.slug,
            html_url: made.html_url,
        })
    }

    /// The App's installations and the repositories each grants, as Wharf recorded them.
    pub async fn installations(&self) -> Result<Vec<InstallationView>, CoreError> {
        let mut views = Vec::new();
        for (id, account, suspended, deleted) in self.store.list_installations().await? {
            views.push(InstallationView {
                repositories: self.store.installation_repositories(id).await?,
                id,
                account,
                suspended,
                deleted,
            });
        }
        Ok(views)
    }
}
