//! Installations of the GitHub App: recording one when GitHub sends a user back from
//! installing it, and the registry login builds for an installation push with, sealed.

use wharf_store::InstallationChange;
use wharf_wire::{RegistryLogin, RegistryLoginSet, SecretText, SetRegistryLogin};

use crate::core::sealing::registry_login_context;
use wharf_wire::text::{ECHOED_CHARS, clip};

use crate::core::{Core, CoreError, now_millis};

impl Core {
    /// GitHub's setup callback, with its `setup_action` and `installation_id` as given. Anyone
    /// can send them, so nothing in them is trusted: the installation is looked up with the
    /// App's own JWT and recorded only as GitHub describes it. A `request` (an organisation
    /// owner still has to approve) records nothing: its webhook will follow.
    pub async fn installation_set_up(
        &self,
        action: Option<&str>,
        installation_id: Option<&str>,
    ) -> Result<(), CoreError> {
        let app = self.github_app().ok_or_else(|| {
            CoreError::Unavailable(
                "the GitHub App is not configured: set WHARF_GITHUB_APP_ID and WHARF_GITHUB_APP_PRIVATE_KEY".to_owned(),
            )
        })?;
        let action = action.unwrap_or("install");
        if action == "request" {
            return Ok(());
        }
        if action != "install" && action != "update" {
            return Err(CoreError::Invalid(format!(
                "unknown setup_action {:?}: expected install, update or request",
                clip(action, ECHOED_CHARS)
            )));
        }
        let installation_id: u64 = installation_id
            .and_then(|id| id.parse().ok())
            .filter(|id| *id > 0 && *id <= i64::MAX as u64)
            .ok_or_else(|| {
                CoreError::Invalid("installation_id must be a positive integer".to_owned())
            })?;
        let installation = app
            .installation(installation_id)
            .await
            .map_err(|error| match error.status() {
                Some(404) => CoreError::NotFound(format!(
                    "GitHub knows no installation {installation_id} of this App"
                )),
                _ => CoreError::Upstream(error.to_string()),
            })?;
        let repositories = if installation.suspended {
            Vec::new()
        } else {
            app.installation_repositories(installation_id)
                .await
                .map_err(|error| CoreError::Upstream(error.to_string()))?
        };
        let change = InstallationChange {
            installation_id: installation_id as i64,
            account_login: installation.account_login.clone(),
            account_type: installation.account_type.clone(),
            suspended: Some(installation.suspended),
            deleted: false,
            add_repositories: repositories
                .iter()
                .map(|repository| {
                    (
                        i64::try_from(repository.id).unwrap_or(i64::MAX),
                        repository.full_name.clone(),
                        repository.private,
                    )
                })
                .collect(),
            remove_repositories: Vec::new(),
            outcome: "recorded by the setup callback".to_owned(),
        };
        self.store.apply_installation(&change, now_millis()).await?;
        tracing::info!(
            installation = installation_id,
            account = %installation.account_login,
            repositories = repositories.len(),
            "GitHub App installation recorded"
        );
        Ok(())
    }

    /// Sets the registry login of an installation's builds, the password sealed.
    pub async fn set_registry_login(
        &self,
        installation_id: i64,
        request: SetRegistryLogin,
    ) -> Result<RegistryLoginSet, CoreError> {
        if request.username.is_empty()
            || request.username.len() > 255
            || request.username.contains(':')
            || request.password.expose().is_empty()
            || request.password.expose().len() > 4096
        {
            return Err(CoreError::Invalid(
                "give a username (without ':') and a password".to_owned(),
            ));
        }
        let sealed = self.config.sealing_key.seal(
            &registry_login_context(installation_id),
            request.password.expose(),
        )?;
        self.store
            .set_registry_credentials(installation_id, &request.username, &sealed, now_millis())
            .await?;
        tracing::info!(installation = installation_id, username = %request.username, "registry login set");
        Ok(RegistryLoginSet {
            installation_id,
            username: request.username,
        })
    }

    pub async fn remove_registry_login(&self, installation_id: i64) -> Result<(), CoreError> {
        Ok(self
            .store
            .remove_registry_credentials(installation_id)
            .await?)
    }

    /// The registry login of an installation, opened for the agent that builds or deploys for it,
    /// for the registry host `registry` (None: the registry the agent pushes to).
    pub(crate) async fn registry_login(
        &self,
        installation_id: i64,
        registry: Option<&str>,
    ) -> Result<Option<RegistryLogin>, CoreError> {
        let Some((username, sealed)) = self.store.registry_credentials(installation_id).await?
        else {
            return Ok(None);
        };
        let password = self
            .config
            .sealing_key
            .open(&registry_login_context(installation_id), &sealed)?;
        Ok(Some(RegistryLogin {
            registry: registry.map(str::to_owned),
            username,
            password: SecretText::new(password),
        }))
    }
}
