//! The `wharf` binary as users run it: CLI verbs against a running server, `--json` output,
//! one-line errors with a non-zero exit; and service validation through the API.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, CliRun, TestApp, run_cli, sha, spawn_app};

type Run = CliRun;

async fn wharf(app: &TestApp, args: &[&str]) -> Run {
    wharf_with_token(app, Some(ADMIN_TOKEN), args).await
}

async fn wharf_with_token(app: &TestApp, token: Option<&str>, args: &[&str]) -> Run {
    run_cli(app, token, args, b"", None).await
}

#[tokio::test]
async fn services_and_builds_through_the_cli() {
    let app = spawn_app().await;
    let created = wharf(
        &app,
        &[
            "service",
            "create",
            "web",
            "--repo",
            "https://git.example.com/acme/web",
            "--branch",
            "main",
            "--port",
            "8080",
            "--health-path",
            "/healthz",
            "--domain",
            "web.example.com",
            "--dockerfile",
            "docker/Dockerfile",
            "--context",
            "docker",
            "--project",
            "shop",
        ],
    )
    .await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    assert!(
        created.stdout.contains("Created service web"),
        "{}",
        created.stdout
    );

    let listed = wharf(&app, &["service", "list", "--json"]).await;
    let services: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(services[0]["name"], "web");
    assert_eq!(services[0]["project"], "shop");
    assert_eq!(services[0]["port"], 8080);
    assert_eq!(services[0]["domain"], "web.example.com");
    let table = wharf(&app, &["service", "list"]).await;
    assert!(table.stdout.starts_with("NAME"), "{}", table.stdout);

    let triggered = wharf(
        &app,
        &["build", "trigger", "web", "--ref", &sha('a'), "--json"],
    )
    .await;
    assert_eq!(triggered.code, 0, "{}", triggered.stderr);
    let build: Value = serde_json::from_str(&triggered.stdout).unwrap();
    let id = build["id"].as_i64().unwrap().to_string();
    assert_eq!(build["state"], "pending");

    let shown = wharf(&app, &["build", "show", &id]).await;
    assert!(shown.stdout.contains(&sha('a')), "{}", shown.stdout);
    assert!(shown.stdout.contains("pending"));

    let cancelled = wharf(&app, &["build", "cancel", &id, "--json"]).await;
    let cancelled: Value = serde_json::from_str(&cancelled.stdout).unwrap();
    assert_eq!(cancelled["state"], "cancelled");

    let retried = wharf(&app, &["build", "retry", &id, "--json"]).await;
    let retried: Value = serde_json::from_str(&retried.stdout).unwrap();
    assert_eq!(retried["retry_of"].to_string(), id);

    let builds = wharf(&app, &["builds", "--service", "web", "--json"]).await;
    let builds: Value = serde_json::from_str(&builds.stdout).unwrap();
    assert_eq!(builds.as_array().unwrap().len(), 2);
    let table = wharf(&app, &["builds"]).await;
    assert!(table.stdout.lines().count() == 3, "{}", table.stdout);

    let agent = wharf(&app, &["agents", "create", "edge-1", "--json"]).await;
    let agent: Value = serde_json::from_str(&agent.stdout).unwrap();
    assert!(agent["token"].as_str().unwrap().starts_with("wharf_agent_"));
    let agents = wharf(&app, &["agents", "list", "--json"]).await;
    let agents: Value = serde_json::from_str(&agents.stdout).unwrap();
    assert_eq!(agents[0]["name"], "edge-1");
    assert!(agents[0].get("token").is_none());
}

#[tokio::test]
async fn agents_are_issued_with_a_scope_listed_and_revoked_through_the_cli() {
    let app = spawn_app().await;
    let created = wharf(
        &app,
        &[
            "agents",
            "create",
            "edge-eu",
            "--labels",
            "deploy,eu",
            "--project",
            "shop",
            "--service",
            "blog",
            "--json",
        ],
    )
    .await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    let created: Value = serde_json::from_str(&created.stdout).unwrap();
    assert_eq!(created["agent"]["allowed_labels"], json!(["deploy", "eu"]));
    assert_eq!(created["agent"]["projects"], json!(["shop"]));
    assert_eq!(created["agent"]["services"], json!(["blog"]));
    let plain = wharf(&app, &["agents", "create", "builder"]).await;
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert!(
        plain
            .stdout
            .contains("allows the labels build,deploy for any service"),
        "{}",
        plain.stdout
    );

    let revoked = wharf(&app, &["agents", "revoke", "edge-eu"]).await;
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    assert_eq!(
        revoked.stdout,
        "Revoked agent edge-eu: its token no longer works.\n"
    );
    let table = wharf(&app, &["agents", "list"]).await;
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].contains("ALLOWED") && lines[0].contains("REVOKED"),
        "{}",
        table.stdout
    );
    let builder = lines
        .iter()
        .find(|line| line.starts_with("builder"))
        .unwrap();
    assert!(
        builder.contains("build,deploy") && builder.trim_end().ends_with('-'),
        "{builder}"
    );
    let edge = lines
        .iter()
        .find(|line| line.starts_with("edge-eu"))
        .unwrap();
    assert!(edge.contains("project:shop,service:blog"), "{edge}");
    assert!(!edge.trim_end().ends_with('-'), "revoked: {edge}");

    let missing = wharf(&app, &["agents", "revoke", "nobody"]).await;
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("nobody"), "{}", missing.stderr);
}

