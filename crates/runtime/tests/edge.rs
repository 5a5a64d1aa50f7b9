//! The edge against a real Caddy (Debian's caddy 2.6): each test runs its own Caddy on free
//! loopback ports, with tiny HTTP backends that answer their name.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use wharf_runtime::edge::{Edge, EdgeConfig, listener_migration_enabled};
use wharf_runtime::error_chain;

/// A loopback port held for one test: bound with `SO_REUSEPORT` but not listening. No bind to
/// port 0 on this machine gets it while it is held, so tests running side by side cannot pick
/// the same port (Caddy binds with `SO_REUSEPORT` too, so two Caddys on one port would share
/// it rather than fail); Caddy can listen on it; until something does, connections are refused.
struct Port {
    address: String,
    _socket: tokio::net::TcpSocket,
}

fn reserve_port() -> Port {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseport(true).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    Port {
        address: socket.local_addr().unwrap().to_string(),
        _socket: socket,
    }
}

/// An edge on reserved ports; the ports must be kept as long as the edge runs.
fn config(state_dir: &std::path::Path) -> (EdgeConfig, [Port; 2]) {
    let ports = [reserve_port(), reserve_port()];
    let config = EdgeConfig {
        admin: ports[0].address.clone(),
        listen: ports[1].address.clone(),
        ..EdgeConfig::new(state_dir)
    };
    (config, ports)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

/// An HTTP backend that answers every request with `name` and closes the connection.
async fn backend(name: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 2048];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                    if request.len() > 64 * 1024 {
                        return;
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    address
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GET / through the edge at `edge` with Host `host`: the status and body, or what failed.
async fn get(client: &reqwest::Client, edge: &str, host: &str) -> Result<(u16, String), String> {
    let response = client
        .get(format!("http://{edge}/"))
        .header(reqwest::header::HOST, host)
        .send()
        .await
        .map_err(|error| error_chain(&error))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|error| error_chain(&error))?;
    Ok((status, body))
}

/// Waits until `check` holds, failing the test after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} (waited {limit:?})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn process_exists(pid: u32) -> bool {
    // SAFETY: signal 0 only checks whether the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

#[tokio::test]
async fn starts_a_caddy_when_none_answers_and_routes_by_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _ports) = config(dir.path());
    let edge = Edge::connect_or_start(config.clone()).await.unwrap();
    assert!(edge.caddy_pid().is_some());
    let a = backend("backend-a").await;
    edge.set_route("wharf-a", &strings(&["a.test"]), std::slice::from_ref(&a))
        .await
        .unwrap();
    let client = client();

    assert_eq!(
        get(&client, &config.listen, "a.test").await.unwrap(),
        (200, "backend-a".to_owned())
    );
    let (status, body) = get(&client, &config.listen, "unknown.test").await.unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("backend-"), "{body}");
    assert_eq!(
        edge.route_upstreams("wharf-a").await.unwrap(),
        Some(vec![a.clone()])
    );
    assert_eq!(edge.route_upstreams("wharf-b").await.unwrap(), None);

    // The same route again changes nothing; one dead upstream beside a live one costs no request.
    edge.set_route("wharf-a", &strings(&["a.test"]), std::slice::from_ref(&a))
        .await
        .unwrap();
    let dead = reserve_port();
    edge.set_route(
        "wharf-a",
        &strings(&["a.test"]),
        &[dead.address.clone(), a.clone()],
    )
    .await
    .unwrap();
    for _ in 0..10 {
        assert_eq!(
            get(&client, &config.listen, "a.test").await.unwrap(),
            (200, "backend-a".to_owned())
        );
    }
    edge.shutdown().await;
}

#[tokio::test]
async fn without_caddy_the_error_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _ports) = config(dir.path());
    let config = EdgeConfig {
        caddy_bin: "/nonexistent/caddy".into(),
        ..config
    };
    let error = Edge::connect_or_start(config.clone())
        .await
        .err()
        .expect("no Caddy, no edge")
        .to_string();
    assert!(
        error.contains(&format!("no Caddy answers at {}", config.admin)),
        "{error}"
    );
    assert!(
        error.contains("`/nonexistent/caddy` is not installed"),
        "{error}"
    );
}

#[tokio::test]
async fn invalid_routes_are_refused_before_caddy_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _ports) = config(dir.path());
    let edge = Edge::connect_or_start(config).await.unwrap();
    let error = edge
        .set_route("web/x", &strings(&["a.test"]), &strings(&["127.0.0.1:1"]))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("invalid route"), "{error}");
    let error = edge
        .set_route("web", &strings(&["a.test"]), &[])
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("at least one upstream"),
        "{error}"
    );
    edge.shutdown().await;
}

