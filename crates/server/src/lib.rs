//! Wharf's control plane: the core (`core/`: the scheduler, sealing, intake, the periodic
//! jobs, the wake-ups that let idle agents claim a build the moment it is queued, and the
//! reporter that tells GitHub how each build and its release are doing) and the REST API in
//! front of it (`http/`).
//!
//! Architecture invariant: all state lives in the store. The server keeps only what it can lose
//! at any moment without losing work: caches, counters for `/metrics`, and the wake-up signal,
//! which is a hint (claimers also look again every second), never the source of truth. That is
//! what lets several servers share one PostgreSQL.

mod config;
mod core;
mod http;
mod metrics;
mod ui;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;
use wharf_store::Store;

pub use config::{
    DEFAULT_DELIVERY_RETENTION, DEFAULT_GITHUB_WEB_URL, DEFAULT_MAX_LOG_BYTES, GithubSettings,
    RequestLimits, ServerConfig, TrustedProxies,
};
pub use core::github_deployments::Backoff;
pub use core::sealing::{SealingError, SealingKey};
pub use core::signals::Signal;
pub use metrics::Metrics;

/// A running server: its address, and the handle that stops it.
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Asks the server to stop and waits until it has.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await?
    }

    /// Waits until the server stops by itself (it does not, unless it fails) or `shutdown` fires.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }

    /// A sender that stops the server when it sends `true`.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Starts the server on `listener` and returns at once.
pub fn start(
    listener: TcpListener,
    store: Store,
    config: ServerConfig,
) -> anyhow::Result<RunningServer> {
    let addr = listener.local_addr()?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let core = core::Core::new(store, config);
    let task = tokio::spawn(run(listener, core, shutdown_rx));
    Ok(RunningServer {
        addr,
        shutdown,
        task,
    })
}

async fn run(
    listener: TcpListener,
    core: core::Core,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Before answering anything: webhooks need the secret of an App made from the dashboard.
    core.load_github_app().await;
    let background = core::jobs::start(&core, &shutdown);
    let router = http::router(core);
    tracing::info!(addr = %listener.local_addr()?, "wharf server listening");
    // The peer's address identifies the client for the limits on failed authentication.
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move { core::jobs::stopped(&mut shutdown).await })
        .await?;
    drop(background);
    Ok(())
}

/// Issues a fresh token for the agent named `name`, creating the agent when it does not exist.
/// `wharf up` uses it for its built-in local agent, so no token needs copying by hand.
pub async fn issue_agent_token(store: &Store, name: &str) -> anyhow::Result<String> {
    core::agents::issue_agent_token(store, name).await
}

/// Issues the token of the agent `wharf up` runs beside the server: like
/// [`issue_agent_token`], and it alone may build services on a local path.
pub async fn issue_local_agent_token(store: &Store, name: &str) -> anyhow::Result<String> {
    core::agents::issue_local_agent_token(store, name).await
}
