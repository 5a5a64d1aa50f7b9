//! Releases users ask for: listing them, deploying a build or an image and rolling back without
//! a rebuild, the service's deploy-hook secret, and the hook itself, which CI calls with a
//! signed body and which answers once the rollout has an outcome.

use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use serde::Deserialize;
use wharf_domain::names::{check_image_ref, check_image_tag, image_repository};
use wharf_domain::signature::{self, MAX_TIMESTAMP_SKEW_SECONDS, SigningTime};
use wharf_store::NewRelease;
use wharf_wire::{
    Build, BuildState, DeployHook, DeployHookAnswer, DeploySecret, DeployService, Release,
    ReleaseLogs, ReleaseTrigger, RollbackService, SecretText, Service,
};

use crate::core::builds::LOG_PAGE;
use crate::core::release_scheduler::{announce, image_release, new_release};
use crate::core::sealing::deploy_secret_context;
use crate::core::signals::long_poll;
use crate::core::{Core, CoreError, now_millis};

impl Core {
    /// The service's newest releases, at most `limit` (20 unless given, at most 500).
    pub async fn releases(
        &self,
        service_name: &str,
        limit: Option<i64>,
    ) -> Result<Vec<Release>, CoreError> {
        let service = self.store.service_by_name(service_name).await?;
        let limit = limit.unwrap_or(20).clamp(1, 500);
        Ok(self.store.list_releases(service.id, limit).await?)
    }

    /// Every service's releases that are live or still rolling out (without their rollouts),
    /// and the newest builds not finished (at most `limit`): what an overview of every service
    /// shows, in two reads however many services there are.
    pub async fn work_in_progress(
        &self,
        limit: i64,
    ) -> Result<(Vec<Release>, Vec<Build>), CoreError> {
        let releases = self.store.current_releases().await?;
        let builds = self.store.unfinished_builds(limit).await?;
        Ok((releases, builds))
    }

    pub async fn release(&self, id: i64) -> Result<Release, CoreError> {
        Ok(self.store.release(id).await?)
    }

    /// One page of the release's deploy log after line `after`, and whether the log is
    /// complete: the release and each of its rollouts have settled (agents write their lines
    /// before they report a rollout's end).
    pub async fn release_log_page(&self, id: i64, after: i64) -> Result<ReleaseLogs, CoreError> {
        Ok(self.release_and_log_page(id, after).await?.1)
    }

    /// The release (with its rollouts) and one page of its deploy log after line `after`, from
    /// one read of each.
    pub async fn release_and_log_page(
        &self,
        id: i64,
        after: i64,
    ) -> Result<(Release, ReleaseLogs), CoreError> {
        // The states are read before the lines: a rollout seen settled has all its lines stored.
        let release = self.store.release(id).await?;
        let (lines, truncated) = self.store.release_logs_after(id, after, LOG_PAGE).await?;
        let settled = release.state.is_settled()
            && release
                .rollouts
                .iter()
                .all(|rollout| rollout.state.is_settled());
        let page = ReleaseLogs {
            complete: settled && (lines.len() as i64) < LOG_PAGE,
            lines,
            state: release.state,
            truncated,
        };
        Ok((release, page))
    }

    /// The next page of the release's deploy log after line `after`, waiting up to `wait`
    /// while no new line has come and the release rolls out.
    pub async fn follow_release_log(
        &self,
        id: i64,
        after: i64,
        wait: Duration,
    ) -> Result<ReleaseLogs, CoreError> {
        long_poll(
            &self.signals.logs,
            wait,
            move || self.release_log_page(id, after),
            |page| !page.lines.is_empty() || page.complete,
        )
        .await
    }

    /// Releases a build of the service (its newest completed one unless named) or an image.
    pub async fn deploy(
        &self,
        service_name: &str,
        request: DeployService,
    ) -> Result<Release, CoreError> {
        let service = self.store.service_by_name(service_name).await?;
        let new = match (request.build, request.image) {
            (Some(_), Some(_)) => {
                return Err(CoreError::Invalid(
                    "give a build or an image, not both".to_owned(),
                ));
            }
            (Some(build_id), None) => self.release_of_build(&service, build_id).await?,
            (None, Some(image)) => {
                check_image_ref(&image)?;
                image_release(&service, image, ReleaseTrigger::Manual)
            }
            (None, None) => {
                let build_id = self
                    .store
                    .latest_completed_build(service.id, &service.deploy.environment)
                    .await?
                    .ok_or_else(|| {
                        CoreError::Conflict(format!(
                            "{} has no completed build to deploy; name an image with --image",
                            service.name
                        ))
                    })?;
                self.release_of_build(&service, build_id).await?
            }
        };
        let release = self.store.create_release(&new, now_millis()).await?;
        announce(self, &release);
        Ok(release)
    }