/// Blue-green under load: four client loops fire requests without pause (with keep-alive) while
/// the route switches twenty times between two live backends. Not one request may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_upstreams_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _ports) = config(dir.path());
    let edge = Edge::connect_or_start(config.clone()).await.unwrap();
    assert!(
        listener_migration_enabled(),
        "net.ipv4.tcp_migrate_req must be 1 (the edge sets it when run as root): without it each \
         reload resets connections Caddy has not accepted yet"
    );
    let a = backend("backend-a").await;
    let b = backend("backend-b").await;
    let hosts = strings(&["app.test"]);
    edge.set_route("wharf-app", &hosts, std::slice::from_ref(&a))
        .await
        .unwrap();

    let client = client();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (client, stop, answered) = (client.clone(), stop.clone(), answered.clone());
        let listen = config.listen.clone();
        loops.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match get(&client, &listen, "app.test").await {
                    Ok((200, body)) if body == "backend-a" || body == "backend-b" => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures.push(format!("{other:?}")),
                }
            }
            failures
        }));
    }
    eventually("the loops get answers", Duration::from_secs(10), || async {
        answered.load(Ordering::Relaxed) >= 50
    })
    .await;

    // The probe stands for a new client: a connection of its own for each request.
    let probe = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for switch in 0..20 {
        let (upstream, name) = if switch % 2 == 0 {
            (&b, "backend-b")
        } else {
            (&a, "backend-a")
        };
        edge.set_route("wharf-app", &hosts, std::slice::from_ref(upstream))
            .await
            .unwrap();
        // Once set_route returned, new requests go to the new upstream.
        assert_eq!(
            get(&probe, &config.listen, "app.test").await.unwrap(),
            (200, name.to_owned()),
            "switch {switch}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for one in loops {
        failures.extend(one.await.unwrap());
    }
    let answered = answered.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        answered + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(answered > 500, "only {answered} requests answered");
    // Caddy's graceful exit waits for open client connections; these clients are done.
    drop((client, probe));
    edge.shutdown().await;
}

/// A Caddy the test starts itself, with a server of its own.
struct ForeignCaddy {
    admin: String,
    listen: String,
    _child: tokio::process::Child,
    _ports: [Port; 2],
}

async fn foreign_caddy(dir: &std::path::Path) -> ForeignCaddy {
    let ports = [reserve_port(), reserve_port()];
    let (admin, listen) = (ports[0].address.clone(), ports[1].address.clone());
    let config = serde_json::json!({
        "admin": {"listen": admin, "config": {"persist": false}},
        "storage": {"module": "file_system", "root": dir.join("data")},
        "apps": {"http": {"servers": {"other": {
            "listen": [listen],
            "routes": [{
                "@id": "other-hello",
                "handle": [{"handler": "static_response", "body": "hello from other"}],
            }],
        }}}},
    });
    let path = dir.join("other.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let child = tokio::process::Command::new("caddy")
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("XDG_DATA_HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = client();
    eventually("the foreign Caddy answers", Duration::from_secs(15), || {
        let (client, listen) = (&client, &listen);
        async move { get(client, listen, "x.test").await.is_ok() }
    })
    .await;
    ForeignCaddy {
        admin,
        listen,
        _child: child,
        _ports: ports,
    }
}

async fn admin_get(admin: &str, path: &str) -> serde_json::Value {
    client()
        .get(format!("http://{admin}{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_running_caddy_is_shared_and_its_other_config_survives() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = foreign_caddy(dir.path()).await;
    let other_before = admin_get(&foreign.admin, "/config/apps/http/servers/other").await;
    let (config, _ports) = config(&dir.path().join("edge"));
    let config = EdgeConfig {
        admin: foreign.admin.clone(),
        ..config
    };
    let edge = Edge::connect_or_start(config.clone()).await.unwrap();
    assert_eq!(
        edge.caddy_pid(),
        None,
        "it must not start a Caddy of its own"
    );

    let a = backend("backend-a").await;
    edge.set_route("wharf-a", &strings(&["a.test"]), std::slice::from_ref(&a))
        .await
        .unwrap();
    let client = client();
    assert_eq!(
        get(&client, &config.listen, "a.test").await.unwrap(),
        (200, "backend-a".to_owned())
    );
    assert_eq!(
        get(&client, &foreign.listen, "a.test").await.unwrap(),
        (200, "hello from other".to_owned())
    );
    assert_eq!(
        admin_get(&foreign.admin, "/config/apps/http/servers/other").await,
        other_before
    );

    // A second Edge on the same Caddy finds the wharf server and adds nothing twice.
    let again = Edge::connect_or_start(config.clone()).await.unwrap();
    let routes = admin_get(&foreign.admin, "/config/apps/http/servers/wharf/routes").await;
    let ids: Vec<&str> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|route| route["@id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["wharf-drain", "wharf-a", "wharf-not-found"]);

    again.remove_route("wharf-a").await.unwrap();
    assert_eq!(edge.route_upstreams("wharf-a").await.unwrap(), None);
    assert_eq!(get(&client, &config.listen, "a.test").await.unwrap().0, 404);
    assert_eq!(
        admin_get(&foreign.admin, "/config/apps/http/servers/other").await,
        other_before
    );

    // Shutting down leaves a Caddy the Edge did not start running.
    edge.shutdown().await;
    again.shutdown().await;
    assert_eq!(
        get(&client, &foreign.listen, "x.test").await.unwrap(),
        (200, "hello from other".to_owned())
    );
}

#[tokio::test]
async fn a_killed_caddy_comes_back_with_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _ports) = config(dir.path());
    let edge = Edge::connect_or_start(config.clone()).await.unwrap();
    let a = backend("backend-a").await;
    let b = backend("backend-b").await;
    edge.set_route("wharf-a", &strings(&["a.test"]), std::slice::from_ref(&a))
        .await
        .unwrap();
    edge.set_route("wharf-b", &strings(&["b.test"]), std::slice::from_ref(&b))
        .await
        .unwrap();
    let first = edge.caddy_pid().unwrap();
    // SAFETY: kill sends a signal to the Caddy this test's Edge started.
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGKILL) }, 0);

    let client = client();
    eventually(
        "Caddy is back and routes a.test",
        Duration::from_secs(20),
        || async {
            edge.caddy_pid().is_some_and(|pid| pid != first)
                && get(&client, &config.listen, "a.test").await == Ok((200, "backend-a".to_owned()))
        },
    )
    .await;
    assert_eq!(
        get(&client, &config.listen, "b.test").await.unwrap(),
        (200, "backend-b".to_owned())
    );
    assert_eq!(
        edge.route_upstreams("wharf-b").await.unwrap(),
        Some(vec![b.clone()])
    );
    edge.shutdown().await;
}

