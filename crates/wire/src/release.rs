//! Releases: what a service should run, and how each host rolls it out.

use serde::{Deserialize, Serialize};

use crate::api::api_request;
use crate::{RegistryLogin, SecretText, VariableMembers};

/// How a service is deployed; kept on the service and copied onto each release.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DeploySettings {
    /// The environment releases go to (and GitHub deployments name).
    #[serde(default = "default_environment")]
    pub environment: String,
    /// Whether GitHub shows the environment as production; by default when it is named
    /// `production`.
    #[serde(default)]
    pub production_environment: Option<bool>,
    /// A completed build of the tracked branch becomes a release by itself.
    #[serde(default = "yes")]
    pub auto_deploy: bool,
    /// `None` chooses by the service: blue-green with a port, recreate without. A compose
    /// service's stack always recreates.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Agent names, or `label:NAME` for every agent with that label. Empty means the agent
    /// named `local` (the one `wharf up` runs).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Containers per host (a compose service's stack runs one per compose service).
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default)]
    pub health: HealthSettings,
    /// How long the old version keeps its in-flight requests after traffic moved away.
    #[serde(default = "default_drain_ms")]
    pub drain_ms: u64,
    /// Images kept on each host for rollback besides the live one.
    #[serde(default = "default_keep_images")]
    pub keep_images: u32,
    /// What a compose file may ask for on the host: `privileged`, `cap_add`, `host_bind`,
    /// `socket`, `host_network`, `host_pid`, `publish` (ports beyond the host's loopback).
    #[serde(default)]
    pub compose_allow: Vec<String>,
    /// More host names routed to the service besides its `domain` (which GitHub shows).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Preview environments of the service's pull requests.
    #[serde(default)]
    pub previews: crate::PreviewSettings,
}

/// The agent a service runs on when it names no hosts: the one `wharf up` runs.
pub const DEFAULT_HOST: &str = "local";

/// The environment a service releases to unless its settings name another.
pub const DEFAULT_ENVIRONMENT: &str = "production";

pub(crate) fn default_environment() -> String {
    DEFAULT_ENVIRONMENT.to_owned()
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn default_drain_ms() -> u64 {
    10_000
}
fn default_keep_images() -> u32 {
    3
}

impl Default for DeploySettings {
    fn default() -> DeploySettings {
        DeploySettings {
            environment: default_environment(),
            production_environment: None,
            auto_deploy: true,
            strategy: None,
            hosts: Vec::new(),
            replicas: 1,
            health: HealthSettings::default(),
            drain_ms: default_drain_ms(),
            keep_images: default_keep_images(),
            compose_allow: Vec::new(),
            aliases: Vec::new(),
            previews: crate::PreviewSettings::default(),
        }
    }
}

impl DeploySettings {
    /// Whether GitHub should treat the environment as production.
    pub fn is_production(&self) -> bool {
        self.production_environment
            .unwrap_or(self.environment == "production")
    }

    /// The strategy a service with or without a port gets.
    pub fn strategy_for(&self, port: Option<u16>) -> Strategy {
        self.strategy.unwrap_or(match port {
            Some(_) => Strategy::BlueGreen,
            None => Strategy::Recreate,
        })
    }
}

/// How a new version replaces the running one.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Start the new beside the old, health-check it, move traffic, drain and stop the old.
    BlueGreen,
    /// Stop the old, start the new, health-check it; start the old again when it fails.
    Recreate,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::BlueGreen => "blue-green",
            Strategy::Recreate => "recreate",
        }
    }

    pub fn parse(name: &str) -> Option<Strategy> {
        [Strategy::BlueGreen, Strategy::Recreate]
            .into_iter()
            .find(|strategy| strategy.as_str() == name)
    }
}

/// When a new version counts as healthy. The probe is the image's own `HEALTHCHECK` when it
/// has one, else an HTTP GET of the service's health path (default `/`) on its port. A service
/// with neither a port nor a `HEALTHCHECK` is healthy once it has kept running for the start
/// period (at least one interval).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct HealthSettings {
    /// The HTTP status the probe expects.
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// One probe's time limit.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Failed probes in a row (after the start period) that make the version unhealthy;
    /// 0 keeps probing until the deadline.
    #[serde(default)]
    pub retries: u32,
    /// Failures during this time after the start do not count.
    #[serde(default)]
    pub start_period_ms: u64,
    /// The version is unhealthy when it has not passed a probe by then.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
}

