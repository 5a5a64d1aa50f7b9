//! The build queue through the agent API: long-poll claims, leases, heartbeats, cancel and
//! retry, concurrent claimers, and a real agent that reports what it cannot do.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::watch;
use wharf_agent::AgentConfig;

use crate::helpers::{Options, push_payload, sha, spawn_app, spawn_app_with};

#[tokio::test]
async fn an_idle_agent_gets_a_pushed_build_at_once_not_on_a_polling_interval() {
    let app = spawn_app().await;
    app.create_service("web", "acme/web", "main").await;
    let token = app.create_agent("builder").await;
    let register = app
        .post_as(&token, "/v1/agent/register", json!({"labels": ["build"]}))
        .await;
    assert_eq!(register.status, StatusCode::OK, "{}", register.text);
    assert!(register.body["lease_ms"].as_u64().unwrap() > 0);

    // The agent waits first; the push arrives while it waits.
    let claim = {
        let http = app.http.clone();
        let url = format!("{}/v1/agent/claim", app.url);
        let token = token.clone();
        tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"wait_ms": 20_000}))
                .send()
                .await
                .unwrap();
            (
                Instant::now(),
                response.json::<serde_json::Value>().await.unwrap(),
            )
        })
    };
    wait_until_waiting(&app).await;
    let pushed_at = Instant::now();
    let answer = app
        .webhook(
            "push",
            "d-1",
            &push_payload("acme/web", "refs/heads/main", &sha('a')),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let (claimed_at, claim) = claim.await.unwrap();
    let job = &claim["job"];
    assert_eq!(job["build"]["commit_sha"], sha('a'));
    assert_eq!(job["build"]["state"], "claimed");
    assert_eq!(job["build"]["attempt"], 1);
    assert_eq!(job["build"]["agent"], "builder");
    assert_eq!(job["service"]["name"], "web");
    // Waiting claims also look again every second; an answer well inside that shows the push
    // woke the claim. The benchmark measures the latency itself.
    let latency = claimed_at.duration_since(pushed_at);
    assert!(
        latency < Duration::from_millis(500),
        "the claim came {latency:?} after the push was accepted"
    );
}

