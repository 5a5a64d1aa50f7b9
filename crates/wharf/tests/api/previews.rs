//! Preview environments of pull requests: what each `pull_request` event does, approvals,
//! fork isolation, production's priority in the queue, and removal on close; then with real
//! Podman, Caddy and a registry, a preview going live at its own host name beside production
//! and leaving nothing behind when its pull request closes.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Options, TestApp, push_payload, repository_id, sha, spawn_app_with, wait_until,
};
use crate::parts::{Registry, podman, start_deploy_agent};

const DEADLINE: Duration = Duration::from_secs(180);

/// A `pull_request` payload as GitHub sends it, with the fields Wharf reads and a realistic
/// rest: pull request `number` of `repo` into `main`, its head `head` on `branch`, from a fork
/// when `fork`, by an author whose association with the repository is `association`.
fn pull_request(
    repo: &str,
    number: u64,
    action: &str,
    head: &str,
    fork: bool,
    association: &str,
) -> Value {
    let head_repo = if fork {
        json!({"id": 999_001, "full_name": "stranger/site", "private": false})
    } else {
        json!({"id": repository_id(repo), "full_name": repo, "private": true})
    };
    json!({
        "action": action,
        "number": number,
        "pull_request": {
            "url": format!("https://api.github.com/repos/{repo}/pulls/{number}"),
            "id": 1_000 + number,
            "number": number,
            "state": if action == "closed" { "closed" } else { "open" },
            "title": "A change",
            "user": {"login": if fork { "stranger" } else { "octocat" }, "id": 2},
            "draft": false,
            "merged": false,
            "author_association": association,
            "head": {"label": "feature", "ref": "feature", "sha": head, "repo": head_repo},
            "base": {"label": "main", "ref": "main", "sha": sha('b'),
                     "repo": {"id": repository_id(repo), "full_name": repo, "private": true}}
        },
        "repository": {
            "id": repository_id(repo),
            "name": repo.split('/').nth(1).unwrap(),
            "full_name": repo,
            "private": true,
            "owner": {"login": repo.split('/').next().unwrap(), "id": 1}
        },
        "sender": {"login": if fork { "stranger" } else { "octocat" }, "id": 2},
        "installation": {"id": 42}
    })
}

/// Delivers `payload` as a `pull_request` event; answers the delivery's JSON answer.
async fn deliver(app: &TestApp, delivery: &str, payload: &Value) -> Value {
    let answer = app
        .webhook("pull_request", delivery, payload.to_string().as_bytes())
        .await;
    assert!(answer.status.is_success(), "{}", answer.text);
    answer.body
}

async fn previews(app: &TestApp) -> Vec<Value> {
    let answer = app.get("/v1/services/site/previews").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body.as_array().unwrap().clone()
}

async fn preview(app: &TestApp, pr: u64) -> Value {
    previews(app)
        .await
        .into_iter()
        .find(|preview| preview["pr"] == pr)
        .unwrap_or_else(|| panic!("no preview of #{pr}"))
}

