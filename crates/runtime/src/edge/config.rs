//! The edge's config as Caddy reads it, built without I/O: the `wharf` server with its fixed
//! routes (the drain, the 404 for unknown host names) and one route per service, the whole
//! config of a Caddy the edge starts, and the checks a route passes before Caddy sees it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use super::EdgeError;

/// The route that adds `Connection: close` to every response while the drain marker exists.
pub(super) const DRAIN_ROUTE: &str = "wharf-drain";
/// The last route: a plain 404 for host names no service has.
pub(super) const NOT_FOUND_ROUTE: &str = "wharf-not-found";
/// The drain marker, in the state directory.
pub(super) const DRAIN_FILE: &str = "draining";
/// Caddy's own log, rolled by Caddy (three files of 1 MB at most).
const CADDY_LOG: &str = "caddy.log";

/// One service's route: requests for `hosts` go to `upstreams`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Route {
    hosts: Vec<String>,
    upstreams: Vec<String>,
}

/// The `wharf` server listening on `listen`, with `routes` between its two fixed routes.
pub(super) fn server_json(
    listen: &str,
    state_dir: &Path,
    routes: &BTreeMap<String, Route>,
) -> Value {
    let mut all = vec![drain_route(state_dir)];
    all.extend(routes.iter().map(|(id, route)| route_json(id, route)));
    all.push(not_found_route());
    json!({
        "listen": [listen],
        "automatic_https": {"disable": true},
        "routes": all,
    })
}

/// The drain route, which looks for the marker in `state_dir` on every request.
pub(super) fn drain_route(state_dir: &Path) -> Value {
    json!({
        "@id": DRAIN_ROUTE,
        "match": [{"file": {
            "root": state_dir.to_string_lossy(),
            "try_files": [format!("/{DRAIN_FILE}")],
        }}],
        "handle": [{"handler": "headers", "response": {"set": {"Connection": ["close"]}}}],
    })
}

/// The whole config of a Caddy an edge starts: admin on `admin`, nothing saved, files in the
/// state directory, and the `wharf` server with every route the edge set.
pub(super) fn caddy_config(
    admin: &str,
    listen: &str,
    state_dir: &Path,
    routes: &BTreeMap<String, Route>,
) -> Value {
    let in_state = |name: &str| state_dir.join(name).to_string_lossy().into_owned();
    json!({
        "admin": {"listen": admin, "config": {"persist": false}},
        "storage": {"module": "file_system", "root": in_state("data")},
        "logging": {"logs": {"default": {"writer": {
            "output": "file",
            "filename": in_state(CADDY_LOG),
            "roll_size_mb": 1,
            "roll_keep": 2,
        }}}},
        "apps": {"http": {"servers": {"wharf": server_json(listen, state_dir, routes)}}},
    })
}

