//! Preview environments of pull requests: one row per service and pull request, what each
//! `pull_request` event does to it (in the transaction that stores the delivery), approvals,
//! and the teardown that removes a preview from its hosts.
//!
//! A preview's builds and releases are ordinary ones, for the environment `<service>-pr-<n>`;
//! its teardown is a release too (trigger `teardown`), so it waits its turn behind a rollout
//! already running on a host, supersedes a pending one, and survives any restart.

use wharf_wire::DeploySettings;

use crate::{Result, Store, StoreError, in_transaction, on_pool};

/// A `pull_request` event, as the store applies it to the previews of the services tracking
/// its base branch.
#[derive(Debug, Clone)]
pub struct PullRequestChange {
    /// Lowercase `owner/name` of the repository the pull request is in.
    pub repo_key: String,
    pub repository_id: i64,
    pub repo_full_name: String,
    pub base_branch: String,
    pub number: i64,
    pub action: String,
    pub head_sha: String,
    pub head_branch: String,
    pub from_fork: bool,
    pub author_association: String,
    pub draft: bool,
    /// The label a `labeled` action added.
    pub label: Option<String>,
    /// Who sent the event.
    pub sender: Option<String>,
    pub installation_id: Option<i64>,
    pub max_attempts: i64,
}

/// A preview as stored, with its newest build and release.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredPreview {
    pub service: String,
    pub service_id: i64,
    /// The service's repository, `owner/name`.
    pub repo: String,
    pub number: i64,
    pub environment: String,
    /// `open`, `waiting_approval`, `draft`, `stopped` or `closed`.
    pub state: String,
    pub reason: Option<String>,
    pub head_sha: String,
    pub head_branch: String,
    pub from_fork: bool,
    pub approved_sha: Option<String>,
    pub approved_by: Option<String>,
    pub installation_id: Option<i64>,
    pub pushed_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub build_id: Option<i64>,
    pub build_state: Option<String>,
    pub build_reason: Option<String>,
    pub release_id: Option<i64>,
    pub release_state: Option<String>,
    pub release_reason: Option<String>,
    pub release_build_id: Option<i64>,
    /// The pull request's comment: GitHub's id, and the body GitHub last accepted.
    pub comment_id: Option<i64>,
    pub comment_body: Option<String>,
    /// The head whose approval label Wharf last removed.
    pub label_cleared_sha: Option<String>,
}

/// A preview's head and whether it may build, as starting it reads them.
#[derive(sqlx::FromRow)]
struct PreviewHead {
    state: String,
    environment: String,
    head_sha: String,
    head_branch: String,
    installation_id: Option<i64>,
    /// The head is in the repository itself and its author may push there.
    trusted: bool,
    approved_sha: Option<String>,
}

/// What applying a change to previews did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreviewOutcome {
    /// One line per service, for the delivery's outcome.
    pub notes: Vec<String>,
    /// Builds queued.
    pub build_ids: Vec<i64>,
    /// Completed builds (re)marked for release, or teardowns created: the release scheduler
    /// and the agents have work.
    pub releases_due: bool,
}

/// The columns of [`StoredPreview`], each preview with its newest build and its newest release
/// that is not a teardown.
macro_rules! select_preview {
    () => {
        "SELECT s.name AS service, v.service_id, s.repo, v.number, v.environment, v.state, v.reason, \
         v.head_sha, v.head_branch, v.from_fork, v.approved_sha, v.approved_by, v.installation_id, \
         v.pushed_at, v.created_at, v.updated_at, \
         b.id AS build_id, b.state AS build_state, b.reason AS build_reason, \
         r.id AS release_id, r.state AS release_state, r.reason AS release_reason, \
         r.build_id AS release_build_id, v.comment_id, v.comment_body, v.label_cleared_sha \
         FROM previews v JOIN services s ON s.id = v.service_id \
         LEFT JOIN builds b ON b.id = (SELECT MAX(id) FROM builds \
         WHERE service_id = v.service_id AND environment = v.environment) \
         LEFT JOIN releases r ON r.id = (SELECT MAX(id) FROM releases \
         WHERE service_id = v.service_id AND environment = v.environment \
         AND trigger NOT IN ('teardown', 'stop'))"
    };
}

