//! Registry logins: the registry credentials builds push with, per GitHub App installation.

use serde::{Deserialize, Serialize};

use crate::SecretText;
use crate::api::api_request;

/// A registry user and password, and the registry they belong to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RegistryLogin {
    /// The registry host (`host[:port]`) the login belongs to: the agent hands it to the
    /// engine for images of that registry only. None in a build job (the registry the agent
    /// pushes to) and from servers before this field (the registry of the release's image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    pub username: String,
    pub password: SecretText,
}

/// `POST /v1/installations/{id}/registry-login`: the registry credentials that builds of one
/// GitHub App installation push with. The password is sealed at rest and never shown again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct SetRegistryLogin {
    #[serde(skip)]
    pub installation_id: i64,
    pub username: String,
    pub password: SecretText,
}

/// The answer to [`SetRegistryLogin`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RegistryLoginSet {
    pub installation_id: i64,
    pub username: String,
}

api_request!(
    SetRegistryLogin: Post "/v1/installations/{}/registry-login" [installation_id] -> RegistryLoginSet
);
