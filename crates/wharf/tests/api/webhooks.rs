//! `POST /api/webhooks/github` through real HTTP: signatures, bad input, deduplication, what a
//! push queues, and every real payload of every event GitHub sends.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use wharf_store::testing::insert_earlier_delivery;

use crate::helpers::{
    Answer, Options, push_payload, repository_id, sha, sign, spawn_app, spawn_app_with, wait_until,
};

#[tokio::test]
async fn a_push_to_a_tracked_branch_queues_one_build_of_the_after_commit() {
    let app = spawn_app().await;
    app.create_service("web", "Acme/Web", "main").await;
    let answer = app
        .webhook(
            "push",
            "d-1",
            &push_payload("acme/web", "refs/heads/main", &sha('a')),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    let builds = app.builds().await;
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0]["commit_sha"], sha('a'));
    assert_eq!(builds[0]["state"], "pending");
    assert_eq!(builds[0]["trigger"], "push");
    assert_eq!(builds[0]["branch"], "main");
    assert_eq!(builds[0]["delivery_id"], "d-1");
    assert_eq!(answer.body["builds"], json!([builds[0]["id"]]));
}

/// A push of `repo` whose repository has GitHub's id `id`.
fn push_from(repo: &str, id: u64, after: &str) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&push_payload(repo, "refs/heads/main", after))
        .expect("the push payload is JSON");
    body["repository"]["id"] = json!(id);
    body.to_string().into_bytes()
}

#[tokio::test]
async fn a_repository_created_again_under_a_services_name_does_not_inherit_the_service() {
    let app = spawn_app().await;
    // Linked by the first push of its name: the repository as it was then.
    let service = app.create_service("web", "acme/web", "main").await;
    assert_eq!(service["repository_id"], Value::Null);
    let first = app
        .webhook("push", "d-1", &push_from("acme/web", 100, &sha('a')))
        .await;
    assert_eq!(
        first.body["builds"].as_array().unwrap().len(),
        1,
        "{}",
        first.text
    );
    assert_eq!(app.get("/v1/services/web").await.body["repository_id"], 100);

    // The repository is deleted and someone creates one of the same name: its pushes build
    // nothing, and the delivery says why and what to do.
    let impostor = app
        .webhook("push", "d-2", &push_from("acme/web", 200, &sha('b')))
        .await;
    assert_eq!(impostor.status, StatusCode::ACCEPTED, "{}", impostor.text);
    assert_eq!(impostor.body["builds"], json!([]), "{}", impostor.text);
    let outcome = impostor.body["outcome"].as_str().unwrap();
    assert!(outcome.contains("repository id 200"), "{outcome}");
    assert!(
        outcome.contains("web (linked to repository id 100)"),
        "{outcome}"
    );
    assert!(outcome.contains("--relink-repository"), "{outcome}");
    assert_eq!(app.builds().await.len(), 1);

    // Changing other settings keeps the link.
    let mut settings = app.get("/v1/services/web").await.body;
    settings["port"] = json!(9090);
    let changed = app.put("/v1/services/web", settings.clone()).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.body["repository_id"], 100);
    let still = app
        .webhook("push", "d-3", &push_from("acme/web", 200, &sha('c')))
        .await;
    assert_eq!(still.body["builds"], json!([]), "{}", still.text);

    // The admin links the service again; the repository of that name now builds.
    settings["relink_repository"] = json!(true);
    let relinked = app.put("/v1/services/web", settings).await;
    assert_eq!(relinked.status, StatusCode::OK, "{}", relinked.text);
    assert_eq!(relinked.body["repository_id"], Value::Null);
    let now = app
        .webhook("push", "d-4", &push_from("acme/web", 200, &sha('d')))
        .await;
    assert_eq!(
        now.body["builds"].as_array().unwrap().len(),
        1,
        "{}",
        now.text
    );
    assert_eq!(app.get("/v1/services/web").await.body["repository_id"], 200);
}

