//! The JSON shapes that Wharf's server, agents and CLI exchange over HTTP.
//!
//! Architecture invariant: this crate does no I/O and knows nothing about storage or HTTP
//! frameworks. Every request type names its response type through [`ApiRequest`], so a client
//! sends any of them through one generic function and the compiler checks the pairing.

mod release;

pub use release::*;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A request to the server's REST API: its method, its path and the type it answers with.
pub trait ApiRequest: Serialize {
    /// What the server answers on success.
    type Response: DeserializeOwned;
    /// The HTTP method.
    const METHOD: Method;
    /// The path below the server's base URL, starting with `/`.
    fn path(&self) -> String;
}

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// The body of every error answer: one human-readable line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    pub error: String,
}

/// Where a build stands. The allowed moves between states live in `wharf-domain`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum BuildState {
    Pending,
    Claimed,
    Cloning,
    Building,
    Pushing,
    Completed,
    Failed,
    Cancelled,
}

impl BuildState {
    /// Every state, in the order a build passes through them.
    pub const ALL: [BuildState; 8] = [
        BuildState::Pending,
        BuildState::Claimed,
        BuildState::Cloning,
        BuildState::Building,
        BuildState::Pushing,
        BuildState::Completed,
        BuildState::Failed,
        BuildState::Cancelled,
    ];

    /// The name used in the API, the database and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Pending => "pending",
            BuildState::Claimed => "claimed",
            BuildState::Cloning => "cloning",
            BuildState::Building => "building",
            BuildState::Pushing => "pushing",
            BuildState::Completed => "completed",
            BuildState::Failed => "failed",
            BuildState::Cancelled => "cancelled",
        }
    }

    /// Parses the name that [`BuildState::as_str`] gives.
    pub fn parse(name: &str) -> Option<BuildState> {
        BuildState::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
    }

    /// True once nothing more will happen to the build.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            BuildState::Completed | BuildState::Failed | BuildState::Cancelled
        )
    }

    /// True while an agent holds the build under a lease.
    pub fn is_leased(self) -> bool {
        matches!(
            self,
            BuildState::Claimed | BuildState::Cloning | BuildState::Building | BuildState::Pushing
        )
    }
}

impl std::fmt::Display for BuildState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What caused a build.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BuildTrigger {
    /// A push to the service's tracked branch, delivered by a GitHub webhook.
    Push,
    /// `wharf build trigger` or its API.
    Manual,
    /// `wharf build retry` of an earlier build.
    Retry,
}

impl BuildTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildTrigger::Push => "push",
            BuildTrigger::Manual => "manual",
            BuildTrigger::Retry => "retry",
        }
    }

    pub fn parse(name: &str) -> Option<BuildTrigger> {
        [
            BuildTrigger::Push,
            BuildTrigger::Manual,
            BuildTrigger::Retry,
        ]
        .into_iter()
        .find(|trigger| trigger.as_str() == name)
    }
}

/// A service: one deployable thing built from one repository and branch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Service {
    pub id: i64,
    pub name: String,
    pub project: String,
    /// `owner/name` for a repository reached through the GitHub App, or an `https://` URL of a public one.
    pub repo: String,
    pub branch: String,
    pub dockerfile: Option<String>,
    pub context: Option<String>,
    pub compose: Option<String>,
    pub port: Option<u16>,
    pub health_path: Option<String>,
    pub domain: Option<String>,
    /// A newer push cancels running builds too, not only pending ones.
    #[serde(default)]
    pub cancel_running: bool,
    /// How releases of the service are deployed.
    #[serde(default)]
    pub deploy: DeploySettings,
    pub created_at: String,
}

impl Service {
    /// The host names the edge routes to the service: its domain, then its aliases.
    pub fn host_names(&self) -> impl Iterator<Item = &str> {
        self.domain
            .iter()
            .chain(&self.deploy.aliases)
            .map(String::as_str)
    }
}

/// `POST /v1/services`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct CreateService {
    pub name: String,
    /// Defaults to `default`.
    #[serde(default)]
    pub project: Option<String>,
    pub repo: String,
    pub branch: String,
    #[serde(default)]
    pub dockerfile: Option<String>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub compose: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub health_path: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub cancel_running: bool,
    /// Deploy settings; the defaults of [`DeploySettings`] when absent.
    #[serde(default)]
    pub deploy: Option<DeploySettings>,
}

impl ApiRequest for CreateService {
    type Response = Service;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/services".to_owned()
    }
}

/// `GET /v1/services/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShowService {
    #[serde(skip)]
    pub name: String,
}

impl ApiRequest for ShowService {
    type Response = Service;
    const METHOD: Method = Method::Get;
    fn path(&self) -> String {
        format!("/v1/services/{}", url_component(&self.name))
    }
}

