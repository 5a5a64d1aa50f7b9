//! Wharf's agent: it registers with the server, claims builds by long-poll under a lease,
//! keeps the lease alive with heartbeats while a [`BuildRunner`] works, and stops a build
//! the moment the server says so (cancelled, or leased elsewhere).
//!
//! Architecture invariant: the agent holds no state the server cannot rebuild. If it dies,
//! its leases run out and the server hands its builds to another agent.

mod builder;
mod deployer;
mod logs;
mod masking;
mod names;
mod registry_logins;
mod runner;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::watch;
use wharf_client::{ApiClient, ClientError};
use wharf_wire::{
    AgentSettings, ClaimBuild, ClaimRollout, DesiredState, Heartbeat, RegisterAgent, ReportRollout,
};

pub use builder::{BuilderConfig, ImageBuilder};
pub use deployer::DeployConfig;
pub use runner::{BuildContext, BuildRunner};
pub use wharf_runtime::edge::EdgeConfig;
pub use wharf_runtime::engine::{RegistryCredentials, Runtime, RuntimeKind};

/// How the agent reaches its server and where it works.
#[derive(Clone)]
pub struct AgentConfig {
    /// The server's base URL.
    pub server: String,
    /// The token the server issued for this agent.
    pub token: SecretString,
    /// What this agent offers, such as `build` and `deploy`.
    pub labels: Vec<String>,
    /// Where builds get their working directories.
    pub work_dir: PathBuf,
    /// How long one claim request may wait on the server for work.
    pub claim_wait: Duration,
    /// How this agent deploys; `None` (or no `deploy` label) means it only builds.
    pub deploy: Option<DeployConfig>,
}

impl AgentConfig {
    /// An agent without labels builds, as agents did before deploys existed.
    fn builds(&self) -> bool {
        self.labels.is_empty() || self.labels.iter().any(|label| label == "build")
    }

    fn deploys(&self) -> bool {
        self.deploy.is_some() && self.labels.iter().any(|label| label == "deploy")
    }
}

/// The builds this agent works on, each with the switch that stops it.
type ActiveBuilds = Arc<Mutex<HashMap<i64, watch::Sender<bool>>>>;

