//! Catching up what GitHub failed to tell Wharf while it was down: the webhook deliveries Wharf
//! asked GitHub to make again (each asked for once), the tracked branches whose heads are
//! compared with their services' newest builds, and the schedules that run once across server
//! replicas.

use crate::builds::{NewBuild, insert_build, newest_build_commit};
use crate::{Result, Store, in_transaction, on_pool};

/// A service following a branch of a GitHub repository an installation grants, and the commit
/// of its newest build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedBranch {
    pub service_id: i64,
    pub service: String,
    /// `owner/name`, as the installation's roster spells it.
    pub repo_full_name: String,
    pub branch: String,
    pub installation_id: i64,
    /// GitHub's id of the repository.
    pub repository_id: i64,
    /// The commit of the service's newest build for its own environment.
    pub newest_commit: String,
}

/// A branch head to queue unless it is already the service's newest build.
#[derive(Debug, Clone)]
pub struct BranchHead {
    pub service_id: i64,
    pub branch: String,
    pub commit_sha: String,
    pub installation_id: i64,
    pub max_attempts: i64,
}

impl Store {
    /// Takes the schedule `name` when it is due at `now`, making it due again at `next_at`.
    /// However many server replicas ask at once, one takes each turn (the first asking of all
    /// takes it at once): it gets `Some`, with when the last turn that ended well began
    /// ([`Store::finish_schedule`]); the others get `None`.
    pub async fn take_schedule(
        &self,
        name: &str,
        next_at: i64,
        now: i64,
    ) -> Result<Option<Option<i64>>> {
        let taken: Option<(Option<i64>,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "INSERT INTO schedules (name, next_at, ran_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET next_at = $2, ran_at = $3 \
                 WHERE schedules.next_at <= $3 RETURNING succeeded_at",
            )
            .bind(name)
            .bind(next_at)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(taken.map(|(succeeded_at,)| succeeded_at))
    }

    /// Records that the turn of schedule `name` that began at `began_at` ended well.
    pub async fn finish_schedule(&self, name: &str, began_at: i64) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE schedules SET succeeded_at = $2 WHERE name = $1")
                .bind(name)
                .bind(began_at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Of the GitHub delivery ids `guids`, those Wharf neither stored nor asked GitHub to
    /// deliver again, in the order given.
    pub async fn unknown_deliveries(&self, guids: &[String]) -> Result<Vec<String>> {
        let mut unknown = Vec::new();
        for guid in guids {
            let known: Option<(String,)> = on_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT id FROM deliveries WHERE id = $1 \
                     UNION ALL SELECT guid FROM github_redeliveries WHERE guid = $1",
                )
                .bind(guid)
                .fetch_optional(pool)
                .await?
            });
            if known.is_none() {
                unknown.push(guid.clone());
            }
        }
        Ok(unknown)
    }

    /// Records that Wharf asked GitHub to make the delivery `guid` again (its failed attempt
    /// `delivery_id`), so that it is never asked for twice; answers false when it was already.
    pub async fn record_redelivery(&self, guid: &str, delivery_id: i64, now: i64) -> Result<bool> {
        let recorded = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO github_redeliveries (guid, delivery_id, asked_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(guid)
            .bind(delivery_id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(recorded == 1)
    }

    /// Forgets the redeliveries asked for before `asked_before` (GitHub keeps no delivery that
    /// old); answers how many.
    pub async fn forget_redeliveries(&self, asked_before: i64) -> Result<u64> {
        let forgotten = on_pool!(self, pool => {
            sqlx::query("DELETE FROM github_redeliveries WHERE asked_at < $1")
                .bind(asked_before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(forgotten)
    }

    /// The branches of GitHub repositories that services follow and have built before, each
    /// with the installation that grants the repository (not suspended or deleted) and the
    /// service's newest build. A service never built is left to its first push.
    pub async fn tracked_branches(&self) -> Result<Vec<TrackedBranch>> {
        type Row = (i64, String, String, String, i64, i64, Option<String>);
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT s.id, s.name, r.full_name, s.branch, r.installation_id, r.id, \
                 (SELECT b.commit_sha FROM builds b WHERE b.service_id = s.id \
                 AND b.environment = s.environment ORDER BY b.id DESC LIMIT 1) \
                 FROM services s JOIN repositories r ON r.repo_key = s.repo_key \
                 JOIN installations i ON i.id = r.installation_id \
                 WHERE NOT i.suspended AND NOT i.deleted \
                 AND (s.github_repository_id IS NULL OR s.github_repository_id = r.id) \
                 ORDER BY s.id",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(
                |(
                    service_id,
                    service,
                    repo_full_name,
                    branch,
                    installation_id,
                    repository_id,
                    newest,
                )| {
                    Some(TrackedBranch {
                        service_id,
                        service,
                        repo_full_name,
                        branch,
                        installation_id,
                        repository_id,
                        newest_commit: newest?,
                    })
                },
            )
            .collect())
    }

    /// Queues a build of a branch's head, as a push of it would, unless it is already the
    /// service's newest build (the same rule a push meets): answers the new build's id, or
    /// `None`. Older pending builds of the service and environment are superseded.
    pub async fn queue_branch_head(&self, head: &BranchHead, now: i64) -> Result<Option<i64>> {
        let queued = in_transaction!(self, tx => {
            let newest: Option<String> = newest_build_commit!(tx, head.service_id);
            if newest.as_deref() == Some(head.commit_sha.as_str()) {
                None
            } else {
                let new = NewBuild {
                    service_id: head.service_id,
                    environment: None,
                    commit_sha: head.commit_sha.clone(),
                    branch: Some(head.branch.clone()),
                    trigger: wharf_wire::BuildTrigger::Push,
                    installation_id: Some(head.installation_id),
                    delivery_id: None,
                    retry_of: None,
                    max_attempts: head.max_attempts,
                };
                Some(insert_build!(tx, &new, now))
            }
        });
        Ok(queued)
    }
}