/// `PUT /v1/services/{name}`: replaces a service's settings (all of them: read, change, put).
/// The name and project stay; a change applies from the next build and the next release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateService {
    #[serde(flatten)]
    pub service: CreateService,
}

impl ApiRequest for UpdateService {
    type Response = Service;
    const METHOD: Method = Method::Put;
    fn path(&self) -> String {
        format!("/v1/services/{}", url_component(&self.service.name))
    }
}

/// `GET /v1/services`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ListServices {}

impl ApiRequest for ListServices {
    type Response = Vec<Service>;
    const METHOD: Method = Method::Get;
    fn path(&self) -> String {
        "/v1/services".to_owned()
    }
}

/// A build of one commit of one service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Build {
    pub id: i64,
    pub service: String,
    pub service_id: i64,
    /// The environment the build is for: the service's own, or one of its previews.
    #[serde(default = "release::default_environment")]
    pub environment: String,
    pub commit_sha: String,
    /// The branch the commit came from, when known.
    pub branch: Option<String>,
    pub trigger: BuildTrigger,
    pub state: BuildState,
    /// Why the build ended as it did (failed, cancelled), in one line.
    pub reason: Option<String>,
    /// How many times an agent has claimed it.
    pub attempt: i64,
    pub max_attempts: i64,
    /// The name of the agent holding it, while one does.
    pub agent: Option<String>,
    pub delivery_id: Option<String>,
    pub retry_of: Option<i64>,
    /// The GitHub App installation whose token clones the repository, when it needs one.
    #[serde(default)]
    pub installation_id: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    pub claimed_at: Option<String>,
    pub finished_at: Option<String>,
    /// The image pushed, `{registry}/{project}/{service}:{commit}`, once pushed.
    #[serde(default)]
    pub image: Option<String>,
    /// The pushed image's digest (`sha256:…`).
    #[serde(default)]
    pub digest: Option<String>,
    /// The step that failed, when one did.
    #[serde(default)]
    pub failure: Option<StepFailure>,
    /// True when the stored log was cut at its size limit.
    #[serde(default)]
    pub log_truncated: bool,
    /// Every image the build pushed: one, or one per compose service.
    #[serde(default)]
    pub images: Vec<BuiltImage>,
    /// The compose file a compose build read, kept for its deploy.
    #[serde(default)]
    pub compose_file: Option<String>,
}

/// An image a build pushed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuiltImage {
    /// The compose service it is for; `None` for a service built from one Dockerfile.
    #[serde(default)]
    pub component: Option<String>,
    /// `{registry}/{project}/{service}[/{component}]:{commit}`.
    pub image: String,
    pub digest: String,
}

/// The step of a build that failed, with the command, its exit code and its last output lines.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepFailure {
    /// `clone`, `build`, `push`, …
    pub step: String,
    /// The command as run (secrets are never part of a command line).
    pub command: Option<String>,
    pub exit_code: Option<i32>,
    /// The last lines of its output, secrets masked.
    pub output_tail: Vec<String>,
}

/// `GET /v1/builds[?service=NAME]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ListBuilds {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl ApiRequest for ListBuilds {
    type Response = Vec<Build>;
    const METHOD: Method = Method::Get;
    fn path(&self) -> String {
        match &self.service {
            Some(service) => format!("/v1/builds?service={}", url_component(service)),
            None => "/v1/builds".to_owned(),
        }
    }
}

/// `GET /v1/builds/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShowBuild {
    #[serde(skip)]
    pub id: i64,
}

impl ApiRequest for ShowBuild {
    type Response = Build;
    const METHOD: Method = Method::Get;
    fn path(&self) -> String {
        format!("/v1/builds/{}", self.id)
    }
}

/// `POST /v1/builds/{id}/cancel`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CancelBuild {
    #[serde(skip)]
    pub id: i64,
}

impl ApiRequest for CancelBuild {
    type Response = Build;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        format!("/v1/builds/{}/cancel", self.id)
    }
}

/// `POST /v1/builds/{id}/retry`: queues a new build of the same commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetryBuild {
    #[serde(skip)]
    pub id: i64,
}

impl ApiRequest for RetryBuild {
    type Response = Build;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        format!("/v1/builds/{}/retry", self.id)
    }
}

/// `POST /v1/services/{name}/builds`: a manual build of a commit, or of the branch's head.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TriggerBuild {
    #[serde(skip)]
    pub service: String,
    /// A commit SHA; when absent the server resolves the head of the service's branch.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
}

impl ApiRequest for TriggerBuild {
    type Response = Build;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        format!("/v1/services/{}/builds", url_component(&self.service))
    }
}

