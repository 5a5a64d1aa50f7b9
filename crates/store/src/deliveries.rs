//! Webhook deliveries and what they change: each delivery is stored together with its effects
//! (builds queued, installations and repositories updated) in one transaction, and a delivery
//! seen before, by its id or by its logical event, changes nothing.

use std::collections::{BTreeMap, HashMap};

use crate::builds::{NewBuild, insert_pending_build, newest_build_commit, supersede};
use crate::previews::{PullRequestChange, apply_pull_request};
use crate::{Result, Store, in_transaction};

/// A verified, parsed delivery to store.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// `X-GitHub-Delivery`.
    pub id: String,
    pub event: String,
    pub action: Option<String>,
    /// The logical event (for a push of a branch: repository, ref, the commits it moved
    /// between and when; for other events: a hash of the body), so a redelivery or a replay
    /// under a new id is still recognised.
    pub dedupe_key: Option<String>,
    /// The raw body, kept for inspection for the retention period, then removed.
    pub body: String,
}

/// What a delivery does beyond being stored.
#[derive(Debug, Clone)]
pub enum DeliveryEffect {
    /// Nothing: the outcome says why.
    Nothing { outcome: String },
    /// Queue a build of `commit_sha` for every service tracking `repo_key` on `branch` that is
    /// linked to the repository with GitHub's id `repository_id` (or to none yet: it is linked
    /// to this one).
    QueueBuilds {
        repo_key: String,
        repo_full_name: String,
        repository_id: i64,
        branch: String,
        commit_sha: String,
        installation_id: Option<i64>,
        max_attempts: i64,
    },
    /// Bring an installation and its repository roster up to date.
    Installation(InstallationChange),
    /// Bring the previews of a pull request up to date (build, wait, or remove them).
    PullRequest(PullRequestChange),
}

/// A change to an installation and its repositories.
#[derive(Debug, Clone, Default)]
pub struct InstallationChange {
    pub installation_id: i64,
    pub account_login: String,
    pub account_type: String,
    /// `Some(true)` on suspend, `Some(false)` on unsuspend.
    pub suspended: Option<bool>,
    /// The App was uninstalled: the installation is marked deleted and its repositories dropped.
    pub deleted: bool,
    /// Repositories granted: (GitHub id, `owner/name`, private).
    pub add_repositories: Vec<(i64, String, bool)>,
    /// Repositories withdrawn, by GitHub id.
    pub remove_repositories: Vec<i64>,
    /// What to record as the delivery's outcome.
    pub outcome: String,
}

/// A delivery stored before every delivery was keyed by what it did or by its body, to be
/// keyed again from its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierDelivery {
    pub id: String,
    pub event: String,
    /// Empty when the body was removed after the retention period.
    pub body: String,
}

/// What storing a delivery did.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    /// Seen before (same delivery id or same logical event): nothing changed.
    Duplicate,
    /// Stored, with its effects.
    Recorded {
        outcome: String,
        /// The builds it queued.
        build_ids: Vec<i64>,
        /// It made releases due (a preview's build released again, or its teardown).
        releases_due: bool,
    },
}

