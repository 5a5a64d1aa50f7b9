//! Wharf's edge: one Caddy (2.6) in front of the apps on this host, driven through Caddy's admin
//! API. Agents route a service's host names to its containers here, and switch a service from one
//! version to the next (blue-green) by replacing the upstreams of its route.
//!
//! Wharf owns one HTTP server inside Caddy's config, `apps.http.servers.wharf`, and nothing else:
//! it works beside whatever else a Caddy it finds already runs. Each service is one route of that
//! server, addressed by its `@id` (`/id/<id>` in the admin API). The server's routes are laid out
//! as
//!
//! 1. `wharf-drain`: no host match, not terminal; while the file `<state_dir>/draining` exists it
//!    adds `Connection: close` to every response (see below);
//! 2. one route per service: its host names, a `reverse_proxy` to its upstreams, terminal;
//! 3. `wharf-not-found`: a plain 404 for host names no service has, so a request for an unknown
//!    host never looks like an answer (Caddy's own answer is an empty 200).
//!
//! # Switching without dropping a request
//!
//! Caddy 2.6 has no partial updates: every admin change, however small (a PATCH of one route's
//! `upstreams` or a PUT of the whole route alike), loads a whole new config, starts new servers
//! and gracefully stops the old ones. Requests in flight finish on the old servers with the old
//! upstreams, and new requests get the new ones, but a client hammering the edge while the
//! upstreams switched back and forth still saw failed requests, for two reasons:
//!
//! - **Idle keep-alive connections are closed.** The old server's `http.Server.Shutdown` closes
//!   every connection that sits idle between two requests. HTTP/1.1 has no way to say "send
//!   nothing more on this connection" other than closing it, so a client whose next request is
//!   already on its way gets a reset or an empty answer (`RemoteDisconnected`). Go's own comment
//!   reads "such is life with HTTP/1.1"; browsers retry such requests, most HTTP libraries
//!   (hyper, Python's) do not. The fix is the drain route: before each change Wharf creates
//!   `<state_dir>/draining` (Caddy's `file` matcher looks for it on every request, so this needs no
//!   reload) and waits [`DRAIN`]; meanwhile every response says `Connection: close`, so clients
//!   in the middle of using a connection finish with it cleanly and open a new one. Caddy
//!   answers the change just as the old servers begin to stop, so the change then waits
//!   [`SETTLE`] more, until they have closed their idle connections, before the file goes,
//!   keep-alive is back and `set_route` returns. Only a connection left unused for the whole
//!   window can still meet the close, and only if its next request leaves at that very moment.
//! - **Connections not yet accepted are reset.** On Linux, Caddy 2.6 binds a fresh
//!   `SO_REUSEPORT` socket for the new config and closes the old one. Connections the kernel had
//!   queued on the old socket, and the old server had not accepted yet, are reset when it closes
//!   (the resets sent matched the failures one for one). Linux ≥ 5.14 can hand them to the other
//!   socket of the group instead: `net.ipv4.tcp_migrate_req = 1`. [`Edge::connect_or_start`]
//!   sets it when it may (the setting belongs to the network namespace and decides nothing but
//!   the fate of those queued connections), and warns when it cannot;
//!   [`listener_migration_enabled`] tells.
//!
//! A caller that expects a change soon can begin its drain early ([`Edge::drain_ahead`]): a
//! deploy does so while it checks the new version, so that the switch itself need not wait.
//!
//! With both, the test that switches upstreams twenty times under continuous load from several
//! client loops sees no failed request. An update that would not change the config is skipped, so
//! repeating `set_route` costs no reload. Each route's `reverse_proxy` also retries a connection
//! that is refused (`load_balancing.try_duration`/`try_interval`) and takes an upstream that
//! refused out of rotation for a moment (passive health), so one dead upstream among several, or
//! a container that is restarting, costs latency rather than errors. Blue-green deploys must
//! still stop the old containers only after `set_route` returned: requests the old config already
//! routed finish against the old upstreams.
//!
//! # Caddy's lifetime
//!
//! When no admin API answers, [`Edge::connect_or_start`] starts `caddy run` with a config of its
//! own (admin on `config.admin`, nothing persisted, storage and logs in `state_dir`) and
//! supervises it: Caddy runs in a process group of its own, and when it exits unexpectedly it is
//! started again, with backoff, from a config that holds every route this Edge set. Its output
//! goes to files rather than pipes, so a Caddy whose agent died keeps serving; the next agent
//! finds it answering and uses it. [`Edge::detach`] leaves the Caddy running on purpose (an agent
//! that stops or restarts must not take the apps offline). A Caddy found running is never
//! stopped. One that an earlier Edge started (its config is the one Wharf writes: storage and
//! log in one state directory) is watched: when its admin address stops listening and `caddy`
//! is installed, the Edge starts its own with every route it set, and supervises that one. Any
//! other Caddy (a system service, say) is used as it is: it has its own supervisor.
//!
//! Caddy is started only when its admin address refuses connections, never because an answer
//! was slow: Caddy binds its sockets with `SO_REUSEPORT`, so a second Caddy on the same
//! addresses would not fail but silently share them with the first, each serving its own config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::process::Child;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use crate::process::signal_group;