    async fn release_of_build(
        &self,
        service: &Service,
        build_id: i64,
    ) -> Result<NewRelease, CoreError> {
        let build = self.store.build(build_id).await?;
        if build.service_id != service.id {
            return Err(CoreError::Invalid(format!(
                "build #{build_id} is not a build of {}",
                service.name
            )));
        }
        if build.state != BuildState::Completed {
            return Err(CoreError::Conflict(format!(
                "build #{build_id} is {}, not completed",
                build.state
            )));
        }
        new_release(service, &build, ReleaseTrigger::Manual)
    }

    /// Releases again what an earlier release of the service ran: the one named, else the
    /// live release before the current one.
    pub async fn rollback(
        &self,
        service_name: &str,
        request: RollbackService,
    ) -> Result<Release, CoreError> {
        let service = self.store.service_by_name(service_name).await?;
        let target_id = match request.to {
            Some(id) => id,
            None => self
                .store
                .previous_live_release(service.id, &service.deploy.environment)
                .await?
                .ok_or_else(|| {
                    CoreError::Conflict(format!(
                        "{} has no earlier live release to roll back to",
                        service.name
                    ))
                })?,
        };
        let target = self.store.release(target_id).await?;
        if target.service_id != service.id {
            return Err(CoreError::Invalid(format!(
                "release #{target_id} is not a release of {}",
                service.name
            )));
        }
        // A rollback goes to the service's environment: a release made for another one (before
        // the service moved, or a preview's) would put that version there.
        if target.environment != service.deploy.environment {
            return Err(CoreError::Conflict(format!(
                "release #{target_id} was made for {}, and {} now deploys to {}: deploy its image \
                 there with `wharf deploy {} --image {}` if that is what you mean",
                target.environment,
                service.name,
                service.deploy.environment,
                service.name,
                target.image
            )));
        }
        let new = NewRelease {
            build_id: target.build_id,
            rollback_of: Some(target.id),
            ..image_release(&service, target.image, ReleaseTrigger::Rollback)
        };
        let release = self.store.create_release(&new, now_millis()).await?;
        announce(self, &release);
        Ok(release)
    }

    /// Replaces the service's deploy-hook secret with a new one, answered once.
    pub async fn rotate_deploy_secret(
        &self,
        service_name: &str,
    ) -> Result<DeploySecret, CoreError> {
        let service = self.store.service_by_name(service_name).await?;
        let secret = format!("whd_{}", Alphanumeric.sample_string(&mut rand::rng(), 40));
        let sealed = self
            .config
            .sealing_key
            .seal(&deploy_secret_context(service.id), &secret)?;
        self.store.set_deploy_secret(service.id, &sealed).await?;
        tracing::info!(service = %service.name, "deploy-hook secret replaced");
        Ok(DeploySecret {
            secret: SecretText::new(secret),
        })
    }

    /// The CI deploy hook: `body` signed at a time with the service's deploy secret. The
    /// signing time must be within [`MAX_TIMESTAMP_SKEW_SECONDS`] of the server's clock, and
    /// then only the service's name is read before the signature is checked (it says whose
    /// secret signs the body); nothing else is looked at or acted on until the signature
    /// matches, and a request taken before is refused. Answers once the release has an
    /// outcome, or with the release still rolling out after the service's health deadline and
    /// room for the pull.
    pub async fn deploy_hook(
        &self,
        body: &[u8],
        proof: HookProof<'_>,
    ) -> Result<DeployHookAnswer, CoreError> {
        let time = SigningTime::check(proof.timestamp, now_millis() / 1000)
            .map_err(|error| CoreError::Refused(error.to_string()))?;
        let service = self.hook_service(body, &time, proof.signature).await?;
        let request: DeployHook = serde_json::from_slice(body).map_err(|error| {
            CoreError::Invalid(format!("the body is not a deploy request: {error}"))
        })?;
        let image = match (request.image, request.image_sha) {
            (Some(image), None) => {
                check_image_ref(&image)?;
                image
            }
            (None, Some(tag)) => {
                check_image_tag(&tag)?;
                format!("{}:{tag}", self.service_repository(&service).await?)
            }
            _ => {
                return Err(CoreError::Invalid(
                    "give exactly one of \"image\" and \"image_sha\"".to_owned(),
                ));
            }
        };
        let release = self
            .store
            .create_release(
                &image_release(&service, image, ReleaseTrigger::Hook),
                now_millis(),
            )
            .await?;
        announce(self, &release);
        let release = long_poll(
            &self.signals.releases,
            hook_wait(&service),
            move || self.store.release(release.id),
            |release| release.state.is_settled(),
        )
        .await?;
        Ok(DeployHookAnswer {
            release: release.id,
            state: release.state,
            reason: release.reason.clone(),
            log_url: format!(
                "{}/v1/releases/{}",
                self.config.public_url.trim_end_matches('/'),
                release.id
            ),
        })
    }