/// A server with the stand-in holding `acme/site` and a service `site` on it, previews on.
async fn app_with_previews(options: Options, deploy: Value) -> TestApp {
    let app = spawn_app_with(Options {
        github: true,
        ..options
    })
    .await;
    let github = app.github.as_ref().unwrap();
    github.add_installation(42, "acme");
    github.add_repository(42, "acme/site").unwrap();
    app.announce_installation(&["acme/site"]).await;
    let answer = app
        .post(
            "/v1/services",
            json!({"name": "site", "repo": "acme/site", "branch": "main", "port": 8080,
                   "domain": "site.test", "deploy": deploy}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    app
}

#[tokio::test]
async fn a_pull_request_builds_its_preview_and_a_forks_waits_for_an_approval_of_each_commit() {
    let app = app_with_previews(
        Options::default(),
        json!({"previews": {"enabled": true, "label": "safe to preview"}}),
    )
    .await;
    let secret = app
        .post(
            "/v1/services/site/env",
            json!({"name": "API_KEY", "value": "hunter2-secret", "secret": true, "build": true}),
        )
        .await;
    assert_eq!(secret.status, StatusCode::OK, "{}", secret.text);

    // A pull request of the repository itself, by a member: its head builds for site-pr-7.
    let opened = deliver(
        &app,
        "pr-7-opened",
        &pull_request("acme/site", 7, "opened", &sha('1'), false, "MEMBER"),
    )
    .await;
    let build_id = opened["builds"][0].as_i64().expect("a build was queued");
    let build = app.build(build_id).await;
    assert_eq!(build["environment"], "site-pr-7");
    assert_eq!(build["trigger"], "pull_request");
    assert_eq!(build["commit_sha"], sha('1'));
    let shown = preview(&app, 7).await;
    assert_eq!(shown["state"], "building", "{shown}");
    assert_eq!(shown["url"], "http://pr-7.site.test");
    assert_eq!(shown["environment"], "site-pr-7");
    assert_eq!(shown["from_fork"], false);

    // The same event again (a redelivery) builds nothing more.
    let again = deliver(
        &app,
        "pr-7-opened-again",
        &pull_request("acme/site", 7, "reopened", &sha('1'), false, "MEMBER"),
    )
    .await;
    assert!(
        again["builds"].as_array().is_none_or(Vec::is_empty),
        "{again}"
    );

    // A push to production queued after it is claimed first: previews never delay it.
    let mut push: Value =
        serde_json::from_slice(&push_payload("acme/site", "refs/heads/main", &sha('2'))).unwrap();
    push["installation"]["id"] = json!(42);
    let pushed = app
        .webhook("push", "push-main", push.to_string().as_bytes())
        .await;
    assert_eq!(pushed.status, StatusCode::ACCEPTED, "{}", pushed.text);
    let production = pushed.body["builds"][0].as_i64().unwrap();
    let agent = app.create_agent("builder").await;
    app.claim_build(&agent, production).await;
    let claim = app
        .post_as(&agent, "/v1/agent/claim", json!({"wait_ms": 2000}))
        .await;
    assert_eq!(claim.body["job"]["build"]["id"], build_id, "{}", claim.text);
    // The repository's own pull request gets the service's build secrets.
    assert_eq!(claim.body["job"]["build_secrets"][0]["name"], "API_KEY");

    // A fork's pull request builds nothing until its head is approved.
    let fork = deliver(
        &app,
        "pr-8-opened",
        &pull_request("acme/site", 8, "opened", &sha('3'), true, "CONTRIBUTOR"),
    )
    .await;
    assert!(
        fork["builds"].as_array().is_none_or(Vec::is_empty),
        "{fork}"
    );
    let waiting = preview(&app, 8).await;
    assert_eq!(waiting["state"], "waiting_approval", "{waiting}");
    assert!(
        waiting["reason"]
            .as_str()
            .unwrap()
            .contains("wharf preview approve site 8"),
        "{waiting}"
    );
    // An outside author of the repository itself waits as well.
    deliver(
        &app,
        "pr-9-opened",
        &pull_request(
            "acme/site",
            9,
            "opened",
            &sha('4'),
            false,
            "FIRST_TIME_CONTRIBUTOR",
        ),
    )
    .await;
    assert_eq!(preview(&app, 9).await["state"], "waiting_approval");

    // Approving another commit than the head is refused; approving the head builds it.
    let wrong = app
        .post(
            "/v1/services/site/previews/8/approve",
            json!({"commit_sha": sha('9')}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::CONFLICT, "{}", wrong.text);
    let approved = app
        .post("/v1/services/site/previews/8/approve", json!({}))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    assert_eq!(approved.body["state"], "building", "{}", approved.text);
    assert_eq!(approved.body["approved_by"], "admin");
    let fork_build = approved.body["build_id"].as_i64().unwrap();
    // The fork's build gets no secret.
    let claim = app
        .post_as(&agent, "/v1/agent/claim", json!({"wait_ms": 2000}))
        .await;
    assert_eq!(
        claim.body["job"]["build"]["id"], fork_build,
        "{}",
        claim.text
    );
    assert_eq!(
        claim.body["job"]["build_secrets"],
        json!([]),
        "{}",
        claim.text
    );
    assert!(!claim.text.contains("hunter2-secret"));

    // A new commit on the fork needs a new approval: nothing builds, the old approval is gone.
    let pushed_again = deliver(
        &app,
        "pr-8-sync",
        &pull_request(
            "acme/site",
            8,
            "synchronize",
            &sha('5'),
            true,
            "CONTRIBUTOR",
        ),
    )
    .await;
    assert!(
        pushed_again["builds"].as_array().is_none_or(Vec::is_empty),
        "{pushed_again}"
    );
    let waiting = preview(&app, 8).await;
    assert_eq!(waiting["state"], "waiting_approval", "{waiting}");
    assert_eq!(waiting["approved_by"], Value::Null);
    // The service's approval label approves it instead.
    let mut labeled = pull_request("acme/site", 8, "labeled", &sha('5'), true, "CONTRIBUTOR");
    labeled["label"] = json!({"name": "safe to preview"});
    labeled["sender"] = json!({"login": "maintainer", "id": 3});
    let by_label = deliver(&app, "pr-8-labeled", &labeled).await;
    assert!(by_label["builds"][0].as_i64().is_some(), "{by_label}");
    assert_eq!(
        preview(&app, 8).await["approved_by"],
        "label safe to preview by maintainer"
    );

    // Closing a pull request cancels its running build and marks its preview removed.
    deliver(
        &app,
        "pr-7-closed",
        &pull_request("acme/site", 7, "closed", &sha('1'), false, "MEMBER"),
    )
    .await;
    let closed = preview(&app, 7).await;
    assert_eq!(closed["state"], "removed", "{closed}");
    assert_eq!(app.build(build_id).await["state"], "cancelled");
    // The agent learns it at its next heartbeat.
    let heartbeat = app
        .post_as(&agent, "/v1/agent/heartbeat", json!({"builds": [build_id]}))
        .await;
    assert_eq!(heartbeat.status, StatusCode::OK, "{}", heartbeat.text);
    assert_eq!(
        heartbeat.body["stop"],
        json!([build_id]),
        "{}",
        heartbeat.text
    );

    // The CLI lists them.
    let listed = crate::helpers::run_cli(
        &app,
        Some(crate::helpers::ADMIN_TOKEN),
        &["previews", "site"],
        b"",
        None,
    )
    .await;
    assert!(listed.ok(), "{}", listed.text());
    let text = listed.text();
    for expected in ["#7", "removed", "#8", "building", "#9", "waiting_approval"] {
        assert!(text.contains(expected), "{expected} in {text}");
    }

    // Turning previews off removes the open ones.
    let service = app.get("/v1/services/site").await.body;
    let mut update = service.clone();
    update["deploy"]["previews"]["enabled"] = json!(false);
    let updated = app.put("/v1/services/site", update).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    for preview in previews(&app).await {
        assert_eq!(preview["state"], "removed", "{preview}");
    }
    // And pull requests then make none.
    let ignored = deliver(
        &app,
        "pr-10-opened",
        &pull_request("acme/site", 10, "opened", &sha('6'), false, "OWNER"),
    )
    .await;
    assert!(
        ignored["builds"].as_array().is_none_or(Vec::is_empty),
        "{ignored}"
    );
    assert_eq!(previews(&app).await.len(), 3);
}

#[tokio::test]
async fn past_the_limit_the_preview_pushed_to_least_recently_stops_until_started_again() {
    let app = app_with_previews(
        Options::default(),
        json!({"previews": {"enabled": true, "limit": 3}}),
    )
    .await;
    for pr in 1..=4u64 {
        let head = format!("{pr}").repeat(40);
        let opened = deliver(
            &app,
            &format!("pr-{pr}"),
            &pull_request("acme/site", pr, "opened", &head, false, "MEMBER"),
        )
        .await;
        assert!(opened["builds"][0].as_i64().is_some(), "{opened}");
        if pr == 4 {
            assert!(
                opened["outcome"]
                    .as_str()
                    .unwrap()
                    .contains("stopped the preview of #1 (limit 3)"),
                "{opened}"
            );
        }
    }
    let states = |previews: Vec<Value>| -> Vec<(u64, String)> {
        let mut states: Vec<(u64, String)> = previews
            .iter()
            .map(|preview| {
                (
                    preview["pr"].as_u64().unwrap(),
                    preview["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        states.sort();
        states
    };
    assert_eq!(
        states(previews(&app).await),
        vec![
            (1, "stopped".to_owned()),
            (2, "building".to_owned()),
            (3, "building".to_owned()),
            (4, "building".to_owned()),
        ]
    );
    let stopped = preview(&app, 1).await;
    assert!(
        stopped["reason"]
            .as_str()
            .unwrap()
            .contains("wharf preview start <service> 1"),
        "{stopped}"
    );
    // Its build was cancelled with it.
    let build = app.build(stopped["build_id"].as_i64().unwrap()).await;
    assert_eq!(build["state"], "cancelled", "{build}");

    // Started again, it counts as the newest push: the least recent of the others stops.
    let started = crate::helpers::run_cli(
        &app,
        Some(crate::helpers::ADMIN_TOKEN),
        &["preview", "start", "site", "1"],
        b"",
        None,
    )
    .await;
    assert!(started.ok(), "{}", started.text());
    assert!(started.text().contains("building"), "{}", started.text());
    assert_eq!(
        states(previews(&app).await),
        vec![
            (1, "building".to_owned()),
            (2, "stopped".to_owned()),
            (3, "building".to_owned()),
            (4, "building".to_owned()),
        ]
    );
    // Only a stopped preview starts.
    let open = app
        .post("/v1/services/site/previews/3/start", json!({}))
        .await;
    assert_eq!(open.status, StatusCode::CONFLICT, "{}", open.text);
    // A push to the stopped one brings it back too.
    deliver(
        &app,
        "pr-2-sync",
        &pull_request("acme/site", 2, "synchronize", &sha('e'), false, "MEMBER"),
    )
    .await;
    assert_eq!(preview(&app, 2).await["state"], "building");
    assert_eq!(preview(&app, 3).await["state"], "stopped");
}

/// Waits until pull request `pr` of `acme/site` has exactly one comment and it contains
/// `text`; answers the comment.
async fn wait_for_comment(app: &TestApp, pr: u64, text: &str) -> Value {
    let github = app.github.as_ref().unwrap();
    let started = tokio::time::Instant::now();
    loop {
        let comments = github.issue_comments("acme/site", pr);
        assert!(
            comments.len() <= 1,
            "one comment per service: {comments:#?}"
        );
        if let Some(comment) = comments.first()
            && comment["body"].as_str().unwrap_or("").contains(text)
        {
            return comment.clone();
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no comment on #{pr} saying {text:?}: {comments:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn each_pull_request_gets_one_comment_edited_as_its_preview_moves() {
    let app = app_with_previews(
        Options::default(),
        json!({"previews": {"enabled": true, "label": "safe to preview"}}),
    )
    .await;
    let github = app.github.as_ref().unwrap();
    github.open_pull_request("acme/site", 7);
    deliver(
        &app,
        "pr-7-opened",
        &pull_request("acme/site", 7, "opened", &sha('1'), false, "MEMBER"),
    )
    .await;
    let building = wait_for_comment(&app, 7, "is building").await;
    let body = building["body"].as_str().unwrap();
    assert!(body.contains("http://pr-7.site.test"), "{body}");
    assert!(body.contains("/builds/"), "{body}");
    deliver(
        &app,
        "pr-7-closed",
        &pull_request("acme/site", 7, "closed", &sha('1'), false, "MEMBER"),
    )
    .await;
    let removed = wait_for_comment(&app, 7, "was removed").await;
    assert_eq!(removed["id"], building["id"], "the same comment, edited");
    let history = github.comment_history(removed["id"].as_u64().unwrap());
    assert!(history.len() >= 2, "{history:#?}");

    // A fork's pull request says how to approve it; the label approves one commit, and is
    // taken off when a new commit arrives.
    github.open_pull_request("acme/site", 8);
    deliver(
        &app,
        "pr-8-opened",
        &pull_request("acme/site", 8, "opened", &sha('2'), true, "NONE"),
    )
    .await;
    wait_for_comment(
        &app,
        8,
        "`wharf preview approve site 8`, or the label `safe to preview`",
    )
    .await;
    github.add_label("acme/site", 8, "safe to preview");
    let mut labeled = pull_request("acme/site", 8, "labeled", &sha('2'), true, "NONE");
    labeled["label"] = json!({"name": "safe to preview"});
    deliver(&app, "pr-8-labeled", &labeled).await;
    wait_for_comment(&app, 8, "is building").await;
    assert_eq!(github.labels("acme/site", 8), vec!["safe to preview"]);
    deliver(
        &app,
        "pr-8-sync",
        &pull_request("acme/site", 8, "synchronize", &sha('3'), true, "NONE"),
    )
    .await;
    wait_for_comment(&app, 8, "waits for approval").await;
    wait_until("the approval label is taken off", DEADLINE, || async {
        github.labels("acme/site", 8).is_empty()
    })
    .await;
    assert!(
        github.schema_violations().is_empty(),
        "{:?}",
        github.schema_violations()
    );
}

#[tokio::test]
async fn a_pull_request_closed_while_wharf_was_down_loses_its_preview_when_it_is_back() {
    let mut app = app_with_previews(
        Options {
            catch_up_interval: Some(Duration::from_millis(100)),
            ..Options::default()
        },
        json!({"previews": {"enabled": true}}),
    )
    .await;
    let github = app.github.as_ref().unwrap();
    for pr in [7, 8] {
        github.open_pull_request("acme/site", pr);
        deliver(
            &app,
            &format!("pr-{pr}"),
            &pull_request("acme/site", pr, "opened", &sha('1'), false, "MEMBER"),
        )
        .await;
    }
    app.stop_server().await;
    // Closed while no one listened: its `closed` webhook is lost.
    app.github
        .as_ref()
        .unwrap()
        .close_pull_request("acme/site", 7);
    app.start_server().await;
    wait_until(
        "the closed pull request's preview is removed",
        DEADLINE,
        || async { preview(&app, 7).await["state"] == "removed" },
    )
    .await;
    let removed = preview(&app, 7).await;
    assert!(
        removed["reason"]
            .as_str()
            .unwrap()
            .contains("close event never reached Wharf"),
        "{removed}"
    );
    assert_eq!(preview(&app, 8).await["state"], "building");
}

#[tokio::test]
async fn preview_settings_are_checked() {
    let app = app_with_previews(Options::default(), json!({})).await;
    // Preview variables sit beside the service's, under the same name.
    for preview in [false, true] {
        let set = app
            .post(
                "/v1/services/site/env",
                json!({"name": "MODE", "value": format!("preview {preview}"), "preview": preview}),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.text);
        assert_eq!(set.body["preview"], preview);
    }
    let listed = app.get("/v1/services/site/env").await.body;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let unset = app.delete("/v1/services/site/preview-env/MODE").await;
    assert_eq!(unset.status, StatusCode::OK, "{}", unset.text);
    assert_eq!(unset.body.as_array().unwrap().len(), 1);
    assert_eq!(unset.body[0]["preview"], false, "{}", unset.text);
    let again = app.delete("/v1/services/site/preview-env/MODE").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);

    let service = app.get("/v1/services/site").await.body;
    for (previews, expected) in [
        (
            json!({"enabled": true, "domain": "preview.site.test"}),
            "{pr}",
        ),
        (
            json!({"enabled": true, "domain": "pr-{pr}.{zone}"}),
            "placeholders",
        ),
        (json!({"enabled": true, "limit": 0}), "preview limit"),
        (json!({"enabled": true, "hosts": ["no spaces"]}), "host"),
    ] {
        let mut update = service.clone();
        update["deploy"]["previews"] = previews.clone();
        let answer = app.put("/v1/services/site", update).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{previews}: {}",
            answer.text
        );
        assert!(
            answer.text.contains(expected),
            "{previews}: {}",
            answer.text
        );
    }
    let long = app
        .post(
            "/v1/services",
            json!({"name": "a".repeat(60), "repo": "acme/site", "branch": "main",
                   "deploy": {"previews": {"enabled": true}}}),
        )
        .await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST, "{}", long.text);
    assert!(long.text.contains("too long for previews"), "{}", long.text);
}

/// What the edge answers for host name `host`.
async fn through_edge(edge: &str, host: &str) -> Result<String, String> {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    match client
        .get(format!("http://{edge}/"))
        .header("host", host)
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(response) if response.status() == StatusCode::OK => {
            Ok(response.text().await.unwrap_or_default().trim().to_owned())
        }
        Ok(response) => Err(format!("HTTP {}", response.status())),
        Err(error) => Err(error.to_string()),
    }
}

/// A busybox site answering `body` at `/`.
fn site(body: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "Dockerfile".to_owned(),
            b"FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCOPY www /www\n\
              CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
                .to_vec(),
        ),
        ("busybox".to_owned(), crate::parts::busybox()),
        (
            "www/index.html".to_owned(),
            format!("{body}\n").into_bytes(),
        ),
    ]
}

fn commit(app: &TestApp, branch: &str, body: &str) -> String {
    let files = site(body);
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(path, contents)| (path.as_str(), contents.as_slice()))
        .collect();
    app.github
        .as_ref()
        .unwrap()
        .commit_files("acme/site", branch, &files, body)
        .unwrap()
}

async fn release_of(app: &TestApp, environment: &str, trigger: &str, state: &str) -> Value {
    let started = tokio::time::Instant::now();
    loop {
        let answer = app.get("/v1/services/site/releases").await;
        let found = answer
            .body
            .as_array()
            .into_iter()
            .flatten()
            .find(|release| {
                release["environment"] == environment
                    && release["trigger"] == trigger
                    && ["failed", "rolled_back", state]
                        .contains(&release["state"].as_str().unwrap_or(""))
            })
            .cloned();
        if let Some(found) = found {
            assert_eq!(found["state"], state, "{found}");
            return found;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no {trigger} release of {environment} {state}: {}",
            answer.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The containers, networks and volumes Podman holds for `environment` of agent `agent`.
async fn leftovers(agent: &str, environment: &str) -> Vec<String> {
    let mut found = Vec::new();
    for kind in [
        &["ps", "--all"][..],
        &["network", "ls"][..],
        &["volume", "ls"][..],
    ] {
        let mut args: Vec<&str> = kind.to_vec();
        let agent_label = format!("label=wharf.deploy.agent={agent}");
        let environment_label = format!("label=wharf.deploy.environment={environment}");
        args.extend(["--filter", &agent_label, "--filter", &environment_label]);
        args.extend(["--format", "{{.Names}}"]);
        let (listed, names, stderr) = podman(&args).await;
        assert!(listed, "{stderr}");
        found.extend(
            names
                .lines()
                .filter(|line| !line.is_empty())
                .map(|line| format!("{} {line}", kind[0])),
        );
    }
    found
}

#[tokio::test]
async fn a_preview_goes_live_at_its_own_host_name_beside_production_and_goes_completely_when_closed()
 {
    let name = format!("prev-{:x}", rand::random::<u16>());
    let registry = Registry::start().await;
    let app = app_with_previews(
        registry.options(),
        json!({
            "hosts": [name],
            "drain_ms": 300,
            "keep_images": 0,
            "health": {"interval_ms": 100, "timeout_ms": 1000, "deadline_ms": 15000, "retries": 5},
            "previews": {"enabled": true}
        }),
    )
    .await;
    for (variable, value, secret, preview) in [
        ("PLAIN", "shown", false, false),
        ("MODE", "production", false, false),
        ("TOKEN", "s3cret-token", true, false),
        ("MODE", "preview", false, true),
    ] {
        let set = app
            .post(
                "/v1/services/site/env",
                json!({"name": variable, "value": value, "secret": secret, "preview": preview}),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    }
    let agent = start_deploy_agent(&app, &name).await;

    // Production goes live first.
    let main = commit(&app, "main", "production");
    let mut push: Value =
        serde_json::from_slice(&push_payload("acme/site", "refs/heads/main", &main)).unwrap();
    push["installation"]["id"] = json!(42);
    let pushed = app
        .webhook("push", "push-1", push.to_string().as_bytes())
        .await;
    assert_eq!(pushed.status, StatusCode::ACCEPTED, "{}", pushed.text);
    release_of(&app, "production", "build", "live").await;
    assert_eq!(
        through_edge(&agent.edge_listen, "site.test")
            .await
            .as_deref(),
        Ok("production")
    );

    // A fork's pull request, once its head is approved, goes live at pr-7.site.test;
    // production keeps serving.
    let head = commit(&app, "feature", "preview one");
    deliver(
        &app,
        "pr-7-opened",
        &pull_request("acme/site", 7, "opened", &head, true, "CONTRIBUTOR"),
    )
    .await;
    assert_eq!(preview(&app, 7).await["state"], "waiting_approval");
    let approved = app
        .post("/v1/services/site/previews/7/approve", json!({}))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    let release = release_of(&app, "site-pr-7", "build", "live").await;
    assert_eq!(
        through_edge(&agent.edge_listen, "pr-7.site.test")
            .await
            .as_deref(),
        Ok("preview one")
    );
    assert_eq!(
        through_edge(&agent.edge_listen, "site.test")
            .await
            .as_deref(),
        Ok("production")
    );
    let shown = preview(&app, 7).await;
    assert_eq!(shown["state"], "live", "{shown}");
    assert_eq!(shown["release_id"], release["id"]);
    // It runs with the preview's variables besides the service's, and, being a fork's, with
    // no secret.
    let (_, env, _) = podman(&[
        "ps",
        "--filter",
        &format!("label=wharf.deploy.agent={name}"),
        "--filter",
        "label=wharf.deploy.environment=site-pr-7",
        "--format",
        "{{.Names}}",
    ])
    .await;
    let container = env
        .lines()
        .next()
        .expect("the preview's container")
        .to_owned();
    let (_, inspected, _) =
        podman(&["inspect", "--format", "{{json .Config.Env}}", &container]).await;
    for expected in [
        "WHARF_PREVIEW=true",
        "WHARF_PR_NUMBER=7",
        "WHARF_PREVIEW_URL=http://pr-7.site.test",
        "PLAIN=shown",
        "MODE=preview",
    ] {
        assert!(inspected.contains(expected), "{expected} in {inspected}");
    }
    assert!(
        !inspected.contains("TOKEN")
            && !inspected.contains("s3cret")
            && !inspected.contains("MODE=production"),
        "{inspected}"
    );
    let first_image = release["image"].as_str().unwrap().to_owned();

    // A new commit, approved in turn, replaces it without a failed request.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, edge) = (stop.clone(), agent.edge_listen.clone());
        tokio::spawn(async move {
            let mut answers: Vec<Result<String, String>> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                answers.push(through_edge(&edge, "pr-7.site.test").await);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answers
        })
    };
    let second = commit(&app, "feature", "preview two");
    deliver(
        &app,
        "pr-7-sync",
        &pull_request("acme/site", 7, "synchronize", &second, true, "CONTRIBUTOR"),
    )
    .await;
    let approved = app
        .post("/v1/services/site/previews/7/approve", json!({}))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    let started = tokio::time::Instant::now();
    while through_edge(&agent.edge_listen, "pr-7.site.test")
        .await
        .as_deref()
        != Ok("preview two")
    {
        assert!(
            started.elapsed() < DEADLINE,
            "the second commit never went live"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = tokio::time::Instant::now();
    let release = loop {
        let live = release_of(&app, "site-pr-7", "build", "live").await;
        if live["image"] != first_image.as_str() {
            break live;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the second release is not live"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = load.await.unwrap();
    let failed: Vec<_> = answers.iter().filter(|answer| answer.is_err()).collect();
    assert!(
        answers.len() > 20,
        "the load ran: {} requests",
        answers.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        answers.len()
    );
    let image = release["image"].as_str().unwrap().to_owned();

    // Closed: everything of the preview goes; production stays.
    deliver(
        &app,
        "pr-7-closed",
        &pull_request("acme/site", 7, "closed", &second, true, "CONTRIBUTOR"),
    )
    .await;
    let teardown = release_of(&app, "site-pr-7", "teardown", "removed").await;
    assert_eq!(teardown["rollouts"][0]["state"], "removed", "{teardown}");
    assert_eq!(leftovers(&name, "site-pr-7").await, Vec::<String>::new());
    assert!(
        through_edge(&agent.edge_listen, "pr-7.site.test")
            .await
            .is_err(),
        "the preview's host name is no longer routed"
    );
    assert_eq!(
        through_edge(&agent.edge_listen, "site.test")
            .await
            .as_deref(),
        Ok("production")
    );
    assert!(
        !podman(&["image", "exists", &image]).await.0,
        "the preview's image is gone from the host: {image}"
    );
    // And from the registry, both of its commits; production's stays.
    let manifest = |image: &str| {
        let (name, digest) = image.split_once('@').unwrap();
        let repository = name.split_once('/').unwrap().1;
        format!(
            "http://{}/v2/{repository}/manifests/{digest}",
            registry.address
        )
    };
    let registry_has = |image: String| async move {
        reqwest::Client::new()
            .head(manifest(&image))
            .header(
                "accept",
                "application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .await
            .unwrap()
            .status()
    };
    for gone in [&image, &first_image] {
        let started = tokio::time::Instant::now();
        while registry_has(gone.clone()).await != StatusCode::NOT_FOUND {
            assert!(started.elapsed() < DEADLINE, "{gone} stays in the registry");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let production = release_of(&app, "production", "build", "live").await;
    assert_eq!(
        registry_has(production["image"].as_str().unwrap().to_owned()).await,
        StatusCode::OK
    );
    assert_eq!(preview(&app, 7).await["state"], "removed");

    // GitHub shows the preview as a transient environment of its own, live at its host name,
    // then inactive once removed.
    let github = app.github.as_ref().unwrap();
    let mut statuses = Vec::new();
    let started = tokio::time::Instant::now();
    let deployment = loop {
        let deployment = github.deployments().into_iter().find(|deployment| {
            deployment["environment"] == "site-pr-7" && deployment["sha"] == second.as_str()
        });
        if let Some(deployment) = &deployment {
            statuses = github.deployment_statuses(deployment["id"].as_u64().unwrap());
            if statuses
                .last()
                .is_some_and(|status| status["state"] == "inactive")
            {
                break deployment.clone();
            }
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the preview's deployment is not inactive: {deployment:?} {statuses:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(deployment["sha"], second.as_str());
    assert_eq!(deployment["transient_environment"], true, "{deployment}");
    assert_eq!(deployment["production_environment"], false, "{deployment}");
    assert!(
        statuses.iter().any(|status| status["state"] == "success"
            && status["environment_url"] == "http://pr-7.site.test"),
        "{statuses:#?}"
    );
    assert!(
        github.schema_violations().is_empty(),
        "{:?}",
        github.schema_violations()
    );
    agent.stop().await;
}