/// Runs the agent until `shutdown` turns true.
pub async fn run<R: BuildRunner>(
    config: AgentConfig,
    runner: R,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = ApiClient::new(&config.server, config.token.clone())?;
    remove_leftovers(&config.work_dir).await;
    let Some(settings) = register(&client, &config, &mut shutdown).await? else {
        return Ok(());
    };
    tracing::info!(
        agent = %settings.agent.name,
        server = %config.server,
        registry = settings.registry.as_deref().unwrap_or("none"),
        "agent registered; waiting for builds"
    );
    // The loops stop when the caller says so, or when the server refuses the token.
    let refusal = TokenRefusal::new();
    let mut shutdown = refusal.following(shutdown);
    let active: ActiveBuilds = Arc::new(Mutex::new(HashMap::new()));
    let heartbeats = tokio::spawn(heartbeat_loop(
        client.clone(),
        active.clone(),
        Duration::from_millis(settings.heartbeat_ms),
        refusal.clone(),
        shutdown.clone(),
    ));
    let deploys = match (&config.deploy, config.deploys()) {
        (Some(deploy), true) => Some(tokio::spawn(deploy_loop(
            client.clone(),
            deployer::Deployer::new(
                DeployConfig {
                    runtime: Runtime {
                        // Pulls of what builds pushed speak plain HTTP when the server says so.
                        insecure_registry: deploy.runtime.insecure_registry
                            || settings.registry_insecure,
                        ..deploy.runtime.clone()
                    },
                    // The agent's own login belongs to the registry the server names.
                    registry_credentials: deploy.registry_credentials.clone().map(|own| {
                        if !own.registry.is_empty() {
                            return own;
                        }
                        RegistryCredentials {
                            registry: settings
                                .registry
                                .as_deref()
                                .map(wharf_domain::names::registry_host)
                                .unwrap_or_default()
                                .to_owned(),
                            ..own
                        }
                    }),
                    registry: settings.registry.clone(),
                    ..deploy.clone()
                },
                client.clone(),
                settings.agent.name.clone(),
                config.work_dir.clone(),
                &config.server,
            ),
            config.claim_wait,
            refusal.clone(),
            shutdown.clone(),
        ))),
        _ => None,
    };
    if config.builds() {
        build_loop(
            &client,
            &config,
            &settings,
            runner,
            &active,
            &refusal,
            &mut shutdown,
        )
        .await;
    }
    if let Some(deploys) = deploys {
        let _ = deploys.await;
    }
    heartbeats.abort();
    if let Some(reason) = refusal.reason() {
        anyhow::bail!(
            "the server no longer takes this agent's token ({reason}): it was revoked or \
             replaced; ask the admin for a new one (`wharf agents create`)"
        );
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// The server refusing the agent's token (401: revoked or replaced), which no retry mends:
/// the first loop to meet it records why and stops every loop.
#[derive(Clone)]
struct TokenRefusal {
    stop: Arc<watch::Sender<bool>>,
    reason: Arc<std::sync::OnceLock<String>>,
}

impl TokenRefusal {
    fn new() -> TokenRefusal {
        TokenRefusal {
            stop: Arc::new(watch::channel(false).0),
            reason: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// A stop signal that turns true when `shutdown` does or when the token is refused.
    fn following(&self, mut shutdown: watch::Receiver<bool>) -> watch::Receiver<bool> {
        let stop = self.stop.clone();
        tokio::spawn(async move {
            stopped(&mut shutdown).await;
            let _ = stop.send(true);
        });
        self.stop.subscribe()
    }

    /// True, and every loop told to stop, when `error` is the server refusing the token.
    fn refused(&self, error: &ClientError) -> bool {
        let ClientError::Api {
            status: 401,
            message,
        } = error
        else {
            return false;
        };
        if self.reason.set(message.clone()).is_ok() {
            tracing::error!(%message, "the server refused this agent's token; stopping");
        }
        let _ = self.stop.send(true);
        true
    }

    fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }
}

/// Claims builds and runs them, one at a time, until shutdown.
async fn build_loop<R: BuildRunner>(
    client: &ApiClient,
    config: &AgentConfig,
    settings: &AgentSettings,
    runner: R,
    active: &ActiveBuilds,
    refusal: &TokenRefusal,
    shutdown: &mut watch::Receiver<bool>,
) {
    let mut retry = Retry::new(Duration::from_millis(250));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let request = ClaimBuild {
            wait_ms: config.claim_wait.as_millis() as u64,
            build_timeout_ms: runner.timeout().map(|timeout| timeout.as_millis() as u64),
        };
        let answer = tokio::select! {
            answer = client.send_with_timeout(&request, config.claim_wait + Duration::from_secs(15)) => answer,
            _ = stopped(shutdown) => break,
        };
        match answer {
            Ok(claim) => {
                retry.reset();
                let Some(job) = claim.job else { continue };
                let build_id = job.build.id;
                let (stop_sender, stop) = watch::channel(false);
                lock(active).insert(build_id, stop_sender);
                tracing::info!(build = build_id, service = %job.service.name, commit = %job.build.commit_sha, "build claimed");
                let context = BuildContext {
                    client: client.clone(),
                    stop,
                    work_dir: config.work_dir.clone(),
                    agent_name: settings.agent.name.clone(),
                    registry: settings.registry.clone(),
                    registry_insecure: settings.registry_insecure,
                };
                runner.run(job, context).await;
                lock(active).remove(&build_id);
            }
            Err(error) if refusal.refused(&error) => break,
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = retry.delay_ms(), "claim failed");
                if !retry.wait(shutdown).await {
                    break;
                }
            }
        }
    }
}

/// Makes the host run its live releases, then claims rollouts and runs them one at a time
/// (two releases never roll out on one host at once) until shutdown; then leaves the edge
/// running for the next agent.
async fn deploy_loop(
    client: ApiClient,
    deployer: deployer::Deployer,
    claim_wait: Duration,
    refusal: TokenRefusal,
    mut shutdown: watch::Receiver<bool>,
) {
    if converge(&client, &deployer, &refusal, &mut shutdown).await {
        run_rollouts(&client, &deployer, claim_wait, &refusal, &mut shutdown).await;
    }
    deployer.shutdown().await;
}

