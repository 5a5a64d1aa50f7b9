//! Preview environments of pull requests, as users see and steer them: listed with how far
//! each got, approved (a fork's or an outside author's commit), or removed by hand. What a
//! pull request's webhook does to them is the intake's (`intake.rs`), applied by the store.

use std::time::Duration;

use secrecy::SecretString;
use wharf_domain::deployment::environment_url;
use wharf_domain::duration::format_duration;
use wharf_domain::names::CommitSha;
use wharf_domain::preview::{
    PreviewBuild, PreviewRelease, PreviewStatus, images_to_remove, shown_state,
};
use wharf_registry::{Deleted, RegistryClient, RegistryError, split_reference};
use wharf_store::{PreviewOutcome, StoredPreview};
use wharf_wire::{BuildState, Preview, ReleaseState, Service, format_millis};

use crate::core::release_scheduler::preview_domain;
use crate::core::{Core, CoreError, now_millis};

impl Core {
    /// The previews of the service `service` (of every service with `None`), open ones first.
    pub async fn previews(&self, service: Option<&str>) -> Result<Vec<Preview>, CoreError> {
        let services = match service {
            Some(name) => vec![self.store.service_by_name(name).await?],
            None => self.store.list_services().await?,
        };
        let id = match service {
            Some(_) => services.first().map(|service| service.id),
            None => None,
        };
        let stored = self.store.previews(id).await?;
        Ok(stored
            .iter()
            .filter_map(|preview| {
                let service = services.iter().find(|s| s.id == preview.service_id)?;
                Some(self.shown_preview(service, preview))
            })
            .collect())
    }

    /// Approves commit `commit` (by default the head Wharf knows) of pull request `pr`'s
    /// preview of `service`, which then builds.
    pub async fn approve_preview(
        &self,
        service: &str,
        pr: u64,
        commit: Option<&str>,
        by: &str,
    ) -> Result<Preview, CoreError> {
        let service = self.store.service_by_name(service).await?;
        let number = preview_row_number(pr)?;
        let current = self.store.preview(service.id, number).await?;
        let commit = match commit {
            Some(commit) => CommitSha::parse(commit)?.to_string(),
            None => current.head_sha.clone(),
        };
        let outcome = self
            .store
            .approve_preview(
                service.id,
                number,
                &commit,
                by,
                self.config.max_attempts,
                now_millis(),
            )
            .await?;
        tracing::info!(service = %service.name, pr, commit = %commit, by, "preview approved");
        self.announce_previews(&outcome);
        let preview = self.store.preview(service.id, number).await?;
        Ok(self.shown_preview(&service, &preview))
    }

    /// Brings back pull request `pr`'s stopped preview of `service`, as a push would.
    pub async fn start_preview(&self, service: &str, pr: u64) -> Result<Preview, CoreError> {
        let service = self.store.service_by_name(service).await?;
        let number = preview_row_number(pr)?;
        let outcome = self
            .store
            .start_preview(service.id, number, self.config.max_attempts, now_millis())
            .await?;
        tracing::info!(service = %service.name, pr, "preview started");
        self.announce_previews(&outcome);
        let preview = self.store.preview(service.id, number).await?;
        Ok(self.shown_preview(&service, &preview))
    }

