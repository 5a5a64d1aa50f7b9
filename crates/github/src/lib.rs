//! Wharf's client for the GitHub App: it signs App JWTs, exchanges them for installation
//! access tokens (cached and renewed before they expire), and makes the few REST calls Wharf
//! needs: installations, repositories, branch heads, deployments with their statuses, checks on
//! commits (check runs, or commit statuses where the App may not write checks), a repository's
//! open pull requests, and the comments and labels of pull requests.
//!
//! Two kinds of token are asked for and cached apart: the installation's own token, with every
//! permission the installation grants, which only this client's calls use; and clone tokens
//! ([`GithubApp::clone_token`]), limited to one repository and `contents: read`, which are the
//! only tokens Wharf hands to agents.
//!
//! Architecture invariant: tokens and the private key never leave this crate except as
//! [`SecretString`]; no error, log line or `Debug` output contains them. Requests that fail
//! with a 5xx or a rate limit are retried with backoff; other failures come back as
//! [`GithubError`] with GitHub's own message.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
pub use wharf_domain::deployment::DeploymentState;
use wharf_wire::text;
use wharf_wire::url_component;

/// GitHub's public API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// What went wrong talking to GitHub. Never holds a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GithubError {
    /// The App's settings cannot work (a key that is not an RSA PEM, say).
    #[error("GitHub App configuration: {0}")]
    Config(String),
    /// GitHub answered with an error status.
    #[error("GitHub answered {status} to {what}: {message}")]
    Status {
        status: u16,
        what: String,
        message: String,
        /// The answer was a rate limit (a 429, or a 403 that says so).
        rate_limited: bool,
        /// How long GitHub asked to wait (`Retry-After`, or until `x-ratelimit-reset`).
        retry_after: Option<Duration>,
    },
    /// GitHub could not be reached, or its answer could not be read.
    #[error("GitHub request for {what} failed: {detail}")]
    Transport { what: String, detail: String },
}

impl GithubError {
    /// The HTTP status GitHub answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GithubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the same request may work later: GitHub was unreachable, failed (5xx), limited
    /// the rate, or refused the credentials (401: the token is renewed on the next try). Other
    /// answers (404, 422, a 403 that is no rate limit) would be the same next time.
    pub fn is_transient(&self) -> bool {
        match self {
            GithubError::Transport { .. } => true,
            GithubError::Status {
                status,
                rate_limited,
                ..
            } => *rate_limited || *status >= 500 || *status == 401 || *status == 408,
            GithubError::Config(_) => false,
        }
    }

    /// True when GitHub refused because the App's installation lacks a permission the request
    /// needs: 403 "Resource not accessible by integration" (a 403 rate limit is not it).
    pub fn is_missing_permission(&self) -> bool {
        matches!(
            self,
            GithubError::Status { status: 403, rate_limited: false, message, .. }
                if message.contains("Resource not accessible by integration")
        )
    }

    /// How long GitHub asked to wait before the next request, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GithubError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// How to reach the App.
#[derive(Clone)]
pub struct AppConfig {
    pub app_id: u64,
    /// The App's private key as PEM text, or base64 of the PEM (as `base64 key.pem` gives).
    pub private_key: SecretString,
    pub api_url: String,
}

/// An installation as GitHub describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    pub id: u64,
    pub account_login: String,
    pub account_type: String,
    pub suspended: bool,
}

/// A repository an installation grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub id: u64,
    pub full_name: String,
    pub private: bool,
    pub clone_url: String,
}

/// `POST /repos/{owner}/{repo}/deployments`: a deployment of one commit to one environment.
/// [`NewDeployment::new`] sets what Wharf always sends: `auto_merge: false` (GitHub would
/// otherwise try to merge the default branch into the ref, and answer 202 when it did) and no
/// required contexts (Wharf's build is the check).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewDeployment {
    /// The commit SHA (GitHub also takes a branch or tag).
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub task: String,
    pub auto_merge: bool,
    pub required_contexts: Vec<String>,
    /// Extra data kept with the deployment; Wharf names its build here.
    pub payload: serde_json::Value,
    pub environment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub transient_environment: bool,
    pub production_environment: bool,
}

impl NewDeployment {
    pub fn new(sha: &str, environment: &str, production_environment: bool) -> NewDeployment {
        NewDeployment {
            git_ref: sha.to_owned(),
            task: "deploy".to_owned(),
            auto_merge: false,
            required_contexts: Vec::new(),
            payload: serde_json::json!({}),
            environment: environment.to_owned(),
            description: None,
            transient_environment: false,
            production_environment,
        }
    }
}

/// `POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewDeploymentStatus {
    pub state: DeploymentState,
    /// Where the deployment's output is (GitHub also sets `target_url` from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// At most 140 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the deployed environment answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_url: Option<String>,
    /// Moves the deployment to another environment; GitHub keeps the last one when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// GitHub's default (true) marks older successful deployments of the same environment
    /// inactive on `success`, in environments that are neither transient nor production.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_inactive: Option<bool>,
}