async fn run_rollouts(
    client: &ApiClient,
    deployer: &deployer::Deployer,
    claim_wait: Duration,
    refusal: &TokenRefusal,
    shutdown: &mut watch::Receiver<bool>,
) {
    let mut retry = Retry::new(Duration::from_millis(250));
    loop {
        let request = ClaimRollout {
            wait_ms: claim_wait.as_millis() as u64,
        };
        let answer = tokio::select! {
            answer = client.send_with_timeout(&request, claim_wait + Duration::from_secs(15)) => answer,
            _ = stopped(shutdown) => break,
        };
        match answer {
            Ok(claim) => {
                retry.reset();
                let Some(job) = claim.job else { continue };
                let finished = deployer.run(job).await;
                match deliver(client, &finished.report, shutdown).await {
                    Delivery::Taken => deployer.commit(finished).await,
                    Delivery::Refused => {
                        deployer.undo(finished).await;
                        if !converge(client, deployer, refusal, shutdown).await {
                            break;
                        }
                    }
                    // A restarted agent starts the rollout over, or runs what is live.
                    Delivery::Stopped => break,
                }
            }
            Err(error) if refusal.refused(&error) => break,
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = retry.delay_ms(), "rollout claim failed");
                if !retry.wait(shutdown).await {
                    break;
                }
            }
        }
    }
}

/// Makes the host run what the server says is live on it, retrying while the server is
/// unreachable; false when the agent stops first.
async fn converge(
    client: &ApiClient,
    deployer: &deployer::Deployer,
    refusal: &TokenRefusal,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut retry = Retry::new(Duration::from_millis(250));
    loop {
        let answer = tokio::select! {
            answer = client.send(&DesiredState {}) => answer,
            _ = stopped(shutdown) => return false,
        };
        match answer {
            Ok(desired) => {
                deployer.reconcile(desired).await;
                return true;
            }
            Err(error) if refusal.refused(&error) => return false,
            Err(error) => {
                tracing::warn!(%error, "cannot read what this host should run; retrying");
                if !retry.wait(shutdown).await {
                    return false;
                }
            }
        }
    }
}

/// The pause before the next try of a request the server did not answer: doubling from its
/// first length up to 15 s, cut short when the agent stops.
struct Retry {
    first: Duration,
    delay: Duration,
}

impl Retry {
    const MAX: Duration = Duration::from_secs(15);

    fn new(first: Duration) -> Retry {
        Retry {
            first,
            delay: first,
        }
    }

    /// Back to the first length, after an answer.
    fn reset(&mut self) {
        self.delay = self.first;
    }

    fn delay_ms(&self) -> u64 {
        self.delay.as_millis() as u64
    }

    /// Waits before the next try; false when the agent stops first.
    async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let waited = tokio::select! {
            _ = tokio::time::sleep(self.delay) => true,
            _ = stopped(shutdown) => false,
        };
        self.delay = (self.delay * 2).min(Retry::MAX);
        waited
    }
}

/// What became of a rollout's final report.
enum Delivery {
    Taken,
    /// The server no longer has the rollout in progress (it gave up on this agent, or the
    /// rollout is gone).
    Refused,
    /// The agent stopped before the server could be reached.
    Stopped,
}

/// Delivers a rollout's final report, retrying while the server is unreachable: what the
/// host does next (retire the previous version, or bring it back) waits on the answer.
async fn deliver(
    client: &ApiClient,
    report: &ReportRollout,
    shutdown: &mut watch::Receiver<bool>,
) -> Delivery {
    let mut retry = Retry::new(Duration::from_millis(200));
    loop {
        let answer = tokio::select! {
            answer = client.send(report) => answer,
            _ = stopped(shutdown) => return Delivery::Stopped,
        };
        match answer {
            Ok(_) => return Delivery::Taken,
            Err(error) if is_refusal(error.status()) => {
                tracing::warn!(rollout = report.id, %error, "the server refused the rollout's outcome");
                return Delivery::Refused;
            }
            Err(error) => {
                tracing::warn!(rollout = report.id, %error, retry_in_ms = retry.delay_ms(), "cannot report the rollout's outcome; retrying");
                if !retry.wait(shutdown).await {
                    return Delivery::Stopped;
                }
            }
        }
    }
}

