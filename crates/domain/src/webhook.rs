//! Reading GitHub webhook deliveries: the events Wharf acts on, parsed into typed values that
//! carry only the fields Wharf uses, and checked so that nothing unvalidated travels further.
//!
//! Parsing happens after the signature has been verified. A payload that is not the JSON its
//! event needs is an error (the intake answers 400); an event Wharf does not use parses to
//! [`WebhookEvent::Ignored`] (the intake answers 2xx and does nothing).

use serde::Deserialize;

use crate::names::{BranchName, CommitSha, NameError, RepoFullName};

/// The events Wharf reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    Ping,
    Push(PushEvent),
    PullRequest(PullRequestEvent),
    Installation(InstallationEvent),
    InstallationRepositories(InstallationRepositoriesEvent),
    /// An event Wharf does not use, by its `X-GitHub-Event` name.
    Ignored(String),
}

/// Why a payload could not be read. The message goes back to the sender in the 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not valid JSON for a {event} event: {detail}")]
    Shape { event: String, detail: String },
    #[error("{0}")]
    Invalid(#[from] NameError),
    #[error("invalid X-GitHub-Event header: {0:?}")]
    EventName(String),
}

impl WebhookEvent {
    /// Reads the body of a delivery whose `X-GitHub-Event` header is `event`.
    pub fn parse(event: &str, body: &[u8]) -> Result<WebhookEvent, PayloadError> {
        // GitHub's event names are lowercase words joined by underscores, some with digits
        // (`projects_v2_item`).
        if !event.starts_with(|c: char| c.is_ascii_lowercase())
            || event.len() > 64
            || !event
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(PayloadError::EventName(event.chars().take(64).collect()));
        }
        match event {
            "ping" => {
                shape::<serde_json::Map<String, serde_json::Value>>(event, body)?;
                Ok(WebhookEvent::Ping)
            }
            "push" => PushEvent::from_raw(shape(event, body)?).map(WebhookEvent::Push),
            "pull_request" => {
                PullRequestEvent::from_raw(shape(event, body)?).map(WebhookEvent::PullRequest)
            }
            "installation" => {
                InstallationEvent::from_raw(shape(event, body)?).map(WebhookEvent::Installation)
            }
            "installation_repositories" => {
                InstallationRepositoriesEvent::from_raw(shape(event, body)?)
                    .map(WebhookEvent::InstallationRepositories)
            }
            other => Ok(WebhookEvent::Ignored(other.to_owned())),
        }
    }

    /// The `X-GitHub-Event` name.
    pub fn name(&self) -> &str {
        match self {
            WebhookEvent::Ping => "ping",
            WebhookEvent::Push(_) => "push",
            WebhookEvent::PullRequest(_) => "pull_request",
            WebhookEvent::Installation(_) => "installation",
            WebhookEvent::InstallationRepositories(_) => "installation_repositories",
            WebhookEvent::Ignored(name) => name,
        }
    }

    /// The payload's `action`, for events that have one.
    pub fn action(&self) -> Option<&str> {
        match self {
            WebhookEvent::PullRequest(event) => Some(&event.action),
            WebhookEvent::Installation(event) => Some(event.action.as_str()),
            WebhookEvent::InstallationRepositories(event) => Some(&event.action),
            _ => None,
        }
    }
}

fn shape<T: for<'de> Deserialize<'de>>(event: &str, body: &[u8]) -> Result<T, PayloadError> {
    serde_json::from_slice(body).map_err(|error| PayloadError::Shape {
        event: event.to_owned(),
        detail: error.to_string(),
    })
}

/// A repository as webhooks describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRepository {
    pub id: u64,
    pub full_name: RepoFullName,
    pub private: bool,
}

#[derive(Deserialize)]
struct RawRepository {
    id: u64,
    full_name: String,
    #[serde(default)]
    private: bool,
}

impl RawRepository {
    fn check(self) -> Result<WebhookRepository, PayloadError> {
        Ok(WebhookRepository {
            id: self.id,
            full_name: RepoFullName::parse(&self.full_name)?,
            private: self.private,
        })
    }
}

