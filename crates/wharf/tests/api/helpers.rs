//! `spawn_app()`: the real server on 127.0.0.1 port 0, with a fresh database of the backend
//! this run tests (see `wharf_store::testing`) and, when asked, the GitHub stand-in; plus small
//! helpers to talk to it as GitHub, agents and users do.

use std::io::Write;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use wharf_github::{AppConfig, GithubApp, RetryPolicy};
use wharf_github_standin::schema::OpenApi;
use wharf_github_standin::{AppKey, GithubStandin, StandinConfig};
use wharf_server::{Backoff, GithubSettings, RequestLimits, RunningServer, ServerConfig};
use wharf_store::Store;
use wharf_store::testing::TestDatabase;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123";
pub const WEBHOOK_SECRET: &str = "test-webhook-secret";
pub const APP_ID: u64 = 4242;

/// Logs of this test process, kept so tests can assert that no secret was ever logged.
/// Each test runs in its own process under nextest, so one global subscriber per test is right.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = std::io::stderr().write_all(bytes);
        }
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> LogCapture {
    let capture = LogCapture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Only the first test in a process installs it; others share it.
    let _ = tracing::subscriber::set_global_default(subscriber);
    capture
}

/// How to set the app up.
#[derive(Default)]
pub struct Options {
    /// Start the GitHub stand-in and configure the App against it.
    pub github: bool,
    /// With `github`: configure no App and no webhook secret, as a server whose App is to be
    /// made from the dashboard (GitHub's API and web pages are the stand-in's).
    pub github_app_from_dashboard: bool,
    /// Lease length; short values test expiry.
    pub lease: Option<Duration>,
    pub max_attempts: Option<i64>,
    /// The most log text kept per build.
    pub max_log_bytes: Option<i64>,
    /// How long the stand-in's installation tokens live (GitHub: an hour).
    pub github_token_ttl: Option<Duration>,
    /// How long stored webhook bodies are kept (default 30 days).
    pub delivery_retention: Option<Duration>,
    /// Attempts at a notification before it is a dead letter (default 10).
    pub notification_max_attempts: Option<i64>,
    /// The server's registry (`WHARF_REGISTRY`, plain HTTP): tests whose agents push or pull
    /// start one first. Default: `registry.test`, which nothing answers.
    pub registry: Option<String>,
    /// Start the server with no registry at all.
    pub without_registry: bool,
    /// The limits the HTTP edge puts on its callers (default: a real server's).
    pub limits: Option<RequestLimits>,
    /// CAs the email sinks' SMTP servers may be signed by (`WHARF_SMTP_CA_FILE`'s PEM).
    pub smtp_ca_pem: Option<Vec<u8>>,
    /// Services may build from a git repository on this machine (as under `wharf up`).
    pub local_repositories: bool,
    /// How often missed webhooks are caught up (default: an hour, so only once, at start).
    pub catch_up_interval: Option<Duration>,
}

/// The registry a test server names when the test gives none.
pub const TEST_REGISTRY: &str = "registry.test";

