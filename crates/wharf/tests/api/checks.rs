//! The check `wharf/<service>` on a pushed commit, against the stand-in (which checks every
//! request against GitHub's OpenAPI description): one check run following the build and its
//! release to success or to failure (with the reason and the log's last lines), commit statuses
//! for an installation without the checks permission, and no second check run when GitHub
//! fails or a pass dies after making one.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wharf_github::{CheckRunFields, CheckRunOutput};

use crate::github_deployments::{
    app_client, app_with_service, app_with_service_granting, assert_no_violations,
    build_and_go_live, claim, commit, push, report, standin, wait_for,
};
use crate::helpers::TestApp;

/// The one check run of build `id`, once the stand-in has it.
async fn check_run_of(app: &TestApp, id: i64) -> Value {
    let github = standin(app);
    let external_id = id.to_string();
    wait_for(&format!("a check run of build #{id}"), || {
        github
            .check_runs()
            .into_iter()
            .find(|run| run["external_id"] == external_id.as_str())
    })
    .await
}

/// Waits until the check run reaches `status` (and `conclusion`, once completed); returns it.
async fn wait_for_check(app: &TestApp, run: &Value, status: &str, conclusion: Value) -> Value {
    let github = standin(app);
    let id = run["id"].as_u64().unwrap();
    wait_for(
        &format!("check run {id} reaching {status} {conclusion}"),
        || {
            github
                .check_runs()
                .into_iter()
                .find(|run| run["id"] == id)
                .filter(|run| run["status"] == status && run["conclusion"] == conclusion)
        },
    )
    .await
}

/// The states the check run went through, one per write, without repeats.
fn check_states(app: &TestApp, run: &Value) -> Vec<String> {
    let mut states: Vec<String> = standin(app)
        .check_run_history(run["id"].as_u64().unwrap())
        .iter()
        .map(|run| match run["conclusion"].as_str() {
            Some(conclusion) => conclusion.to_owned(),
            None => run["status"].as_str().unwrap().to_owned(),
        })
        .collect();
    states.dedup();
    states
}

fn check_run_requests(app: &TestApp, method: &str) -> Vec<u16> {
    standin(app)
        .requests()
        .iter()
        .filter(|request| request.method == method && request.path == "/repos/acme/web/check-runs")
        .map(|request| request.status)
        .collect()
}

#[tokio::test]
async fn a_push_that_goes_live_leaves_one_check_run_going_in_progress_then_success() {
    let (app, sha) = app_with_service().await;
    let agent = app.create_agent("local").await;
    let id = push(&app, "d-1", &sha).await;
    let run = check_run_of(&app, id).await;
    assert_eq!(run["name"], "wharf/web");
    assert_eq!(run["head_sha"], sha);
    let build_page = format!("{}/builds/{id}", app.url);
    assert_eq!(run["details_url"], build_page);

    claim(&app, &agent, id).await;
    wait_for_check(&app, &run, "in_progress", Value::Null).await;
    let commit_sha = app.build(id).await["commit_sha"]
        .as_str()
        .unwrap()
        .to_owned();
    report(
        &app,
        &agent,
        id,
        json!({"state": "completed", "image": format!("registry.test/default/web:{commit_sha}"),
               "digest": format!("sha256:{}", "0".repeat(64))}),
    )
    .await;
    app.roll_out_live(&agent).await;
    let done = wait_for_check(&app, &run, "completed", json!("success")).await;
    assert_eq!(done["output"]["title"], "Live");
    assert_eq!(done["details_url"], build_page);
    let states = check_states(&app, &run);
    assert_eq!(states.last().map(String::as_str), Some("success"));
    assert!(
        states.iter().position(|state| state == "in_progress")
            < states.iter().position(|state| state == "success"),
        "{states:?}"
    );
    assert!(!states.contains(&"failure".to_owned()), "{states:?}");

    // A newer release replaces it: the commit's check keeps its success.
    let next = push(&app, "d-2", &commit(&app, "second")).await;
    build_and_go_live(&app, &agent, next).await;
    let second = check_run_of(&app, next).await;
    wait_for_check(&app, &second, "completed", json!("success")).await;
    let first = standin(&app).check_run_history(run["id"].as_u64().unwrap());
    assert_eq!(first.last().unwrap()["conclusion"], "success");
    assert_eq!(
        standin(&app).check_runs().len(),
        2,
        "one check run per build"
    );
    assert_eq!(check_run_requests(&app, "POST"), [201, 201]);
    assert_no_violations(&app);
}