impl NewDeploymentStatus {
    pub fn new(state: DeploymentState) -> NewDeploymentStatus {
        NewDeploymentStatus {
            state,
            log_url: None,
            description: None,
            environment_url: None,
            environment: None,
            auto_inactive: None,
        }
    }
}

/// A check run's `output`: title and Markdown summary, and optional details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRunOutput {
    pub title: String,
    /// At most 65,535 characters.
    pub summary: String,
    /// At most 65,535 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// What a check run shows: `POST /repos/{owner}/{repo}/check-runs` (with the name and commit)
/// and `PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}` send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRunFields {
    /// Where the check's details are (Wharf: the build's page).
    pub details_url: String,
    /// Wharf's own reference for the run: the build's id.
    pub external_id: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// Required once `completed`: `success`, `failure`, `cancelled`, `skipped`, ….
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    pub output: CheckRunOutput,
}

/// A check run as GitHub describes it (the fields Wharf reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub external_id: Option<String>,
}

/// `POST /repos/{owner}/{repo}/statuses/{sha}`: a commit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCommitStatus {
    /// `pending`, `success`, `failure` or `error`.
    pub state: String,
    pub target_url: String,
    /// Short: GitHub keeps 140 characters.
    pub description: String,
    /// The status's name on the commit; one context shows its newest status.
    pub context: String,
}

/// A deployment as GitHub describes it (the fields Wharf reads).
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub id: u64,
    pub sha: String,
    pub environment: String,
    /// The payload given at creation, as JSON (GitHub may hand back a string payload as text).
    pub payload: serde_json::Value,
}

#[derive(Deserialize)]
struct DeploymentAnswer {
    id: u64,
    sha: String,
    environment: String,
    #[serde(default)]
    payload: serde_json::Value,
}

impl From<DeploymentAnswer> for Deployment {
    fn from(answer: DeploymentAnswer) -> Deployment {
        let payload = match answer.payload {
            serde_json::Value::String(text) => {
                serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
            }
            other => other,
        };
        Deployment {
            id: answer.id,
            sha: answer.sha,
            environment: answer.environment,
            payload,
        }
    }
}

/// One attempt GitHub made at delivering one of the App's webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// The attempt's id, which a redelivery names.
    pub id: u64,
    /// The event's delivery id (`X-GitHub-Delivery`), shared by every attempt at it.
    pub guid: String,
    /// When the attempt was made, in seconds since the epoch.
    pub delivered_at: i64,
    pub redelivery: bool,
    /// What the receiver answered (not 2xx: the attempt failed).
    pub status_code: i64,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<u64>,
    pub repository_id: Option<u64>,
}

impl WebhookDelivery {
    /// True when the receiver took it (a 2xx).
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

/// `GET /app/hook/deliveries`: one item.
#[derive(Deserialize)]
struct DeliveryAnswer {
    id: u64,
    guid: String,
    delivered_at: String,
    redelivery: bool,
    status_code: i64,
    event: String,
    action: Option<String>,
    installation_id: Option<u64>,
    repository_id: Option<u64>,
}

/// A comment on an issue or pull request (the fields Wharf reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueComment {
    pub id: u64,
    /// The comment's Markdown text.
    pub body: String,
    /// Who wrote it (the App's comments: `{app-slug}[bot]`); None for a deleted account.
    pub user_login: Option<String>,
}

/// `GET /repos/{owner}/{repo}/issues/{issue_number}/comments`: one item.
#[derive(Deserialize)]
struct IssueCommentAnswer {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<UserAnswer>,
}

#[derive(Deserialize)]
struct UserAnswer {
    login: String,
}

/// `GET /repos/{owner}/{repo}/pulls`: one item, of which only the number is read.
#[derive(Deserialize)]
struct PullRequestAnswer {
    number: u64,
}

/// An installation token and when it stops working.
#[derive(Clone)]
pub struct InstallationToken {
    pub token: SecretString,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
}

impl std::fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallationToken")
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The client. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct GithubApp {
    app_id: u64,
    key: Arc<EncodingKey>,
    api_url: String,
    http: reqwest::Client,
    tokens: Arc<std::sync::Mutex<HashMap<TokenScope, TokenSlot>>>,
    retry: RetryPolicy,
}

/// What a cached token reaches: the whole installation with all its permissions, or one
/// repository's contents, read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TokenScope {
    /// The installation's own token, for the calls this client makes (never handed out).
    Installation(u64),
    /// A clone token: `contents: read` on one repository of the installation.
    RepositoryContents {
        installation_id: u64,
        repository_id: u64,
    },
}

impl TokenScope {
    /// What the token request asks GitHub for: nothing narrower than the installation for its
    /// own token; one repository and `contents: read` for a clone token.
    fn request_body(self) -> Option<serde_json::Value> {
        match self {
            TokenScope::Installation(_) => None,
            TokenScope::RepositoryContents { repository_id, .. } => Some(serde_json::json!({
                "repository_ids": [repository_id],
                "permissions": {"contents": "read"},
            })),
        }
    }

