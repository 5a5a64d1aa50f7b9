//! Server and agent settings: flags, each with its `WHARF_*` environment variable, secrets also
//! from `*_FILE`, and an optional TOML file (`--config` / `WHARF_CONFIG`) whose keys are the
//! variables' names without the prefix, in lowercase (`listen`, `github_app_id`, …).
//!
//! Precedence: a flag, then the environment, then the file, then the default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use wharf_github::{AppConfig, DEFAULT_API_URL, GithubApp};
use wharf_server::{GithubSettings, ServerConfig, TrustedProxies};
use wharf_store::SqliteSynchronous;

/// The keys a config file may hold; each maps to `WHARF_<KEY>`.
const FILE_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "token",
    "token_file",
    "public_url",
    "app_url_scheme",
    "github_app_id",
    "github_app_private_key",
    "github_app_private_key_file",
    "github_webhook_secret",
    "github_webhook_secret_file",
    "github_api_url",
    "github_catch_up_interval",
    "lease_seconds",
    "max_attempts",
    "sqlite_synchronous",
    "delivery_retention",
    "trusted_proxies",
    "smtp_ca_file",
    "server",
    "agent_token",
    "agent_token_file",
    "labels",
    "work_dir",
    "secret_key",
    "secret_key_file",
    "runtime",
    "registry",
    "registry_insecure",
    "build_timeout",
    "registry_username",
    "registry_password",
    "registry_password_file",
    "caddy_admin",
    "edge_listen",
    "stop_grace",
];

/// Reads the TOML file named by `--config` or `WHARF_CONFIG` (if any) and sets each of its keys
/// as the matching `WHARF_*` variable, unless the environment already sets it. Runs before
/// flags are parsed, while the process has a single thread.
pub fn load_config_file(args: &[String]) -> anyhow::Result<()> {
    let from_flag = args
        .iter()
        .position(|arg| arg == "--config")
        .and_then(|index| args.get(index + 1))
        .cloned()
        .or_else(|| {
            args.iter()
                .find_map(|arg| arg.strip_prefix("--config=").map(str::to_owned))
        });
    let Some(path) = from_flag.or_else(|| std::env::var("WHARF_CONFIG").ok()) else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the config file {path}"))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid TOML in {path}"))?;
    for (key, value) in table {
        if !FILE_KEYS.contains(&key.as_str()) {
            bail!(
                "unknown key {key:?} in {path}; known keys: {}",
                FILE_KEYS.join(", ")
            );
        }
        let text = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(text) => Ok(text.clone()),
                    toml::Value::Integer(number) => Ok(number.to_string()),
                    _ => Err(anyhow::anyhow!("list {key:?} in {path} must hold strings")),
                })
                .collect::<anyhow::Result<Vec<_>>>()?
                .join(","),
            _ => bail!("key {key:?} in {path} must be a string, number, boolean or list"),
        };
        let variable = format!("WHARF_{}", key.to_ascii_uppercase());
        if std::env::var_os(&variable).is_none() {
            // SAFETY: called from main before any other thread exists.
            unsafe { std::env::set_var(&variable, text) };
        }
    }
    Ok(())
}

/// Reads a secret flag or variable into a [`SecretString`], which `Debug` never shows.
pub fn secret_value(text: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(text))
}

/// Reads a secret given directly or through a file; the file wins only when the value is absent.
pub fn secret(
    value: Option<SecretString>,
    file: Option<PathBuf>,
    what: &str,
) -> anyhow::Result<Option<SecretString>> {
    match (value, file) {
        (Some(value), _) if !value.expose_secret().is_empty() => Ok(Some(value)),
        (_, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {what} from {}", path.display()))?;
            let trimmed = text.trim_end_matches(['\n', '\r']).to_owned();
            if trimmed.is_empty() {
                bail!("{} is empty; it should hold {what}", path.display());
            }
            Ok(Some(SecretString::from(trimmed)))
        }
        _ => Ok(None),
    }
}

