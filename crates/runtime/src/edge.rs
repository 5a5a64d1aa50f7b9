//! Wharf's edge: Caddy, driven through its admin API.
//!
//! Wharf owns one HTTP server named `wharf` inside Caddy's config, listening where the apps are
//! served, with automatic HTTPS off (routes match plain host names). Each service is one route,
//! addressed by its `@id`, so a change touches that route only and whatever else the Caddy
//! runs is left alone. When no Caddy answers on the admin address and `caddy` is installed, the
//! edge starts one in a process group of its own and starts it again (with every route put
//! back) if it dies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Where the edge is and how to start one.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Caddy's admin API address, `host:port` (`WHARF_CADDY_ADMIN`, default `127.0.0.1:2019`).
    pub admin: String,
    /// Where the edge serves the apps (`WHARF_EDGE_LISTEN`, default `:80`), Caddy's syntax.
    pub listen: String,
    /// The caddy binary to start when no admin API answers.
    pub caddy_bin: PathBuf,
    /// Config, data and log files of a Caddy the edge starts itself.
    pub state_dir: PathBuf,
}

/// Why the edge could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("no Caddy answers at {admin} and {bin} cannot be started: {reason}")]
    Unavailable {
        admin: String,
        bin: String,
        reason: String,
    },
    #[error("Caddy's admin API refused {what}: {status} {body}")]
    Refused {
        what: String,
        status: u16,
        body: String,
    },
    #[error("Caddy's admin API at {admin} cannot be reached: {reason}")]
    Unreachable { admin: String, reason: String },
}

/// The server Wharf owns inside Caddy's config.
const SERVER: &str = "wharf";
/// How long a request may wait for an upstream that refuses connections (a version stopping
/// while Caddy still had it picked): Caddy tries the route's other upstreams meanwhile.
const TRY_DURATION: &str = "5s";

#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

struct Inner {
    config: EdgeConfig,
    http: reqwest::Client,
    /// Serializes changes, and remembers every route set, to put them back after a restart.
    routes: Mutex<BTreeMap<String, Route>>,
    /// The Caddy this edge started, if it started one.
    child: Mutex<Option<Supervised>>,
}

/// A route as set: its hosts and its upstreams.
type Route = (Vec<String>, Vec<String>);

struct Supervised {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Edge {
    /// Uses the Caddy that answers at `config.admin`, or starts and supervises one.
    pub async fn connect_or_start(config: EdgeConfig) -> Result<Edge, EdgeError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client builds");
        let edge = Edge {
            inner: Arc::new(Inner {
                config,
                http,
                routes: Mutex::new(BTreeMap::new()),
                child: Mutex::new(None),
            }),
        };
        if !edge.answers().await {
            edge.start_caddy().await?;
        }
        edge.ensure_server().await?;
        Ok(edge)
    }

    /// Creates or replaces route `id`: requests for `hosts` go to `upstreams` (`host:port`).
    pub async fn set_route(
        &self,
        id: &str,
        hosts: &[String],
        upstreams: &[String],
    ) -> Result<(), EdgeError> {
        let mut routes = self.inner.routes.lock().await;
        self.put_route(id, hosts, upstreams).await?;
        routes.insert(id.to_owned(), (hosts.to_vec(), upstreams.to_vec()));
        Ok(())
    }