fn default_status() -> u16 {
    200
}
fn default_interval_ms() -> u64 {
    1_000
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_deadline_ms() -> u64 {
    30_000
}

impl Default for HealthSettings {
    fn default() -> HealthSettings {
        HealthSettings {
            status: default_status(),
            interval_ms: default_interval_ms(),
            timeout_ms: default_timeout_ms(),
            retries: 0,
            start_period_ms: 0,
            deadline_ms: default_deadline_ms(),
        }
    }
}

/// Where a release stands, on one host (a rollout) or as a whole.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    Pending,
    Pulling,
    Starting,
    HealthChecking,
    Live,
    /// The pull failed; the running version was not touched.
    Failed,
    /// The new version was unhealthy; the old one kept serving or was restored.
    RolledBack,
    /// A newer release replaced it, before or after it went live.
    Superseded,
    /// A teardown: everything of the environment is gone from the host.
    Removed,
}

impl ReleaseState {
    pub const ALL: [ReleaseState; 9] = [
        ReleaseState::Pending,
        ReleaseState::Pulling,
        ReleaseState::Starting,
        ReleaseState::HealthChecking,
        ReleaseState::Live,
        ReleaseState::Failed,
        ReleaseState::RolledBack,
        ReleaseState::Superseded,
        ReleaseState::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Pending => "pending",
            ReleaseState::Pulling => "pulling",
            ReleaseState::Starting => "starting",
            ReleaseState::HealthChecking => "health_checking",
            ReleaseState::Live => "live",
            ReleaseState::Failed => "failed",
            ReleaseState::RolledBack => "rolled_back",
            ReleaseState::Superseded => "superseded",
            ReleaseState::Removed => "removed",
        }
    }

    pub fn parse(name: &str) -> Option<ReleaseState> {
        ReleaseState::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
    }

    /// True while an agent works on it.
    pub fn is_rolling_out(self) -> bool {
        matches!(
            self,
            ReleaseState::Pulling | ReleaseState::Starting | ReleaseState::HealthChecking
        )
    }

    /// True once the rollout is over (a live release can still be superseded later).
    pub fn is_settled(self) -> bool {
        !matches!(self, ReleaseState::Pending) && !self.is_rolling_out()
    }
}

impl std::fmt::Display for ReleaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What made a release.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReleaseTrigger {
    /// A completed build of a service with auto-deploy on.
    Build,
    /// `wharf deploy`.
    Manual,
    /// `wharf rollback`.
    Rollback,
    /// The CI deploy hook, `POST /deploy`.
    Hook,
    /// The environment's removal from its hosts (a preview whose pull request closed): its
    /// rollouts remove containers, route, networks, volumes and images instead of starting
    /// anything.
    Teardown,
    /// The environment stopped on its hosts to keep within a limit (a preview past its
    /// service's preview limit): like a teardown, but its named volumes stay for its return.
    Stop,
}

impl ReleaseTrigger {
    /// Whether the release takes its environment off its hosts rather than running an image.
    pub fn takes_down(self) -> bool {
        matches!(self, ReleaseTrigger::Teardown | ReleaseTrigger::Stop)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseTrigger::Build => "build",
            ReleaseTrigger::Manual => "manual",
            ReleaseTrigger::Rollback => "rollback",
            ReleaseTrigger::Hook => "hook",
            ReleaseTrigger::Teardown => "teardown",
            ReleaseTrigger::Stop => "stop",
        }
    }

    pub fn parse(name: &str) -> Option<ReleaseTrigger> {
        [
            ReleaseTrigger::Build,
            ReleaseTrigger::Manual,
            ReleaseTrigger::Rollback,
            ReleaseTrigger::Hook,
            ReleaseTrigger::Teardown,
            ReleaseTrigger::Stop,
        ]
        .into_iter()
        .find(|trigger| trigger.as_str() == name)
    }
}

