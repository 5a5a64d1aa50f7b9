//! Builds: their states and triggers, what a build holds, and the requests that list, show,
//! cancel, retry and trigger them.

use serde::{Deserialize, Serialize};

use crate::api::api_request;
use crate::{ApiRequest, Method, url_component};

/// Where a build stands. The allowed moves between states live in `wharf-domain`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum BuildTrigger {
    /// A push to the service's tracked branch, delivered by a GitHub webhook.
    Push,
    /// `wharf build trigger` or its API.
    Manual,
    /// `wharf build retry` of an earlier build.
    Retry,
    /// A pull request's head, for its preview environment.
    PullRequest,
}

impl BuildTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildTrigger::Push => "push",
            BuildTrigger::Manual => "manual",
            BuildTrigger::Retry => "retry",
            BuildTrigger::PullRequest => "pull_request",
        }
    }

    pub fn parse(name: &str) -> Option<BuildTrigger> {
        [
            BuildTrigger::Push,
            BuildTrigger::Manual,
            BuildTrigger::Retry,
            BuildTrigger::PullRequest,
        ]
        .into_iter()
        .find(|trigger| trigger.as_str() == name)
    }
}

/// A build of one commit of one service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Build {
    pub id: i64,
    pub service: String,
    pub service_id: i64,
    /// The environment the build is for: the service's own, or one of its previews.
    #[serde(default = "crate::release::default_environment")]
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
    /// While an agent holds it: when its lease runs out unless the agent is heard from.
    #[serde(default)]
    pub lease_expires_at: Option<String>,
    /// While an agent holds it: when it must be over (the agent's build timeout and a grace);
    /// past either time the build is stuck.
    #[serde(default)]
    pub deadline_at: Option<String>,
}

/// An image a build pushed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ListBuilds {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

// The query is there only with a service, so the path is written out rather than declared with
// `api_request!`.
impl ApiRequest for ListBuilds {
    type Response = Vec<Build>;
    const METHOD: Method = Method::Get;
    // The optional `service` is a query parameter of the request's own fields.
    const PATH_FORMAT: &'static str = "/v1/builds";
    const PATH_FIELDS: &'static [&'static str] = &[];
    fn path(&self) -> String {
        match &self.service {
            Some(service) => format!("/v1/builds?service={}", url_component(service)),
            None => "/v1/builds".to_owned(),
        }
    }
}

/// `GET /v1/builds/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ShowBuild {
    #[serde(skip)]
    pub id: i64,
}

api_request!(ShowBuild: Get "/v1/builds/{}" [id] -> Build);

/// `POST /v1/builds/{id}/cancel`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct CancelBuild {
    #[serde(skip)]
    pub id: i64,
}

api_request!(CancelBuild: Post "/v1/builds/{}/cancel" [id] -> Build);

/// `POST /v1/builds/{id}/retry`: queues a new build of the same commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RetryBuild {
    #[serde(skip)]
    pub id: i64,
}

api_request!(RetryBuild: Post "/v1/builds/{}/retry" [id] -> Build);

/// `POST /v1/services/{name}/builds`: a manual build of a commit, or of the branch's head.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct TriggerBuild {
    #[serde(skip)]
    pub service: String,
    /// A commit SHA; when absent the server resolves the head of the service's branch.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
}

api_request!(TriggerBuild: Post "/v1/services/{}/builds" [service] -> Build);

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
}
