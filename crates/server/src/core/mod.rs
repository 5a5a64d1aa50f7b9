//! The server's core: what Wharf does, whoever asks. The REST API (`http/`) and later edges
//! (the dashboard) parse a request, call the core and answer; the background tasks (lease
//! expiry, the release scheduler, the GitHub reporter, the notifications' delivery loop, the
//! catch-up of missed webhooks) run here too, started by `jobs`.
//!
//! Architecture invariant: nothing here knows HTTP. The core never imports from an edge and
//! answers with its own [`CoreError`], which each edge maps to its own answers. The store and
//! the wake-up signals are the core's alone: an edge reaches them only through the core.

mod agent_builds;
mod agent_rollouts;
pub(crate) mod agents;
mod builds;
pub(crate) mod catch_up;
mod error;
pub(crate) mod github_app;
pub(crate) mod github_deployments;
mod installations;
mod intake;
pub(crate) mod jobs;
pub(crate) mod notifications;
mod preview_comments;
mod previews;
mod release_scheduler;
pub(crate) mod releases;
pub(crate) mod sealing;
mod services;
pub(crate) mod sessions;
pub(crate) mod signals;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use wharf_github::GithubApp;
use wharf_store::Store;
use wharf_wire::text;

use crate::config::{GithubSettings, ServerConfig};
use crate::metrics::Metrics;
pub(crate) use error::CoreError;
use signals::Signals;

/// What every edge and every background task shares; cloning it is cheap.
#[derive(Clone)]
pub(crate) struct Core {
    store: Store,
    /// Wakes the tasks and requests that wait for a change.
    signals: Signals,
    /// Stores webhook deliveries in batches.
    deliveries: intake::DeliveryWriter,
    /// The GitHub settings in use: the environment's, or those of the App made from the
    /// dashboard, which takes effect without a restart (the tasks that need an App wait on it).
    github: Arc<tokio::sync::watch::Sender<Option<Arc<GithubSettings>>>>,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
}

impl Core {
    /// A core over `store`; starts the delivery writer.
    pub fn new(store: Store, config: ServerConfig) -> Core {
        let github = tokio::sync::watch::channel(config.github.clone().map(Arc::new)).0;
        Core {
            github: Arc::new(github),
            deliveries: intake::DeliveryWriter::start(store.clone()),
            store,
            config: Arc::new(config),
            signals: Signals::default(),
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// Wakes whoever shows builds, releases and their logs (the dashboard's live parts) when
    /// any of them may have changed in this process; another replica's changes are seen at
    /// the next periodic look.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.signals.logs.subscribe()
    }

    /// Wakes whoever shows the state of builds and releases but not their logs (the
    /// dashboard's whole-page parts) when one may have changed in this process.
    pub fn state_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.signals.states.subscribe()
    }

    /// The GitHub App client, when one is configured.
    fn github_app(&self) -> Option<GithubApp> {
        self.github
            .borrow()
            .as_ref()
            .and_then(|github| github.app.clone())
    }

    /// The secret GitHub signs webhooks with, when one is configured.
    pub fn webhook_secret(&self) -> Option<SecretString> {
        self.github
            .borrow()
            .as_ref()
            .and_then(|github| github.webhook_secret.clone())
    }

    /// The GitHub App client once one is configured (at start, or later from the dashboard);
    /// `None` when `shutdown` comes first.
    pub(crate) async fn wait_for_github_app(
        &self,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Option<GithubApp> {
        let mut settings = self.github.subscribe();
        tokio::select! {
            found = settings.wait_for(|github| github.as_ref().is_some_and(|github| github.app.is_some())) => {
                found.ok().and_then(|github| github.as_ref().and_then(|github| github.app.clone()))
            }
            _ = jobs::stopped(shutdown) => None,
        }
    }

    /// Whether the store answers; why not is logged.
    pub async fn store_answers(&self) -> bool {
        match self.store.ping().await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, "health check: the store does not answer");
                false
            }
        }
    }

    /// Every metric in the Prometheus text format: this process's counters and the builds in
    /// the store by state.
    pub async fn metrics_text(&self) -> Result<String, CoreError> {
        let by_state: Vec<(String, i64)> = self
            .store
            .count_builds_by_state()
            .await?
            .into_iter()
            .map(|(build_state, count)| (build_state.as_str().to_owned(), count))
            .collect();
        Ok(self.metrics.render(&by_state))
    }
}

/// The current time in milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// A line an agent reports, cut to [`text::REASON_CHARS`].
fn clipped(text: String) -> String {
    text::clip_owned(text, text::REASON_CHARS)
}