    /// The upstreams of route `id`, or `None` when there is no such route.
    pub async fn route_upstreams(&self, id: &str) -> Result<Option<Vec<String>>, EdgeError> {
        let _routes = self.inner.routes.lock().await;
        let route = self.get(&format!("/id/{id}")).await?;
        Ok(route.map(|route| {
            route["handle"][0]["upstreams"]
                .as_array()
                .map(|upstreams| {
                    upstreams
                        .iter()
                        .filter_map(|upstream| upstream["dial"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    /// Removes route `id` (no error when it does not exist).
    pub async fn remove_route(&self, id: &str) -> Result<(), EdgeError> {
        let mut routes = self.inner.routes.lock().await;
        if self.get(&format!("/id/{id}")).await?.is_some() {
            self.send(reqwest::Method::DELETE, &format!("/id/{id}"), None)
                .await?;
        }
        routes.remove(id);
        Ok(())
    }

    /// Stops the Caddy this edge started; a Caddy it found running is left alone.
    pub async fn shutdown(&self) {
        if let Some(supervised) = self.inner.child.lock().await.take() {
            let _ = supervised.stop.send(true);
            let _ = supervised.task.await;
        }
    }

    async fn put_route(
        &self,
        id: &str,
        hosts: &[String],
        upstreams: &[String],
    ) -> Result<(), EdgeError> {
        let route = json!({
            "@id": id,
            "match": [{"host": hosts}],
            "handle": [{
                "handler": "reverse_proxy",
                "upstreams": upstreams.iter().map(|dial| json!({"dial": dial})).collect::<Vec<_>>(),
                "load_balancing": {"try_duration": TRY_DURATION, "try_interval": "100ms"},
            }],
            "terminal": true,
        });
        if self.get(&format!("/id/{id}")).await?.is_some() {
            self.send(reqwest::Method::PATCH, &format!("/id/{id}"), Some(route))
                .await
        } else {
            self.send(
                reqwest::Method::POST,
                &format!("/config/apps/http/servers/{SERVER}/routes"),
                Some(route),
            )
            .await
        }
    }

    /// Creates Wharf's server (and the parents it needs) when the config lacks it.
    async fn ensure_server(&self) -> Result<(), EdgeError> {
        let server = json!({
            "listen": [self.inner.config.listen],
            "automatic_https": {"disable": true},
            "routes": [],
        });
        let mut value = server;
        for (path, key) in [
            (format!("/config/apps/http/servers/{SERVER}"), SERVER),
            ("/config/apps/http/servers".to_owned(), "servers"),
            ("/config/apps/http".to_owned(), "http"),
            ("/config/apps".to_owned(), "apps"),
        ] {
            if self.get(&path).await?.is_some() {
                if key == SERVER {
                    return Ok(());
                }
                // `path` exists: put what is missing below it.
                let (child_key, child_value) = value
                    .as_object()
                    .and_then(|object| object.iter().next())
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .expect("one key");
                return self
                    .send(
                        reqwest::Method::PUT,
                        &format!("{path}/{child_key}"),
                        Some(child_value),
                    )
                    .await;
            }
            value = json!({ key: value });
        }
        if self.get("/config/").await?.is_some() {
            // A config without apps (logging, admin settings): add ours beside them.
            return self
                .send(
                    reqwest::Method::PUT,
                    "/config/apps",
                    Some(value["apps"].clone()),
                )
                .await;
        }
        // Nothing at all: the whole config, keeping the admin address.
        let config = json!({
            "admin": {"listen": self.inner.config.admin},
            "apps": value["apps"].clone(),
        });
        self.send(reqwest::Method::POST, "/load", Some(config))
            .await
    }

    async fn answers(&self) -> bool {
        self.inner
            .http
            .get(self.url("/config/"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    }

    async fn start_caddy(&self) -> Result<(), EdgeError> {
        let config = &self.inner.config;
        let unavailable = |reason: String| EdgeError::Unavailable {
            admin: config.admin.clone(),
            bin: config.caddy_bin.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(&config.state_dir).map_err(|error| {
            unavailable(format!(
                "cannot create {}: {error}",
                config.state_dir.display()
            ))
        })?;
        let file = config.state_dir.join("caddy.json");
        let initial = json!({
            "admin": {"listen": config.admin},
            "apps": {"http": {"servers": {SERVER: {
                "listen": [config.listen],
                "automatic_https": {"disable": true},
                "routes": [],
            }}}},
        });
        std::fs::write(&file, initial.to_string())
            .map_err(|error| unavailable(format!("cannot write {}: {error}", file.display())))?;
        let child = self
            .spawn_caddy(&file)
            .map_err(|error| unavailable(error.to_string()))?;
        self.wait_until_answering().await.map_err(|()| {
            unavailable("it did not answer within 10 s (see caddy.log)".to_owned())
        })?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(supervise(self.clone(), child, file, stopped));
        *self.inner.child.lock().await = Some(Supervised { stop, task });
        tracing::info!(admin = %config.admin, listen = %config.listen, "started Caddy as the edge");
        Ok(())
    }

    fn spawn_caddy(&self, file: &std::path::Path) -> std::io::Result<tokio::process::Child> {
        let config = &self.inner.config;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.state_dir.join("caddy.log"))?;
        tokio::process::Command::new(&config.caddy_bin)
            .arg("run")
            .arg("--config")
            .arg(file)
            // Caddy keeps data and an autosaved config under these; keep them in the state dir.
            .env("HOME", &config.state_dir)
            .env("XDG_DATA_HOME", config.state_dir.join("data"))
            .env("XDG_CONFIG_HOME", config.state_dir.join("config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
    }

    async fn wait_until_answering(&self) -> Result<(), ()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if self.answers().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(())
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.inner.config.admin)
    }

    /// `GET path`: `None` when Caddy has nothing there (`null` or 404).
    async fn get(&self, path: &str) -> Result<Option<Value>, EdgeError> {
        let response = self
            .inner
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(|error| self.unreachable(error))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            // Caddy answers a path below a missing key with 400/500 "invalid traversal path".
            if body.contains("invalid traversal") || body.contains("unknown object ID") {
                return Ok(None);
            }
            return Err(EdgeError::Refused {
                what: format!("GET {path}"),
                status: status.as_u16(),
                body: body.trim().chars().take(300).collect(),
            });
        }
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        Ok((!value.is_null()).then_some(value))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(), EdgeError> {
        let mut request = self.inner.http.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.unreachable(error))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(EdgeError::Refused {
            what: format!("{method} {path}"),
            status: status.as_u16(),
            body: body.trim().chars().take(300).collect(),
        })
    }

    fn unreachable(&self, error: reqwest::Error) -> EdgeError {
        EdgeError::Unreachable {
            admin: self.inner.config.admin.clone(),
            reason: error.to_string(),
        }
    }
}

/// Restarts a Caddy this edge started whenever it exits, and puts the routes back; stops it
/// (SIGTERM to its group, then SIGKILL) when told to.
async fn supervise(
    edge: Edge,
    mut child: tokio::process::Child,
    file: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(?status, "the edge's Caddy exited; starting it again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                match edge.spawn_caddy(&file) {
                    Ok(next) => child = next,
                    Err(error) => {
                        tracing::error!(%error, "cannot start Caddy again");
                        continue;
                    }
                }
                if edge.wait_until_answering().await.is_ok() {
                    backoff = Duration::from_millis(200);
                    let routes = edge.inner.routes.lock().await;
                    for (id, (hosts, upstreams)) in routes.iter() {
                        if let Err(error) = edge.put_route(id, hosts, upstreams).await {
                            tracing::error!(route = %id, %error, "cannot put a route back");
                        }
                    }
                }
            }
            _ = async { let _ = stop.wait_for(|stop| *stop).await; } => {
                if let Some(pid) = child.id() {
                    // SAFETY: signals the process group the child leads; ESRCH when gone.
                    unsafe { libc::killpg(pid as i32, libc::SIGTERM) };
                }
                if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}