pub struct TestApp {
    pub url: String,
    pub store: Store,
    pub http: reqwest::Client,
    pub github: Option<GithubStandin>,
    pub app_key: Option<AppKey>,
    pub logs: LogCapture,
    pub database_url: String,
    /// What the server was started with, for replicas of it.
    pub config: ServerConfig,
    /// The server's own OpenAPI document (`GET /v1/openapi.json`): every `/v1` exchange a test
    /// makes through these helpers that the server accepts is checked against it.
    pub api_document: Arc<OpenApi>,
    /// Keeps the server running for the test's life.
    _server: Option<RunningServer>,
    _database: TestDatabase,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let logs = capture_logs();
    let (store, database) = TestDatabase::create().await.expect("test database");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = ServerConfig::new(SecretString::from(ADMIN_TOKEN));
    config.public_url = url.clone();
    // GitHub reports retry fast, so tests of a failing GitHub wait little.
    config.github_retry = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_millis(500),
    };
    config.github_report_interval = Duration::from_millis(100);
    // Notifications are looked for and retried fast too.
    config.notification_retry = Backoff {
        first: Duration::from_millis(50),
        max: Duration::from_millis(500),
    };
    config.notification_interval = Duration::from_millis(50);
    if let Some(attempts) = options.notification_max_attempts {
        config.notification_max_attempts = attempts;
    }
    config.lease = options.lease.unwrap_or(Duration::from_secs(30));
    config.max_attempts = options.max_attempts.unwrap_or(3);
    config.lease_check_interval = Duration::from_millis(50);
    config.housekeeping_interval = Duration::from_millis(50);
    if let Some(retention) = options.delivery_retention {
        config.delivery_retention = retention;
    }
    if let Some(limits) = options.limits {
        config.limits = limits;
    }
    if let Some(max_log_bytes) = options.max_log_bytes {
        config.max_log_bytes = max_log_bytes;
    }
    config.smtp_ca_pem = options.smtp_ca_pem;
    config.local_repositories = options.local_repositories;
    config.github_catch_up_interval = options
        .catch_up_interval
        .unwrap_or(Duration::from_secs(3600));
    if !options.without_registry {
        config.registry = Some(options.registry.unwrap_or_else(|| TEST_REGISTRY.to_owned()));
        config.registry_insecure = true;
    }
    let (github, app_key) = if options.github {
        let key = AppKey::generate().expect("openssl generates an RSA key");
        let mut standin_config = StandinConfig::new(APP_ID, &key.public_pem);
        if let Some(ttl) = options.github_token_ttl {
            standin_config.token_ttl = ttl;
        }
        let standin = GithubStandin::start(standin_config)
            .await
            .expect("GitHub stand-in");
        standin.set_webhook_target(&format!("{url}/api/webhooks/github"), WEBHOOK_SECRET);
        let app = GithubApp::new(&AppConfig {
            app_id: APP_ID,
            private_key: SecretString::from(key.private_pem.clone()),
            api_url: standin.api_url(),
        })
        .expect("GitHub App client")
        .with_retry(RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        });
        config.github_api_url = standin.api_url();
        config.github_web_url = standin.api_url();
        config.github = (!options.github_app_from_dashboard).then(|| GithubSettings {
            webhook_secret: Some(SecretString::from(WEBHOOK_SECRET)),
            app: Some(app),
        });
        (Some(standin), Some(key))
    } else {
        config.github = Some(GithubSettings {
            webhook_secret: Some(SecretString::from(WEBHOOK_SECRET)),
            app: None,
        });
        (None, None)
    };
    let server =
        wharf_server::start(listener, store.clone(), config.clone()).expect("server starts");
    let http = reqwest::Client::new();
    let document: Value = http
        .get(format!("{url}/v1/openapi.json"))
        .send()
        .await
        .expect("GET /v1/openapi.json")
        .json()
        .await
        .expect("the OpenAPI document is JSON");
    let api_document = Arc::new(OpenApi::from_document(document).expect("an OpenAPI document"));
    TestApp {
        url,
        store,
        api_document,
        http,
        github,
        app_key,
        logs,
        database_url: database.url.clone(),
        config,
        _server: Some(server),
        _database: database,
    }
}

/// A response read whole.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub async fn read(response: reqwest::Response) -> Answer {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, body, text }
    }
}

pub fn sign(body: &[u8]) -> String {
    wharf_domain::signature::sign(WEBHOOK_SECRET.as_bytes(), body)
}

impl TestApp {
    /// Posts a webhook as GitHub does: signed, with event and delivery headers.
    pub async fn webhook(&self, event: &str, delivery: &str, body: &[u8]) -> Answer {
        self.webhook_with(Some(event), Some(delivery), Some(&sign(body)), body)
            .await
    }

