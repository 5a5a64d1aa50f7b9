//! The scene of the benchmarks that build from a repository (`build`, `deploy`): a real
//! `wharf server` whose GitHub App is served by the GitHub stand-in, which holds one repository of
//! the App's installation on the account `acme` (git's smart HTTP behind token auth), and a real
//! registry (Debian's `docker-registry`) on loopback.

use std::path::Path;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use wharf_github::{AppConfig, GithubApp};
use wharf_github_standin::{AppKey, GithubStandin, StandinConfig};
use wharf_runtime::registry::LocalRegistry;

use crate::procs::{self, Child, WharfLaunch};

/// The account the App is installed on, and that owns the repository.
const ACCOUNT: &str = "acme";

/// A `wharf server` wired to the GitHub stand-in, a registry, and the temporary directory that
/// holds their data and logs.
pub struct GithubScene {
    pub standin: GithubStandin,
    pub registry: LocalRegistry,
    /// The App as the scripts use it, to mint the installation tokens Wharf would use.
    pub app: GithubApp,
    pub http: reqwest::Client,
    pub wharf: procs::Wharf,
    /// The webhook secret Wharf checks deliveries against.
    pub secret: String,
    /// The App's installation on `acme`.
    pub installation: u64,
    /// `acme/NAME`, the repository the services build from.
    pub repository: String,
    pub dir: tempfile::TempDir,
}

impl GithubScene {
    /// Starts the stand-in with the App `app_id` installed on `acme` as `installation` and an
    /// empty repository `acme/{repository_name}`, a registry, and `wharf server` (its log is
    /// `wharf-{label}.log` in the scene's directory) knowing the App.
    pub async fn start(
        wharf_bin: &Path,
        label: &str,
        app_id: u64,
        installation: u64,
        repository_name: &str,
    ) -> anyhow::Result<GithubScene> {
        let dir = tempfile::tempdir()?;
        let key = AppKey::generate()?;
        let mut config = StandinConfig::new(app_id, &key.public_pem);
        config.openapi_path = None;
        let standin = GithubStandin::start(config).await?;
        let repository = format!("{ACCOUNT}/{repository_name}");
        standin.add_installation(installation, ACCOUNT);
        standin.add_repository(installation, &repository)?;
        let registry = LocalRegistry::start(&dir.path().join("registry"), "127.0.0.1:0").await?;
        let http = procs::http_client(4)?;
        let secret = procs::random_hex(16)?;
        let launch = WharfLaunch::fresh(wharf_bin, dir.path(), &secret)?;
        let app_id_text = app_id.to_string();
        let api_url = standin.api_url();
        let wharf = launch
            .start(
                &http,
                label,
                &[
                    ("WHARF_GITHUB_APP_ID", &app_id_text),
                    ("WHARF_GITHUB_APP_PRIVATE_KEY", &key.private_pem),
                    ("WHARF_GITHUB_API_URL", &api_url),
                    // The server names the registry to its agents, and that it speaks plain
                    // HTTP: agents learn both when they register.
                    ("WHARF_REGISTRY", &registry.address),
                    ("WHARF_REGISTRY_INSECURE", "true"),
                ],
            )
            .await?;
        let app = GithubApp::new(&AppConfig {
            app_id,
            private_key: SecretString::from(key.private_pem.clone()),
            api_url,
        })?;
        Ok(GithubScene {
            standin,
            registry,
            app,
            http,
            wharf,
            secret,
            installation,
            repository,
            dir,
        })
    }

    /// Registers an agent called `name` with the server; returns its token.
    pub async fn add_agent(&self, name: &str) -> anyhow::Result<String> {
        self.wharf.add_agent(&self.http, name).await
    }

    /// `wharf agent` with `token`, talking to the scene's server, building in `work` of the
    /// scene's directory and pushing to the registry the server names, logging at `log` level. The caller adds
    /// its own settings.
    pub fn agent_command(&self, wharf_bin: &Path, token: &str, log: &str) -> std::process::Command {
        let mut command = std::process::Command::new(wharf_bin);
        command
            .arg("agent")
            .env_remove("WHARF_CONFIG")
            .env("WHARF_SERVER", &self.wharf.url)
            .env("WHARF_AGENT_TOKEN", token)
            .env("WHARF_WORK_DIR", self.dir.path().join("work"))
            .env_remove("WHARF_REGISTRY")
            .env("WHARF_LOG", log);
        command
    }

    /// Starts an agent from `command` (see [`GithubScene::agent_command`]), its log `agent.log` in
    /// the scene's directory.
    pub fn spawn_agent(&self, command: std::process::Command) -> anyhow::Result<Child> {
        Child::spawn("wharf agent", command, &self.dir.path().join("agent.log"))
    }

    /// Creates a service from its JSON settings.
    pub async fn create_service(&self, settings: &Value) -> anyhow::Result<()> {
        self.wharf
            .admin_post(
                &self.http,
                "/v1/services",
                settings,
                reqwest::StatusCode::CREATED,
            )
            .await?;
        Ok(())
    }

    /// Tells Wharf of the App's installation and its repository, as GitHub would.
    pub async fn announce_installation(&self) -> anyhow::Result<()> {
        let installed = json!({
            "action": "created",
            "installation": {"id": self.installation, "account": {"login": ACCOUNT, "type": "Organization"}},
            "repositories": [{"id": 1, "full_name": self.repository, "private": true}]
        });
        let response = self.delivery("installation", &installed)?.send().await?;
        if !response.status().is_success() {
            bail!("the installation webhook answered {}", response.status());
        }
        Ok(())
    }

    /// A webhook delivery of `event` with `body` as GitHub sends it, signed with the scene's
    /// secret and ready to send (the signing is done, so a timing can start just before).
    pub fn delivery(&self, event: &str, body: &Value) -> anyhow::Result<reqwest::RequestBuilder> {
        let bytes = body.to_string().into_bytes();
        let signature = wharf_domain::signature::sign(self.secret.as_bytes(), &bytes);
        Ok(self
            .http
            .post(self.wharf.webhook_url())
            .header("x-github-event", event)
            .header("x-github-delivery", procs::random_hex(16)?)
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(bytes))
    }

    /// `GET path` of Wharf's API with the admin token; the answer's JSON.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.wharf.url))
            .bearer_auth(self.wharf.token())
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "GET {path} answered {status}: {text}");
        serde_json::from_str(&text).with_context(|| format!("GET {path} answered non-JSON"))
    }

    /// Gives a script's git the credentials Wharf's agent uses: a fresh installation token as
    /// an extra HTTP header through `GIT_CONFIG_*` (never the command line), and no prompts.
    pub async fn git_credentials(
        &self,
        script: &mut tokio::process::Command,
    ) -> anyhow::Result<()> {
        use base64::Engine;
        let token = self.app.installation_token(self.installation).await?;
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("x-access-token:{}", token.token.expose_secret()));
        script
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env(
                "GIT_CONFIG_VALUE_0",
                format!("Authorization: Basic {credentials}"),
            );
        Ok(())
    }

    /// The URL the scripts clone the repository from.
    pub fn clone_url(&self) -> String {
        self.standin.clone_url(&self.repository)
    }
}
