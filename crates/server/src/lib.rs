//! Wharf's control plane: the HTTP API (webhooks, REST, agents), the wake-ups that let idle
//! agents claim a build the moment it is queued, the periodic jobs (lease expiry), and the
//! reporter that tells GitHub how each build and its release are doing.
//!
//! Architecture invariant: all state lives in the store. The server keeps only what it can lose
//! at any moment without losing work: caches, counters for `/metrics`, and the wake-up signal,
//! which is a hint (claimers also look again every second), never the source of truth. That is
//! what lets several servers share one PostgreSQL.

mod github_deployments;
mod http;
mod intake;
mod jobs;
mod metrics;
mod queue;
mod releases;
mod sealing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::watch;
use wharf_github::GithubApp;
use wharf_store::Store;

pub use github_deployments::Backoff;
pub use metrics::Metrics;
pub use queue::Signal;
pub use sealing::{SealingError, SealingKey};

/// The most log text kept per build.
pub const DEFAULT_MAX_LOG_BYTES: i64 = 10 * 1024 * 1024;

/// Everything the server needs to run, read from flags and the environment by the binary.
#[derive(Clone)]
pub struct ServerConfig {
    /// The admin bearer token of the REST API.
    pub admin_token: SecretString,
    /// How users and GitHub reach this server (for links such as `log_url`).
    pub public_url: String,
    /// The scheme of the services' own addresses, `{scheme}://{domain}`, shown on GitHub as a
    /// live deployment's `environment_url`: "http" or "https".
    pub app_url_scheme: String,
    /// The GitHub App, when configured.
    pub github: Option<GithubSettings>,
    /// How long a claim's lease lasts without a heartbeat.
    pub lease: Duration,
    /// How many claims a build gets before an expired lease fails it.
    pub max_attempts: i64,
    /// The longest an agent's claim request is held open.
    pub max_claim_wait: Duration,
    /// How often expired leases are looked for.
    pub lease_check_interval: Duration,
    /// The most log text kept per build; later lines are dropped with a note.
    pub max_log_bytes: i64,
    /// Seals secret values before they are stored.
    pub sealing_key: Arc<SealingKey>,
    /// The registry builds push to (`WHARF_REGISTRY`), for deploy hooks that name only a
    /// commit (`image_sha`); without it the service's last pushed image tells.
    pub registry: Option<String>,
    /// How long the GitHub reporter waits after failed passes over a build, unless GitHub said.
    pub github_retry: Backoff,
    /// How often the GitHub reporter looks for builds due for a report besides its wake-ups
    /// (retries after a backoff, changes made by other server replicas).
    pub github_report_interval: Duration,
}

impl ServerConfig {
    /// Defaults for everything but the tokens; the sealing key is a fresh random one, which
    /// suits tests (a real server keeps its key, or its secrets cannot be opened after a restart).
    pub fn new(admin_token: SecretString) -> ServerConfig {
        let sealing_key = SealingKey::generate()
            .and_then(|key| SealingKey::parse(&key))
            .expect("the system's random number generator works");
        ServerConfig {
            sealing_key: Arc::new(sealing_key),
            admin_token,
            public_url: "http://127.0.0.1:8420".to_owned(),
            app_url_scheme: "http".to_owned(),
            github: None,
            lease: Duration::from_secs(30),
            max_attempts: 3,
            max_claim_wait: Duration::from_secs(30),
            lease_check_interval: Duration::from_secs(1),
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            registry: None,
            github_retry: Backoff::default(),
            github_report_interval: Duration::from_secs(1),
        }
    }
}

/// The GitHub App's settings.
#[derive(Clone)]
pub struct GithubSettings {
    /// Signs webhooks; `None` refuses every webhook with a clear error.
    pub webhook_secret: Option<SecretString>,
    /// The App client; `None` when only a webhook secret is configured.
    pub app: Option<GithubApp>,
}

/// What every request handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    pub queue: Signal,
    /// Stores webhook deliveries in batches.
    pub deliveries: intake::DeliveryWriter,
    /// Rings when a build's log grows or its state changes.
    pub logs: Signal,
    /// Builds completed, releases created, rollouts moved: wakes the release scheduler, the
    /// agents waiting for rollouts and the deploy hooks waiting for an outcome.
    pub releases: Signal,
    /// Ring after changing the state of a build or of a release: it wakes the GitHub reporter.
    /// (The store's triggers already made the build due; this makes the reporter look now
    /// rather than at its next periodic look.)
    pub github_reports: Signal,
    pub metrics: Arc<Metrics>,
}

impl AppState {
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
    let state = AppState {
        deliveries: intake::DeliveryWriter::start(store.clone()),
        store,
        config: Arc::new(config),
        queue: Signal::new(),
        logs: Signal::new(),
        releases: Signal::new(),
        github_reports: Signal::new(),
        metrics: Arc::new(Metrics::default()),
    };
    let task = tokio::spawn(run(listener, state, shutdown_rx));
    Ok(RunningServer {
        addr,
        shutdown,
        task,
    })
}

async fn run(
    listener: TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let jobs = tokio::spawn(jobs::run(state.clone(), shutdown.clone()));
    let scheduler = tokio::spawn(releases::run_scheduler(state.clone(), shutdown.clone()));
    let reporter = tokio::spawn(github_deployments::run(state.clone(), shutdown.clone()));
    let router = http::router(state);
    tracing::info!(addr = %listener.local_addr()?, "wharf server listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { jobs::stopped(&mut shutdown).await })
        .await?;
    jobs.abort();
    scheduler.abort();
    reporter.abort();
    Ok(())
}

/// Issues a fresh token for the agent named `name`, creating the agent when it does not exist.
/// `wharf up` uses it for its built-in local agent, so no token needs copying by hand.
pub async fn issue_agent_token(store: &Store, name: &str) -> anyhow::Result<String> {
    let token = http::new_agent_token();
    let hash = wharf_store::hash_token(&token);
    if store.agent_by_name(name).await?.is_some() {
        store.replace_agent_token(name, &hash).await?;
    } else {
        store.create_agent(name, &hash, now_millis()).await?;
    }
    Ok(token)
}