/// Caddy's default admin address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:2019";
/// Where the edge serves the apps unless told otherwise: port 80 on every interface.
pub const DEFAULT_LISTEN: &str = ":80";
/// How long responses say `Connection: close` before a change, so that busy keep-alive
/// connections are closed by their clients rather than by the reload.
pub const DRAIN: Duration = Duration::from_millis(250);
/// How long a change waits after Caddy answered before it returns. Caddy answers as soon as the
/// old servers have begun to stop, and they close their idle connections just then; a caller
/// whose next request left at once on such a connection would meet the close.
pub const SETTLE: Duration = Duration::from_millis(50);

const SERVER_PATH: &str = "/config/apps/http/servers/wharf";
const DRAIN_ROUTE: &str = "wharf-drain";
const NOT_FOUND_ROUTE: &str = "wharf-not-found";
const DRAIN_FILE: &str = "draining";
const CONFIG_FILE: &str = "caddy.json";
/// Caddy's own log, rolled by Caddy (three files of 1 MB at most).
const CADDY_LOG: &str = "caddy.log";
/// What Caddy prints before its logging is set up (and panics); truncated at a start once it
/// passes [`OUTPUT_LOG_LIMIT`].
const OUTPUT_LOG: &str = "caddy-output.log";
const OUTPUT_LOG_LIMIT: u64 = 1 << 20;
const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// An admin change reloads Caddy's whole config, which takes milliseconds; a change that takes
/// longer than this will not succeed.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long "does anything answer there?" waits, while a Caddy starts.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long "does anything listen there?" waits before Wharf gives up rather than guess.
const LISTEN_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a Caddy being started has to answer on its admin address.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// How long Caddy has to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How often the admin address of a Caddy found running is checked.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A Caddy that ran this long before it exited is restarted after the first backoff again.
const STABLE_RUN: Duration = Duration::from_secs(30);

/// Where the edge listens and how to reach or start its Caddy.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Caddy's admin API address, host:port (WHARF_CADDY_ADMIN, default 127.0.0.1:2019).
    pub admin: String,
    /// Where the edge serves the apps (WHARF_EDGE_LISTEN, default ":80"), Caddy listen syntax.
    pub listen: String,
    /// The caddy binary to start when no admin API answers (default "caddy" on PATH).
    pub caddy_bin: PathBuf,
    /// A directory for the config/data/log files of a Caddy the agent starts itself.
    pub state_dir: PathBuf,
}

impl EdgeConfig {
    /// The defaults, with Caddy's files under `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> EdgeConfig {
        EdgeConfig {
            admin: DEFAULT_ADMIN.to_owned(),
            listen: DEFAULT_LISTEN.to_owned(),
            caddy_bin: PathBuf::from("caddy"),
            state_dir: state_dir.into(),
        }
    }
}

/// Why the edge could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("no Caddy answers at {admin} and `{program}` is not installed (Debian package caddy)")]
    NotInstalled { admin: String, program: String },
    #[error("Caddy did not start: {0}")]
    Start(String),
    #[error("Caddy's admin API at {admin} did not answer {method} {path}: {reason}")]
    Unreachable {
        admin: String,
        method: Method,
        path: String,
        reason: String,
    },
    #[error("Caddy's admin API refused {method} {path} ({status}): {message}")]
    Refused {
        method: Method,
        path: String,
        status: u16,
        message: String,
    },
    #[error("Caddy's admin API answered {method} {path} with JSON Wharf cannot read: {reason}")]
    Unexpected {
        method: Method,
        path: String,
        reason: String,
    },
    #[error("invalid route {id:?}: {reason}")]
    InvalidRoute { id: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Wharf's edge on this host. Clones share one Caddy and one lock; dropping the last clone
/// stops the Caddy it started, as [`Edge::shutdown`] does ([`Edge::detach`] leaves it running).
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Present when this Edge started Caddy, or watches one it found and may start one;
    /// dropping it tells the supervisor to stop the Caddy it started.
    supervisor: Option<Supervisor>,
}

/// What the Edge and its supervisor task both use.
struct Shared {
    admin: AdminApi,
    listen: String,
    caddy_bin: PathBuf,
    /// Absolute, because Caddy reads files in it (the drain marker) from its own directory.
    state_dir: PathBuf,
    /// The routes this Edge set, as last asked for: a restarted Caddy starts with them. The lock
    /// also serializes every admin change of this Edge, so that no read-modify-write (look up a
    /// route, then insert it) races another and loses a route.
    routes: Mutex<BTreeMap<String, Route>>,
    /// The pid of the Caddy this Edge started, while it runs; 0 otherwise.
    caddy_pid: AtomicU32,
    /// Who holds the drain marker, and since when it exists.
    drain: std::sync::Mutex<DrainState>,
}

/// The drain marker exists while anyone holds it: a change in progress, or a caller that
/// drains ahead of a change it expects ([`Edge::drain_ahead`]).
#[derive(Default)]
struct DrainState {
    holders: usize,
    /// When the marker was written; `None` while nobody holds it or it could not be written.
    since: Option<Instant>,
}

struct Supervisor {
    /// Anything but `Run` ends the supervisor task; dropping it counts as `Stop`.
    stop: watch::Sender<Ending>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What the supervisor is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Keep Caddy running (the supervisor's normal life).
    Run,
    /// Stop the Caddy it started, and end.
    Stop,
    /// End and leave Caddy running, for whoever comes next.
    Detach,
}

/// One service's route: requests for `hosts` go to `upstreams`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    hosts: Vec<String>,
    upstreams: Vec<String>,
}

