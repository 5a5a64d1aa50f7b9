//! Builds as agents work them: claiming one under a lease (waiting for one to be queued),
//! heartbeats that renew the leases and carry cancellations, state reports, log lines and the
//! credentials to clone the repository.

use std::time::Duration;

use secrecy::ExposeSecret;
use wharf_domain::agents::{AgentScope, BUILD_LABEL, LabelNotAllowed};
use wharf_domain::build::{ExpectedImages, ReportedImages, check_built_images};
use wharf_domain::names::RepoSource;
use wharf_domain::preview::preview_number;
use wharf_domain::stuck::build_deadline;
use wharf_store::{AppendOutcome, StateReport};
use wharf_wire::{
    Agent, AppendLogs, AppendLogsAnswer, Build, BuildArg, BuildJob, BuildSecret, BuildState,
    CloneCredentials, Heartbeat, HeartbeatAnswer, NewLogLine, ReportBuildState, SecretText,
    Service, format_millis,
};

use crate::core::signals::long_poll;
use crate::core::{Core, CoreError, clipped, now_millis};

/// Why a build of a service on a local path fails on a server that does not build them.
const LOCAL_REPOSITORY_REASON: &str = "the service's repository is a path on the server's machine, \
     and only `wharf up` builds local repositories: point the service at owner/name or an https:// URL";
/// The reason a build fails with when the server has no registry.
const NO_REGISTRY_REASON: &str =
    "the server has no registry for builds to push to: set WHARF_REGISTRY on the server";

impl Core {
    /// A build for `agent` to run under a lease, waiting up to `wait` (at most the server's
    /// `max_claim_wait`) for one to be queued; `None` when none came. Only a token that allows
    /// `build` takes builds, and only of the services it serves (the store's claim sees to it).
    /// A build taken by an agent that names its build `timeout` must end by then, and a lease's
    /// grace, or it is reported stuck.
    pub async fn claim_build(
        &self,
        agent: &Agent,
        wait: Duration,
        timeout: Option<Duration>,
    ) -> Result<Option<BuildJob>, CoreError> {
        if !AgentScope::of(agent).allows_label(BUILD_LABEL) {
            return Err(CoreError::Forbidden(
                LabelNotAllowed(BUILD_LABEL.to_owned()).to_string(),
            ));
        }
        let _waiting = self.metrics.claim_waiting();
        long_poll(
            &self.signals.queue,
            wait.min(self.config.max_claim_wait),
            move || self.hand_out_build(agent, timeout),
            Option::is_some,
        )
        .await
    }

    /// One look at the queue: the oldest build `agent` may take, with what it needs to run it.
    /// A build whose secrets cannot be handed out fails with the reason, and the next is taken.
    async fn hand_out_build(
        &self,
        agent: &Agent,
        timeout: Option<Duration>,
    ) -> Result<Option<BuildJob>, CoreError> {
        let lease_ms = self.config.lease.as_millis() as i64;
        loop {
            let now = now_millis();
            let deadline = timeout.map(|timeout| build_deadline(now, timeout, self.config.lease));
            let Some(claimed) = self
                .store
                .claim_build(agent.id, lease_ms, deadline, now)
                .await?
            else {
                return Ok(None);
            };
            self.signals.states.notify();
            self.metrics
                .observe_claim_latency(claimed.queued_for_ms.max(0) as f64 / 1000.0);
            if self.config.registry.is_none() {
                // Nowhere to push, and nothing to check a pushed image against: the build fails
                // with the reason, and this agent looks for other work.
                tracing::error!(
                    build = claimed.build.id,
                    "no registry: set WHARF_REGISTRY on the server"
                );
                self.fail_claimed_build(agent, claimed.build.id, NO_REGISTRY_REASON.to_owned())
                    .await?;
                continue;
            }
            let service = self.store.service_by_id(claimed.build.service_id).await?;
            let source = RepoSource::parse(&service.repo)?;
            if matches!(source, RepoSource::LocalPath(_)) && !self.config.local_repositories {
                // A server started otherwise than by `wharf up` on a database it left.
                self.fail_claimed_build(
                    agent,
                    claimed.build.id,
                    LOCAL_REPOSITORY_REASON.to_owned(),
                )
                .await?;
                continue;
            }
            let clone_url = source.plain_clone_url();
            let registry_login = match claimed.build.installation_id {
                Some(installation_id) => self.registry_login(installation_id, None).await?,
                None => None,
            };
            let preview = preview_number(&service.name, &claimed.build.environment).is_some();
            let fork = preview && self.builds_a_fork(&service, &claimed.build).await?;
            let variables = self.build_variables(service.id, !fork, preview).await;
            let (build_args, build_secrets) = match variables {
                Ok(variables) => variables,
                Err(error) => {
                    // The build cannot run without its secrets: it fails with the reason, and
                    // this agent looks for other work.
                    tracing::error!(build = claimed.build.id, %error, "cannot hand out the build's secrets");
                    self.fail_claimed_build(agent, claimed.build.id, format!("{error}"))
                        .await?;
                    continue;
                }
            };
            tracing::info!(build = claimed.build.id, agent = %agent.name, attempt = claimed.build.attempt, "build claimed");
            return Ok(Some(BuildJob {
                build: claimed.build,
                service,
                clone_url,
                lease_expires_at: format_millis(claimed.lease_expires_at),
                build_args,
                build_secrets,
                registry_login,
            }));
        }
    }

