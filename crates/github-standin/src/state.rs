//! The stand-in's mutable state (installations, repositories, tokens, deployments, pull requests,
//! issue comments and labels, recorded requests) and the builders that turn it into GitHub's JSON
//! shapes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::RecordedRequest;
use crate::schema::OpenApi;

/// The App's slug, name and owner as the stand-in reports them.
pub(crate) const APP_SLUG: &str = "wharf-test-app";
pub(crate) const APP_NAME: &str = "Wharf Test App";
pub(crate) const APP_OWNER_LOGIN: &str = "wharf-test";
/// The numeric ids of the App's owner organisation and of its bot user.
const APP_OWNER_ID: u64 = 1_000;
const APP_BOT_ID: u64 = 41_898_282;

/// Where GitHub's error bodies point.
pub(crate) const DOCUMENTATION_URL: &str = "https://docs.github.com/rest";

/// Everything the server task and the test-facing methods share.
pub(crate) struct Shared {
    pub app_id: u64,
    pub token_ttl: Duration,
    pub decoding_key: DecodingKey,
    pub openapi: Option<OpenApi>,
    /// The directory that holds `{owner}/{repo}.git` bare repositories (GIT_PROJECT_ROOT).
    pub repository_root: PathBuf,
    pub api_url: String,
    pub state: Mutex<State>,
}

impl Shared {
    /// Locks the state. A poisoned lock (a panic in another thread while it was held) still yields the
    /// state, because every mutation leaves it consistent.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The on-disk path of a repository's bare git directory.
    pub fn git_dir(&self, repository: &Repository) -> PathBuf {
        self.repository_root
            .join(&repository.owner)
            .join(format!("{}.git", repository.name))
    }
}

/// An installation of the App on an account.
#[derive(Debug, Clone)]
pub(crate) struct Installation {
    pub id: u64,
    pub account_login: String,
    pub account_id: u64,
    /// "Organization" or "User".
    pub account_type: String,
    pub permissions: Map<String, Value>,
    pub created_at: OffsetDateTime,
    pub suspended_at: Option<OffsetDateTime>,
}

/// A repository backed by a bare git repository under the repository root.
#[derive(Debug, Clone)]
pub(crate) struct Repository {
    pub id: u64,
    pub installation_id: u64,
    pub owner: String,
    pub name: String,
    pub default_branch: String,
    pub has_commits: bool,
    pub created_at: OffsetDateTime,
    pub pushed_at: OffsetDateTime,
}

impl Repository {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// An installation access token the stand-in issued.
#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    pub installation_id: u64,
    pub expires_at: OffsetDateTime,
    pub permissions: Map<String, Value>,
    /// The repositories the token is limited to, or None for all of the installation's repositories.
    pub repository_ids: Option<Vec<u64>>,
    pub revoked: bool,
}

impl IssuedToken {
    /// Whether the token grants access to `repository` (same installation and, when the token was
    /// limited to some repositories, one of them).
    pub fn grants(&self, repository: &Repository) -> bool {
        repository.installation_id == self.installation_id
            && self
                .repository_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&repository.id))
    }

    /// Whether the token holds `permission` at `level` ("read" is implied by "write").
    pub fn allows(&self, permission: &str, level: &str) -> bool {
        match self.permissions.get(permission).and_then(Value::as_str) {
            Some("write") | Some("admin") => true,
            Some("read") => level == "read",
            _ => false,
        }
    }
}

/// A deployment and its statuses, stored as the JSON the stand-in answered.
#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    pub id: u64,
    pub repository_id: u64,
    pub object: Value,
    pub statuses: Vec<Value>,
}

/// A check run as the stand-in answered it last, and as it answered after each write.
#[derive(Debug, Clone)]
pub(crate) struct CheckRun {
    pub id: u64,
    pub repository_id: u64,
    pub object: Value,
    pub history: Vec<Value>,
}

