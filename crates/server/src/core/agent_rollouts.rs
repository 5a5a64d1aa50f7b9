//! Rollouts as agents work them: claiming the next one for their host (waiting for one), their
//! reports, and what a host should run now (which a starting agent reconciles with).

use std::time::Duration;

use wharf_domain::agents::{AgentScope, DEPLOY_LABEL, LabelNotAllowed};
use wharf_domain::stuck::rollout_deadline;
use wharf_store::RolloutReport;
use wharf_wire::{
    Agent, AppendLogsAnswer, AppendRolloutLogs, Desired, ReleaseState, ReportRollout, Rollout,
    RolloutJob,
};

use crate::core::agent_builds::check_log_batch;
use crate::core::release_scheduler::rollout_job;
use crate::core::signals::long_poll;
use crate::core::{Core, CoreError, clipped, now_millis};

impl Core {
    /// The next rollout for `agent`'s host, waiting up to `wait` (at most the server's
    /// `max_claim_wait`) for one; `None` when none came. Only a token that allows `deploy`
    /// runs releases.
    pub async fn claim_rollout(
        &self,
        agent: &Agent,
        wait: Duration,
    ) -> Result<Option<RolloutJob>, CoreError> {
        must_deploy(agent)?;
        long_poll(
            &self.signals.releases,
            wait.min(self.config.max_claim_wait),
            move || self.hand_out_rollout(agent),
            Option::is_some,
        )
        .await
    }

    /// One look for a rollout `agent` may take, with everything it needs to run it. A rollout
    /// whose job cannot be made fails with the reason, and the next is taken.
    async fn hand_out_rollout(&self, agent: &Agent) -> Result<Option<RolloutJob>, CoreError> {
        loop {
            let now = now_millis();
            let Some(claimed) = self.store.claim_rollout(agent.id, now).await? else {
                return Ok(None);
            };
            self.signals.releases.notify();
            match rollout_job(self, agent, claimed).await {
                Ok(job) => {
                    let health_deadline = Duration::from_millis(job.settings.health.deadline_ms);
                    self.store
                        .set_rollout_deadline(
                            claimed.rollout_id,
                            rollout_deadline(now, health_deadline),
                        )
                        .await?;
                    tracing::info!(rollout = claimed.rollout_id, release = claimed.release_id, agent = %agent.name, "rollout claimed");
                    return Ok(Some(job));
                }
                Err(error) => {
                    // Without its secrets, or on a host whose token does not serve the service,
                    // the release cannot run: it fails with the reason, and nothing on the host
                    // was touched.
                    tracing::error!(rollout = claimed.rollout_id, %error, "cannot hand out the rollout");
                    let report = RolloutReport {
                        agent_id: agent.id,
                        rollout_id: claimed.rollout_id,
                        state: ReleaseState::Failed,
                        reason: Some(clipped(error.to_string())),
                        probes: Vec::new(),
                        log_tail: Vec::new(),
                    };
                    self.store.report_rollout(&report, now_millis()).await?;
                }
            }
        }
    }

    /// Stores deploy-log lines of the rollout `id` that `agent` runs now, in its release's log,
    /// up to the server's limit.
    pub async fn append_rollout_logs(
        &self,
        agent: &Agent,
        id: i64,
        request: &AppendRolloutLogs,
    ) -> Result<AppendLogsAnswer, CoreError> {
        must_deploy(agent)?;
        check_log_batch(&request.lines)?;
        let outcome = self
            .store
            .append_release_logs(
                id,
                agent.id,
                &request.lines,
                self.config.max_log_bytes,
                now_millis(),
            )
            .await?;
        Ok(self.logs_appended(outcome))
    }

    /// Records how the rollout `id` that `agent` runs is doing.
    pub async fn report_rollout(
        &self,
        agent: &Agent,
        id: i64,
        request: ReportRollout,
    ) -> Result<Rollout, CoreError> {
        let rollout = self
            .store
            .report_rollout(
                &RolloutReport {
                    agent_id: agent.id,
                    rollout_id: id,
                    state: request.state,
                    reason: request.reason.map(clipped),
                    probes: request.probes.into_iter().rev().take(50).rev().collect(),
                    log_tail: request
                        .log_tail
                        .into_iter()
                        .rev()
                        .take(100)
                        .rev()
                        .map(clipped)
                        .collect(),
                },
                now_millis(),
            )
            .await?;
        self.signals.releases.notify();
        self.signals.states.notify();
        self.signals.logs.notify();
        tracing::info!(rollout = id, release = rollout.release_id, agent = %agent.name, state = %rollout.state, reason = rollout.reason.as_deref().unwrap_or(""), "rollout state reported");
        Ok(rollout)
    }

    /// What `agent`'s host should run now: a job for every release live on it that its token
    /// serves, and the releases still rolling out there.
    pub async fn desired(&self, agent: &Agent) -> Result<Desired, CoreError> {
        must_deploy(agent)?;
        let mut live = Vec::new();
        for rollout in self.store.live_rollouts(agent.id).await? {
            match rollout_job(self, agent, rollout).await {
                Ok(job) => live.push(job),
                Err(CoreError::Forbidden(reason)) => {
                    tracing::warn!(agent = %agent.name, release = rollout.release_id, %reason, "not handing out a live release");
                }
                Err(error) => return Err(error),
            }
        }
        let rolling_out = self.store.rolling_out_releases(agent.id).await?;
        Ok(Desired { live, rolling_out })
    }
}

/// Refuses an agent whose token does not allow `deploy`: it runs no release.
fn must_deploy(agent: &Agent) -> Result<(), CoreError> {
    if AgentScope::of(agent).allows_label(DEPLOY_LABEL) {
        Ok(())
    } else {
        Err(CoreError::Forbidden(
            LabelNotAllowed(DEPLOY_LABEL.to_owned()).to_string(),
        ))
    }
}