impl Edge {
    /// Uses the Caddy whose admin API answers at config.admin; when none answers and the caddy
    /// binary exists, starts one (`caddy run` with a JSON config whose admin listens on
    /// config.admin) and supervises it: if it dies it is started again and Wharf's routes are
    /// put back. Errors clearly when neither works ("no Caddy answers at … and `caddy` is not
    /// installed").
    ///
    /// Either way the `wharf` server is created when absent (with the `apps.http` parents), and
    /// `net.ipv4.tcp_migrate_req` is turned on when possible (see the module docs).
    pub async fn connect_or_start(config: EdgeConfig) -> Result<Edge, EdgeError> {
        let state_dir = std::path::absolute(&config.state_dir).map_err(|source| EdgeError::Io {
            path: config.state_dir.clone(),
            source,
        })?;
        std::fs::create_dir_all(&state_dir).map_err(|source| EdgeError::Io {
            path: state_dir.clone(),
            source,
        })?;
        if state_dir.to_string_lossy().contains(['{', '}']) {
            // Caddy would read braces in the drain marker's path as placeholders.
            return Err(EdgeError::Start(format!(
                "the state directory {} must not contain braces",
                state_dir.display()
            )));
        }
        let shared = Arc::new(Shared {
            admin: AdminApi::new(&config.admin)?,
            listen: config.listen.clone(),
            caddy_bin: config.caddy_bin.clone(),
            state_dir,
            routes: Mutex::new(BTreeMap::new()),
            caddy_pid: AtomicU32::new(0),
            drain: std::sync::Mutex::new(DrainState::default()),
        });
        enable_listener_migration();
        let installed = crate::process::find_program(&config.caddy_bin).is_some();
        let first = if shared.admin.listening().await? {
            tracing::info!(admin = %config.admin, "using the Caddy that listens there");
            None
        } else {
            if !installed {
                return Err(EdgeError::NotInstalled {
                    admin: config.admin.clone(),
                    program: config.caddy_bin.display().to_string(),
                });
            }
            Some(start_caddy(&shared).await?)
        };
        // A Caddy found running is watched when an earlier Edge started it and one can be
        // started in its place.
        let watch_found = first.is_none() && installed && shared.started_by_an_edge().await;
        let supervisor = (first.is_some() || watch_found).then(|| {
            let (stop, stop_receiver) = watch::channel(Ending::Run);
            let task = tokio::spawn(supervise(shared.clone(), first, stop_receiver));
            Supervisor {
                stop,
                task: std::sync::Mutex::new(Some(task)),
            }
        });
        let edge = Edge {
            inner: Arc::new(Inner { shared, supervisor }),
        };
        let ensured = {
            let _changes = edge.inner.shared.routes.lock().await;
            edge.inner.shared.ensure_server().await
        };
        if let Err(error) = ensured {
            edge.shutdown().await;
            return Err(error);
        }
        Ok(edge)
    }

    /// Creates or replaces the route `id` (e.g. "wharf-web"): requests whose Host is one of
    /// `hosts` go to `upstreams` ("127.0.0.1:PORT"), load-balanced (round robin). Idempotent.
    /// Switching upstreams fails no request in flight and no new one (see the module docs); it
    /// takes [`DRAIN`] + [`SETTLE`] and a reload, about a third of a second.
    ///
    /// A call that would change nothing changes nothing (no reload). On an error the route may or
    /// may not be in place; call again. A Caddy this Edge restarts gets the route as last asked
    /// for, even when the call that asked failed because Caddy was down.
    pub async fn set_route(
        &self,
        id: &str,
        hosts: &[String],
        upstreams: &[String],
    ) -> Result<(), EdgeError> {
        let route = Route::new(id, hosts, upstreams)?;
        let desired = route_json(id, &route);
        let shared = &self.inner.shared;
        let mut routes = shared.routes.lock().await;
        routes.insert(id.to_owned(), route);
        match shared.admin.get_id(id).await? {
            Some(current) if current == desired => {
                tracing::debug!(route = id, "route unchanged");
            }
            Some(_) => {
                shared
                    .change(Method::PATCH, &format!("/id/{id}"), Some(&desired))
                    .await?;
                tracing::info!(route = id, ?hosts, ?upstreams, "route updated");
            }
            None => {
                let path = shared.insertion_path().await?;
                let method = if path.ends_with("/routes") {
                    Method::POST
                } else {
                    Method::PUT
                };
                shared.change(method, &path, Some(&desired)).await?;
                tracing::info!(route = id, ?hosts, ?upstreams, "route added");
            }
        }
        Ok(())
    }

    /// The upstreams of route `id`, or None when there is no such route.
    pub async fn route_upstreams(&self, id: &str) -> Result<Option<Vec<String>>, EdgeError> {
        check_id(id)?;
        let path = format!("/id/{id}");
        let Some(route) = self.inner.shared.admin.get_id(id).await? else {
            return Ok(None);
        };
        let route: StoredRoute =
            serde_json::from_value(route).map_err(|error| EdgeError::Unexpected {
                method: Method::GET,
                path,
                reason: error.to_string(),
            })?;
        let upstreams = route
            .handle
            .into_iter()
            .find(|handler| handler.handler == "reverse_proxy")
            .map(|proxy| proxy.upstreams.into_iter().map(|up| up.dial).collect())
            .unwrap_or_default();
        Ok(Some(upstreams))
    }

    /// Removes the route `id`; removing a route that is not there is not an error.
    pub async fn remove_route(&self, id: &str) -> Result<(), EdgeError> {
        check_id(id)?;
        let shared = &self.inner.shared;
        let mut routes = shared.routes.lock().await;
        routes.remove(id);
        if shared.admin.get_id(id).await?.is_some() {
            shared
                .change(Method::DELETE, &format!("/id/{id}"), None)
                .await?;
            tracing::info!(route = id, "route removed");
        }
        Ok(())
    }

