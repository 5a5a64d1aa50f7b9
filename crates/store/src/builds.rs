//! The build queue: queueing (with superseding), atomic claims under a lease, heartbeats,
//! progress reports, cancellation and the return of builds whose lease ran out.

use wharf_domain::build::{TransitionError, check_agent_report, check_cancel};
use wharf_wire::{Build, BuildState, BuildTrigger, BuiltImage, StepFailure, format_millis};

use crate::deadlines::report_builds_stuck;
use crate::{Result, Store, StoreError, in_transaction, on_pool};

/// A build to queue.
#[derive(Debug, Clone)]
pub struct NewBuild {
    pub service_id: i64,
    /// The environment the build is for; `None` for the service's own (its production).
    pub environment: Option<String>,
    pub commit_sha: String,
    pub branch: Option<String>,
    pub trigger: BuildTrigger,
    /// The GitHub App installation whose token clones the repository, when it needs one.
    pub installation_id: Option<i64>,
    pub delivery_id: Option<String>,
    pub retry_of: Option<i64>,
    /// How many claims the build gets before an expired lease fails it.
    pub max_attempts: i64,
}

/// Which builds to list.
#[derive(Debug, Clone, Default)]
pub struct BuildFilter {
    pub service: Option<String>,
    pub limit: Option<i64>,
}

/// A build an agent has just claimed.
#[derive(Debug, Clone)]
pub struct ClaimedBuild {
    pub build: Build,
    pub lease_expires_at: i64,
    /// Milliseconds the build waited in the queue before this claim.
    pub queued_for_ms: i64,
}

/// What a progress report from an agent says.
#[derive(Debug, Clone)]
pub struct StateReport {
    pub agent_id: i64,
    pub build_id: i64,
    pub state: BuildState,
    pub reason: Option<String>,
    pub image: Option<String>,
    pub digest: Option<String>,
    pub failure: Option<StepFailure>,
    pub images: Vec<BuiltImage>,
    pub compose_file: Option<String>,
}

/// The builds whose leases had run out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseExpiry {
    /// Put back to `pending` for another attempt.
    pub requeued: Vec<i64>,
    /// Failed: no attempts left.
    pub failed: Vec<i64>,
}

/// What a `rollout.stuck` event says of a build whose lease ran out.
pub const STUCK_BUILD_REASON: &str =
    "the agent running it stopped answering and its lease expired; it went back to the queue";

/// The reason kept on a build that ran out of attempts.
pub const LEASE_EXHAUSTED_REASON: &str =
    "the agent running it stopped answering and its lease expired on the last allowed attempt";

#[derive(sqlx::FromRow)]
pub(crate) struct BuildRow {
    id: i64,
    service: String,
    service_id: i64,
    environment: String,
    commit_sha: String,
    branch: Option<String>,
    trigger: String,
    state: String,
    reason: Option<String>,
    attempt: i64,
    max_attempts: i64,
    agent: Option<String>,
    delivery_id: Option<String>,
    retry_of: Option<i64>,
    installation_id: Option<i64>,
    created_at: i64,
    updated_at: i64,
    claimed_at: Option<i64>,
    finished_at: Option<i64>,
    image: Option<String>,
    digest: Option<String>,
    failed_step: Option<String>,
    failed_command: Option<String>,
    exit_code: Option<i64>,
    output_tail: Option<String>,
    log_truncated: bool,
    images: Option<String>,
    compose_file: Option<String>,
    lease_expires_at: Option<i64>,
    deadline_at: Option<i64>,
}

impl BuildRow {
    fn into_build(self) -> Build {
        let state = BuildState::parse(&self.state).unwrap_or(BuildState::Failed);
        let leased = state.is_leased();
        Build {
            id: self.id,
            service: self.service,
            service_id: self.service_id,
            environment: self.environment,
            commit_sha: self.commit_sha,
            branch: self.branch,
            trigger: BuildTrigger::parse(&self.trigger).unwrap_or(BuildTrigger::Manual),
            state,
            reason: self.reason,
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            agent: self.agent,
            delivery_id: self.delivery_id,
            retry_of: self.retry_of,
            installation_id: self.installation_id,
            created_at: format_millis(self.created_at),
            updated_at: format_millis(self.updated_at),
            claimed_at: self.claimed_at.map(format_millis),
            finished_at: self.finished_at.map(format_millis),
            image: self.image,
            digest: self.digest,
            failure: self.failed_step.map(|step| StepFailure {
                step,
                command: self.failed_command,
                exit_code: self.exit_code.and_then(|code| i32::try_from(code).ok()),
                output_tail: self
                    .output_tail
                    .map(|tail| tail.lines().map(str::to_owned).collect())
                    .unwrap_or_default(),
            }),
            log_truncated: self.log_truncated,
            images: self
                .images
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
            compose_file: self.compose_file,
            // Only work held under a lease has a lease or a deadline that means anything.
            lease_expires_at: self.lease_expires_at.filter(|_| leased).map(format_millis),
            deadline_at: self.deadline_at.filter(|_| leased).map(format_millis),
        }
    }
}

