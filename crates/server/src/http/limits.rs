//! The limits the HTTP edge puts on its callers ([`crate::RequestLimits`]), as two middlewares
//! over every route:
//!
//! - [`bound_each_route`]: every request gets at most `request_timeout` (503 past it), except
//!   the routes that wait by design ([`LONG_LIVED_ROUTES`]: long-polls, event streams, the
//!   deploy hook's wait for its rollout). Webhooks and the App's setup callback first wait for a
//!   turn among a few at once; the setup callback, which anyone may call and which calls
//!   GitHub, is also limited per client and minute (429).
//! - [`refuse_repeated_failures`]: a client whose requests failed authentication (any 401:
//!   admin and agent tokens, webhook and deploy-hook signatures) more than
//!   `failed_authentications_per_minute` times in a minute gets 429 instead of 401 for its
//!   further failing requests; its requests that authenticate still pass, so a proxy that many
//!   clients share, or GitHub, is never locked out by someone else's guesses.
//!
//! A client is the peer's address, or, when the peer is one of `WHARF_TRUSTED_PROXIES`, the
//! right-most address of `X-Forwarded-For` that is not a trusted proxy. The counts live in this
//! process: each replica limits what it sees, which bounds guessing per replica.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{RequestLimits, TrustedProxies};
use crate::http::HttpError;

/// The routes that wait by design, by method and path template: the agents' claim long-polls,
/// the long-polls and event streams of build logs and release deploy logs, and the deploy
/// hook, which waits for its rollout. (An event stream's time to its headers is bounded like any
/// answer's; its body then flows for as long as it lasts.)
const LONG_LIVED_ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/agent/claim"),
    ("POST", "/v1/agent/rollouts/claim"),
    ("GET", "/v1/builds/{id}/logs"),
    ("GET", "/v1/builds/{id}/logs/stream"),
    ("GET", "/v1/releases/{id}/logs"),
    ("GET", "/v1/releases/{id}/logs/stream"),
    ("POST", "/deploy"),
];

/// The webhook route, whose requests take turns.
const WEBHOOK_ROUTE: &str = "/api/webhooks/github";

/// The GitHub App's setup callback, limited per client and in turns.
const SETUP_ROUTE: &str = "/api/github/setup";

/// The window the per-client counts are kept over.
const WINDOW: Duration = Duration::from_secs(60);

/// The most clients counted at once; past it, clients whose window has ended are forgotten, and
/// new ones are not counted until there is room again (a flood of addresses cannot grow the map).
const MAX_COUNTED_CLIENTS: usize = 100_000;

/// The limits' state, shared by every request this process serves.
pub(crate) struct Limits {
    config: RequestLimits,
    failed_authentications: ClientWindows,
    setup_calls: ClientWindows,
    /// Turns at reading a webhook's body: a turn ends when the body has been read (or
    /// dropped), so slow or large uploads are bounded while the commit that follows is not
    /// (the delivery writer commits every delivery waiting at once, so holding turns across it
    /// would shrink its batches).
    webhook_turns: Arc<Semaphore>,
    setup_turns: Semaphore,
}

impl Limits {
    pub(crate) fn new(config: &RequestLimits) -> Arc<Limits> {
        Arc::new(Limits {
            config: config.clone(),
            failed_authentications: ClientWindows::default(),
            setup_calls: ClientWindows::default(),
            webhook_turns: Arc::new(Semaphore::new(config.webhook_concurrency.max(1))),
            setup_turns: Semaphore::new(config.setup_concurrency.max(1)),
        })
    }
}

/// Counts events per client in one-minute windows, each starting at the client's first event.
#[derive(Default)]
struct ClientWindows {
    counts: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl ClientWindows {
    /// Counts one event of `client` and returns how many it had in its current window.
    fn count(&self, client: IpAddr) -> u32 {
        let now = Instant::now();
        let Ok(mut counts) = self.counts.lock() else {
            return 0;
        };
        if counts.len() >= MAX_COUNTED_CLIENTS && !counts.contains_key(&client) {
            counts.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if counts.len() >= MAX_COUNTED_CLIENTS {
                return 0;
            }
        }
        let (start, count) = counts.entry(client).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        *count = count.saturating_add(1);
        *count
    }
}

/// Which client sent `request`: the peer, or the client a trusted proxy forwarded it for.
fn client_address(request: &Request, proxies: &TrustedProxies) -> IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let forwarded: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in forwarded.iter().rev() {
        if !proxies.contains(client) {
            break;
        }
        let Some(address) = forwarded_address(entry) else {
            break;
        };
        client = address;
    }
    client
}

/// An `X-Forwarded-For` entry: an address, perhaps with a port (`1.2.3.4:5678`, `[::1]:80`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|address| address.ip()))
        .map(|address| address.to_canonical())
}

/// Answers 429 instead of 401 to a client past its failed authentications of the minute.
pub(crate) async fn refuse_repeated_failures(
    State(limits): State<Arc<Limits>>,
    request: Request,
    next: Next,
) -> Response {
    let client = client_address(&request, &limits.config.trusted_proxies);
    // A browser's sign-in form is answered with a page, an API client with JSON.
    let wants_page = request
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let response = next.run(request).await;
    if response.status() != StatusCode::UNAUTHORIZED {
        return response;
    }
    let allowed = limits.config.failed_authentications_per_minute;
    let failures = limits.failed_authentications.count(client);
    if failures <= allowed {
        return response;
    }
    if failures == allowed + 1 {
        tracing::warn!(%client, allowed, "a client failed authentication too often; its failing requests get 429 for the rest of the minute");
    }
    let refusal = HttpError::TooManyRequests {
        message: format!(
            "too many failed authentications from this address: more than {allowed} in a minute"
        ),
        retry_after: WINDOW,
    };
    if wants_page {
        crate::ui::PageError::from(refusal).into_response()
    } else {
        refusal.into_response()
    }
}

