//! Running Wharf as an operator does: `wharf backup` of a running server's SQLite database,
//! `wharf restore` into an empty data directory and a real `wharf server` started on it (with
//! the kept key, and refused without it), PostgreSQL sent to its own tools, and the systemd
//! units checked by `systemd-analyze verify`.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{ADMIN_TOKEN, ServerProcess, sha, start_wharf_server};

/// A finished run of the `wharf` binary.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `wharf ARGS` with `PATH` and `env` alone.
async fn wharf(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().await.expect("wharf runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Sends one request to a server process and reads the answer as JSON.
async fn call(
    server: &ServerProcess,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method.clone(), format!("{}{path}", server.url))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn post(server: &ServerProcess, token: &str, path: &str, body: Value) -> Value {
    let (status, answer) = call(server, reqwest::Method::POST, token, path, Some(body)).await;
    assert!(status.is_success(), "POST {path}: {status} {answer}");
    answer
}

async fn get(server: &ServerProcess, path: &str) -> Value {
    let (status, answer) = call(server, reqwest::Method::GET, ADMIN_TOKEN, path, None).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {answer}");
    answer
}

fn data_dir_env(dir: &Path) -> String {
    dir.display().to_string()
}

/// Long leases, so that the agent registered before the backup is not taken for silent when
/// the restored server starts.
const LEASE_SECONDS: &str = "600";

#[tokio::test]
async fn a_backup_restored_with_its_key_gives_back_services_releases_and_sealed_variables() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let original_env = data_dir_env(&original);
    let server = start_wharf_server(&[
        ("WHARF_DATA_DIR", &original_env),
        ("WHARF_LEASE_SECONDS", LEASE_SECONDS),
    ])
    .await;
    post(
        &server,
        ADMIN_TOKEN,
        "/v1/services",
        json!({"name": "web", "repo": "https://git.example.com/acme/web", "branch": "main", "port": 8080}),
    )
    .await;
    post(
        &server,
        ADMIN_TOKEN,
        "/v1/services/web/env",
        json!({"name": "API_KEY", "value": "runtime-s3cret", "secret": true}),
    )
    .await;
    post(
        &server,
        ADMIN_TOKEN,
        "/v1/services/web/env",
        json!({"name": "NPM_TOKEN", "value": "build-s3cret", "secret": true, "build": true}),
    )
    .await;
    let agent = post(&server, ADMIN_TOKEN, "/v1/agents", json!({"name": "local"})).await;
    let agent_token = agent["token"].as_str().unwrap().to_owned();
    post(
        &server,
        &agent_token,
        "/v1/agent/register",
        json!({"labels": ["build", "deploy"]}),
    )
    .await;
    let release = post(
        &server,
        ADMIN_TOKEN,
        "/v1/services/web/deploy",
        json!({"image": "registry.test/default/web:v1"}),
    )
    .await;
    let build = post(
        &server,
        ADMIN_TOKEN,
        "/v1/services/web/builds",
        json!({"ref": sha('a')}),
    )
    .await;

    // The backup is made while the server runs, and says the key is not in it.
    let backup = dir.path().join("wharf-backup.db");
    let backup_arg = backup.display().to_string();
    let backed_up = wharf(
        &["backup", &backup_arg],
        &[("WHARF_DATA_DIR", &original_env)],
    )
    .await;
    assert_eq!(backed_up.code, 0, "{}", backed_up.stderr);
    assert!(
        backed_up
            .stdout
            .contains("1 service, 1 release, 2 sealed values"),
        "{}",
        backed_up.stdout
    );
    assert!(
        backed_up
            .stdout
            .contains("The secret key is not in the backup"),
        "{}",
        backed_up.stdout
    );
    // What happens after the backup is not in it.
    post(
        &server,
        ADMIN_TOKEN,
        "/v1/services",
        json!({"name": "later", "repo": "https://git.example.com/acme/later", "branch": "main"}),
    )
    .await;

    // A data directory that holds anything is refused.
    let refused = wharf(
        &["restore", &backup_arg],
        &[("WHARF_DATA_DIR", &original_env)],
    )
    .await;
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("is not empty") && refused.stderr.contains("wharf.db"),
        "{}",
        refused.stderr
    );

    let restored = dir.path().join("restored");
    let restored_env = data_dir_env(&restored);
    let restore = wharf(
        &["restore", &backup_arg],
        &[("WHARF_DATA_DIR", &restored_env)],
    )
    .await;
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    let key_path = restored.join("secret.key");
    assert!(
        restore
            .stdout
            .contains(&format!("put the key you kept at {}", key_path.display())),
        "{}",
        restore.stdout
    );

    // Without the key the server refuses to start rather than make a new one.
    let keyless = wharf(
        &["server"],
        &[
            ("WHARF_DATA_DIR", &restored_env),
            ("WHARF_LISTEN", "127.0.0.1:0"),
            ("WHARF_TOKEN", ADMIN_TOKEN),
        ],
    )
    .await;
    assert_eq!(keyless.code, 1, "{}", keyless.stderr);
    assert!(
        keyless
            .stderr
            .contains("2 sealed value(s) but there is no secret key"),
        "{}",
        keyless.stderr
    );
    assert!(!key_path.exists(), "no new key was made");

    // With the key kept from the original, everything is back and the secrets open.
    std::fs::copy(original.join("secret.key"), &key_path).unwrap();
    drop(server);
    let server = start_wharf_server(&[
        ("WHARF_DATA_DIR", &restored_env),
        ("WHARF_LEASE_SECONDS", LEASE_SECONDS),
    ])
    .await;
    let services = get(&server, "/v1/services").await;
    let names: Vec<&str> = services
        .as_array()
        .unwrap()
        .iter()
        .map(|service| service["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web"]);
    let releases = get(&server, "/v1/services/web/releases").await;
    assert_eq!(releases[0]["id"], release["id"], "{releases}");
    let variables = get(&server, "/v1/services/web/env").await;
    assert_eq!(variables.as_array().unwrap().len(), 2, "{variables}");

    // The agent's token still works, and what it is handed carries the secrets, opened.
    let rollout = post(
        &server,
        &agent_token,
        "/v1/agent/rollouts/claim",
        json!({"wait_ms": 10_000}),
    )
    .await;
    assert_eq!(rollout["job"]["release_id"], release["id"], "{rollout}");
    assert_eq!(
        rollout["job"]["env"],
        json!([
            {"name": "API_KEY", "value": "runtime-s3cret", "secret": true},
            {"name": "NPM_TOKEN", "value": "build-s3cret", "secret": true}
        ]),
        "{rollout}"
    );
    let claimed = post(
        &server,
        &agent_token,
        "/v1/agent/claim",
        json!({"wait_ms": 10_000}),
    )
    .await;
    assert_eq!(claimed["job"]["build"]["id"], build["id"], "{claimed}");
    assert_eq!(
        claimed["job"]["build_secrets"],
        json!([{"name": "NPM_TOKEN", "value": "build-s3cret"}]),
        "{claimed}"
    );
}

