//! A service's variables: setting, listing and unsetting them; secret values never leave the
//! server.

use serde::{Deserialize, Serialize};

use crate::SecretText;
use crate::api::api_request;

/// A service's variable as the API shows it: secret values never leave the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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

api_request!(SetEnv: Post "/v1/services/{}/env" [service] -> EnvVar);

/// `GET /v1/services/{name}/env`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ListEnv {
    #[serde(skip)]
    pub service: String,
}

api_request!(ListEnv: Get "/v1/services/{}/env" [service] -> Vec<EnvVar>);

/// `DELETE /v1/services/{name}/env/{var}`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UnsetEnv {
    #[serde(skip)]
    pub service: String,
    #[serde(skip)]
    pub name: String,
}

api_request!(UnsetEnv: Delete "/v1/services/{}/env/{}" [service, name] -> Vec<EnvVar>);
