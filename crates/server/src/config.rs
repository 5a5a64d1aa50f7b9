//! What the server is told at start: [`ServerConfig`], read from flags and the environment by
//! the binary, and the GitHub App's settings.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use wharf_github::GithubApp;

use crate::core::github_deployments::Backoff;
use crate::core::sealing::SealingKey;

/// The most log text kept per build.
pub const DEFAULT_MAX_LOG_BYTES: i64 = 10 * 1024 * 1024;

/// How long stored webhook bodies are kept by default: 30 days.
pub const DEFAULT_DELIVERY_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Everything the server needs to run, read from flags and the environment by the binary.
#[derive(Clone)]
pub struct ServerConfig {
    /// The admin bearer token of the REST API.
    pub admin_token: SecretString,
    /// How users and GitHub reach this server (for links such as `log_url`).
    pub public_url: String,
    /// The scheme of the services' own addresses, `{scheme}://{domain}`, shown on GitHub as a
    /// live deployment's `environment_url`: "http" or "https".
    pub app_url_scheme: String,
    /// The GitHub App, when the environment configures it (`WHARF_GITHUB_*`); it wins over an
    /// App made from the dashboard.
    pub github: Option<GithubSettings>,
    /// GitHub's API, for the App made from the dashboard (the environment's App has its own).
    pub github_api_url: String,
    /// GitHub's web pages, where the dashboard sends the App's manifest.
    pub github_web_url: String,
    /// How long a claim's lease lasts without a heartbeat.
    pub lease: Duration,
    /// How many claims a build gets before an expired lease fails it.
    pub max_attempts: i64,
    /// The longest an agent's claim request is held open.
    pub max_claim_wait: Duration,
    /// How often expired leases are looked for.
    pub lease_check_interval: Duration,
    /// How often what the store holds only for a time (deploy-hook signatures past their
    /// window, webhook bodies past their retention) is removed.
    pub housekeeping_interval: Duration,
    /// How long a stored webhook body is kept; then it is removed, and its delivery and
    /// deduplication key stay.
    pub delivery_retention: Duration,
    /// The most log text kept per build; later lines are dropped with a note.
    pub max_log_bytes: i64,
    /// Seals secret values before they are stored.
    pub sealing_key: Arc<SealingKey>,
    /// The registry builds push to (`WHARF_REGISTRY`), without a trailing `/`: handed to agents
    /// when they register, checked in every completed build's report, and used by deploy hooks
    /// that name only a commit (`image_sha`). Without it, builds fail when an agent claims them.
    pub registry: Option<String>,
    /// Agents talk plain HTTP to the registry (`WHARF_REGISTRY_INSECURE`).
    pub registry_insecure: bool,
    /// Services may build from a git repository on this machine by its path (`wharf up` only,
    /// for its own agent).
    pub local_repositories: bool,
    /// How long the GitHub reporter waits after failed passes over a build, unless GitHub said.
    pub github_retry: Backoff,
    /// How often the GitHub reporter looks for builds due for a report besides its wake-ups
    /// (retries after a backoff, changes made by other server replicas).
    pub github_report_interval: Duration,
    /// How often, besides at start, the App's failed webhook deliveries are asked for again and
    /// the tracked branches' heads compared with their newest builds (once across replicas).
    pub github_catch_up_interval: Duration,
    /// How long the notifications' delivery loop waits after a failed attempt at a message,
    /// unless the sink said (`Retry-After`).
    pub notification_retry: Backoff,
    /// Attempts at one message before it becomes a dead letter.
    pub notification_max_attempts: i64,
    /// How often the delivery loop looks for events and due messages besides its wake-ups.
    pub notification_interval: Duration,
    /// How long one attempt at a message may take.
    pub notification_timeout: Duration,
    /// How long a server holds a message it sends before another may take it.
    pub notification_lease: Duration,
    /// PEM of CAs that email sinks' SMTP servers may be signed by, besides the platform's
    /// roots (`WHARF_SMTP_CA_FILE`): a private mail server's.
    pub smtp_ca_pem: Option<Vec<u8>>,
    /// The limits the HTTP edge puts on its callers.
    pub limits: RequestLimits,
}

/// What the HTTP edge allows its callers: how long a request may take, how many webhooks are
/// read at once, and how many failed authentications a client gets. Every limit is per server
/// process; none is shared state, so each holds for each replica.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// The longest any request may take, except long-polls, event streams and the deploy
    /// hook's wait for its rollout; past it the caller gets 503.
    pub request_timeout: Duration,
    /// The longest the body of a webhook or a deploy hook may take to arrive; past it the
    /// caller gets 408.
    pub body_timeout: Duration,
    /// How many webhook bodies are read at once; more wait for a turn (they are not refused),
    /// so bodies of up to 25 MB being read take at most this many times that in memory. A turn
    /// ends when its body has been read: storing the delivery is not limited.
    pub webhook_concurrency: usize,
    /// How many failed authentications a client gets in a minute; past them its further failing
    /// requests get 429 (requests that authenticate still pass).
    pub failed_authentications_per_minute: u32,
    /// How many calls of the GitHub App's setup callback a client gets in a minute; past them
    /// it gets 429.
    pub setup_calls_per_minute: u32,
    /// How many setup callbacks are handled at once; more wait for a turn.
    pub setup_concurrency: usize,
    /// The proxies whose `X-Forwarded-For` names the client (`WHARF_TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
}