/// An agent as the server knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Agent {
    pub id: i64,
    pub name: String,
    pub labels: Vec<String>,
    pub version: Option<String>,
    pub hostname: Option<String>,
    pub created_at: String,
    pub last_seen_at: Option<String>,
}

/// `POST /v1/agents`: issues a token for a new agent. The token is shown once and stored hashed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateAgent {
    pub name: String,
}

/// The answer to [`CreateAgent`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentCredentials {
    pub agent: Agent,
    pub token: String,
}

impl ApiRequest for CreateAgent {
    type Response = AgentCredentials;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/agents".to_owned()
    }
}

/// `GET /v1/agents`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ListAgents {}

impl ApiRequest for ListAgents {
    type Response = Vec<Agent>;
    const METHOD: Method = Method::Get;
    fn path(&self) -> String {
        "/v1/agents".to_owned()
    }
}

/// `POST /v1/agent/register`: an agent announces itself with its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterAgent {
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
}

impl ApiRequest for RegisterAgent {
    type Response = AgentSettings;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/agent/register".to_owned()
    }
}

/// What the server tells a registering agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSettings {
    pub agent: Agent,
    /// How long a claim's lease lasts without a heartbeat.
    pub lease_ms: u64,
    /// How often the agent should heartbeat (well inside the lease).
    pub heartbeat_ms: u64,
}

/// `POST /v1/agent/claim`: long-polls for a build to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimBuild {
    /// How long the server may hold the request open when no build waits (capped by the server).
    pub wait_ms: u64,
}

impl ApiRequest for ClaimBuild {
    type Response = Claim;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/agent/claim".to_owned()
    }
}

/// The answer to [`ClaimBuild`]: a job, or none when the wait ran out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    pub job: Option<BuildJob>,
}

/// Everything an agent needs to run one build.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// A registry user and password.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegistryLogin {
    pub username: String,
    pub password: SecretText,
}

/// `POST /v1/installations/{id}/registry-login`: the registry credentials that builds of one
/// GitHub App installation push with. The password is sealed at rest and never shown again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetRegistryLogin {
    #[serde(skip)]
    pub installation_id: i64,
    pub username: String,
    pub password: SecretText,
}

/// The answer to [`SetRegistryLogin`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryLoginSet {
    pub installation_id: i64,
    pub username: String,
}

impl ApiRequest for SetRegistryLogin {
    type Response = RegistryLoginSet;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        format!("/v1/installations/{}/registry-login", self.installation_id)
    }
}

/// A build argument.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildArg {
    pub name: String,
    pub value: String,
}

/// A build secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildSecret {
    pub name: String,
    pub value: SecretText,
}

/// A service's variable as the API shows it: secret values never leave the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    /// The value, or `null` for a secret.
    pub value: Option<String>,
    pub secret: bool,
    /// Also given to image builds (as a build argument, or a build secret when secret).
    pub build: bool,
    pub updated_at: String,
}

/// `POST /v1/services/{name}/env`: sets (or replaces) one variable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetEnv {
    #[serde(skip)]
    pub service: String,
    pub name: String,
    /// Redacted in `Debug` output whether secret or not: it may be either.
    pub value: SecretText,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub build: bool,
}

impl ApiRequest for SetEnv {
    type Response = EnvVar;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        format!("/v1/services/{}/env", url_component(&self.service))
    }
}

/// `GET /v1/services/{name}/env`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ListEnv {
    #[serde(skip)]
    pub service: String,
}

impl ApiRequest for ListEnv {
    type Response = Vec<EnvVar>;
    const METHOD: Method = Method::Get;
    fn path(&self) -> String {
        format!("/v1/services/{}/env", url_component(&self.service))
    }
}

/// `DELETE /v1/services/{name}/env/{var}`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct UnsetEnv {
    #[serde(skip)]
    pub service: String,
    #[serde(skip)]
    pub name: String,
}

impl ApiRequest for UnsetEnv {
    type Response = Vec<EnvVar>;
    const METHOD: Method = Method::Delete;
    fn path(&self) -> String {
        format!(
            "/v1/services/{}/env/{}",
            url_component(&self.service),
            url_component(&self.name)
        )
    }
}

/// `POST /v1/agent/heartbeat`: keeps the agent and the leases of its builds alive.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Heartbeat {
    /// The builds the agent is working on.
    #[serde(default)]
    pub builds: Vec<i64>,
}

impl ApiRequest for Heartbeat {
    type Response = HeartbeatAnswer;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/agent/heartbeat".to_owned()
    }
}

/// The answer to [`Heartbeat`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HeartbeatAnswer {
    /// Builds the agent must stop: cancelled, or no longer leased to it.
    pub stop: Vec<i64>,
}