    /// Posts a webhook with any of its headers left out or replaced.
    pub async fn webhook_with(
        &self,
        event: Option<&str>,
        delivery: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Answer {
        let mut request = self
            .http
            .post(format!("{}/api/webhooks/github", self.url))
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/test")
            .body(body.to_vec());
        if let Some(event) = event {
            request = request.header("x-github-event", event);
        }
        if let Some(delivery) = delivery {
            request = request.header("x-github-delivery", delivery);
        }
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        Answer::read(request.send().await.expect("webhook request")).await
    }

    /// Starts another server on the same database with the same settings (another replica);
    /// it runs until the returned handle is dropped.
    pub async fn start_replica(&self) -> (String, RunningServer) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = wharf_server::start(listener, self.store.clone(), self.config.clone())
            .expect("replica starts");
        (url, server)
    }

    /// Stops the server and starts it again on the same database with the same settings, as a
    /// restart of the process does; `url` names the new one.
    pub async fn restart_server(&mut self) {
        self.stop_server().await;
        self.start_server().await;
    }

    /// Stops the server; nothing answers at `url` until [`TestApp::start_server`].
    pub async fn stop_server(&mut self) {
        if let Some(server) = self._server.take() {
            tokio::time::timeout(Duration::from_secs(30), server.stop())
                .await
                .expect("the server stops within 30 s")
                .expect("the server stops cleanly");
        }
    }

