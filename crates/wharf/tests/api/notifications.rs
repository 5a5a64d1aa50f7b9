//! Notifications through real HTTP: a local receiver on 127.0.0.1 plays the sink, checks each
//! webhook's signature and timestamp, and answers as it is told (failures, `Retry-After`, or
//! being down across a restart of the server). The test plays the agent, so releases go live
//! or are rolled back without containers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wharf_domain::signature::{SigningTime, verify_timestamped};

use crate::helpers::{
    ADMIN_TOKEN, Options, TestApp, run_cli, sha, spawn_app, spawn_app_with, wait_until,
};

const DEADLINE: Duration = Duration::from_secs(20);

/// One request the receiver got.
#[derive(Clone)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
    at: tokio::time::Instant,
}

impl Received {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    /// Answers to give before answering 200: a status and a `Retry-After`.
    script: VecDeque<(u16, Option<&'static str>)>,
    /// Answer 503 to everything.
    down: bool,
}

/// A sink on 127.0.0.1 that records what it gets.
struct Receiver {
    url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/wharf", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, state }
    }

    fn answer_next(&self, answers: &[(u16, Option<&'static str>)]) {
        self.state.lock().unwrap().script.extend(answers);
    }

    fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<Received> {
        wait_until(
            &format!("{count} requests reach the receiver"),
            DEADLINE,
            || async { self.received().len() >= count },
        )
        .await;
        self.received()
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let mut state = state.lock().unwrap();
    state.received.push(Received {
        headers,
        body: body.to_vec(),
        at: tokio::time::Instant::now(),
    });
    let (status, retry_after) = if state.down {
        (503, None)
    } else {
        state.script.pop_front().unwrap_or((200, None))
    };
    let mut response = AxumStatus::from_u16(status).unwrap().into_response();
    if let Some(retry_after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", retry_after.parse().unwrap());
    }
    response
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Checks a webhook request as a receiver should: a timestamp near now and a signature of
/// `"{timestamp}.{body}"` with the sink's secret.
fn verify(received: &Received, secret: &str) {
    let timestamp = received.header("x-wharf-timestamp");
    let time = SigningTime::check(Some(timestamp.as_bytes()), unix_now())
        .expect("a timestamp within 300 s of now");
    let signature = received.header("x-wharf-signature-256");
    verify_timestamped(
        secret.as_bytes(),
        &time,
        &received.body,
        Some(signature.as_bytes()),
    )
    .expect("a signature of the timestamp and body with the sink's secret");
}

/// Adds the sink `name` of `kind` sending to `url`; answers the generated secret of a webhook.
async fn add_sink(app: &TestApp, name: &str, kind: &str, url: &str) -> Option<String> {
    let answer = app
        .post(
            "/v1/notifications",
            json!({"name": name, "kind": kind, "url": url}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    answer.body["generated_secret"].as_str().map(str::to_owned)
}

async fn deliveries(app: &TestApp, sink: &str, failed: bool) -> Vec<Value> {
    let answer = app
        .get(&format!(
            "/v1/notifications/{sink}/deliveries?failed={failed}"
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body.as_array().unwrap().clone()
}

/// A server with the service `web` (its releases go to the agent `local`) and the token of
/// the agent `local`, which the test plays.
async fn scene(app: &TestApp) -> String {
    app.create_service("web", "acme/web", "main").await;
    app.create_agent("local").await
}

/// Releases an image of `web`.
async fn deploy(app: &TestApp, tag: &str) {
    let answer = app
        .post(
            "/v1/services/web/deploy",
            json!({"image": format!("registry.test/web:{tag}")}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
}

/// Plays the agent through a rollout whose new version is unhealthy.
async fn roll_out_unhealthy(app: &TestApp, agent: &str) {
    let claimed = app
        .post_as(agent, "/v1/agent/rollouts/claim", json!({"wait_ms": 10000}))
        .await;
    let rollout = claimed.body["job"]["rollout_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("a rollout to claim: {}", claimed.text));
    for (state, reason) in [
        ("starting", None),
        ("rolled_back", Some("the health check failed 3 times")),
    ] {
        let answer = app
            .post_as(
                agent,
                &format!("/v1/agent/rollouts/{rollout}/state"),
                json!({"state": state, "reason": reason}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
}

#[tokio::test]
async fn a_webhook_gets_one_signed_message_per_release_outcome() {
    let app = spawn_app().await;
    let agent = scene(&app).await;
    let receiver = Receiver::start().await;
    let secret = add_sink(&app, "ops", "webhook", &receiver.url)
        .await
        .expect("a generated secret");

    deploy(&app, "1").await;
    roll_out_unhealthy(&app, &agent).await;
    let received = receiver.wait_for(1).await;
    verify(&received[0], &secret);
    let rolled_back = received[0].json();
    assert_eq!(received[0].header("x-wharf-event"), "release.rolled_back");
    assert_eq!(rolled_back["event"], "release.rolled_back");
    assert_eq!(rolled_back["service"], "web");
    assert_eq!(rolled_back["environment"], "production");
    assert_eq!(rolled_back["reason"], "the health check failed 3 times");
    assert!(rolled_back["release"].is_i64(), "{rolled_back}");
    assert!(rolled_back["at"].is_string(), "{rolled_back}");

    deploy(&app, "2").await;
    app.roll_out_live(&agent).await;
    let received = receiver.wait_for(2).await;
    verify(&received[1], &secret);
    let live = received[1].json();
    assert_eq!(live["event"], "release.live");
    assert_eq!(live["recovered"], true, "live after a failure: {live}");
    assert_ne!(
        received[0].header("x-wharf-delivery"),
        received[1].header("x-wharf-delivery")
    );

    // Exactly one message per outcome, each delivered.
    wait_until(
        "both messages are recorded as delivered",
        DEADLINE,
        || async {
            deliveries(&app, "ops", false)
                .await
                .iter()
                .all(|delivery| delivery["state"] == "delivered")
        },
    )
    .await;
    let listed = deliveries(&app, "ops", false).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(receiver.received().len(), 2);
    // The secret never shows again.
    let sinks = app.get("/v1/notifications").await;
    assert!(!sinks.text.contains(&secret));
    assert_eq!(sinks.body[0]["url"], receiver.url);
}

#[tokio::test]
async fn a_sink_that_fails_gets_the_message_once_under_one_delivery_id() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    add_sink(&app, "ops", "webhook", &receiver.url).await;
    receiver.answer_next(&[(500, None), (500, None), (500, None)]);

    let tested = app.post("/v1/notifications/ops/test", json!({})).await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text);
    let received = receiver.wait_for(4).await;
    let id = received[0].header("x-wharf-delivery");
    assert!(!id.is_empty());
    assert!(
        received
            .iter()
            .all(|request| request.header("x-wharf-delivery") == id),
        "every attempt carries the same X-Wharf-Delivery"
    );
    assert_eq!(received[0].json()["event"], "test");
    wait_until("the message is recorded as delivered", DEADLINE, || async {
        deliveries(&app, "ops", false).await[0]["state"] == "delivered"
    })
    .await;
    let listed = deliveries(&app, "ops", false).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["attempts"], 4);
    assert_eq!(listed[0]["message_id"], id.as_str());
    assert_eq!(receiver.received().len(), 4);
}

#[tokio::test]
async fn a_sinks_retry_after_is_honoured() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    add_sink(&app, "ops", "webhook", &receiver.url).await;
    // Without it the next attempt would come after 50 ms.
    receiver.answer_next(&[(429, Some("2"))]);
    app.post("/v1/notifications/ops/test", json!({})).await;
    let received = receiver.wait_for(2).await;
    let waited = received[1].at - received[0].at;
    assert!(
        waited >= Duration::from_millis(1900),
        "the second attempt came {waited:?} after the first"
    );
}

#[tokio::test]
async fn a_message_is_a_dead_letter_after_its_last_attempt_until_retried() {
    let app = spawn_app_with(Options {
        notification_max_attempts: Some(3),
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start().await;
    add_sink(&app, "ops", "webhook", &receiver.url).await;
    receiver.answer_next(&[(500, None), (502, None), (500, None)]);
    app.post("/v1/notifications/ops/test", json!({})).await;
    wait_until("the message is a dead letter", DEADLINE, || async {
        deliveries(&app, "ops", true)
            .await
            .first()
            .is_some_and(|delivery| delivery["state"] == "dead")
    })
    .await;
    let dead = deliveries(&app, "ops", true).await;
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["last_status"], 500);
    assert_eq!(app.get("/v1/notifications").await.body[0]["dead"], 1);
    assert_eq!(receiver.received().len(), 3);

    let retried = app.post("/v1/notifications/ops/retry", json!({})).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text);
    assert_eq!(retried.body["retried"], 1);
    let received = receiver.wait_for(4).await;
    assert_eq!(
        received[3].header("x-wharf-delivery"),
        received[0].header("x-wharf-delivery")
    );
    wait_until("the retried message is delivered", DEADLINE, || async {
        deliveries(&app, "ops", false).await[0]["state"] == "delivered"
    })
    .await;
    assert!(deliveries(&app, "ops", true).await.is_empty());
}

#[tokio::test]
async fn a_sink_down_during_a_restart_gets_its_messages_after_it() {
    let mut app = spawn_app().await;
    let agent = scene(&app).await;
    let receiver = Receiver::start().await;
    let secret = add_sink(&app, "ops", "webhook", &receiver.url)
        .await
        .unwrap();
    receiver.set_down(true);
    deploy(&app, "1").await;
    app.roll_out_live(&agent).await;
    receiver.wait_for(1).await;

    app.restart_server().await;
    receiver.set_down(false);
    wait_until(
        "the message is delivered after the restart",
        DEADLINE,
        || async {
            receiver
                .received()
                .last()
                .is_some_and(|request| request.json()["event"] == "release.live")
                && deliveries(&app, "ops", false).await[0]["state"] == "delivered"
        },
    )
    .await;
    let received = receiver.received();
    let last = received.last().unwrap();
    verify(last, &secret);
    assert!(
        received
            .iter()
            .all(|request| request.header("x-wharf-delivery") == last.header("x-wharf-delivery")),
        "one message, tried before and after the restart"
    );
}

#[tokio::test]
async fn repeated_failures_are_one_message_and_the_recovery_another() {
    let app = spawn_app().await;
    let agent = scene(&app).await;
    let receiver = Receiver::start().await;
    add_sink(&app, "ops", "webhook", &receiver.url).await;
    for tag in ["1", "2", "3"] {
        deploy(&app, tag).await;
        roll_out_unhealthy(&app, &agent).await;
    }
    deploy(&app, "4").await;
    app.roll_out_live(&agent).await;

    wait_until("the recovery reaches the receiver", DEADLINE, || async {
        receiver
            .received()
            .iter()
            .any(|request| request.json()["event"] == "release.live")
    })
    .await;
    let events: Vec<(Value, Value)> = receiver
        .received()
        .iter()
        .map(|request| {
            let body = request.json();
            (body["event"].clone(), body["recovered"].clone())
        })
        .collect();
    assert_eq!(
        events,
        [
            (json!("release.rolled_back"), json!(false)),
            (json!("release.live"), json!(true)),
        ]
    );
    assert_eq!(deliveries(&app, "ops", false).await.len(), 2);
}

#[tokio::test]
async fn slack_and_discord_get_their_documented_shapes() {
    let app = spawn_app().await;
    let agent = scene(&app).await;
    let receiver = Receiver::start().await;
    let slack_url = format!("{}/services/T000/B000/XXXX", receiver.url);
    let discord_url = format!("{}/api/webhooks/1/token", receiver.url);
    assert_eq!(add_sink(&app, "team", "slack", &slack_url).await, None);
    assert_eq!(add_sink(&app, "chat", "discord", &discord_url).await, None);
    // Only a webhook takes a secret.
    let refused = app
        .post(
            "/v1/notifications",
            json!({"name": "x", "kind": "slack", "url": slack_url, "secret": "s"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);

    deploy(&app, "1").await;
    roll_out_unhealthy(&app, &agent).await;
    let received = receiver.wait_for(2).await;
    let slack = received
        .iter()
        .map(Received::json)
        .find(|body| body.get("attachments").is_some())
        .expect("a Slack message");
    let attachment = &slack["attachments"][0];
    assert_eq!(attachment["color"], "#E01E5A");
    assert!(
        attachment["title"]
            .as_str()
            .unwrap()
            .starts_with("web (production): release #"),
        "{slack}"
    );
    assert!(slack["text"].is_string());
    let discord = received
        .iter()
        .map(Received::json)
        .find(|body| body.get("embeds").is_some())
        .expect("a Discord message");
    let embed = &discord["embeds"][0];
    assert_eq!(embed["color"], 0xE01E5A);
    assert!(embed["title"].as_str().unwrap().contains("rolled back"));
    assert_eq!(
        embed["description"], "the health check failed 3 times",
        "{discord}"
    );

    // The URLs hold the tokens: listings show only their hosts.
    let sinks = app.get("/v1/notifications").await;
    assert!(
        !sinks.text.contains("XXXX") && !sinks.text.contains("token"),
        "{}",
        sinks.text
    );

    // Removing a sink stops its messages.
    let response = app
        .http
        .delete(format!("{}/v1/notifications/team", app.url))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let left: Value = response.json().await.unwrap();
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["name"], "chat");
}

/// Runs the real `wharf` binary against the app, with `stdin` on its standard input; answers
/// whether it succeeded and what it printed on either stream.
pub(crate) async fn wharf(app: &TestApp, args: &[&str], stdin: &str) -> (bool, String) {
    let run = run_cli(app, Some(ADMIN_TOKEN), args, stdin.as_bytes(), None).await;
    (run.ok(), run.text())
}

#[tokio::test]
async fn sinks_are_added_tested_listed_and_removed_through_the_cli() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;

    let (ok, added) = wharf(
        &app,
        &["notify", "add", "ops", "--webhook", &receiver.url],
        "",
    )
    .await;
    assert!(ok, "{added}");
    assert!(added.starts_with("Added webhook sink ops"), "{added}");
    let secret = added
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("whn_"))
        .unwrap_or_else(|| panic!("the generated secret is printed once: {added}"))
        .to_owned();
    // A Slack URL is a token: it can come from standard input.
    let slack_url = format!("{}/services/T000/B000/XXXX", receiver.url);
    let (ok, added) = wharf(
        &app,
        &[
            "notify",
            "add",
            "team",
            "--slack",
            "-",
            "--events",
            "release.live,build.failed",
        ],
        &format!("{slack_url}\n"),
    )
    .await;
    assert!(ok, "{added}");

    let (ok, listed) = wharf(&app, &["notify", "list"], "").await;
    assert!(ok, "{listed}");
    assert!(listed.contains("release.live,build.failed"), "{listed}");
    assert!(
        !listed.contains("XXXX") && !listed.contains(&secret),
        "{listed}"
    );

    let (ok, tested) = wharf(&app, &["notify", "test", "ops"], "").await;
    assert!(ok, "{tested}");
    let received = receiver.wait_for(1).await;
    verify(&received[0], &secret);
    wait_until("the test message is delivered", DEADLINE, || async {
        wharf(&app, &["notify", "deliveries", "ops"], "")
            .await
            .1
            .contains("delivered")
    })
    .await;
    let (ok, failed) = wharf(&app, &["notify", "deliveries", "ops", "--failed"], "").await;
    assert!(ok, "{failed}");
    assert_eq!(failed.lines().count(), 1, "only the heading: {failed}");
    let (ok, retried) = wharf(&app, &["notify", "retry", "ops"], "").await;
    assert!(ok, "{retried}");
    assert_eq!(retried, "ops has no dead messages\n");

    let (ok, removed) = wharf(&app, &["notify", "remove", "team"], "").await;
    assert!(ok, "{removed}");
    let (ok, unknown) = wharf(&app, &["notify", "test", "team"], "").await;
    assert!(!ok);
    assert!(
        unknown.contains("no notification sink named team"),
        "{unknown}"
    );
}

#[tokio::test]
async fn a_stuck_build_is_told_once_and_its_failure_with_a_link_to_its_page() {
    let app = spawn_app_with(Options {
        lease: Some(Duration::from_millis(300)),
        max_attempts: Some(2),
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let added = app
        .post(
            "/v1/notifications",
            json!({"name": "builds", "kind": "webhook", "url": receiver.url,
                   "events": ["rollout.stuck", "build.failed"], "secret": "shared-secret"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    assert!(added.body["generated_secret"].is_null());
    app.create_service("web", "https://git.example.com/acme/web", "main")
        .await;
    let build = app
        .post("/v1/services/web/builds", json!({"ref": sha('a')}))
        .await
        .body;
    let id = build["id"].as_i64().unwrap();
    // Two agents claim the build in turn and go silent; each lease runs out.
    for name in ["lost", "also-lost"] {
        let token = app.create_agent(name).await;
        let claim = app
            .post_as(&token, "/v1/agent/claim", json!({"wait_ms": 5000}))
            .await;
        assert_eq!(claim.body["job"]["build"]["id"], id, "{}", claim.text);
    }
    app.wait_for_build_state(id, "failed", Duration::from_secs(10))
        .await;

    let received = receiver.wait_for(2).await;
    for request in &received {
        verify(request, "shared-secret");
    }
    let stuck = received[0].json();
    assert_eq!(stuck["event"], "rollout.stuck");
    assert_eq!(stuck["build"], id);
    let failed = received[1].json();
    assert_eq!(failed["event"], "build.failed");
    assert_eq!(failed["commit"], sha('a'));
    assert_eq!(failed["url"], format!("{}/builds/{id}", app.url));
    assert!(
        failed["reason"].as_str().unwrap().contains("lease expired"),
        "{failed}"
    );
    wait_until(
        "both messages are recorded as delivered",
        DEADLINE,
        || async {
            deliveries(&app, "builds", false)
                .await
                .iter()
                .all(|delivery| delivery["state"] == "delivered")
        },
    )
    .await;
    assert_eq!(deliveries(&app, "builds", false).await.len(), 2);
}

#[tokio::test]
async fn a_build_past_its_agents_timeout_is_told_stuck_once_while_its_agent_still_answers() {
    let app = spawn_app_with(Options {
        lease: Some(Duration::from_secs(1)),
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let added = app
        .post(
            "/v1/notifications",
            json!({"name": "stuck", "kind": "webhook", "url": receiver.url,
                   "events": ["rollout.stuck"], "secret": "shared-secret"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    app.create_service("web", "https://git.example.com/acme/web", "main")
        .await;
    let id = app
        .post("/v1/services/web/builds", json!({"ref": sha('a')}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let token = app.create_agent("slow").await;
    let claim = app
        .post_as(
            &token,
            "/v1/agent/claim",
            json!({"wait_ms": 5000, "build_timeout_ms": 200}),
        )
        .await;
    assert_eq!(claim.body["job"]["build"]["id"], id, "{}", claim.text);

    // The agent keeps its lease but never ends the build: past its timeout and a lease's grace,
    // the build is stuck.
    let received = {
        let heartbeats = async {
            loop {
                let beat = app
                    .post_as(&token, "/v1/agent/heartbeat", json!({"builds": [id]}))
                    .await;
                assert_eq!(beat.status, StatusCode::OK, "{}", beat.text);
                assert_eq!(beat.body["stop"], json!([]), "{}", beat.text);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            received = receiver.wait_for(1) => received,
            () = heartbeats => unreachable!(),
        }
    };
    verify(&received[0], "shared-secret");
    let stuck = received[0].json();
    assert_eq!(stuck["event"], "rollout.stuck");
    assert_eq!(stuck["build"], id);
    assert!(
        stuck["reason"]
            .as_str()
            .unwrap()
            .contains("past its deadline"),
        "{stuck}"
    );
    let build = app.get(&format!("/v1/builds/{id}")).await;
    assert_eq!(
        build.body["state"], "claimed",
        "the build is left to its agent"
    );
    // Once: later passes of the check find it told already.
    wait_until("the message is delivered", DEADLINE, || async {
        deliveries(&app, "stuck", false)
            .await
            .iter()
            .all(|delivery| delivery["state"] == "delivered")
    })
    .await;
    for _ in 0..3 {
        app.post_as(&token, "/v1/agent/heartbeat", json!({"builds": [id]}))
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(deliveries(&app, "stuck", false).await.len(), 1);
}