/// `POST /v1/agent/builds/{id}/state`: the leasing agent reports progress or the outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

impl ApiRequest for ReportBuildState {
    type Response = Build;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        format!("/v1/agent/builds/{}/state", self.id)
    }
}

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Wharf's own notes: which step runs, what it runs, how it ended.
    Wharf,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Wharf => "wharf",
        }
    }

    pub fn parse(name: &str) -> Option<LogStream> {
        [LogStream::Stdout, LogStream::Stderr, LogStream::Wharf]
            .into_iter()
            .find(|stream| stream.as_str() == name)
    }
}

/// A line an agent sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewLogLine {
    pub stream: LogStream,
    pub text: String,
}

/// `POST /v1/agent/builds/{id}/logs`: the leasing agent appends lines, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendLogs {
    #[serde(skip)]
    pub id: i64,
    pub lines: Vec<NewLogLine>,
}

/// The answer to [`AppendLogs`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendLogsAnswer {
    /// True once the build's log reached its size limit: further lines are dropped.
    pub truncated: bool,
}

impl ApiRequest for AppendLogs {
    type Response = AppendLogsAnswer;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        format!("/v1/agent/builds/{}/logs", self.id)
    }
}

/// A stored log line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogLine {
    /// 1, 2, 3… within the build.
    pub seq: i64,
    pub stream: LogStream,
    pub text: String,
    pub at: String,
}

/// `GET /v1/builds/{id}/logs?after=SEQ`: the lines after `after`, and whether more can come.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct GetLogs {
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub after: i64,
    /// How long the server may wait for a new line while the build runs.
    #[serde(skip)]
    pub wait_ms: u64,
}

/// The answer to [`GetLogs`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildLogs {
    pub lines: Vec<LogLine>,
    pub state: BuildState,
    /// True when the build has finished and every stored line is in this answer or before it.
    pub complete: bool,
    pub truncated: bool,
}

impl ApiRequest for GetLogs {
    type Response = BuildLogs;
    const METHOD: Method = Method::Get;
    fn path(&self) -> String {
        format!(
            "/v1/builds/{}/logs?after={}&wait_ms={}",
            self.id, self.after, self.wait_ms
        )
    }
}

/// `POST /v1/agent/builds/{id}/clone-credentials`: what the leasing agent needs to fetch the
/// commit of a repository reached through the GitHub App.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetCloneCredentials {
    #[serde(skip)]
    pub id: i64,
}

impl ApiRequest for GetCloneCredentials {
    type Response = CloneCredentials;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        format!("/v1/agent/builds/{}/clone-credentials", self.id)
    }
}

/// A clone URL and the installation token that opens it. The token is short-lived; the agent
/// passes it to git through the environment and never writes it anywhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloneCredentials {
    pub clone_url: String,
    pub token: Option<SecretText>,
    /// When the token stops working (RFC 3339).
    pub expires_at: Option<String>,
}

/// A secret on the wire (a token, a password, a secret variable): plain text in JSON, and
/// `[redacted]` in `Debug` output, so a logged request or answer never shows it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretText(String);

impl SecretText {
    pub fn new(value: impl Into<String>) -> SecretText {
        SecretText(value.into())
    }

    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Percent-encodes a value for use in a path segment or query value.
pub fn url_component(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(byte as char)
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_state_names_round_trip() {
        for state in BuildState::ALL {
            assert_eq!(BuildState::parse(state.as_str()), Some(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert_eq!(BuildState::parse("running"), None);
    }

    #[test]
    fn secrets_travel_as_plain_json_but_never_show_in_debug() {
        let login = RegistryLogin {
            username: "builder".to_owned(),
            password: SecretText::new("hunter2"),
        };
        assert_eq!(
            serde_json::to_string(&login).unwrap(),
            r#"{"username":"builder","password":"hunter2"}"#
        );
        assert!(!format!("{login:?}").contains("hunter2"));
    }

    #[test]
    fn url_component_escapes_everything_outside_unreserved() {
        assert_eq!(url_component("web-1"), "web-1");
        assert_eq!(url_component("a b/c?d"), "a%20b%2Fc%3Fd");
    }
}

/// Formats milliseconds since the Unix epoch as an RFC 3339 UTC time with millisecond precision,
/// the form every time in the API takes (`2026-11-23T15:35:29.123Z`).
pub fn format_millis(millis: i64) -> String {
    let seconds = millis.div_euclid(1000);
    let millis_part = millis.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis_part:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod time_tests {
    use super::format_millis;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_millis(1_795_448_129_123), "2026-11-23T15:35:29.123Z");
    }
}