#[derive(Deserialize)]
struct RawInstallationRef {
    id: u64,
}

/// What a push changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushTarget {
    /// New commits on a branch: `after` is its new head.
    Branch {
        branch: BranchName,
        after: CommitSha,
    },
    /// The branch was deleted.
    BranchDeleted { branch: BranchName },
    /// A tag or another kind of ref: nothing to build.
    OtherRef,
}

/// A `push` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    pub git_ref: String,
    pub target: PushTarget,
    pub repository: WebhookRepository,
    pub installation_id: Option<u64>,
}

#[derive(Deserialize)]
struct RawPush {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    repository: RawRepository,
    #[serde(default)]
    installation: Option<RawInstallationRef>,
}

impl PushEvent {
    fn from_raw(raw: RawPush) -> Result<PushEvent, PayloadError> {
        let after = CommitSha::parse(&raw.after)?;
        let target = match BranchName::from_ref(&raw.git_ref)? {
            Some(branch) if raw.deleted || after.is_zero() => PushTarget::BranchDeleted { branch },
            Some(branch) => PushTarget::Branch { branch, after },
            None => PushTarget::OtherRef,
        };
        Ok(PushEvent {
            git_ref: raw.git_ref,
            target,
            repository: raw.repository.check()?,
            installation_id: raw.installation.map(|installation| installation.id),
        })
    }

    /// The key that makes a second delivery of the same push a duplicate:
    /// the repository, the ref and the commit it now points at.
    pub fn dedupe_key(&self) -> Option<String> {
        match &self.target {
            PushTarget::Branch { after, .. } => Some(format!(
                "push:{}:{}:{}",
                self.repository.id, self.git_ref, after
            )),
            _ => None,
        }
    }
}

/// A `pull_request` event. Preview environments act on these; until then they are stored and routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestEvent {
    pub action: String,
    pub number: u64,
    pub head_sha: CommitSha,
    pub head_branch: String,
    pub base_branch: String,
    /// True when the head lives in another repository (a fork): such previews get no secrets.
    pub from_fork: bool,
    pub merged: bool,
    pub repository: WebhookRepository,
    pub installation_id: Option<u64>,
}

#[derive(Deserialize)]
struct RawPullRequestEvent {
    action: String,
    number: u64,
    pull_request: RawPullRequest,
    repository: RawRepository,
    #[serde(default)]
    installation: Option<RawInstallationRef>,
}

#[derive(Deserialize)]
struct RawPullRequest {
    head: RawPullRequestBranch,
    base: RawPullRequestBranch,
    #[serde(default)]
    merged: Option<bool>,
}

#[derive(Deserialize)]
struct RawPullRequestBranch {
    #[serde(rename = "ref")]
    git_ref: String,
    sha: String,
    #[serde(default)]
    repo: Option<RawRepoId>,
}

#[derive(Deserialize)]
struct RawRepoId {
    id: u64,
}

impl PullRequestEvent {
    fn from_raw(raw: RawPullRequestEvent) -> Result<PullRequestEvent, PayloadError> {
        let repository = raw.repository.check()?;
        let from_fork = raw
            .pull_request
            .head
            .repo
            .as_ref()
            .is_none_or(|head_repo| head_repo.id != repository.id);
        Ok(PullRequestEvent {
            action: raw.action,
            number: raw.number,
            head_sha: CommitSha::parse(&raw.pull_request.head.sha)?,
            head_branch: raw.pull_request.head.git_ref,
            base_branch: raw.pull_request.base.git_ref,
            from_fork,
            merged: raw.pull_request.merged.unwrap_or(false),
            repository,
            installation_id: raw.installation.map(|installation| installation.id),
        })
    }
}

/// What happened to an installation of the GitHub App.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallationAction {
    Created,
    Deleted,
    Suspend,
    Unsuspend,
    NewPermissionsAccepted,
    /// An action GitHub may add later: stored, otherwise ignored.
    Other,
}