#[tokio::test]
async fn postgres_is_backed_up_and_restored_with_its_own_tools() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = data_dir_env(&dir.path().join("data"));
    let env = [
        ("WHARF_DATA_DIR", data_dir.as_str()),
        (
            "WHARF_DATABASE_URL",
            "postgres://wharf:secret@127.0.0.1:5432/wharf",
        ),
    ];
    let backup = wharf(&["backup", "wharf.dump"], &env).await;
    assert_eq!(backup.code, 1);
    assert!(
        backup.stderr.contains("pg_dump --format=custom"),
        "{}",
        backup.stderr
    );
    assert!(!backup.stderr.contains("secret@"), "{}", backup.stderr);
    let restore = wharf(&["restore", "wharf.dump"], &env).await;
    assert_eq!(restore.code, 1);
    assert!(restore.stderr.contains("pg_restore"), "{}", restore.stderr);
}

#[tokio::test]
async fn a_backup_without_a_database_says_so_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = data_dir_env(&dir.path().join("empty"));
    let target = dir.path().join("backup.db");
    let run = wharf(
        &["backup", &target.display().to_string()],
        &[("WHARF_DATA_DIR", &data_dir)],
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no database at"), "{}", run.stderr);
    assert!(!target.exists());
}

/// The repository's systemd units, with `ExecStart` pointing at the binary under test (verify
/// checks that the program exists).
fn units_for_verify(into: &Path) -> Vec<PathBuf> {
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/systemd");
    ["wharf-server.service", "wharf-agent.service"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(contrib.join(name)).unwrap();
            assert!(text.contains("ExecStart=/usr/local/bin/wharf "), "{name}");
            let path = into.join(name);
            std::fs::write(
                &path,
                text.replace("/usr/local/bin/wharf", env!("CARGO_BIN_EXE_wharf")),
            )
            .unwrap();
            path
        })
        .collect()
}

