//! Preview environments: a running copy of a service per open pull request, at its own host
//! name, in the environment `<service>-pr-<n>`; the service's settings for them, and the
//! requests that list, approve and remove them.

use serde::{Deserialize, Serialize};

use crate::api::api_request;

/// How a service makes previews of its pull requests. Kept in the service's deploy settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PreviewSettings {
    /// Pull requests whose base is the service's branch get previews. Off by default.
    #[serde(default)]
    pub enabled: bool,
    /// The preview's host name, a template with `{pr}`, `{service}` and `{domain}`; by default
    /// `pr-{pr}.{domain}` for a service with a domain (none without one).
    #[serde(default)]
    pub domain: Option<String>,
    /// Previews running at once; past it the one pushed to least recently is stopped.
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// A preview without a push for this long is removed (a push brings it back).
    #[serde(default = "default_ttl_ms")]
    pub ttl_ms: u64,
    /// Agent names or `label:NAME`; empty means the service's own hosts.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Draft pull requests get previews too; otherwise they wait for "ready for review".
    #[serde(default)]
    pub drafts: bool,
    /// A label that approves the head commit of a pull request that does not build by itself
    /// (from a fork, or by an author who may not push).
    #[serde(default)]
    pub label: Option<String>,
}

/// The previews a service runs at once unless its settings say otherwise.
pub const DEFAULT_PREVIEW_LIMIT: u32 = 5;

fn default_limit() -> u32 {
    DEFAULT_PREVIEW_LIMIT
}

fn default_ttl_ms() -> u64 {
    7 * 24 * 3_600_000
}

impl Default for PreviewSettings {
    fn default() -> PreviewSettings {
        PreviewSettings {
            enabled: false,
            domain: None,
            limit: default_limit(),
            ttl_ms: default_ttl_ms(),
            hosts: Vec::new(),
            drafts: false,
            label: None,
        }
    }
}

/// Where a preview stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PreviewState {
    /// Its head commit waits for approval (a fork, or an author who may not push): nothing is
    /// built until `wharf preview approve` or the approval label.
    WaitingApproval,
    /// A draft, waiting for "ready for review".
    Draft,
    /// Its head commit is queued or building.
    Building,
    /// Its release rolls out.
    Deploying,
    /// It answers at its URL.
    Live,
    /// Its build or its release failed; the reason says which.
    Failed,
    /// Stopped to keep within the service's preview limit; `wharf preview start` or a push
    /// brings it back.
    Stopped,
    /// The pull request closed, or the preview was destroyed or expired: nothing of it is left
    /// running.
    Removed,
}

impl PreviewState {
    pub const ALL: [PreviewState; 8] = [
        PreviewState::WaitingApproval,
        PreviewState::Draft,
        PreviewState::Building,
        PreviewState::Deploying,
        PreviewState::Live,
        PreviewState::Failed,
        PreviewState::Stopped,
        PreviewState::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PreviewState::WaitingApproval => "waiting_approval",
            PreviewState::Draft => "draft",
            PreviewState::Building => "building",
            PreviewState::Deploying => "deploying",
            PreviewState::Live => "live",
            PreviewState::Failed => "failed",
            PreviewState::Stopped => "stopped",
            PreviewState::Removed => "removed",
        }
    }

    pub fn parse(name: &str) -> Option<PreviewState> {
        PreviewState::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
    }
}

impl std::fmt::Display for PreviewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A service's preview of one pull request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Preview {
    pub service: String,
    /// The pull request's number.
    pub pr: u64,
    /// `<service>-pr-<n>`: the environment its builds and releases are for.
    pub environment: String,
    pub state: PreviewState,
    /// Why it failed, waits or was removed, when there is something to say.
    #[serde(default)]
    pub reason: Option<String>,
    /// Where it answers, when the service routes a host name.
    #[serde(default)]
    pub url: Option<String>,
    /// The pull request's head commit as Wharf knows it.
    pub commit_sha: String,
    /// The pull request's head branch.
    pub branch: String,
    /// The head lives in another repository.
    pub from_fork: bool,
    /// Who approved the head commit, when it needed approval and got it.
    #[serde(default)]
    pub approved_by: Option<String>,
    /// The newest build for the preview, and release.
    #[serde(default)]
    pub build_id: Option<i64>,
    #[serde(default)]
    pub release_id: Option<i64>,
    /// The last push to the pull request (its time-to-live counts from here).
    pub pushed_at: String,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /v1/services/{name}/previews`: the service's previews, open ones first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ListPreviews {
    #[serde(skip)]
    pub service: String,
}

api_request!(ListPreviews: Get "/v1/services/{}/previews" [service] -> Vec<Preview>);

/// `GET /v1/previews`: every service's previews, open ones first.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ListAllPreviews {}

api_request!(ListAllPreviews: Get "/v1/previews" -> Vec<Preview>);

/// `POST /v1/services/{name}/previews/{pr}/approve`: lets a pull request's commit build (by
/// default the head Wharf knows). Each new commit needs a new approval.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ApprovePreview {
    #[serde(skip)]
    pub service: String,
    #[serde(skip)]
    pub pr: u64,
    /// The commit approved; it must be the pull request's head.
    #[serde(default)]
    pub commit_sha: Option<String>,
}

api_request!(ApprovePreview: Post "/v1/services/{}/previews/{}/approve" [service, pr] -> Preview);

/// `POST /v1/services/{name}/previews/{pr}/destroy`: removes the preview from every host now.
/// A later push to the pull request brings it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DestroyPreview {
    #[serde(skip)]
    pub service: String,
    #[serde(skip)]
    pub pr: u64,
}

api_request!(DestroyPreview: Post "/v1/services/{}/previews/{}/destroy" [service, pr] -> Preview);

/// `POST /v1/services/{name}/previews/{pr}/start`: brings back a preview that was stopped to
/// keep within the service's limit (or removed by hand), as a push would; it counts as the
/// most recent push.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct StartPreview {
    #[serde(skip)]
    pub service: String,
    #[serde(skip)]
    pub pr: u64,
}

api_request!(StartPreview: Post "/v1/services/{}/previews/{}/start" [service, pr] -> Preview);