/// A version of a service for its environment: an image and the settings to run it with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Release {
    pub id: i64,
    pub service: String,
    pub service_id: i64,
    pub environment: String,
    /// The build it came from, when it came from one.
    pub build_id: Option<i64>,
    /// The image reference hosts pull (by digest when known); for a compose build, each
    /// compose service's as `name=image`, separated by spaces.
    pub image: String,
    pub trigger: ReleaseTrigger,
    pub state: ReleaseState,
    /// Why it ended as it did (failed, rolled back), in one line.
    pub reason: Option<String>,
    /// The release this one rolls back to, for `wharf rollback`.
    pub rollback_of: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    /// The release on each of its hosts.
    #[serde(default)]
    pub rollouts: Vec<Rollout>,
}

/// One release on one host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Rollout {
    pub id: i64,
    pub release_id: i64,
    pub agent: String,
    pub state: ReleaseState,
    pub reason: Option<String>,
    /// The last health probes, oldest first.
    #[serde(default)]
    pub probes: Vec<ProbeResult>,
    /// The new container's last log lines, kept when it was unhealthy.
    #[serde(default)]
    pub log_tail: Vec<String>,
    pub updated_at: String,
    /// While it rolls out: when it must be over (the service's health deadline and time for the
    /// pull); past it the rollout is stuck.
    #[serde(default)]
    pub deadline_at: Option<String>,
}

/// One health probe.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ProbeResult {
    /// Milliseconds since the container started.
    pub after_ms: u64,
    pub healthy: bool,
    /// `HTTP 200`, `connection refused`, `exit 1`, …
    pub detail: String,
}

/// `GET /v1/services/{name}/releases`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ListReleases {
    #[serde(skip)]
    pub service: String,
}

api_request!(ListReleases: Get "/v1/services/{}/releases" [service] -> Vec<Release>);

/// `GET /v1/releases/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ShowRelease {
    #[serde(skip)]
    pub id: i64,
}

api_request!(ShowRelease: Get "/v1/releases/{}" [id] -> Release);

/// `POST /v1/services/{name}/deploy`: a release without a rebuild, of the service's latest
/// completed build, of a given build, or of a given image.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DeployService {
    #[serde(skip)]
    pub service: String,
    #[serde(default)]
    pub build: Option<i64>,
    #[serde(default)]
    pub image: Option<String>,
}

api_request!(DeployService: Post "/v1/services/{}/deploy" [service] -> Release);

/// `POST /v1/services/{name}/rollback`: a release of an earlier release's image, by default
/// the one live before the current one.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RollbackService {
    #[serde(skip)]
    pub service: String,
    #[serde(default)]
    pub to: Option<i64>,
}

api_request!(RollbackService: Post "/v1/services/{}/rollback" [service] -> Release);

/// `POST /v1/services/{name}/deploy-secret`: makes a new secret for the CI deploy hook and
/// shows it once.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RotateDeploySecret {
    #[serde(skip)]
    pub service: String,
}

/// The answer to [`RotateDeploySecret`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DeploySecret {
    pub secret: SecretText,
}

api_request!(RotateDeploySecret: Post "/v1/services/{}/deploy-secret" [service] -> DeploySecret);

/// The body of `POST /deploy`, the CI deploy hook.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DeployHook {
    pub service: String,
    #[serde(default)]
    pub image: Option<String>,
    /// Means `{registry}/{project}/{service}:{image_sha}`.
    #[serde(default)]
    pub image_sha: Option<String>,
}

/// The answer of `POST /deploy`, whatever the outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DeployHookAnswer {
    pub release: i64,
    pub state: ReleaseState,
    pub reason: Option<String>,
    pub log_url: String,
}

/// A runtime variable with its value, as an agent receives it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct EnvVarValue {
    pub name: String,
    pub value: SecretText,
    /// Whether the value is a secret, which the agent masks in what it reports; servers that
    /// did not say are taken to mean every value is.
    #[serde(default = "secret_by_default")]
    pub secret: bool,
}

fn secret_by_default() -> bool {
    true
}

/// A runtime variable for some members of a compose stack only, with its value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ScopedEnvVarValue {
    pub name: String,
    pub value: SecretText,
    /// The members that receive it: `routed`, or names; never `all` (those are in `env`).
    pub members: VariableMembers,
    /// Whether the value is a secret, masked in what the agent reports (see [`EnvVarValue`]).
    #[serde(default = "secret_by_default")]
    pub secret: bool,
}

