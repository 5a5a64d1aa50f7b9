//! Releases and their rollouts: what each service should run in its environment, and how far
//! each host has got with it.
//!
//! A release is desired state. Creating one supersedes the service's pending releases in the
//! same environment and gives every target host a `pending` rollout; an agent claims its
//! host's rollouts one at a time and reports each step. A release's own state is derived from
//! its rollouts (see `wharf_domain::release::release_state`) in the same transaction as every
//! change, so the two never disagree.

use wharf_domain::agents::{AgentScope, DEPLOY_LABEL, split_list};
use wharf_domain::release::check_rollout_report;
use wharf_wire::{
    DEFAULT_HOST, ProbeResult, Release, ReleaseState, ReleaseTrigger, Rollout, format_millis,
};

use crate::deadlines::report_rollouts_stuck;
use crate::{Result, Store, StoreError, in_transaction, on_pool};

/// A release to create.
#[derive(Debug, Clone)]
pub struct NewRelease {
    pub service_id: i64,
    pub environment: String,
    pub build_id: Option<i64>,
    pub image: String,
    pub trigger: ReleaseTrigger,
    pub rollback_of: Option<i64>,
    /// Agent names, or `label:NAME`; empty means the agent named `local`.
    pub hosts: Vec<String>,
}

/// What an agent reports about the rollout it runs.
#[derive(Debug, Clone)]
pub struct RolloutReport {
    pub agent_id: i64,
    pub rollout_id: i64,
    pub state: ReleaseState,
    pub reason: Option<String>,
    pub probes: Vec<ProbeResult>,
    pub log_tail: Vec<String>,
}

/// A rollout an agent has claimed, or runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutRef {
    pub rollout_id: i64,
    pub release_id: i64,
}

/// The reason on a release no host could take.
pub const NO_HOSTS_REASON: &str = "no agent matches the service's hosts";

#[derive(sqlx::FromRow)]
struct ReleaseRow {
    id: i64,
    service: String,
    service_id: i64,
    environment: String,
    build_id: Option<i64>,
    image: String,
    trigger: String,
    state: String,
    reason: Option<String>,
    rollback_of: Option<i64>,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
}

impl ReleaseRow {
    fn into_release(self, rollouts: Vec<Rollout>) -> Release {
        Release {
            id: self.id,
            service: self.service,
            service_id: self.service_id,
            environment: self.environment,
            build_id: self.build_id,
            image: self.image,
            trigger: ReleaseTrigger::parse(&self.trigger).unwrap_or(ReleaseTrigger::Manual),
            state: ReleaseState::parse(&self.state).unwrap_or(ReleaseState::Failed),
            reason: self.reason,
            rollback_of: self.rollback_of,
            created_at: format_millis(self.created_at),
            updated_at: format_millis(self.updated_at),
            finished_at: self.finished_at.map(format_millis),
            rollouts,
        }
    }
}

#[derive(sqlx::FromRow)]
struct RolloutRow {
    id: i64,
    release_id: i64,
    agent: String,
    state: String,
    reason: Option<String>,
    probes: Option<String>,
    log_tail: Option<String>,
    updated_at: i64,
    deadline_at: Option<i64>,
}

impl From<RolloutRow> for Rollout {
    fn from(row: RolloutRow) -> Rollout {
        let state = ReleaseState::parse(&row.state).unwrap_or(ReleaseState::Failed);
        Rollout {
            id: row.id,
            release_id: row.release_id,
            agent: row.agent,
            state,
            reason: row.reason,
            probes: row
                .probes
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default(),
            log_tail: row
                .log_tail
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default(),
            updated_at: format_millis(row.updated_at),
            deadline_at: row
                .deadline_at
                .filter(|_| state.is_rolling_out())
                .map(format_millis),
        }
    }
}

macro_rules! select_release {
    () => {
        "SELECT r.id, s.name AS service, r.service_id, r.environment, r.build_id, r.image, \
         r.trigger, r.state, r.reason, r.rollback_of, r.created_at, r.updated_at, r.finished_at \
         FROM releases r JOIN services s ON s.id = r.service_id"
    };
}

macro_rules! select_rollout {
    () => {
        "SELECT o.id, o.release_id, a.name AS agent, o.state, o.reason, o.probes, o.log_tail, \
         o.updated_at, o.deadline_at FROM rollouts o JOIN agents a ON a.id = o.agent_id"
    };
}