/// The server's flags (`wharf server` and `wharf up`).
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Where the HTTP API listens.
    #[arg(long, env = "WHARF_LISTEN", default_value = "127.0.0.1:8420")]
    pub listen: String,
    #[command(flatten)]
    pub state: StateArgs,
    /// The admin bearer token of the REST API.
    #[arg(long, env = "WHARF_TOKEN", hide_env_values = true, value_parser = secret_value)]
    pub token: Option<SecretString>,
    /// A file holding the admin token.
    #[arg(long, env = "WHARF_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// How users and GitHub reach this server.
    #[arg(long, env = "WHARF_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How the services' own domains are reached, http or https: GitHub links a live deployment
    /// to {scheme}://{domain}.
    #[arg(long, env = "WHARF_APP_URL_SCHEME", default_value = "http")]
    pub app_url_scheme: String,
    /// The GitHub App's id.
    #[arg(long, env = "WHARF_GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,
    /// The App's private key: PEM text, or base64 of it.
    #[arg(long, env = "WHARF_GITHUB_APP_PRIVATE_KEY", hide_env_values = true, value_parser = secret_value)]
    pub github_app_private_key: Option<SecretString>,
    /// A file holding the App's private key.
    #[arg(long, env = "WHARF_GITHUB_APP_PRIVATE_KEY_FILE")]
    pub github_app_private_key_file: Option<PathBuf>,
    /// The secret GitHub signs webhooks with.
    #[arg(long, env = "WHARF_GITHUB_WEBHOOK_SECRET", hide_env_values = true, value_parser = secret_value)]
    pub github_webhook_secret: Option<SecretString>,
    /// A file holding the webhook secret.
    #[arg(long, env = "WHARF_GITHUB_WEBHOOK_SECRET_FILE")]
    pub github_webhook_secret_file: Option<PathBuf>,
    /// GitHub's API (GitHub Enterprise Server: https://HOST/api/v3).
    #[arg(long, env = "WHARF_GITHUB_API_URL", default_value = DEFAULT_API_URL)]
    pub github_api_url: String,
    /// GitHub's web pages, where the dashboard's "Create the GitHub App" sends the App's
    /// manifest (GitHub Enterprise Server: https://HOST).
    #[arg(long, env = "WHARF_GITHUB_WEB_URL", default_value = wharf_server::DEFAULT_GITHUB_WEB_URL)]
    pub github_web_url: String,
    /// How long an agent's claim lasts without a heartbeat, in seconds.
    #[arg(long, env = "WHARF_LEASE_SECONDS", default_value_t = 30)]
    pub lease_seconds: u64,
    /// How many times a build is handed out before an expired lease fails it.
    #[arg(long, env = "WHARF_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: i64,
    /// How a SQLite commit reaches the disk: normal (a power loss may take the last commits)
    /// or full (every commit is synced: it survives a power loss; slower).
    #[arg(long, env = "WHARF_SQLITE_SYNCHRONOUS", default_value = "normal")]
    pub sqlite_synchronous: SqliteSynchronous,
    /// How long stored webhook bodies are kept, such as 30d or 12h; then they are removed and
    /// only what deduplicates them stays.
    #[arg(long, env = "WHARF_DELIVERY_RETENTION", default_value = "30d", value_parser = duration_setting)]
    pub delivery_retention: Duration,
    /// How often, besides at start, the server asks GitHub for the App's webhook deliveries that
    /// failed (while it was down) and for the heads of the branches services follow, and
    /// builds what it missed, such as 5m.
    #[arg(long, env = "WHARF_GITHUB_CATCH_UP_INTERVAL", default_value = "5m", value_parser = duration_setting)]
    pub github_catch_up_interval: Duration,
    /// The registry builds push to, as {registry}/{project}/{service}:{commit}; agents are told
    /// when they register, and every build's reported images are checked against it. Without
    /// one, builds fail (`wharf up` runs a local registry when none is set).
    #[arg(long, env = "WHARF_REGISTRY")]
    pub registry: Option<String>,
    /// Agents talk plain HTTP to the registry (only for a registry on the agents' machine or a
    /// private network).
    #[arg(long, env = "WHARF_REGISTRY_INSECURE", default_value_t = false, action = clap::ArgAction::Set)]
    pub registry_insecure: bool,
    /// The reverse proxies in front of the server, comma-separated addresses or networks
    /// (10.0.0.0/8): a request from one of them is attributed to the client its
    /// X-Forwarded-For names, for the limit on failed authentication.
    #[arg(long, env = "WHARF_TRUSTED_PROXIES", default_value = "", value_parser = trusted_proxies_setting)]
    pub trusted_proxies: TrustedProxies,
    /// A PEM file of CA certificates that email sinks' SMTP servers may be signed by, besides
    /// the system's (a private mail server's).
    #[arg(long, env = "WHARF_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<PathBuf>,
    /// An optional TOML file of settings (read before flags; see the README).
    #[arg(long, env = "WHARF_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Reads `WHARF_TRUSTED_PROXIES`.