/// Waits until the server holds a claim request open, as its metrics tell.
async fn wait_until_waiting(app: &crate::helpers::TestApp) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = app.get("/metrics").await.text;
        if metrics
            .lines()
            .any(|line| line == "wharf_agent_claims_waiting 1")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no claim request is waiting:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_claim_with_nothing_queued_returns_empty_after_its_wait() {
    let app = spawn_app().await;
    let token = app.create_agent("idle").await;
    let started = Instant::now();
    let answer = app
        .post_as(&token, "/v1/agent/claim", json!({"wait_ms": 300}))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body["job"].is_null());
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn agent_endpoints_refuse_unknown_tokens_and_the_admin_token() {
    let app = spawn_app().await;
    for token in ["nope", crate::helpers::ADMIN_TOKEN] {
        let answer = app
            .post_as(token, "/v1/agent/claim", json!({"wait_ms": 0}))
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{token}");
    }
    let token = app.create_agent("a1").await;
    let answer = app
        .post_as(
            &token,
            "/v1/services",
            json!({"name": "x", "repo": "a/b", "branch": "main"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn many_concurrent_claimers_never_get_the_same_build() {
    let app = spawn_app().await;
    let total = 40;
    for index in 0..total {
        app.create_service(&format!("svc{index}"), &format!("acme/repo{index}"), "main")
            .await;
        let answer = app
            .post(
                &format!("/v1/services/svc{index}/builds"),
                json!({"ref": format!("{index:040x}")}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CONFLICT,
            "no installation grants the repository: {}",
            answer.text
        );
    }
    // Services on public URLs need no installation.
    for index in 0..total {
        app.create_service(
            &format!("pub{index}"),
            &format!("https://git.example.com/acme/repo{index}"),
            "main",
        )
        .await;
        let answer = app
            .post(
                &format!("/v1/services/pub{index}/builds"),
                json!({"ref": format!("{index:040x}")}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    }
    let mut claimers = Vec::new();
    for index in 0..8 {
        let token = app.create_agent(&format!("agent-{index}")).await;
        let http = app.http.clone();
        let url = format!("{}/v1/agent/claim", app.url);
        claimers.push(tokio::spawn(async move {
            let mut claimed = Vec::new();
            loop {
                let answer: serde_json::Value = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"wait_ms": 0}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                match answer["job"]["build"]["id"].as_i64() {
                    Some(id) => claimed.push(id),
                    None => return claimed,
                }
            }
        }));
    }
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a build was handed out twice");
    assert_eq!(all.len(), total);
}

#[tokio::test]
async fn a_lost_agents_build_goes_back_to_the_queue_then_fails_past_the_attempt_limit() {
    let app = spawn_app_with(Options {
        lease: Some(Duration::from_millis(300)),
        max_attempts: Some(2),
        ..Options::default()
    })
    .await;
    app.create_service("web", "https://git.example.com/acme/web", "main")
        .await;
    let build = app
        .post("/v1/services/web/builds", json!({"ref": sha('a')}))
        .await
        .body;
    let id = build["id"].as_i64().unwrap();
    let lost = app.create_agent("lost").await;
    let claim = app
        .post_as(&lost, "/v1/agent/claim", json!({"wait_ms": 1000}))
        .await;
    assert_eq!(claim.body["job"]["build"]["id"], id);
    // The agent never heartbeats: the lease runs out and the build is pending again.
    let requeued = app
        .wait_for_build_state(id, "pending", Duration::from_secs(5))
        .await;
    assert_eq!(requeued["attempt"], 1);
    assert!(requeued["agent"].is_null());
    // A late report from the lost agent is refused.
    let late = app
        .post_as(
            &lost,
            &format!("/v1/agent/builds/{id}/state"),
            json!({"state": "cloning"}),
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.text);

    let second = app.create_agent("second").await;
    let claim = app
        .post_as(&second, "/v1/agent/claim", json!({"wait_ms": 1000}))
        .await;
    assert_eq!(claim.body["job"]["build"]["attempt"], 2);
    let failed = app
        .wait_for_build_state(id, "failed", Duration::from_secs(5))
        .await;
    assert!(
        failed["reason"].as_str().unwrap().contains("lease expired"),
        "{failed}"
    );
}

#[tokio::test]
async fn heartbeats_keep_a_lease_and_carry_cancellation_to_the_agent() {
    // A lease long enough that a heartbeat answered late on a loaded machine still lands in it.
    let app = spawn_app_with(Options {
        lease: Some(Duration::from_millis(1000)),
        ..Options::default()
    })
    .await;
    app.create_service("web", "https://git.example.com/acme/web", "main")
        .await;
    let id = app
        .post("/v1/services/web/builds", json!({"ref": sha('a')}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let token = app.create_agent("worker").await;
    app.post_as(&token, "/v1/agent/claim", json!({"wait_ms": 1000}))
        .await;
    // Heartbeats for two and a half lease lengths keep the build claimed.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let beat = app
            .post_as(&token, "/v1/agent/heartbeat", json!({"builds": [id]}))
            .await;
        assert_eq!(beat.body["stop"], json!([]));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.build(id).await["state"], "claimed");
    let cancelled = app
        .post(&format!("/v1/builds/{id}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["state"], "cancelled");
    let beat = app
        .post_as(&token, "/v1/agent/heartbeat", json!({"builds": [id]}))
        .await;
    assert_eq!(beat.body["stop"], json!([id]));
}

#[tokio::test]
async fn cancel_and_retry_follow_the_build_states() {
    let app = spawn_app().await;
    app.create_service("web", "https://git.example.com/acme/web", "main")
        .await;
    let id = app
        .post("/v1/services/web/builds", json!({"ref": sha('a')}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let early_retry = app.post(&format!("/v1/builds/{id}/retry"), json!({})).await;
    assert_eq!(
        early_retry.status,
        StatusCode::CONFLICT,
        "{}",
        early_retry.text
    );
    let cancel = app
        .post(&format!("/v1/builds/{id}/cancel"), json!({}))
        .await;
    assert_eq!(cancel.body["state"], "cancelled");
    assert_eq!(cancel.body["reason"], "cancelled by a user");
    let again = app
        .post(&format!("/v1/builds/{id}/cancel"), json!({}))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let retry = app.post(&format!("/v1/builds/{id}/retry"), json!({})).await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.text);
    assert_eq!(retry.body["retry_of"], id);
    assert_eq!(retry.body["commit_sha"], sha('a'));
    assert_eq!(retry.body["state"], "pending");
    assert_eq!(retry.body["trigger"], "retry");
    for path in ["/v1/builds/999999", "/v1/builds/999999/cancel"] {
        let answer = if path.ends_with("cancel") {
            app.post(path, json!({})).await
        } else {
            app.get(path).await
        };
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        app.get("/v1/builds/abc").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_running_agent_claims_and_reports_and_survives_a_server_restart_wait() {
    let app = spawn_app_with(Options {
        without_registry: true,
        ..Options::default()
    })
    .await;
    app.create_service("web", "https://git.example.com/acme/web", "main")
        .await;
    let token = app.create_agent("runner").await;
    let (stop, stopped) = watch::channel(false);
    let config = AgentConfig {
        server: app.url.clone(),
        token: SecretString::from(token),
        labels: vec!["build".to_owned()],
        work_dir: std::env::temp_dir(),
        claim_wait: Duration::from_secs(5),
        deploy: None,
    };
    // A server with no registry to push to fails each build as it is claimed, saying so.
    let builder = wharf_agent::ImageBuilder {
        config: crate::parts::builder_config(Duration::from_secs(60)),
    };
    let agent = tokio::spawn(wharf_agent::run(config, builder, stopped));
    let id = app
        .post("/v1/services/web/builds", json!({"ref": sha('a')}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let failed = app
        .wait_for_build_state(id, "failed", Duration::from_secs(10))
        .await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("the server has no registry for builds to push to: set WHARF_REGISTRY"),
        "{failed}"
    );
    assert_eq!(failed["agent"], "runner");
    let agents = app.get("/v1/agents").await.body;
    assert_eq!(agents[0]["name"], "runner");
    assert_eq!(agents[0]["labels"], json!(["build"]));
    assert!(agents[0]["last_seen_at"].is_string());
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), agent)
        .await
        .expect("the agent stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn agents_of_neighbouring_protocol_versions_register_and_older_ones_are_told_to_upgrade() {
    use wharf_wire::protocol::{AGENT_PROTOCOL, OLDEST_AGENT_PROTOCOL};

    let app = spawn_app().await;
    let token = app.create_agent("builder").await;

    // An agent from before versions were exchanged sends none, and speaks the first protocol.
    let unversioned = app
        .post_as(&token, "/v1/agent/register", json!({"labels": ["build"]}))
        .await;
    assert_eq!(unversioned.status, StatusCode::OK, "{}", unversioned.text);
    assert_eq!(unversioned.body["protocol"], json!(AGENT_PROTOCOL));
    assert_eq!(
        unversioned.body["server_version"],
        json!(env!("CARGO_PKG_VERSION"))
    );

    // This version, and a newer one (which decides for itself), are served.
    for protocol in [AGENT_PROTOCOL, AGENT_PROTOCOL + 1] {
        let answer = app
            .post_as(
                &token,
                "/v1/agent/register",
                json!({"labels": ["build"], "protocol": protocol}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "protocol {protocol}: {}",
            answer.text
        );
    }

    // One older than the oldest the server serves is told which side to upgrade.
    let older = app
        .post_as(
            &token,
            "/v1/agent/register",
            json!({"labels": ["build"], "protocol": OLDEST_AGENT_PROTOCOL - 1}),
        )
        .await;
    assert_eq!(older.status, StatusCode::UPGRADE_REQUIRED, "{}", older.text);
    let message = older.body["error"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "upgrade the agent to Wharf {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{message}"
    );
}