    /// Starts the server again on the same database with the same settings, on a new address
    /// that `url` names (and where the GitHub stand-in sends the App's webhooks from then on).
    pub async fn start_server(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.url = format!("http://{}", listener.local_addr().unwrap());
        if let Some(github) = &self.github {
            github.set_webhook_target(&format!("{}/api/webhooks/github", self.url), WEBHOOK_SECRET);
        }
        let server = wharf_server::start(listener, self.store.clone(), self.config.clone())
            .expect("the server starts again");
        self._server = Some(server);
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.get_as(ADMIN_TOKEN, path).await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> Answer {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        let answer = Answer::read(response).await;
        self.check_against_document("GET", path, None, &answer);
        answer
    }

    /// Panics with every difference between an exchange the server accepted (a 2xx) and the
    /// server's OpenAPI document: an undocumented route or status, a request or an answer that
    /// does not fit its schema. Refused requests are left alone: tests send broken ones on
    /// purpose, and every error body is checked by the tests that expect it.
    pub fn check_against_document(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
        answer: &Answer,
    ) {
        if !path_and_query.starts_with("/v1/") || !answer.status.is_success() {
            return;
        }
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let Some(operation) = self.api_document.find_operation(method, path) else {
            panic!(
                "{method} {path} answered {} but is not in /v1/openapi.json",
                answer.status
            );
        };
        // The tests' queries are plain names and numbers, so no percent-decoding is needed.
        let query: Vec<(String, String)> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (name.to_owned(), value.to_owned())
            })
            .collect();
        let mut violations = self.api_document.query_violations(operation, &query);
        if method != "GET" && method != "DELETE" {
            violations.extend(self.api_document.request_violations(operation, body));
        }
        if answer.body != Value::Null || !answer.text.is_empty() {
            violations.extend(self.api_document.response_violations(
                operation,
                answer.status.as_u16(),
                &answer.body,
            ));
        }
        assert!(
            violations.is_empty(),
            "the exchange does not fit /v1/openapi.json:\n{}",
            violations.join("\n")
        );
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.post_as(ADMIN_TOKEN, path, body).await
    }

    pub async fn post_as(&self, token: &str, path: &str, body: Value) -> Answer {
        self.send_json(reqwest::Method::POST, token, path, body)
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send_json(reqwest::Method::PUT, ADMIN_TOKEN, path, body)
            .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        let response = self
            .http
            .delete(format!("{}{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap_or_else(|error| panic!("DELETE {path}: {error}"));
        let answer = Answer::read(response).await;
        self.check_against_document("DELETE", path, None, &answer);
        answer
    }

    async fn send_json(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Value,
    ) -> Answer {
        let response = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        let answer = Answer::read(response).await;
        self.check_against_document(method.as_str(), path, Some(&body), &answer);
        answer
    }

    /// Creates a service through the API and returns its JSON.
    pub async fn create_service(&self, name: &str, repo: &str, branch: &str) -> Value {
        let answer = self
            .post(
                "/v1/services",
                json!({"name": name, "repo": repo, "branch": branch, "port": 8080}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        answer.body
    }

    /// Delivers the `installation` webhook GitHub sends when installation 42 of account `acme`
    /// is created with `repositories`, so builds of those repositories can get tokens.
    pub async fn announce_installation(&self, repositories: &[&str]) {
        let repositories: Vec<Value> = repositories
            .iter()
            .map(|name| json!({"id": repository_id(name), "full_name": name, "private": true}))
            .collect();
        let body = json!({
            "action": "created",
            "installation": {"id": 42, "account": {"login": "acme", "type": "Organization"}},
            "repositories": repositories
        });
        let answer = self
            .webhook(
                "installation",
                "installation-created",
                body.to_string().as_bytes(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    }

    /// Issues an agent token through the API; it allows `build` and `deploy` for any service.
    pub async fn create_agent(&self, name: &str) -> String {
        self.create_scoped_agent(json!({"name": name})).await
    }

    /// Issues an agent token through the API from the whole request: its name, and the
    /// `labels`, `projects` and `services` it allows.
    pub async fn create_scoped_agent(&self, request: Value) -> String {
        let answer = self.post("/v1/agents", request).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        answer.body["token"].as_str().unwrap().to_owned()
    }

    /// The builds, newest first.
    pub async fn builds(&self) -> Vec<Value> {
        let answer = self.get("/v1/builds").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.body.as_array().unwrap().clone()
    }

    pub async fn build(&self, id: i64) -> Value {
        let answer = self.get(&format!("/v1/builds/{id}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.body
    }

    /// Queues a build of `service` at `commit` and claims it as the agent whose token is
    /// `agent`, which must get that build; answers its id.
    pub async fn claimed_build(&self, agent: &str, service: &str, commit: &str) -> i64 {
        let queued = self
            .post(
                &format!("/v1/services/{service}/builds"),
                json!({"ref": commit}),
            )
            .await;
        assert_eq!(queued.status, StatusCode::CREATED, "{}", queued.text);
        let id = queued.body["id"].as_i64().unwrap();
        self.claim_build(agent, id).await;
        id
    }

    /// Claims as the agent whose token is `agent`, which must get build `id`.
    pub async fn claim_build(&self, agent: &str, id: i64) {
        let claim = self
            .post_as(agent, "/v1/agent/claim", json!({"wait_ms": 2000}))
            .await;
        assert_eq!(claim.status, StatusCode::OK, "{}", claim.text);
        assert_eq!(claim.body["job"]["build"]["id"], id, "{}", claim.text);
    }

    /// Claims the rollout waiting for the agent whose token is `agent` and reports it live
    /// through the agent API, as a real agent would; answers the rollout's id.
    pub async fn roll_out_live(&self, agent: &str) -> i64 {
        let claimed = self
            .post_as(agent, "/v1/agent/rollouts/claim", json!({"wait_ms": 10000}))
            .await;
        assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.text);
        let rollout = claimed.body["job"]["rollout_id"]
            .as_i64()
            .unwrap_or_else(|| panic!("a rollout to claim: {}", claimed.text));
        for state in ["starting", "health_checking", "live"] {
            let answer = self
                .post_as(
                    agent,
                    &format!("/v1/agent/rollouts/{rollout}/state"),
                    json!({"state": state}),
                )
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        }
        rollout
    }

    /// Waits until build `id` is in `state`, failing after `deadline`.
    pub async fn wait_for_build_state(&self, id: i64, state: &str, deadline: Duration) -> Value {
        let started = tokio::time::Instant::now();
        loop {
            let build = self.build(id).await;
            if build["state"] == state {
                return build;
            }
            assert!(
                started.elapsed() < deadline,
                "build #{id} did not reach {state} within {deadline:?}: {build}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A run of the real `wharf` CLI against a test server: its exit code and what it printed.
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// Both streams, standard output first.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs the real `wharf` binary against `app` with nothing of this process's environment but
/// `PATH`: with `token` (none: no `WHARF_TOKEN`), `input` on its standard input, in `dir` when
/// given.
pub async fn run_cli(
    app: &TestApp,
    token: Option<&str>,
    args: &[&str],
    input: &[u8],
    dir: Option<&std::path::Path>,
) -> CliRun {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WHARF_SERVER", &app.url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(token) = token {
        command.env("WHARF_TOKEN", token);
    }
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command.spawn().expect("wharf runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    CliRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Waits until `condition` holds, looking every 20 ms; fails saying `what` did not happen
/// within `deadline`.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    while !condition().await {
        assert!(started.elapsed() < deadline, "{what} within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A push payload as GitHub sends it, with the fields Wharf reads and a realistic rest.
/// The id GitHub gives repository `repo` in these tests: the same for a name wherever a test
/// names it (pushes, installations), so a service is linked to the repository it tracks.
pub fn repository_id(repo: &str) -> u64 {
    // FNV-1a of the lowercase name, kept within GitHub's range of ids.
    let hash = repo
        .to_ascii_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    1 + hash % 1_000_000_000
}

pub fn push_payload(repo: &str, git_ref: &str, after: &str) -> Vec<u8> {
    push_payload_from(repo, git_ref, &"0".repeat(40), after)
}

/// [`push_payload`] of a ref that moved from `before` to `after`.
pub fn push_payload_from(repo: &str, git_ref: &str, before: &str, after: &str) -> Vec<u8> {
    let zero = "0".repeat(40);
    json!({
        "ref": git_ref,
        "before": before,
        "after": after,
        "created": false,
        "deleted": after == zero,
        "forced": false,
        "base_ref": null,
        "compare": format!("https://github.com/{repo}/compare/{}...{}", before.get(..12).unwrap_or(before), after.get(..12).unwrap_or(after)),
        "commits": [],
        "head_commit": null,
        "repository": {
            "id": repository_id(repo),
            "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
            "name": repo.split('/').nth(1).unwrap(),
            "full_name": repo,
            "private": true,
            "owner": {"login": repo.split('/').next().unwrap(), "id": 1},
            "clone_url": format!("https://github.com/{repo}.git"),
            "default_branch": "main"
        },
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"login": "octocat", "id": 1},
        "installation": {"id": 42, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI="}
    })
    .to_string()
    .into_bytes()
}

/// A commit SHA made of one repeated hex digit.
pub fn sha(digit: char) -> String {
    digit.to_string().repeat(40)
}

/// A `wharf server` child process and the address it listens on; killed when dropped.
pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub url: String,
}

/// Starts the real `wharf server` on a free port of 127.0.0.1 with the test admin token and
/// webhook secret, the test registry, `PATH`, and `env` alone; returns once it listens.
pub async fn start_wharf_server(env: &[(&str, &str)]) -> ServerProcess {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
    command
        .arg("server")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WHARF_LISTEN", "127.0.0.1:0")
        .env("WHARF_TOKEN", ADMIN_TOKEN)
        .env("WHARF_GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("WHARF_REGISTRY", TEST_REGISTRY);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("wharf server starts");
    let url = listening_url(&mut child).await;
    ServerProcess { child, url }
}

/// Reads a `wharf server`'s log until it says where it listens, then keeps draining the log so
/// the server never blocks on a full pipe.
pub async fn listening_url(child: &mut tokio::process::Child) -> String {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.split("addr=").nth(1) {
                return format!("http://{}", addr.split_whitespace().next().unwrap());
            }
        }
        panic!("wharf server exited before listening");
    })
    .await
    .expect("wharf server listens within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    url
}
