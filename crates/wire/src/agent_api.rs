//! What agents ask the server: registering, claiming builds with everything a build needs,
//! heartbeats, state reports and clone credentials. (Log lines are in `logs`, rollouts in
//! `release`.)

use serde::{Deserialize, Serialize};

use crate::api::api_request;
use crate::{
    Agent, Build, BuildState, BuiltImage, RegistryLogin, SecretText, Service, StepFailure,
};

/// `POST /v1/agent/register`: an agent announces itself with its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RegisterAgent {
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// The agent protocol the agent speaks ([`crate::protocol`]); agents from before versions
    /// were exchanged send none and speak version 1.
    #[serde(default = "crate::protocol::unversioned_protocol")]
    pub protocol: u32,
}

api_request!(RegisterAgent: Post "/v1/agent/register" -> AgentSettings);

/// What the server tells a registering agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AgentSettings {
    pub agent: Agent,
    /// How long a claim's lease lasts without a heartbeat.
    pub lease_ms: u64,
    /// How often the agent should heartbeat (well inside the lease).
    pub heartbeat_ms: u64,
    /// The agent protocol the server speaks ([`crate::protocol`]).
    #[serde(default = "crate::protocol::unversioned_protocol")]
    pub protocol: u32,
    /// The server's Wharf version, for messages about versions.
    #[serde(default)]
    pub server_version: Option<String>,
    /// The registry builds push to, `{registry}/{project}/{service}[/{component}]:{commit}`
    /// (`WHARF_REGISTRY` on the server). `None` from a server that has none, whose builds fail,
    /// and from servers before the registry was the server's setting.
    #[serde(default)]
    pub registry: Option<String>,
    /// Talk plain HTTP to that registry (a registry on the host or a private network).
    #[serde(default)]
    pub registry_insecure: bool,
}

/// `POST /v1/agent/claim`: long-polls for a build to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ClaimBuild {
    /// How long the server may hold the request open when no build waits (capped by the server).
    pub wait_ms: u64,
    /// The agent's build timeout: the server reports a build still running past it (and a
    /// lease's grace) as stuck. Absent from agents that predate it.
    #[serde(default)]
    pub build_timeout_ms: Option<u64>,
}

api_request!(ClaimBuild: Post "/v1/agent/claim" -> Claim);

/// The answer to [`ClaimBuild`]: a job, or none when the wait ran out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Claim {
    pub job: Option<BuildJob>,
}

/// Everything an agent needs to run one build.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct BuildJob {
    pub build: Build,
    pub service: Service,
    /// Where to fetch a public repository from; `None` when the repository is reached through
    /// the GitHub App, whose clone URL and short-lived token come from [`CloneCredentials`].
    pub clone_url: Option<String>,
    pub lease_expires_at: String,
    /// The service's build-time variables that are not secret, passed as build arguments.
    #[serde(default)]
    pub build_args: Vec<BuildArg>,
    /// The service's build-time secrets, passed as build secrets (never as arguments or layers).
    #[serde(default)]
    pub build_secrets: Vec<BuildSecret>,
    /// Registry credentials of the build's installation, which take the place of the agent's own.
    #[serde(default)]
    pub registry_login: Option<RegistryLogin>,
}

/// A build argument.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct BuildArg {
    pub name: String,
    pub value: String,
}

/// A build secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct BuildSecret {
    pub name: String,
    pub value: SecretText,
}

/// `POST /v1/agent/heartbeat`: keeps the agent and the leases of its builds alive.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Heartbeat {
    /// The builds the agent is working on.
    #[serde(default)]
    pub builds: Vec<i64>,
}

api_request!(Heartbeat: Post "/v1/agent/heartbeat" -> HeartbeatAnswer);

/// The answer to [`Heartbeat`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct HeartbeatAnswer {
    /// Builds the agent must stop: cancelled, or no longer leased to it.
    pub stop: Vec<i64>,
}

/// `POST /v1/agent/builds/{id}/state`: the leasing agent reports progress or the outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ReportBuildState {
    #[serde(skip)]
    pub id: i64,
    pub state: BuildState,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub failure: Option<StepFailure>,
    #[serde(default)]
    pub images: Vec<BuiltImage>,
    #[serde(default)]
    pub compose_file: Option<String>,
}

impl ReportBuildState {
    /// A report of `state` alone; set the other fields with struct update syntax.
    pub fn new(id: i64, state: BuildState) -> ReportBuildState {
        ReportBuildState {
            id,
            state,
            reason: None,
            image: None,
            digest: None,
            failure: None,
            images: Vec::new(),
            compose_file: None,
        }
    }
}

api_request!(ReportBuildState: Post "/v1/agent/builds/{}/state" [id] -> Build);

/// `POST /v1/agent/builds/{id}/clone-credentials`: what the leasing agent needs to fetch the
/// commit of a repository reached through the GitHub App.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct GetCloneCredentials {
    #[serde(skip)]
    pub id: i64,
}

api_request!(
    GetCloneCredentials: Post "/v1/agent/builds/{}/clone-credentials" [id] -> CloneCredentials
);

/// A clone URL and the installation token that opens it. The token is short-lived; the agent
/// passes it to git through the environment and never writes it anywhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct CloneCredentials {
    pub clone_url: String,
    pub token: Option<SecretText>,
    /// When the token stops working (RFC 3339).
    pub expires_at: Option<String>,
}
