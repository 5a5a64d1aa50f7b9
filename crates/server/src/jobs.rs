//! Periodic work: returning builds whose lease ran out to the queue.
//!
//! Every statement is atomic and harmless to repeat, so several server replicas may run this
//! at once without coordinating.

use tokio::sync::watch;

use crate::{AppState, now_millis};

pub(crate) async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(state.config.lease_check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => expire_leases(&state).await,
            _ = stopped(&mut shutdown) => return,
        }
    }
}

/// One pass of lease expiry.
pub(crate) async fn expire_leases(state: &AppState) {
    match state.store.expire_leases(now_millis()).await {
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
                state.queue.notify();
            }
            if !expiry.requeued.is_empty() || !expiry.failed.is_empty() {
                state.logs.notify();
                state.github_reports.notify();
            }
        }
        Err(error) => tracing::error!(%error, "lease expiry failed"),
    }
}

/// Resolves once shutdown is asked for (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