#[tokio::test]
async fn a_service_of_a_repository_an_installation_names_is_linked_to_it_at_once() {
    let app = spawn_app().await;
    app.announce_installation(&["acme/web"]).await;
    let service = app.create_service("web", "acme/web", "main").await;
    assert_eq!(
        service["repository_id"],
        json!(repository_id("acme/web")),
        "{service}"
    );
    // Another repository given the name (the first renamed away) never gets a first push.
    let other = app
        .webhook("push", "d-1", &push_from("acme/web", 7, &sha('a')))
        .await;
    assert_eq!(other.body["builds"], json!([]), "{}", other.text);
    let own = app
        .webhook(
            "push",
            "d-2",
            &push_from("acme/web", repository_id("acme/web"), &sha('b')),
        )
        .await;
    assert_eq!(
        own.body["builds"].as_array().unwrap().len(),
        1,
        "{}",
        own.text
    );
}

#[tokio::test]
async fn signatures_are_checked_before_anything_else() {
    let app = spawn_app().await;
    app.create_service("web", "acme/web", "main").await;
    let body = push_payload("acme/web", "refs/heads/main", &sha('a'));
    let foreign = wharf_domain::signature::sign(b"someone else's secret", &body);
    let sha1_only = format!("sha1={}", "0".repeat(40));
    let truncated = sign(&body)[..40].to_owned();
    let cases: [(&str, Option<&str>); 5] = [
        ("missing", None),
        ("foreign secret", Some(&foreign)),
        ("sha1 only", Some(&sha1_only)),
        ("truncated", Some(&truncated)),
        ("garbage", Some("sha256=not-hex")),
    ];
    for (case, signature) in cases {
        let answer = app
            .webhook_with(Some("push"), Some("d-1"), signature, &body)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{case}: {}",
            answer.text
        );
        assert!(
            answer.body["error"]
                .as_str()
                .unwrap()
                .contains("X-Hub-Signature-256"),
            "{case}"
        );
    }
    // A valid signature over a different body is as wrong as none.
    let other = push_payload("acme/web", "refs/heads/main", &sha('b'));
    let answer = app
        .webhook_with(Some("push"), Some("d-1"), Some(&sign(&other)), &body)
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // An invalid signature on a broken body is still a 401: nothing is parsed unverified.
    let answer = app
        .webhook_with(Some("push"), Some("d-1"), Some(&foreign), b"{not json")
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(app.builds().await.is_empty());
    assert_eq!(app.store.count_deliveries().await.unwrap(), 0);
}

#[tokio::test]
async fn broken_payloads_are_400_and_queue_nothing() {
    let app = spawn_app().await;
    app.create_service("web", "acme/web", "main").await;
    let good = String::from_utf8(push_payload("acme/web", "refs/heads/main", &sha('a'))).unwrap();
    let long_ref = format!("refs/heads/{}", "x".repeat(5000));
    let mut wrong_types: Value = serde_json::from_str(&good).unwrap();
    wrong_types["repository"]["id"] = json!("1296269");
    let mut after_number: Value = serde_json::from_str(&good).unwrap();
    after_number["after"] = json!(12345);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated JSON", good.as_bytes()[..good.len() / 2].to_vec()),
        ("not an object", b"[1, 2, 3]".to_vec()),
        ("empty body", Vec::new()),
        ("wrong field type", wrong_types.to_string().into_bytes()),
        ("number for a SHA", after_number.to_string().into_bytes()),
        (
            "shell metacharacters",
            push_payload("acme/web", "refs/heads/main;rm -rf /", &sha('a')),
        ),
        (
            "command substitution",
            push_payload("acme/web", "refs/heads/$(id)", &sha('a')),
        ),
        (
            "dot-dot",
            push_payload("acme/web", "refs/heads/../../etc", &sha('a')),
        ),
        (
            "NUL",
            push_payload("acme/web", "refs/heads/ma\u{0}in", &sha('a')),
        ),
        (
            "5,000 characters",
            push_payload("acme/web", &long_ref, &sha('a')),
        ),
        (
            "bad SHA",
            push_payload("acme/web", "refs/heads/main", "not-a-sha"),
        ),
        (
            "bad repository name",
            push_payload("acme/web/extra", "refs/heads/main", &sha('a')),
        ),
        (
            "repository name with a space",
            push_payload("acme/we b", "refs/heads/main", &sha('a')),
        ),
    ];
    for (index, (case, body)) in cases.iter().enumerate() {
        let answer = app.webhook("push", &format!("bad-{index}"), body).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{case}: {}",
            answer.text
        );
        assert!(
            !answer.body["error"].as_str().unwrap_or("").is_empty(),
            "{case}"
        );
    }
    assert!(app.builds().await.is_empty());
    assert_eq!(app.store.count_deliveries().await.unwrap(), 0);
    // The server is still up and still takes good deliveries.
    let answer = app.webhook("push", "good", good.as_bytes()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
}