/// The hosts a service's previews run on: their own setting, else the service's.
pub(crate) fn preview_hosts(settings: &DeploySettings) -> Vec<String> {
    if settings.previews.hosts.is_empty() {
        settings.hosts.clone()
    } else {
        settings.previews.hosts.clone()
    }
}

/// Inside the open transaction `$tx`, makes the preview `$environment` of service
/// `$service_id` run commit `$commit`: nothing when its newest build is that commit and is
/// still on its way; that build released again when it completed; a completed build of the
/// same commit for any environment of the service copied for the preview (its images are
/// reused, not built again); else a new build, superseding the preview's older ones (running
/// ones too). Evaluates to `(queued build, release due)`.
macro_rules! build_preview {
    ($tx:ident, $service_id:expr, $environment:expr, $commit:expr, $branch:expr, $installation:expr, $delivery:expr, $max_attempts:expr, $now:expr) => {{
        let service_id: i64 = $service_id;
        let environment: &str = $environment;
        let commit: &str = $commit;
        let now: i64 = $now;
        let newest: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT id, commit_sha, state FROM builds WHERE service_id = $1 AND environment = $2 \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(service_id)
        .bind(environment)
        .fetch_optional(&mut *$tx)
        .await?;
        let built: Option<(i64,)> = sqlx::query_as(
            "SELECT id FROM builds WHERE service_id = $1 AND commit_sha = $2 \
             AND state = 'completed' ORDER BY id DESC LIMIT 1",
        )
        .bind(service_id)
        .bind(commit)
        .fetch_optional(&mut *$tx)
        .await?;
        match (newest, built) {
            (Some((id, newest_commit, state)), _)
                if newest_commit == commit && state == "completed" =>
            {
                sqlx::query("UPDATE builds SET release_pending = TRUE WHERE id = $1")
                    .bind(id)
                    .execute(&mut *$tx)
                    .await?;
                (None, true)
            }
            (Some((_, newest_commit, state)), _)
                if newest_commit == commit && state != "cancelled" && state != "failed" =>
            {
                (None, false)
            }
            (_, Some((built,))) => {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO builds (service_id, environment, commit_sha, branch, trigger, state, \
                     reason, attempt, max_attempts, installation_id, delivery_id, created_at, \
                     updated_at, finished_at, image, digest, images, compose_file, release_pending, \
                     preview, github_report, github_next_at) \
                     SELECT b.service_id, $2, b.commit_sha, $3, 'pull_request', 'completed', \
                     'the images of build #' || b.id || ' of the same commit, reused', 0, b.max_attempts, \
                     b.installation_id, $4, $5, $5, $5, b.image, b.digest, b.images, b.compose_file, \
                     TRUE, TRUE, (b.installation_id IS NOT NULL AND s.repo_key IS NOT NULL), \
                     CASE WHEN b.installation_id IS NOT NULL AND s.repo_key IS NOT NULL THEN $5 END \
                     FROM builds b JOIN services s ON s.id = b.service_id WHERE b.id = $1 RETURNING id",
                )
                .bind(built)
                .bind(environment)
                .bind($branch)
                .bind($delivery)
                .bind(now)
                .fetch_one(&mut *$tx)
                .await?;
                $crate::previews::cancel_preview_builds!($tx, service_id, environment, &wharf_domain::build::superseded_reason(id), id, now);
                (None, true)
            }
            _ => {
                let new = $crate::builds::NewBuild {
                    service_id,
                    environment: Some(environment.to_owned()),
                    commit_sha: commit.to_owned(),
                    branch: Some($branch.to_owned()),
                    trigger: wharf_wire::BuildTrigger::PullRequest,
                    installation_id: $installation,
                    delivery_id: $delivery,
                    retry_of: None,
                    max_attempts: $max_attempts,
                };
                let id = $crate::builds::insert_pending_build!($tx, &new, now);
                $crate::previews::cancel_preview_builds!($tx, service_id, environment, &wharf_domain::build::superseded_reason(id), id, now);
                (Some(id), false)
            }
        }
    }};
}