#[tokio::test]
async fn a_failing_build_leaves_a_failure_with_the_reason_and_the_logs_last_lines() {
    let (app, sha) = app_with_service().await;
    let agent = app.create_agent("builder").await;
    let id = push(&app, "d-1", &sha).await;
    let run = check_run_of(&app, id).await;
    claim(&app, &agent, id).await;
    let lines: Vec<Value> = (1..=45)
        .map(|line| json!({"stream": "stdout", "text": format!("compiling unit {line}")}))
        .collect();
    let appended = app
        .post_as(
            &agent,
            &format!("/v1/agent/builds/{id}/logs"),
            json!({ "lines": lines }),
        )
        .await;
    assert_eq!(appended.status, StatusCode::OK, "{}", appended.text);
    report(
        &app,
        &agent,
        id,
        json!({"state": "failed", "reason": "step build failed: exit status 2"}),
    )
    .await;
    let failed = wait_for_check(&app, &run, "completed", json!("failure")).await;
    assert_eq!(
        failed["output"]["title"],
        "Build failed: step build failed: exit status 2"
    );
    assert_eq!(
        failed["output"]["summary"],
        "step build failed: exit status 2"
    );
    let text = failed["output"]["text"].as_str().unwrap();
    assert!(text.contains("compiling unit 45\n"), "{text}");
    assert!(text.contains("compiling unit 16\n"), "{text}");
    assert!(
        !text.contains("compiling unit 15\n"),
        "only the last 30 lines: {text}"
    );
    assert!(text.len() < 2_000, "bounded: {text}");
    assert_eq!(standin(&app).check_runs().len(), 1);
    assert_no_violations(&app);
}

#[tokio::test]
async fn an_installation_without_checks_gets_commit_statuses_and_one_warning() {
    let (app, sha) = app_with_service_granting(Some(&[
        ("contents", "read"),
        ("deployments", "write"),
        ("metadata", "read"),
        ("statuses", "write"),
    ]))
    .await;
    let github = standin(&app);
    let agent = app.create_agent("builder").await;
    let id = push(&app, "d-1", &sha).await;
    let build_page = format!("{}/builds/{id}", app.url);
    let pending = wait_for("a pending commit status", || {
        github.commit_statuses("acme/web", &sha).into_iter().next()
    })
    .await;
    assert_eq!(pending["state"], "pending");
    assert_eq!(pending["context"], "wharf/web");
    assert_eq!(pending["target_url"], build_page);
    assert_eq!(
        pending["description"],
        "Queued: waiting for an agent to build it"
    );
    claim(&app, &agent, id).await;
    report(
        &app,
        &agent,
        id,
        json!({"state": "failed", "reason": "no Dockerfile"}),
    )
    .await;
    let failed = wait_for("a failure commit status", || {
        github
            .commit_statuses("acme/web", &sha)
            .into_iter()
            .find(|status| status["state"] == "failure")
    })
    .await;
    assert_eq!(failed["description"], "Build failed: no Dockerfile");
    assert_eq!(failed["target_url"], build_page);

    // A second build of the installation goes straight to a commit status.
    let second_sha = commit(&app, "second");
    push(&app, "d-2", &second_sha).await;
    wait_for("the second build's commit status", || {
        github
            .commit_statuses("acme/web", &second_sha)
            .into_iter()
            .next()
    })
    .await;
    assert!(github.check_runs().is_empty());
    assert_eq!(check_run_requests(&app, "POST"), [403], "checks tried once");
    let warnings = app
        .logs
        .text()
        .matches("may not write checks (Checks: write)")
        .count();
    assert_eq!(warnings, 1, "said once");
    assert!(app.store.github_report(id).await.unwrap().checks_refused);
    assert_no_violations(&app);
}

