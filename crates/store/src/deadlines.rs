//! Deadlines of rollouts in progress (a build's is set by its claim; `wharf_domain::stuck` says
//! how both are set),
//! the pass that reports work past its deadline as `rollout.stuck`, and the statements every
//! `rollout.stuck` report is written with (lease expiry and abandoned rollouts use them too):
//! one `dedupe_key` per build or rollout, so each is told stuck once, whichever way it got
//! stuck first.

use wharf_domain::stuck::{OVERDUE_BUILD_REASON, OVERDUE_ROLLOUT_REASON};

use crate::builds::leased_states;
use crate::releases::rolling_out_states;
use crate::{Result, Store, in_transaction, on_pool};

/// The statement that reports the builds matching `$where` stuck, with reason `$1` at `$2`, each
/// once (`build-stuck:{id}`).
macro_rules! report_builds_stuck {
    ($where:expr) => {
        concat!(
            "INSERT INTO notification_events (event, service_id, environment, build_id, \
             agent_id, reason, dedupe_key, created_at) \
             SELECT 'rollout.stuck', service_id, environment, id, agent_id, $1, \
             'build-stuck:' || id, $2 FROM builds WHERE ",
            $where,
            " ON CONFLICT (dedupe_key) DO NOTHING"
        )
    };
}
pub(crate) use report_builds_stuck;

/// The statement that reports the rollouts `o` matching `$where` stuck, with reason `$reason`
/// at `$at` (SQL expressions), each once (`rollout-stuck:{id}`).
macro_rules! report_rollouts_stuck {
    ($reason:expr, $at:expr, $where:expr) => {
        concat!(
            "INSERT INTO notification_events (event, service_id, environment, build_id, \
             release_id, agent_id, reason, dedupe_key, created_at) \
             SELECT 'rollout.stuck', r.service_id, r.environment, r.build_id, r.id, o.agent_id, ",
            $reason,
            ", 'rollout-stuck:' || o.id, ",
            $at,
            " FROM rollouts o JOIN releases r ON r.id = o.release_id WHERE ",
            $where,
            " ON CONFLICT (dedupe_key) DO NOTHING"
        )
    };
}
pub(crate) use report_rollouts_stuck;

/// The work a pass found past its deadline and reported stuck.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overdue {
    pub builds: Vec<i64>,
    /// The releases of the rollouts reported.
    pub releases: Vec<i64>,
}

impl Overdue {
    pub fn is_empty(&self) -> bool {
        self.builds.is_empty() && self.releases.is_empty()
    }
}

impl Store {
    /// Sets when the rollout `id` must have ended; a rollout already over is left alone.
    pub async fn set_rollout_deadline(&self, id: i64, deadline_at: i64) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(concat!(
                "UPDATE rollouts SET deadline_at = $1 WHERE id = $2 AND state IN ",
                rolling_out_states!()
            ))
            .bind(deadline_at)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Reports the builds and rollouts still in progress past their deadline as
    /// `rollout.stuck`, each once; returns those reported now.
    pub async fn report_overdue(&self, now: i64) -> Result<Overdue> {
        let overdue = in_transaction!(self, tx => {
            let builds: Vec<(i64,)> = sqlx::query_as(concat!(
                report_builds_stuck!(concat!(
                    "state IN ",
                    leased_states!(),
                    " AND deadline_at < $2"
                )),
                " RETURNING build_id"
            ))
            .bind(OVERDUE_BUILD_REASON)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let releases: Vec<(i64,)> = sqlx::query_as(concat!(
                report_rollouts_stuck!(
                    "$1",
                    "$2",
                    concat!(
                        "o.state IN ",
                        rolling_out_states!(),
                        " AND o.deadline_at < $2"
                    )
                ),
                " RETURNING release_id"
            ))
            .bind(OVERDUE_ROLLOUT_REASON)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            Overdue {
                builds: builds.into_iter().map(|(id,)| id).collect(),
                releases: releases.into_iter().map(|(id,)| id).collect(),
            }
        });
        Ok(overdue)
    }
}