/// `systemd-analyze verify FILES`: its exit code and what it said (it warns on stderr and
/// still exits 0, so both count).
async fn verify(units: &[PathBuf]) -> (i32, String) {
    let output = tokio::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(units)
        .output()
        .await
        .expect("systemd-analyze runs (Debian package systemd; scripts/test installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), said)
}

#[tokio::test]
async fn the_systemd_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let units = units_for_verify(dir.path());
    let (code, said) = verify(&units).await;
    assert_eq!(code, 0, "{said}");
    for unit in &units {
        let name = unit.file_name().unwrap().to_string_lossy();
        assert!(!said.contains(name.as_ref()), "{said}");
    }
    // The agent's unit leaves Caddy and the containers running when the agent stops.
    let agent = std::fs::read_to_string(&units[1]).unwrap();
    assert!(
        agent.lines().any(|line| line == "KillMode=process"),
        "{agent}"
    );

    // And verify does see mistakes: the same unit with a misspelt setting is named.
    let broken = dir.path().join("wharf-broken.service");
    std::fs::write(
        &broken,
        agent.replace("KillMode=process", "KillMode=proces"),
    )
    .unwrap();
    let (_, said) = verify(&[broken]).await;
    assert!(said.contains("wharf-broken.service"), "{said}");
}

/// `wharf up`, the README's first command: the server, an agent that builds and deploys, and
/// the admin token, in one process on a fresh data directory.
#[tokio::test]
async fn wharf_up_runs_the_server_and_a_local_agent_on_a_fresh_data_directory() {
    use std::os::unix::fs::PermissionsExt;

    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let edge = format!("127.0.0.1:{}", crate::parts::free_port());
    let admin = format!("127.0.0.1:{}", crate::parts::free_port());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("up")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WHARF_DATA_DIR", &data_dir)
        .env("WHARF_LISTEN", "127.0.0.1:0")
        .env("WHARF_EDGE_LISTEN", &edge)
        .env("WHARF_CADDY_ADMIN", &admin)
        // A registry named, so that the test does not take the local one's fixed port.
        .env("WHARF_REGISTRY", "registry.test")
        .env("WHARF_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // It says where the dashboard is, which is where the server answers.
    let mut said = BufReader::new(child.stderr.take().unwrap()).lines();
    let dashboard = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = said.next_line().await.unwrap() {
            if let Some(dashboard) = line.strip_prefix("Dashboard: ") {
                return dashboard.to_owned();
            }
        }
        panic!("wharf up exited before naming the dashboard");
    })
    .await
    .expect("wharf up names its dashboard within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = said.next_line().await {} });
    let url = dashboard
        .split_whitespace()
        .next()
        .and_then(|address| address.strip_suffix('/'))
        .unwrap_or_else(|| panic!("a dashboard address: {dashboard}"))
        .to_owned();
    let sign_in = reqwest::get(format!("{url}/login")).await.unwrap();
    assert_eq!(sign_in.status(), StatusCode::OK);

    // The admin token is made, kept readable by its owner only, and long enough.
    let token_file = data_dir.join("admin-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.trim();
    assert!(
        token.len() >= 32,
        "a short admin token: {} characters",
        token.len()
    );
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The local agent registers to build and deploy.
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let agent = loop {
        let agents: Value = http
            .get(format!("{url}/v1/agents"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let local = agents
            .as_array()
            .and_then(|agents| agents.iter().find(|agent| agent["name"] == "local"))
            .filter(|agent| agent["last_seen_at"].is_string())
            .cloned();
        if let Some(local) = local {
            break local;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the local agent never registered: {agents}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(agent["labels"], json!(["build", "deploy"]));
    let health = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
