//! Dashboard users besides the admin token: an admin changes things as the admin token does, a
//! viewer sees everything and changes nothing. The server makes each user's password and shows
//! it once.

use serde::{Deserialize, Serialize};

use crate::api::api_request;

/// What a user may do.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Everything the admin token may do.
    Admin,
    /// Read everything, change nothing: every write answers 403.
    #[default]
    Viewer,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Admin => "admin",
            UserRole::Viewer => "viewer",
        }
    }

    pub fn parse(name: &str) -> Option<UserRole> {
        [UserRole::Admin, UserRole::Viewer]
            .into_iter()
            .find(|role| role.as_str() == name)
    }
}

impl std::fmt::Display for UserRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user as the API shows one (never their password or its hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct User {
    pub name: String,
    pub role: UserRole,
    pub created_at: String,
}

/// `POST /v1/users`: adds a user with a password the server makes, shown once.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct CreateUser {
    pub name: String,
    /// `viewer` unless given.
    #[serde(default)]
    pub role: UserRole,
}

/// The answer to [`CreateUser`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UserCredentials {
    pub user: User,
    /// The password to sign in to the dashboard with; stored only as an argon2id hash.
    pub password: String,
}

api_request!(CreateUser: Post "/v1/users" -> UserCredentials);

/// `GET /v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ListUsers {}

api_request!(ListUsers: Get "/v1/users" -> Vec<User>);

/// `DELETE /v1/users/{name}`: removes a user and ends their sessions; answers the users left.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RemoveUser {
    #[serde(skip)]
    pub name: String,
}

api_request!(RemoveUser: Delete "/v1/users/{}" [name] -> Vec<User>);
