//! A service's variables: setting, listing and unsetting them; secret values never leave the
//! server.

use serde::{Deserialize, Serialize};

use crate::{ApiRequest, Method, SecretText, url_component};

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