    /// Fails a build `agent` holds with `reason`, as if the agent had reported it.
    async fn fail_claimed_build(
        &self,
        agent: &Agent,
        build_id: i64,
        reason: String,
    ) -> Result<Build, CoreError> {
        let report = StateReport {
            agent_id: agent.id,
            build_id,
            state: BuildState::Failed,
            reason: Some(clipped(reason)),
            image: None,
            digest: None,
            failure: None,
            images: Vec::new(),
            compose_file: None,
        };
        Ok(self.store.report_build_state(&report, now_millis()).await?)
    }

    /// Whether `build` is for the preview of a pull request from a fork, whose code no one who
    /// may push wrote.
    async fn builds_a_fork(&self, service: &Service, build: &Build) -> Result<bool, CoreError> {
        if preview_number(&service.name, &build.environment).is_none() {
            return Ok(false);
        }
        let preview = self
            .store
            .preview_of_environment(service.id, &build.environment)
            .await?;
        Ok(preview.is_none_or(|preview| preview.from_fork))
    }

    /// The service's build-time variables (a preview's with its own in place of the service's
    /// of their names): plain ones as build arguments, secret ones opened for the agent as build
    /// secrets (none without `secrets_too`).
    async fn build_variables(
        &self,
        service_id: i64,
        secrets_too: bool,
        preview: bool,
    ) -> Result<(Vec<BuildArg>, Vec<BuildSecret>), CoreError> {
        let mut args = Vec::new();
        let mut secrets = Vec::new();
        for variable in self.environment_variables(service_id, preview).await? {
            if !variable.build || (variable.secret && !secrets_too) {
                continue;
            }
            let Some(value) = self.variable_value(service_id, &variable)? else {
                continue;
            };
            if variable.secret {
                secrets.push(BuildSecret {
                    name: variable.name,
                    value: SecretText::new(value),
                });
            } else {
                args.push(BuildArg {
                    name: variable.name,
                    value,
                });
            }
        }
        Ok((args, secrets))
    }

    /// Renews the leases of the builds `agent` runs; answers the ones it must stop.
    pub async fn heartbeat(
        &self,
        agent: &Agent,
        request: &Heartbeat,
    ) -> Result<HeartbeatAnswer, CoreError> {
        if request.builds.len() > 1000 {
            return Err(CoreError::Invalid(
                "at most 1000 builds per heartbeat".to_owned(),
            ));
        }
        let stop = self
            .store
            .heartbeat(
                agent.id,
                &request.builds,
                self.config.lease.as_millis() as i64,
                now_millis(),
            )
            .await?;
        Ok(HeartbeatAnswer { stop })
    }

    /// Records how the build `id` that `agent` holds is doing. A report of the build completed
    /// is checked first (the images are the ones this build pushes, to the server's registry,
    /// with sha256 digests; a compose file only for a compose service): a report that fails the
    /// check fails the build with the reason, and the answer is that failed build.
    pub async fn report_build_state(
        &self,
        agent: &Agent,
        id: i64,
        request: ReportBuildState,
    ) -> Result<Build, CoreError> {
        let mut report = StateReport {
            agent_id: agent.id,
            build_id: id,
            state: request.state,
            reason: request.reason.map(clipped),
            image: request.image,
            digest: request.digest,
            failure: request.failure.map(|mut failure| {
                failure.output_tail.truncate(100);
                failure
            }),
            images: request.images,
            compose_file: request.compose_file,
        };
        if report.state == BuildState::Completed
            && let Err(reason) = self.check_completed_report(id, &report).await?
        {
            tracing::warn!(build = id, agent = %agent.name, %reason, "a completed build's report was refused; the build fails");
            report = StateReport {
                state: BuildState::Failed,
                reason: Some(clipped(format!("the agent's report was refused: {reason}"))),
                image: None,
                digest: None,
                failure: None,
                images: Vec::new(),
                compose_file: None,
                ..report
            };
        }
        let build = self.store.report_build_state(&report, now_millis()).await?;
        self.signals.logs.notify();
        if build.state == BuildState::Completed {
            self.signals.releases.notify();
        }
        self.signals.states.notify();
        tracing::info!(build = id, agent = %agent.name, state = %build.state, "build state reported");
        Ok(build)
    }