/// A commit status, as the stand-in answered it.
#[derive(Debug, Clone)]
pub(crate) struct CommitStatus {
    pub repository_id: u64,
    pub sha: String,
    pub object: Value,
}

/// A pull request a test said is open (or closed): the stand-in keeps no branches or commits of
/// its own for it, only its number, state and the commit its base branch had when it was opened.
#[derive(Debug, Clone)]
pub(crate) struct PullRequest {
    pub id: u64,
    pub repository_id: u64,
    pub number: u64,
    pub open: bool,
    /// The head of the repository's default branch when the pull request was opened (40 zeros
    /// for a repository without commits), given as both its head and its base commit.
    pub sha: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub closed_at: Option<OffsetDateTime>,
}

/// A comment on an issue or pull request: as the stand-in answers it now, and each body it had.
#[derive(Debug, Clone)]
pub(crate) struct IssueComment {
    pub id: u64,
    pub repository_id: u64,
    pub issue_number: u64,
    pub object: Value,
    /// Every body the comment had, oldest first (its creation, then each edit).
    pub bodies: Vec<String>,
}

/// A label of a repository; one name (compared without case, like GitHub) keeps one id.
#[derive(Debug, Clone)]
pub(crate) struct Label {
    pub id: u64,
    pub repository_id: u64,
    pub name: String,
}

/// A label put on an issue or pull request.
#[derive(Debug, Clone)]
pub(crate) struct IssueLabel {
    pub repository_id: u64,
    pub issue_number: u64,
    pub label_id: u64,
}

/// A failure injected with `fail_next`.
#[derive(Debug, Clone)]
pub(crate) struct InjectedFailure {
    pub path_prefix: String,
    pub status: u16,
    pub remaining: usize,
}

/// The mutable part of the stand-in.
#[derive(Default)]
pub(crate) struct State {
    pub installations: BTreeMap<u64, Installation>,
    pub repositories: Vec<Repository>,
    pub tokens: HashMap<String, IssuedToken>,
    pub issued_tokens: Vec<String>,
    pub deployments: Vec<Deployment>,
    pub check_runs: Vec<CheckRun>,
    pub commit_statuses: Vec<CommitStatus>,
    pub pull_requests: Vec<PullRequest>,
    /// Issue and pull request comments, oldest first.
    pub issue_comments: Vec<IssueComment>,
    /// The repositories' labels, in the order they were first used.
    pub labels: Vec<Label>,
    /// The labels on issues and pull requests, in the order they were put on.
    pub issue_labels: Vec<IssueLabel>,
    pub requests: Vec<RecordedRequest>,
    pub violations: Vec<String>,
    pub failures: Vec<InjectedFailure>,
    /// Numeric ids of accounts by lower-case login, so that one login always gets the same id.
    pub account_ids: HashMap<String, u64>,
    pub next_account_id: u64,
    pub next_repository_id: u64,
    pub next_deployment_id: u64,
    pub next_status_id: u64,
    pub next_check_run_id: u64,
    pub next_commit_status_id: u64,
    pub next_pull_request_id: u64,
    pub next_issue_comment_id: u64,
    pub next_label_id: u64,
    /// Where the App's webhooks go (`X-Hub-Signature-256` with `secret`), when a test said.
    pub webhook_target: Option<WebhookTarget>,
    /// Every attempt at delivering one of the App's webhooks, oldest first.
    pub hook_deliveries: Vec<HookDelivery>,
    pub next_hook_delivery_id: u64,
    /// The codes of the App manifest flow a test offered, each with the App's private key
    /// (PEM) and webhook secret; a conversion spends its code.
    pub manifest_codes: HashMap<String, (String, String)>,
}

/// Where the App's webhooks are sent.
#[derive(Debug, Clone)]
pub(crate) struct WebhookTarget {
    pub url: String,
    pub secret: String,
}