#[tokio::test]
async fn a_service_changes_through_the_cli_and_keeps_its_name_and_project() {
    let app = spawn_app().await;
    let created = wharf(
        &app,
        &[
            "service",
            "create",
            "web",
            "--repo",
            "https://git.example.com/acme/web",
            "--branch",
            "main",
            "--port",
            "8080",
            "--domain",
            "web.example.com",
            "--host",
            "edge-a",
            "--health-retries",
            "3",
            "--compose-allow",
            "privileged",
            "--project",
            "shop",
        ],
    )
    .await;
    assert_eq!(created.code, 0, "{}", created.stderr);

    // Given flags change; the rest stays; an empty value clears.
    let changed = wharf(
        &app,
        &[
            "service",
            "update",
            "web",
            "--branch",
            "release",
            "--domain",
            "",
            "--host",
            "label:eu,edge-b",
            "--health-deadline-ms",
            "45000",
            "--no-auto-deploy",
            "--compose-allow",
            "",
            "--json",
        ],
    )
    .await;
    assert_eq!(changed.code, 0, "{}", changed.stderr);
    let service: Value = serde_json::from_str(&changed.stdout).unwrap();
    assert_eq!(service["branch"], "release");
    assert_eq!(service["domain"], Value::Null);
    assert_eq!(service["port"], 8080);
    assert_eq!(service["project"], "shop");
    assert_eq!(service["repo"], "https://git.example.com/acme/web");
    let deploy = &service["deploy"];
    assert_eq!(deploy["hosts"], json!(["label:eu", "edge-b"]));
    assert_eq!(deploy["health"]["deadline_ms"], 45000);
    assert_eq!(deploy["health"]["retries"], 3, "kept: {deploy}");
    assert_eq!(deploy["auto_deploy"], false);
    assert_eq!(deploy["compose_allow"], json!([]));
    assert_eq!(app.get("/v1/services/web").await.body, service);
    let shown = wharf(&app, &["service", "show", "web"]).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    for line in [
        "Service web (project shop)",
        "branch release",
        "host names   -",
        "on label:eu, edge-b",
        "auto-deploy off",
        "healthy within 45000 ms",
    ] {
        assert!(shown.stdout.contains(line), "{line:?} in {}", shown.stdout);
    }
    let back_on = wharf(
        &app,
        &["service", "update", "web", "--auto-deploy", "--json"],
    )
    .await;
    assert_eq!(back_on.code, 0, "{}", back_on.stderr);
    let service: Value = serde_json::from_str(&back_on.stdout).unwrap();
    assert_eq!(service["deploy"]["auto_deploy"], true);
    assert_eq!(service["branch"], "release");

    // A setting that would be refused at creation is refused here, and nothing changes.
    for (args, says) in [
        (
            &["--replicas", "0"][..],
            "replicas must be between 1 and 32",
        ),
        (&["--alias", "not a host"][..], "not a host"),
        (
            &["--compose", "compose.yml", "--replicas", "2"][..],
            "a compose stack runs one container per compose service",
        ),
    ] {
        let mut command = vec!["service", "update", "web"];
        command.extend_from_slice(args);
        let refused = wharf(&app, &command).await;
        assert_ne!(refused.code, 0);
        assert!(
            refused.stderr.contains(says),
            "{args:?}: {}",
            refused.stderr
        );
        assert_eq!(app.get("/v1/services/web").await.body, service);
    }
    // The name and the project are part of the images' names.
    let mut renamed = service.clone();
    renamed["name"] = json!("shop-web");
    let answer = app.put("/v1/services/web", renamed).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    assert!(answer.text.contains("cannot be renamed"), "{}", answer.text);
    let mut moved = service.clone();
    moved["project"] = json!("other");
    let answer = app.put("/v1/services/web", moved).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    assert!(answer.text.contains("cannot move"), "{}", answer.text);
    let missing = wharf(&app, &["service", "update", "nope", "--branch", "x"]).await;
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("no service named nope"),
        "{}",
        missing.stderr
    );
}