    /// Checks a report of build `id` completed against what the build must have pushed; the
    /// inner `Err` is the reason the build fails with. On success the report holds the images
    /// as checked.
    async fn check_completed_report(
        &self,
        id: i64,
        report: &StateReport,
    ) -> Result<Result<(), String>, CoreError> {
        let Some(registry) = &self.config.registry else {
            return Ok(Err(NO_REGISTRY_REASON.to_owned()));
        };
        if report.images.len() > 100 {
            return Ok(Err(format!(
                "the agent reported {} images; a build pushes at most 100",
                report.images.len()
            )));
        }
        if report
            .compose_file
            .as_ref()
            .is_some_and(|text| text.len() > wharf_domain::compose::MAX_COMPOSE_BYTES)
        {
            return Ok(Err(
                "the agent reported a compose file that is too large".to_owned()
            ));
        }
        let build = self.store.build(id).await?;
        let service = self.store.service_by_id(build.service_id).await?;
        let expected = ExpectedImages {
            registry,
            project: &service.project,
            service: &service.name,
            commit: &build.commit_sha,
            compose: service.compose.as_deref(),
        };
        let reported = ReportedImages {
            image: report.image.as_deref(),
            digest: report.digest.as_deref(),
            images: &report.images,
            compose_file: report.compose_file.as_deref(),
        };
        Ok(check_built_images(&expected, &reported).map(drop))
    }

    /// Stores log lines of the build `id` that `agent` holds, up to the server's limit.
    pub async fn append_logs(
        &self,
        agent: &Agent,
        id: i64,
        request: &AppendLogs,
    ) -> Result<AppendLogsAnswer, CoreError> {
        check_log_batch(&request.lines)?;
        let outcome = self
            .store
            .append_logs(
                id,
                agent.id,
                &request.lines,
                self.config.max_log_bytes,
                now_millis(),
            )
            .await?;
        Ok(self.logs_appended(outcome))
    }

    /// Wakes the followers of a log that grew or was cut, and answers the agent that wrote it.
    pub(super) fn logs_appended(&self, outcome: AppendOutcome) -> AppendLogsAnswer {
        if outcome.stored > 0 || outcome.truncated {
            self.signals.logs.notify();
        }
        AppendLogsAnswer {
            truncated: outcome.truncated,
        }
    }

    /// Where `agent` clones the build `id` from, with a short-lived token for a GitHub
    /// repository: a clone token that reads that one repository's contents and nothing else. The
    /// installation's own token, which reports deployments, never reaches an agent.
    pub async fn clone_credentials(
        &self,
        agent: &Agent,
        id: i64,
    ) -> Result<CloneCredentials, CoreError> {
        let build = self.store.build(id).await?;
        if build.agent.as_deref() != Some(agent.name.as_str()) || !build.state.is_leased() {
            return Err(CoreError::Conflict(format!(
                "build #{id} is not leased to this agent"
            )));
        }
        let service = self.store.service_by_id(build.service_id).await?;
        let source = RepoSource::parse(&service.repo)?;
        let repo = match &source {
            RepoSource::GitHub(repo) => repo,
            RepoSource::LocalPath(_) if !self.config.local_repositories => {
                return Err(CoreError::Conflict(LOCAL_REPOSITORY_REASON.to_owned()));
            }
            RepoSource::PublicUrl(_) | RepoSource::LocalPath(_) => {
                return Ok(CloneCredentials {
                    clone_url: source.plain_clone_url().unwrap_or_default(),
                    token: None,
                    expires_at: None,
                });
            }
        };
        let app = self.github_app().ok_or_else(|| {
            CoreError::Unavailable("the GitHub App is not configured on the server".to_owned())
        })?;
        let installation_id = build.installation_id.ok_or_else(|| {
            CoreError::Conflict(format!(
                "build #{id} has no GitHub App installation to clone with"
            ))
        })? as u64;
        let repository = app
            .repository(installation_id, repo.owner(), repo.name())
            .await
            .map_err(|error| CoreError::Upstream(error.to_string()))?;
        let token = app
            .clone_token(installation_id, repository.id)
            .await
            .map_err(|error| CoreError::Upstream(error.to_string()))?;
        Ok(CloneCredentials {
            clone_url: repository.clone_url,
            token: Some(SecretText::new(token.token.expose_secret())),
            expires_at: Some(format_millis(token.expires_at * 1000)),
        })
    }
}

/// Refuses a batch of log lines larger than an agent ever sends at once.
pub(crate) fn check_log_batch(lines: &[NewLogLine]) -> Result<(), CoreError> {
    if lines.len() > 10_000 {
        return Err(CoreError::Invalid(
            "at most 10,000 lines per request".to_owned(),
        ));
    }
    Ok(())
}
