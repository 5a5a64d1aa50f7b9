//! Reports every reported build, and its release, to GitHub as a deployment with statuses, and
//! as a check `wharf/<service>` on its commit.
//!
//! The reporter compares states: the store says where a build and its newest release stand
//! and which status and check state GitHub last accepted; a pass over the build sends what is
//! missing, in order, creating the deployment (and the check run) first, and records each
//! answer as it comes. The store's
//! triggers make a build due whenever it or its release changes; the `states` signal
//! only makes the reporter look at once rather than at its next periodic look.
//!
//! GitHub never holds anything up: the reporter runs beside the queue, and builds, claims and
//! webhooks never wait for it. When GitHub fails (unreachable, 5xx, rate limits) the build is
//! looked at again after a backoff that grows with each failure, or when GitHub said to; when
//! GitHub refuses a request for good (404, 422, …) the build is no longer reported and keeps
//! the error. A slow GitHub takes at most [`CONCURRENCY`] passes at a time.
//!
//! A crash between GitHub making a deployment and the store recording its id would make a
//! second deployment on the next pass. To avoid it, a pass that finds earlier passes begun and
//! no deployment recorded first asks GitHub for the commit's deployments and takes the one
//! whose payload names the build; that look-up costs a request only after a failed pass. A
//! status accepted just before a crash is sent again, which GitHub shows as a repeat and is
//! otherwise harmless. The check run is kept the same way: its id is recorded before it is
//! updated, and a pass after a failed one looks for a run of the check's name on the commit
//! whose `external_id` is the build before making one.
//!
//! The check is a Check Run where the App may write checks. Where GitHub answers 403
//! "Resource not accessible by integration" (the installation lacks `checks: write`), the
//! store remembers it for the installation, it is logged once, and the installation's builds
//! get a commit status of the same name instead, which links to the build page too.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Semaphore, watch};
use wharf_domain::check::{
    CheckState, LOG_TAIL_LINES, QuotedLog, check_name, check_output, check_to_send,
    commit_status_description,
};
use wharf_domain::deployment::{
    BuildProgress, DeploymentState, DesiredStatus, build_log_url, desired_status, environment_url,
    short_description, statuses_to_send,
};
use wharf_domain::names::RepoSource;
use wharf_domain::preview::{preview_host, preview_number};
use wharf_github::{
    CheckRunFields, CheckRunOutput, GithubApp, GithubError, NewCommitStatus, NewDeployment,
    NewDeploymentStatus, RetryPolicy,
};
use wharf_store::{GithubReport, GithubReportEnd, StoreError};
use wharf_wire::BuildState;

use crate::core::{Core, jobs, now_millis};

/// Passes running at once.
const CONCURRENCY: usize = 8;
/// How long a pass holds its build. A pass makes at most five requests for the deployment and
/// three for the check, each given up after the client's 30 seconds, so a live pass never
/// outlasts its lease.
const LEASE: Duration = Duration::from_secs(300);
/// The longest wait GitHub may ask for that is honoured as asked.
const MAX_REQUESTED_WAIT: Duration = Duration::from_secs(3600);

/// Runs until shutdown, from when a GitHub App is configured.
pub(crate) async fn run(core: Core, mut shutdown: watch::Receiver<bool>) {
    if core.github_app().is_none() {
        tracing::debug!("no GitHub App yet: builds are reported to GitHub once one is made");
    }
    let Some(app) = core.wait_for_github_app(&mut shutdown).await else {
        return;
    };
    // The reporter retries through the store, with a backoff that frees its slot meanwhile;
    // each request is sent once per pass.
    let app = app.with_retry(RetryPolicy {
        attempts: 1,
        ..RetryPolicy::default()
    });
    let reporter = Reporter { core, app };
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut wake_ups = reporter.core.signals.states.subscribe();
    loop {
        // Marking the signal seen before looking means a change after this point wakes the
        // wait below.
        wake_ups.borrow_and_update();
        let free = slots.available_permits();
        if free > 0 {
            let taken = reporter
                .core
                .store
                .take_github_reports(now_millis(), LEASE.as_millis() as i64, free as i64)
                .await;
            match taken {
                Ok(build_ids) => {
                    for build_id in build_ids {
                        let Ok(slot) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        let reporter = reporter.clone();
                        tokio::spawn(async move {
                            reporter.pass(build_id).await;
                            drop(slot);
                            // A slot is free: look for more.
                            reporter.core.signals.states.notify();
                        });
                    }
                }
                Err(error) => tracing::error!(%error, "cannot look for builds to report to GitHub"),
            }
        }
        tokio::select! {
            _ = wake_ups.changed() => {}
            _ = tokio::time::sleep(reporter.core.config.github_report_interval) => {}
            _ = jobs::stopped(&mut shutdown) => return,
        }
    }
}

