//! The limits the HTTP edge puts on its callers: failed authentication per client (through a
//! trusted proxy too), webhook bodies that arrive too slowly, webhooks past the concurrency
//! limit (they wait), the setup callback, long-polls and log followers outliving the request
//! timeout, metric labels that no caller chooses, and the admin token's length.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_server::{RequestLimits, TrustedProxies};

use crate::helpers::{Answer, Options, TestApp, sign, spawn_app, spawn_app_with};

const PING: &[u8] = br#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#;
const FORGED: &str = "sha256=0000000000000000000000000000000000000000000000000000000000000000";

async fn app_with(limits: RequestLimits) -> TestApp {
    spawn_app_with(Options {
        limits: Some(limits),
        ..Options::default()
    })
    .await
}

/// A ping sent as GitHub would through a proxy, with `signature` and `X-Forwarded-For`.
async fn ping_from(app: &TestApp, forwarded_for: Option<&str>, signature: &str) -> Answer {
    let mut request = app
        .http
        .post(format!("{}/api/webhooks/github", app.url))
        .header("content-type", "application/json")
        .header("x-github-event", "ping")
        .header("x-github-delivery", "p-1")
        .header("x-hub-signature-256", signature)
        .body(PING.to_vec());
    if let Some(client) = forwarded_for {
        request = request.header("x-forwarded-for", client);
    }
    Answer::read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_client_past_twenty_failed_authentications_gets_429_but_still_gets_in_with_the_secret() {
    let app = spawn_app().await;
    for attempt in 1..=20 {
        let answer = ping_from(&app, None, FORGED).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    for attempt in 21..=23 {
        let answer = ping_from(&app, None, FORGED).await;
        assert_eq!(
            answer.status,
            StatusCode::TOO_MANY_REQUESTS,
            "attempt {attempt}: {}",
            answer.text
        );
    }
    // Failing admin and agent tokens are refused the same way now.
    let answer = app
        .post_as("wrong-token", "/v1/agent/claim", json!({"wait_ms": 0}))
        .await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    // What authenticates still passes: GitHub is never locked out.
    let answer = ping_from(&app, None, &sign(PING)).await;
    assert!(answer.status.is_success(), "{}", answer.text);
    assert_eq!(app.get("/v1/services").await.status, StatusCode::OK);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_is_who_x_forwarded_for_names() {
    let app = app_with(RequestLimits {
        trusted_proxies: TrustedProxies::parse("127.0.0.1").unwrap(),
        ..RequestLimits::default()
    })
    .await;
    for _ in 1..=20 {
        let answer = ping_from(&app, Some("198.51.100.7"), FORGED).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let answer = ping_from(&app, Some("198.51.100.7"), FORGED).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the same proxy is not held to the first one's failures.
    let answer = ping_from(&app, Some("198.51.100.8"), FORGED).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // A client may prepend what it likes; the proxy's own entry is the one that counts.
    let answer = ping_from(&app, Some("203.0.113.1, 198.51.100.7"), FORGED).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    let answer = ping_from(&app, Some("198.51.100.7"), &sign(PING)).await;
    assert!(answer.status.is_success(), "{}", answer.text);
}

#[tokio::test]
async fn an_untrusted_peer_cannot_escape_the_limit_with_x_forwarded_for() {
    let app = spawn_app().await;
    for attempt in 1..=20 {
        let answer = ping_from(&app, Some(&format!("198.51.100.{attempt}")), FORGED).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let answer = ping_from(&app, Some("198.51.100.99"), FORGED).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
}

/// Starts a webhook whose body never finishes arriving; returns the open connection. (Its
/// signature does not matter: it is checked only once the whole body is in.)
async fn start_slow_upload(app: &TestApp) -> TcpStream {
    start_slow_post(app, "/api/webhooks/github", 20 * 1024 * 1024).await
}

/// Starts a POST to `path` that announces `length` bytes of body and sends a few.
async fn start_slow_post(app: &TestApp, path: &str, length: usize) -> TcpStream {
    let address = app.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         x-github-event: ping\r\nx-github-delivery: slow\r\nx-hub-signature-256: {FORGED}\r\n\
         x-wharf-timestamp: 1\r\ncontent-length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(&vec![b' '; length.min(64 * 1024) / 2])
        .await
        .unwrap();
    stream
}

/// Reads the status line of the answer on `stream`.
async fn status_line(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.windows(2).any(|window| window == b"\r\n") {
        let read = stream.read(&mut buffer).await.unwrap();
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_slow_webhook_body_is_cut_off_and_holds_up_nobody() {
    let app = app_with(RequestLimits {
        body_timeout: Duration::from_secs(2),
        ..RequestLimits::default()
    })
    .await;
    let mut slow = start_slow_upload(&app).await;
    let started = Instant::now();
    // Others are served while the slow body is still arriving.
    let answer = app.webhook("ping", "p-1", PING).await;
    assert!(answer.status.is_success(), "{}", answer.text);
    assert!(started.elapsed() < Duration::from_secs(2));
    let status = tokio::time::timeout(Duration::from_secs(20), status_line(&mut slow))
        .await
        .expect("the slow upload is answered");
    assert!(status.contains(" 408 "), "{status}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_deploy_hook_body_is_cut_off_though_the_hook_may_wait_for_its_rollout() {
    let app = app_with(RequestLimits {
        body_timeout: Duration::from_millis(500),
        ..RequestLimits::default()
    })
    .await;
    let mut slow = start_slow_post(&app, "/deploy", 32 * 1024).await;
    let status = tokio::time::timeout(Duration::from_secs(20), status_line(&mut slow))
        .await
        .expect("the slow hook is answered");
    assert!(status.contains(" 408 "), "{status}");
}

#[tokio::test]
async fn webhooks_past_the_concurrency_limit_wait_for_a_turn_and_are_not_refused() {
    let app = app_with(RequestLimits {
        webhook_concurrency: 1,
        body_timeout: Duration::from_millis(500),
        ..RequestLimits::default()
    })
    .await;
    // The slow upload holds the only turn until its deadline.
    let mut slow = start_slow_upload(&app).await;
    let waiting: Vec<_> = (0..6)
        .map(|index| {
            let http = app.http.clone();
            let url = format!("{}/api/webhooks/github", app.url);
            tokio::spawn(async move {
                let response = http
                    .post(url)
                    .header("content-type", "application/json")
                    .header("x-github-event", "ping")
                    .header("x-github-delivery", format!("p-{index}"))
                    .header("x-hub-signature-256", sign(PING))
                    .body(PING.to_vec())
                    .send()
                    .await
                    .unwrap();
                Answer::read(response).await
            })
        })
        .collect();
    for request in waiting {
        let answer = request.await.unwrap();
        assert!(answer.status.is_success(), "{}", answer.text);
    }
    let status = status_line(&mut slow).await;
    assert!(status.contains(" 408 "), "{status}");
}

#[tokio::test]
async fn the_setup_callback_is_limited_per_client() {
    let app = app_with(RequestLimits {
        setup_calls_per_minute: 3,
        ..RequestLimits::default()
    })
    .await;
    let url = format!("{}/api/github/setup?installation_id=1", app.url);
    for _ in 0..3 {
        let answer = Answer::read(app.http.get(&url).send().await.unwrap()).await;
        assert_ne!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    }
    let answer = Answer::read(app.http.get(&url).send().await.unwrap()).await;
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.text
    );
}

#[tokio::test]
async fn long_polls_outlive_the_request_timeout() {
    let app = app_with(RequestLimits {
        request_timeout: Duration::from_millis(200),
        ..RequestLimits::default()
    })
    .await;
    // Issued straight from the store: only the claim goes through the short timeout.
    let token = wharf_server::issue_agent_token(&app.store, "a1")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = app
        .post_as(&token, "/v1/agent/claim", json!({"wait_ms": 800}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(answer.body["job"].is_null());
    assert!(started.elapsed() >= Duration::from_millis(800));

    // So does a follower of a release's deploy log while the release rolls out.
    let created = app
        .post(
            "/v1/services",
            json!({"name": "web", "repo": "https://git.example.com/acme/web", "branch": "main",
                   "port": 8080, "deploy": {"hosts": ["a1"]}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let release = app
        .post(
            "/v1/services/web/deploy",
            json!({"image": "registry.test/default/web:v1"}),
        )
        .await;
    assert!(release.status.is_success(), "{}", release.text);
    let id = release.body["id"].as_i64().unwrap();
    let started = Instant::now();
    let page = app
        .get(&format!("/v1/releases/{id}/logs?after=0&wait_ms=800"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.body["complete"], false, "{}", page.text);
    assert!(started.elapsed() >= Duration::from_millis(800));
}

#[tokio::test]
async fn delivery_metrics_take_no_label_from_the_caller() {
    let app = spawn_app().await;
    let answer = app
        .webhook_with(Some("chosen_by_caller"), Some("d-1"), Some(FORGED), PING)
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // Signed, an event Wharf does not read is counted as "other".
    let answer = app
        .webhook("star_by_github", "d-2", br#"{"action": "x"}"#)
        .await;
    assert!(answer.status.is_success(), "{}", answer.text);
    let metrics = app.get("/metrics").await.text;
    assert!(!metrics.contains("chosen_by_caller"), "{metrics}");
    assert!(!metrics.contains("star_by_github"), "{metrics}");
    assert!(
        metrics.contains(
            r#"wharf_webhook_deliveries_total{event="unknown",outcome="bad_signature"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"wharf_webhook_deliveries_total{event="other",outcome="ignored"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_server_refuses_to_start_with_a_short_admin_token() {
    let data = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("server")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WHARF_LISTEN", "127.0.0.1:0")
        .env("WHARF_DATA_DIR", data.path())
        .env("WHARF_TOKEN", "short-token-0123456789")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 32"), "{stderr}");
    assert!(!stderr.contains("short-token-0123456789"), "{stderr}");
}
