//! A service's variables: setting, listing and unsetting them; secret values never leave the
//! server. Each variable names the compose members it reaches ([`VariableMembers`]).

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
    /// The compose members it reaches; variables from before members were named reach all.
    #[serde(default)]
    pub members: VariableMembers,
    /// Only the service's previews get it, overriding the service's variable of its name.
    #[serde(default)]
    pub preview: bool,
    pub updated_at: String,
}

/// Which members of a compose stack receive a variable. A service that is not a compose stack
/// runs one container, which receives every variable whatever it names.
///
/// In JSON, a word (`"all"`, `"routed"`) or a list of compose service names (`["web"]`), so a
/// member whose name is one of the words is still named by the list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(from = "MembersJson", into = "MembersJson")]
pub enum VariableMembers {
    /// Every member: what variables set before members were named reach.
    #[default]
    All,
    /// The member that takes the service's traffic (listens on its port), which only the
    /// agent knows when it plans the stack: the default of a new variable.
    Routed,
    /// The members of these compose service names.
    Named(Vec<String>),
}

impl VariableMembers {
    /// The members `--member` flags name: no flag is `None` (the server's default), `all` and
    /// `routed` are the words, anything else a member's name.
    pub fn from_flags(flags: &[String]) -> Result<Option<VariableMembers>, String> {
        match flags {
            [] => Ok(None),
            [word] if word == "all" => Ok(Some(VariableMembers::All)),
            [word] if word == "routed" => Ok(Some(VariableMembers::Routed)),
            names => {
                if names.iter().any(|name| name == "all" || name == "routed") {
                    return Err(
                        "--member all and --member routed stand alone, without member names"
                            .to_owned(),
                    );
                }
                Ok(Some(VariableMembers::Named(names.to_vec())))
            }
        }
    }

    /// Whether the member `member` receives the variable; `routed` is the member that takes
    /// the service's traffic, if any does.
    pub fn includes(&self, member: &str, routed: Option<&str>) -> bool {
        match self {
            VariableMembers::All => true,
            VariableMembers::Routed => routed == Some(member),
            VariableMembers::Named(names) => names.iter().any(|name| name == member),
        }
    }
}

impl std::fmt::Display for VariableMembers {
    /// `all`, `routed`, or the names separated by commas.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VariableMembers::All => formatter.write_str("all"),
            VariableMembers::Routed => formatter.write_str("routed"),
            VariableMembers::Named(names) => formatter.write_str(&names.join(",")),
        }
    }
}

/// How [`VariableMembers`] is written in JSON: a word, or a list of names.
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(untagged)]
enum MembersJson {
    Word(MembersWord),
    Names(Vec<String>),
}

/// The words [`VariableMembers`] has in JSON.
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
enum MembersWord {
    All,
    Routed,
}

impl From<MembersJson> for VariableMembers {
    fn from(json: MembersJson) -> VariableMembers {
        match json {
            MembersJson::Word(MembersWord::All) => VariableMembers::All,
            MembersJson::Word(MembersWord::Routed) => VariableMembers::Routed,
            MembersJson::Names(names) => VariableMembers::Named(names),
        }
    }
}

impl From<VariableMembers> for MembersJson {
    fn from(members: VariableMembers) -> MembersJson {
        match members {
            VariableMembers::All => MembersJson::Word(MembersWord::All),
            VariableMembers::Routed => MembersJson::Word(MembersWord::Routed),
            VariableMembers::Named(names) => MembersJson::Names(names),
        }
    }
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
    /// The compose members it reaches. When absent, a variable that exists keeps its members
    /// and a new one reaches the member that takes the service's traffic.
    #[serde(default)]
    pub members: Option<VariableMembers>,
    /// Set it for the service's previews only, where it overrides the service's variable of
    /// its name.
    #[serde(default)]
    pub preview: bool,
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

/// `DELETE /v1/services/{name}/preview-env/{var}`: removes a variable of the service's previews.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UnsetPreviewEnv {
    #[serde(skip)]
    pub service: String,
    #[serde(skip)]
    pub name: String,
}

api_request!(UnsetPreviewEnv: Delete "/v1/services/{}/preview-env/{}" [service, name] -> Vec<EnvVar>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_words_or_a_list_of_names_in_json() {
        let cases = [
            (VariableMembers::All, r#""all""#),
            (VariableMembers::Routed, r#""routed""#),
            (
                VariableMembers::Named(vec!["web".to_owned(), "all".to_owned()]),
                r#"["web","all"]"#,
            ),
        ];
        for (members, json) in cases {
            assert_eq!(serde_json::to_string(&members).unwrap(), json);
            assert_eq!(
                serde_json::from_str::<VariableMembers>(json).unwrap(),
                members
            );
        }
        assert!(serde_json::from_str::<VariableMembers>(r#""web""#).is_err());
        let older: EnvVar = serde_json::from_str(
            r#"{"name":"A","value":"1","secret":false,"build":false,"updated_at":"x"}"#,
        )
        .unwrap();
        assert_eq!(older.members, VariableMembers::All);
    }

    #[test]
    fn member_flags_are_a_word_alone_or_names() {
        let flags = |names: &[&str]| {
            VariableMembers::from_flags(
                &names
                    .iter()
                    .map(|name| (*name).to_owned())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(flags(&[]).unwrap(), None);
        assert_eq!(flags(&["all"]).unwrap(), Some(VariableMembers::All));
        assert_eq!(flags(&["routed"]).unwrap(), Some(VariableMembers::Routed));
        assert_eq!(
            flags(&["web", "worker"]).unwrap(),
            Some(VariableMembers::Named(vec![
                "web".to_owned(),
                "worker".to_owned()
            ]))
        );
        assert!(flags(&["web", "all"]).is_err());
    }

    #[test]
    fn a_member_receives_what_names_it() {
        let named = VariableMembers::Named(vec!["web".to_owned()]);
        assert!(named.includes("web", None));
        assert!(!named.includes("worker", Some("worker")));
        assert!(VariableMembers::Routed.includes("web", Some("web")));
        assert!(!VariableMembers::Routed.includes("worker", Some("web")));
        assert!(!VariableMembers::Routed.includes("web", None));
        assert!(VariableMembers::All.includes("worker", Some("web")));
    }
}
