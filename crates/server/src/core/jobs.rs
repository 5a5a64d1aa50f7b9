//! The server's background tasks, started here: the periodic work (returning builds whose lease
//! ran out to the queue, failing the rollouts of agents that stopped answering; less often,
//! reporting work past its deadline stuck and housekeeping: forgetting deploy-hook signatures past their time, keying deliveries an
//! earlier Wharf stored, removing webhook bodies past their retention; reporting silent agents
//! offline), the release scheduler, the GitHub reporter, the notifications' delivery loop and
//! the catch-up of missed webhooks.
//!
//! Every statement is atomic and harmless to repeat, so several server replicas may run this
//! at once without coordinating; the catch-up, which asks GitHub for work, runs once across
//! them (a schedule taken in the store).

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::core::{
    Core, catch_up, github_deployments, notifications, now_millis, preview_comments,
    release_scheduler,
};

/// The background tasks of one server; dropping this stops them.
pub(crate) struct BackgroundTasks(Vec<JoinHandle<()>>);

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts every background task; each ends when `shutdown` turns true.
pub(crate) fn start(core: &Core, shutdown: &watch::Receiver<bool>) -> BackgroundTasks {
    BackgroundTasks(vec![
        tokio::spawn(run_periodic(core.clone(), shutdown.clone())),
        tokio::spawn(release_scheduler::run(core.clone(), shutdown.clone())),
        tokio::spawn(github_deployments::run(core.clone(), shutdown.clone())),
        tokio::spawn(preview_comments::run(core.clone(), shutdown.clone())),
        tokio::spawn(notifications::delivery::run(core.clone(), shutdown.clone())),
        tokio::spawn(catch_up::run(core.clone(), shutdown.clone())),
    ])
}

/// Lease expiry and abandoned rollouts, every `lease_check_interval`, and housekeeping, every
/// `housekeeping_interval`, until shutdown.
async fn run_periodic(core: Core, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(core.config.lease_check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut housekeeping = tokio::time::interval(core.config.housekeeping_interval);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let up_since = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                expire_leases(&core).await;
                // Agents whose heartbeats went unanswered while this server was down are not
                // silent: they get one lease to be heard from again.
                if up_since.elapsed() >= core.config.lease {
                    abandon_rollouts(&core).await;
                    mark_agents_offline(&core).await;
                }
            }
            _ = housekeeping.tick() => {
                // Deadlines are minutes long: a report a housekeeping interval late is on time,
                // and the store's writer is not taken every lease check for it.
                report_overdue(&core).await;
                keep_house(&core).await;
                // An App made from the dashboard through another replica is used here too.
                if core.github_app().is_none() {
                    core.load_github_app().await;
                }
            }
            _ = stopped(&mut shutdown) => return,
        }
    }
}

/// The most webhook bodies one statement removes, so the write lock is never held long.
const BODIES_PER_BATCH: i64 = 1000;

/// What the store holds only for a time: deploy-hook signatures past theirs are forgotten, and
/// webhook bodies older than the retention period are removed (their deliveries and
/// deduplication keys stay), in batches until none is left; before that, deliveries an earlier
/// Wharf stored get their keys of today.
async fn keep_house(core: &Core) {
    let now = now_millis();
    match core.store.forget_expired_hook_signatures(now).await {
        Ok(0) => {}
        Ok(forgotten) => tracing::debug!(forgotten, "expired deploy-hook signatures forgotten"),
        Err(error) => tracing::error!(%error, "forgetting expired deploy-hook signatures failed"),
    }
    match core.expire_previews().await {
        Ok(0) => {}
        Ok(expired) => tracing::info!(expired, "previews past their time-to-live removed"),
        Err(error) => tracing::error!(%error, "removing previews past their time-to-live failed"),
    }
    // Deliveries an earlier Wharf stored are keyed from their bodies (whose removal waits
    // for it).
    match core.rekey_earlier_deliveries().await {
        Ok(0) => {}
        Ok(rekeyed) => tracing::info!(rekeyed, "earlier webhook deliveries keyed by their bodies"),
        Err(error) => {
            tracing::error!(%error, "keying earlier webhook deliveries failed");
            return;
        }
    }
    let retention = i64::try_from(core.config.delivery_retention.as_millis()).unwrap_or(i64::MAX);
    let received_before = now.saturating_sub(retention);
    loop {
        match core
            .store
            .remove_delivery_bodies(received_before, BODIES_PER_BATCH)
            .await
        {
            Ok(removed) => {
                if removed > 0 {
                    tracing::info!(removed, "webhook bodies past their retention removed");
                }
                if removed < BODIES_PER_BATCH as u64 {
                    return;
                }
            }
            Err(error) => {
                tracing::error!(%error, "removing webhook bodies past their retention failed");
                return;
            }
        }
    }
}

/// One pass over the rollouts of agents not heard from for a lease: they fail, and the
/// previous live release of their service stays what those hosts should run.
async fn abandon_rollouts(core: &Core) {
    let now = now_millis();
    let silent_since = now - core.config.lease.as_millis() as i64;
    match core.store.abandon_rollouts(silent_since, now).await {
        Ok(abandoned) if abandoned.is_empty() => {}
        Ok(abandoned) => {
            tracing::warn!(rollouts = ?abandoned, "agents stopped answering mid-rollout; rollouts failed");
            core.signals.releases.notify();
            core.signals.states.notify();
        }
        Err(error) => tracing::error!(%error, "looking for abandoned rollouts failed"),
    }
}

/// Agents not heard from for a lease are reported offline, once; the store's trigger reports
/// them online when they are heard from again.
async fn mark_agents_offline(core: &Core) {
    let now = now_millis();
    let silent_since = now - core.config.lease.as_millis() as i64;
    match core.store.mark_agents_offline(silent_since, now).await {
        Ok(agents) if agents.is_empty() => {}
        Ok(agents) => {
            tracing::warn!(agents = ?agents, "agents not heard from for a lease are offline");
            core.signals.notifications.notify();
        }
        Err(error) => tracing::error!(%error, "looking for silent agents failed"),
    }
}

/// Builds and rollouts still in progress past their deadline are reported stuck, once each.
async fn report_overdue(core: &Core) {
    match core.store.report_overdue(now_millis()).await {
        Ok(overdue) if overdue.is_empty() => {}
        Ok(overdue) => {
            tracing::warn!(
                builds = ?overdue.builds,
                releases = ?overdue.releases,
                "still in progress past the deadline: reported stuck"
            );
            core.signals.notifications.notify();
        }
        Err(error) => tracing::error!(%error, "looking for work past its deadline failed"),
    }
}

/// One pass of lease expiry.
async fn expire_leases(core: &Core) {
    match core.store.expire_leases(now_millis()).await {
        Ok(expiry) => {
            for id in &expiry.requeued {
                tracing::warn!(build = id, "lease expired; build returned to the queue");
            }
            for id in &expiry.failed {
                tracing::warn!(
                    build = id,
                    "lease expired on the last attempt; build failed"
                );
            }
            if !expiry.requeued.is_empty() {
                core.signals.queue.notify();
            }
            if !expiry.requeued.is_empty() || !expiry.failed.is_empty() {
                core.signals.notifications.notify();
                core.signals.logs.notify();
                core.signals.states.notify();
            }
        }
        Err(error) => tracing::error!(%error, "lease expiry failed"),
    }
}

/// Resolves once shutdown is asked for (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