    /// Removes the previews of every service not pushed to within its time-to-live; answers
    /// how many.
    pub(crate) async fn expire_previews(&self) -> Result<usize, CoreError> {
        let now = now_millis();
        let mut expired = 0;
        for service in self.store.list_services().await? {
            let ttl = service.deploy.previews.ttl_ms;
            let pushed_before = now.saturating_sub(i64::try_from(ttl).unwrap_or(i64::MAX));
            for number in self.store.idle_previews(service.id, pushed_before).await? {
                let reason = format!(
                    "removed: no push for {}; a push to the pull request brings it back",
                    format_duration(Duration::from_millis(ttl))
                );
                self.take_preview_down(&service, number, &reason).await?;
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Removes from the registry the images of teardowns done on every host: those only the
    /// torn-down environment used (by digest), and only in the registry builds push to. A
    /// registry that refuses deletes is named once per teardown in the log; one out of reach
    /// is tried again at the next pass.
    pub(crate) async fn clean_torn_down_images(&self) -> Result<(), CoreError> {
        let Some(registry) = self.config.registry.as_deref() else {
            return Ok(());
        };
        for (release_id, service_id, environment) in self.store.teardowns_to_clean(20).await? {
            let (ran, others) = self
                .store
                .environment_images(service_id, &environment)
                .await?;
            let installation = self
                .store
                .preview_of_environment(service_id, &environment)
                .await?
                .and_then(|preview| preview.installation_id);
            let credentials = match installation {
                Some(id) => self.registry_login(id, Some(registry)).await?.map(|login| {
                    (
                        login.username,
                        SecretString::from(login.password.expose().to_owned()),
                    )
                }),
                None => None,
            };
            let client = RegistryClient::new(registry, self.config.registry_insecure, credentials)
                .map_err(|error| CoreError::Internal(error.into()))?;
            let mut again = false;
            for image in images_to_remove(&ran, &others) {
                let Ok(reference) = split_reference(&image) else {
                    continue;
                };
                if reference.registry != registry {
                    continue;
                }
                match client
                    .delete_manifest(&reference.repository, &reference.reference)
                    .await
                {
                    Ok(Deleted::Deleted) => {
                        tracing::info!(release = release_id, %environment, %image, "removed from the registry")
                    }
                    Ok(Deleted::Missing) => {}
                    Ok(Deleted::Refused(why)) => {
                        tracing::warn!(release = release_id, %environment, %image, %why, "the registry refuses deletes: the torn-down environment's image stays there")
                    }
                    Err(RegistryError::Unreachable { .. }) => again = true,
                    Err(error) => {
                        tracing::warn!(release = release_id, %environment, %image, %error, "cannot remove the torn-down environment's image from the registry")
                    }
                }
            }
            if !again {
                self.store.mark_registry_cleaned(release_id).await?;
            }
        }
        Ok(())
    }

    /// Removes pull request `pr`'s preview of `service` from every host now.
    pub async fn destroy_preview(&self, service: &str, pr: u64) -> Result<Preview, CoreError> {
        let service = self.store.service_by_name(service).await?;
        let number = preview_row_number(pr)?;
        self.take_preview_down(
            &service,
            number,
            "destroyed by hand; a push to the pull request brings it back",
        )
        .await?;
        let preview = self.store.preview(service.id, number).await?;
        Ok(self.shown_preview(&service, &preview))
    }

    /// Removes every preview of a service that has them turned off.
    pub(crate) async fn remove_previews_of(&self, service: &Service) -> Result<(), CoreError> {
        for preview in self.store.previews(Some(service.id)).await? {
            if PreviewStatus::parse(&preview.state) != PreviewStatus::Closed {
                self.take_preview_down(
                    service,
                    preview.number,
                    "previews were turned off for the service",
                )
                .await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn take_preview_down(
        &self,
        service: &Service,
        number: i64,
        reason: &str,
    ) -> Result<(), CoreError> {
        let teardown = self
            .store
            .destroy_preview(service.id, number, reason, now_millis())
            .await?;
        tracing::info!(service = %service.name, pr = number, teardown, reason, "preview removed");
        self.announce_previews(&PreviewOutcome {
            releases_due: teardown,
            ..PreviewOutcome::default()
        });
        self.signals.states.notify();
        Ok(())
    }

    /// Wakes whoever has work from a change to previews.
    fn announce_previews(&self, outcome: &PreviewOutcome) {
        if !outcome.build_ids.is_empty() {
            self.signals.queue.notify();
            self.signals.states.notify();
        }
        if outcome.releases_due {
            self.signals.releases.notify();
            self.signals.states.notify();
        }
    }

    /// A stored preview as the API shows it.
    pub(crate) fn shown_preview(&self, service: &Service, preview: &StoredPreview) -> Preview {
        let build = match (preview.build_id, preview.build_state.as_deref()) {
            (Some(id), Some(state)) => Some(PreviewBuild {
                id,
                state: BuildState::parse(state).unwrap_or(BuildState::Failed),
                reason: preview.build_reason.as_deref(),
            }),
            _ => None,
        };
        let release = preview
            .release_state
            .as_deref()
            .map(|state| PreviewRelease {
                state: ReleaseState::parse(state).unwrap_or(ReleaseState::Failed),
                reason: preview.release_reason.as_deref(),
                build_id: preview.release_build_id,
            });
        let (state, reason) = shown_state(
            PreviewStatus::parse(&preview.state),
            preview.reason.as_deref(),
            build,
            release,
        );
        let host = preview_domain(service, preview.number);
        Preview {
            service: service.name.clone(),
            pr: u64::try_from(preview.number).unwrap_or_default(),
            environment: preview.environment.clone(),
            state,
            reason,
            url: environment_url(&self.config.app_url_scheme, host.as_deref()),
            commit_sha: preview.head_sha.clone(),
            branch: preview.head_branch.clone(),
            from_fork: preview.from_fork,
            approved_by: preview
                .approved_sha
                .as_deref()
                .filter(|approved| *approved == preview.head_sha)
                .and(preview.approved_by.clone()),
            build_id: preview.build_id,
            release_id: preview.release_id,
            pushed_at: format_millis(preview.pushed_at),
            created_at: format_millis(preview.created_at),
            updated_at: format_millis(preview.updated_at),
        }
    }
}

fn preview_row_number(pr: u64) -> Result<i64, CoreError> {
    i64::try_from(pr)
        .ok()
        .filter(|number| *number > 0)
        .ok_or_else(|| CoreError::Invalid(format!("{pr} is not a pull request number")))
}