pub(crate) use build_preview;

/// Inside the open transaction `$tx`, cancels the preview's builds older than `$newest` that
/// have not finished, running ones too (their agents learn it at their next heartbeat), with
/// `$reason`; a completed one not released yet is not released.
macro_rules! cancel_preview_builds {
    ($tx:ident, $service_id:expr, $environment:expr, $reason:expr, $newest:expr, $now:expr) => {{
        sqlx::query(concat!(
            "UPDATE builds SET state = 'cancelled', reason = $1, finished_at = $2, updated_at = $2, \
             lease_expires_at = NULL WHERE service_id = $3 AND environment = $4 AND id < $5 \
             AND (state = 'pending' OR state IN ",
            $crate::builds::leased_states!(),
            ")"
        ))
        .bind($reason)
        .bind($now)
        .bind($service_id)
        .bind($environment)
        .bind($newest)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(
            "UPDATE builds SET release_pending = FALSE WHERE service_id = $1 AND environment = $2 \
             AND id < $3 AND release_pending",
        )
        .bind($service_id)
        .bind($environment)
        .bind($newest)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use cancel_preview_builds;

/// Inside the open transaction `$tx`, takes the preview `$environment` of service
/// `$service_id` down: its state becomes `$state` with `$reason`, its builds are cancelled, and
/// when anything of it runs on its hosts, a release removes it from `$hosts`: a teardown for
/// `closed` (everything goes), a stop for `stopped` (its named volumes stay for its return).
/// Evaluates to whether such a release was created.
macro_rules! take_down {
    ($tx:ident, $service_id:expr, $environment:expr, $state:expr, $reason:expr, $hosts:expr, $now:expr) => {{
        let service_id: i64 = $service_id;
        let environment: &str = $environment;
        let state: &str = $state;
        let reason: &str = $reason;
        let now: i64 = $now;
        let trigger = if state == "stopped" {
            wharf_wire::ReleaseTrigger::Stop
        } else {
            wharf_wire::ReleaseTrigger::Teardown
        };
        sqlx::query(
            "UPDATE previews SET state = $1, reason = $2, updated_at = $3, comment_done = FALSE \
             WHERE service_id = $4 AND environment = $5",
        )
        .bind(state)
        .bind(reason)
        .bind(now)
        .bind(service_id)
        .bind(environment)
        .execute(&mut *$tx)
        .await?;
        $crate::previews::cancel_preview_builds!(
            $tx,
            service_id,
            environment,
            reason,
            i64::MAX,
            now
        );
        // Something is on a host when anything was released since the last release that took
        // as much away (a teardown takes everything; a stop leaves the volumes, which a
        // teardown still has to remove).
        let (released,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM releases WHERE service_id = $1 AND environment = $2 \
             AND trigger NOT IN ('teardown', $3) AND id > COALESCE((SELECT MAX(id) FROM releases \
             WHERE service_id = $1 AND environment = $2 AND trigger IN ('teardown', $3)), 0))",
        )
        .bind(service_id)
        .bind(environment)
        .bind(trigger.as_str())
        .fetch_one(&mut *$tx)
        .await?;
        if released {
            let release = $crate::releases::NewRelease {
                service_id,
                environment: environment.to_owned(),
                build_id: None,
                image: String::new(),
                trigger,
                rollback_of: None,
                hosts: $hosts,
            };
            $crate::releases::insert_release!($tx, &release, now);
        }
        released
    }};
}
pub(crate) use take_down;

/// Inside the open transaction `$tx`, stops the open previews of service `$service_id` beyond
/// the newest `$limit` by their last push, each with a stop release on `$hosts`. Evaluates to
/// `(numbers stopped, whether a release was created)`.
macro_rules! keep_within_limit {
    ($tx:ident, $service_id:expr, $limit:expr, $hosts:expr, $now:expr) => {{
        let service_id: i64 = $service_id;
        let limit: u32 = $limit;
        let open: Vec<(i64, String)> = sqlx::query_as(
            "SELECT number, environment FROM previews WHERE service_id = $1 AND state = 'open' \
             ORDER BY pushed_at DESC, number DESC",
        )
        .bind(service_id)
        .fetch_all(&mut *$tx)
        .await?;
        let mut stopped = Vec::new();
        let mut released = false;
        for (number, environment) in open.iter().skip(limit as usize) {
            let reason = format!(
                "stopped: the service runs at most {limit} previews and this one was pushed to \
                 least recently; a push to the pull request or `wharf preview start <service> \
                 {number}` brings it back"
            );
            released |= $crate::previews::take_down!(
                $tx,
                service_id,
                environment,
                "stopped",
                &reason,
                $hosts.clone(),
                $now
            );
            stopped.push(*number);
        }
        (stopped, released)
    }};
}
pub(crate) use keep_within_limit;

/// Inside the open transaction `$tx`, the deploy settings of service `$service_id`.
macro_rules! service_settings {
    ($tx:ident, $service_id:expr) => {{
        let (deploy,): (Option<String>,) =
            sqlx::query_as("SELECT deploy FROM services WHERE id = $1")
                .bind($service_id)
                .fetch_one(&mut *$tx)
                .await?;
        let settings: wharf_wire::DeploySettings = deploy
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default();
        settings
    }};
}

/// Applies a pull request's event to the previews of the services tracking its base branch,
/// inside the open transaction `$tx`. Evaluates to a [`PreviewOutcome`].
macro_rules! apply_pull_request {
    ($tx:ident, $change:expr, $delivery:expr, $now:expr) => {{
        let change: &$crate::previews::PullRequestChange = $change;
        let delivery: Option<String> = $delivery;
        let now: i64 = $now;
        let mut outcome = $crate::previews::PreviewOutcome::default();
        let services: Vec<(i64, String, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT id, name, github_repository_id, deploy FROM services \
             WHERE repo_key = $1 AND branch = $2 ORDER BY id",
        )
        .bind(&change.repo_key)
        .bind(&change.base_branch)
        .fetch_all(&mut *$tx)
        .await?;
        for (service_id, name, linked, deploy) in services {
            if linked.is_some_and(|linked| linked != change.repository_id) {
                outcome.notes.push(format!(
                    "{name}: linked to another repository (id {})",
                    linked.unwrap_or_default()
                ));
                continue;
            }
            let settings: wharf_wire::DeploySettings = deploy
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default();
            if !settings.previews.enabled {
                continue;
            }
            let environment = match wharf_domain::preview::preview_environment(&name, change.number as u64) {
                Ok(environment) => environment,
                Err(error) => {
                    outcome.notes.push(format!("{name}: no preview: {error}"));
                    continue;
                }
            };
            let existing: Option<(String, Option<String>)> = sqlx::query_as(
                "SELECT state, approved_sha FROM previews WHERE service_id = $1 AND number = $2",
            )
            .bind(service_id)
            .bind(change.number)
            .fetch_optional(&mut *$tx)
            .await?;
            let label_approves = change.action == "labeled"
                && change.label.is_some()
                && change.label == settings.previews.label;
            let approved = existing
                .as_ref()
                .and_then(|(_, approved)| approved.as_deref())
                == Some(change.head_sha.as_str());
            let trusted = wharf_domain::preview::builds_unapproved(change.from_fork, &change.author_association);
            let step = wharf_domain::preview::preview_step(
                &change.action,
                change.draft,
                settings.previews.drafts,
                trusted,
                approved,
                label_approves,
            );
            match step {
                wharf_domain::preview::PreviewStep::Nothing => {}
                wharf_domain::preview::PreviewStep::Close => {
                    if existing.is_some_and(|(state, _)| state != "closed") {
                        let reason = "the pull request was closed";
                        if $crate::previews::take_down!($tx, service_id, &environment, "closed", reason, $crate::previews::preview_hosts(&settings), now) {
                            outcome.releases_due = true;
                        }
                        outcome.notes.push(format!("{name}: removing {environment}"));
                    }
                }
                step => {
                    sqlx::query(
                        "INSERT INTO previews (service_id, number, environment, state, head_sha, \
                         head_branch, from_fork, author_may_push, installation_id, pushed_at, \
                         created_at, updated_at) VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8, $9, $9, $9) \
                         ON CONFLICT (service_id, number) DO UPDATE SET \
                         pushed_at = CASE WHEN previews.head_sha = excluded.head_sha THEN previews.pushed_at \
                         ELSE excluded.pushed_at END, head_sha = excluded.head_sha, \
                         head_branch = excluded.head_branch, from_fork = excluded.from_fork, \
                         author_may_push = excluded.author_may_push, \
                         installation_id = excluded.installation_id, updated_at = excluded.updated_at",
                    )
                    .bind(service_id)
                    .bind(change.number)
                    .bind(&environment)
                    .bind(&change.head_sha)
                    .bind(&change.head_branch)
                    .bind(change.from_fork)
                    .bind(trusted)
                    .bind(change.installation_id)
                    .bind(now)
                    .execute(&mut *$tx)
                    .await?;
                    if label_approves {
                        let by = format!(
                            "label {} by {}",
                            change.label.as_deref().unwrap_or_default(),
                            change.sender.as_deref().unwrap_or("someone")
                        );
                        sqlx::query(
                            "UPDATE previews SET approved_sha = head_sha, approved_by = $1 \
                             WHERE service_id = $2 AND number = $3",
                        )
                        .bind(by)
                        .bind(service_id)
                        .bind(change.number)
                        .execute(&mut *$tx)
                        .await?;
                    }
                    let short = &change.head_sha[..change.head_sha.len().min(12)];
                    let (state, reason) = match step {
                        wharf_domain::preview::PreviewStep::AwaitApproval => (
                            "waiting_approval",
                            Some(format!(
                                "commit {short} is from {}: it builds once approved \
                                 (`wharf preview approve {name} {}`{})",
                                if change.from_fork { "a fork" } else { "an author who may not push" },
                                change.number,
                                settings
                                    .previews
                                    .label
                                    .as_deref()
                                    .map(|label| format!(" or the label {label}"))
                                    .unwrap_or_default()
                            )),
                        ),
                        wharf_domain::preview::PreviewStep::AwaitReady => (
                            "draft",
                            Some("a draft: it builds once it is ready for review".to_owned()),
                        ),
                        _ => ("open", None),
                    };
                    sqlx::query(
                        "UPDATE previews SET state = $1, reason = $2, comment_done = FALSE \
                         WHERE service_id = $3 AND number = $4",
                    )
                    .bind(state)
                    .bind(&reason)
                    .bind(service_id)
                    .bind(change.number)
                    .execute(&mut *$tx)
                    .await?;
                    if step == wharf_domain::preview::PreviewStep::Build {
                        let (queued, due) = $crate::previews::build_preview!(
                            $tx,
                            service_id,
                            &environment,
                            &change.head_sha,
                            &change.head_branch,
                            change.installation_id,
                            delivery.clone(),
                            change.max_attempts,
                            now
                        );
                        outcome.releases_due |= due;
                        let (stopped, released) = $crate::previews::keep_within_limit!(
                            $tx,
                            service_id,
                            settings.previews.limit,
                            $crate::previews::preview_hosts(&settings),
                            now
                        );
                        outcome.releases_due |= released;
                        for number in stopped {
                            outcome.notes.push(format!(
                                "{name}: stopped the preview of #{number} (limit {})",
                                settings.previews.limit
                            ));
                        }
                        match queued {
                            Some(id) => {
                                outcome.build_ids.push(id);
                                outcome.notes.push(format!("{name}: queued a build of {environment}"));
                            }
                            None if due => outcome
                                .notes
                                .push(format!("{name}: {environment} reuses the build of {short}")),
                            None => outcome
                                .notes
                                .push(format!("{name}: {short} is already building for {environment}")),
                        }
                    } else if let Some(reason) = reason {
                        outcome.notes.push(format!("{name}: {environment} waits: {reason}"));
                    }
                }
            }
        }
        outcome
    }};
}
pub(crate) use apply_pull_request;

impl Store {
    /// Every preview of the service `service_id` (of every service with `None`), open ones
    /// first, then by pull request, newest first.
    pub async fn previews(&self, service_id: Option<i64>) -> Result<Vec<StoredPreview>> {
        let sql = concat!(
            select_preview!(),
            " WHERE ($1 IS NULL OR v.service_id = $1) \
             ORDER BY CASE WHEN v.state = 'closed' THEN 1 ELSE 0 END, s.name, v.number DESC"
        );
        let rows = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(service_id).fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// The preview of pull request `number` of service `service_id`.
    pub async fn preview(&self, service_id: i64, number: i64) -> Result<StoredPreview> {
        let sql = concat!(
            select_preview!(),
            " WHERE v.service_id = $1 AND v.number = $2"
        );
        let row: Option<StoredPreview> = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(service_id).bind(number).fetch_optional(pool).await?
        });
        row.ok_or_else(|| StoreError::NotFound(format!("no preview of pull request #{number}")))
    }

    /// The preview whose environment is `environment`, if it is one.
    pub async fn preview_of_environment(
        &self,
        service_id: i64,
        environment: &str,
    ) -> Result<Option<StoredPreview>> {
        let sql = concat!(
            select_preview!(),
            " WHERE v.service_id = $1 AND v.environment = $2"
        );
        let row = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(service_id).bind(environment).fetch_optional(pool).await?
        });
        Ok(row)
    }

    /// Approves commit `commit` of the preview of pull request `number`, for `by`, and builds
    /// it when it is the head (and the preview is not a draft waiting to be ready).
    pub async fn approve_preview(
        &self,
        service_id: i64,
        number: i64,
        commit: &str,
        by: &str,
        max_attempts: i64,
        now: i64,
    ) -> Result<PreviewOutcome> {
        let outcome = in_transaction!(self, tx => {
            let row: Option<(String, String, String, String, Option<i64>)> = sqlx::query_as(
                "SELECT state, environment, head_sha, head_branch, installation_id FROM previews \
                 WHERE service_id = $1 AND number = $2",
            )
            .bind(service_id)
            .bind(number)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((state, environment, head_sha, head_branch, installation_id)) = row else {
                return Err(StoreError::NotFound(format!("no preview of pull request #{number}")));
            };
            if head_sha != commit {
                return Err(StoreError::Conflict(format!(
                    "{commit} is not the head of pull request #{number} ({head_sha}): approve its head"
                )));
            }
            if state == "closed" {
                return Err(StoreError::Conflict(format!(
                    "pull request #{number} is closed: its preview was removed"
                )));
            }
            sqlx::query(
                "UPDATE previews SET approved_sha = $1, approved_by = $2, updated_at = $3 \
                 WHERE service_id = $4 AND number = $5",
            )
            .bind(commit)
            .bind(by)
            .bind(now)
            .bind(service_id)
            .bind(number)
            .execute(&mut *tx)
            .await?;
            let mut outcome = PreviewOutcome::default();
            if state == "waiting_approval" || state == "open" || state == "stopped" {
                sqlx::query(
                    "UPDATE previews SET state = 'open', reason = NULL, comment_done = FALSE \
                     WHERE service_id = $1 AND number = $2",
                )
                .bind(service_id)
                .bind(number)
                .execute(&mut *tx)
                .await?;
                let (queued, due) = build_preview!(
                    tx, service_id, &environment, &head_sha, &head_branch, installation_id,
                    None::<String>, max_attempts, now
                );
                outcome.build_ids.extend(queued);
                outcome.releases_due = due;
                let settings = service_settings!(tx, service_id);
                let (_, released) = keep_within_limit!(
                    tx, service_id, settings.previews.limit, preview_hosts(&settings), now
                );
                outcome.releases_due |= released;
            }
            outcome
        });
        Ok(outcome)
    }

    /// Brings back the stopped preview of pull request `number` as a push would (counting as
    /// the newest push): its head builds, or its earlier build of the head is released again,
    /// unless the head waits for an approval.
    pub async fn start_preview(
        &self,
        service_id: i64,
        number: i64,
        max_attempts: i64,
        now: i64,
    ) -> Result<PreviewOutcome> {
        let outcome = in_transaction!(self, tx => {
            let row: Option<PreviewHead> = sqlx::query_as(
                "SELECT state, environment, head_sha, head_branch, installation_id, \
                 author_may_push AND NOT from_fork AS trusted, approved_sha FROM previews \
                 WHERE service_id = $1 AND number = $2",
            )
            .bind(service_id)
            .bind(number)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(PreviewHead {
                state,
                environment,
                head_sha,
                head_branch,
                installation_id,
                trusted,
                approved_sha: approved,
            }) = row
            else {
                return Err(StoreError::NotFound(format!("no preview of pull request #{number}")));
            };
            if state != "stopped" {
                return Err(StoreError::Conflict(format!(
                    "the preview of pull request #{number} is {}, not stopped{}",
                    state.replace('_', " "),
                    if state == "closed" { ": a push to the pull request brings it back" } else { "" }
                )));
            }
            if !trusted && approved.as_deref() != Some(head_sha.as_str()) {
                return Err(StoreError::Conflict(format!(
                    "the head of pull request #{number} waits for an approval: approve it instead"
                )));
            }
            sqlx::query(
                "UPDATE previews SET state = 'open', reason = NULL, pushed_at = $1, updated_at = $1, \
                 comment_done = FALSE WHERE service_id = $2 AND number = $3",
            )
            .bind(now)
            .bind(service_id)
            .bind(number)
            .execute(&mut *tx)
            .await?;
            let mut outcome = PreviewOutcome::default();
            let (queued, due) = build_preview!(
                tx, service_id, &environment, &head_sha, &head_branch, installation_id,
                None::<String>, max_attempts, now
            );
            outcome.build_ids.extend(queued);
            outcome.releases_due = due;
            let settings = service_settings!(tx, service_id);
            let (_, released) = keep_within_limit!(
                tx, service_id, settings.previews.limit, preview_hosts(&settings), now
            );
            outcome.releases_due |= released;
            outcome
        });
        Ok(outcome)
    }

    /// The previews not pushed to since before `pushed_before` that still hold anything
    /// (open, stopped, or waiting), by pull request number.
    pub async fn idle_previews(&self, service_id: i64, pushed_before: i64) -> Result<Vec<i64>> {
        let rows: Vec<(i64,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT number FROM previews WHERE service_id = $1 AND state <> 'closed' \
                 AND pushed_at < $2 ORDER BY number",
            )
            .bind(service_id)
            .bind(pushed_before)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(|(number,)| number).collect())
    }

    /// Removes the preview of pull request `number` from its hosts (state `closed`, with
    /// `reason`); a later push to the pull request brings it back. Answers whether a teardown
    /// was created.
    pub async fn destroy_preview(
        &self,
        service_id: i64,
        number: i64,
        reason: &str,
        now: i64,
    ) -> Result<bool> {
        let service = self.service_by_id(service_id).await?;
        let preview = self.preview(service_id, number).await?;
        let teardown = in_transaction!(self, tx => {
            take_down!(tx, service_id, &preview.environment, "closed", reason, preview_hosts(&service.deploy), now)
        });
        Ok(teardown)
    }

    /// The images `environment` of service `service_id` ran (each release's `image`), and
    /// every image reference or digest the service's other environments hold (their releases'
    /// images, of any state: rollback targets too; their builds' digests and images): a
    /// teardown removes only what the others do not name.
    pub async fn environment_images(
        &self,
        service_id: i64,
        environment: &str,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let (ran, others): (Vec<(String,)>, Vec<(Option<String>,)>) = on_pool!(self, pool => {
            let ran = sqlx::query_as(
                "SELECT DISTINCT image FROM releases WHERE service_id = $1 AND environment = $2 \
                 AND trigger NOT IN ('teardown', 'stop') AND image <> '' ORDER BY image",
            )
            .bind(service_id)
            .bind(environment)
            .fetch_all(pool)
            .await?;
            let others = sqlx::query_as(
                "SELECT image FROM releases WHERE service_id = $1 AND environment <> $2 \
                 UNION ALL SELECT digest FROM builds WHERE service_id = $1 AND environment <> $2 \
                 UNION ALL SELECT images FROM builds WHERE service_id = $1 AND environment <> $2",
            )
            .bind(service_id)
            .bind(environment)
            .fetch_all(pool)
            .await?;
            (ran, others)
        });
        Ok((
            ran.into_iter().map(|(image,)| image).collect(),
            others.into_iter().filter_map(|(text,)| text).collect(),
        ))
    }

    /// The previews whose pull request comment may need writing: every one not removed, and
    /// removed ones whose comment does not say so yet; only those of an installation.
    pub async fn previews_to_comment(&self) -> Result<Vec<StoredPreview>> {
        let sql = concat!(
            select_preview!(),
            " WHERE NOT v.comment_done AND v.installation_id IS NOT NULL ORDER BY v.id"
        );
        let rows = on_pool!(self, pool => { sqlx::query_as(sql).fetch_all(pool).await? });
        Ok(rows)
    }

    /// Takes the writing of a preview's comment until `lease_until`, unless another replica
    /// holds it: true when this caller may write it.
    pub async fn take_preview_comment(
        &self,
        service_id: i64,
        number: i64,
        lease_until: i64,
        now: i64,
    ) -> Result<bool> {
        let taken = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE previews SET comment_lease_until = $1 WHERE service_id = $2 AND number = $3 \
                 AND (comment_lease_until IS NULL OR comment_lease_until < $4)",
            )
            .bind(lease_until)
            .bind(service_id)
            .bind(number)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(taken == 1)
    }

    /// Records what GitHub accepted of a preview's comment (its id and body; `done` when it is
    /// final) and, when given, the head whose approval label was removed; ends the lease.
    pub async fn record_preview_comment(
        &self,
        service_id: i64,
        number: i64,
        comment: Option<(i64, &str, bool)>,
        label_cleared_sha: Option<&str>,
    ) -> Result<()> {
        let (id, body, done) = match comment {
            Some((id, body, done)) => (Some(id), Some(body), done),
            None => (None, None, false),
        };
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE previews SET comment_id = COALESCE($1, comment_id), \
                 comment_body = COALESCE($2, comment_body), \
                 comment_done = CASE WHEN $1 IS NULL THEN comment_done ELSE $3 END, \
                 label_cleared_sha = COALESCE($4, label_cleared_sha), comment_lease_until = NULL \
                 WHERE service_id = $5 AND number = $6",
            )
            .bind(id)
            .bind(body)
            .bind(done)
            .bind(label_cleared_sha)
            .bind(service_id)
            .bind(number)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The previews that still hold anything (not removed), of an installation's repository.
    pub async fn previews_not_removed(&self) -> Result<Vec<StoredPreview>> {
        let sql = concat!(
            select_preview!(),
            " WHERE v.state <> 'closed' AND v.installation_id IS NOT NULL ORDER BY v.id"
        );
        let rows = on_pool!(self, pool => { sqlx::query_as(sql).fetch_all(pool).await? });
        Ok(rows)
    }

    /// Teardowns done on every host whose images are still to be removed from the registry:
    /// `(release id, service id, environment)`, oldest first.
    pub async fn teardowns_to_clean(&self, limit: i64) -> Result<Vec<(i64, i64, String)>> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, service_id, environment FROM releases WHERE trigger = 'teardown' \
                 AND state = 'removed' AND NOT registry_cleaned ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Records that a teardown's images were seen to in the registry.
    pub async fn mark_registry_cleaned(&self, release_id: i64) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE releases SET registry_cleaned = TRUE WHERE id = $1")
                .bind(release_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
