//! Builds as users see them: queueing one by hand (the branch head asked of GitHub or of the
//! repository), retrying, cancelling, listing, and reading or following a build's log.

use std::time::Duration;

use wharf_domain::build::check_retry;
use wharf_domain::names::{CommitSha, RepoSource};
use wharf_runtime::git::{BranchHeadError, branch_head};
use wharf_store::{BuildFilter, NewBuild};
use wharf_wire::{Build, BuildLogs, BuildTrigger, LogLine, Service, TriggerBuild};

use crate::core::signals::long_poll;
use crate::core::{Core, CoreError, now_millis};

/// The most steps a build page shows (a compose stack builds one image per service).
const MOST_STEPS: i64 = 100;
/// How many lines one page of a log carries at most.
pub(crate) const LOG_PAGE: i64 = 2000;
/// How long `git ls-remote` may take to name a public repository's branch head.
const LS_REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

impl Core {
    /// The newest builds, of one service when it is named (an unknown service is an error, not
    /// an empty list).
    pub async fn builds(
        &self,
        service: Option<String>,
        limit: Option<i64>,
    ) -> Result<Vec<Build>, CoreError> {
        if let Some(service) = &service {
            self.store.service_by_name(service).await?;
        }
        let filter = BuildFilter { service, limit };
        Ok(self.store.list_builds(&filter).await?)
    }

    pub async fn build(&self, id: i64) -> Result<Build, CoreError> {
        Ok(self.store.build(id).await?)
    }

    /// Queues a build of the service's branch: of the commit `request` names, else of the
    /// branch's head now.
    pub async fn trigger_build(
        &self,
        service_name: &str,
        request: &TriggerBuild,
    ) -> Result<Build, CoreError> {
        let service = self.store.service_by_name(service_name).await?;
        let source = RepoSource::parse(&service.repo)?;
        let installation_id = match &source {
            RepoSource::GitHub(repo) => Some(
                self.store
                    .installation_for_repo(&repo.key())
                    .await?
                    .ok_or_else(|| {
                        CoreError::Conflict(format!(
                            "no installation of the GitHub App grants access to {repo}: install the App on it, \
                             or point the service at https://github.com/{repo} if it is public"
                        ))
                    })?,
            ),
            RepoSource::PublicUrl(_) | RepoSource::LocalPath(_) => None,
        };
        let commit = match &request.git_ref {
            Some(git_ref) => CommitSha::parse(git_ref)?,
            None => self.branch_head(&service, &source, installation_id).await?,
        };
        let build = self
            .queue_build(&NewBuild {
                service_id: service.id,
                environment: None,
                commit_sha: commit.to_string(),
                branch: Some(service.branch.clone()),
                trigger: BuildTrigger::Manual,
                installation_id,
                delivery_id: None,
                retry_of: None,
                max_attempts: self.config.max_attempts,
            })
            .await?;
        tracing::info!(build = build.id, service = %service.name, commit = %build.commit_sha, "manual build queued");
        Ok(build)
    }

    /// The commit the service's branch points at now.
    async fn branch_head(
        &self,
        service: &Service,
        source: &RepoSource,
        installation_id: Option<i64>,
    ) -> Result<CommitSha, CoreError> {
        let sha = match (source, installation_id) {
            (RepoSource::GitHub(repo), Some(installation_id)) => {
                let app = self.github_app().ok_or_else(|| {
                    CoreError::Unavailable(
                        "the GitHub App is not configured: pass --ref SHA".to_owned(),
                    )
                })?;
                app.branch_head(
                    installation_id as u64,
                    repo.owner(),
                    repo.name(),
                    &service.branch,
                )
                .await
                .map_err(|error| match error.status() {
                    Some(404 | 422) => CoreError::NotFound(format!(
                        "branch {} not found in {repo}",
                        service.branch
                    )),
                    _ => CoreError::Upstream(error.to_string()),
                })?
            }
            (RepoSource::PublicUrl(_) | RepoSource::LocalPath(_), _) => {
                let url = source.plain_clone_url().unwrap_or_default();
                branch_head(&url, &service.branch, LS_REMOTE_TIMEOUT)
                    .await
                    .map_err(|error| match error {
                        BranchHeadError::Spawn(error) => {
                            CoreError::Internal(anyhow::anyhow!("cannot run git: {error}"))
                        }
                        BranchHeadError::NoSuchBranch { .. } => {
                            CoreError::NotFound(error.to_string())
                        }
                        BranchHeadError::TimedOut { .. } | BranchHeadError::Failed { .. } => {
                            CoreError::Upstream(error.to_string())
                        }
                    })?
            }
            (RepoSource::GitHub(repo), None) => {
                return Err(CoreError::Conflict(format!(
                    "no installation grants access to {repo}"
                )));
            }
        };
        Ok(CommitSha::parse(&sha)?)
    }