/// Asks the Caddy at `admin` to stop (for a Caddy no Edge of the test stops).
async fn stop_caddy_at(admin: &str) {
    let _ = client().post(format!("http://{admin}/stop")).send().await;
    eventually("Caddy stops", Duration::from_secs(10), || async {
        std::net::TcpStream::connect(admin).is_err()
    })
    .await;
}

#[tokio::test]
async fn a_detached_caddy_keeps_serving_and_the_next_edge_takes_it_over() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _ports) = config(dir.path());
    let first = Edge::connect_or_start(config.clone()).await.unwrap();
    let a = backend("backend-a").await;
    first
        .set_route("wharf-a", &strings(&["a.test"]), std::slice::from_ref(&a))
        .await
        .unwrap();
    let pid = first.caddy_pid().unwrap();
    first.detach().await;
    drop(first);
    let client = client();
    assert!(process_exists(pid), "Caddy {pid} was stopped");
    assert_eq!(
        get(&client, &config.listen, "a.test").await.unwrap(),
        (200, "backend-a".to_owned())
    );

    // The next Edge (a restarted agent) finds it, keeps its routes, and changes them.
    let next = Edge::connect_or_start(config.clone()).await.unwrap();
    assert_eq!(next.caddy_pid(), None, "it did not start another Caddy");
    assert_eq!(
        next.route_upstreams("wharf-a").await.unwrap(),
        Some(vec![a.clone()])
    );
    let b = backend("backend-b").await;
    next.set_route("wharf-a", &strings(&["a.test"]), std::slice::from_ref(&b))
        .await
        .unwrap();
    assert_eq!(
        get(&client, &config.listen, "a.test").await.unwrap(),
        (200, "backend-b".to_owned())
    );
    // A Caddy it found is not its to stop.
    next.shutdown().await;
    assert!(process_exists(pid));
    stop_caddy_at(&config.admin).await;
}

#[tokio::test]
async fn a_caddy_found_running_that_dies_is_replaced_with_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _ports) = config(dir.path());
    let first = Edge::connect_or_start(config.clone()).await.unwrap();
    let found = first.caddy_pid().unwrap();
    first.detach().await;
    drop(first);
    let edge = Edge::connect_or_start(config.clone()).await.unwrap();
    let a = backend("backend-a").await;
    edge.set_route("wharf-a", &strings(&["a.test"]), std::slice::from_ref(&a))
        .await
        .unwrap();
    // SAFETY: kill sends a signal to the Caddy this test started.
    assert_eq!(unsafe { libc::kill(found as i32, libc::SIGKILL) }, 0);

    let client = client();
    eventually(
        "a new Caddy routes a.test",
        Duration::from_secs(20),
        || async {
            edge.caddy_pid().is_some_and(|pid| pid != found)
                && get(&client, &config.listen, "a.test").await == Ok((200, "backend-a".to_owned()))
        },
    )
    .await;
    // That one is the Edge's own: shutting down stops it.
    let started = edge.caddy_pid().unwrap();
    edge.shutdown().await;
    assert!(!process_exists(started), "Caddy {started} still runs");
}

