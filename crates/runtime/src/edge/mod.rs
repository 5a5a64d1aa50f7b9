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
//! This module holds the [`Edge`] and its changes; beside it, `config` builds what Caddy reads
//! (pure JSON, tested without a Caddy), `admin` speaks to Caddy's admin API, `caddy` starts and
//! supervises a Caddy of the edge's own, `drain` holds the drain marker, and `sysctl` reads and
//! sets the kernel setting below.
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

mod admin;
mod caddy;
mod config;
mod drain;
mod sysctl;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Mutex;

pub use self::drain::DrainAhead;
pub use self::sysctl::listener_migration_enabled;

use self::admin::AdminApi;
use self::caddy::{Ending, Supervisor, start_caddy};
use self::config::{
    DRAIN_ROUTE, NOT_FOUND_ROUTE, Route, check_id, is_edge_config, not_found_route, route_json,
};
use self::drain::{Drain, DrainState};
use self::sysctl::enable_listener_migration;

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

/// Where Wharf's server sits in Caddy's config.
const SERVER_PATH: &str = "/config/apps/http/servers/wharf";

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
        let supervisor =
            (first.is_some() || watch_found).then(|| Supervisor::start(shared.clone(), first));
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
        // Caddy answers with the first route that matches: an older route with one of these
        // host names would shadow this one.
        for (other, left) in config::hosts_taken_from_others(&routes, id, hosts) {
            match left {
                Some(left) => {
                    shared
                        .change(
                            Method::PATCH,
                            &format!("/id/{other}"),
                            Some(&route_json(&other, &left)),
                        )
                        .await?;
                    routes.insert(other.clone(), left);
                }
                None => {
                    if shared.admin.get_id(&other).await?.is_some() {
                        shared
                            .change(Method::DELETE, &format!("/id/{other}"), None)
                            .await?;
                    }
                    routes.remove(&other);
                }
            }
            tracing::info!(route = %other, taken_by = id, ?hosts, "host names moved to a newer route");
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
        let upstreams = config::upstreams_of(route).map_err(|error| EdgeError::Unexpected {
            method: Method::GET,
            path,
            reason: error.to_string(),
        })?;
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
        if let Some(supervisor) = &self.inner.supervisor {
            supervisor.end(ending).await;
        }
    }

    /// Begins the drain of a change the caller expects soon (a route switch once a new version
    /// is healthy), so that the change need not wait [`DRAIN`] itself: responses close their
    /// connections from now until the returned guard is dropped, or for `at_most`, whichever
    /// comes first. Every service on this edge is affected, hence the bound.
    pub fn drain_ahead(&self, at_most: Duration) -> DrainAhead {
        DrainAhead::begin(self.inner.shared.clone(), at_most)
    }

    /// The pid of the Caddy this Edge started, while it runs (None for a Caddy it found running).
    pub fn caddy_pid(&self) -> Option<u32> {
        match self.inner.shared.caddy_pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
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
            let server = config::server_json(&self.listen, &self.state_dir, &BTreeMap::new());
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
            let routes = json!([config::drain_route(&self.state_dir), not_found_route()]);
            self.admin
                .request(Method::PUT, &format!("{SERVER_PATH}/routes"), Some(&routes))
                .await?;
            return Ok(());
        }
        let drain = config::drain_route(&self.state_dir);
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
}
