//! Services: what a service is, and the requests that create, show, change and list them.

use serde::{Deserialize, Serialize};

use crate::DeploySettings;
use crate::api::api_request;

/// A service: one deployable thing built from one repository and branch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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
    /// What the build's `RUN` steps may reach over the network.
    #[serde(default)]
    pub build_network: BuildNetwork,
    /// How releases of the service are deployed.
    #[serde(default)]
    pub deploy: DeploySettings,
    /// GitHub's id of the repository the service is linked to: pushes from another repository
    /// of the same name (one deleted and created again, say) build nothing. `None` until an
    /// installation names the repository or it first pushes.
    #[serde(default)]
    pub repository_id: Option<i64>,
    pub created_at: String,
}

/// What a build's `RUN` steps may reach over the network.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum BuildNetwork {
    /// The internet, but not the build host's own addresses (Wharf's API, Caddy's admin API,
    /// the registry, anything else listening there) nor link-local addresses such as a cloud
    /// metadata service.
    #[default]
    Isolated,
    /// Whatever the container engine's default network reaches, the host included.
    Open,
}

impl BuildNetwork {
    pub const ALL: [BuildNetwork; 2] = [BuildNetwork::Isolated, BuildNetwork::Open];

    pub fn as_str(self) -> &'static str {
        match self {
            BuildNetwork::Isolated => "isolated",
            BuildNetwork::Open => "open",
        }
    }

    pub fn parse(name: &str) -> Option<BuildNetwork> {
        BuildNetwork::ALL
            .into_iter()
            .find(|network| network.as_str() == name)
    }
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
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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
    /// `isolated` when absent.
    #[serde(default)]
    pub build_network: BuildNetwork,
    /// Deploy settings; the defaults of [`DeploySettings`] when absent.
    #[serde(default)]
    pub deploy: Option<DeploySettings>,
}

api_request!(CreateService: Post "/v1/services" -> Service);

/// `GET /v1/services/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ShowService {
    #[serde(skip)]
    pub name: String,
}

api_request!(ShowService: Get "/v1/services/{}" [name] -> Service);

/// `PUT /v1/services/{name}`: replaces a service's settings (all of them: read, change, put).
/// The name and project stay; a change applies from the next build and the next release.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UpdateService {
    #[serde(flatten)]
    pub service: CreateService,
    /// Link the service again to the repository its `repo` names now, even when GitHub's id
    /// for that name changed (a repository deleted and created again). A new `repo` links
    /// again by itself.
    #[serde(default)]
    pub relink_repository: bool,
}

api_request!(UpdateService: Put "/v1/services/{}" [service.name] -> Service);

/// `GET /v1/services`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ListServices {}

api_request!(ListServices: Get "/v1/services" -> Vec<Service>);