fn trusted_proxies_setting(text: &str) -> Result<TrustedProxies, String> {
    TrustedProxies::parse(text)
}

/// Reads a duration setting such as `30d`, `12h` or `90m`.
fn duration_setting(text: &str) -> Result<Duration, String> {
    wharf_domain::duration::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 30d, 12h or 90m"))
}

/// Creates the data directory (and its missing parents) readable by its owner only. One that
/// exists is left as it is, with a warning when others may read it.
pub fn create_data_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create the data directory {}", path.display()))?;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read the data directory {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory may be read by other users; `chmod 700` it"
        );
    }
    Ok(())
}

impl ServerArgs {
    /// Builds the server's configuration; `admin_token` is resolved by the caller, and
    /// `sealed_values` counts the values in the database that the secret key must open.
    pub fn server_config(
        &self,
        admin_token: SecretString,
        sealed_values: i64,
    ) -> anyhow::Result<ServerConfig> {
        if self.lease_seconds == 0 || self.lease_seconds > 3600 {
            bail!("--lease-seconds must be between 1 and 3600");
        }
        if !(1..=100).contains(&self.max_attempts) {
            bail!("--max-attempts must be between 1 and 100");
        }
        if !matches!(self.app_url_scheme.as_str(), "http" | "https") {
            bail!("--app-url-scheme must be http or https");
        }
        let mut config = ServerConfig::new(admin_token);
        config.public_url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen));
        config.app_url_scheme = self.app_url_scheme.clone();
        config.lease = Duration::from_secs(self.lease_seconds);
        config.max_attempts = self.max_attempts;
        config.delivery_retention = self.delivery_retention;
        config.github_catch_up_interval = self.github_catch_up_interval;
        config.limits.trusted_proxies = self.trusted_proxies.clone();
        config.github = self.github_settings()?;
        config.github_api_url = self.github_api_url.clone();
        config.github_web_url = self.github_web_url.clone();
        config.registry = self.registry()?;
        config.registry_insecure = self.registry_insecure;
        config.smtp_ca_pem = self.smtp_ca_pem()?;
        config.sealing_key = std::sync::Arc::new(self.state.sealing_key(sealed_values)?);
        Ok(config)
    }

    /// The PEM of `WHARF_SMTP_CA_FILE`, checked to hold a certificate.
    fn smtp_ca_pem(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(path) = &self.smtp_ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read WHARF_SMTP_CA_FILE {}", path.display()))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            bail!(
                "WHARF_SMTP_CA_FILE {} holds no PEM certificate",
                path.display()
            );
        }
        Ok(Some(pem))
    }

    /// The registry setting without a trailing `/`; `None` when unset or empty.
    fn registry(&self) -> anyhow::Result<Option<String>> {
        let Some(registry) = self
            .registry
            .as_deref()
            .map(|registry| registry.trim().trim_end_matches('/'))
            .filter(|registry| !registry.is_empty())
        else {
            return Ok(None);
        };
        if registry.contains("://") || wharf_domain::names::check_image_ref(registry).is_err() {
            bail!(
                "WHARF_REGISTRY must be a registry's host, such as registry.example.com or 127.0.0.1:5000 (without a scheme)"
            );
        }
        Ok(Some(registry.to_owned()))
    }

    fn github_settings(&self) -> anyhow::Result<Option<GithubSettings>> {
        let webhook_secret = secret(
            self.github_webhook_secret.clone(),
            self.github_webhook_secret_file.clone(),
            "the webhook secret",
        )?;
        let private_key = secret(
            self.github_app_private_key.clone(),
            self.github_app_private_key_file.clone(),
            "the App's private key",
        )?;
        let app = match (self.github_app_id, private_key) {
            (Some(app_id), Some(private_key)) => Some(
                GithubApp::new(&AppConfig {
                    app_id,
                    private_key,
                    api_url: self.github_api_url.clone(),
                })
                .context("WHARF_GITHUB_APP_PRIVATE_KEY")?,
            ),
            (None, None) => None,
            (Some(_), None) => bail!(
                "WHARF_GITHUB_APP_ID is set but the private key is not: set WHARF_GITHUB_APP_PRIVATE_KEY or WHARF_GITHUB_APP_PRIVATE_KEY_FILE"
            ),
            (None, Some(_)) => {
                bail!("a GitHub App private key is set but WHARF_GITHUB_APP_ID is not")
            }
        };
        if app.is_none() && webhook_secret.is_none() {
            return Ok(None);
        }
        Ok(Some(GithubSettings {
            webhook_secret,
            app,
        }))
    }
}