    fn installation_id(self) -> u64 {
        match self {
            TokenScope::Installation(id) => id,
            TokenScope::RepositoryContents {
                installation_id, ..
            } => installation_id,
        }
    }
}

/// What the cache holds for one token scope: a token, or a request for one under way that
/// every caller who needs the token meanwhile waits on, so concurrent callers make one request.
/// The map's lock is never held across a request: one installation's slow request delays no
/// other installation.
enum TokenSlot {
    Cached(CachedToken),
    Requesting(watch::Receiver<Option<Result<InstallationToken, GithubError>>>),
}

/// Clears an installation's `Requesting` slot if its request is abandoned (the caller who made
/// it was cancelled), so the next caller makes a new one instead of waiting forever.
struct RequestInFlight<'a> {
    tokens: &'a std::sync::Mutex<HashMap<TokenScope, TokenSlot>>,
    scope: TokenScope,
    finished: bool,
}

impl Drop for RequestInFlight<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Ok(mut tokens) = self.tokens.lock()
            && matches!(tokens.get(&self.scope), Some(TokenSlot::Requesting(_)))
        {
            tokens.remove(&self.scope);
        }
    }
}

/// How failed requests are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// How long an App JWT lives. GitHub allows ten minutes; `iat` is set 60 s in the past
/// against clock drift, so the lifetime counted from `iat` stays under that limit.
const JWT_LIFETIME_SECONDS: i64 = 9 * 60;
/// `iat` is backdated by this much, as GitHub recommends.
const JWT_BACKDATE_SECONDS: i64 = 60;

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// A GitHub App that GitHub made from a manifest: what `POST /app-manifests/{code}/conversions`
/// answers once for the code GitHub handed back after its owner confirmed the manifest.
#[derive(Clone)]
pub struct ManifestApp {
    pub id: u64,
    pub slug: String,
    /// The App's page on GitHub, where it is installed on repositories.
    pub html_url: String,
    /// The App's private key, PEM.
    pub pem: SecretString,
    pub webhook_secret: SecretString,
}

impl std::fmt::Debug for ManifestApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestApp")
            .field("id", &self.id)
            .field("slug", &self.slug)
            .field("html_url", &self.html_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ManifestAnswer {
    id: u64,
    slug: String,
    html_url: String,
    pem: String,
    webhook_secret: Option<String>,
}

/// Exchanges the `code` of GitHub's App manifest flow for the App it made (once: the code is
/// spent, and it expires within an hour). The call needs no credential.
pub async fn convert_manifest(api_url: &str, code: &str) -> Result<ManifestApp, GithubError> {
    const WHAT: &str = "the App made from the manifest";
    let http = reqwest::Client::builder()
        .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|error| GithubError::Config(format!("HTTP client: {error}")))?;
    let url = format!(
        "{}/app-manifests/{}/conversions",
        api_url.trim_end_matches('/'),
        url_component(code)
    );
    let transport = |error: reqwest::Error| GithubError::Transport {
        what: WHAT.to_owned(),
        detail: without_url(error),
    };
    let response = http
        .post(&url)
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        let message = response
            .json::<ErrorAnswer>()
            .await
            .ok()
            .and_then(|answer| answer.message)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
        return Err(GithubError::Status {
            status: status.as_u16(),
            what: WHAT.to_owned(),
            message: text::clip(&message, text::QUOTED_CHARS),
            rate_limited: false,
            retry_after: None,
        });
    }
    let answer: ManifestAnswer = response.json().await.map_err(transport)?;
    let webhook_secret = answer
        .webhook_secret
        .ok_or_else(|| GithubError::Transport {
            what: WHAT.to_owned(),
            detail: "GitHub made the App without a webhook secret".to_owned(),
        })?;
    decode_private_key(&answer.pem)?;
    Ok(ManifestApp {
        id: answer.id,
        slug: answer.slug,
        html_url: answer.html_url,
        pem: SecretString::from(answer.pem),
        webhook_secret: SecretString::from(webhook_secret),
    })
}

/// Reads a private key given as PEM text or as base64 of the PEM.
pub fn decode_private_key(value: &str) -> Result<EncodingKey, GithubError> {
    let trimmed = value.trim();
    let pem = if trimmed.starts_with("-----BEGIN") {
        trimmed.as_bytes().to_vec()
    } else {
        let compact: String = trimmed.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| {
                GithubError::Config(
                    "the private key is neither PEM text nor base64 of a PEM file".to_owned(),
                )
            })?
    };
    EncodingKey::from_rsa_pem(&pem).map_err(|_| {
        GithubError::Config(
            "the private key is not an RSA private key in PEM form (PKCS#1 or PKCS#8)".to_owned(),
        )
    })
}

/// A token in the cache, with when it was issued so the renewal margin scales with its lifetime.
struct CachedToken {
    token: InstallationToken,
    issued_at: i64,
}

