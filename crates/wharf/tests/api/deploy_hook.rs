//! `POST /deploy` through real HTTP, with the test acting as the agent (no containers): who may
//! call it (a signature of the request's time and body with the service's deploy secret), when
//! (within 300 s of the server's clock) and how often (once, whichever server replica takes it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};
use wharf_domain::signature::{sign, sign_timestamped};

use crate::helpers::{Answer, TestApp, spawn_app, wait_until};

/// A server with the service `site` (its releases go to the agent `local`), its deploy secret,
/// and the token of the agent `local`, which the test plays.
async fn scene() -> (TestApp, String, String) {
    let app = spawn_app().await;
    app.create_service("site", "acme/site", "main").await;
    let secret = app.post("/v1/services/site/deploy-secret", json!({})).await;
    assert_eq!(secret.status, StatusCode::OK, "{}", secret.text);
    let secret = secret.body["secret"].as_str().unwrap().to_owned();
    let agent = app.create_agent("local").await;
    (app, secret, agent)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A deploy request for `site`.
fn deploy_body(tag: &str) -> String {
    json!({"service": "site", "image": format!("registry.test/ci/site:{tag}")}).to_string()
}

/// Sends `body` to `{url}/deploy` with the headers given. A request the server took waits for
/// the rollout; the timeout keeps a wrongly taken one from holding the test.
async fn send(url: &str, body: &str, timestamp: Option<&str>, signature: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/deploy"))
        .timeout(Duration::from_secs(30))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(timestamp) = timestamp {
        request = request.header("x-wharf-timestamp", timestamp);
    }
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = request.send().await.unwrap_or_else(|error| {
        panic!("the deploy hook did not answer (timestamp {timestamp:?}): {error}")
    });
    Answer::read(response).await
}

async fn releases(app: &TestApp) -> Vec<Value> {
    let answer = app.get("/v1/services/site/releases").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body.as_array().unwrap().clone()
}

/// Sends a request the server should take to `url`, plays the agent until it is live, and
/// answers the hook's answer.
async fn deploy_through(
    app: &TestApp,
    agent: &str,
    url: &str,
    body: &str,
    timestamp: &str,
    signature: &str,
) -> Answer {
    let hook = tokio::spawn({
        let (url, body) = (url.to_owned(), body.to_owned());
        let (timestamp, signature) = (timestamp.to_owned(), signature.to_owned());
        async move { send(&url, &body, Some(&timestamp), Some(&signature)).await }
    });
    app.roll_out_live(agent).await;
    let answer = hook.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["state"], "live", "{}", answer.text);
    answer
}

#[tokio::test]
async fn a_request_needs_its_signing_time_within_300_seconds_of_the_servers_clock() {
    let (app, secret, _agent) = scene().await;
    let body = deploy_body("v1");
    let now = unix_now();

    // The signature of the body alone, without a time: refused, and told what is missing.
    let body_only = sign(secret.as_bytes(), body.as_bytes());
    let answer = send(&app.url, &body, None, Some(&body_only)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    let error = answer.body["error"].as_str().unwrap();
    assert!(error.contains("X-Wharf-Timestamp"), "{error}");

    // A time that the signature does not cover is as wrong as none.
    let answer = send(&app.url, &body, Some(&now.to_string()), Some(&body_only)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);

    // Signed too long ago, or too far ahead. (The domain's tests hold the exact bound, 300 s;
    // here the server's clock moves on while the test runs, so the cases keep a margin.)
    for skew in [-330, 330, -86_400] {
        let time = unix_now() + skew;
        let signature = sign_timestamped(secret.as_bytes(), time, body.as_bytes());
        let answer = send(&app.url, &body, Some(&time.to_string()), Some(&signature)).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{skew}: {}",
            answer.text
        );
        let error = answer.body["error"].as_str().unwrap();
        assert!(
            error.contains("X-Wharf-Timestamp") && error.contains("300"),
            "{error}"
        );
    }

    // Not a number of seconds.
    for malformed in ["soon", "-1", "1.5", ""] {
        let signature = format!("sha256={}", "0".repeat(64));
        let answer = send(&app.url, &body, Some(malformed), Some(&signature)).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{malformed:?}: {}",
            answer.text
        );
    }
    assert!(
        releases(&app).await.is_empty(),
        "a refused request made a release"
    );
}

#[tokio::test]
async fn a_request_is_taken_once_by_whichever_replica_sees_it() {
    let (app, secret, agent) = scene().await;
    let (replica_url, _replica) = app.start_replica().await;
    let body = deploy_body("v1");
    let now = unix_now();
    let timestamp = now.to_string();
    let signature = sign_timestamped(secret.as_bytes(), now, body.as_bytes());
    // Within the window, the signature sent a few seconds late is still good.
    deploy_through(&app, &agent, &app.url, &body, &timestamp, &signature).await;
    assert_eq!(releases(&app).await.len(), 1);

    // The same request again, to this server or to the other replica, changes nothing; so
    // does its signature with the hex digits in capitals.
    let capitals = format!(
        "sha256={}",
        signature["sha256=".len()..].to_ascii_uppercase()
    );
    for (url, signature) in [
        (&app.url, &signature),
        (&replica_url, &signature),
        (&replica_url, &capitals),
    ] {
        let answer = send(url, &body, Some(&timestamp), Some(signature)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
        assert!(
            answer.body["error"]
                .as_str()
                .unwrap()
                .contains("taken before"),
            "{}",
            answer.text
        );
    }
    assert_eq!(releases(&app).await.len(), 1, "a replay made a release");

    // The same deploy signed again, at another time, is a new request.
    let later = now + 1;
    let signature = sign_timestamped(secret.as_bytes(), later, body.as_bytes());
    deploy_through(
        &app,
        &agent,
        &replica_url,
        &body,
        &later.to_string(),
        &signature,
    )
    .await;
    assert_eq!(releases(&app).await.len(), 2);
}

#[tokio::test]
async fn signatures_past_their_window_are_forgotten_by_the_periodic_jobs() {
    let app = spawn_app().await;
    let now_ms = unix_now() * 1000;
    let expired = format!("sha256={}", "e".repeat(64));
    let current = format!("sha256={}", "c".repeat(64));
    assert!(
        app.store
            .remember_hook_signature(&expired, now_ms - 1)
            .await
            .unwrap()
    );
    assert!(
        app.store
            .remember_hook_signature(&current, now_ms + 600_000)
            .await
            .unwrap()
    );
    // Remembering it again fails while the store still holds it; once the periodic jobs
    // forgot it, it succeeds (and is forgotten again).
    wait_until(
        "the expired signature is forgotten",
        Duration::from_secs(10),
        || async {
            app.store
                .remember_hook_signature(&expired, now_ms - 1)
                .await
                .unwrap()
        },
    )
    .await;
    assert!(
        !app.store
            .remember_hook_signature(&current, now_ms + 600_000)
            .await
            .unwrap()
    );
}