    /// Stops the Caddy this Edge started (if it started one); a Caddy it found running is left
    /// alone.
    ///
    /// Caddy gets SIGTERM, and SIGKILL after five seconds. Clones of this Edge cannot reach it
    /// afterwards.
    pub async fn shutdown(&self) {
        self.end(Ending::Stop).await;
    }

    /// Ends supervision and leaves Caddy serving the routes as they are: the next Edge on the
    /// same admin address finds it and takes it over. Clones of this Edge still reach it, but
    /// nothing restarts it any more.
    pub async fn detach(&self) {
        self.end(Ending::Detach).await;
    }

    async fn end(&self, ending: Ending) {
        let Some(supervisor) = &self.inner.supervisor else {
            return;
        };
        let _ = supervisor.stop.send(ending);
        let task = supervisor
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Begins the drain of a change the caller expects soon (a route switch once a new version
    /// is healthy), so that the change need not wait [`DRAIN`] itself: responses close their
    /// connections from now until the returned guard is dropped, or for `at_most`, whichever
    /// comes first. Every service on this edge is affected, hence the bound.
    pub fn drain_ahead(&self, at_most: Duration) -> DrainAhead {
        let shared = self.inner.shared.clone();
        shared.hold_drain();
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let guard = DrainAhead {
            shared: shared.clone(),
            released: released.clone(),
        };
        tokio::spawn(async move {
            tokio::time::sleep(at_most).await;
            DrainAhead::release(&shared, &released);
        });
        guard
    }

    /// The pid of the Caddy this Edge started, while it runs (None for a Caddy it found running).
    pub fn caddy_pid(&self) -> Option<u32> {
        match self.inner.shared.caddy_pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }
}

/// True when the kernel hands connections queued on a closing `SO_REUSEPORT` socket to another
/// socket of its group (`net.ipv4.tcp_migrate_req`), which Caddy's reloads need to reset none.
pub fn listener_migration_enabled() -> bool {
    std::fs::read_to_string(MIGRATE_REQ).is_ok_and(|value| value.trim() == "1")
}

/// Turns `net.ipv4.tcp_migrate_req` on when it is off and we may; warns when it stays off.
fn enable_listener_migration() {
    match std::fs::read_to_string(MIGRATE_REQ) {
        Ok(value) if value.trim() == "1" => {}
        Ok(_) => match std::fs::write(MIGRATE_REQ, "1") {
            Ok(()) => tracing::info!(
                "set net.ipv4.tcp_migrate_req = 1, so Caddy's reloads reset no waiting connection"
            ),
            Err(error) => tracing::warn!(
                %error,
                "net.ipv4.tcp_migrate_req is 0 and cannot be set: each route change may reset \
                 connections Caddy has not accepted yet; set it to 1 (sysctl) to avoid that"
            ),
        },
        Err(error) => tracing::warn!(
            %error,
            "this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14 and later have it): each \
             route change may reset connections Caddy has not accepted yet"
        ),
    }
}

impl Shared {
    /// True when the Caddy at the admin address runs the config an Edge writes when it starts
    /// one (storage and log files in one state directory), not somebody else's.
    async fn started_by_an_edge(&self) -> bool {
        match self.admin.request(Method::GET, "/config/", None).await {
            Ok(config) => is_edge_config(&config),
            Err(_) => false,
        }
    }

    /// Creates the `wharf` server when it is absent, and its fixed routes when they are missing.
    /// The caller holds the routes lock.
    async fn ensure_server(&self) -> Result<(), EdgeError> {
        let server = match self.admin.request(Method::GET, SERVER_PATH, None).await {
            Ok(Value::Null) => None,
            Ok(server) => Some(server),
            // A missing parent (no `apps` or no `http` yet) is a 400 "invalid traversal path".
            Err(EdgeError::Refused { status: 400, .. }) => None,
            Err(error) => return Err(error),
        };
        let Some(server) = server else {
            // Caddy 2.6 creates the missing parent objects of a PUT path.
            let server = self.server_json(&BTreeMap::new());
            self.admin
                .request(Method::PUT, SERVER_PATH, Some(&server))
                .await?;
            tracing::info!(listen = %self.listen, "created Caddy's wharf server");
            return Ok(());
        };
        if server.get("listen") != Some(&json!([self.listen])) {
            self.admin
                .request(
                    Method::PATCH,
                    &format!("{SERVER_PATH}/listen"),
                    Some(&json!([self.listen])),
                )
                .await?;
            tracing::info!(listen = %self.listen, "moved Caddy's wharf server");
        }
        if !server.get("routes").is_some_and(Value::is_array) {
            let routes = json!([self.drain_route(), not_found_route()]);
            self.admin
                .request(Method::PUT, &format!("{SERVER_PATH}/routes"), Some(&routes))
                .await?;
            return Ok(());
        }
        let drain = self.drain_route();
        match self.admin.get_id(DRAIN_ROUTE).await? {
            None => {
                self.admin
                    .request(
                        Method::PUT,
                        &format!("{SERVER_PATH}/routes/0"),
                        Some(&drain),
                    )
                    .await?;
            }
            // Another state directory left it: the marker is looked for in ours now.
            Some(current) if current != drain => {
                self.admin
                    .request(Method::PATCH, &format!("/id/{DRAIN_ROUTE}"), Some(&drain))
                    .await?;
            }
            Some(_) => {}
        }
        if self.admin.get_id(NOT_FOUND_ROUTE).await?.is_none() {
            self.admin
                .request(
                    Method::POST,
                    &format!("{SERVER_PATH}/routes"),
                    Some(&not_found_route()),
                )
                .await?;
        }
        Ok(())
    }

    /// Where a new service route goes: just before `wharf-not-found` (a PUT at an index inserts
    /// there), or at the end of the routes (a POST appends) when that route is not there.
    async fn insertion_path(&self) -> Result<String, EdgeError> {
        let path = format!("{SERVER_PATH}/routes");
        let routes = self.admin.request(Method::GET, &path, None).await?;
        let position = routes.as_array().and_then(|routes| {
            routes
                .iter()
                .position(|route| route.get("@id").and_then(Value::as_str) == Some(NOT_FOUND_ROUTE))
        });
        Ok(match position {
            Some(index) => format!("{path}/{index}"),
            None => path,
        })
    }

    /// Makes one admin change, with keep-alive drained around it (see the module docs).
    async fn change(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, EdgeError> {
        let _drain = Drain::begin(self).await;
        let answer = self.admin.request(method, path, body).await?;
        tokio::time::sleep(SETTLE).await;
        Ok(answer)
    }

    /// The `wharf` server with `routes` between its two fixed routes.
    fn server_json(&self, routes: &BTreeMap<String, Route>) -> Value {
        let mut all = vec![self.drain_route()];
        all.extend(routes.iter().map(|(id, route)| route_json(id, route)));
        all.push(not_found_route());
        json!({
            "listen": [self.listen],
            "automatic_https": {"disable": true},
            "routes": all,
        })
    }

    fn drain_route(&self) -> Value {
        json!({
            "@id": DRAIN_ROUTE,
            "match": [{"file": {
                "root": self.state_dir.to_string_lossy(),
                "try_files": [format!("/{DRAIN_FILE}")],
            }}],
            "handle": [{"handler": "headers", "response": {"set": {"Connection": ["close"]}}}],
        })
    }

    /// The whole config of a Caddy this Edge starts: admin on our address, nothing saved, files
    /// in the state directory, and the `wharf` server with every route this Edge set.
    fn caddy_config(&self, routes: &BTreeMap<String, Route>) -> Value {
        let in_state = |name: &str| self.state_dir.join(name).to_string_lossy().into_owned();
        json!({
            "admin": {"listen": self.admin.address, "config": {"persist": false}},
            "storage": {"module": "file_system", "root": in_state("data")},
            "logging": {"logs": {"default": {"writer": {
                "output": "file",
                "filename": in_state(CADDY_LOG),
                "roll_size_mb": 1,
                "roll_keep": 2,
            }}}},
            "apps": {"http": {"servers": {"wharf": self.server_json(routes)}}},
        })
    }
}

impl Shared {
    /// Takes a hold on the drain marker, writing it for the first holder; returns since when
    /// responses have been closing their connections (`None` when the marker cannot be written).
    fn hold_drain(&self) -> Option<Instant> {
        let mut state = self
            .drain
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.holders == 0 {
            let marker = self.state_dir.join(DRAIN_FILE);
            state.since = match std::fs::write(&marker, b"") {
                Ok(()) => Some(Instant::now()),
                Err(error) => {
                    tracing::warn!(
                        %error,
                        marker = %marker.display(),
                        "cannot drain keep-alive connections"
                    );
                    None
                }
            };
        }
        state.holders += 1;
        state.since
    }

    /// Lets go of a hold; the last one removes the marker.
    fn release_drain(&self) {
        let mut state = self
            .drain
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.holders = state.holders.saturating_sub(1);
        if state.holders == 0 && state.since.take().is_some() {
            let _ = std::fs::remove_file(self.state_dir.join(DRAIN_FILE));
        }
    }
}

/// True for the config an Edge gives a Caddy it starts ([`Shared::caddy_config`]): storage and
/// log in one state directory.
fn is_edge_config(config: &Value) -> bool {
    let storage = config
        .pointer("/storage/root")
        .and_then(Value::as_str)
        .and_then(|root| root.strip_suffix("/data"));
    let log = config
        .pointer("/logging/logs/default/writer/filename")
        .and_then(Value::as_str)
        .and_then(|file| file.strip_suffix(&format!("/{CADDY_LOG}")));
    storage.is_some() && storage == log
}

/// While it lives, the drain marker exists and responses close their connections. Dropping it
/// (also when the change is cancelled) lets go of the marker.
struct Drain<'a> {
    shared: &'a Shared,
}

impl Drain<'_> {
    /// Holds the marker and returns once it has existed for [`DRAIN`] (at once when a drain
    /// ahead began long enough ago).
    async fn begin(shared: &Shared) -> Drain<'_> {
        let drain = Drain { shared };
        if let Some(since) = shared.hold_drain() {
            tokio::time::sleep_until(since + DRAIN).await;
        }
        drain
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        self.shared.release_drain();
    }
}