#[tokio::test]
async fn github_failing_is_retried_and_a_check_run_made_by_a_failed_pass_is_not_made_twice() {
    let (app, sha) = app_with_service().await;
    let github = standin(&app);
    // A pass made the first build's check run and died before storing its id: here the run is
    // made beforehand, and the reporter's first request to make one fails.
    let client = app_client(&app);
    let made = client
        .create_check_run(
            42,
            "acme",
            "web",
            "wharf/web",
            &sha,
            &CheckRunFields {
                details_url: "http://wharf.test/builds/1".to_owned(),
                external_id: "1".to_owned(),
                status: "queued".to_owned(),
                conclusion: None,
                output: CheckRunOutput {
                    title: "Queued".to_owned(),
                    summary: "Queued".to_owned(),
                    text: None,
                },
            },
        )
        .await
        .unwrap();
    github.fail_next("/repos/acme/web/check-runs", 502, 1);
    let id = push(&app, "d-1", &sha).await;
    assert_eq!(id, 1, "the first build of a fresh database");

    // The next status fails twice on its way (a 500, then a rate limit), and gets through.
    let agent = app.create_agent("builder").await;
    wait_for("the check run found and recorded", || {
        (github.check_run_history(made).len() > 1).then_some(())
    })
    .await;
    let update_path = format!("/repos/acme/web/check-runs/{made}");
    github.fail_next(&update_path, 500, 1);
    github.fail_next(&update_path, 403, 1);
    claim(&app, &agent, id).await;
    let run = json!({"id": made});
    wait_for_check(&app, &run, "in_progress", Value::Null).await;

    assert_eq!(github.check_runs().len(), 1, "no second check run");
    // The test's own run, then the reporter's one try to make another.
    assert_eq!(check_run_requests(&app, "POST"), [201, 502]);
    let looked_up = github.requests().iter().any(|request| {
        request.method == "GET"
            && request.path == format!("/repos/acme/web/commits/{sha}/check-runs")
            && request
                .query
                .as_deref()
                .is_some_and(|query| query.contains("check_name=wharf%2Fweb"))
    });
    assert!(looked_up, "the second pass looked for the check run first");
    let refused: Vec<u16> = github
        .requests()
        .iter()
        .filter(|request| request.path == update_path && request.status >= 400)
        .map(|request| request.status)
        .collect();
    assert_eq!(refused, [500, 403]);
    // The reporter records what GitHub took once GitHub has answered: wait for it.
    crate::helpers::wait_until(
        "the check run's state recorded",
        std::time::Duration::from_secs(10),
        || async {
            let stored = app.store.github_report(id).await.unwrap();
            stored.check.as_deref() == Some("in_progress")
        },
    )
    .await;
    let stored = app.store.github_report(id).await.unwrap();
    assert_eq!(stored.check_run_id, Some(made as i64));
    assert_no_violations(&app);
}

#[tokio::test]
async fn a_rolled_back_release_leaves_a_failure_with_the_containers_last_lines() {
    let (app, sha) = app_with_service().await;
    let agent = app.create_agent("local").await;
    let id = push(&app, "d-1", &sha).await;
    let run = check_run_of(&app, id).await;
    claim(&app, &agent, id).await;
    report(
        &app,
        &agent,
        id,
        json!({"state": "completed", "image": format!("registry.test/default/web:{sha}"),
               "digest": format!("sha256:{}", "0".repeat(64))}),
    )
    .await;
    let claimed = app
        .post_as(
            &agent,
            "/v1/agent/rollouts/claim",
            json!({"wait_ms": 10000}),
        )
        .await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.text);
    let rollout = claimed.body["job"]["rollout_id"].as_i64().unwrap();
    for body in [
        json!({"state": "starting"}),
        json!({"state": "health_checking"}),
        json!({"state": "rolled_back", "reason": "health check failed: GET / answered 500",
               "log_tail": ["listening on :8080", "panic: no DATABASE_URL"]}),
    ] {
        let answer = app
            .post_as(&agent, &format!("/v1/agent/rollouts/{rollout}/state"), body)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
    let failed = wait_for_check(&app, &run, "completed", json!("failure")).await;
    assert_eq!(
        failed["output"]["summary"],
        "health check failed: GET / answered 500"
    );
    let text = failed["output"]["text"].as_str().unwrap();
    assert!(
        text.contains("The new container's log's last 2 lines")
            && text.contains("listening on :8080\npanic: no DATABASE_URL\n"),
        "{text}"
    );
    assert_no_violations(&app);
}