impl Default for RequestLimits {
    fn default() -> RequestLimits {
        RequestLimits {
            request_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(20),
            webhook_concurrency: 8,
            failed_authentications_per_minute: 20,
            setup_calls_per_minute: 10,
            setup_concurrency: 2,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// Addresses and networks of the reverse proxies in front of the server. A request whose peer is
/// one of them is attributed to the right-most address in its `X-Forwarded-For` that is not;
/// any other request's `X-Forwarded-For` is ignored, since its sender could write anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Reads a comma-separated list of addresses (`10.0.0.7`) and networks (`10.0.0.0/8`,
    /// `fd00::/8`); spaces around the items are allowed, empty items skipped.
    pub fn parse(text: &str) -> Result<TrustedProxies, String> {
        let mut networks = Vec::new();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (address, prefix) = match item.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (item, None),
            };
            let address: IpAddr = address.parse().map_err(|_| {
                format!("{item:?} is not an IP address or network such as 10.0.0.0/8")
            })?;
            let bits = if address.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => bits,
                Some(prefix) => prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|prefix| *prefix <= bits)
                    .ok_or_else(|| {
                        format!("{item:?} has a prefix length that is not 0 to {bits}")
                    })?,
            };
            networks.push((address, prefix));
        }
        Ok(TrustedProxies { networks })
    }

    /// True when `address` is one of the proxies.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.networks
            .iter()
            .any(|(network, prefix)| match (network, address) {
                (IpAddr::V4(network), IpAddr::V4(address)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                    u32::from(*network) & mask == u32::from(address) & mask
                }
                (IpAddr::V6(network), IpAddr::V6(address)) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                    u128::from(*network) & mask == u128::from(address) & mask
                }
                _ => false,
            })
    }
}

impl ServerConfig {
    /// Defaults for everything but the tokens; the sealing key is a fresh random one, which
    /// suits tests (a real server keeps its key, or its secrets cannot be opened after a restart).
    pub fn new(admin_token: SecretString) -> ServerConfig {
        let sealing_key = SealingKey::generate()
            .and_then(|key| SealingKey::parse(&key))
            .expect("the system's random number generator works");
        ServerConfig {
            sealing_key: Arc::new(sealing_key),
            admin_token,
            public_url: "http://127.0.0.1:8420".to_owned(),
            app_url_scheme: "http".to_owned(),
            github: None,
            github_api_url: wharf_github::DEFAULT_API_URL.to_owned(),
            github_web_url: DEFAULT_GITHUB_WEB_URL.to_owned(),
            lease: Duration::from_secs(30),
            max_attempts: 3,
            max_claim_wait: Duration::from_secs(30),
            lease_check_interval: Duration::from_secs(1),
            housekeeping_interval: Duration::from_secs(60),
            delivery_retention: DEFAULT_DELIVERY_RETENTION,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            registry: None,
            registry_insecure: false,
            local_repositories: false,
            github_retry: Backoff::default(),
            github_report_interval: Duration::from_secs(1),
            github_catch_up_interval: Duration::from_secs(300),
            notification_retry: Backoff {
                first: Duration::from_secs(5),
                max: Duration::from_secs(3600),
            },
            notification_max_attempts: 10,
            notification_interval: Duration::from_secs(1),
            notification_timeout: Duration::from_secs(10),
            notification_lease: Duration::from_secs(60),
            smtp_ca_pem: None,
            limits: RequestLimits::default(),
        }
    }
}

/// GitHub's web pages.
pub const DEFAULT_GITHUB_WEB_URL: &str = "https://github.com";

/// The GitHub App's settings.
#[derive(Clone)]
pub struct GithubSettings {
    /// Signs webhooks; `None` refuses every webhook with a clear error.
    pub webhook_secret: Option<SecretString>,
    /// The App client; `None` when only a webhook secret is configured.
    pub app: Option<GithubApp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_match_addresses_and_networks() {
        let proxies = TrustedProxies::parse(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,").unwrap();
        for trusted in ["10.1.2.3", "192.168.1.7", "fd00::1", "::ffff:10.0.0.1"] {
            assert!(proxies.contains(trusted.parse().unwrap()), "{trusted}");
        }
        for untrusted in ["11.0.0.1", "192.168.1.8", "fe80::1", "127.0.0.1"] {
            assert!(!proxies.contains(untrusted.parse().unwrap()), "{untrusted}");
        }
        assert!(
            TrustedProxies::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(!TrustedProxies::default().contains("127.0.0.1".parse().unwrap()));
        for wrong in ["10.0.0.0/33", "proxy.example", "10.0.0.1/x", "::/129"] {
            assert!(TrustedProxies::parse(wrong).is_err(), "{wrong}");
        }
    }
}