/// One attempt at delivering a webhook, as `GET /app/hook/deliveries` lists it.
#[derive(Debug, Clone)]
pub(crate) struct HookDelivery {
    pub id: u64,
    /// The event's delivery id (`X-GitHub-Delivery`), the same for every attempt at it.
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<u64>,
    pub repository_id: Option<u64>,
    pub body: Vec<u8>,
    pub delivered_at: OffsetDateTime,
    pub redelivery: bool,
    /// What the receiver answered; 0 when it could not be reached.
    pub status_code: u16,
    pub status: String,
    pub duration: f64,
}

impl HookDelivery {
    /// The delivery as the API lists it ("simple webhook delivery").
    pub fn object(&self) -> Value {
        json!({
            "id": self.id,
            "guid": self.guid,
            "delivered_at": github_time(self.delivered_at),
            "redelivery": self.redelivery,
            "duration": self.duration,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
            "throttled_at": null
        })
    }
}

impl State {
    pub fn new() -> State {
        State {
            next_account_id: 10_001,
            next_repository_id: 500_001,
            next_deployment_id: 1_000_001,
            next_status_id: 2_000_001,
            next_check_run_id: 3_000_001,
            next_commit_status_id: 4_000_001,
            next_hook_delivery_id: 5_000_001,
            next_pull_request_id: 6_000_001,
            next_issue_comment_id: 7_000_001,
            next_label_id: 8_000_001,
            ..State::default()
        }
    }

    pub fn account_id(&mut self, login: &str) -> u64 {
        let key = login.to_lowercase();
        if let Some(id) = self.account_ids.get(&key) {
            return *id;
        }
        let id = self.next_account_id;
        self.next_account_id += 1;
        self.account_ids.insert(key, id);
        id
    }

    /// The account (id and type) an installation's repositories belong to; an installation that is
    /// gone reads as an organisation with id 0.
    pub fn owner_account(&self, installation_id: u64) -> (u64, String) {
        self.installations
            .get(&installation_id)
            .map(|installation| (installation.account_id, installation.account_type.clone()))
            .unwrap_or((0, "Organization".to_string()))
    }

    /// Finds a repository by owner and name, ignoring case like GitHub does.
    pub fn repository(&self, owner: &str, name: &str) -> Option<&Repository> {
        self.repositories.iter().find(|repository| {
            repository.owner.eq_ignore_ascii_case(owner)
                && repository.name.eq_ignore_ascii_case(name)
        })
    }

    pub fn repository_mut(&mut self, owner: &str, name: &str) -> Option<&mut Repository> {
        self.repositories.iter_mut().find(|repository| {
            repository.owner.eq_ignore_ascii_case(owner)
                && repository.name.eq_ignore_ascii_case(name)
        })
    }

    pub fn repository_by_id(&self, id: u64) -> Option<&Repository> {
        self.repositories
            .iter()
            .find(|repository| repository.id == id)
    }

    /// The pull request `number` of repository `repository_id`, if a test opened it.
    pub fn pull_request(&self, repository_id: u64, number: u64) -> Option<&PullRequest> {
        self.pull_requests
            .iter()
            .find(|pull| pull.repository_id == repository_id && pull.number == number)
    }

    /// The id of the repository's label named `name` (without regard to case); the label is made
    /// when the repository has none by that name.
    pub fn label_id(&mut self, repository_id: u64, name: &str) -> u64 {
        if let Some(label) = self.labels.iter().find(|label| {
            label.repository_id == repository_id && label.name.to_lowercase() == name.to_lowercase()
        }) {
            return label.id;
        }
        let id = self.next_label_id;
        self.next_label_id += 1;
        self.labels.push(Label {
            id,
            repository_id,
            name: name.to_owned(),
        });
        id
    }