/// Where Wharf's state is: the data directory, the database, and the secret key that opens the
/// database's sealed values (`wharf server`, `wharf up`, `wharf backup`, `wharf restore`,
/// `wharf doctor`).
#[derive(Args, Debug, Clone)]
pub struct StateArgs {
    /// Where Wharf keeps its data (the SQLite database when no database URL is given).
    #[arg(long, env = "WHARF_DATA_DIR", default_value = ".wharf")]
    pub data_dir: PathBuf,
    /// sqlite://PATH or postgres://USER:PASSWORD@HOST/DB; a SQLite file in the data directory when unset.
    /// Kept secret: a PostgreSQL URL may hold a password.
    #[arg(long, env = "WHARF_DATABASE_URL", hide_env_values = true, value_parser = secret_value)]
    pub database_url: Option<SecretString>,
    /// The key secret values are sealed with: 64 hex digits (or base64 of 32 bytes). Unset: a key
    /// kept in the data directory, made on first start. Server replicas must share one key.
    #[arg(long, env = "WHARF_SECRET_KEY", hide_env_values = true, value_parser = secret_value)]
    pub secret_key: Option<SecretString>,
    /// A file holding the secret key.
    #[arg(long, env = "WHARF_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
}

/// Where the database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, backed up and restored with PostgreSQL's own tools.
    Postgres,
}

impl StateArgs {
    /// The SQLite file in the data directory that holds the database when no URL names one.
    pub fn default_database(&self) -> PathBuf {
        self.data_dir.join("wharf.db")
    }

    /// Where the database is, read from the settings alone (nothing is created).
    pub fn database_location(&self) -> anyhow::Result<DatabaseLocation> {
        let Some(url) = &self.database_url else {
            return Ok(DatabaseLocation::Sqlite(self.default_database()));
        };
        let url = url.expose_secret();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseLocation::Postgres);
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .context("WHARF_DATABASE_URL must be sqlite://PATH or postgres://…")?;
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        if path.is_empty() {
            bail!("WHARF_DATABASE_URL names no SQLite file");
        }
        Ok(DatabaseLocation::Sqlite(PathBuf::from(path)))
    }

    /// The database URL: the one given, or a SQLite file in the data directory (which is created
    /// when missing).
    pub fn database_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.expose_secret().to_owned());
        }
        create_data_dir(&self.data_dir)?;
        Ok(format!("sqlite://{}", self.default_database().display()))
    }

    /// The key file in the data directory, used when no key is given.
    pub fn key_in_data_dir(&self) -> PathBuf {
        self.data_dir.join("secret.key")
    }

    /// Where the secret key comes from, as an operator would look for it.
    pub fn key_source(&self) -> KeySource {
        if self
            .secret_key
            .as_ref()
            .is_some_and(|key| !key.expose_secret().is_empty())
        {
            KeySource::Variable
        } else if let Some(file) = &self.secret_key_file {
            KeySource::File(file.clone())
        } else {
            KeySource::DataDir(self.key_in_data_dir())
        }
    }

    /// The sealing key: given, or kept in the data directory. A key is made there on first start
    /// only while the database holds no sealed values (`sealed_values`): a new key would not
    /// open them, so a database restored without its key is refused instead.
    fn sealing_key(&self, sealed_values: i64) -> anyhow::Result<wharf_server::SealingKey> {
        if let Some(key) = secret(
            self.secret_key.clone(),
            self.secret_key_file.clone(),
            "the secret key",
        )? {
            return wharf_server::SealingKey::parse(key.expose_secret())
                .context("WHARF_SECRET_KEY");
        }
        let path = self.key_in_data_dir();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && sealed_values > 0 => {
                bail!(
                    "the database holds {sealed_values} sealed value(s) but there is no secret key: \
                     put the key they were sealed with at {} (mode 0600) or set \
                     WHARF_SECRET_KEY_FILE; a backup does not carry the key, and a new one would \
                     not open them",
                    path.display()
                );
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                create_data_dir(&self.data_dir)?;
                let key = wharf_server::SealingKey::generate()?;
                crate::write_private_file(&path, &key)?;
                tracing::info!(path = %path.display(), "made a new secret key; keep it with the database");
                key
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        wharf_server::SealingKey::parse(&text)
            .with_context(|| format!("the key in {}", path.display()))
    }
}