impl CachedToken {
    /// True while the token has more than a quarter of its lifetime (at most five minutes) left.
    fn is_fresh(&self, now: i64) -> bool {
        let lifetime = self.token.expires_at - self.issued_at;
        let margin = (lifetime / 4).min(5 * 60);
        self.token.expires_at - now > margin
    }
}

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct InstallationAnswer {
    id: u64,
    account: Option<AccountAnswer>,
    #[serde(default)]
    target_type: Option<String>,
    #[serde(default)]
    suspended_at: Option<String>,
}

#[derive(Deserialize)]
struct AccountAnswer {
    #[serde(default)]
    login: Option<String>,
    #[serde(default)]
    slug: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RepositoriesAnswer {
    repositories: Vec<RepositoryAnswer>,
}

#[derive(Deserialize)]
struct RepositoryAnswer {
    id: u64,
    full_name: String,
    #[serde(default)]
    private: bool,
    clone_url: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    message: Option<String>,
}

/// An answer of which only the id is read.
#[derive(Deserialize)]
struct IdAnswer {
    id: u64,
}

/// The path of `rest` below repository `owner/repo` (`/repos/OWNER/REPO{rest}`), the owner and
/// name escaped; `rest`, a path and maybe a query, comes escaped by the caller.
fn repo_path(owner: &str, repo: &str, rest: &str) -> String {
    format!(
        "/repos/{}/{}{rest}",
        url_component(owner),
        url_component(repo)
    )
}

/// A request's JSON body; `what` names it in the error.
fn json_body(value: &impl Serialize, what: &str) -> Result<serde_json::Value, GithubError> {
    serde_json::to_value(value)
        .map_err(|error| GithubError::Config(format!("cannot encode {what}: {error}")))
}

/// Who a request authenticates as.
enum Credential {
    App,
    Installation(u64),
}

impl GithubApp {
    /// Builds the client; fails when the key cannot be read.
    pub fn new(config: &AppConfig) -> Result<GithubApp, GithubError> {
        let key = decode_private_key(config.private_key.expose_secret())?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|error| GithubError::Config(format!("HTTP client: {error}")))?;
        Ok(GithubApp {
            app_id: config.app_id,
            key: Arc::new(key),
            api_url: config.api_url.trim_end_matches('/').to_owned(),
            http,
            tokens: Arc::new(std::sync::Mutex::new(HashMap::new())),
            retry: RetryPolicy::default(),
        })
    }

    /// Replaces the retry policy (tests make it fast).
    pub fn with_retry(mut self, retry: RetryPolicy) -> GithubApp {
        self.retry = retry;
        self
    }

    /// The App's id.
    pub fn app_id(&self) -> u64 {
        self.app_id
    }

    /// The API base URL in use.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// A fresh App JWT: RS256, `iat` a minute in the past, expiring within ten minutes.
    pub fn app_jwt(&self) -> Result<SecretString, GithubError> {
        let now = now_seconds();
        let claims = Claims {
            iat: now - JWT_BACKDATE_SECONDS,
            exp: now - JWT_BACKDATE_SECONDS + JWT_LIFETIME_SECONDS,
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(SecretString::from)
            .map_err(|error| GithubError::Config(format!("cannot sign the App JWT: {error}")))
    }

    /// The installation's own token, from the cache while it has more than a safe margin left.
    /// It carries every permission the installation grants and is used only by this client's
    /// own calls; never hand it to anyone (see [`GithubApp::clone_token`]).
    pub async fn installation_token(
        &self,
        installation_id: u64,
    ) -> Result<InstallationToken, GithubError> {
        self.token(TokenScope::Installation(installation_id)).await
    }

    /// A token that can read one repository's contents (clone and fetch it) and nothing else:
    /// asked for with `repository_ids: [repository_id]` and `permissions: {contents: read}`, and
    /// cached apart from the installation's own token. This is the token agents get.
    pub async fn clone_token(
        &self,
        installation_id: u64,
        repository_id: u64,
    ) -> Result<InstallationToken, GithubError> {
        self.token(TokenScope::RepositoryContents {
            installation_id,
            repository_id,
        })
        .await
    }

    /// A token of `scope`, from the cache while it has more than a safe margin left. Callers
    /// that need the same token at the same time share one request to GitHub.
    async fn token(&self, scope: TokenScope) -> Result<InstallationToken, GithubError> {
        loop {
            let answer = {
                let mut tokens = self
                    .tokens
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match tokens.get(&scope) {
                    Some(TokenSlot::Cached(cached)) if cached.is_fresh(now_seconds()) => {
                        return Ok(cached.token.clone());
                    }
                    Some(TokenSlot::Requesting(answer)) => Err(answer.clone()),
                    _ => {
                        let (sender, receiver) = watch::channel(None);
                        tokens.insert(scope, TokenSlot::Requesting(receiver));
                        Ok(sender)
                    }
                }
            };
            match answer {
                Ok(sender) => {
                    let mut in_flight = RequestInFlight {
                        tokens: &self.tokens,
                        scope,
                        finished: false,
                    };
                    let issued_at = now_seconds();
                    let result = self.request_token(scope).await;
                    {
                        let mut tokens = self
                            .tokens
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner());
                        match &result {
                            Ok(token) => tokens.insert(
                                scope,
                                TokenSlot::Cached(CachedToken {
                                    token: token.clone(),
                                    issued_at,
                                }),
                            ),
                            Err(_) => tokens.remove(&scope),
                        };
                    }
                    in_flight.finished = true;
                    let _ = sender.send(Some(result.clone()));
                    return result;
                }
                Err(mut answer) => {
                    // The caller that made the request is gone without an answer: ask again.
                    if let Ok(result) = answer.wait_for(Option::is_some).await
                        && let Some(result) = result.as_ref()
                    {
                        return result.clone();
                    }
                }
            }
        }
    }

