//! A rollout's deploy log: the notes the deployer writes as it works (the pull, each container
//! started, every health probe, the switch of traffic, the rollback and its reason), shipped to
//! the server into the release's log as a build's output is.
//!
//! Writing a note never waits: a note that finds the log's buffer full is dropped, so a slow
//! server never slows a rollout down. The log is closed, with what is buffered sent, before the
//! rollout's final report.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use wharf_client::ApiClient;
use wharf_runtime::process::{OutputLine, Stream};
use wharf_wire::{ReleaseState, ReportRollout, RolloutJob};

use super::{Deployer, Switched};
use crate::logs::{LogShipper, LogTarget};

/// How long closing a log waits for its last lines to reach the server.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The open deploy logs, by rollout.
#[derive(Clone, Default)]
pub(super) struct DeployLogs {
    open: Arc<Mutex<HashMap<i64, mpsc::Sender<OutputLine>>>>,
}

impl DeployLogs {
    /// Opens the deploy log of `job`'s rollout; `secrets` are masked in every line.
    pub(super) fn open(
        &self,
        client: &ApiClient,
        job: &RolloutJob,
        secrets: Vec<String>,
    ) -> LogShipper {
        let shipper =
            LogShipper::start(client.clone(), LogTarget::Rollout(job.rollout_id), secrets);
        self.lock().insert(job.rollout_id, shipper.sender().clone());
        shipper
    }

    /// Closes the log of rollout `rollout`, waiting (a while) until its lines are stored.
    pub(super) async fn close(&self, rollout: i64, shipper: LogShipper) {
        self.lock().remove(&rollout);
        if tokio::time::timeout(CLOSE_WAIT, shipper.finish())
            .await
            .is_err()
        {
            tracing::warn!(
                rollout,
                "the deploy log's last lines did not reach the server"
            );
        }
    }

    fn write(&self, rollout: i64, text: String) {
        if let Some(sender) = self.lock().get(&rollout) {
            let _ = sender.try_send(OutputLine {
                stream: Stream::Note,
                text,
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, mpsc::Sender<OutputLine>>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Deployer {
    /// Adds a line to the deploy log of `job`'s rollout, when it runs here.
    pub(super) fn note(&self, job: &RolloutJob, text: impl Into<String>) {
        self.deploy_logs.write(job.rollout_id, text.into());
    }

    /// The log's last line: how the rollout ended here, and what comes next.
    pub(super) fn note_outcome(
        &self,
        job: &RolloutJob,
        report: &ReportRollout,
        switched: Option<&Switched>,
    ) {
        let reason = report.reason.as_deref().unwrap_or("no reason given");
        let text = match report.state {
            ReleaseState::Live => match switched {
                Some(switched) if switched.beside && !switched.old.is_empty() => format!(
                    "live: release #{} serves here; the previous version drains for {} ms, \
                     then stops",
                    job.release_id, job.settings.drain_ms
                ),
                _ => format!("live: release #{} serves here", job.release_id),
            },
            ReleaseState::RolledBack => {
                format!("rolled back: {reason}; the previous version keeps serving")
            }
            state => format!("{state}: {reason}"),
        };
        self.note(job, text);
    }
}
