//! Builds reported to GitHub as deployments and as checks on their commits: which are due for a
//! look, what each should say, and what GitHub accepted.
//!
//! A reporter takes due builds under a lease: their `github_next_at` moves to the lease's end,
//! so two servers never report one build at once, and a build whose reporter died is taken
//! again when the lease runs out. Triggers (migration 0008) make a reported build due whenever
//! its state, or the state of a release made from it, changes, and count the change in
//! `github_changes`; a report that finishes after such a change leaves the build due, so the
//! change is reported too.

use wharf_wire::{
    BuildState, DeploySettings, NotificationDelivery, NotificationDeliveryState, NotificationEvent,
    ReleaseState, format_millis,
};

use crate::{Result, Store, StoreError, on_pool};

/// One build's GitHub deployment: what the build and its release say now, and what GitHub has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubReport {
    pub build_id: i64,
    pub service: String,
    /// The service's repository, `owner/name` (or a URL, for builds that are not reported).
    pub repo: String,
    pub commit_sha: String,
    /// The environment the build is for: the service's own, or one of its previews.
    pub environment: String,
    pub installation_id: Option<i64>,
    pub build_state: BuildState,
    pub build_reason: Option<String>,
    /// The service's domain, where its live version answers.
    pub domain: Option<String>,
    pub deploy: DeploySettings,
    /// The newest release made from the build: its state and reason.
    pub release: Option<(ReleaseState, Option<String>)>,
    /// Whether Wharf keeps GitHub told about the build (false once it gave up).
    pub reported: bool,
    /// The deployment GitHub made for the build.
    pub deployment_id: Option<i64>,
    /// The last status GitHub accepted for it, by GitHub's name.
    pub status: Option<String>,
    /// The check run GitHub made for the build on its commit.
    pub check_run_id: Option<i64>,
    /// The last check state GitHub accepted (a check run's or a commit status's), by Wharf's
    /// name (see `wharf_domain::check::CheckState`).
    pub check: Option<String>,
    /// GitHub said the installation may not write checks: report commit statuses instead.
    pub checks_refused: bool,
    /// Passes begun on the build since one last finished; more than one before a deployment
    /// is known means an earlier pass may have made one that was never recorded.
    pub attempts: i64,
    /// The changes counted so far; give it back to [`Store::finish_github_report`].
    pub changes: i64,
    /// The last failure, in one line.
    pub error: Option<String>,
}

/// How a pass over one build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GithubReportEnd {
    /// GitHub shows what the build and release said when the pass read them.
    UpToDate,
    /// GitHub could not be told now; look again at `at` (milliseconds since the epoch).
    RetryAt { at: i64, error: String },
    /// GitHub refused in a way another try would not change: stop reporting the build.
    GiveUp { error: String },
}

#[derive(sqlx::FromRow)]
struct GithubReportRow {
    id: i64,
    service: String,
    repo: String,
    commit_sha: String,
    environment: String,
    installation_id: Option<i64>,
    state: String,
    reason: Option<String>,
    domain: Option<String>,
    deploy: Option<String>,
    release_state: Option<String>,
    release_reason: Option<String>,
    github_report: bool,
    github_deployment_id: Option<i64>,
    github_status: Option<String>,
    github_check_run_id: Option<i64>,
    github_check: Option<String>,
    checks_refused: bool,
    github_attempts: i64,
    github_changes: i64,
    github_error: Option<String>,
}

impl From<GithubReportRow> for GithubReport {
    fn from(row: GithubReportRow) -> GithubReport {
        GithubReport {
            build_id: row.id,
            service: row.service,
            repo: row.repo,
            commit_sha: row.commit_sha,
            environment: row.environment,
            installation_id: row.installation_id,
            build_state: BuildState::parse(&row.state).unwrap_or(BuildState::Failed),
            build_reason: row.reason,
            domain: row.domain,
            deploy: row
                .deploy
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default(),
            release: row
                .release_state
                .as_deref()
                .and_then(ReleaseState::parse)
                .map(|state| (state, row.release_reason)),
            reported: row.github_report,
            deployment_id: row.github_deployment_id,
            status: row.github_status,
            check_run_id: row.github_check_run_id,
            check: row.github_check,
            checks_refused: row.checks_refused,
            attempts: row.github_attempts,
            changes: row.github_changes,
            error: row.github_error,
        }
    }
}

/// One build's report as a message of the `github` sink.
#[derive(sqlx::FromRow)]
struct GithubDeliveryRow {
    id: i64,
    service: String,
    github_deployment_id: Option<i64>,
    github_status: Option<String>,
    github_report: bool,
    github_next_at: Option<i64>,
    github_attempts: i64,
    github_error: Option<String>,
    created_at: i64,
}