/// Why a pass stopped short.
enum PassFailure {
    Github(GithubError),
    Store(StoreError),
    /// The build cannot be reported at all.
    Unreportable(String),
}

impl PassFailure {
    /// True when a later pass may succeed where this one failed.
    fn is_retryable(&self) -> bool {
        match self {
            PassFailure::Github(error) => error.is_transient(),
            PassFailure::Store(_) => true,
            PassFailure::Unreportable(_) => false,
        }
    }
}

impl From<GithubError> for PassFailure {
    fn from(error: GithubError) -> PassFailure {
        PassFailure::Github(error)
    }
}

impl From<StoreError> for PassFailure {
    fn from(error: StoreError) -> PassFailure {
        PassFailure::Store(error)
    }
}

#[derive(Clone)]
struct Reporter {
    core: Core,
    app: GithubApp,
}

impl Reporter {
    /// One pass over a build the store handed out: send what GitHub lacks, then tell the store
    /// how it went.
    async fn pass(&self, build_id: i64) {
        let report = match self.core.store.github_report(build_id).await {
            Ok(report) => report,
            Err(error) => {
                // The lease brings the build back later.
                tracing::error!(build = build_id, %error, "cannot read a build to report to GitHub");
                return;
            }
        };
        let end = match self.send(&report).await {
            Ok(()) => GithubReportEnd::UpToDate,
            Err(failure) => self.failed(&report, failure),
        };
        if let Err(error) = self
            .core
            .store
            .finish_github_report(build_id, report.changes, &end, now_millis())
            .await
        {
            tracing::error!(build = build_id, %error, "cannot record a GitHub report");
        }
    }

