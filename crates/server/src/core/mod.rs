//! The server's core: what Wharf does, whoever asks. The REST API (`http/`) and later edges
//! (the dashboard) parse a request, call the core and answer; the background tasks (lease
//! expiry, the release scheduler, the GitHub reporter) run here too.
//!
//! Architecture invariant: nothing here knows HTTP. The core never imports from an edge; it
//! answers with its own [`CoreError`], which each edge maps to its own answers.

pub(crate) mod agents;
pub(crate) mod github_deployments;
pub(crate) mod intake;
pub(crate) mod jobs;
pub(crate) mod release_scheduler;
pub(crate) mod sealing;
pub(crate) mod signals;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use wharf_github::GithubApp;
use wharf_store::Store;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use signals::Signals;

/// What every edge and every background task shares; cloning it is cheap.
#[derive(Clone)]
pub(crate) struct Core {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    /// Wakes the tasks and requests that wait for a change.
    pub signals: Signals,
    /// Stores webhook deliveries in batches.
    pub deliveries: intake::DeliveryWriter,
    pub metrics: Arc<Metrics>,
}

impl Core {
    /// A core over `store`; starts the delivery writer.
    pub fn new(store: Store, config: ServerConfig) -> Core {
        Core {
            deliveries: intake::DeliveryWriter::start(store.clone()),
            store,
            config: Arc::new(config),
            signals: Signals::default(),
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// The GitHub App client, when one is configured.
    pub fn github_app(&self) -> Option<&GithubApp> {
        self.config
            .github
            .as_ref()
            .and_then(|github| github.app.as_ref())
    }
}

/// The current time in milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}
