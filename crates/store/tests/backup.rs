//! Backups on the backend the test run selects: a SQLite database copied while it is open and
//! restored whole, files that are no Wharf backup refused with the reason, and PostgreSQL sent
//! to its own tools.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use wharf_store::testing::{TestDatabase, new_service};
use wharf_store::{
    DatabaseContents, NEWEST_SCHEMA, NewRelease, NewSink, Store, StoreError, StoredEnv,
    restore_sqlite,
};
use wharf_wire::{ReleaseTrigger, SinkKind};

const NOW: i64 = 1_800_000_000_000;

/// A store holding one service with a plain and a secret variable, a deploy-hook secret, a
/// registry login, a webhook sink (its URL and secret) and one release: five sealed values.
async fn filled_store() -> (Store, TestDatabase) {
    let (store, database) = TestDatabase::create().await.expect("a fresh test database");
    let service = store
        .create_service(&new_service("web", "acme/web"), NOW)
        .await
        .unwrap();
    for (name, secret) in [("MODE", false), ("API_KEY", true)] {
        let variable = StoredEnv {
            name: name.to_owned(),
            value: (!secret).then(|| "plain".to_owned()),
            sealed: secret.then(|| "v1:sealed-api-key".to_owned()),
            secret,
            build: false,
            members: Default::default(),
            preview: false,
            updated_at: String::new(),
        };
        store.set_env(service.id, &variable, NOW).await.unwrap();
    }
    store
        .set_deploy_secret(service.id, "v1:sealed-hook-secret")
        .await
        .unwrap();
    store
        .set_registry_credentials(42, "robot", "v1:sealed-password", NOW)
        .await
        .unwrap();
    store
        .create_sink(
            &NewSink {
                name: "ops".to_owned(),
                kind: SinkKind::Webhook,
                url_shown: "https://ops.example.com/hook".to_owned(),
                url_sealed: "v1:sealed-url".to_owned(),
                secret_sealed: Some("v1:sealed-signing-secret".to_owned()),
                email: None,
                events: Vec::new(),
                services: Vec::new(),
            },
            NOW,
        )
        .await
        .unwrap();
    store
        .create_release(
            &NewRelease {
                service_id: service.id,
                environment: "production".to_owned(),
                build_id: None,
                image: "registry.test/default/web@sha256:abc".to_owned(),
                trigger: ReleaseTrigger::Manual,
                rollback_of: None,
                hosts: Vec::new(),
            },
            NOW,
        )
        .await
        .unwrap();
    (store, database)
}

fn is_sqlite() -> bool {
    wharf_store::testing::backend_name() == "sqlite"
}

#[tokio::test]
async fn a_summary_counts_services_releases_and_sealed_values() {
    let (store, _database) = filled_store().await;
    let summary = store.summary().await.unwrap();
    assert_eq!(summary.schema_version, NEWEST_SCHEMA);
    assert_eq!(
        summary.contents,
        Some(DatabaseContents {
            services: 1,
            releases: 1,
            sealed_values: 5,
        })
    );
    assert_eq!(store.schema_version().await.unwrap(), Some(NEWEST_SCHEMA));
}

#[tokio::test]
async fn a_postgres_database_is_sent_to_pg_dump() {
    if is_sqlite() {
        return;
    }
    let (store, _database) = filled_store().await;
    let dir = tempfile::tempdir().unwrap();
    let error = store
        .backup_into(&dir.path().join("backup.db"))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Backup(_)), "{error}");
    assert!(error.to_string().contains("pg_dump"), "{error}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[tokio::test]
async fn a_backup_of_an_open_database_restores_whole() {
    if !is_sqlite() {
        return;
    }
    let (store, _database) = filled_store().await;
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("wharf-backup.db");
    let summary = store.backup_into(&backup).await.unwrap();
    assert_eq!(summary.contents.unwrap().sealed_values, 5);
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the backup is its owner's only");
    assert!(!dir.path().join("wharf-backup.db.partial").exists());
    // The store goes on after the backup, which holds the state at its start.
    store
        .set_registry_credentials(43, "later", "v1:later", NOW)
        .await
        .unwrap();

    let restored_path = dir.path().join("restored").join("wharf.db");
    std::fs::create_dir(restored_path.parent().unwrap()).unwrap();
    let restored = restore_sqlite(&backup, &restored_path).await.unwrap();
    assert_eq!(restored, summary);
    let restored = Store::open_sqlite_file(&restored_path).await.unwrap();
    let service = restored.service_by_name("web").await.unwrap();
    let variables = restored.list_env(service.id).await.unwrap();
    let secret = variables.iter().find(|var| var.name == "API_KEY").unwrap();
    assert_eq!(secret.sealed.as_deref(), Some("v1:sealed-api-key"));
    assert_eq!(
        restored.deploy_secret(service.id).await.unwrap().as_deref(),
        Some("v1:sealed-hook-secret")
    );
    assert_eq!(
        restored.list_releases(service.id, 10).await.unwrap().len(),
        1
    );
    assert!(restored.registry_credentials(43).await.unwrap().is_none());
}

#[tokio::test]
async fn a_backup_never_replaces_a_file() {
    if !is_sqlite() {
        return;
    }
    let (store, _database) = filled_store().await;
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("taken.db");
    std::fs::write(&backup, b"precious").unwrap();
    let error = store.backup_into(&backup).await.unwrap_err();
    assert!(error.to_string().contains("already exists"), "{error}");
    assert_eq!(std::fs::read(&backup).unwrap(), b"precious");
}

/// Restores `backup` into a new file and returns the refusal.
async fn refusal(backup: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("wharf.db");
    let error = restore_sqlite(backup, &target).await.unwrap_err();
    assert!(!target.exists(), "a refused restore leaves nothing behind");
    error.to_string()
}

#[tokio::test]
async fn a_restore_refuses_what_is_not_a_wharf_backup() {
    if !is_sqlite() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    assert!(refusal(&missing).await.contains("is not a file"));

    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database, but long enough to have a header ".repeat(20),
    )
    .unwrap();
    let message = refusal(&text).await;
    assert!(message.contains("is not a SQLite database"), "{message}");

    let other = dir.path().join("other.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", other.display()))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE notes (text TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let message = refusal(&other).await;
    assert!(message.contains("not Wharf's"), "{message}");
}

#[tokio::test]
async fn a_restore_refuses_a_backup_of_a_newer_wharf() {
    if !is_sqlite() {
        return;
    }
    let (store, _database) = filled_store().await;
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("newer.db");
    store.backup_into(&backup).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", backup.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO wharf_migrations (version, name, applied_at) VALUES ($1, 'future', 0)",
    )
    .bind(NEWEST_SCHEMA + 1)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let message = refusal(&backup).await;
    assert!(message.contains("comes from a newer Wharf"), "{message}");
    assert!(
        message.contains(&format!("schema {}", NEWEST_SCHEMA + 1)),
        "{message}"
    );
}