impl From<GithubDeliveryRow> for NotificationDelivery {
    fn from(row: GithubDeliveryRow) -> NotificationDelivery {
        let state = if !row.github_report {
            NotificationDeliveryState::Dead
        } else if row.github_next_at.is_some() {
            NotificationDeliveryState::Pending
        } else {
            NotificationDeliveryState::Delivered
        };
        NotificationDelivery {
            id: row.id,
            message_id: row
                .github_deployment_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            event: NotificationEvent::Deployment,
            service: Some(row.service),
            disposition: row.github_status.unwrap_or_default(),
            state,
            attempts: row.github_attempts,
            last_status: None,
            last_error: row.github_error,
            created_at: format_millis(row.created_at),
            delivered_at: None,
        }
    }
}

impl Store {
    /// The `github` sink's counts: builds waiting for a report (due, under way or waiting
    /// out a failure), builds whose report GitHub refused for good, and when the first
    /// installation of the App was stored (none yet: `None`).
    pub async fn github_report_counts(&self) -> Result<(i64, i64, Option<i64>)> {
        let counts: (i64, i64, Option<i64>) = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM builds WHERE github_next_at IS NOT NULL \
                 AND github_report), \
                 (SELECT COUNT(*) FROM builds WHERE github_error IS NOT NULL AND NOT github_report), \
                 (SELECT MIN(created_at) FROM installations)",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(counts)
    }

    /// Builds reported to GitHub, newest first, as the `github` sink's messages; with
    /// `failed_only`, those whose last pass failed, given up on or not.
    pub async fn github_report_deliveries(
        &self,
        failed_only: bool,
        limit: i64,
    ) -> Result<Vec<NotificationDelivery>> {
        let rows: Vec<GithubDeliveryRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT b.id, s.name AS service, b.github_deployment_id, b.github_status, \
                 b.github_report, b.github_next_at, b.github_attempts, b.github_error, b.created_at \
                 FROM builds b JOIN services s ON s.id = b.service_id \
                 WHERE (b.github_report OR b.github_error IS NOT NULL) \
                 AND (NOT $1 OR b.github_error IS NOT NULL) ORDER BY b.id DESC LIMIT $2",
            )
            .bind(failed_only)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(NotificationDelivery::from).collect())
    }

    /// Reports again, due at `now`, every build whose report GitHub refused for good (after
    /// the cause is fixed: the App's permissions, a repository renamed back); answers how many.
    pub async fn retry_github_reports(&self, now: i64) -> Result<i64> {
        let retried = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE builds SET github_report = TRUE, github_attempts = 0, github_next_at = $1 \
                 WHERE github_error IS NOT NULL AND NOT github_report",
            )
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(retried as i64)
    }

    /// Takes up to `limit` builds due for a report at `now`, each under a lease until
    /// `now + lease_ms`, and counts the pass in their attempts. The most overdue go first;
    /// their ids come back in build order.
    pub async fn take_github_reports(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        // A plain read first: most looks find nothing due, and a read takes no write lock.
        let due: Option<(i64,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id FROM builds WHERE github_next_at <= $1 LIMIT 1")
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        if due.is_none() {
            return Ok(Vec::new());
        }
        let take = self.pick(
            "UPDATE builds SET github_next_at = $1, github_attempts = github_attempts + 1 \
             WHERE id IN (SELECT id FROM builds WHERE github_next_at <= $2 \
             ORDER BY github_next_at, id LIMIT $3) RETURNING id",
            "UPDATE builds SET github_next_at = $1, github_attempts = github_attempts + 1 \
             WHERE id IN (SELECT id FROM builds WHERE github_next_at <= $2 \
             ORDER BY github_next_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             AND github_next_at <= $2 RETURNING id",
        );
        let taken: Vec<(i64,)> = on_pool!(self, pool => {
            sqlx::query_as(take)
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        let mut ids: Vec<i64> = taken.into_iter().map(|(id,)| id).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// What build `build_id` and its newest release say, and what GitHub has of it.
    pub async fn github_report(&self, build_id: i64) -> Result<GithubReport> {
        let row: Option<GithubReportRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT b.id, s.name AS service, s.repo, b.commit_sha, b.environment, b.installation_id, \
                 b.state, b.reason, s.domain, s.deploy, \
                 (SELECT r.state FROM releases r WHERE r.build_id = b.id ORDER BY r.id DESC LIMIT 1) \
                 AS release_state, \
                 (SELECT r.reason FROM releases r WHERE r.build_id = b.id ORDER BY r.id DESC LIMIT 1) \
                 AS release_reason, \
                 b.github_report, b.github_deployment_id, b.github_status, b.github_attempts, \
                 b.github_changes, b.github_error, b.github_check_run_id, b.github_check, \
                 (i.checks_refused_at IS NOT NULL) AS checks_refused \
                 FROM builds b JOIN services s ON s.id = b.service_id \
                 LEFT JOIN installations i ON i.id = b.installation_id WHERE b.id = $1",
            )
            .bind(build_id)
            .fetch_optional(pool)
            .await?
        });
        row.map(GithubReport::from)
            .ok_or_else(|| StoreError::NotFound(format!("no build #{build_id}")))
    }

    /// Records the deployment GitHub made for a build, before any status is sent to it.
    pub async fn record_github_deployment(&self, build_id: i64, deployment_id: i64) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE builds SET github_deployment_id = $1 WHERE id = $2")
                .bind(deployment_id)
                .bind(build_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records a status GitHub accepted for a build's deployment.
    pub async fn record_github_status(&self, build_id: i64, status: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE builds SET github_status = $1 WHERE id = $2")
                .bind(status)
                .bind(build_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records the check run GitHub made for a build, before it is updated.
    pub async fn record_github_check_run(&self, build_id: i64, check_run_id: i64) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE builds SET github_check_run_id = $1 WHERE id = $2")
                .bind(check_run_id)
                .bind(build_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records a check state GitHub accepted for a build (as a check run or a commit status).
    pub async fn record_github_check(&self, build_id: i64, check: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE builds SET github_check = $1 WHERE id = $2")
                .bind(check)
                .bind(build_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records that GitHub refused installation `installation_id` the checks permission at
    /// `now`. True when this is news (it was not known already), so it is said once.
    pub async fn refuse_checks(&self, installation_id: i64, now: i64) -> Result<bool> {
        let changed = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE installations SET checks_refused_at = $1 \
                 WHERE id = $2 AND checks_refused_at IS NULL",
            )
            .bind(now)
            .bind(installation_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed > 0)
    }

    /// The last `limit` lines of a build's log, oldest first.
    pub async fn build_log_tail(&self, build_id: i64, limit: i64) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT line FROM build_logs WHERE build_id = $1 ORDER BY seq DESC LIMIT $2",
            )
            .bind(build_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().rev().map(|(line,)| line).collect())
    }

    /// The container log lines a host reported with the newest failed or rolled-back rollout
    /// of the newest release of build `build_id`, oldest first.
    pub async fn failed_rollout_log_tail(&self, build_id: i64) -> Result<Vec<String>> {
        let row: Option<(Option<String>,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT o.log_tail FROM rollouts o JOIN releases r ON r.id = o.release_id \
                 WHERE r.id = (SELECT MAX(id) FROM releases WHERE build_id = $1) \
                 AND o.state IN ('failed', 'rolled_back') AND o.log_tail IS NOT NULL \
                 ORDER BY o.updated_at DESC, o.id DESC LIMIT 1",
            )
            .bind(build_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row
            .and_then(|(text,)| text)
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default())
    }

    /// Ends a pass over a build that [`Store::take_github_reports`] took. `changes` is what
    /// [`Store::github_report`] read at the start of the pass: when the build or its release
    /// changed since, an up-to-date build stays due, to report that change too.
    pub async fn finish_github_report(
        &self,
        build_id: i64,
        changes: i64,
        end: &GithubReportEnd,
        now: i64,
    ) -> Result<()> {
        on_pool!(self, pool => {
            match end {
                GithubReportEnd::UpToDate => {
                    sqlx::query(
                        "UPDATE builds SET github_attempts = 0, github_error = NULL, \
                         github_next_at = CASE WHEN github_changes = $1 THEN NULL ELSE $2 END \
                         WHERE id = $3",
                    )
                    .bind(changes)
                    .bind(now)
                    .bind(build_id)
                    .execute(pool)
                    .await?;
                }
                GithubReportEnd::RetryAt { at, error } => {
                    sqlx::query(
                        "UPDATE builds SET github_error = $1, github_next_at = $2 WHERE id = $3",
                    )
                    .bind(error)
                    .bind(*at)
                    .bind(build_id)
                    .execute(pool)
                    .await?;
                }
                GithubReportEnd::GiveUp { error } => {
                    sqlx::query(
                        "UPDATE builds SET github_report = FALSE, github_error = $1, \
                         github_next_at = NULL WHERE id = $2",
                    )
                    .bind(error)
                    .bind(build_id)
                    .execute(pool)
                    .await?;
                }
            }
        });
        Ok(())
    }
}