    /// Queues a build of the same commit again, once the build has ended.
    pub async fn retry_build(&self, id: i64) -> Result<Build, CoreError> {
        let original = self.store.build(id).await?;
        check_retry(original.state).map_err(|_| {
            CoreError::Conflict(format!(
                "build #{id} is still {}: cancel it first or wait for it to finish",
                original.state
            ))
        })?;
        let build = self
            .queue_build(&NewBuild {
                service_id: original.service_id,
                environment: Some(original.environment.clone()),
                commit_sha: original.commit_sha.clone(),
                branch: original.branch.clone(),
                trigger: BuildTrigger::Retry,
                installation_id: original.installation_id,
                delivery_id: None,
                retry_of: Some(id),
                max_attempts: self.config.max_attempts,
            })
            .await?;
        tracing::info!(build = build.id, retry_of = id, "build retried");
        Ok(build)
    }

    /// Queues a build and wakes the agents waiting for one and the GitHub reporter.
    async fn queue_build(&self, new: &NewBuild) -> Result<Build, CoreError> {
        let build = self.store.queue_build(new, now_millis()).await?;
        self.signals.queue.notify();
        self.signals.states.notify();
        Ok(build)
    }

    pub async fn cancel_build(&self, id: i64) -> Result<Build, CoreError> {
        let build = self
            .store
            .cancel_build(id, "cancelled by a user", now_millis())
            .await?;
        self.signals.logs.notify();
        self.signals.states.notify();
        tracing::info!(build = build.id, "build cancelled");
        Ok(build)
    }

    /// One page of the build's log lines after line `after`, and whether the log is complete.
    pub async fn log_page(&self, id: i64, after: i64) -> Result<BuildLogs, CoreError> {
        Ok(self.build_and_log_page(id, after).await?.1)
    }

    /// The build and one page of its log after line `after`, from one read of each.
    pub async fn build_and_log_page(
        &self,
        id: i64,
        after: i64,
    ) -> Result<(Build, BuildLogs), CoreError> {
        // The state is read before the lines: a build seen finished has all its lines stored.
        let build = self.store.build(id).await?;
        let lines = self.store.logs_after(id, after, LOG_PAGE).await?;
        let complete = build.state.is_final() && (lines.len() as i64) < LOG_PAGE;
        let page = BuildLogs {
            lines,
            state: build.state,
            complete,
            truncated: build.log_truncated,
        };
        Ok((build, page))
    }

    /// The steps of a build as Wharf noted them in its log (fetching, building, pushed, how it
    /// ended), each a line with its time.
    pub async fn build_steps(&self, id: i64) -> Result<Vec<LogLine>, CoreError> {
        Ok(self.store.build_notes(id, MOST_STEPS).await?)
    }

    /// The next page of the build's log after line `after`, waiting up to `wait` while no new
    /// line has come and the build runs, so followers need no polling interval.
    pub async fn follow_log(
        &self,
        id: i64,
        after: i64,
        wait: Duration,
    ) -> Result<BuildLogs, CoreError> {
        long_poll(
            &self.signals.logs,
            wait,
            move || self.log_page(id, after),
            |page| !page.lines.is_empty() || page.complete,
        )
        .await
    }
}