impl InstallationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallationAction::Created => "created",
            InstallationAction::Deleted => "deleted",
            InstallationAction::Suspend => "suspend",
            InstallationAction::Unsuspend => "unsuspend",
            InstallationAction::NewPermissionsAccepted => "new_permissions_accepted",
            InstallationAction::Other => "other",
        }
    }
}

/// The account an installation belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationAccount {
    pub login: String,
    pub kind: String,
}

/// An `installation` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationEvent {
    pub action: InstallationAction,
    pub installation_id: u64,
    pub account: InstallationAccount,
    /// The repositories granted, on `created` (absent when the payload omits them).
    pub repositories: Vec<WebhookRepository>,
}

#[derive(Deserialize)]
struct RawInstallationEvent {
    action: String,
    installation: RawInstallation,
    #[serde(default)]
    repositories: Option<Vec<RawRepository>>,
}

#[derive(Deserialize)]
struct RawInstallation {
    id: u64,
    #[serde(default)]
    account: Option<RawAccount>,
}

#[derive(Deserialize)]
struct RawAccount {
    #[serde(default)]
    login: Option<String>,
    #[serde(default)]
    slug: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl RawInstallation {
    fn account(&self) -> InstallationAccount {
        let account = self.account.as_ref();
        InstallationAccount {
            login: account
                .and_then(|account| account.login.clone().or_else(|| account.slug.clone()))
                .unwrap_or_default(),
            kind: account
                .and_then(|account| account.kind.clone())
                .unwrap_or_else(|| "Enterprise".to_owned()),
        }
    }
}

impl InstallationEvent {
    fn from_raw(raw: RawInstallationEvent) -> Result<InstallationEvent, PayloadError> {
        let action = match raw.action.as_str() {
            "created" => InstallationAction::Created,
            "deleted" => InstallationAction::Deleted,
            "suspend" => InstallationAction::Suspend,
            "unsuspend" => InstallationAction::Unsuspend,
            "new_permissions_accepted" => InstallationAction::NewPermissionsAccepted,
            _ => InstallationAction::Other,
        };
        let repositories = raw
            .repositories
            .unwrap_or_default()
            .into_iter()
            .map(RawRepository::check)
            .collect::<Result<_, _>>()?;
        Ok(InstallationEvent {
            action,
            installation_id: raw.installation.id,
            account: raw.installation.account(),
            repositories,
        })
    }
}

/// An `installation_repositories` event: repositories added to or removed from an installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationRepositoriesEvent {
    pub action: String,
    pub installation_id: u64,
    pub account: InstallationAccount,
    pub added: Vec<WebhookRepository>,
    pub removed: Vec<WebhookRepository>,
}

#[derive(Deserialize)]
struct RawInstallationRepositoriesEvent {
    action: String,
    installation: RawInstallation,
    #[serde(default)]
    repositories_added: Vec<RawRepository>,
    #[serde(default)]
    repositories_removed: Vec<RawRepository>,
}

