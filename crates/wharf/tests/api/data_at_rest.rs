//! What a real `wharf server` keeps on disk and how: a data directory only its owner can enter,
//! a SQLite database and a secret key only its owner can read, and SQLite's synchronous mode
//! as `WHARF_SQLITE_SYNCHRONOUS` asks.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::ADMIN_TOKEN;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Runs `wharf server` on SQLite in `data_dir` with the variables given, until it listens;
/// answers its log up to then.
async fn start_on_sqlite(
    data_dir: &Path,
    variables: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("server")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WHARF_LISTEN", "127.0.0.1:0")
        .env("WHARF_DATA_DIR", data_dir)
        .env("WHARF_TOKEN", ADMIN_TOKEN)
        .env("WHARF_LOG", "info")
        .envs(variables.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("wharf server starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = tokio::time::timeout(Duration::from_secs(30), async {
        let mut log = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            log.push_str(&line);
            log.push('\n');
            if line.contains("listening") {
                return log;
            }
        }
        panic!("wharf server exited before listening:\n{log}");
    })
    .await
    .expect("wharf server listens within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, log)
}

#[tokio::test]
async fn the_data_directory_and_the_database_are_private_to_their_owner() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("new").join("data");
    let (mut server, log) =
        start_on_sqlite(&data_dir, &[("WHARF_SQLITE_SYNCHRONOUS", "full")]).await;
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&data_dir.join("wharf.db")), 0o600);
    assert_eq!(mode(&data_dir.join("secret.key")), 0o600);
    // The mode SQLite reports on the server's own connections.
    assert!(log.contains("synchronous=\"full\""), "{log}");
    server.kill().await.unwrap();

    // Without the variable, NORMAL.
    let (mut server, log) = start_on_sqlite(&data_dir, &[]).await;
    assert!(log.contains("synchronous=\"normal\""), "{log}");
    server.kill().await.unwrap();
}

#[tokio::test]
async fn settings_it_cannot_read_stop_the_server_with_the_reason() {
    let root = tempfile::tempdir().unwrap();
    for (variable, value) in [
        ("WHARF_SQLITE_SYNCHRONOUS", "sometimes"),
        ("WHARF_DELIVERY_RETENTION", "a month"),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("server")
            .env_clear()
            .env("WHARF_DATA_DIR", root.path())
            .env("WHARF_TOKEN", ADMIN_TOKEN)
            .env(variable, value)
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{variable}={value} was taken");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(value), "{variable}: {stderr}");
    }
}