/// A drain begun ahead of a change the caller expects: see [`Edge::drain_ahead`].
pub struct DrainAhead {
    shared: Arc<Shared>,
    released: Arc<std::sync::atomic::AtomicBool>,
}

impl DrainAhead {
    fn release(shared: &Shared, released: &std::sync::atomic::AtomicBool) {
        if !released.swap(true, Ordering::SeqCst) {
            shared.release_drain();
        }
    }
}

impl Drop for DrainAhead {
    fn drop(&mut self) {
        DrainAhead::release(&self.shared, &self.released);
    }
}

fn not_found_route() -> Value {
    json!({
        "@id": NOT_FOUND_ROUTE,
        "handle": [{
            "handler": "static_response",
            "status_code": 404,
            "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
            "body": "No Wharf service answers at this host name.\n",
        }],
        "terminal": true,
    })
}

/// A service's route as Caddy stores it. Retries cover upstreams that refuse connections: a
/// refused dial is retried every 100 ms for up to 5 s, on the next upstream in turn, and an
/// upstream that refused is skipped for 2 s.
fn route_json(id: &str, route: &Route) -> Value {
    let upstreams: Vec<Value> = route
        .upstreams
        .iter()
        .map(|dial| json!({"dial": dial}))
        .collect();
    json!({
        "@id": id,
        "match": [{"host": route.hosts}],
        "handle": [{
            "handler": "reverse_proxy",
            "upstreams": upstreams,
            "load_balancing": {
                "selection_policy": {"policy": "round_robin"},
                "try_duration": "5s",
                "try_interval": "100ms",
            },
            "health_checks": {"passive": {"fail_duration": "2s"}},
        }],
        "terminal": true,
    })
}

