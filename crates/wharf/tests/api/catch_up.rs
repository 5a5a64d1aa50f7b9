//! Pushes made while Wharf was down are built: webhook deliveries GitHub failed to make are asked
//! for again, and for outages longer than GitHub keeps them the tracked branches' heads are
//! queued; either way a commit is built once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::builds::app_with_repository_and;
use crate::helpers::{Options, TestApp, push_payload_from, spawn_app_with, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);

/// A server with the GitHub stand-in as its App, installation 42 of `acme` granting
/// `acme/web`, and the service `web` following its `main`, which has one commit: returned.
async fn app_with_repository() -> (TestApp, String) {
    let app = app_with_repository_and(Options {
        catch_up_interval: Some(Duration::from_millis(100)),
        ..Options::default()
    })
    .await;
    let first = commit(&app, "first");
    (app, first)
}

fn commit(app: &TestApp, message: &str) -> String {
    app.github
        .as_ref()
        .unwrap()
        .commit_files(
            "acme/web",
            "main",
            &[(
                "Dockerfile",
                format!("FROM scratch\n# {message}\n").as_bytes(),
            )],
            message,
        )
        .unwrap()
}

/// The push GitHub sends when `main` of `acme/web` moves from `before` to `after`.
fn push(before: &str, after: &str) -> Vec<u8> {
    push_payload_from("acme/web", "refs/heads/main", before, after)
}

/// The builds of `commit`.
async fn builds_of(app: &TestApp, commit: &str) -> Vec<Value> {
    app.builds()
        .await
        .into_iter()
        .filter(|build| build["commit_sha"] == commit)
        .collect()
}

/// How many catch-up passes the server made, from `/metrics`.
async fn passes(app: &TestApp) -> u64 {
    let metrics = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("wharf_github_catch_up_total{kind=\"passes\"} "))
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

/// Waits until the server made `more` passes after those it made so far.
async fn wait_for_passes(app: &TestApp, more: u64) {
    let start = passes(app).await;
    wait_until("more catch-up passes", DEADLINE, || async {
        passes(app).await >= start + more
    })
    .await;
}

/// The stand-in's redeliveries of the delivery `guid`.
fn redeliveries(app: &TestApp, guid: &str) -> usize {
    app.github
        .as_ref()
        .unwrap()
        .webhook_attempts()
        .iter()
        .filter(|(_, attempt, _, redelivery)| attempt == guid && *redelivery)
        .count()
}

#[tokio::test]
async fn catch_up_builds_the_head_of_pushes_missed_while_wharf_was_down_once() {
    let (mut app, first) = app_with_repository().await;
    let github = app.github.as_ref().unwrap();
    let zero = "0".repeat(40);
    github.send_webhook("push", &push(&zero, &first)).await;
    wait_until("the first push is built", DEADLINE, || async {
        builds_of(&app, &first).await.len() == 1
    })
    .await;

    // Wharf goes down; two pushes' webhooks find nobody.
    app.stop_server().await;
    let middle = commit(&app, "middle");
    let head = commit(&app, "head");
    let github = app.github.as_ref().unwrap();
    let missed_middle = github.send_webhook("push", &push(&first, &middle)).await;
    let missed_head = github.send_webhook("push", &push(&middle, &head)).await;
    let failed: Vec<u16> = github
        .webhook_attempts()
        .iter()
        .filter(|(_, guid, _, _)| *guid == missed_middle || *guid == missed_head)
        .map(|(_, _, status, _)| *status)
        .collect();
    assert_eq!(failed, vec![0, 0], "the pushes reached no one");

    // Wharf comes back: it asks for both again, in order, and builds the head.
    app.start_server().await;
    wait_until("the head is queued", DEADLINE, || async {
        builds_of(&app, &head).await.len() == 1
    })
    .await;
    // Passes later, nothing more was asked for or queued.
    wait_for_passes(&app, 3).await;
    assert_eq!(builds_of(&app, &head).await.len(), 1, "the head built once");
    assert_eq!(builds_of(&app, &first).await.len(), 1);
    let middle_builds = builds_of(&app, &middle).await;
    assert_eq!(middle_builds.len(), 1, "the middle push built at most once");
    // It was still waiting when the head came: superseded.
    assert_eq!(
        middle_builds[0]["state"], "cancelled",
        "{}",
        middle_builds[0]
    );
    assert_eq!(redeliveries(&app, &missed_middle), 1);
    assert_eq!(redeliveries(&app, &missed_head), 1);
    assert!(
        app.store
            .delivery_outcome(&missed_head)
            .await
            .unwrap()
            .is_some(),
        "the redelivery keeps the delivery id"
    );
    assert!(
        app.logs
            .text()
            .contains("caught up a missed webhook: asked GitHub to deliver it again"),
        "a log line says what was caught up"
    );
    let github = app.github.as_ref().unwrap();
    assert!(
        github.schema_violations().is_empty(),
        "{:?}",
        github.schema_violations()
    );
    assert!(
        github
            .requests()
            .iter()
            .filter(|request| request.path.starts_with("/app/hook/deliveries"))
            .all(|request| request.auth == "jwt"),
        "the deliveries are asked for as the App"
    );
}