    /// Sends what GitHub lacks: the deployment's statuses, then the check. One failing does
    /// not keep the other from being sent; when both fail, the one a later pass may mend
    /// decides how the pass ends.
    async fn send(&self, report: &GithubReport) -> Result<(), PassFailure> {
        let config = &self.core.config;
        let service_url = environment_url(&config.app_url_scheme, report_domain(report).as_deref());
        let desired = desired_status(&BuildProgress {
            build_state: report.build_state,
            build_reason: report.build_reason.as_deref(),
            release: report
                .release
                .as_ref()
                .map(|(state, reason)| (*state, reason.as_deref())),
            auto_deploy: report.deploy.auto_deploy,
            environment_url: service_url.as_deref(),
        });
        let deployment = self.send_deployment(report, &desired).await;
        let check = self.send_check(report, &desired).await;
        match (deployment, check) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(failure), Ok(())) | (Ok(()), Err(failure)) => Err(failure),
            (Err(deployment), Err(check)) if check.is_retryable() && !deployment.is_retryable() => {
                Err(check)
            }
            (Err(deployment), Err(_)) => Err(deployment),
        }
    }

    /// Sends the statuses GitHub lacks, creating the deployment first when there is none.
    async fn send_deployment(
        &self,
        report: &GithubReport,
        desired: &DesiredStatus,
    ) -> Result<(), PassFailure> {
        let config = &self.core.config;
        let last = report.status.as_deref().and_then(DeploymentState::parse);
        let statuses = statuses_to_send(last, desired.state);
        if statuses.is_empty() {
            return Ok(());
        }
        let target = Target::of(report)?;
        let deployment_id = match report.deployment_id {
            Some(id) => id as u64,
            // Replaced before GitHub heard of it: there is nothing to take back.
            None if desired.state == DeploymentState::Inactive => return Ok(()),
            None => {
                let id = self.deployment(report, &target).await?;
                self.core
                    .store
                    .record_github_deployment(report.build_id, id as i64)
                    .await?;
                id
            }
        };
        let log_url = build_log_url(&config.public_url, report.build_id);
        for state in statuses {
            let step = desired.for_step(state);
            let status = NewDeploymentStatus {
                log_url: Some(log_url.clone()),
                description: Some(step.description),
                environment_url: step.environment_url,
                ..NewDeploymentStatus::new(state)
            };
            self.app
                .create_deployment_status(
                    target.installation_id,
                    &target.owner,
                    &target.name,
                    deployment_id,
                    &status,
                )
                .await?;
            self.core
                .store
                .record_github_status(report.build_id, state.as_str())
                .await?;
            tracing::info!(
                build = report.build_id,
                deployment = deployment_id,
                %state,
                "GitHub deployment status sent"
            );
        }
        Ok(())
    }

    /// Brings the build's check on its commit to the state the deployment calls for: a check
    /// run, or a commit status where the installation may not write checks.
    async fn send_check(
        &self,
        report: &GithubReport,
        desired: &DesiredStatus,
    ) -> Result<(), PassFailure> {
        let last = report.check.as_deref().and_then(CheckState::parse);
        let Some(state) = check_to_send(desired.state, last) else {
            return Ok(());
        };
        let target = Target::of(report)?;
        if !report.checks_refused {
            match self.send_check_run(report, &target, state, desired).await {
                Ok(()) => {
                    return self.checked(report, state, "check run").await;
                }
                Err(PassFailure::Github(error)) if error.is_missing_permission() => {
                    let news = self
                        .core
                        .store
                        .refuse_checks(target.installation_id as i64, now_millis())
                        .await?;
                    if news {
                        tracing::warn!(
                            installation = target.installation_id,
                            "the GitHub App installation may not write checks (Checks: write): \
                             its builds get a commit status instead of a check run"
                        );
                    }
                }
                Err(failure) => return Err(failure),
            }
        }
        let status = NewCommitStatus {
            state: state.commit_status().to_owned(),
            target_url: build_log_url(&self.core.config.public_url, report.build_id),
            description: commit_status_description(desired),
            context: check_name(&report.service),
        };
        let sent = self
            .app
            .create_commit_status(
                target.installation_id,
                &target.owner,
                &target.name,
                &report.commit_sha,
                &status,
            )
            .await;
        match sent {
            Ok(_) => self.checked(report, state, "commit status").await,
            // Neither checks nor statuses: the deployment is all GitHub shows. The state is
            // kept as if sent, so it is not asked again until the next change.
            Err(error) if error.is_missing_permission() => {
                tracing::debug!(
                    build = report.build_id,
                    %error,
                    "the GitHub App installation may not write commit statuses either"
                );
                Ok(self
                    .core
                    .store
                    .record_github_check(report.build_id, state.as_str())
                    .await?)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Records a check state GitHub accepted.
    async fn checked(
        &self,
        report: &GithubReport,
        state: CheckState,
        kind: &str,
    ) -> Result<(), PassFailure> {
        self.core
            .store
            .record_github_check(report.build_id, state.as_str())
            .await?;
        tracing::info!(build = report.build_id, %state, kind, "GitHub check sent");
        Ok(())
    }

    /// Creates or updates the build's check run. The run's id is recorded before it is
    /// updated; a pass after a failed one first looks for a run an earlier pass made.
    async fn send_check_run(
        &self,
        report: &GithubReport,
        target: &Target,
        state: CheckState,
        desired: &DesiredStatus,
    ) -> Result<(), PassFailure> {
        let name = check_name(&report.service);
        let external_id = report.build_id.to_string();
        let fields = CheckRunFields {
            details_url: build_log_url(&self.core.config.public_url, report.build_id),
            external_id: external_id.clone(),
            status: state.run_status().to_owned(),
            conclusion: state.conclusion().map(str::to_owned),
            output: self.check_output(report, state, desired).await?,
        };
        let known = match report.check_run_id {
            Some(id) => Some(id as u64),
            None if report.attempts > 1 => self
                .app
                .check_runs_of_commit(
                    target.installation_id,
                    &target.owner,
                    &target.name,
                    &report.commit_sha,
                    &name,
                )
                .await?
                .into_iter()
                .find(|run| run.external_id.as_deref() == Some(external_id.as_str()))
                .map(|run| {
                    tracing::info!(
                        build = report.build_id,
                        check_run = run.id,
                        "found the GitHub check run an earlier pass made"
                    );
                    run.id
                }),
            None => None,
        };
        match known {
            Some(id) => {
                if report.check_run_id.is_none() {
                    self.core
                        .store
                        .record_github_check_run(report.build_id, id as i64)
                        .await?;
                }
                self.app
                    .update_check_run(
                        target.installation_id,
                        &target.owner,
                        &target.name,
                        id,
                        &fields,
                    )
                    .await?;
            }
            None => {
                let id = self
                    .app
                    .create_check_run(
                        target.installation_id,
                        &target.owner,
                        &target.name,
                        &name,
                        &report.commit_sha,
                        &fields,
                    )
                    .await?;
                self.core
                    .store
                    .record_github_check_run(report.build_id, id as i64)
                    .await?;
                tracing::info!(build = report.build_id, check_run = id, %name, "GitHub check run created");
            }
        }
        Ok(())
    }

    /// The check run's output; a failure quotes its reason, and the build log's last lines
    /// when the build failed, or the new container's when its release failed.
    async fn check_output(
        &self,
        report: &GithubReport,
        state: CheckState,
        desired: &DesiredStatus,
    ) -> Result<CheckRunOutput, StoreError> {
        let build_failed = report.build_state == BuildState::Failed;
        let (reason, log, log_tail) = if state != CheckState::Failure {
            (None, QuotedLog::Build, Vec::new())
        } else if build_failed {
            let tail = self
                .core
                .store
                .build_log_tail(report.build_id, LOG_TAIL_LINES as i64)
                .await?;
            (report.build_reason.as_deref(), QuotedLog::Build, tail)
        } else {
            let reason = report.release.as_ref().and_then(|(_, why)| why.as_deref());
            let tail = self
                .core
                .store
                .failed_rollout_log_tail(report.build_id)
                .await?;
            (reason, QuotedLog::Container, tail)
        };
        let output = check_output(state, desired, reason, log, &log_tail);
        Ok(CheckRunOutput {
            title: output.title,
            summary: output.summary,
            text: output.text,
        })
    }

    /// The build's deployment: one an earlier pass made but did not record, or a new one.
    async fn deployment(&self, report: &GithubReport, target: &Target) -> Result<u64, GithubError> {
        let preview = preview_number(&report.service, &report.environment).is_some();
        let environment = &report.environment;
        if report.attempts > 1 {
            let made = self
                .app
                .deployments_of_commit(
                    target.installation_id,
                    &target.owner,
                    &target.name,
                    &report.commit_sha,
                    environment,
                )
                .await?;
            if let Some(deployment) = made.iter().find(|deployment| {
                deployment
                    .payload
                    .get("wharf_build")
                    .and_then(|id| id.as_i64())
                    == Some(report.build_id)
            }) {
                tracing::info!(
                    build = report.build_id,
                    deployment = deployment.id,
                    "found the GitHub deployment an earlier pass made"
                );
                return Ok(deployment.id);
            }
        }
        let new = NewDeployment {
            description: Some(short_description(&format!(
                "Wharf build #{} of {}",
                report.build_id, report.service
            ))),
            payload: json!({"wharf_build": report.build_id}),
            // A preview lives only as long as its pull request.
            transient_environment: preview,
            ..NewDeployment::new(
                &report.commit_sha,
                environment,
                !preview && report.deploy.is_production(),
            )
        };
        let deployment = self
            .app
            .create_deployment(target.installation_id, &target.owner, &target.name, &new)
            .await?;
        tracing::info!(
            build = report.build_id,
            deployment = deployment.id,
            %environment,
            "GitHub deployment created"
        );
        Ok(deployment.id)
    }

    /// Decides what a failed pass leads to, and counts and logs it.
    fn failed(&self, report: &GithubReport, failure: PassFailure) -> GithubReportEnd {
        let (error, wait) = match failure {
            PassFailure::Github(error) if error.is_transient() => {
                let wait = error.retry_after().map(|wait| wait.min(MAX_REQUESTED_WAIT));
                (error.to_string(), Some(wait))
            }
            PassFailure::Github(error) => (error.to_string(), None),
            PassFailure::Store(error) => (error.to_string(), Some(None)),
            PassFailure::Unreportable(why) => (why, None),
        };
        let error: String = short_line(&error);
        match wait {
            Some(asked) => {
                let wait = asked.unwrap_or_else(|| {
                    self.core
                        .config
                        .github_retry
                        .delay(report.attempts.max(1) as u32)
                });
                self.core.metrics.count_github_report_failure(true);
                tracing::warn!(
                    build = report.build_id,
                    %error,
                    retry_in_ms = wait.as_millis() as u64,
                    "GitHub was not told of a build's progress; trying again later"
                );
                GithubReportEnd::RetryAt {
                    at: now_millis() + wait.as_millis() as i64,
                    error,
                }
            }
            None => {
                self.core.metrics.count_github_report_failure(false);
                tracing::warn!(
                    build = report.build_id,
                    %error,
                    "GitHub refused a build's deployment; the build is no longer reported"
                );
                GithubReportEnd::GiveUp { error }
            }
        }
    }
}

/// The repository and installation a build's deployment lives in.
struct Target {
    installation_id: u64,
    owner: String,
    name: String,
}

impl Target {
    fn of(report: &GithubReport) -> Result<Target, PassFailure> {
        let Ok(RepoSource::GitHub(repo)) = RepoSource::parse(&report.repo) else {
            return Err(PassFailure::Unreportable(format!(
                "{} is not a GitHub repository",
                report.repo
            )));
        };
        let installation_id = report
            .installation_id
            .and_then(|id| u64::try_from(id).ok())
            .ok_or_else(|| {
                PassFailure::Unreportable("the build has no GitHub App installation".to_owned())
            })?;
        Ok(Target {
            installation_id,
            owner: repo.owner().to_owned(),
            name: repo.name().to_owned(),
        })
    }
}

/// An error as one line of at most 500 characters, as kept on the build.
fn short_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(500) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// How long to wait after failures in a row: the first wait, doubled for each further failure,
/// up to a ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `failures`-th failure in a row (the first is 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            first: Duration::from_secs(2),
            max: Duration::from_secs(300),
        }
    }
}

/// The host name the build's environment answers at: a preview's own, else the service's.
fn report_domain(report: &GithubReport) -> Option<String> {
    match preview_number(&report.service, &report.environment) {
        Some(number) => preview_host(
            report.deploy.previews.domain.as_deref(),
            &report.service,
            report.domain.as_deref(),
            number,
        )
        .ok()
        .flatten(),
        None => report.domain.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_ceiling() {
        let backoff = Backoff::default();
        let waits: Vec<u64> = (1..=10)
            .map(|failures| backoff.delay(failures).as_secs())
            .collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff.delay(0), Duration::from_secs(2));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn errors_are_kept_as_one_short_line() {
        assert_eq!(short_line("GitHub answered\n502"), "GitHub answered 502");
        let long = short_line(&"é".repeat(600));
        assert_eq!(long.chars().count(), 501);
        assert!(long.ends_with('…'));
    }
}