#[derive(Deserialize)]
struct StoredRoute {
    #[serde(default)]
    handle: Vec<StoredHandler>,
}

#[derive(Deserialize)]
struct StoredHandler {
    #[serde(default)]
    handler: String,
    #[serde(default)]
    upstreams: Vec<StoredUpstream>,
}

#[derive(Deserialize)]
struct StoredUpstream {
    dial: String,
}

impl Route {
    /// Checks what Caddy would read differently from what was meant: ids become URL paths,
    /// and braces would be placeholders.
    fn new(id: &str, hosts: &[String], upstreams: &[String]) -> Result<Route, EdgeError> {
        check_id(id)?;
        let invalid = |reason: String| EdgeError::InvalidRoute {
            id: id.to_owned(),
            reason,
        };
        if hosts.is_empty() {
            return Err(invalid("a route needs at least one host name".to_owned()));
        }
        for host in hosts {
            let fine = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'*');
            if !fine {
                return Err(invalid(format!("{host:?} is not a host name")));
            }
        }
        if upstreams.is_empty() {
            return Err(invalid("a route needs at least one upstream".to_owned()));
        }
        for upstream in upstreams {
            let fine = upstream.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && host.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']')
                    })
                    && port.parse::<u16>().is_ok_and(|port| port > 0)
            });
            if !fine {
                return Err(invalid(format!("{upstream:?} is not host:port")));
            }
        }
        Ok(Route {
            hosts: hosts.to_vec(),
            upstreams: upstreams.to_vec(),
        })
    }
}

fn check_id(id: &str) -> Result<(), EdgeError> {
    let reason = if id.is_empty() || id.len() > 64 {
        "a route id has 1 to 64 characters"
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        "a route id has only letters, digits, '-', '_' and '.'"
    } else if id == DRAIN_ROUTE || id == NOT_FOUND_ROUTE {
        "this id is Wharf's own"
    } else {
        return Ok(());
    };
    Err(EdgeError::InvalidRoute {
        id: id.to_owned(),
        reason: reason.to_owned(),
    })
}

/// Caddy's admin API at one address.
struct AdminApi {
    /// host:port, as configured.
    address: String,
    base: String,
    /// Sent as `Origin`, so that a Caddy that enforces origins (`admin.enforce_origin`) accepts
    /// us under its default origins; the `Host` header (checked whenever the admin address is not
    /// a wildcard) is the address itself.
    origin: String,
    http: reqwest::Client,
}

impl AdminApi {
    fn new(address: &str) -> Result<AdminApi, EdgeError> {
        let http = reqwest::Client::builder()
            // An HTTP proxy from the environment must never see admin requests.
            .no_proxy()
            .connect_timeout(PROBE_TIMEOUT)
            .timeout(ADMIN_TIMEOUT)
            // Every change restarts Caddy's admin server too: a kept connection would meet the
            // same close race as clients of the edge do (see the module docs).
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|error| EdgeError::Start(format!("no HTTP client: {}", chain(&error))))?;
        Ok(AdminApi {
            address: address.to_owned(),
            base: format!("http://{address}"),
            origin: format!("http://{address}"),
            http,
        })
    }

    /// Whether anything listens at the admin address: false only when connections are refused
    /// (nothing is there to share the address with); an error when it cannot tell.
    async fn listening(&self) -> Result<bool, EdgeError> {
        let connect = tokio::net::TcpStream::connect(self.address.as_str());
        match tokio::time::timeout(LISTEN_CHECK_TIMEOUT, connect).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => Ok(false),
            Ok(Err(error)) => Err(self.unreachable(Method::GET, "/", error.to_string())),
            Err(_) => Err(self.unreachable(
                Method::GET,
                "/",
                format!("no connection within {} s", LISTEN_CHECK_TIMEOUT.as_secs()),
            )),
        }
    }

    fn unreachable(&self, method: Method, path: &str, reason: String) -> EdgeError {
        EdgeError::Unreachable {
            admin: self.address.clone(),
            method,
            path: path.to_owned(),
            reason,
        }
    }

    /// True when anything answers HTTP at the admin address.
    async fn answers(&self) -> bool {
        self.http
            .get(format!("{}/config/", self.base))
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .is_ok()
    }

    /// The object with `@id` `id`, or None when Caddy knows no such id.
    async fn get_id(&self, id: &str) -> Result<Option<Value>, EdgeError> {
        match self.request(Method::GET, &format!("/id/{id}"), None).await {
            Ok(Value::Null) | Err(EdgeError::Refused { status: 404, .. }) => Ok(None),
            Ok(value) => Ok(Some(value)),
            Err(error) => Err(error),
        }
    }

    /// Sends one request; a non-2xx answer is [`EdgeError::Refused`] with Caddy's message.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, EdgeError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header(reqwest::header::ORIGIN, &self.origin);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let unreachable =
            |error: reqwest::Error| self.unreachable(method.clone(), path, chain(&error));
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(EdgeError::Refused {
                method,
                path: path.to_owned(),
                status: status.as_u16(),
                message: caddy_message(&bytes),
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|error| EdgeError::Unexpected {
            method,
            path: path.to_owned(),
            reason: error.to_string(),
        })
    }
}