/// Where the secret key that opens the sealed values comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `WHARF_SECRET_KEY` (or `--secret-key`).
    Variable,
    /// The file `WHARF_SECRET_KEY_FILE` names.
    File(PathBuf),
    /// The key file in the data directory, made on first start.
    DataDir(PathBuf),
}

/// The fewest characters an admin token may have: one that short is still beyond guessing.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// Reads the admin token; `None` when neither the flag, the variable nor the file gives one.
/// A token shorter than [`MIN_ADMIN_TOKEN_CHARS`] is refused.
pub fn admin_token(args: &ServerArgs) -> anyhow::Result<Option<SecretString>> {
    let token = secret(
        args.token.clone(),
        args.token_file.clone(),
        "the admin token",
    )?;
    if let Some(token) = &token {
        check_admin_token(token)?;
    }
    Ok(token)
}

/// Refuses an admin token shorter than [`MIN_ADMIN_TOKEN_CHARS`].
pub fn check_admin_token(token: &SecretString) -> anyhow::Result<()> {
    let length = token.expose_secret().chars().count();
    if length < MIN_ADMIN_TOKEN_CHARS {
        bail!(
            "the admin token (WHARF_TOKEN) has {length} characters; it needs at least \
             {MIN_ADMIN_TOKEN_CHARS} (make one with `openssl rand -hex 32`)"
        );
    }
    Ok(())
}

/// The agent's flags (`wharf agent`).
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The Wharf server's URL.
    #[arg(long, env = "WHARF_SERVER", default_value = "http://127.0.0.1:8420")]
    pub server: String,
    /// The token the server issued for this agent (`wharf agents create NAME`).
    #[arg(long, env = "WHARF_AGENT_TOKEN", hide_env_values = true, value_parser = secret_value)]
    pub token: Option<SecretString>,
    /// A file holding the agent token.
    #[arg(long, env = "WHARF_AGENT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// What this agent does, comma-separated.
    #[arg(
        long,
        env = "WHARF_LABELS",
        value_delimiter = ',',
        default_value = "build,deploy"
    )]
    pub labels: Vec<String>,
    /// Where builds get their working directories.
    #[arg(long, env = "WHARF_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// An optional TOML file of settings.
    #[arg(long, env = "WHARF_CONFIG")]
    pub config: Option<PathBuf>,
}

/// How an agent builds (`wharf agent`, `wharf up`).
#[derive(Args, Debug, Clone)]
pub struct BuildArgs {
    /// The container runtime: podman or docker.
    #[arg(long, env = "WHARF_RUNTIME", default_value = "podman")]
    pub runtime: String,
    /// The longest a build may take, in seconds, before it is killed.
    #[arg(long, env = "WHARF_BUILD_TIMEOUT", default_value_t = 1800)]
    pub build_timeout: u64,
    /// The user the registry knows this agent as, when it asks for credentials.
    #[arg(long, env = "WHARF_REGISTRY_USERNAME")]
    pub registry_username: Option<String>,
    /// That user's password (or token).
    #[arg(long, env = "WHARF_REGISTRY_PASSWORD", hide_env_values = true, value_parser = secret_value)]
    pub registry_password: Option<SecretString>,
    /// A file holding the registry password.
    #[arg(long, env = "WHARF_REGISTRY_PASSWORD_FILE")]
    pub registry_password_file: Option<PathBuf>,
    /// Caddy's admin API, which routes the apps' host names; when none answers there and
    /// `caddy` is installed, the agent starts one itself.
    #[arg(long, env = "WHARF_CADDY_ADMIN", default_value = wharf_runtime::edge::DEFAULT_ADMIN)]
    pub caddy_admin: String,
    /// Where the edge serves the apps (Caddy's listen syntax, such as `:80`).
    #[arg(long, env = "WHARF_EDGE_LISTEN", default_value = ":80")]
    pub edge_listen: String,
    /// Seconds a stopping container gets between SIGTERM and SIGKILL.
    #[arg(long, env = "WHARF_STOP_GRACE", default_value_t = 10)]
    pub stop_grace: u64,
    /// Railpack's CLI, which builds repositories that have no Dockerfile (it needs BuildKit,
    /// named by BUILDKIT_HOST); a path or a name on PATH. Without it, such builds fail and say
    /// what to add.
    #[arg(long, env = "WHARF_RAILPACK", default_value = "railpack")]
    pub railpack: PathBuf,
}