#[tokio::test]
async fn cli_errors_are_one_line_and_exit_non_zero() {
    let app = spawn_app().await;
    let cases: Vec<(Option<&str>, Vec<&str>, &str)> = vec![
        (
            Some(ADMIN_TOKEN),
            vec![
                "service", "create", "Web", "--repo", "acme/web", "--branch", "main",
            ],
            "invalid service name",
        ),
        (
            Some(ADMIN_TOKEN),
            vec![
                "service", "create", "web", "--repo", "acme", "--branch", "main",
            ],
            "invalid repository",
        ),
        (
            Some(ADMIN_TOKEN),
            vec!["build", "show", "12345"],
            "no build #12345",
        ),
        (
            Some(ADMIN_TOKEN),
            vec!["build", "trigger", "nope"],
            "no service named nope",
        ),
        (Some("wrong"), vec!["builds"], "invalid token"),
        (None, vec!["builds"], "WHARF_TOKEN"),
    ];
    for (token, args, expected) in cases {
        let run = wharf_with_token(&app, token, &args).await;
        assert_ne!(run.code, 0, "{args:?}");
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn service_fields_are_validated() {
    let app = spawn_app().await;
    let base = json!({"name": "web", "repo": "acme/web", "branch": "main"});
    let cases = [
        ("name", json!("web_1")),
        ("name", json!("-web")),
        ("name", json!("a".repeat(64))),
        ("repo", json!("acme/web/x")),
        ("repo", json!("http://insecure.example.com/acme/web")),
        ("repo", json!("https://user:secret@github.com/acme/web")),
        ("branch", json!("main;reboot")),
        ("branch", json!("a..b")),
        ("branch", json!("x".repeat(5000))),
        ("dockerfile", json!("../../etc/passwd")),
        ("dockerfile", json!("/etc/passwd")),
        ("context", json!("a/../../b")),
        ("compose", json!("/abs/compose.yml")),
        ("health_path", json!("healthz")),
        ("domain", json!("Web.Example.com")),
        ("port", json!(0)),
        ("port", json!(70000)),
        ("port", json!("80")),
        ("project", json!("My Project")),
    ];
    for (field, value) in cases {
        let mut body = base.clone();
        body[field] = value.clone();
        let answer = app.post("/v1/services", body).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{field}={value}: {}",
            answer.text
        );
    }
    assert_eq!(app.get("/v1/services").await.body, json!([]));
    let created = app.post("/v1/services", base.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let duplicate = app.post("/v1/services", base).await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    assert_eq!(app.get("/v1/services/web").await.body["name"], "web");
    assert_eq!(
        app.get("/v1/services/nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v1/builds?service=nope").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn health_and_metrics() {
    let app = spawn_app().await;
    app.create_service("web", "acme/web", "main").await;
    app.webhook(
        "push",
        "d-1",
        &crate::helpers::push_payload("acme/web", "refs/heads/main", &sha('a')),
    )
    .await;
    app.webhook(
        "push",
        "d-1",
        &crate::helpers::push_payload("acme/web", "refs/heads/main", &sha('a')),
    )
    .await;
    app.webhook_with(Some("push"), Some("d-2"), Some("sha256=00"), b"{}")
        .await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");
    let metrics = app.get("/metrics").await.text;
    for line in [
        "wharf_webhook_deliveries_total{event=\"push\",outcome=\"accepted\"} 1",
        "wharf_webhook_deliveries_total{event=\"push\",outcome=\"duplicate\"} 1",
        "wharf_webhook_deliveries_total{event=\"unknown\",outcome=\"bad_signature\"} 1",
        "wharf_queue_depth 1",
        "wharf_builds{state=\"pending\"} 1",
        "wharf_claim_latency_seconds_count 0",
    ] {
        assert!(
            metrics.lines().any(|candidate| candidate == line),
            "missing {line}:\n{metrics}"
        );
    }
    // The REST API needs the token.
    let anonymous = app
        .http
        .get(format!("{}/v1/services", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// Runs the real `wharf` binary with `input` on its standard input.
async fn wharf_with_input(app: &TestApp, args: &[&str], input: &[u8]) -> Run {
    run_cli(app, Some(ADMIN_TOKEN), args, input, None).await
}

#[tokio::test]
async fn registry_login_reads_the_password_from_standard_input() {
    let app = spawn_app().await;
    let run = wharf_with_input(
        &app,
        &["registry-login", "42", "--username", "acme-builds"],
        b"from-stdin-secret\n",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "Builds of installation 42 push as acme-builds\n"
    );
    let (username, sealed) = app.store.registry_credentials(42).await.unwrap().unwrap();
    assert_eq!(username, "acme-builds");
    assert!(!sealed.contains("from-stdin-secret"));
}

#[tokio::test]
async fn a_variable_named_alone_takes_its_value_from_standard_input() {
    let app = spawn_app().await;
    app.create_service("web", "acme/web", "main").await;
    // A value of several lines (a key, say) keeps them; one final line ending goes.
    let plain = wharf_with_input(&app, &["env", "set", "web", "GREETING"], b"hello\nworld\n").await;
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    let secret = wharf_with_input(
        &app,
        &["env", "set", "web", "API_KEY", "--secret"],
        b"stdin-secret-8086\n",
    )
    .await;
    assert_eq!(secret.code, 0, "{}", secret.stderr);
    assert!(
        !secret.stdout.contains("stdin-secret-8086"),
        "{}",
        secret.stdout
    );

    let listed = wharf(&app, &["env", "list", "web", "--json"]).await;
    let variables: Value = serde_json::from_str(&listed.stdout).unwrap();
    let named = |name: &str| {
        variables
            .as_array()
            .unwrap()
            .iter()
            .find(|variable| variable["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {variables}"))
    };
    assert_eq!(named("GREETING")["value"], "hello\nworld");
    assert_eq!(named("API_KEY")["secret"], true);
    assert!(!listed.stdout.contains("stdin-secret-8086"));
}

/// A GitHub that accepts connections and never answers, as a blackholed route looks.
async fn silent_github() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            held.push(connection);
        }
    });
    url
}

/// Runs `wharf doctor` against `app`, with `env` besides `PATH` and `WHARF_SERVER`.
async fn doctor(app: &TestApp, env: &[(&str, &str)]) -> (Run, std::time::Duration) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
    command
        .arg("doctor")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WHARF_SERVER", &app.url);
    for (key, value) in env {
        command.env(key, value);
    }
    let started = std::time::Instant::now();
    let output = command.output().await.expect("wharf doctor runs");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    (run, started.elapsed())
}

/// The line of `check` in the doctor's report.
fn doctor_line<'a>(run: &'a Run, check: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|line| line.get(5..).is_some_and(|rest| rest.starts_with(check)))
        .unwrap_or_else(|| panic!("no {check} line in:\n{}", run.stdout))
}