/// The rolling-out states, as an SQL list.
macro_rules! rolling_out_states {
    () => {
        "('pulling', 'starting', 'health_checking')"
    };
}
pub(crate) use rolling_out_states;

/// The states of a rollout not settled yet (pending or rolling out), as an SQL list.
macro_rules! unsettled_states {
    () => {
        "('pending', 'pulling', 'starting', 'health_checking')"
    };
}
pub(crate) use unsettled_states;

/// Derives a release's state from its rollouts and stores it: its reason from a rollout that
/// ended that way, `live_at` the first time it is live, `finished_at` once it is settled.
macro_rules! refresh_release {
    ($tx:ident, $release_id:expr, $now:expr) => {{
        let release_id: i64 = $release_id;
        let now: i64 = $now;
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT state, reason FROM rollouts WHERE release_id = $1 ORDER BY id")
                .bind(release_id)
                .fetch_all(&mut *$tx)
                .await?;
        let states: Vec<wharf_wire::ReleaseState> = rows
            .iter()
            .map(|(state, _)| {
                wharf_wire::ReleaseState::parse(state).unwrap_or(wharf_wire::ReleaseState::Failed)
            })
            .collect();
        if !states.is_empty() {
            let state = wharf_domain::release::release_state(&states);
            let reason = rows
                .iter()
                .zip(&states)
                .find(|(_, rollout)| **rollout == state)
                .and_then(|((_, reason), _)| reason.clone());
            sqlx::query(
                "UPDATE releases SET state = $1, reason = $2, updated_at = $3, \
                 live_at = CASE WHEN $1 = 'live' THEN COALESCE(live_at, $3) ELSE live_at END, \
                 finished_at = CASE WHEN $4 THEN COALESCE(finished_at, $3) ELSE NULL END \
                 WHERE id = $5",
            )
            .bind(state.as_str())
            .bind(reason)
            .bind(now)
            .bind(state.is_settled())
            .bind(release_id)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}
pub(crate) use refresh_release;

/// Inserts a release with a pending rollout per matching agent, superseding the service's
/// pending releases in the same environment. Evaluates to the new release's id.
macro_rules! insert_release {
    ($tx:ident, $new:expr, $now:expr) => {{
        let new: &$crate::releases::NewRelease = $new;
        let now: i64 = $now;
        let agents: Vec<$crate::releases::HostRow> = sqlx::query_as(
            "SELECT id, name, labels, allowed_labels, projects, services FROM agents \
             WHERE revoked_at IS NULL ORDER BY id",
        )
        .fetch_all(&mut *$tx)
        .await?;
        let (service, project): (String, String) = sqlx::query_as(
            "SELECT s.name, p.name FROM services s JOIN projects p ON p.id = s.project_id WHERE s.id = $1",
        )
        .bind(new.service_id)
        .fetch_one(&mut *$tx)
        .await?;
        let targets = $crate::releases::matching_agents(&agents, &new.hosts, &project, &service);
        let (state, reason, finished_at) = if targets.is_empty() {
            (
                wharf_wire::ReleaseState::Failed,
                Some(format!("{} ({})", $crate::releases::NO_HOSTS_REASON, $crate::releases::describe_hosts(&new.hosts))),
                Some(now),
            )
        } else {
            (wharf_wire::ReleaseState::Pending, None, None)
        };
        // The older pending releases never start: this one replaces them.
        let superseded: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM releases WHERE service_id = $1 AND environment = $2 AND state = 'pending'",
        )
        .bind(new.service_id)
        .bind(&new.environment)
        .fetch_all(&mut *$tx)
        .await?;
        for (old,) in &superseded {
            sqlx::query(
                "UPDATE rollouts SET state = 'superseded', updated_at = $1, finished_at = $1 \
                 WHERE release_id = $2 AND state = 'pending'",
            )
            .bind(now)
            .bind(old)
            .execute(&mut *$tx)
            .await?;
            $crate::releases::refresh_release!($tx, *old, now);
        }
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO releases (service_id, environment, build_id, image, trigger, state, reason, \
             rollback_of, created_at, updated_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) RETURNING id",
        )
        .bind(new.service_id)
        .bind(&new.environment)
        .bind(new.build_id)
        .bind(&new.image)
        .bind(new.trigger.as_str())
        .bind(state.as_str())
        .bind(reason)
        .bind(new.rollback_of)
        .bind(now)
        .bind(finished_at)
        .fetch_one(&mut *$tx)
        .await?;
        for agent_id in targets {
            sqlx::query(
                "INSERT INTO rollouts (release_id, agent_id, state, created_at, updated_at) \
                 VALUES ($1, $2, 'pending', $3, $3)",
            )
            .bind(id)
            .bind(agent_id)
            .bind(now)
            .execute(&mut *$tx)
            .await?;
        }
        id
    }};
}
pub(crate) use insert_release;

/// An agent as a possible host of a release: its name, the labels it registered with and what
/// its token allows.
#[derive(sqlx::FromRow)]
pub(crate) struct HostRow {
    id: i64,
    name: String,
    labels: String,
    allowed_labels: String,
    projects: String,
    services: String,
}

/// The agents a service's `hosts` name: by name, or `label:NAME` for every agent registered
/// with that label; no hosts means the agent named `local`. Only agents whose tokens allow
/// `deploy` and serve the service (of `project`) run it, and a label counts only when the
/// token allows it.
pub(crate) fn matching_agents(
    agents: &[HostRow],
    hosts: &[String],
    project: &str,
    service: &str,
) -> Vec<i64> {
    let local = [DEFAULT_HOST.to_owned()];
    let hosts = if hosts.is_empty() { &local[..] } else { hosts };
    agents
        .iter()
        .filter(|agent| {
            let scope =
                AgentScope::from_stored(&agent.allowed_labels, &agent.projects, &agent.services);
            scope.allows_label(DEPLOY_LABEL)
                && scope.serves(project, service)
                && hosts.iter().any(|host| match host.strip_prefix("label:") {
                    Some(label) => {
                        scope.allows_label(label)
                            && split_list(&agent.labels).any(|have| have == label)
                    }
                    None => *host == agent.name,
                })
        })
        .map(|agent| agent.id)
        .collect()
}

pub(crate) fn describe_hosts(hosts: &[String]) -> String {
    if hosts.is_empty() {
        format!("the agent named {DEFAULT_HOST}")
    } else {
        hosts.join(", ")
    }
}

impl Store {
    /// Creates a release: superseding the service's pending ones in the environment, with a
    /// pending rollout on each host. With no matching host it is stored as `failed`, saying so.
    pub async fn create_release(&self, new: &NewRelease, now: i64) -> Result<Release> {
        let id = in_transaction!(self, tx => { insert_release!(tx, new, now) });
        self.release(id).await
    }

    /// Completed builds the release scheduler has not looked at yet, oldest first.
    pub async fn builds_awaiting_release(&self, limit: i64) -> Result<Vec<i64>> {
        let rows: Vec<(i64,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id FROM builds WHERE release_pending ORDER BY id LIMIT $1")
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Marks a completed build as looked at, releasing it when `release` is given, in one
    /// transaction. `None` when another scheduler got there first.
    pub async fn release_build(
        &self,
        build_id: i64,
        release: Option<&NewRelease>,
        now: i64,
    ) -> Result<Option<Release>> {
        let id = in_transaction!(self, tx => {
            let taken = sqlx::query("UPDATE builds SET release_pending = FALSE WHERE id = $1 AND release_pending")
                .bind(build_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            match (taken, release) {
                (1, Some(new)) => Some(insert_release!(tx, new, now)),
                _ => None,
            }
        });
        match id {
            Some(id) => Ok(Some(self.release(id).await?)),
            None => Ok(None),
        }
    }

    /// The id of the service's newest completed build for `environment`.
    pub async fn latest_completed_build(
        &self,
        service_id: i64,
        environment: &str,
    ) -> Result<Option<i64>> {
        let row: Option<(i64,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id FROM builds WHERE service_id = $1 AND environment = $2 \
                 AND state = 'completed' ORDER BY id DESC LIMIT 1",
            )
            .bind(service_id)
            .bind(environment)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(id,)| id))
    }

    /// Gives the agent its host's oldest pending rollout, unless the host is already rolling
    /// one out: two releases never roll out on one host at once.
    pub async fn claim_rollout(&self, agent_id: i64, now: i64) -> Result<Option<RolloutRef>> {
        let claimed = in_transaction!(self, tx => {
            let claimed: Option<(i64, i64)> = sqlx::query_as(concat!(
                "UPDATE rollouts SET state = 'pulling', updated_at = $2, deadline_at = NULL \
                 WHERE state = 'pending' AND id = \
                 (SELECT id FROM rollouts WHERE agent_id = $1 AND state = 'pending' ORDER BY id LIMIT 1) \
                 AND NOT EXISTS (SELECT 1 FROM rollouts WHERE agent_id = $1 AND state IN ",
                rolling_out_states!(),
                ") RETURNING id, release_id"
            ))
            .bind(agent_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((_, release_id)) = claimed {
                refresh_release!(tx, release_id, now);
            }
            claimed
        });
        Ok(claimed.map(|(rollout_id, release_id)| RolloutRef {
            rollout_id,
            release_id,
        }))
    }

    /// Records a step or the outcome of a rollout, reported by the agent running it. A rollout
    /// going live, or a teardown's removing the environment, supersedes the older live rollouts
    /// of the service and environment on the same host. A report whose
    /// compare-and-set changed no row (the rollout moved since it was read, such as failed by
    /// [`Store::abandon_rollouts`]) is a conflict, and nothing else changes.
    pub async fn report_rollout(&self, report: &RolloutReport, now: i64) -> Result<Rollout> {
        in_transaction!(self, tx => {
            let current: Option<(i64, i64, String, i64, String, String)> = sqlx::query_as(
                "SELECT o.agent_id, o.release_id, o.state, r.service_id, r.environment, r.trigger \
                 FROM rollouts o JOIN releases r ON r.id = o.release_id WHERE o.id = $1",
            )
            .bind(report.rollout_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((agent_id, release_id, state, service_id, environment, trigger)) = current else {
                return Err(StoreError::NotFound(format!("no rollout #{}", report.rollout_id)));
            };
            let from = ReleaseState::parse(&state).unwrap_or(ReleaseState::Failed);
            if agent_id != report.agent_id {
                return Err(StoreError::Conflict(format!(
                    "rollout #{} belongs to another agent",
                    report.rollout_id
                )));
            }
            check_rollout_report(from, report.state).map_err(|error| {
                StoreError::Conflict(format!("rollout #{}: {error}", report.rollout_id))
            })?;
            // A teardown removes or fails; nothing else ends in `removed`.
            let teardown = ReleaseTrigger::parse(&trigger).is_some_and(ReleaseTrigger::takes_down);
            let fits = match report.state {
                ReleaseState::Removed => teardown,
                ReleaseState::Failed => true,
                _ => !teardown,
            };
            if !fits {
                return Err(StoreError::Conflict(format!(
                    "rollout #{} of a {trigger} release cannot be reported {}",
                    report.rollout_id, report.state
                )));
            }
            let settled = report.state.is_settled();
            let changed = sqlx::query(
                "UPDATE rollouts SET state = $1, reason = COALESCE($2, reason), \
                 probes = COALESCE($3, probes), log_tail = COALESCE($4, log_tail), updated_at = $5, \
                 finished_at = $6 WHERE id = $7 AND state = $8",
            )
            .bind(report.state.as_str())
            .bind(&report.reason)
            .bind((!report.probes.is_empty()).then(|| serde_json::to_string(&report.probes).unwrap_or_default()))
            .bind((!report.log_tail.is_empty()).then(|| serde_json::to_string(&report.log_tail).unwrap_or_default()))
            .bind(now)
            .bind(settled.then_some(now))
            .bind(report.rollout_id)
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                // The rollout moved since it was read (the lease job gave up on it, say): the
                // report is not taken, and nothing else changes with it.
                return Err(StoreError::Conflict(format!(
                    "rollout #{} is no longer {from}: the report was not taken",
                    report.rollout_id
                )));
            }
            // Going live replaces the older live version on the host; a teardown, all of them.
            if matches!(report.state, ReleaseState::Live | ReleaseState::Removed) {
                let older: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT o.id, o.release_id FROM rollouts o JOIN releases r ON r.id = o.release_id \
                     WHERE o.agent_id = $1 AND o.state = 'live' AND o.id <> $2 \
                     AND r.service_id = $3 AND r.environment = $4",
                )
                .bind(agent_id)
                .bind(report.rollout_id)
                .bind(service_id)
                .bind(&environment)
                .fetch_all(&mut *tx)
                .await?;
                for (old_rollout, old_release) in older {
                    sqlx::query("UPDATE rollouts SET state = 'superseded', updated_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(old_rollout)
                        .execute(&mut *tx)
                        .await?;
                    refresh_release!(tx, old_release, now);
                }
            }
            refresh_release!(tx, release_id, now);
        });
        self.rollout(report.rollout_id).await
    }

    /// Puts the rollouts an agent was running back to `pending`: a (re)starting agent runs
    /// nothing, so whatever it was doing starts over.
    pub async fn reset_rollouts(&self, agent_id: i64, now: i64) -> Result<Vec<i64>> {
        let reset = in_transaction!(self, tx => {
            let reset: Vec<(i64, i64)> = sqlx::query_as(concat!(
                "UPDATE rollouts SET state = 'pending', updated_at = $2 WHERE agent_id = $1 AND state IN ",
                rolling_out_states!(),
                " RETURNING id, release_id"
            ))
            .bind(agent_id)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for (_, release_id) in &reset {
                refresh_release!(tx, *release_id, now);
            }
            reset
        });
        Ok(reset.into_iter().map(|(id, _)| id).collect())
    }

    /// Fails the rollouts of agents not heard from since `silent_since` (no heartbeat or
    /// registration) that have not moved since then either: a host that stopped answering
    /// holds no release pending or in progress forever. The previous live release of the
    /// service stays what that host should run, and runs again once its agent is back.
    /// Returns the failed rollouts' ids.
    pub async fn abandon_rollouts(&self, silent_since: i64, now: i64) -> Result<Vec<i64>> {
        let abandoned = in_transaction!(self, tx => {
            let abandoned: Vec<(i64, i64)> = sqlx::query_as(concat!(
                "UPDATE rollouts SET updated_at = $2, finished_at = $2, \
                 reason = 'agent ' || (SELECT name FROM agents WHERE agents.id = rollouts.agent_id) \
                 || CASE WHEN state = 'pending' THEN ' is not answering; the rollout did not start' \
                 ELSE ' stopped answering during the rollout' END, \
                 state = 'failed' \
                 WHERE state IN ",
                unsettled_states!(),
                " AND updated_at < $1 AND agent_id IN \
                 (SELECT id FROM agents WHERE COALESCE(last_seen_at, 0) < $1) \
                 RETURNING id, release_id"
            ))
            .bind(silent_since)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for (rollout_id, release_id) in &abandoned {
                // A rollout whose agent went silent is reported stuck, once.
                sqlx::query(report_rollouts_stuck!("o.reason", "$1", "o.id = $2"))
                .bind(now)
                .bind(rollout_id)
                .execute(&mut *tx)
                .await?;
                refresh_release!(tx, *release_id, now);
            }
            abandoned
        });
        Ok(abandoned.into_iter().map(|(id, _)| id).collect())
    }

    /// The releases pending or rolling out on an agent's host.
    pub async fn rolling_out_releases(&self, agent_id: i64) -> Result<Vec<i64>> {
        let rows: Vec<(i64,)> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT release_id FROM rollouts WHERE agent_id = $1 \
                 AND state IN ",
                unsettled_states!(),
                " ORDER BY release_id"
            ))
            .bind(agent_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The rollouts live on an agent's host: what it should be running now.
    pub async fn live_rollouts(&self, agent_id: i64) -> Result<Vec<RolloutRef>> {
        let rows: Vec<(i64, i64)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id, release_id FROM rollouts WHERE agent_id = $1 AND state = 'live' ORDER BY id")
                .bind(agent_id)
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(rollout_id, release_id)| RolloutRef {
                rollout_id,
                release_id,
            })
            .collect())
    }

    /// The rollout with id `id`.
    pub async fn rollout(&self, id: i64) -> Result<Rollout> {
        let row: Option<RolloutRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(select_rollout!(), " WHERE o.id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(Rollout::from)
            .ok_or_else(|| StoreError::NotFound(format!("no rollout #{id}")))
    }

    /// The release with id `id`, with its rollouts.
    pub async fn release(&self, id: i64) -> Result<Release> {
        let row: Option<ReleaseRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(select_release!(), " WHERE r.id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        let row = row.ok_or_else(|| StoreError::NotFound(format!("no release #{id}")))?;
        let rollouts: Vec<RolloutRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(select_rollout!(), " WHERE o.release_id = $1 ORDER BY o.id"))
                .bind(id)
                .fetch_all(pool)
                .await?
        });
        Ok(row.into_release(rollouts.into_iter().map(Rollout::from).collect()))
    }

    /// A service's releases, newest first, with their rollouts.
    /// Every service's releases that are live or still rolling out, newest first, without
    /// their rollouts.
    pub async fn current_releases(&self) -> Result<Vec<Release>> {
        let rows: Vec<ReleaseRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                select_release!(),
                " WHERE r.state IN ('live', 'pending', 'pulling', 'starting', 'health_checking') \
                 ORDER BY r.id DESC"
            ))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|row| row.into_release(Vec::new()))
            .collect())
    }

    pub async fn list_releases(&self, service_id: i64, limit: i64) -> Result<Vec<Release>> {
        let rows: Vec<ReleaseRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(select_release!(), " WHERE r.service_id = $1 ORDER BY r.id DESC LIMIT $2"))
                .bind(service_id)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        let Some(oldest) = rows.last().map(|row| row.id) else {
            return Ok(Vec::new());
        };
        let rollouts: Vec<RolloutRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                select_rollout!(),
                " JOIN releases r ON r.id = o.release_id WHERE r.service_id = $1 AND r.id >= $2 ORDER BY o.id"
            ))
            .bind(service_id)
            .bind(oldest)
            .fetch_all(pool)
            .await?
        });
        let mut rollouts: Vec<Rollout> = rollouts.into_iter().map(Rollout::from).collect();
        Ok(rows
            .into_iter()
            .map(|row| {
                let (mine, rest) = rollouts
                    .drain(..)
                    .partition(|rollout| rollout.release_id == row.id);
                rollouts = rest;
                row.into_release(mine)
            })
            .collect())
    }

    /// The release a rollback goes to when none is named: the newest one before the service's
    /// current live release that was live once.
    pub async fn previous_live_release(
        &self,
        service_id: i64,
        environment: &str,
    ) -> Result<Option<i64>> {
        let row: Option<(i64,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id FROM releases WHERE service_id = $1 AND environment = $2 AND live_at IS NOT NULL \
                 AND id < (SELECT COALESCE(MAX(id), 0) FROM releases WHERE service_id = $1 \
                 AND environment = $2 AND state = 'live') ORDER BY id DESC LIMIT 1",
            )
            .bind(service_id)
            .bind(environment)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(id,)| id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: i64, name: &str, labels: &str, allowed: &str, projects: &str) -> HostRow {
        HostRow {
            id,
            name: name.to_owned(),
            labels: labels.to_owned(),
            allowed_labels: allowed.to_owned(),
            projects: projects.to_owned(),
            services: String::new(),
        }
    }

    #[test]
    fn hosts_match_by_name_or_label_and_default_to_local() {
        let agents = vec![
            host(1, "local", "build,deploy", "build,deploy", ""),
            host(2, "edge-1", "deploy,eu", "deploy,eu", ""),
            host(3, "builder", "build", "build,deploy", ""),
        ];
        let matching = |hosts: &[&str]| {
            let hosts: Vec<String> = hosts.iter().map(|host| (*host).to_owned()).collect();
            matching_agents(&agents, &hosts, "shop", "web")
        };
        assert_eq!(matching(&[]), vec![1]);
        assert_eq!(matching(&["edge-1"]), vec![2]);
        assert_eq!(matching(&["label:deploy"]), vec![1, 2]);
        assert_eq!(matching(&["label:eu", "builder"]), vec![2, 3]);
        assert!(matching(&["label:gpu"]).is_empty());
    }

    #[test]
    fn only_hosts_whose_tokens_allow_it_run_a_service() {
        let agents = vec![
            // Registered with a label its token does not allow (as stored before tokens had labels).
            host(1, "edge-1", "deploy,eu", "deploy", ""),
            // A token that builds but does not deploy.
            host(2, "builder", "build", "build", ""),
            // A token for the project `blog` only.
            host(3, "edge-2", "deploy,eu", "deploy,eu", "blog"),
            host(4, "edge-3", "deploy,eu", "deploy,eu", "shop"),
        ];
        let hosts = ["label:eu".to_owned(), "builder".to_owned()];
        assert_eq!(matching_agents(&agents, &hosts, "shop", "web"), vec![4]);
        assert_eq!(matching_agents(&agents, &hosts, "blog", "web"), vec![3]);
    }
}