impl InstallationRepositoriesEvent {
    fn from_raw(
        raw: RawInstallationRepositoriesEvent,
    ) -> Result<InstallationRepositoriesEvent, PayloadError> {
        let account = raw.installation.account();
        Ok(InstallationRepositoriesEvent {
            action: raw.action,
            installation_id: raw.installation.id,
            account,
            added: raw
                .repositories_added
                .into_iter()
                .map(RawRepository::check)
                .collect::<Result<_, _>>()?,
            removed: raw
                .repositories_removed
                .into_iter()
                .map(RawRepository::check)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(git_ref: &str, after: &str, deleted: bool) -> String {
        serde_json::json!({
            "ref": git_ref,
            "before": "0000000000000000000000000000000000000000",
            "after": after,
            "deleted": deleted,
            "repository": {"id": 7, "full_name": "acme/web", "private": true},
            "installation": {"id": 42}
        })
        .to_string()
    }

    #[test]
    fn a_branch_push_names_the_branch_and_commit() {
        let sha = "a".repeat(40);
        let event =
            WebhookEvent::parse("push", push("refs/heads/main", &sha, false).as_bytes()).unwrap();
        let WebhookEvent::Push(push) = event else {
            panic!("expected a push")
        };
        assert_eq!(
            push.target,
            PushTarget::Branch {
                branch: BranchName::parse("main").unwrap(),
                after: CommitSha::parse(&sha).unwrap()
            }
        );
        assert_eq!(push.installation_id, Some(42));
        assert_eq!(
            push.dedupe_key().unwrap(),
            format!("push:7:refs/heads/main:{sha}")
        );
    }

    #[test]
    fn deletions_and_tags_build_nothing() {
        let zero = "0".repeat(40);
        let WebhookEvent::Push(deleted) =
            WebhookEvent::parse("push", push("refs/heads/main", &zero, true).as_bytes()).unwrap()
        else {
            panic!()
        };
        assert!(matches!(deleted.target, PushTarget::BranchDeleted { .. }));
        assert_eq!(deleted.dedupe_key(), None);
        let WebhookEvent::Push(tag) = WebhookEvent::parse(
            "push",
            push("refs/tags/v1", &"b".repeat(40), false).as_bytes(),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(tag.target, PushTarget::OtherRef);
    }

    #[test]
    fn broken_payloads_are_errors() {
        let sha = "a".repeat(40);
        let cases = [
            ("push", "{\"ref\": \"refs/heads/main\"".to_owned()),
            ("push", "[]".to_owned()),
            (
                "push",
                push("refs/heads/main", &sha, false).replace("\"id\":7", "\"id\":\"7\""),
            ),
            ("push", push("refs/heads/a;b", &sha, false)),
            ("push", push("refs/heads/a..b", &sha, false)),
            (
                "push",
                push(&format!("refs/heads/{}", "x".repeat(5000)), &sha, false),
            ),
            ("push", push("refs/heads/a\u{0}b", &sha, false)),
            ("push", push("refs/heads/main", "not-a-sha", false)),
            (
                "push",
                push("refs/heads/main", &sha, false).replace("acme/web", "acme/web/x"),
            ),
            ("installation", "{}".to_owned()),
            ("ping", "\"zen\"".to_owned()),
        ];
        for (event, body) in cases {
            assert!(
                WebhookEvent::parse(event, body.as_bytes()).is_err(),
                "{event} {}",
                &body[..body.len().min(80)]
            );
        }
    }

    #[test]
    fn unknown_events_are_ignored_not_parsed() {
        assert_eq!(
            WebhookEvent::parse("star", b"not even json").unwrap(),
            WebhookEvent::Ignored("star".to_owned())
        );
        assert_eq!(
            WebhookEvent::parse("projects_v2_item", b"{}").unwrap(),
            WebhookEvent::Ignored("projects_v2_item".to_owned())
        );
        assert!(WebhookEvent::parse("", b"{}").is_err());
        assert!(WebhookEvent::parse("push;rm", b"{}").is_err());
        assert!(WebhookEvent::parse("2fa", b"{}").is_err());
        assert!(WebhookEvent::parse("Push", b"{}").is_err());
    }

    #[test]
    fn pull_requests_from_forks_are_marked() {
        let body = serde_json::json!({
            "action": "opened",
            "number": 5,
            "pull_request": {
                "head": {"ref": "feature", "sha": "c".repeat(40), "repo": {"id": 99}},
                "base": {"ref": "main", "sha": "d".repeat(40), "repo": {"id": 7}},
                "merged": false
            },
            "repository": {"id": 7, "full_name": "acme/web", "private": false}
        });
        let WebhookEvent::PullRequest(event) =
            WebhookEvent::parse("pull_request", body.to_string().as_bytes()).unwrap()
        else {
            panic!()
        };
        assert!(event.from_fork);
        assert_eq!(event.number, 5);
        assert_eq!(event.installation_id, None);
    }
}