/// The columns of [`BuildRow`]; a macro so that `concat!` can build whole statements from it.
macro_rules! select_build {
    () => {
        "SELECT b.id, s.name AS service, b.service_id, b.environment, b.commit_sha, b.branch, \
         b.trigger, b.state, b.reason, b.attempt, b.max_attempts, a.name AS agent, b.delivery_id, \
         b.retry_of, b.installation_id, b.created_at, b.updated_at, \
         b.claimed_at, b.finished_at, b.image, b.digest, b.failed_step, b.failed_command, \
         b.exit_code, b.output_tail, b.log_truncated, b.images, b.compose_file, \
         b.lease_expires_at, b.deadline_at \
         FROM builds b JOIN services s ON s.id = b.service_id \
         LEFT JOIN agents a ON a.id = b.agent_id"
    };
}

/// The states in which an agent holds a build under a lease, as an SQL list.
macro_rules! leased_states {
    () => {
        "('claimed', 'cloning', 'building', 'pushing')"
    };
}
pub(crate) use leased_states;

/// The condition that the agent `$1` may take the build `b`: its token is not revoked, allows
/// `build`, and serves the build's service (any service when it names no projects or services);
/// a service on a local path (its repository starts with `/`) only for an agent allowed local
/// repositories.
macro_rules! agent_may_build {
    () => {
        concat!(
            "EXISTS (SELECT 1 FROM agents a JOIN services s ON s.id = b.service_id \
             JOIN projects p ON p.id = s.project_id \
             WHERE a.id = $1 AND a.revoked_at IS NULL AND ",
            $crate::agents::list_holds!("a.allowed_labels", "'build'"),
            " AND ((a.projects = '' AND a.services = '') OR ",
            $crate::agents::list_holds!("a.projects", "p.name"),
            " OR ",
            $crate::agents::list_holds!("a.services", "s.name"),
            ") AND (s.repo NOT LIKE '/%' OR a.local_repositories))"
        )
    };
}

/// Inserts a pending build inside the open transaction `$tx` without superseding anything.
/// Evaluates to the new build's id. Callers follow with [`supersede!`].
///
/// The build is reported to GitHub as a deployment (`github_report`, due at once) when it has
/// an installation and is of a GitHub repository (a service on a public URL has no `repo_key`),
/// and was pushed, triggered or retried on its service's tracked branch, or is a pull request's
/// for its preview.
macro_rules! insert_pending_build {
    ($tx:ident, $new:expr, $now:expr) => {{
        let new: &$crate::builds::NewBuild = $new;
        let now: i64 = $now;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO builds (service_id, environment, commit_sha, branch, trigger, state, \
             attempt, max_attempts, installation_id, delivery_id, retry_of, created_at, \
             updated_at, github_report, github_next_at, preview) \
             SELECT $1, COALESCE($10, (SELECT environment FROM services WHERE id = $1)), $2, $3, \
             $4, 'pending', 0, $5, $6, $7, $8, $9, $9, \
             reported.yes, CASE WHEN reported.yes THEN $9 END, \
             EXISTS (SELECT 1 FROM previews WHERE service_id = $1 AND environment = $10) \
             FROM (SELECT COALESCE($6 IS NOT NULL \
             AND EXISTS (SELECT 1 FROM services WHERE id = $1 AND repo_key IS NOT NULL \
             AND (($4 IN ('push', 'manual', 'retry') AND branch = $3) OR $4 = 'pull_request')), \
             FALSE) AS yes) reported \
             RETURNING id",
        )
        .bind(new.service_id)
        .bind(&new.commit_sha)
        .bind(&new.branch)
        .bind(new.trigger.as_str())
        .bind(new.max_attempts)
        .bind(new.installation_id)
        .bind(&new.delivery_id)
        .bind(new.retry_of)
        .bind(now)
        .bind(&new.environment)
        .fetch_one(&mut *$tx)
        .await?;
        id
    }};
}
pub(crate) use insert_pending_build;