    /// Asks GitHub for a new token of `scope`.
    async fn request_token(&self, scope: TokenScope) -> Result<InstallationToken, GithubError> {
        let body = scope.request_body();
        let answer: TokenAnswer = self
            .call(
                Method::POST,
                &format!(
                    "/app/installations/{}/access_tokens",
                    scope.installation_id()
                ),
                Credential::App,
                body.as_ref(),
                "an installation token",
            )
            .await?;
        let expires_at = time::OffsetDateTime::parse(
            &answer.expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map(|instant| instant.unix_timestamp())
        .map_err(|_| GithubError::Transport {
            what: "an installation token".to_owned(),
            detail: "expires_at is not an RFC 3339 time".to_owned(),
        })?;
        Ok(InstallationToken {
            token: SecretString::from(answer.token),
            expires_at,
        })
    }

    /// Forgets a cached token (after GitHub refused it); a request under way is left to finish.
    pub async fn forget_token(&self, installation_id: u64) {
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let scope = TokenScope::Installation(installation_id);
        if matches!(tokens.get(&scope), Some(TokenSlot::Cached(_))) {
            tokens.remove(&scope);
        }
    }

    /// Looks an installation up with the App JWT.
    pub async fn installation(&self, installation_id: u64) -> Result<Installation, GithubError> {
        let answer: InstallationAnswer = self
            .call(
                Method::GET,
                &format!("/app/installations/{installation_id}"),
                Credential::App,
                None,
                "the installation",
            )
            .await?;
        let account = answer.account.as_ref();
        Ok(Installation {
            id: answer.id,
            account_login: account
                .and_then(|account| account.login.clone().or_else(|| account.slug.clone()))
                .unwrap_or_default(),
            account_type: account
                .and_then(|account| account.kind.clone())
                .or(answer.target_type)
                .unwrap_or_else(|| "Enterprise".to_owned()),
            suspended: answer.suspended_at.is_some(),
        })
    }

    /// Every repository the installation grants (all pages).
    pub async fn installation_repositories(
        &self,
        installation_id: u64,
    ) -> Result<Vec<Repository>, GithubError> {
        let mut repositories = Vec::new();
        for page in 1..=100 {
            let answer: RepositoriesAnswer = self
                .call(
                    Method::GET,
                    &format!("/installation/repositories?per_page=100&page={page}"),
                    Credential::Installation(installation_id),
                    None,
                    "the installation's repositories",
                )
                .await?;
            let count = answer.repositories.len();
            repositories.extend(
                answer
                    .repositories
                    .into_iter()
                    .map(|repository| Repository {
                        id: repository.id,
                        full_name: repository.full_name,
                        private: repository.private,
                        clone_url: repository.clone_url,
                    }),
            );
            if count < 100 {
                break;
            }
        }
        Ok(repositories)
    }

    /// The commit a branch points at now.
    pub async fn branch_head(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        branch: &str,
    ) -> Result<String, GithubError> {
        #[derive(Deserialize)]
        struct Commit {
            sha: String,
        }
        #[derive(Deserialize)]
        struct Branch {
            commit: Commit,
        }
        let branch: Branch = self
            .call(
                Method::GET,
                &repo_path(owner, repo, &format!("/branches/{}", url_component(branch))),
                Credential::Installation(installation_id),
                None,
                "the branch head",
            )
            .await?;
        Ok(branch.commit.sha)
    }

    /// A repository's clone URL as GitHub gives it.
    pub async fn repository(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
    ) -> Result<Repository, GithubError> {
        let answer: RepositoryAnswer = self
            .call(
                Method::GET,
                &repo_path(owner, repo, ""),
                Credential::Installation(installation_id),
                None,
                "the repository",
            )
            .await?;
        Ok(Repository {
            id: answer.id,
            full_name: answer.full_name,
            private: answer.private,
            clone_url: answer.clone_url,
        })
    }

    /// Creates a deployment. GitHub answers 201 with it; with `auto_merge: false` it never
    /// answers 202 (a merge instead of a deployment).
    pub async fn create_deployment(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        deployment: &NewDeployment,
    ) -> Result<Deployment, GithubError> {
        let body = json_body(deployment, "the deployment")?;
        let answer: DeploymentAnswer = self
            .call(
                Method::POST,
                &repo_path(owner, repo, "/deployments"),
                Credential::Installation(installation_id),
                Some(&body),
                "a new deployment",
            )
            .await?;
        Ok(answer.into())
    }

    /// Adds a status to a deployment; returns the status's id.
    pub async fn create_deployment_status(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        deployment_id: u64,
        status: &NewDeploymentStatus,
    ) -> Result<u64, GithubError> {
        let body = json_body(status, "the deployment status")?;
        let answer: IdAnswer = self
            .call(
                Method::POST,
                &repo_path(
                    owner,
                    repo,
                    &format!("/deployments/{deployment_id}/statuses"),
                ),
                Credential::Installation(installation_id),
                Some(&body),
                "a deployment status",
            )
            .await?;
        Ok(answer.id)
    }

    /// The newest deployments (at most 100) of commit `sha` to `environment`, newest first.
    pub async fn deployments_of_commit(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        sha: &str,
        environment: &str,
    ) -> Result<Vec<Deployment>, GithubError> {
        let answers: Vec<DeploymentAnswer> = self
            .call(
                Method::GET,
                &repo_path(
                    owner,
                    repo,
                    &format!(
                        "/deployments?sha={}&environment={}&per_page=100",
                        url_component(sha),
                        url_component(environment)
                    ),
                ),
                Credential::Installation(installation_id),
                None,
                "the commit's deployments",
            )
            .await?;
        Ok(answers.into_iter().map(Deployment::from).collect())
    }

    /// Creates a check run `name` on commit `sha`; returns its id.
    pub async fn create_check_run(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        name: &str,
        sha: &str,
        fields: &CheckRunFields,
    ) -> Result<u64, GithubError> {
        let mut body = json_body(fields, "the check run")?;
        if let Some(members) = body.as_object_mut() {
            members.insert("name".into(), name.into());
            members.insert("head_sha".into(), sha.into());
        }
        let answer: CheckRun = self
            .call(
                Method::POST,
                &repo_path(owner, repo, "/check-runs"),
                Credential::Installation(installation_id),
                Some(&body),
                "a new check run",
            )
            .await?;
        Ok(answer.id)
    }

    /// Updates check run `check_run_id`.
    pub async fn update_check_run(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        check_run_id: u64,
        fields: &CheckRunFields,
    ) -> Result<(), GithubError> {
        let body = json_body(fields, "the check run")?;
        let _: CheckRun = self
            .call(
                Method::PATCH,
                &repo_path(owner, repo, &format!("/check-runs/{check_run_id}")),
                Credential::Installation(installation_id),
                Some(&body),
                "a check run",
            )
            .await?;
        Ok(())
    }

    /// The check runs named `name` on commit `sha` (at most 100, every run rather than the
    /// newest alone).
    pub async fn check_runs_of_commit(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        sha: &str,
        name: &str,
    ) -> Result<Vec<CheckRun>, GithubError> {
        #[derive(Deserialize)]
        struct CheckRuns {
            check_runs: Vec<CheckRun>,
        }
        let answer: CheckRuns = self
            .call(
                Method::GET,
                &repo_path(
                    owner,
                    repo,
                    &format!(
                        "/commits/{}/check-runs?check_name={}&filter=all&per_page=100",
                        url_component(sha),
                        url_component(name)
                    ),
                ),
                Credential::Installation(installation_id),
                None,
                "the commit's check runs",
            )
            .await?;
        Ok(answer.check_runs)
    }

    /// Sets a commit status on commit `sha`; returns its id.
    pub async fn create_commit_status(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        sha: &str,
        status: &NewCommitStatus,
    ) -> Result<u64, GithubError> {
        let body = json_body(status, "the commit status")?;
        let answer: IdAnswer = self
            .call(
                Method::POST,
                &repo_path(owner, repo, &format!("/statuses/{}", url_component(sha))),
                Credential::Installation(installation_id),
                Some(&body),
                "a commit status",
            )
            .await?;
        Ok(answer.id)
    }

    /// The App's webhook deliveries (every attempt GitHub made, redeliveries included), newest
    /// first, back to the first delivered before `since` (seconds since the epoch) or as far as
    /// GitHub keeps them, following GitHub's `cursor` pages.
    pub async fn webhook_deliveries(
        &self,
        since: i64,
    ) -> Result<Vec<WebhookDelivery>, GithubError> {
        let mut deliveries = Vec::new();
        let mut path = "/app/hook/deliveries?per_page=100".to_owned();
        for _ in 0..MAX_DELIVERY_PAGES {
            let (page, headers): (Vec<DeliveryAnswer>, _) = self
                .call_with_headers(
                    Method::GET,
                    &path,
                    Credential::App,
                    None,
                    "the App's webhook deliveries",
                )
                .await?;
            let mut reached_since = page.is_empty();
            for answer in page {
                let delivered_at = time::OffsetDateTime::parse(
                    &answer.delivered_at,
                    &time::format_description::well_known::Rfc3339,
                )
                .map(|instant| instant.unix_timestamp())
                .unwrap_or(0);
                reached_since |= delivered_at < since;
                deliveries.push(WebhookDelivery {
                    id: answer.id,
                    guid: answer.guid,
                    delivered_at,
                    redelivery: answer.redelivery,
                    status_code: answer.status_code,
                    event: answer.event,
                    action: answer.action,
                    installation_id: answer.installation_id,
                    repository_id: answer.repository_id,
                });
            }
            match next_cursor(&headers) {
                Some(cursor) if !reached_since => {
                    path = format!(
                        "/app/hook/deliveries?per_page=100&cursor={}",
                        url_component(&cursor)
                    );
                }
                _ => break,
            }
        }
        Ok(deliveries)
    }

    /// Asks GitHub to make the webhook delivery `delivery_id` again (GitHub answers 202 and
    /// delivers it soon after, under the event's same `X-GitHub-Delivery`).
    pub async fn redeliver(&self, delivery_id: u64) -> Result<(), GithubError> {
        let _: serde_json::Value = self
            .call(
                Method::POST,
                &format!("/app/hook/deliveries/{delivery_id}/attempts"),
                Credential::App,
                None,
                "a redelivery",
            )
            .await?;
        Ok(())
    }

    /// The numbers of the repository's open pull requests, newest first, from every page of
    /// `GET /repos/{owner}/{repo}/pulls?state=open` (100 a page). Pages are read one after the
    /// other, so a pull request closed while they are read can move to a page already read and
    /// be missed: a caller that acts on a pull request's absence should make sure of it later.
    pub async fn open_pull_requests(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
    ) -> Result<Vec<u64>, GithubError> {
        let pulls: Vec<PullRequestAnswer> = self
            .every_page(
                &repo_path(owner, repo, "/pulls?state=open"),
                installation_id,
                "the open pull requests",
            )
            .await?;
        // One opened while the pages were read shifts the rest: its neighbour comes twice.
        let mut seen = HashSet::new();
        Ok(pulls
            .into_iter()
            .map(|pull| pull.number)
            .filter(|number| seen.insert(*number))
            .collect())
    }

    /// Every comment on issue or pull request `issue_number`, oldest first (all pages).
    pub async fn issue_comments(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        issue_number: u64,
    ) -> Result<Vec<IssueComment>, GithubError> {
        let answers: Vec<IssueCommentAnswer> = self
            .every_page(
                &repo_path(owner, repo, &format!("/issues/{issue_number}/comments")),
                installation_id,
                "the comments",
            )
            .await?;
        let mut seen = HashSet::new();
        Ok(answers
            .into_iter()
            .filter(|answer| seen.insert(answer.id))
            .map(|answer| IssueComment {
                id: answer.id,
                body: answer.body.unwrap_or_default(),
                user_login: answer.user.map(|user| user.login),
            })
            .collect())
    }

    /// Comments `body` (Markdown) on issue or pull request `issue_number`; returns the
    /// comment's id.
    pub async fn create_issue_comment(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        issue_number: u64,
        body: &str,
    ) -> Result<u64, GithubError> {
        let answer: IdAnswer = self
            .call(
                Method::POST,
                &repo_path(owner, repo, &format!("/issues/{issue_number}/comments")),
                Credential::Installation(installation_id),
                Some(&serde_json::json!({"body": body})),
                "a new comment",
            )
            .await?;
        Ok(answer.id)
    }

    /// Replaces the body of comment `comment_id` with `body` (a comment GitHub does not have,
    /// deleted say, is a 404).
    pub async fn update_issue_comment(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        comment_id: u64,
        body: &str,
    ) -> Result<(), GithubError> {
        let _: IdAnswer = self
            .call(
                Method::PATCH,
                &repo_path(owner, repo, &format!("/issues/comments/{comment_id}")),
                Credential::Installation(installation_id),
                Some(&serde_json::json!({"body": body})),
                "a comment",
            )
            .await?;
        Ok(())
    }

    /// Takes label `name` off issue or pull request `issue_number`. GitHub answers 404 for a
    /// label the issue does not have; that is success here (the label is gone either way). Its
    /// 404 does not tell a missing label from a missing issue or repository, which the calls
    /// that follow find out.
    pub async fn remove_label(
        &self,
        installation_id: u64,
        owner: &str,
        repo: &str,
        issue_number: u64,
        name: &str,
    ) -> Result<(), GithubError> {
        let removed: Result<serde_json::Value, GithubError> = self
            .call(
                Method::DELETE,
                &repo_path(
                    owner,
                    repo,
                    &format!("/issues/{issue_number}/labels/{}", url_component(name)),
                ),
                Credential::Installation(installation_id),
                None,
                "a label",
            )
            .await;
        match removed {
            Ok(_) => Ok(()),
            Err(error) if error.status() == Some(404) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Every item of a list GitHub answers as a JSON array, read page by page (`per_page=100`,
    /// `page` counting from 1) until a page is not full, at most [`MAX_LIST_PAGES`] pages;
    /// `path` may carry the list's own query already.
    async fn every_page<T: DeserializeOwned>(
        &self,
        path: &str,
        installation_id: u64,
        what: &str,
    ) -> Result<Vec<T>, GithubError> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        for page in 1..=MAX_LIST_PAGES {
            let answer: Vec<T> = self
                .call(
                    Method::GET,
                    &format!("{path}{separator}per_page={LIST_PAGE_SIZE}&page={page}"),
                    Credential::Installation(installation_id),
                    None,
                    what,
                )
                .await?;
            let count = answer.len();
            items.extend(answer);
            if count < LIST_PAGE_SIZE {
                break;
            }
        }
        Ok(items)
    }

    /// Sends one API request with retries on 5xx and rate limits, and reads its JSON answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        credential: Credential,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<T, GithubError> {
        self.call_with_headers(method, path, credential, body, what)
            .await
            .map(|(answer, _)| answer)
    }

    /// [`GithubApp::call`], answering the response's headers too (a page's `Link`).
    async fn call_with_headers<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        credential: Credential,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<(T, reqwest::header::HeaderMap), GithubError> {
        let url = format!("{}{}", self.api_url, path);
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            let authorization = match &credential {
                Credential::App => format!("Bearer {}", self.app_jwt()?.expose_secret()),
                Credential::Installation(id) => format!(
                    "Bearer {}",
                    Box::pin(self.installation_token(*id))
                        .await?
                        .token
                        .expose_secret()
                ),
            };
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
                .header("Authorization", authorization);
            if let Some(body) = body {
                request = request.json(body);
            }
            let outcome = request.send().await;
            let retry_after = match outcome {
                Ok(response) if response.status().is_success() => {
                    let headers = response.headers().clone();
                    return response
                        .json::<T>()
                        .await
                        .map(|answer| (answer, headers))
                        .map_err(|error| GithubError::Transport {
                            what: what.to_owned(),
                            detail: format!("unexpected answer: {}", without_url(error)),
                        });
                }
                Ok(response) => {
                    let status = response.status();
                    let rate_limited = is_rate_limited(&response);
                    let wait = retry_after_header(&response);
                    let message = response
                        .json::<ErrorAnswer>()
                        .await
                        .ok()
                        .and_then(|answer| answer.message)
                        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
                    if status == StatusCode::UNAUTHORIZED
                        && let Credential::Installation(id) = credential
                    {
                        self.forget_token(id).await;
                    }
                    let retryable = status.is_server_error() || rate_limited;
                    if !retryable || attempt >= self.retry.attempts {
                        return Err(GithubError::Status {
                            status: status.as_u16(),
                            what: what.to_owned(),
                            message: text::clip(&message, text::QUOTED_CHARS),
                            rate_limited,
                            retry_after: wait,
                        });
                    }
                    wait
                }
                Err(error) => {
                    if attempt >= self.retry.attempts {
                        return Err(GithubError::Transport {
                            what: what.to_owned(),
                            detail: without_url(error),
                        });
                    }
                    None
                }
            };
            let pause = retry_after.unwrap_or(delay).min(self.retry.max_delay);
            tracing::warn!(
                what,
                attempt,
                pause_ms = pause.as_millis() as u64,
                "retrying a GitHub request"
            );
            tokio::time::sleep(pause).await;
            delay = (delay * 2).min(self.retry.max_delay);
            attempt += 1;
        }
    }
}

/// How many items a page of a list asks for (GitHub's most).
const LIST_PAGE_SIZE: usize = 100;
/// The most pages one listing of pull requests or comments reads.
const MAX_LIST_PAGES: usize = 100;

/// The most pages of webhook deliveries one listing reads (100 deliveries each).
const MAX_DELIVERY_PAGES: usize = 100;

/// The `cursor` of the `rel="next"` page a `Link` header names, if it names one.
fn next_cursor(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params
            .split(';')
            .any(|param| param.trim() == "rel=\"next\"")
        {
            return None;
        }
        let target = target.trim().trim_start_matches('<').trim_end_matches('>');
        let query = target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name == "cursor").then(|| percent_decode(value))
        })
    })
}

/// Decodes `%XX` escapes (a cursor is sent encoded again).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(byte) = value
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            decoded.push(byte);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn is_rate_limited(response: &reqwest::Response) -> bool {
    let status = response.status();
    (status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS)
        && (response
            .headers()
            .get("x-ratelimit-remaining")
            .is_some_and(|value| value == "0")
            || response.headers().contains_key("retry-after")
            || status == StatusCode::TOO_MANY_REQUESTS)
}

/// How long GitHub asks to wait: `Retry-After` seconds, or, when the rate limit is used up,
/// until `x-ratelimit-reset` (seconds since the epoch).
fn retry_after_header(response: &reqwest::Response) -> Option<Duration> {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    if let Some(seconds) = header("retry-after").and_then(|value| value.parse::<u64>().ok()) {
        return Some(Duration::from_secs(seconds));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset").and_then(|value| value.parse::<i64>().ok())?;
        return Some(Duration::from_secs((reset - now_seconds()).max(1) as u64));
    }
    None
}

/// A transport error's text without the URL (which never holds a token, but keeps errors short).
fn without_url(error: reqwest::Error) -> String {
    error.without_url().to_string()
}
