//! Reading GitHub webhook deliveries: the events Wharf acts on, parsed into typed values that
//! carry only the fields Wharf uses, and checked so that nothing unvalidated travels further.
//!
//! Parsing happens after the signature has been verified. A payload that is not the JSON its
//! event needs is an error (the intake answers 400); an event Wharf does not use parses to
//! [`WebhookEvent::Ignored`] (the intake answers 2xx and does nothing).

use serde::Deserialize;
use sha2::{Digest, Sha256};

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

    /// The key that makes a second delivery of the same event a duplicate, whatever its
    /// `X-GitHub-Delivery` id (which a sender can choose freely). A push of a branch is known
    /// by what it did ([`PushEvent::dedupe_key`]), so GitHub's redelivery of it is recognised
    /// and a later push that moves the branch to a commit it held before is not. Every other
    /// event is known by its signed body itself: replaying a captured body under a new
    /// delivery id changes nothing.
    pub fn dedupe_key(&self, body: &[u8]) -> String {
        if let WebhookEvent::Push(push) = self
            && let Some(key) = push.dedupe_key()
        {
            return key;
        }
        format!(
            "body:{}:sha256:{}",
            self.name(),
            hex::encode(Sha256::digest(body))
        )
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
    /// The commit the ref pointed at before the push (all zeros when the push created it).
    pub before: CommitSha,
    pub target: PushTarget,
    pub repository: WebhookRepository,
    /// `repository.pushed_at`: when GitHub took the push, in its own words (Unix seconds in
    /// push events). Two pushes with the same `before` and `after` differ by it.
    pub pushed_at: Option<String>,
    pub installation_id: Option<u64>,
}

#[derive(Deserialize)]
struct RawPush {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    repository: RawPushRepository,
    #[serde(default)]
    installation: Option<RawInstallationRef>,
}

#[derive(Deserialize)]
struct RawPushRepository {
    #[serde(flatten)]
    repository: RawRepository,
    #[serde(default)]
    pushed_at: Option<RawPushedAt>,
}

/// GitHub writes `pushed_at` as Unix seconds in push events and as an RFC 3339 time elsewhere.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawPushedAt {
    Seconds(i64),
    Text(String),
}

impl RawPushedAt {
    fn check(self) -> Result<String, PayloadError> {
        match self {
            RawPushedAt::Seconds(seconds) => Ok(seconds.to_string()),
            RawPushedAt::Text(text)
                if !text.is_empty()
                    && text.len() <= 40
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-:.+".contains(&b)) =>
            {
                Ok(text)
            }
            RawPushedAt::Text(_) => Err(PayloadError::Shape {
                event: "push".to_owned(),
                detail: "repository.pushed_at is not a time".to_owned(),
            }),
        }
    }
}

impl PushEvent {
    fn from_raw(raw: RawPush) -> Result<PushEvent, PayloadError> {
        let after = CommitSha::parse(&raw.after)?;
        let before = CommitSha::parse(&raw.before)?;
        let target = match BranchName::from_ref(&raw.git_ref)? {
            Some(branch) if raw.deleted || after.is_zero() => PushTarget::BranchDeleted { branch },
            Some(branch) => PushTarget::Branch { branch, after },
            None => PushTarget::OtherRef,
        };
        Ok(PushEvent {
            git_ref: raw.git_ref,
            before,
            target,
            repository: raw.repository.repository.check()?,
            pushed_at: raw
                .repository
                .pushed_at
                .map(RawPushedAt::check)
                .transpose()?,
            installation_id: raw.installation.map(|installation| installation.id),
        })
    }

    /// The key that makes a second delivery of the same push of a branch a duplicate: the
    /// repository, the ref, the commits it moved from and to, and when GitHub took the push.
    /// A force-push back to an earlier commit (A→B→A, or A→B→A→B) is a new push and builds
    /// again; GitHub's redelivery of one (the same body) is not.
    pub fn dedupe_key(&self) -> Option<String> {
        match &self.target {
            PushTarget::Branch { after, .. } => Some(format!(
                "push:{}:{}:{}:{}:{}",
                self.repository.id,
                self.git_ref,
                self.before,
                after,
                self.pushed_at.as_deref().unwrap_or("")
            )),
            _ => None,
        }
    }
}