#[tokio::test]
async fn doctor_checks_this_host_one_line_each_and_fails_on_what_must_be_fixed() {
    let app = spawn_app().await;
    let github = silent_github().await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let base = [
        ("WHARF_DATA_DIR", data_dir.as_str()),
        ("WHARF_GITHUB_API_URL", github.as_str()),
    ];

    // This machine is set up for Wharf (scripts/setup.sh): every required check passes, and a
    // GitHub that never answers is a warning given up on within seconds.
    let (run, took) = doctor(&app, &base).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for check in [
        "runtime",
        "podman config",
        "caddy",
        "registry",
        "server",
        "data disk",
    ] {
        assert!(
            doctor_line(&run, check).starts_with("ok "),
            "{}",
            run.stdout
        );
    }
    assert!(
        doctor_line(&run, "database").contains("no database yet"),
        "{}",
        run.stdout
    );
    assert!(
        doctor_line(&run, "clock")
            .starts_with(&format!("ok   clock         in step with {}", app.url)),
        "{}",
        run.stdout
    );
    let github_line = doctor_line(&run, "github");
    assert!(github_line.starts_with("warn "), "{}", run.stdout);
    assert!(
        github_line.contains("no answer within 5 s"),
        "{}",
        run.stdout
    );
    // Far sooner than the minutes a connection to a silent address can hang without a deadline.
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
    assert!(
        run.stdout.trim_end().ends_with("this host can run Wharf."),
        "{}",
        run.stdout
    );

    // A database that cannot be reached fails its check, says what to fix, and exits with 1.
    let mut broken = base.to_vec();
    broken.push((
        "WHARF_DATABASE_URL",
        "postgres://wharf:pw@127.0.0.1:1/wharf",
    ));
    let (run, _) = doctor(&app, &broken).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    let database = doctor_line(&run, "database");
    assert!(database.starts_with("FAIL "), "{}", run.stdout);
    assert!(
        database.contains("check WHARF_DATABASE_URL"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(":pw@"), "{}", run.stdout);
    assert_eq!(run.stderr, "error: 1 check failed\n");
}