/// `POST /v1/agent/rollouts/claim`: waits up to `wait_ms` for a rollout for this host.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ClaimRollout {
    pub wait_ms: u64,
}

api_request!(ClaimRollout: Post "/v1/agent/rollouts/claim" -> RolloutClaim);

/// The answer to [`ClaimRollout`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RolloutClaim {
    pub job: Option<RolloutJob>,
}

/// Everything an agent needs to run one release on its host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RolloutJob {
    pub rollout_id: i64,
    pub release_id: i64,
    pub service: String,
    /// The environment the release is for: with the service, the deploy identity every name
    /// on the host derives from. Servers before environments were named sent none.
    #[serde(default = "default_environment")]
    pub environment: String,
    pub project: String,
    pub image: String,
    pub port: Option<u16>,
    /// Host names the edge routes to the service.
    pub domains: Vec<String>,
    pub health_path: Option<String>,
    pub settings: DeploySettings,
    /// The service's runtime variables for every container it runs, secrets opened for the
    /// agent: all of them for a single-image service, those for all members for a stack.
    pub env: Vec<EnvVarValue>,
    /// A compose stack's variables for some of its members only. They are apart from `env` so
    /// that an agent from before members were named, which reads only `env`, gives them to no
    /// member rather than to every one.
    #[serde(default)]
    pub scoped_env: Vec<ScopedEnvVarValue>,
    pub registry_login: Option<RegistryLogin>,
    /// The compose file of a compose release; the agent runs it with `compose_images`.
    #[serde(default)]
    pub compose_file: Option<String>,
    /// Compose service → image, for a compose release.
    #[serde(default)]
    pub compose_images: Vec<(String, String)>,
    /// The rollout removes the environment from the host (its containers, route, network,
    /// volumes) instead of running `image`, and reports `removed`.
    #[serde(default)]
    pub teardown: bool,
    /// For a teardown: the images the environment ran that no other release still uses, to
    /// remove from the host.
    #[serde(default)]
    pub remove_images: Vec<String>,
    /// For a teardown that only stops the environment: its named volumes stay.
    #[serde(default)]
    pub keep_volumes: bool,
}

/// `GET /v1/agent/desired`: what this host should run now.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DesiredState {}

/// What a host should run: its live releases, and the releases still to roll out there, whose
/// containers (left by an interrupted attempt) the rollout takes up or removes itself.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Desired {
    /// One job per live release.
    pub live: Vec<RolloutJob>,
    /// Releases pending or rolling out on this host.
    #[serde(default)]
    pub rolling_out: Vec<i64>,
}

api_request!(DesiredState: Get "/v1/agent/desired" -> Desired);

/// `POST /v1/agent/rollouts/{id}/state`: the agent reports progress or the outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ReportRollout {
    #[serde(skip)]
    pub id: i64,
    pub state: ReleaseState,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub probes: Vec<ProbeResult>,
    #[serde(default)]
    pub log_tail: Vec<String>,
}

impl ReportRollout {
    pub fn new(id: i64, state: ReleaseState) -> ReportRollout {
        ReportRollout {
            id,
            state,
            reason: None,
            probes: Vec::new(),
            log_tail: Vec::new(),
        }
    }
}

api_request!(ReportRollout: Post "/v1/agent/rollouts/{}/state" [id] -> Rollout);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_state_names_round_trip() {
        for state in ReleaseState::ALL {
            assert_eq!(ReleaseState::parse(state.as_str()), Some(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
    }

    #[test]
    fn empty_settings_take_the_documented_defaults() {
        let settings: DeploySettings = serde_json::from_str("{}").unwrap();
        assert_eq!(settings, DeploySettings::default());
        assert_eq!(settings.health.interval_ms, 1_000);
        assert_eq!(settings.health.timeout_ms, 5_000);
        assert_eq!(settings.health.deadline_ms, 30_000);
        assert_eq!(settings.drain_ms, 10_000);
        assert!(settings.is_production());
        assert_eq!(settings.strategy_for(Some(8080)), Strategy::BlueGreen);
        assert_eq!(settings.strategy_for(None), Strategy::Recreate);
    }
}
