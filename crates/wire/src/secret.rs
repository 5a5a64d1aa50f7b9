//! Secrets on the wire: plain text in JSON, `[redacted]` in `Debug` output.

use serde::{Deserialize, Serialize};

/// A secret on the wire (a token, a password, a secret variable): plain text in JSON, and
/// `[redacted]` in `Debug` output, so a logged request or answer never shows it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RegistryLogin;

    #[test]
    fn secrets_travel_as_plain_json_but_never_show_in_debug() {
        let login = RegistryLogin {
            registry: None,
            username: "builder".to_owned(),
            password: SecretText::new("hunter2"),
        };
        assert_eq!(
            serde_json::to_string(&login).unwrap(),
            r#"{"username":"builder","password":"hunter2"}"#
        );
        assert!(!format!("{login:?}").contains("hunter2"));
    }
}