    /// The labels on issue `issue_number` of repository `repository_id`, in the order they were
    /// put on.
    pub fn labels_of(&self, repository_id: u64, issue_number: u64) -> Vec<&Label> {
        self.issue_labels
            .iter()
            .filter(|on| on.repository_id == repository_id && on.issue_number == issue_number)
            .filter_map(|on| self.labels.iter().find(|label| label.id == on.label_id))
            .collect()
    }

    /// Takes one injected failure for `path`, if any is pending.
    pub fn take_failure(&mut self, path: &str) -> Option<u16> {
        let failure = self
            .failures
            .iter_mut()
            .find(|failure| failure.remaining > 0 && path.starts_with(&failure.path_prefix))?;
        failure.remaining -= 1;
        let status = failure.status;
        self.failures.retain(|failure| failure.remaining > 0);
        Some(status)
    }
}

/// The permissions a new installation grants: what Wharf needs to fetch code, report deployments,
/// put checks (or commit statuses) on commits, list open pull requests, and comment on them and
/// take labels off them.
pub(crate) fn default_installation_permissions() -> Map<String, Value> {
    let mut permissions = Map::new();
    permissions.insert("checks".into(), json!("write"));
    permissions.insert("contents".into(), json!("read"));
    permissions.insert("deployments".into(), json!("write"));
    permissions.insert("issues".into(), json!("write"));
    permissions.insert("metadata".into(), json!("read"));
    permissions.insert("pull_requests".into(), json!("read"));
    permissions.insert("statuses".into(), json!("write"));
    permissions
}

/// Formats a time like GitHub does: RFC 3339 in UTC with whole seconds, e.g. `2024-01-02T03:04:05Z`.
pub(crate) fn github_time(moment: OffsetDateTime) -> String {
    let moment = moment.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        moment.year(),
        u8::from(moment.month()),
        moment.day(),
        moment.hour(),
        moment.minute(),
        moment.second()
    )
}