/// True for the config an Edge gives a Caddy it starts ([`caddy_config`]): storage and
/// log in one state directory.
pub(super) fn is_edge_config(config: &Value) -> bool {
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

pub(super) fn not_found_route() -> Value {
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
pub(super) fn route_json(id: &str, route: &Route) -> Value {
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
    pub(super) fn new(
        id: &str,
        hosts: &[String],
        upstreams: &[String],
    ) -> Result<Route, EdgeError> {
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

pub(super) fn check_id(id: &str) -> Result<(), EdgeError> {
    // A deploy identity's route id is `wharf.{service}.{environment}`: two DNS labels.
    let reason = if id.is_empty() || id.len() > 255 {
        "a route id has 1 to 255 characters"
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

/// The upstreams of a service's route as Caddy stores it.
pub(super) fn upstreams_of(route: Value) -> Result<Vec<String>, serde_json::Error> {
    let route: StoredRoute = serde_json::from_value(route)?;
    Ok(route
        .handle
        .into_iter()
        .find(|handler| handler.handler == "reverse_proxy")
        .map(|proxy| proxy.upstreams.into_iter().map(|up| up.dial).collect())
        .unwrap_or_default())
}

/// What the other routes keep once route `id` takes `hosts`: a host name answers to one route
/// (the newest to claim it), never to an older route listed before it. For every other route
/// that has one of `hosts`: its id, and the route without them, or `None` when none is left.
pub(super) fn hosts_taken_from_others(
    routes: &BTreeMap<String, Route>,
    id: &str,
    hosts: &[String],
) -> Vec<(String, Option<Route>)> {
    routes
        .iter()
        .filter(|(other, route)| {
            other.as_str() != id && route.hosts.iter().any(|host| hosts.contains(host))
        })
        .map(|(other, route)| {
            let kept: Vec<String> = route
                .hosts
                .iter()
                .filter(|host| !hosts.contains(host))
                .cloned()
                .collect();
            let left = (!kept.is_empty()).then(|| Route {
                hosts: kept,
                upstreams: route.upstreams.clone(),
            });
            (other.clone(), left)
        })
        .collect()
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
        let state_dir = Path::new("/var/lib/wharf/edge");
        let none = BTreeMap::new();
        assert!(is_edge_config(&caddy_config(
            "127.0.0.1:2019",
            ":80",
            state_dir,
            &none
        )));
        // A system Caddy: default storage, its own log, Wharf's server added beside its sites.
        let system = json!({
            "apps": {"http": {"servers": {"wharf": server_json(":80", state_dir, &none)}}},
            "logging": {"logs": {"default": {"writer": {"output": "file", "filename": "/var/log/caddy/caddy.log"}}}},
        });
        assert!(!is_edge_config(&system));
        assert!(!is_edge_config(&json!({})));
    }

    #[test]
    fn service_routes_sit_between_the_drain_and_the_not_found_route() {
        let web = Route::new(
            "wharf-web",
            &strings(&["a.test"]),
            &strings(&["127.0.0.1:4100"]),
        )
        .unwrap();
        let routes = BTreeMap::from([("wharf-web".to_owned(), web.clone())]);
        let server = server_json(":8080", Path::new("/state"), &routes);
        assert_eq!(server["listen"], json!([":8080"]));
        let ids: Vec<&str> = server["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|route| route["@id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [DRAIN_ROUTE, "wharf-web", NOT_FOUND_ROUTE]);
        assert_eq!(
            server["routes"][0]["match"][0]["file"]["root"],
            json!("/state")
        );
        let stored = route_json("wharf-web", &web);
        assert_eq!(stored["match"][0]["host"], json!(["a.test"]));
        assert_eq!(upstreams_of(stored).unwrap(), ["127.0.0.1:4100"]);
        assert!(upstreams_of(json!({"handle": []})).unwrap().is_empty());
    }

    #[test]
    fn a_host_name_answers_to_the_newest_route_that_claims_it() {
        let strings = |items: &[&str]| {
            items
                .iter()
                .map(|item| (*item).to_owned())
                .collect::<Vec<_>>()
        };
        let route = |hosts: &[&str]| {
            Route::new("r", &strings(hosts), &strings(&["127.0.0.1:4100"])).unwrap()
        };
        let mut routes = BTreeMap::new();
        routes.insert("wharf.web.production".to_owned(), route(&["web.test"]));
        routes.insert(
            "wharf.web.staging".to_owned(),
            route(&["web.test", "staging.test"]),
        );
        routes.insert("wharf.api.production".to_owned(), route(&["api.test"]));
        let taken = hosts_taken_from_others(&routes, "wharf.web.next", &strings(&["web.test"]));
        assert_eq!(
            taken,
            [
                ("wharf.web.production".to_owned(), None),
                (
                    "wharf.web.staging".to_owned(),
                    Some(route(&["staging.test"]))
                ),
            ]
        );
        // A route that keeps its own hosts takes nothing from anyone.
        assert!(
            hosts_taken_from_others(&routes, "wharf.api.production", &strings(&["api.test"]))
                .is_empty()
        );
    }
}
