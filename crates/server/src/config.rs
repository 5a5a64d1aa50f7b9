//! What the server is told at start: [`ServerConfig`], read from flags and the environment by
//! the binary, and the GitHub App's settings.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use wharf_github::GithubApp;

use crate::core::github_deployments::Backoff;
use crate::core::sealing::SealingKey;

/// The most log text kept per build.
pub const DEFAULT_MAX_LOG_BYTES: i64 = 10 * 1024 * 1024;

/// How long stored webhook bodies are kept by default: 30 days.
pub const DEFAULT_DELIVERY_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

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
    /// How often what the store holds only for a time (deploy-hook signatures past their
    /// window, webhook bodies past their retention) is removed.
    pub housekeeping_interval: Duration,
    /// How long a stored webhook body is kept; then it is removed, and its delivery and
    /// deduplication key stay.
    pub delivery_retention: Duration,
    /// The most log text kept per build; later lines are dropped with a note.
    pub max_log_bytes: i64,
    /// Seals secret values before they are stored.
    pub sealing_key: Arc<SealingKey>,
    /// The registry builds push to (`WHARF_REGISTRY`), without a trailing `/`: handed to agents
    /// when they register, checked in every completed build's report, and used by deploy hooks
    /// that name only a commit (`image_sha`). Without it, builds fail when an agent claims them.
    pub registry: Option<String>,
    /// Agents talk plain HTTP to the registry (`WHARF_REGISTRY_INSECURE`).
    pub registry_insecure: bool,
    /// How long the GitHub reporter waits after failed passes over a build, unless GitHub said.
    pub github_retry: Backoff,
    /// How often the GitHub reporter looks for builds due for a report besides its wake-ups
    /// (retries after a backoff, changes made by other server replicas).
    pub github_report_interval: Duration,
    /// How long the notifications' delivery loop waits after a failed attempt at a message,
    /// unless the sink said (`Retry-After`).
    pub notification_retry: Backoff,
    /// Attempts at one message before it becomes a dead letter.
    pub notification_max_attempts: i64,
    /// How often the delivery loop looks for events and due messages besides its wake-ups.
    pub notification_interval: Duration,
    /// How long one attempt at a message may take.
    pub notification_timeout: Duration,
    /// How long a server holds a message it sends before another may take it.
    pub notification_lease: Duration,
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
            housekeeping_interval: Duration::from_secs(60),
            delivery_retention: DEFAULT_DELIVERY_RETENTION,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            registry: None,
            registry_insecure: false,
            github_retry: Backoff::default(),
            github_report_interval: Duration::from_secs(1),
            notification_retry: Backoff {
                first: Duration::from_secs(5),
                max: Duration::from_secs(3600),
            },
            notification_max_attempts: 10,
            notification_interval: Duration::from_secs(1),
            notification_timeout: Duration::from_secs(10),
            notification_lease: Duration::from_secs(60),
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