    /// The service a deploy hook's body names, once the signature proves the request comes
    /// from someone holding that service's deploy secret, and the store that no server took
    /// this request before.
    async fn hook_service(
        &self,
        body: &[u8],
        time: &SigningTime,
        signature: Option<&[u8]>,
    ) -> Result<Service, CoreError> {
        #[derive(Deserialize)]
        struct Target {
            service: String,
        }
        let refused = || {
            CoreError::Refused(
                "the signature does not match the service's deploy secret (or it has none: \
                 make one with `wharf service deploy-secret NAME`)"
                    .to_owned(),
            )
        };
        let target: Target = serde_json::from_slice(body).map_err(|error| {
            CoreError::Invalid(format!("the body is not a deploy request: {error}"))
        })?;
        let service = match self.store.service_by_name(&target.service).await {
            Ok(service) => service,
            Err(wharf_store::StoreError::NotFound(_)) => return Err(refused()),
            Err(error) => return Err(error.into()),
        };
        let sealed = self
            .store
            .deploy_secret(service.id)
            .await?
            .ok_or_else(refused)?;
        let secret = self
            .config
            .sealing_key
            .open(&deploy_secret_context(service.id), &sealed)?;
        signature::verify_timestamped(secret.as_bytes(), time, body, signature)
            .map_err(|_| refused())?;
        // The signature verified, so it is `sha256=` and 64 hex digits; in lowercase it names
        // the request whatever case the digits were sent in.
        let seen = String::from_utf8_lossy(signature.unwrap_or_default()).to_ascii_lowercase();
        let expires_at = (time.seconds + 2 * MAX_TIMESTAMP_SKEW_SECONDS) * 1000;
        if !self
            .store
            .remember_hook_signature(&seen, expires_at)
            .await?
        {
            return Err(CoreError::Refused(
                "this request was taken before: each deploy-hook request is good once (sign \
                 every request with the time it is sent)"
                    .to_owned(),
            ));
        }
        Ok(service)
    }

    /// `{registry}/{project}/{service}`: from the server's registry setting, else from the
    /// service's last pushed image.
    async fn service_repository(&self, service: &Service) -> Result<String, CoreError> {
        if let Some(registry) = &self.config.registry {
            return Ok(format!(
                "{}/{}/{}",
                registry.trim_end_matches('/'),
                service.project,
                service.name
            ));
        }
        let last = match self
            .store
            .latest_completed_build(service.id, &service.deploy.environment)
            .await?
        {
            Some(id) => self.store.build(id).await?.image,
            None => None,
        };
        last.map(|image| image_repository(&image).to_owned())
            .ok_or_else(|| {
                CoreError::Conflict(
                    "image_sha needs the registry: set WHARF_REGISTRY on the server, or send \"image\""
                        .to_owned(),
                )
            })
    }
}

/// What a deploy-hook request carries to prove who sent it and when: its `X-Wharf-Timestamp`
/// and `X-Hub-Signature-256` header values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HookProof<'a> {
    pub timestamp: Option<&'a [u8]>,
    pub signature: Option<&'a [u8]>,
}

/// How long the hook waits for an outcome: the health deadline and room for the pull, as long
/// as a rollout may take before it is stuck.
fn hook_wait(service: &Service) -> Duration {
    Duration::from_millis(service.deploy.health.deadline_ms) + wharf_domain::stuck::PULL_ALLOWANCE
}