#[tokio::test]
async fn missing_headers_are_400() {
    let app = spawn_app().await;
    let body = push_payload("acme/web", "refs/heads/main", &sha('a'));
    let signature = sign(&body);
    let no_event = app
        .webhook_with(None, Some("d-1"), Some(&signature), &body)
        .await;
    assert_eq!(no_event.status, StatusCode::BAD_REQUEST);
    assert!(
        no_event.body["error"]
            .as_str()
            .unwrap()
            .contains("X-GitHub-Event")
    );
    let no_delivery = app
        .webhook_with(Some("push"), None, Some(&signature), &body)
        .await;
    assert_eq!(no_delivery.status, StatusCode::BAD_REQUEST);
    assert!(
        no_delivery.body["error"]
            .as_str()
            .unwrap()
            .contains("X-GitHub-Delivery")
    );
    let odd_delivery = app
        .webhook_with(Some("push"), Some("a b;c"), Some(&signature), &body)
        .await;
    assert_eq!(odd_delivery.status, StatusCode::BAD_REQUEST);
    let odd_event = app
        .webhook_with(Some("push;rm"), Some("d-2"), Some(&signature), &body)
        .await;
    assert_eq!(odd_event.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_body_over_25_mb_is_413_and_the_server_stays_up() {
    let app = spawn_app().await;
    let body = vec![b' '; 30 * 1024 * 1024];
    let answer = app.webhook("push", "huge", &body).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_events_are_a_2xx_no_op_and_ping_is_answered() {
    let app = spawn_app().await;
    let star = app
        .webhook("star", "s-1", br#"{"action": "created"}"#)
        .await;
    assert_eq!(star.status, StatusCode::OK, "{}", star.text);
    assert!(star.body["outcome"].as_str().unwrap().contains("ignored"));
    let ping = app
        .webhook(
            "ping",
            "p-1",
            br#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#,
        )
        .await;
    assert!(ping.status.is_success(), "{}", ping.text);
    assert_eq!(ping.body["outcome"], "pong");
    assert!(app.builds().await.is_empty());
}

#[tokio::test]
async fn a_repeated_delivery_or_a_redelivered_push_never_builds_twice() {
    let app = spawn_app().await;
    app.create_service("web", "acme/web", "main").await;
    let body = push_payload("acme/web", "refs/heads/main", &sha('a'));
    let first = app.webhook("push", "d-1", &body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let same_id = app.webhook("push", "d-1", &body).await;
    assert_duplicate(&same_id, "the same delivery id");
    // GitHub's redelivery may carry a new delivery id: the push itself is recognised.
    let new_id = app.webhook("push", "d-2", &body).await;
    assert_eq!(new_id.status, StatusCode::OK);
    assert_eq!(app.builds().await.len(), 1);
}

/// Asserts that a delivery was answered as one seen before, which changes nothing.
#[track_caller]
fn assert_duplicate(answer: &Answer, what: &str) {
    assert_eq!(answer.status, StatusCode::OK, "{what}: {}", answer.text);
    assert!(
        answer.body["outcome"]
            .as_str()
            .is_some_and(|outcome| outcome.starts_with("duplicate")),
        "{what}: {}",
        answer.text
    );
}

/// A push of `acme/web`'s main from `before` to `after`, taken by GitHub at `pushed_at`.
fn push_between(before: &str, after: &str, pushed_at: i64) -> Vec<u8> {
    let mut body: Value =
        serde_json::from_slice(&push_payload("acme/web", "refs/heads/main", after)).unwrap();
    body["before"] = json!(before);
    body["repository"]["pushed_at"] = json!(pushed_at);
    body.to_string().into_bytes()
}

#[tokio::test]
async fn a_force_push_back_to_an_earlier_commit_builds_again_and_a_redelivery_does_not() {
    let app = spawn_app().await;
    app.create_service("web", "acme/web", "main").await;
    let (a, b) = (sha('a'), sha('b'));
    // A→B→A→B: the branch moves back and forth; the second and the fourth push move it
    // between the same commits.
    let pushes = [
        push_between(&sha('0'), &a, 1_700_000_100),
        push_between(&a, &b, 1_700_000_200),
        push_between(&b, &a, 1_700_000_300),
        push_between(&a, &b, 1_700_000_400),
    ];
    for (index, body) in pushes.iter().enumerate() {
        let answer = app.webhook("push", &format!("push-{index}"), body).await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "push {index}: {}",
            answer.text
        );
        assert_eq!(
            answer.body["builds"].as_array().unwrap().len(),
            1,
            "push {index}"
        );
    }
    let commits: Vec<Value> = app
        .builds()
        .await
        .iter()
        .map(|build| build["commit_sha"].clone())
        .collect();
    assert_eq!(commits, [json!(b), json!(a), json!(b), json!(a)]);
    // GitHub's redelivery of any of them, under a new delivery id, builds nothing.
    for (index, body) in pushes.iter().enumerate() {
        let answer = app
            .webhook("push", &format!("redelivery-{index}"), body)
            .await;
        assert_duplicate(&answer, &format!("redelivery {index}"));
    }
    assert_eq!(app.builds().await.len(), 4);
    assert_eq!(app.builds().await[0]["state"], "pending");
}

#[tokio::test]
async fn a_captured_body_replayed_under_a_new_delivery_id_changes_nothing() {
    let app = spawn_app().await;
    let account = json!({"login": "acme", "id": 9, "type": "Organization"});
    let web = json!({"id": repository_id("acme/web"), "name": "web", "full_name": "acme/web", "private": true});
    let installation = |action: &str, updated_at: &str| {
        json!({
            "action": action,
            "installation": {"id": 42, "account": account, "updated_at": updated_at},
            "repositories": [web]
        })
        .to_string()
    };
    let roster = |action: &str, updated_at: &str| {
        let (added, removed) = match action {
            "added" => (json!([web]), json!([])),
            _ => (json!([]), json!([web])),
        };
        json!({
            "action": action,
            "installation": {"id": 42, "account": account, "updated_at": updated_at},
            "repositories_added": added,
            "repositories_removed": removed
        })
        .to_string()
    };
    let deliver = |event: &'static str, id: &'static str, body: String| {
        let app = &app;
        async move {
            let answer = app.webhook(event, id, body.as_bytes()).await;
            assert!(answer.status.is_success(), "{id}: {}", answer.text);
            answer
        }
    };
    let installed = || async { app.store.installation_for_repo("acme/web").await.unwrap() };

    // The App is installed, uninstalled and installed again.
    deliver("installation", "i-1", installation("created", "t1")).await;
    let uninstalled = installation("deleted", "t2");
    deliver("installation", "i-2", uninstalled.clone()).await;
    assert_eq!(installed().await, None);
    deliver("installation", "i-3", installation("created", "t3")).await;
    assert_eq!(installed().await, Some(42));
    // Someone who captured the uninstallation sends it again under a new delivery id.
    let replay = deliver("installation", "i-replayed", uninstalled).await;
    assert_duplicate(&replay, "the replay");
    assert_eq!(installed().await, Some(42));

    // The same for a repository taken from the installation and given back.
    let removal = roster("removed", "t4");
    deliver("installation_repositories", "r-1", removal.clone()).await;
    assert_eq!(installed().await, None);
    deliver("installation_repositories", "r-2", roster("added", "t5")).await;
    assert_eq!(installed().await, Some(42));
    let replay = deliver("installation_repositories", "r-replayed", removal).await;
    assert_duplicate(&replay, "the replay");
    assert_eq!(installed().await, Some(42));
}

#[tokio::test]
async fn bodies_past_their_retention_are_removed_and_still_cannot_be_replayed() {
    let app = spawn_app_with(Options {
        delivery_retention: Some(Duration::from_millis(300)),
        ..Options::default()
    })
    .await;
    app.create_service("web", "acme/web", "main").await;
    let account = json!({"login": "acme", "id": 9, "type": "Organization"});
    let created = json!({
        "action": "created",
        "installation": {"id": 42, "account": account},
        "repositories": [{"id": repository_id("acme/web"), "full_name": "acme/web", "private": true}]
    })
    .to_string();
    let deleted =
        json!({"action": "deleted", "installation": {"id": 42, "account": account}}).to_string();
    let push = push_payload("acme/web", "refs/heads/main", &sha('a'));
    for (event, id, body) in [
        ("installation", "old-created", created.as_bytes()),
        ("installation", "old-deleted", deleted.as_bytes()),
        ("push", "old-push", &push),
    ] {
        let answer = app.webhook(event, id, body).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{id}: {}", answer.text);
    }
    // The periodic jobs remove the bodies once they are older than the retention period.
    for id in ["old-created", "old-deleted", "old-push"] {
        wait_until(
            &format!("the body of {id} is removed"),
            Duration::from_secs(10),
            || async { app.store.delivery_body(id).await.unwrap().is_none() },
        )
        .await;
        assert!(
            app.store.delivery_outcome(id).await.unwrap().is_some(),
            "{id}"
        );
    }
    // The App is installed again; the old bodies sent again under new ids change nothing.
    let again = json!({
        "action": "created",
        "installation": {"id": 42, "account": account, "updated_at": "later"},
        "repositories": [{"id": repository_id("acme/web"), "full_name": "acme/web", "private": true}]
    });
    app.webhook("installation", "new-created", again.to_string().as_bytes())
        .await;
    for (event, id, body) in [
        ("installation", "replayed-deleted", deleted.as_bytes()),
        ("push", "replayed-push", &push),
    ] {
        let answer = app.webhook(event, id, body).await;
        assert_duplicate(&answer, id);
    }
    assert_eq!(
        app.store.installation_for_repo("acme/web").await.unwrap(),
        Some(42)
    );
    assert_eq!(app.builds().await.len(), 1);
}

#[tokio::test]
async fn bodies_an_earlier_wharf_stored_cannot_be_replayed_either() {
    let app = spawn_app().await;
    app.create_service("web", "acme/web", "main").await;
    let account = json!({"login": "acme", "id": 9, "type": "Organization"});
    let deleted =
        json!({"action": "deleted", "installation": {"id": 42, "account": account}}).to_string();
    let push = String::from_utf8(push_payload("acme/web", "refs/heads/main", &sha('a'))).unwrap();
    // An earlier Wharf stored an uninstallation (known by its delivery id alone) and a push
    // (known by repository, ref and `after`); the App was installed again since.
    let old_push_key = format!(
        "push:{}:refs/heads/main:{}",
        repository_id("acme/web"),
        sha('a')
    );
    for (id, event, key, body) in [
        ("earlier-deleted", "installation", None, &deleted),
        ("earlier-push", "push", Some(old_push_key.as_str()), &push),
    ] {
        insert_earlier_delivery(&app.store, id, event, key, body, 1_700_000_000_000)
            .await
            .unwrap();
    }
    app.announce_installation(&["acme/web"]).await;
    // The periodic jobs key them from their bodies.
    wait_until(
        "the earlier deliveries are keyed",
        Duration::from_secs(10),
        || async { app.store.earlier_deliveries(10).await.unwrap().is_empty() },
    )
    .await;
    for (event, id, body) in [
        ("installation", "replayed-deleted", &deleted),
        ("push", "replayed-push", &push),
    ] {
        let answer = app.webhook(event, id, body.as_bytes()).await;
        assert_duplicate(&answer, id);
    }
    assert_eq!(
        app.store.installation_for_repo("acme/web").await.unwrap(),
        Some(42)
    );
    assert!(app.builds().await.is_empty());
}

#[tokio::test]
async fn deletions_tags_other_branches_and_untracked_repositories_build_nothing() {
    let app = spawn_app().await;
    app.create_service("web", "acme/web", "main").await;
    let cases = [
        (
            "deletion",
            push_payload("acme/web", "refs/heads/main", &sha('0')),
        ),
        (
            "tag",
            push_payload("acme/web", "refs/tags/v1.0.0", &sha('a')),
        ),
        (
            "other branch",
            push_payload("acme/web", "refs/heads/develop", &sha('b')),
        ),
        (
            "untracked repository",
            push_payload("acme/other", "refs/heads/main", &sha('c')),
        ),
    ];
    for (index, (case, body)) in cases.iter().enumerate() {
        let answer = app.webhook("push", &format!("n-{index}"), body).await;
        assert!(answer.status.is_success(), "{case}: {}", answer.text);
        assert_eq!(answer.body["builds"], json!([]), "{case}");
    }
    assert!(app.builds().await.is_empty());
    assert_eq!(
        app.store.delivery_outcome("n-3").await.unwrap().as_deref(),
        Some("no service tracks acme/other on branch main")
    );
}

#[tokio::test]
async fn only_the_newest_pending_push_builds() {
    let app = spawn_app().await;
    app.create_service("web", "acme/web", "main").await;
    for (index, digit) in ['a', 'b', 'c'].into_iter().enumerate() {
        let answer = app
            .webhook(
                "push",
                &format!("d-{index}"),
                &push_payload("acme/web", "refs/heads/main", &sha(digit)),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
    }
    let builds = app.builds().await;
    assert_eq!(builds.len(), 3);
    let newest = &builds[0];
    assert_eq!(newest["commit_sha"], sha('c'));
    assert_eq!(newest["state"], "pending");
    for older in &builds[1..] {
        assert_eq!(older["state"], "cancelled");
        assert!(
            older["reason"]
                .as_str()
                .unwrap()
                .starts_with("superseded by build #")
        );
    }
}

#[tokio::test]
async fn pull_requests_are_stored_and_routed_not_dropped() {
    let app = spawn_app().await;
    let body = json!({
        "action": "opened",
        "number": 7,
        "pull_request": {
            "head": {"ref": "feature", "sha": sha('d'), "repo": {"id": 1}},
            "base": {"ref": "main", "sha": sha('e'), "repo": {"id": 1}}
        },
        "repository": {"id": repository_id("acme/web"), "full_name": "acme/web", "private": true}
    });
    let answer = app
        .webhook("pull_request", "pr-1", body.to_string().as_bytes())
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    let outcome = app.store.delivery_outcome("pr-1").await.unwrap().unwrap();
    assert!(outcome.contains("pull request #7 opened"), "{outcome}");
}

#[tokio::test]
async fn installation_events_keep_the_repository_roster() {
    let app = spawn_app().await;
    let account = json!({"login": "acme", "id": 9, "type": "Organization"});
    let created = json!({
        "action": "created",
        "installation": {"id": 42, "account": account},
        "repositories": [
            {"id": 1, "name": "web", "full_name": "acme/web", "private": true},
            {"id": 2, "name": "api", "full_name": "acme/api", "private": false}
        ]
    });
    let answer = app
        .webhook("installation", "i-1", created.to_string().as_bytes())
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert_eq!(
        app.store.installation_for_repo("acme/web").await.unwrap(),
        Some(42)
    );

    let removed = json!({
        "action": "removed",
        "installation": {"id": 42, "account": account},
        "repository_selection": "selected",
        "repositories_added": [],
        "repositories_removed": [{"id": 1, "name": "web", "full_name": "acme/web", "private": true}]
    });
    let answer = app
        .webhook(
            "installation_repositories",
            "i-2",
            removed.to_string().as_bytes(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert_eq!(
        app.store.installation_for_repo("acme/web").await.unwrap(),
        None
    );
    assert_eq!(
        app.store.installation_for_repo("acme/api").await.unwrap(),
        Some(42)
    );

    let suspend = json!({"action": "suspend", "installation": {"id": 42, "account": account}});
    app.webhook("installation", "i-3", suspend.to_string().as_bytes())
        .await;
    assert_eq!(
        app.store.installation_for_repo("acme/api").await.unwrap(),
        None
    );
    let unsuspend = json!({"action": "unsuspend", "installation": {"id": 42, "account": account}});
    app.webhook("installation", "i-4", unsuspend.to_string().as_bytes())
        .await;
    assert_eq!(
        app.store.installation_for_repo("acme/api").await.unwrap(),
        Some(42)
    );
    let deleted = json!({"action": "deleted", "installation": {"id": 42, "account": account}});
    app.webhook("installation", "i-5", deleted.to_string().as_bytes())
        .await;
    assert_eq!(
        app.store.installation_for_repo("acme/api").await.unwrap(),
        None
    );
}

/// Every example payload GitHub publishes (npm `@octokit/webhooks-examples`), of every event
/// type, gets a 2xx when correctly signed: the events Wharf reads are stored and acted on, the
/// rest are answered and ignored. The pushes to a tracked branch among them queue builds.
#[tokio::test]
async fn every_published_example_of_every_event_is_accepted() {
    let app = spawn_app().await;
    app.create_service("hello", "Codertocat/Hello-World", "master")
        .await;
    let examples = webhook_examples();
    let mut seen = std::collections::BTreeMap::new();
    let mut refused = Vec::new();
    for (event, payloads) in &examples {
        for (index, payload) in payloads.iter().enumerate() {
            let body = payload.to_string();
            let answer = app
                .webhook(event, &format!("example-{event}-{index}"), body.as_bytes())
                .await;
            if !answer.status.is_success() {
                refused.push(format!(
                    "{event} example {index} ({}) got {}: {}",
                    payload["action"], answer.status, answer.text
                ));
            }
            *seen.entry(event.as_str()).or_insert(0) += 1;
        }
    }
    assert!(refused.is_empty(), "{refused:#?}");
    for event in READ_EVENTS {
        assert!(
            seen.get(event).copied().unwrap_or(0) > 0,
            "no examples of {event}: {seen:?}"
        );
    }
    assert!(
        seen.len() >= 50,
        "only {} event types were found",
        seen.len()
    );
    // Only the events Wharf reads are stored; every other one is answered and forgotten.
    for (event, payloads) in &examples {
        let read = READ_EVENTS.contains(&event.as_str());
        for index in 0..payloads.len() {
            let id = format!("example-{event}-{index}");
            let stored = app.store.delivery_outcome(&id).await.unwrap().is_some();
            assert!(read || !stored, "{id} was stored");
        }
    }
    // A payload that is not what an event Wharf reads needs is still refused.
    for event in READ_EVENTS {
        let answer = app
            .webhook(event, &format!("broken-{event}"), b"[1, 2]")
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{event}: {}",
            answer.text
        );
    }
    // The examples hold one push of a branch (refs/heads/master) of Codertocat/Hello-World.
    let builds = app.builds().await;
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert_eq!(builds[0]["service"], "hello");
}

/// The events Wharf reads and stores.
const READ_EVENTS: [&str; 5] = [
    "push",
    "pull_request",
    "installation",
    "installation_repositories",
    "ping",
];

/// The examples of every event type, by the event's `X-GitHub-Event` name.
fn webhook_examples() -> Vec<(String, Vec<Value>)> {
    let path = std::env::var("WHARF_OCTOKIT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../testdata/node_modules/@octokit")
        })
        .join("webhooks-examples/api.github.com/index.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; run scripts/test, which installs it",
            path.display()
        )
    });
    let index: Vec<Value> = serde_json::from_str(&text).unwrap();
    index
        .into_iter()
        .map(|entry| {
            (
                entry["name"].as_str().unwrap().to_owned(),
                entry["examples"].as_array().unwrap().clone(),
            )
        })
        .collect()
}