/// Bounds each request's time, except on long-lived routes, and makes webhooks wait for a turn
/// at reading their body and setup callbacks for a turn at the whole call (the wait is not
/// counted against the time).
pub(crate) async fn bound_each_route(
    State(limits): State<Arc<Limits>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_default();
    let method = request.method().clone();
    if LONG_LIVED_ROUTES
        .iter()
        .any(|(long_method, long_path)| method.as_str() == *long_method && path == *long_path)
    {
        return next.run(request).await;
    }
    let mut request = request;
    let turns = match path.as_str() {
        WEBHOOK_ROUTE if method == Method::POST => {
            // A closed semaphore never happens (none is closed).
            if let Ok(turn) = limits.webhook_turns.clone().acquire_owned().await {
                request = request.map(|body| body_holding_turn(body, turn));
            }
            None
        }
        SETUP_ROUTE => {
            let client = client_address(&request, &limits.config.trusted_proxies);
            let allowed = limits.config.setup_calls_per_minute;
            if limits.setup_calls.count(client) > allowed {
                return too_many(format!(
                    "too many setup calls from this address: more than {allowed} in a minute"
                ));
            }
            Some(&limits.setup_turns)
        }
        _ => None,
    };
    // A closed semaphore never happens (none is closed); the request then goes on without a turn.
    let _turn = match turns {
        Some(turns) => turns.acquire().await.ok(),
        None => None,
    };
    let timeout = limits.config.request_timeout;
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => HttpError::Unavailable(format!(
            "the request took longer than the server allows ({} s)",
            timeout.as_secs_f64()
        ))
        .into_response(),
    }
}

/// `body`, which gives `turn` back once it has been read to its end, or dropped.
fn body_holding_turn(body: Body, turn: OwnedSemaphorePermit) -> Body {
    let end = futures_util::stream::once(async move {
        drop(turn);
        None::<Result<Bytes, axum::Error>>
    })
    .filter_map(|item| async move { item });
    Body::from_stream(body.into_data_stream().chain(end))
}

/// Reads a whole request body of at most `max_bytes` (413 past it) that arrives within
/// `deadline` (408 past it): for routes whose body may come from anyone, so that a slow sender
/// cannot hold memory or a turn for long.
pub(crate) async fn read_body_within(
    headers: &HeaderMap,
    body: Body,
    max_bytes: usize,
    deadline: Duration,
) -> Result<Bytes, HttpError> {
    let too_large = || HttpError::PayloadTooLarge(format!("the body is at most {max_bytes} bytes"));
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_bytes as u64) {
        return Err(too_large());
    }
    let mut chunks = body.into_data_stream();
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let read = async {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|error| {
                HttpError::BadRequest(format!("the body could not be read: {error}"))
            })?;
            if bytes.len() + chunk.len() > max_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(())) => Ok(Bytes::from(bytes)),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(HttpError::RequestTimeout(format!(
            "the body took longer than {} s to arrive",
            deadline.as_secs_f64()
        ))),
    }
}

fn too_many(message: String) -> Response {
    HttpError::TooManyRequests {
        message,
        retry_after: WINDOW,
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: &[&str]) -> Request {
        let mut request = Request::new(axum::body::Body::empty());
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        for value in forwarded {
            request
                .headers_mut()
                .append("x-forwarded-for", value.parse().unwrap());
        }
        request
    }

    #[test]
    fn the_client_is_the_peer_or_who_a_trusted_proxy_forwarded_for() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let check = |peer: &str, forwarded: &[&str], expected: &str| {
            assert_eq!(
                client_address(&request(peer, forwarded), &proxies),
                expected.parse::<IpAddr>().unwrap(),
                "{peer} {forwarded:?}"
            );
        };
        // An untrusted peer's header is ignored.
        check("203.0.113.9:4000", &["198.51.100.1"], "203.0.113.9");
        // A trusted proxy's header names the client; entries the client wrote are skipped.
        check("10.0.0.2:4000", &["198.51.100.1"], "198.51.100.1");
        check("10.0.0.2:4000", &["6.6.6.6, 198.51.100.1"], "198.51.100.1");
        check(
            "10.0.0.2:4000",
            &["6.6.6.6", "198.51.100.1, 10.0.0.3"],
            "198.51.100.1",
        );
        check("10.0.0.2:4000", &["198.51.100.1:5000"], "198.51.100.1");
        // Nothing usable: the proxy itself.
        check("10.0.0.2:4000", &[], "10.0.0.2");
        check("10.0.0.2:4000", &["not-an-address"], "10.0.0.2");
        check(
            "[::ffff:10.0.0.2]:4000",
            &["[2001:db8::1]:80"],
            "2001:db8::1",
        );
    }

    #[test]
    fn windows_count_per_client() {
        let windows = ClientWindows::default();
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(windows.count(one), 1);
        assert_eq!(windows.count(one), 2);
        assert_eq!(windows.count(two), 1);
    }
}