/// Applies an installation change inside the open transaction `$tx`.
macro_rules! apply_installation_change {
    ($tx:ident, $change:expr, $now:expr) => {{
        let change: &InstallationChange = $change;
        let now: i64 = $now;
        sqlx::query(
            "INSERT INTO installations (id, account_login, account_type, suspended, deleted, created_at, updated_at) \
             VALUES ($1, $2, $3, COALESCE($4, FALSE), $5, $6, $6) \
             ON CONFLICT (id) DO UPDATE SET account_login = $2, account_type = $3, \
             suspended = COALESCE($4, installations.suspended), deleted = $5, updated_at = $6, \
             checks_refused_at = NULL",
        )
        .bind(change.installation_id)
        .bind(&change.account_login)
        .bind(&change.account_type)
        .bind(change.suspended)
        .bind(change.deleted)
        .bind(now)
        .execute(&mut *$tx)
        .await?;
        if change.deleted {
            sqlx::query("DELETE FROM repositories WHERE installation_id = $1")
                .bind(change.installation_id)
                .execute(&mut *$tx)
                .await?;
        }
        for (id, full_name, private) in &change.add_repositories {
            sqlx::query(
                "INSERT INTO repositories (id, installation_id, full_name, repo_key, private, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET installation_id = $2, full_name = $3, repo_key = $4, \
                 private = $5, updated_at = $6",
            )
            .bind(*id)
            .bind(change.installation_id)
            .bind(full_name)
            .bind(full_name.to_ascii_lowercase())
            .bind(*private)
            .bind(now)
            .execute(&mut *$tx)
            .await?;
        }
        for id in &change.remove_repositories {
            sqlx::query("DELETE FROM repositories WHERE id = $1 AND installation_id = $2")
                .bind(*id)
                .bind(change.installation_id)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

/// Stores one delivery and applies its effect inside the open transaction `$tx`. Evaluates to
/// `None` for a duplicate, else the outcome and the ids of the builds it queued.
macro_rules! record_one {
    ($tx:ident, $delivery:expr, $effect:expr, $now:expr, $services:ident, $newest:ident) => {{
        let delivery: &NewDelivery = $delivery;
        let effect: &DeliveryEffect = $effect;
        let now: i64 = $now;
        // The services a push builds are known before the delivery is stored, so the stored
        // row is written once, with its outcome.
        // Within one transaction the services of a (repository, branch) are looked up once.
        // Services linked to another repository of the same name (one deleted and created
        // again, or given a renamed repository's old name) are not this push's: they are named
        // in the outcome and build nothing.
        let (services, others): (Vec<(i64, String)>, Vec<(String, i64)>) = match effect {
            DeliveryEffect::QueueBuilds {
                repo_key,
                branch,
                repository_id,
                ..
            } => {
                let key = (repo_key.clone(), branch.clone(), *repository_id);
                match $services.get(&key) {
                    Some(found) => Clone::clone(found),
                    None => {
                        let tracking: Vec<(i64, String, Option<i64>)> = sqlx::query_as(
                            "SELECT id, name, github_repository_id FROM services \
                             WHERE repo_key = $1 AND branch = $2 ORDER BY id",
                        )
                        .bind(repo_key)
                        .bind(branch)
                        .fetch_all(&mut *$tx)
                        .await?;
                        let mut found = (Vec::new(), Vec::new());
                        for (id, name, linked) in tracking {
                            match linked {
                                Some(linked) if linked != *repository_id => {
                                    found.1.push((name, linked))
                                }
                                Some(_) => found.0.push((id, name)),
                                None => {
                                    sqlx::query(
                                        "UPDATE services SET github_repository_id = $1 \
                                         WHERE id = $2 AND github_repository_id IS NULL",
                                    )
                                    .bind(*repository_id)
                                    .bind(id)
                                    .execute(&mut *$tx)
                                    .await?;
                                    found.0.push((id, name));
                                }
                            }
                        }
                        $services.insert(key, found.clone());
                        found
                    }
                }
            }
            _ => (Vec::new(), Vec::new()),
        };
        // A push of the commit a service's newest build already builds queues nothing for it:
        // the push was caught up already (the branch's head was queued while its delivery was
        // missing), or this is a redelivery under another id.
        let (services, current): (Vec<(i64, String)>, Vec<String>) = match effect {
            DeliveryEffect::QueueBuilds { commit_sha, .. } => {
                let mut queue = Vec::new();
                let mut current = Vec::new();
                for (id, name) in services {
                    let newest: Option<String> = newest_build_commit!($tx, id);
                    if newest.as_deref() == Some(commit_sha.as_str()) {
                        current.push(name);
                    } else {
                        queue.push((id, name));
                    }
                }
                (queue, current)
            }
            _ => (services, Vec::new()),
        };
        let outcome = match effect {
            DeliveryEffect::Nothing { outcome } => outcome.clone(),
            DeliveryEffect::Installation(change) => change.outcome.clone(),
            // Known once it is applied, below.
            DeliveryEffect::PullRequest(_) => String::new(),
            DeliveryEffect::QueueBuilds { commit_sha, .. }
                if services.is_empty() && !current.is_empty() =>
            {
                format!(
                    "{commit_sha} is already the newest build of {}: nothing queued",
                    current.join(", ")
                )
            }
            DeliveryEffect::QueueBuilds {
                repo_full_name,
                repository_id,
                branch,
                ..
            } if services.is_empty() && !others.is_empty() => {
                let named: Vec<String> = others
                    .iter()
                    .map(|(name, linked)| format!("{name} (linked to repository id {linked})"))
                    .collect();
                format!(
                    "{repo_full_name} (repository id {repository_id}) on branch {branch} is not \
                     the repository its services are linked to: {}; if the repository was \
                     created again, `wharf service update NAME --relink-repository` links it",
                    named.join(", ")
                )
            }
            DeliveryEffect::QueueBuilds {
                repo_full_name,
                branch,
                ..
            } if services.is_empty() => {
                format!("no service tracks {repo_full_name} on branch {branch}")
            }
            DeliveryEffect::QueueBuilds { commit_sha, .. } => {
                let queued = services
                    .iter()
                    .map(|(_, name)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                if current.is_empty() {
                    format!("queued a build of {queued}")
                } else {
                    format!(
                        "queued a build of {queued}; {commit_sha} is already the newest build \
                         of {}",
                        current.join(", ")
                    )
                }
            }
        };
        let inserted = sqlx::query(
            "INSERT INTO deliveries (id, event, action, dedupe_key, body, outcome, received_at, \
             key_scheme) VALUES ($1, $2, $3, $4, $5, $6, $7, 2) ON CONFLICT DO NOTHING",
        )
        .bind(&delivery.id)
        .bind(&delivery.event)
        .bind(&delivery.action)
        .bind(&delivery.dedupe_key)
        .bind(&delivery.body)
        .bind(&outcome)
        .bind(now)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            None
        } else {
            let mut build_ids = Vec::new();
            let mut outcome = outcome;
            let mut releases_due = false;
            match effect {
                DeliveryEffect::QueueBuilds {
                    branch,
                    commit_sha,
                    installation_id,
                    max_attempts,
                    ..
                } => {
                    for (service_id, _) in &services {
                        let new = NewBuild {
                            service_id: *service_id,
                            environment: None,
                            commit_sha: commit_sha.clone(),
                            branch: Some(branch.clone()),
                            trigger: wharf_wire::BuildTrigger::Push,
                            installation_id: *installation_id,
                            delivery_id: Some(delivery.id.clone()),
                            retry_of: None,
                            max_attempts: *max_attempts,
                        };
                        let id = insert_pending_build!($tx, &new, now);
                        // Superseding happens once per service, after the whole batch.
                        $newest.insert(*service_id, id);
                        build_ids.push(id);
                    }
                }
                DeliveryEffect::Installation(change) => {
                    apply_installation_change!($tx, change, now);
                }
                DeliveryEffect::PullRequest(change) => {
                    let applied = apply_pull_request!($tx, change, Some(delivery.id.clone()), now);
                    outcome = if applied.notes.is_empty() {
                        format!(
                            "pull request #{} {} on {}: no service makes previews of branch {}",
                            change.number, change.action, change.repo_full_name, change.base_branch
                        )
                    } else {
                        format!(
                            "pull request #{} {}: {}",
                            change.number,
                            change.action,
                            applied.notes.join("; ")
                        )
                    };
                    sqlx::query("UPDATE deliveries SET outcome = $1 WHERE id = $2")
                        .bind(&outcome)
                        .bind(&delivery.id)
                        .execute(&mut *$tx)
                        .await?;
                    build_ids = applied.build_ids;
                    releases_due = applied.releases_due;
                }
                DeliveryEffect::Nothing { .. } => {}
            }
            Some((outcome, build_ids, releases_due))
        }
    }};
}

impl Store {
    /// Stores a delivery and applies its effect, all in one transaction.
    pub async fn record_delivery(
        &self,
        delivery: &NewDelivery,
        effect: &DeliveryEffect,
        now: i64,
    ) -> Result<DeliveryOutcome> {
        let batch = [(delivery.clone(), effect.clone())];
        let mut outcomes = self.record_deliveries(&batch, now).await?;
        Ok(outcomes
            .pop()
            .expect("record_deliveries answers once for every delivery"))
    }

    /// Stores many deliveries, each with its effect, in one transaction: one commit (one
    /// write to disk) for the lot. Deduplication sees earlier deliveries of the same batch.
    pub async fn record_deliveries(
        &self,
        batch: &[(NewDelivery, DeliveryEffect)],
        now: i64,
    ) -> Result<Vec<DeliveryOutcome>> {
        let outcomes = in_transaction!(self, tx => {
            let mut services = HashMap::new();
            let mut newest = BTreeMap::new();
            let mut outcomes = Vec::with_capacity(batch.len());
            for (delivery, effect) in batch {
                outcomes.push(match record_one!(tx, delivery, effect, now, services, newest) {
                    None => DeliveryOutcome::Duplicate,
                    Some((outcome, build_ids, releases_due)) => {
                        DeliveryOutcome::Recorded { outcome, build_ids, releases_due }
                    }
                });
            }
            // Once per service: a batch of pushes leaves only its newest build pending.
            for (service_id, build_id) in newest {
                supersede!(tx, service_id, build_id, now);
            }
            outcomes
        });
        Ok(outcomes)
    }

    /// Records an installation confirmed outside a webhook (the App's setup callback).
    pub async fn apply_installation(&self, change: &InstallationChange, now: i64) -> Result<()> {
        in_transaction!(self, tx => {
            apply_installation_change!(tx, change, now);
        });
        Ok(())
    }

    /// The installation that holds repository `repo_key` (lowercase `owner/name`), unless it is
    /// suspended or deleted.
    pub async fn installation_for_repo(&self, repo_key: &str) -> Result<Option<i64>> {
        let row: Option<(i64,)> = crate::on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT i.id FROM repositories r JOIN installations i ON i.id = r.installation_id \
                 WHERE r.repo_key = $1 AND NOT i.suspended AND NOT i.deleted",
            )
            .bind(repo_key)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(id,)| id))
    }

    /// The stored outcome of a delivery, if it was stored.
    pub async fn delivery_outcome(&self, id: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = crate::on_pool!(self, pool => {
            sqlx::query_as("SELECT outcome FROM deliveries WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(outcome,)| outcome))
    }

    /// The stored body of a delivery; `None` when the delivery is unknown or its body was
    /// removed after the retention period.
    pub async fn delivery_body(&self, id: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = crate::on_pool!(self, pool => {
            sqlx::query_as("SELECT body FROM deliveries WHERE id = $1 AND body <> ''")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(body,)| body))
    }

    /// Removes the bodies of at most `limit` deliveries received before `received_before`,
    /// oldest first, and answers how many. The deliveries stay, with their deduplication keys,
    /// so a removed body sent again is still a duplicate; the body of an earlier delivery stays
    /// until it was keyed from it.
    pub async fn remove_delivery_bodies(&self, received_before: i64, limit: i64) -> Result<u64> {
        let removed = crate::on_pool!(self, pool => {
            sqlx::query(
                "UPDATE deliveries SET body = '' WHERE id IN (SELECT id FROM deliveries \
                 WHERE body <> '' AND received_at < $1 AND key_scheme = 2 \
                 ORDER BY received_at LIMIT $2)",
            )
            .bind(received_before)
            .bind(limit)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(removed)
    }

    /// At most `limit` deliveries stored before every delivery was keyed by what it did or by
    /// its body, oldest first.
    pub async fn earlier_deliveries(&self, limit: i64) -> Result<Vec<EarlierDelivery>> {
        let rows: Vec<(String, String, String)> = crate::on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, event, body FROM deliveries WHERE key_scheme < 2 \
                 ORDER BY received_at LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, event, body)| EarlierDelivery { id, event, body })
            .collect())
    }

    /// Gives earlier deliveries their keys of today, `(delivery id, key)`, in one transaction;
    /// `None` leaves a delivery's key as it was. A key another delivery holds already is left
    /// with that one (which recognises the event as well). Either way the delivery is keyed.
    pub async fn rekey_deliveries(&self, keys: &[(String, Option<String>)]) -> Result<()> {
        in_transaction!(self, tx => {
            for (id, key) in keys {
                let rekeyed = match key {
                    Some(key) => sqlx::query(
                        "UPDATE deliveries SET dedupe_key = $2, key_scheme = 2 WHERE id = $1 \
                         AND NOT EXISTS (SELECT 1 FROM deliveries WHERE dedupe_key = $2)",
                    )
                    .bind(id)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                    None => 0,
                };
                if rekeyed == 0 {
                    sqlx::query("UPDATE deliveries SET key_scheme = 2 WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        });
        Ok(())
    }

    /// How many deliveries are stored.
    pub async fn count_deliveries(&self) -> Result<i64> {
        let (count,): (i64,) = crate::on_pool!(self, pool => {
            sqlx::query_as("SELECT COUNT(*) FROM deliveries").fetch_one(pool).await?
        });
        Ok(count)
    }

    /// Installations and whether each is usable: (id, account, suspended, deleted).
    pub async fn list_installations(&self) -> Result<Vec<(i64, String, bool, bool)>> {
        let rows = crate::on_pool!(self, pool => {
            sqlx::query_as("SELECT id, account_login, suspended, deleted FROM installations ORDER BY id")
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }

    /// The repositories an installation holds, as `owner/name`.
    pub async fn installation_repositories(&self, installation_id: i64) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = crate::on_pool!(self, pool => {
            sqlx::query_as("SELECT full_name FROM repositories WHERE installation_id = $1 ORDER BY full_name")
                .bind(installation_id)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(|(name,)| name).collect())
    }
}