/// A `pull_request` event, which preview environments act on.
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
    pub draft: bool,
    /// The author's `author_association` with the repository (`OWNER`, `MEMBER`,
    /// `COLLABORATOR`, `CONTRIBUTOR`, `NONE`, …).
    pub author_association: String,
    /// The label a `labeled` or `unlabeled` action is about.
    pub label: Option<String>,
    /// Who sent the event (the one who labelled, for a `labeled` action).
    pub sender: Option<String>,
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
    #[serde(default)]
    label: Option<RawLabel>,
    #[serde(default)]
    sender: Option<RawLogin>,
}

#[derive(Deserialize)]
struct RawLabel {
    name: String,
}

#[derive(Deserialize)]
struct RawLogin {
    login: String,
}

#[derive(Deserialize)]
struct RawPullRequest {
    head: RawPullRequestBranch,
    base: RawPullRequestBranch,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    author_association: Option<String>,
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
            draft: raw.pull_request.draft.unwrap_or(false),
            author_association: raw.pull_request.author_association.unwrap_or_default(),
            label: raw.label.map(|label| label.name),
            sender: raw.sender.map(|sender| sender.login),
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
            format!("push:7:refs/heads/main:{}:{sha}:", "0".repeat(40))
        );
    }

    /// A push as GitHub sends it: from `before` to `after`, taken at `pushed_at`.
    fn push_between(before: char, after: char, pushed_at: i64) -> Vec<u8> {
        serde_json::json!({
            "ref": "refs/heads/main",
            "before": before.to_string().repeat(40),
            "after": after.to_string().repeat(40),
            "repository": {"id": 7, "full_name": "acme/web", "pushed_at": pushed_at},
        })
        .to_string()
        .into_bytes()
    }

    fn key(event: &str, body: &[u8]) -> String {
        WebhookEvent::parse(event, body).unwrap().dedupe_key(body)
    }

    #[test]
    fn a_push_back_to_an_earlier_commit_is_a_new_push() {
        // A→B→A→B: every push is its own, though the second and the fourth move the branch
        // between the same commits.
        let pushes = [
            push_between('0', 'a', 100),
            push_between('a', 'b', 200),
            push_between('b', 'a', 300),
            push_between('a', 'b', 400),
        ];
        let keys: std::collections::BTreeSet<String> =
            pushes.iter().map(|body| key("push", body)).collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        // A redelivery is the same body, and so the same push, even reformatted.
        let body = &pushes[1];
        let reformatted =
            serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(body).unwrap())
                .unwrap();
        assert_eq!(key("push", body), key("push", &reformatted));
        assert!(key("push", body).ends_with(":200"), "{}", key("push", body));
    }

    #[test]
    fn other_events_are_known_by_their_body() {
        let deleted = br#"{"action": "deleted", "installation": {"id": 42}}"#;
        let again = br#"{"action": "deleted", "installation": {"id": 42}}"#;
        let other = br#"{"action": "deleted", "installation": {"id": 43}}"#;
        assert_eq!(key("installation", deleted), key("installation", again));
        assert_ne!(key("installation", deleted), key("installation", other));
        assert!(key("installation", deleted).starts_with("body:installation:sha256:"));
        // The same bytes under another event name are another event.
        assert_ne!(key("installation", deleted), key("star", deleted));
        // Pushes that name no branch commit (tags, deletions) are known by their body too.
        let tag = push("refs/tags/v1", &"b".repeat(40), false);
        assert!(key("push", tag.as_bytes()).starts_with("body:push:sha256:"));
    }

    #[test]
    fn pushed_at_is_a_time_or_nothing() {
        let mut body: serde_json::Value =
            serde_json::from_slice(&push_between('a', 'b', 1)).unwrap();
        body["repository"]["pushed_at"] = serde_json::json!("2019-05-15T15:20:41Z");
        assert!(key("push", body.to_string().as_bytes()).ends_with(":2019-05-15T15:20:41Z"));
        body["repository"]["pushed_at"] = serde_json::Value::Null;
        assert!(key("push", body.to_string().as_bytes()).ends_with(":"));
        body["repository"]["pushed_at"] = serde_json::json!("a;b");
        assert!(WebhookEvent::parse("push", body.to_string().as_bytes()).is_err());
        body["repository"]["pushed_at"] = serde_json::json!(1.5);
        assert!(WebhookEvent::parse("push", body.to_string().as_bytes()).is_err());
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
