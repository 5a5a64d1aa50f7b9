//! Builds and their releases reported to GitHub as deployments, against the stand-in (which
//! checks every request against GitHub's OpenAPI description): one deployment per build of a
//! tracked branch, statuses that follow the build through the agent API, superseding, GitHub
//! failing without holding anything up, and builds that are not reported.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use wharf_github::{AppConfig, GithubApp, NewDeployment};
use wharf_github_standin::GithubStandin;

use crate::helpers::{APP_ID, Options, TestApp, push_payload, spawn_app_with, wait_until};

/// How long a test waits for GitHub to be told something.
pub(crate) const DEADLINE: Duration = Duration::from_secs(15);

/// A server with the stand-in, installation 42 on `acme` granting `acme/web` (one commit on
/// `main`, whose SHA is returned), and the service `web` tracking `main` at web.example.com.
pub(crate) async fn app_with_service() -> (TestApp, String) {
    app_with_service_granting(None).await
}

/// [`app_with_service`] with an installation granting only `permissions`, when given.
pub(crate) async fn app_with_service_granting(
    permissions: Option<&[(&str, &str)]>,
) -> (TestApp, String) {
    let app = spawn_app_with(Options {
        github: true,
        ..Options::default()
    })
    .await;
    let github = standin(&app);
    github.add_installation(42, "acme");
    if let Some(permissions) = permissions {
        github.set_installation_permissions(42, permissions);
    }
    github.add_repository(42, "acme/web").unwrap();
    let sha = commit(&app, "first");
    app.announce_installation(&["acme/web"]).await;
    let created = app
        .post(
            "/v1/services",
            json!({"name": "web", "repo": "acme/web", "branch": "main", "port": 8080,
                   "domain": "web.example.com"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    (app, sha)
}

/// A client of the stand-in as the test's GitHub App, for what a test makes on GitHub itself.
pub(crate) fn app_client(app: &TestApp) -> GithubApp {
    let key = app.app_key.as_ref().expect("the app has a GitHub App");
    GithubApp::new(&AppConfig {
        app_id: APP_ID,
        private_key: SecretString::from(key.private_pem.clone()),
        api_url: standin(app).api_url(),
    })
    .unwrap()
}

pub(crate) fn standin(app: &TestApp) -> &GithubStandin {
    app.github.as_ref().expect("the stand-in runs")
}

/// Commits a new file to `acme/web` `main` and returns the commit's SHA.
pub(crate) fn commit(app: &TestApp, message: &str) -> String {
    standin(app)
        .commit_files(
            "acme/web",
            "main",
            &[(&format!("{message}.txt"), message.as_bytes())],
            message,
        )
        .unwrap()
}

/// Delivers a push of `sha` to `acme/web` `main` and returns the build it queued.
pub(crate) async fn push(app: &TestApp, delivery: &str, sha: &str) -> i64 {
    let answer = app
        .webhook(
            "push",
            delivery,
            &push_payload("acme/web", "refs/heads/main", sha),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    answer.body["builds"][0]
        .as_i64()
        .expect("a build was queued")
}

/// Waits until `check` gives a value, failing with `what` after the deadline.
pub(crate) async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < DEADLINE, "{what} within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The deployment GitHub has for build `id`, once it has one.
async fn deployment_of(app: &TestApp, id: i64) -> Value {
    let github = standin(app);
    wait_for(&format!("a deployment of build #{id}"), || {
        github
            .deployments()
            .into_iter()
            .find(|deployment| deployment["payload"]["wharf_build"] == id)
    })
    .await
}

fn states(github: &GithubStandin, deployment: &Value) -> Vec<String> {
    github
        .deployment_statuses(deployment["id"].as_u64().unwrap())
        .iter()
        .map(|status| status["state"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the deployment's statuses are exactly `expected`, and returns them.
async fn wait_for_states(app: &TestApp, deployment: &Value, expected: &[&str]) -> Vec<Value> {
    let github = standin(app);
    let id = deployment["id"].as_u64().unwrap();
    wait_for(
        &format!(
            "deployment {id} reaching {expected:?} (has {:?})",
            states(github, deployment)
        ),
        || (states(github, deployment) == expected).then(|| github.deployment_statuses(id)),
    )
    .await
}

pub(crate) fn assert_no_violations(app: &TestApp) {
    let violations = standin(app).schema_violations();
    assert!(violations.is_empty(), "{violations:#?}");
}

pub(crate) async fn claim(app: &TestApp, agent: &str, id: i64) {
    let claim = app
        .post_as(agent, "/v1/agent/claim", json!({"wait_ms": 2000}))
        .await;
    assert_eq!(claim.status, StatusCode::OK, "{}", claim.text);
    assert_eq!(claim.body["job"]["build"]["id"], id, "{}", claim.text);
}

pub(crate) async fn report(app: &TestApp, agent: &str, id: i64, body: Value) {
    let answer = app
        .post_as(agent, &format!("/v1/agent/builds/{id}/state"), body)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

async fn metric(app: &TestApp, name: &str) -> u64 {
    let metrics = app.get("/metrics").await.text;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

#[tokio::test]
async fn a_pushed_build_gets_one_deployment_whose_statuses_follow_it() {
    let (app, sha) = app_with_service().await;
    let github = standin(&app);
    let id = push(&app, "d-1", &sha).await;

    let deployment = deployment_of(&app, id).await;
    assert_eq!(deployment["ref"], sha);
    assert_eq!(deployment["sha"], sha);
    assert_eq!(deployment["environment"], "production");
    assert_eq!(deployment["production_environment"], true);
    assert_eq!(deployment["transient_environment"], false);
    assert_eq!(deployment["task"], "deploy");
    assert_eq!(deployment["payload"], json!({"wharf_build": id}));
    assert_eq!(
        deployment["description"],
        format!("Wharf build #{id} of web")
    );
    let created = github
        .requests()
        .into_iter()
        .find(|request| request.method == "POST" && request.path == "/repos/acme/web/deployments")
        .unwrap();
    assert_eq!(created.body.as_ref().unwrap()["auto_merge"], false);
    assert_eq!(
        created.body.as_ref().unwrap()["required_contexts"],
        json!([])
    );
    assert_eq!(created.auth, "token");
    let queued = wait_for_states(&app, &deployment, &["queued"]).await;
    let log_url = format!("{}/builds/{id}", app.url);
    assert_eq!(queued[0]["log_url"], log_url);
    assert_eq!(
        queued[0]["description"],
        "Queued: waiting for an agent to build it"
    );

    // An agent claims the build through the agent API: in progress.
    let agent = app.create_agent("builder").await;
    claim(&app, &agent, id).await;
    wait_for_states(&app, &deployment, &["queued", "in_progress"]).await;

    // The build fails with a reason far longer than GitHub takes.
    let reason = format!("step build failed: {}", "exit status 1; ".repeat(40));
    report(
        &app,
        &agent,
        id,
        json!({"state": "failed", "reason": reason}),
    )
    .await;
    let statuses = wait_for_states(&app, &deployment, &["queued", "in_progress", "failure"]).await;
    let description = statuses[2]["description"].as_str().unwrap();
    assert_eq!(description.chars().count(), 140, "{description}");
    assert!(
        description.starts_with("Build failed: step build failed: exit status 1;"),
        "{description}"
    );
    assert!(description.ends_with('…'), "{description}");
    for status in &statuses {
        assert_eq!(status["log_url"], log_url);
        assert_eq!(status["environment_url"], "");
    }
    assert_eq!(github.deployments().len(), 1, "exactly one deployment");
    assert_no_violations(&app);
}

#[tokio::test]
async fn a_superseded_pending_build_becomes_inactive() {
    let (app, first_sha) = app_with_service().await;
    let first = push(&app, "d-1", &first_sha).await;
    let first_deployment = deployment_of(&app, first).await;
    wait_for_states(&app, &first_deployment, &["queued"]).await;

    let second_sha = commit(&app, "second");
    let second = push(&app, "d-2", &second_sha).await;
    let superseded = app.build(first).await;
    assert_eq!(superseded["state"], "cancelled");
    let statuses = wait_for_states(&app, &first_deployment, &["queued", "inactive"]).await;
    assert_eq!(
        statuses[1]["description"],
        format!("Superseded by build #{second}")
    );
    let second_deployment = deployment_of(&app, second).await;
    assert_eq!(second_deployment["sha"], second_sha);
    wait_for_states(&app, &second_deployment, &["queued"]).await;
    assert_eq!(standin(&app).deployments().len(), 2);
    assert_no_violations(&app);
}

#[tokio::test]
async fn a_failing_github_delays_statuses_but_holds_up_nothing_and_loses_nothing() {
    let (app, sha) = app_with_service().await;
    let github = standin(&app);
    // GitHub fails every deployment request until told otherwise.
    github.fail_next("/repos/acme/web/deployments", 503, 100_000);
    let id = push(&app, "d-1", &sha).await;
    wait_for("the reporter trying GitHub and failing", || {
        github
            .requests()
            .iter()
            .any(|request| request.path == "/repos/acme/web/deployments" && request.status == 503)
            .then_some(())
    })
    .await;
    // The build goes on meanwhile: claimed and finished.
    let agent = app.create_agent("builder").await;
    claim(&app, &agent, id).await;
    report(
        &app,
        &agent,
        id,
        json!({"state": "failed", "reason": "no Dockerfile"}),
    )
    .await;
    assert_eq!(app.build(id).await["state"], "failed");
    assert!(github.deployments().is_empty());
    assert!(
        metric(
            &app,
            "wharf_github_report_failures_total{outcome=\"retrying\"}"
        )
        .await
            >= 1
    );

    // GitHub comes back: every status arrives, in order, once.
    github.stop_failing();
    let deployment = deployment_of(&app, id).await;
    let statuses = wait_for_states(&app, &deployment, &["queued", "in_progress", "failure"]).await;
    assert_eq!(statuses[2]["description"], "Build failed: no Dockerfile");
    assert_eq!(github.deployments().len(), 1);
    assert_eq!(
        metric(
            &app,
            "wharf_github_report_failures_total{outcome=\"gave_up\"}"
        )
        .await,
        0
    );
    assert_no_violations(&app);
}

#[tokio::test]
async fn a_deployment_made_by_a_pass_that_failed_to_record_it_is_found_not_made_twice() {
    let (app, sha) = app_with_service().await;
    let github = standin(&app);
    // A pass made the deployment of the first build and died before storing its id: here the
    // deployment is made beforehand, and the first pass's request fails.
    let client = app_client(&app);
    let made = client
        .create_deployment(
            42,
            "acme",
            "web",
            &NewDeployment {
                payload: json!({"wharf_build": 1}),
                ..NewDeployment::new(&sha, "production", true)
            },
        )
        .await
        .unwrap();
    github.fail_next("/repos/acme/web/deployments", 502, 1);
    let id = push(&app, "d-1", &sha).await;
    assert_eq!(id, 1, "the first build of a fresh database");

    let statuses = wait_for_states(&app, &json!({"id": made.id}), &["queued"]).await;
    assert_eq!(statuses[0]["log_url"], format!("{}/builds/{id}", app.url));
    assert_eq!(github.deployments().len(), 1, "no second deployment");
    let looked_up = github.requests().iter().any(|request| {
        request.method == "GET"
            && request.path == "/repos/acme/web/deployments"
            && request
                .query
                .as_deref()
                .is_some_and(|query| query.contains(&sha))
    });
    assert!(looked_up, "the second pass looked for the deployment first");
    assert_eq!(
        app.store.github_report(id).await.unwrap().deployment_id,
        Some(made.id as i64)
    );
    assert_no_violations(&app);
}

#[tokio::test]
async fn rate_limits_and_server_errors_on_statuses_are_waited_out() {
    let (app, sha) = app_with_service().await;
    let github = standin(&app);
    let id = push(&app, "d-1", &sha).await;
    let deployment = deployment_of(&app, id).await;
    wait_for_states(&app, &deployment, &["queued"]).await;
    let statuses_path = format!(
        "/repos/acme/web/deployments/{}/statuses",
        deployment["id"].as_u64().unwrap()
    );
    // A rate limit (403, x-ratelimit-remaining 0, reset a second ahead), then two 500s.
    github.fail_next(&statuses_path, 403, 1);
    github.fail_next(&statuses_path, 500, 2);
    let agent = app.create_agent("builder").await;
    claim(&app, &agent, id).await;
    report(&app, &agent, id, json!({"state": "cloning"})).await;
    wait_for_states(&app, &deployment, &["queued", "in_progress"]).await;
    let refused: Vec<u16> = github
        .requests()
        .iter()
        .filter(|request| request.path == statuses_path && request.status >= 400)
        .map(|request| request.status)
        .collect();
    assert_eq!(refused, [403, 500, 500]);
    assert!(
        metric(
            &app,
            "wharf_github_report_failures_total{outcome=\"retrying\"}"
        )
        .await
            >= 3
    );
    assert_no_violations(&app);
}

#[tokio::test]
async fn a_live_release_is_a_success_with_the_service_address_and_a_replaced_one_inactive() {
    let (app, sha) = app_with_service().await;
    // The agent `local` is where the service's releases go by default; it builds and rolls
    // out here through the agent API, as a real agent would.
    let agent = app.create_agent("local").await;
    let id = push(&app, "d-1", &sha).await;
    let deployment = deployment_of(&app, id).await;
    build_and_go_live(&app, &agent, id).await;
    let statuses = wait_for_states(&app, &deployment, &["queued", "in_progress", "success"]).await;
    assert_eq!(statuses[2]["environment_url"], "http://web.example.com");
    assert_eq!(statuses[2]["description"], "Live");
    assert_eq!(statuses[2]["log_url"], format!("{}/builds/{id}", app.url));

    // A newer push goes live on the same host: the first release is replaced.
    let next = push(&app, "d-2", &commit(&app, "second")).await;
    build_and_go_live(&app, &agent, next).await;
    let statuses = wait_for_states(
        &app,
        &deployment,
        &["queued", "in_progress", "success", "inactive"],
    )
    .await;
    assert_eq!(statuses[3]["description"], "Replaced by a newer release");
    assert_no_violations(&app);
}

/// Claims build `id`, completes it, then claims the rollout its release gives this agent and
/// reports it live.
pub(crate) async fn build_and_go_live(app: &TestApp, agent: &str, id: i64) {
    claim(app, agent, id).await;
    let commit = app.build(id).await["commit_sha"]
        .as_str()
        .unwrap()
        .to_owned();
    report(
        app,
        agent,
        id,
        json!({"state": "completed", "image": format!("registry.test/default/web:{commit}"),
               "digest": format!("sha256:{}", "0".repeat(64))}),
    )
    .await;
    app.roll_out_live(agent).await;
}

#[tokio::test]
async fn builds_of_a_public_url_get_no_deployment() {
    let (app, sha) = app_with_service().await;
    let public = app
        .post(
            "/v1/services",
            json!({"name": "site", "repo": "https://git.example.com/acme/site", "branch": "main"}),
        )
        .await;
    assert_eq!(public.status, StatusCode::CREATED, "{}", public.text);
    let public_build = app
        .post("/v1/services/site/builds", json!({"ref": sha}))
        .await;
    assert_eq!(
        public_build.status,
        StatusCode::CREATED,
        "{}",
        public_build.text
    );
    let public_id = public_build.body["id"].as_i64().unwrap();
    // A build of the GitHub service queued after it is reported; the public one never is.
    let id = push(&app, "d-1", &sha).await;
    let deployment = deployment_of(&app, id).await;
    wait_for_states(&app, &deployment, &["queued"]).await;
    let deployments = standin(&app).deployments();
    assert_eq!(deployments.len(), 1, "{deployments:#?}");
    assert_ne!(deployments[0]["payload"]["wharf_build"], public_id);
    let report = app.store.github_report(public_id).await.unwrap();
    assert!(!report.reported);
    assert_eq!(report.deployment_id, None);
    assert_no_violations(&app);
}

/// The built-in `github` sink as `GET /v1/notifications` lists it.
async fn github_sink(app: &TestApp) -> Value {
    let listed = app.get("/v1/notifications").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|sink| sink["name"] == "github")
        .cloned()
        .unwrap_or_else(|| panic!("no github sink in {}", listed.text))
}

#[tokio::test]
async fn a_deployment_github_refuses_is_a_dead_letter_of_the_github_sink_until_retried() {
    let (app, sha) = app_with_service().await;
    let github = standin(&app);
    let sink = github_sink(&app).await;
    assert_eq!(sink["kind"], "github", "{sink}");
    assert_eq!(sink["events"], json!(["deployment"]), "{sink}");
    assert_eq!(
        (sink["pending"].as_i64(), sink["dead"].as_i64()),
        (Some(0), Some(0))
    );

    // GitHub refuses the build's deployment with an answer another try would not change.
    github.fail_next("/repos/acme/web/deployments", 422, 1);
    let id = push(&app, "d-1", &sha).await;
    wait_until(
        "the refused build counted as a dead letter",
        DEADLINE,
        || async { github_sink(&app).await["dead"] == 1 },
    )
    .await;
    let failed = app
        .get("/v1/notifications/github/deliveries?failed=true")
        .await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.text);
    let letters = failed.body.as_array().unwrap();
    assert_eq!(letters.len(), 1, "{}", failed.text);
    assert_eq!(letters[0]["id"], id);
    assert_eq!(letters[0]["event"], "deployment");
    assert_eq!(letters[0]["service"], "web");
    assert_eq!(letters[0]["state"], "dead");
    assert_eq!(letters[0]["message_id"], "", "GitHub made no deployment");
    let error = letters[0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("422"), "{}", failed.text);
    assert!(github.deployments().is_empty());
    let (ok, shown) =
        crate::notifications::wharf(&app, &["notify", "deliveries", "github", "--failed"], "")
            .await;
    assert!(ok, "{shown}");
    assert!(
        shown.contains(&format!("{id}")) && shown.contains("deployment") && shown.contains("dead"),
        "{shown}"
    );

    // The sink is GitHub's: it cannot be removed, tested, added again or asked for by another.
    let (ok, removed) =
        crate::notifications::wharf(&app, &["notify", "remove", "github"], "").await;
    assert!(!ok && removed.contains("built-in"), "{removed}");
    let tested = app.post("/v1/notifications/github/test", json!({})).await;
    assert_eq!(tested.status, StatusCode::CONFLICT, "{}", tested.text);
    let impostor = app
        .post(
            "/v1/notifications",
            json!({"name": "github", "kind": "webhook", "url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(impostor.status, StatusCode::CONFLICT, "{}", impostor.text);
    let greedy = app
        .post(
            "/v1/notifications",
            json!({"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/hook",
                   "events": ["deployment"]}),
        )
        .await;
    assert_eq!(greedy.status, StatusCode::BAD_REQUEST, "{}", greedy.text);

    // Once the cause is fixed, a retry reports the build from its start, once.
    let retried = app.post("/v1/notifications/github/retry", json!({})).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text);
    assert_eq!(retried.body["retried"], 1, "{}", retried.text);
    let deployment = deployment_of(&app, id).await;
    wait_for_states(&app, &deployment, &["queued"]).await;
    wait_until(
        "the github sink with nothing pending or dead",
        DEADLINE,
        || async {
            let sink = github_sink(&app).await;
            sink["pending"] == 0 && sink["dead"] == 0
        },
    )
    .await;
    let all = app.get("/v1/notifications/github/deliveries").await;
    let messages = all.body.as_array().unwrap();
    assert_eq!(messages.len(), 1, "{}", all.text);
    assert_eq!(messages[0]["state"], "delivered", "{}", all.text);
    assert_eq!(messages[0]["disposition"], "queued", "{}", all.text);
    assert_eq!(messages[0]["message_id"], deployment["id"].to_string());
    assert_eq!(github.deployments().len(), 1);
    assert_no_violations(&app);
}