#[tokio::test]
async fn catch_up_never_asks_for_a_delivery_wharf_stored_nor_for_one_twice() {
    let (app, first) = app_with_repository().await;
    let zero = "0".repeat(40);
    // Wharf stored this push, but GitHub saw the answer too late and counts it failed.
    let body = push(&zero, &first);
    let answer = app.webhook("push", "stored-late", &body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    let github = app.github.as_ref().unwrap();
    github.record_webhook_attempt("stored-late", "push", &body, 504);
    // This one never arrived (a push to a branch nobody follows).
    let other = String::from_utf8(push(&first, &first))
        .unwrap()
        .replace("refs/heads/main", "refs/heads/elsewhere");
    github.record_webhook_attempt("lost", "push", other.as_bytes(), 502);

    wait_until("the lost delivery is asked for", DEADLINE, || async {
        redeliveries(&app, "lost") == 1
    })
    .await;
    wait_for_passes(&app, 3).await;
    assert_eq!(redeliveries(&app, "lost"), 1, "asked for once");
    assert_eq!(redeliveries(&app, "stored-late"), 0, "never asked for");
    assert_eq!(builds_of(&app, &first).await.len(), 1);
    assert!(
        app.store.delivery_outcome("lost").await.unwrap().is_some(),
        "the redelivery was stored"
    );
}

#[tokio::test]
async fn catch_up_queues_a_branch_head_github_forgot_and_its_late_delivery_builds_nothing_more() {
    let (mut app, first) = app_with_repository().await;
    let zero = "0".repeat(40);
    let answer = app.webhook("push", "first", &push(&zero, &first)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);

    // Down for longer than GitHub keeps deliveries: the push's failed delivery is gone.
    app.stop_server().await;
    let head = commit(&app, "head");
    let github = app.github.as_ref().unwrap();
    github.send_webhook("push", &push(&first, &head)).await;
    github.forget_webhook_deliveries();

    app.start_server().await;
    wait_until("the branch's head is queued", DEADLINE, || async {
        builds_of(&app, &head).await.len() == 1
    })
    .await;
    assert!(
        app.logs
            .text()
            .contains("caught up a missed push: queued the branch's head")
    );
    // The push arrives after all (someone redelivered it by hand): nothing more is built.
    let answer = app.webhook("push", "late", &push(&first, &head)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    let outcome = app.store.delivery_outcome("late").await.unwrap().unwrap();
    assert!(
        outcome.contains("already the newest build of web"),
        "{outcome}"
    );
    wait_for_passes(&app, 3).await;
    assert_eq!(builds_of(&app, &head).await.len(), 1, "the head built once");
    let github = app.github.as_ref().unwrap();
    assert!(
        github
            .requests()
            .iter()
            .any(|request| request.path == "/repos/acme/web/branches/main"
                && request.auth == "token"),
        "the head was read with the installation's token"
    );
    assert!(
        github.schema_violations().is_empty(),
        "{:?}",
        github.schema_violations()
    );
}

#[tokio::test]
async fn catch_up_runs_once_across_server_replicas() {
    // An hour between passes: each server would make one at start.
    let app = spawn_app_with(Options {
        github: true,
        ..Options::default()
    })
    .await;
    let github = app.github.as_ref().unwrap();
    let listings = || {
        github
            .requests()
            .iter()
            .filter(|request| request.path == "/app/hook/deliveries")
            .count()
    };
    wait_until("the first server makes its pass", DEADLINE, || async {
        listings() == 1
    })
    .await;
    let (_url, _replica) = app.start_replica().await;
    wait_until("the replica finds the turn taken", DEADLINE, || async {
        app.logs
            .text()
            .contains("catch-up pass skipped: another server replica has this turn")
    })
    .await;
    assert_eq!(listings(), 1);
}