/// A GraphQL-style node id like GitHub's legacy ones (base64 of e.g. `010:Repository123`).
pub(crate) fn node_id(kind: &str, id: impl std::fmt::Display) -> String {
    let raw = format!("0{}:{kind}{id}", kind.len());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// A `simple-user` object for an account (type "User", "Organization" or "Bot").
pub(crate) fn user_object(api_url: &str, login: &str, id: u64, account_type: &str) -> Value {
    let user_url = format!("{api_url}/users/{login}");
    json!({
        "login": login,
        "id": id,
        "node_id": node_id(account_type, id),
        "avatar_url": format!("{api_url}/avatars/u/{id}?v=4"),
        "gravatar_id": "",
        "url": user_url,
        "html_url": format!("{api_url}/{login}"),
        "followers_url": format!("{user_url}/followers"),
        "following_url": format!("{user_url}/following{{/other_user}}"),
        "gists_url": format!("{user_url}/gists{{/gist_id}}"),
        "starred_url": format!("{user_url}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{user_url}/subscriptions"),
        "organizations_url": format!("{user_url}/orgs"),
        "repos_url": format!("{user_url}/repos"),
        "events_url": format!("{user_url}/events{{/privacy}}"),
        "received_events_url": format!("{user_url}/received_events"),
        "type": account_type,
        "user_view_type": "public",
        "site_admin": false
    })
}

/// The App's bot user, which GitHub names as the creator of what an installation token creates.
pub(crate) fn bot_user(api_url: &str) -> Value {
    user_object(api_url, &format!("{APP_SLUG}[bot]"), APP_BOT_ID, "Bot")
}

/// The `integration` object (GET /app).
pub(crate) fn app_object(api_url: &str, app_id: u64, installations_count: usize) -> Value {
    json!({
        "id": app_id,
        "slug": APP_SLUG,
        "client_id": format!("Iv1.{app_id:016x}"),
        "node_id": node_id("Integration", app_id),
        "owner": user_object(api_url, APP_OWNER_LOGIN, APP_OWNER_ID, "Organization"),
        "name": APP_NAME,
        "description": "The GitHub App that Wharf's tests use.",
        "external_url": format!("{api_url}/wharf"),
        "html_url": format!("{api_url}/apps/{APP_SLUG}"),
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "permissions": Value::Object(default_installation_permissions()),
        "events": ["push"],
        "installations_count": installations_count
    })
}

/// The `installation` object (GET /app/installations/{installation_id}).
pub(crate) fn installation_object(
    api_url: &str,
    app_id: u64,
    installation: &Installation,
) -> Value {
    let id = installation.id;
    let html_url = if installation.account_type == "Organization" {
        format!(
            "{api_url}/organizations/{}/settings/installations/{id}",
            installation.account_login
        )
    } else {
        format!("{api_url}/settings/installations/{id}")
    };
    let (suspended_at, suspended_by) = match installation.suspended_at {
        Some(moment) => (
            json!(github_time(moment)),
            user_object(api_url, APP_OWNER_LOGIN, APP_OWNER_ID, "Organization"),
        ),
        None => (Value::Null, Value::Null),
    };
    // GitHub's description of GET /app/installations requires the account to be both a simple-user and
    // an enterprise (`allOf`), so the account also carries the enterprise fields.
    let mut account = user_object(
        api_url,
        &installation.account_login,
        installation.account_id,
        &installation.account_type,
    );
    if let Some(members) = account.as_object_mut() {
        members.insert("name".into(), json!(installation.account_login));
        members.insert(
            "slug".into(),
            json!(installation.account_login.to_lowercase()),
        );
        members.insert(
            "created_at".into(),
            json!(github_time(installation.created_at)),
        );
        members.insert(
            "updated_at".into(),
            json!(github_time(installation.created_at)),
        );
    }
    json!({
        "id": id,
        "account": account,
        "repository_selection": "all",
        "access_tokens_url": format!("{api_url}/app/installations/{id}/access_tokens"),
        "repositories_url": format!("{api_url}/installation/repositories"),
        "html_url": html_url,
        "app_id": app_id,
        "client_id": format!("Iv1.{app_id:016x}"),
        "app_slug": APP_SLUG,
        "target_id": installation.account_id,
        "target_type": installation.account_type,
        "permissions": Value::Object(installation.permissions.clone()),
        "events": ["push"],
        "created_at": github_time(installation.created_at),
        "updated_at": github_time(installation.created_at),
        "single_file_name": null,
        "has_multiple_single_files": false,
        "single_file_paths": [],
        "suspended_by": suspended_by,
        "suspended_at": suspended_at
    })
}

/// The repository object. `full` adds the fields of `full-repository` (GET /repos/{owner}/{repo});
/// without it the object matches `repository` as listed by GET /installation/repositories.
pub(crate) fn repository_object(
    api_url: &str,
    repository: &Repository,
    account_id: u64,
    account_type: &str,
    full: bool,
) -> Value {
    let full_name = repository.full_name();
    let url = format!("{api_url}/repos/{full_name}");
    let html_url = format!("{api_url}/{full_name}");
    let host_and_port = api_url.trim_start_matches("http://");
    let mut object = json!({
        "id": repository.id,
        "node_id": node_id("Repository", repository.id),
        "name": repository.name,
        "full_name": full_name,
        "private": true,
        "owner": user_object(api_url, &repository.owner, account_id, account_type),
        "html_url": html_url,
        "description": null,
        "fork": false,
        "url": url,
        "archive_url": format!("{url}/{{archive_format}}{{/ref}}"),
        "assignees_url": format!("{url}/assignees{{/user}}"),
        "blobs_url": format!("{url}/git/blobs{{/sha}}"),
        "branches_url": format!("{url}/branches{{/branch}}"),
        "collaborators_url": format!("{url}/collaborators{{/collaborator}}"),
        "comments_url": format!("{url}/comments{{/number}}"),
        "commits_url": format!("{url}/commits{{/sha}}"),
        "compare_url": format!("{url}/compare/{{base}}...{{head}}"),
        "contents_url": format!("{url}/contents/{{+path}}"),
        "contributors_url": format!("{url}/contributors"),
        "deployments_url": format!("{url}/deployments"),
        "downloads_url": format!("{url}/downloads"),
        "events_url": format!("{url}/events"),
        "forks_url": format!("{url}/forks"),
        "git_commits_url": format!("{url}/git/commits{{/sha}}"),
        "git_refs_url": format!("{url}/git/refs{{/sha}}"),
        "git_tags_url": format!("{url}/git/tags{{/sha}}"),
        "git_url": format!("git://{host_and_port}/{full_name}.git"),
        "issue_comment_url": format!("{url}/issues/comments{{/number}}"),
        "issue_events_url": format!("{url}/issues/events{{/number}}"),
        "issues_url": format!("{url}/issues{{/number}}"),
        "keys_url": format!("{url}/keys{{/key_id}}"),
        "labels_url": format!("{url}/labels{{/name}}"),
        "languages_url": format!("{url}/languages"),
        "merges_url": format!("{url}/merges"),
        "milestones_url": format!("{url}/milestones{{/number}}"),
        "notifications_url": format!("{url}/notifications{{?since,all,participating}}"),
        "pulls_url": format!("{url}/pulls{{/number}}"),
        "releases_url": format!("{url}/releases{{/id}}"),
        "ssh_url": format!("git@{host_and_port}:{full_name}.git"),
        "stargazers_url": format!("{url}/stargazers"),
        "statuses_url": format!("{url}/statuses/{{sha}}"),
        "subscribers_url": format!("{url}/subscribers"),
        "subscription_url": format!("{url}/subscription"),
        "tags_url": format!("{url}/tags"),
        "teams_url": format!("{url}/teams"),
        "trees_url": format!("{url}/git/trees{{/sha}}"),
        "clone_url": format!("{api_url}/git/{full_name}.git"),
        "mirror_url": null,
        "hooks_url": format!("{url}/hooks"),
        "svn_url": html_url,
        "homepage": null,
        "language": null,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "size": 0,
        "default_branch": repository.default_branch,
        "open_issues_count": 0,
        "is_template": false,
        "topics": [],
        "has_issues": true,
        "has_projects": true,
        "has_wiki": false,
        "has_pages": false,
        "has_downloads": true,
        "has_discussions": false,
        "archived": false,
        "disabled": false,
        "visibility": "private",
        "pushed_at": github_time(repository.pushed_at),
        "created_at": github_time(repository.created_at),
        "updated_at": github_time(repository.pushed_at),
        "permissions": {"admin": false, "maintain": false, "push": false, "triage": false, "pull": true},
        "allow_forking": false,
        "web_commit_signoff_required": false,
        "license": null,
        "forks": 0,
        "open_issues": 0,
        "watchers": 0
    });
    if full && let Some(members) = object.as_object_mut() {
        members.insert("network_count".into(), json!(0));
        members.insert("subscribers_count".into(), json!(0));
        members.insert("temp_clone_token".into(), Value::Null);
        members.insert("allow_squash_merge".into(), json!(true));
        members.insert("allow_merge_commit".into(), json!(true));
        members.insert("allow_rebase_merge".into(), json!(true));
        members.insert("allow_auto_merge".into(), json!(false));
        members.insert("delete_branch_on_merge".into(), json!(false));
        let organization = if account_type == "Organization" {
            user_object(api_url, &repository.owner, account_id, account_type)
        } else {
            Value::Null
        };
        members.insert("organization".into(), organization);
    }
    object
}

/// A GitHub error body: `{"message": ..., "documentation_url": ..., "status": "404"}`.
pub(crate) fn error_body(status: u16, message: &str) -> Value {
    json!({
        "message": message,
        "documentation_url": DOCUMENTATION_URL,
        "status": status.to_string()
    })
}