/// Whether an answer (its status; `None` when the server was not reached) says the server will
/// not take a request, however often it is sent: it gave up on the rollout, or the rollout is
/// gone. Being out of reach, busy or failing is worth a retry.
fn is_refusal(status: Option<u16>) -> bool {
    status.is_some_and(|status| (400..500).contains(&status) && status != 408 && status != 429)
}

/// Registers, retrying while the server is unreachable; a refused token ends the agent.
async fn register(
    client: &ApiClient,
    config: &AgentConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<AgentSettings>> {
    let request = RegisterAgent {
        labels: config.labels.clone(),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        hostname: std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|name| name.trim().to_owned()),
        protocol: wharf_wire::protocol::AGENT_PROTOCOL,
    };
    let mut retry = Retry::new(Duration::from_millis(200));
    loop {
        match client.send(&request).await {
            Ok(settings) => {
                wharf_wire::protocol::check_server_protocol(
                    settings.protocol,
                    settings.server_version.as_deref(),
                    env!("CARGO_PKG_VERSION"),
                )
                .map_err(anyhow::Error::msg)?;
                return Ok(Some(settings));
            }
            Err(error @ ClientError::Api { status: 401, .. }) => {
                anyhow::bail!("the server refused this agent's token: {error}")
            }
            Err(ClientError::Api {
                status: 426,
                message,
            }) => anyhow::bail!("the server refused this agent's version: {message}"),
            // A label the token does not allow (`WHARF_LABELS`): asking again changes nothing.
            Err(error @ ClientError::Api { status: 403, .. }) => {
                anyhow::bail!("the server refused this agent's labels: {error}")
            }
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = retry.delay_ms(), "cannot register yet");
                if !retry.wait(shutdown).await {
                    return Ok(None);
                }
            }
        }
    }
}

async fn heartbeat_loop(
    client: ApiClient,
    active: ActiveBuilds,
    every: Duration,
    refusal: TokenRefusal,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped(&mut shutdown) => return,
        }
        let builds: Vec<i64> = lock(&active).keys().copied().collect();
        match client.send(&Heartbeat { builds }).await {
            Ok(answer) => {
                let active = lock(&active);
                for id in answer.stop {
                    if let Some(stop) = active.get(&id) {
                        tracing::info!(build = id, "the server asks to stop this build");
                        let _ = stop.send(true);
                    }
                }
            }
            Err(error) if refusal.refused(&error) => return,
            Err(error) => tracing::warn!(%error, "heartbeat failed"),
        }
    }
}

fn lock(active: &ActiveBuilds) -> std::sync::MutexGuard<'_, HashMap<i64, watch::Sender<bool>>> {
    active
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Removes the work directories a previous run of this agent left behind (it was killed
/// mid-build): a starting agent holds no builds, so none of them is in use.
async fn remove_leftovers(work_dir: &std::path::Path) {
    let Ok(mut entries) = tokio::fs::read_dir(work_dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("build-") {
            // The build's processes may have outlived the agent that started them.
            let cgroup = tokio::fs::read_to_string(entry.path().join(builder::CGROUP_FILE))
                .await
                .unwrap_or_default();
            if wharf_runtime::cgroup::is_build_cgroup(cgroup.trim()) {
                wharf_runtime::cgroup::kill_and_remove(
                    cgroup.trim(),
                    std::time::Duration::from_secs(10),
                )
                .await;
            }
            tracing::info!(path = %entry.path().display(), "removing a leftover work directory");
            if let Err(error) = tokio::fs::remove_dir_all(entry.path()).await {
                tracing::warn!(%error, "could not remove a leftover work directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_server_that_answered_no_refuses_a_rollouts_outcome() {
        for refused in [400, 401, 404, 409, 422] {
            assert!(is_refusal(Some(refused)), "{refused}");
        }
        for retried in [None, Some(408), Some(429), Some(500), Some(502), Some(503)] {
            assert!(!is_refusal(retried), "{retried:?}");
        }
    }
}