/// Caddy's `{"error": "..."}`, or the start of whatever else it answered.
fn caddy_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct CaddyError {
        error: String,
    }
    match serde_json::from_slice::<CaddyError>(body) {
        Ok(answer) => answer.error,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            match text.char_indices().nth(500) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text.to_owned(),
            }
        }
    }
}

/// An error with its sources, since reqwest's own message alone is "error sending request".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Starts Caddy with a config holding every route this Edge set, and returns once its admin API
/// answers. Holds the routes lock throughout, so no change can slip in between the config
/// written and the Caddy that serves it.
async fn start_caddy(shared: &Shared) -> Result<Child, EdgeError> {
    let routes = shared.routes.lock().await;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EdgeError::Io { path, source }
    };
    let config_path = shared.state_dir.join(CONFIG_FILE);
    let config = shared.caddy_config(&routes);
    std::fs::write(&config_path, config.to_string()).map_err(io(&config_path))?;
    let output_path = shared.state_dir.join(OUTPUT_LOG);
    let output = open_output_log(&output_path).map_err(io(&output_path))?;
    let errors = output.try_clone().map_err(io(&output_path))?;
    let mut child = tokio::process::Command::new(&shared.caddy_bin)
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        // Caddy keeps certificates and its autosave under these; both belong in the state dir.
        .env("XDG_DATA_HOME", &shared.state_dir)
        .env("XDG_CONFIG_HOME", &shared.state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(output))
        .stderr(Stdio::from(errors))
        // Its own group: a terminal's Ctrl-C does not reach it, and stopping it stops all of it.
        .process_group(0)
        // When the supervisor is dropped without a shutdown (a test ends, the runtime goes), Caddy
        // goes with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| {
            EdgeError::Start(format!(
                "cannot run {}: {error}",
                shared.caddy_bin.display()
            ))
        })?;
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(EdgeError::Start(format!(
                "caddy exited ({status}) before its admin API answered: {}",
                output_tail(&output_path)
            )));
        }
        if shared.admin.answers().await {
            break;
        }
        if Instant::now() >= deadline {
            if let Some(pid) = child.id() {
                signal_group(pid as i32, libc::SIGKILL);
            }
            let _ = child.wait().await;
            return Err(EdgeError::Start(format!(
                "its admin API did not answer at {} within {} s: {}",
                shared.admin.address,
                START_DEADLINE.as_secs(),
                output_tail(&output_path)
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap_or(0);
    shared.caddy_pid.store(pid, Ordering::SeqCst);
    tracing::info!(
        pid,
        admin = %shared.admin.address,
        listen = %shared.listen,
        routes = routes.len(),
        "started Caddy"
    );
    Ok(child)
}

/// Opens the file Caddy's stdout and stderr go to, starting it afresh once it is too large.
fn open_output_log(path: &Path) -> std::io::Result<std::fs::File> {
    let too_large = std::fs::metadata(path).is_ok_and(|m| m.len() > OUTPUT_LOG_LIMIT);
    std::fs::OpenOptions::new()
        .create(true)
        .append(!too_large)
        .write(true)
        .truncate(too_large)
        .open(path)
}

/// The last lines of Caddy's output, for an error message.
fn output_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(2000);
    let text = String::from_utf8_lossy(&text[start..]);
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(4)..].join(" | ");
    if tail.is_empty() {
        "it printed nothing".to_owned()
    } else {
        tail
    }
}

/// Watches the Caddy this Edge started (`first`), or the one it found running (`None`): starts
/// one (again, with backoff) when it exits or, for one found running, when its admin address
/// stops listening. Stops the Caddy it started when asked to or when the last Edge is dropped;
/// leaves it running when detached.
async fn supervise(shared: Arc<Shared>, first: Option<Child>, mut stop: watch::Receiver<Ending>) {
    // A Caddy this Edge did not start answers at the admin address: it is only watched.
    let mut found = first.is_none();
    let mut child = first;
    let mut started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        if let Some(running) = child.as_mut() {
            let ending = tokio::select! {
                status = running.wait() => {
                    shared.caddy_pid.store(0, Ordering::SeqCst);
                    let status =
                        status.map_or_else(|error| error.to_string(), |s| s.to_string());
                    if started.elapsed() >= STABLE_RUN {
                        backoff = FIRST_BACKOFF;
                    }
                    tracing::warn!(
                        %status,
                        retry_in_ms = backoff.as_millis() as u64,
                        "Caddy exited; starting it again"
                    );
                    child = None;
                    continue;
                }
                ending = stop_requested(&mut stop) => ending,
            };
            shared.caddy_pid.store(0, Ordering::SeqCst);
            if ending == Ending::Detach {
                tracing::info!(pid = running.id(), "leaving Caddy running");
                // Dropping the handle would kill it (kill_on_drop).
                std::mem::forget(child.take());
            } else {
                stop_caddy(running).await;
            }
            return;
        }
        let wait = if found { WATCH_INTERVAL } else { backoff };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop_requested(&mut stop) => return,
        }
        match shared.admin.listening().await {
            Ok(false) if found => {
                tracing::warn!(
                    admin = %shared.admin.address,
                    "the Caddy found running stopped answering; starting one with Wharf's routes"
                );
                found = false;
            }
            Ok(false) => backoff = (backoff * 2).min(MAX_BACKOFF),
            Ok(true) => {
                if !found {
                    tracing::warn!(
                        admin = %shared.admin.address,
                        "something else listens at Caddy's admin address; not starting \
                         another Caddy beside it, watching it instead"
                    );
                    found = true;
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot tell whether Caddy's admin address is free");
                continue;
            }
        }
        tokio::select! {
            started_again = start_caddy(&shared) => match started_again {
                Ok(new) => {
                    started = Instant::now();
                    child = Some(new);
                }
                Err(error) => {
                    tracing::warn!(%error, "could not start Caddy; will retry");
                }
            },
            // Dropping the start kills a Caddy it had spawned (kill_on_drop).
            _ = stop_requested(&mut stop) => {
                shared.caddy_pid.store(0, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// Returns what was asked for once it is not `Run`; the sender (the last Edge) dropped is a stop.
async fn stop_requested(stop: &mut watch::Receiver<Ending>) -> Ending {
    match stop.wait_for(|ending| *ending != Ending::Run).await {
        Ok(ending) => *ending,
        Err(_) => Ending::Stop,
    }
}

/// SIGTERM to Caddy's group; SIGKILL when it has not exited after [`STOP_GRACE`]. Caddy's exit
/// waits for requests in flight, and Go counts a client connection that has not sent its first
/// request yet as busy for its first five seconds; so a client that opened a spare connection
/// can make Caddy take about that long.
async fn stop_caddy(child: &mut Child) {
    let Some(pid) = child.id() else {
        return;
    };
    signal_group(pid as i32, libc::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(pid, "Caddy did not stop after SIGTERM; killing it");
        signal_group(pid as i32, libc::SIGKILL);
        let _ = child.wait().await;
    }
    tracing::info!(pid, "stopped Caddy");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn routes_are_checked_before_caddy_sees_them() {
        let hosts = strings(&["a.test"]);
        let upstreams = strings(&["127.0.0.1:8080"]);
        assert!(Route::new("wharf-web", &hosts, &upstreams).is_ok());
        assert!(
            Route::new(
                "wharf-web",
                &strings(&["*.a.test"]),
                &strings(&["[::1]:80"])
            )
            .is_ok()
        );
        for (id, hosts, upstreams) in [
            ("", hosts.clone(), upstreams.clone()),
            ("a/b", hosts.clone(), upstreams.clone()),
            ("x?y", hosts.clone(), upstreams.clone()),
            (DRAIN_ROUTE, hosts.clone(), upstreams.clone()),
            (NOT_FOUND_ROUTE, hosts.clone(), upstreams.clone()),
            ("web", vec![], upstreams.clone()),
            ("web", strings(&["{http.request.host}"]), upstreams.clone()),
            ("web", strings(&["a test"]), upstreams.clone()),
            ("web", hosts.clone(), vec![]),
            ("web", hosts.clone(), strings(&["127.0.0.1"])),
            ("web", hosts.clone(), strings(&["127.0.0.1:0"])),
            ("web", hosts.clone(), strings(&["127.0.0.1:{env.PORT}"])),
            ("web", hosts.clone(), strings(&["unix//tmp/sock:1"])),
        ] {
            let error = Route::new(id, &hosts, &upstreams).unwrap_err();
            assert!(
                matches!(error, EdgeError::InvalidRoute { .. }),
                "{id} {hosts:?} {upstreams:?}"
            );
        }
    }

    #[test]
    fn only_the_config_an_edge_writes_counts_as_an_edges_caddy() {
        let shared = Shared {
            admin: AdminApi::new("127.0.0.1:2019").unwrap(),
            listen: ":80".to_owned(),
            caddy_bin: PathBuf::from("caddy"),
            state_dir: PathBuf::from("/var/lib/wharf/edge"),
            routes: Mutex::new(BTreeMap::new()),
            caddy_pid: AtomicU32::new(0),
            drain: std::sync::Mutex::new(DrainState::default()),
        };
        assert!(is_edge_config(&shared.caddy_config(&BTreeMap::new())));
        // A system Caddy: default storage, its own log, Wharf's server added beside its sites.
        let system = json!({
            "apps": {"http": {"servers": {"wharf": shared.server_json(&BTreeMap::new())}}},
            "logging": {"logs": {"default": {"writer": {"output": "file", "filename": "/var/log/caddy/caddy.log"}}}},
        });
        assert!(!is_edge_config(&system));
        assert!(!is_edge_config(&json!({})));
    }

    #[test]
    fn caddy_errors_are_shown_by_their_message() {
        assert_eq!(
            caddy_message(br#"{"error":"unknown object ID 'x'"}"#),
            "unknown object ID 'x'"
        );
        assert_eq!(caddy_message(b"  plain text\n"), "plain text");
        assert_eq!(caddy_message(&[b'x'; 2000]).chars().count(), 501);
    }
}