/// Whether the edge's answer for `host` tells the client to close its connection.
async fn says_close(client: &reqwest::Client, edge: &str, host: &str) -> bool {
    let response = client
        .get(format!("http://{edge}/"))
        .header(reqwest::header::HOST, host)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response
        .headers()
        .get(reqwest::header::CONNECTION)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"))
}

#[tokio::test]
async fn a_drain_ahead_closes_connections_until_it_is_dropped_or_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _ports) = config(dir.path());
    let edge = Edge::connect_or_start(config.clone()).await.unwrap();
    let a = backend("backend-a").await;
    edge.set_route("wharf-a", &strings(&["a.test"]), std::slice::from_ref(&a))
        .await
        .unwrap();
    let client = client();
    assert!(!says_close(&client, &config.listen, "a.test").await);

    let drain = edge.drain_ahead(Duration::from_secs(60));
    assert!(says_close(&client, &config.listen, "a.test").await);
    // A change made meanwhile keeps the marker of the drain ahead in place.
    let b = backend("backend-b").await;
    edge.set_route("wharf-a", &strings(&["a.test"]), std::slice::from_ref(&b))
        .await
        .unwrap();
    assert!(says_close(&client, &config.listen, "a.test").await);
    drop(drain);
    assert!(!says_close(&client, &config.listen, "a.test").await);

    // One that is not dropped ends by itself.
    let _drain = edge.drain_ahead(Duration::from_millis(300));
    assert!(says_close(&client, &config.listen, "a.test").await);
    eventually(
        "the drain ahead runs out",
        Duration::from_secs(10),
        || async { !says_close(&client, &config.listen, "a.test").await },
    )
    .await;
    edge.shutdown().await;
}

#[tokio::test]
async fn remove_route_removes_and_shutdown_stops_the_caddy_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _ports) = config(dir.path());
    let edge = Edge::connect_or_start(config.clone()).await.unwrap();
    let a = backend("backend-a").await;
    let b = backend("backend-b").await;
    edge.set_route("wharf-a", &strings(&["a.test"]), std::slice::from_ref(&a))
        .await
        .unwrap();
    edge.set_route("wharf-b", &strings(&["b.test"]), std::slice::from_ref(&b))
        .await
        .unwrap();

    edge.remove_route("wharf-a").await.unwrap();
    assert_eq!(edge.route_upstreams("wharf-a").await.unwrap(), None);
    let client = client();
    assert_eq!(get(&client, &config.listen, "a.test").await.unwrap().0, 404);
    assert_eq!(
        get(&client, &config.listen, "b.test").await.unwrap(),
        (200, "backend-b".to_owned())
    );
    edge.remove_route("wharf-a").await.unwrap();

    let pid = edge.caddy_pid().unwrap();
    edge.shutdown().await;
    assert!(!process_exists(pid), "Caddy {pid} still runs");
    assert_eq!(edge.caddy_pid(), None);
    assert!(std::net::TcpStream::connect(&config.admin).is_err());
    assert!(edge.route_upstreams("wharf-b").await.is_err());
}

#[tokio::test]
async fn dropping_the_edge_stops_its_caddy() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _ports) = config(dir.path());
    let edge = Edge::connect_or_start(config).await.unwrap();
    let pid = edge.caddy_pid().unwrap();
    drop(edge);
    eventually("Caddy stops", Duration::from_secs(10), || async {
        !process_exists(pid)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_lose_no_route() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _ports) = config(dir.path());
    let edge = Edge::connect_or_start(config.clone()).await.unwrap();
    let upstream = backend("backend").await;
    let changes: Vec<_> = (0..6)
        .map(|n| {
            let (edge, upstream) = (edge.clone(), upstream.clone());
            tokio::spawn(async move {
                edge.set_route(
                    &format!("wharf-{n}"),
                    &[format!("{n}.test")],
                    std::slice::from_ref(&upstream),
                )
                .await
            })
        })
        .collect();
    for change in changes {
        change.await.unwrap().unwrap();
    }
    let client = client();
    for n in 0..6 {
        assert_eq!(
            edge.route_upstreams(&format!("wharf-{n}")).await.unwrap(),
            Some(vec![upstream.clone()])
        );
        assert_eq!(
            get(&client, &config.listen, &format!("{n}.test"))
                .await
                .unwrap(),
            (200, "backend".to_owned())
        );
    }
    edge.shutdown().await;
}