/// Inside the open transaction `$tx`, the commit of the newest build of service `$service_id`
/// for its own environment (where pushes build), or `None` when it has none. A push or a
/// branch head equal to it queues nothing: that commit is built, or being built, already.
macro_rules! newest_build_commit {
    ($tx:ident, $service_id:expr) => {{
        let service_id: i64 = $service_id;
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT commit_sha FROM builds WHERE service_id = $1 \
             AND environment = (SELECT environment FROM services WHERE id = $1) \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(service_id)
        .fetch_optional(&mut *$tx)
        .await?;
        row.map(|(commit,)| commit)
    }};
}
pub(crate) use newest_build_commit;

/// Inside the open transaction `$tx`, cancels the builds of service `$service_id` older than
/// build `$newest` that it supersedes: those for the same environment (the deploy identity) that
/// are pending, and the running ones too when the service asks for that (their agents learn it
/// at their next heartbeat and stop). Another environment's builds are never touched.
macro_rules! supersede {
    ($tx:ident, $service_id:expr, $newest:expr, $now:expr) => {{
        let service_id: i64 = $service_id;
        let newest: i64 = $newest;
        let now: i64 = $now;
        let reason = wharf_domain::build::superseded_reason(newest);
        sqlx::query(concat!(
            "UPDATE builds SET state = 'cancelled', reason = $1, finished_at = $2, updated_at = $2, \
             lease_expires_at = NULL WHERE service_id = $3 \
             AND environment = (SELECT environment FROM builds WHERE id = $4) \
             AND id < $4 AND (state = 'pending' \
             OR (state IN ",
            $crate::builds::leased_states!(),
            " AND EXISTS (SELECT 1 FROM services WHERE id = $3 AND cancel_running)))"
        ))
        .bind(&reason)
        .bind(now)
        .bind(service_id)
        .bind(newest)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use supersede;

/// Inserts a pending build and cancels what it supersedes. Evaluates to the new build's id.
macro_rules! insert_build {
    ($tx:ident, $new:expr, $now:expr) => {{
        let new: &NewBuild = $new;
        let id = $crate::builds::insert_pending_build!($tx, new, $now);
        $crate::builds::supersede!($tx, new.service_id, id, $now);
        id
    }};
}
pub(crate) use insert_build;

impl Store {
    /// Queues a build; older pending builds of the same service and environment are cancelled
    /// as superseded.
    pub async fn queue_build(&self, new: &NewBuild, now: i64) -> Result<Build> {
        let id = in_transaction!(self, tx => { insert_build!(tx, new, now) });
        self.build(id).await
    }

    /// The build with id `id`.
    pub async fn build(&self, id: i64) -> Result<Build> {
        Ok(self.build_row(id).await?.into_build())
    }

    async fn build_row(&self, id: i64) -> Result<BuildRow> {
        let row: Option<BuildRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(select_build!(), " WHERE b.id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.ok_or_else(|| StoreError::NotFound(format!("no build #{id}")))
    }

    /// Builds, newest first.
    pub async fn list_builds(&self, filter: &BuildFilter) -> Result<Vec<Build>> {
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        let rows: Vec<BuildRow> = match &filter.service {
            Some(service) => on_pool!(self, pool => {
                sqlx::query_as(concat!(select_build!(), " WHERE s.name = $1 ORDER BY b.id DESC LIMIT $2"))
                    .bind(service)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }),
            None => on_pool!(self, pool => {
                sqlx::query_as(concat!(select_build!(), " ORDER BY b.id DESC LIMIT $1"))
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }),
        };
        Ok(rows.into_iter().map(BuildRow::into_build).collect())
    }

    /// The newest builds that have not finished, of every service, at most `limit`.
    pub async fn unfinished_builds(&self, limit: i64) -> Result<Vec<Build>> {
        let rows: Vec<BuildRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                select_build!(),
                " WHERE b.state IN ('pending', 'claimed', 'cloning', 'building', 'pushing') \
                 ORDER BY b.id DESC LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(BuildRow::into_build).collect())
    }

    /// Cancels a build that has not finished. A leased build's agent learns it at its next heartbeat.
    pub async fn cancel_build(&self, id: i64, reason: &str, now: i64) -> Result<Build> {
        let affected = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE builds SET state = 'cancelled', reason = $1, finished_at = $2, \
                 updated_at = $2, lease_expires_at = NULL \
                 WHERE id = $3 AND state NOT IN ('completed', 'failed', 'cancelled')",
            )
            .bind(reason)
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        let build = self.build(id).await?;
        if affected == 0
            && let Err(error) = check_cancel(build.state)
        {
            return Err(StoreError::Conflict(format!(
                "build #{id} is already {}: {error}",
                build.state
            )));
        }
        Ok(build)
    }

    /// Claims the oldest pending build for `agent_id` (a preview's only when no other waits) under a lease of `lease_ms`, atomically:
    /// however many agents claim at once, each build goes to exactly one. Only an agent whose
    /// token allows `build` gets one, and only of a service its token serves. The build must be
    /// over by `deadline_at` (`wharf_domain::stuck::build_deadline`), or has no deadline but its
    /// lease.
    pub async fn claim_build(
        &self,
        agent_id: i64,
        lease_ms: i64,
        deadline_at: Option<i64>,
        now: i64,
    ) -> Result<Option<ClaimedBuild>> {
        let claim_sql = self.pick(
            concat!(
                "UPDATE builds SET state = 'claimed', agent_id = $1, attempt = attempt + 1, \
                 lease_expires_at = $2, claimed_at = $3, updated_at = $3, reason = NULL, \
                 deadline_at = $4 WHERE id = (SELECT b.id FROM builds b WHERE b.state = 'pending' AND ",
                agent_may_build!(),
                " ORDER BY b.preview, b.id LIMIT 1) AND state = 'pending' RETURNING id"
            ),
            concat!(
                "UPDATE builds SET state = 'claimed', agent_id = $1, attempt = attempt + 1, \
                 lease_expires_at = $2, claimed_at = $3, updated_at = $3, reason = NULL, \
                 deadline_at = $4 WHERE id = (SELECT b.id FROM builds b WHERE b.state = 'pending' AND ",
                agent_may_build!(),
                " ORDER BY b.preview, b.id LIMIT 1 FOR UPDATE SKIP LOCKED) AND state = 'pending' RETURNING id"
            ),
        );
        let lease_expires_at = now + lease_ms;
        let claimed: Option<(i64,)> = on_pool!(self, pool => {
            sqlx::query_as(claim_sql)
                .bind(agent_id)
                .bind(lease_expires_at)
                .bind(now)
                .bind(deadline_at)
                .fetch_optional(pool)
                .await?
        });
        let Some((id,)) = claimed else {
            return Ok(None);
        };
        let row = self.build_row(id).await?;
        let queued_for_ms = now - row.created_at;
        Ok(Some(ClaimedBuild {
            build: row.into_build(),
            lease_expires_at,
            queued_for_ms,
        }))
    }

    /// Renews the leases of the builds `agent_id` works on and records that the agent is alive.
    /// Returns the builds the agent must stop: cancelled, finished, or leased to someone else.
    pub async fn heartbeat(
        &self,
        agent_id: i64,
        build_ids: &[i64],
        lease_ms: i64,
        now: i64,
    ) -> Result<Vec<i64>> {
        let lease_expires_at = now + lease_ms;
        let stop = in_transaction!(self, tx => {
            sqlx::query("UPDATE agents SET last_seen_at = $1 WHERE id = $2")
                .bind(now)
                .bind(agent_id)
                .execute(&mut *tx)
                .await?;
            let mut stop = Vec::new();
            for build_id in build_ids {
                let renewed = sqlx::query(concat!(
                    "UPDATE builds SET lease_expires_at = $1 WHERE id = $2 AND agent_id = $3 \
                     AND state IN ",
                    leased_states!()
                ))
                .bind(lease_expires_at)
                .bind(build_id)
                .bind(agent_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if renewed == 0 {
                    stop.push(*build_id);
                }
            }
            stop
        });
        Ok(stop)
    }

    /// Records an agent's report on a build it holds, after checking the move is allowed.
    pub async fn report_build_state(&self, report: &StateReport, now: i64) -> Result<Build> {
        let current = self.build_row(report.build_id).await?;
        let from = BuildState::parse(&current.state).unwrap_or(BuildState::Failed);
        if !from.is_leased() {
            return Err(StoreError::Conflict(format!(
                "build #{} is not leased to this agent (it is {from})",
                report.build_id
            )));
        }
        check_agent_report(from, report.state).map_err(|error: TransitionError| {
            StoreError::Conflict(format!("build #{}: {error}", report.build_id))
        })?;
        let finished_at = report.state.is_final().then_some(now);
        // The agent and state in the WHERE clause make this a compare-and-set: only the holder's
        // report counts, and a cancel or a lease expiry since the read above wins.
        let affected = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE builds SET state = $1, reason = COALESCE($2, reason), updated_at = $3, \
                 finished_at = $4, lease_expires_at = CASE WHEN $4 IS NULL THEN lease_expires_at ELSE NULL END, \
                 image = COALESCE($8, image), digest = COALESCE($9, digest), \
                 failed_step = COALESCE($10, failed_step), failed_command = COALESCE($11, failed_command), \
                 exit_code = COALESCE($12, exit_code), output_tail = COALESCE($13, output_tail), \
                 images = COALESCE($14, images), compose_file = COALESCE($15, compose_file), \
                 release_pending = ($1 = 'completed') \
                 WHERE id = $5 AND agent_id = $6 AND state = $7",
            )
            .bind(report.state.as_str())
            .bind(&report.reason)
            .bind(now)
            .bind(finished_at)
            .bind(report.build_id)
            .bind(report.agent_id)
            .bind(from.as_str())
            .bind(&report.image)
            .bind(&report.digest)
            .bind(report.failure.as_ref().map(|failure| failure.step.clone()))
            .bind(report.failure.as_ref().and_then(|failure| failure.command.clone()))
            .bind(report.failure.as_ref().and_then(|failure| failure.exit_code.map(i64::from)))
            .bind(report.failure.as_ref().map(|failure| failure.output_tail.join("\n")))
            .bind((!report.images.is_empty()).then(|| serde_json::to_string(&report.images).unwrap_or_default()))
            .bind(&report.compose_file)
            .execute(pool)
            .await?
            .rows_affected()
        });
        let build = self.build(report.build_id).await?;
        if affected == 0 {
            return Err(StoreError::Conflict(format!(
                "build #{} is not leased to this agent (it is {})",
                report.build_id, build.state
            )));
        }
        Ok(build)
    }

    /// Returns builds whose lease ran out to the queue, or fails those with no attempts left.
    pub async fn expire_leases(&self, now: i64) -> Result<LeaseExpiry> {
        let expiry = in_transaction!(self, tx => {
            let failed: Vec<(i64,)> = sqlx::query_as(concat!(
                "UPDATE builds SET state = 'failed', reason = $1, finished_at = $2, updated_at = $2, \
                 lease_expires_at = NULL WHERE lease_expires_at < $2 AND attempt >= max_attempts \
                 AND state IN ",
                leased_states!(),
                " RETURNING id"
            ))
            .bind(LEASE_EXHAUSTED_REASON)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let requeued: Vec<(i64,)> = sqlx::query_as(concat!(
                "UPDATE builds SET state = 'pending', agent_id = NULL, lease_expires_at = NULL, \
                 updated_at = $1 WHERE lease_expires_at < $1 AND state IN ",
                leased_states!(),
                " RETURNING id"
            ))
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            // A build whose agent went silent is reported stuck, once.
            for (id,) in &requeued {
                sqlx::query(report_builds_stuck!("id = $3"))
                .bind(STUCK_BUILD_REASON)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            LeaseExpiry {
                requeued: requeued.into_iter().map(|(id,)| id).collect(),
                failed: failed.into_iter().map(|(id,)| id).collect(),
            }
        });
        Ok(expiry)
    }

    /// How many builds are in each state.
    pub async fn count_builds_by_state(&self) -> Result<Vec<(BuildState, i64)>> {
        let rows: Vec<(String, i64)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT state, COUNT(*) FROM builds GROUP BY state")
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(state, count)| BuildState::parse(&state).map(|state| (state, count)))
            .collect())
    }
}