impl BuildArgs {
    /// The builder these flags describe.
    pub fn builder(&self) -> anyhow::Result<wharf_agent::BuilderConfig> {
        let kind = wharf_agent::RuntimeKind::parse(&self.runtime)
            .with_context(|| format!("unknown runtime {:?}: use podman or docker", self.runtime))?;
        if self.build_timeout == 0 {
            bail!("--build-timeout must be at least 1 second");
        }
        let password = secret(
            self.registry_password.clone(),
            self.registry_password_file.clone(),
            "the registry password",
        )?;
        let registry_credentials = match (&self.registry_username, password) {
            // The login belongs to the registry the server names when the agent registers
            // (left empty until then), and goes to no other.
            (Some(username), Some(password)) => Some(wharf_agent::RegistryCredentials {
                registry: String::new(),
                username: username.clone(),
                password,
            }),
            (None, None) => None,
            _ => bail!("give both WHARF_REGISTRY_USERNAME and WHARF_REGISTRY_PASSWORD, or neither"),
        };
        let railpack = wharf_runtime::process::find_program(&self.railpack);
        if railpack.is_none() && self.railpack != Path::new("railpack") {
            bail!(
                "WHARF_RAILPACK names {}, which is not a program this agent can run",
                self.railpack.display()
            );
        }
        Ok(wharf_agent::BuilderConfig {
            // Plain HTTP to the registry is the server's to say (`WHARF_REGISTRY_INSECURE`).
            runtime: wharf_agent::Runtime {
                kind,
                insecure_registry: false,
            },
            timeout: Duration::from_secs(self.build_timeout),
            registry_credentials,
            railpack,
        })
    }
}

impl BuildArgs {
    /// How the agent deploys; the edge keeps its files under `state_dir`.
    pub fn deployer(
        &self,
        builder: &wharf_agent::BuilderConfig,
        state_dir: PathBuf,
    ) -> wharf_agent::DeployConfig {
        wharf_agent::DeployConfig {
            runtime: builder.runtime.clone(),
            edge: wharf_agent::EdgeConfig {
                admin: self.caddy_admin.clone(),
                listen: self.edge_listen.clone(),
                caddy_bin: PathBuf::from("caddy"),
                state_dir,
            },
            registry_credentials: builder.registry_credentials.clone(),
            stop_grace: Duration::from_secs(self.stop_grace),
            // The server names its registry when the agent registers.
            registry: None,
        }
    }
}

/// The default work directory: under the system's temporary directory.
pub fn default_work_dir(data_dir: Option<&Path>) -> PathBuf {
    match data_dir {
        Some(dir) => dir.join("work"),
        None => std::env::temp_dir().join("wharf-agent"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Server {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[derive(Parser, Debug)]
    struct Agent {
        #[command(flatten)]
        agent: AgentArgs,
        #[command(flatten)]
        build: BuildArgs,
    }

    #[test]
    fn debug_output_of_the_settings_shows_no_secret() {
        let server = Server::try_parse_from([
            "wharf",
            "--token",
            "admin-token-that-must-not-show-0123456789",
            "--github-app-private-key",
            "private-key-that-must-not-show",
            "--github-webhook-secret",
            "webhook-secret-that-must-not-show",
            "--secret-key",
            "secret-key-that-must-not-show",
            "--database-url",
            "postgres://wharf:password-that-must-not-show@db/wharf",
        ])
        .expect("the server's flags parse");
        let agent = Agent::try_parse_from([
            "wharf",
            "--token",
            "agent-token-that-must-not-show",
            "--registry-username",
            "robot",
            "--registry-password",
            "registry-password-that-must-not-show",
        ])
        .expect("the agent's flags parse");
        let shown = format!("{server:?} {agent:?}");
        assert!(shown.contains("robot"), "{shown}");
        assert!(!shown.contains("must-not-show"), "{shown}");
    }

    #[test]
    fn trusted_proxies_are_read_and_checked() {
        let server =
            Server::try_parse_from(["wharf", "--trusted-proxies", "10.0.0.0/8, 192.0.2.7"])
                .unwrap();
        assert!(
            server
                .server
                .trusted_proxies
                .contains("10.9.8.7".parse().unwrap())
        );
        assert!(Server::try_parse_from(["wharf", "--trusted-proxies", "proxy.example"]).is_err());
        let none = Server::try_parse_from(["wharf"]).unwrap();
        assert_eq!(none.server.trusted_proxies, TrustedProxies::default());
    }

    #[test]
    fn short_admin_tokens_are_refused() {
        assert!(check_admin_token(&SecretString::from("x".repeat(31))).is_err());
        assert!(check_admin_token(&SecretString::from("x".repeat(32))).is_ok());
    }
}
