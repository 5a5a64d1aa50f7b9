//! A fresh, empty database for each test, on the backend the test run asks for.
//!
//! `WHARF_TEST_BACKEND=postgres` selects PostgreSQL, reached through the administrative URL in
//! `WHARF_TEST_POSTGRES_URL` (a role allowed to create databases); each test gets a database of
//! its own, named `wharf_test_*`, which `scripts/test` drops after the run (dropping them from
//! concurrent test processes makes PostgreSQL's `DROP DATABASE` wait on itself). Otherwise each
//! test gets a SQLite file in a temporary directory, removed with the [`TestDatabase`]. Asking for PostgreSQL without a URL is an error, never a silent
//! fallback, so a CI run cannot pass on the wrong backend.

use crate::{Result, Store, StoreError};

/// A test's own database.
pub struct TestDatabase {
    /// The URL the store was opened with (what a server under test gets as `WHARF_DATABASE_URL`).
    pub url: String,
    _cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres,
}

/// The backend this test run uses.
pub fn backend_name() -> String {
    std::env::var("WHARF_TEST_BACKEND").unwrap_or_else(|_| "sqlite".to_owned())
}

impl TestDatabase {
    /// Creates an empty database and opens a migrated store on it.
    pub async fn create() -> Result<(Store, TestDatabase)> {
        TestDatabase::create_at_schema(crate::NEWEST_SCHEMA).await
    }

    /// Creates an empty database migrated only up to step `schema`, as an earlier Wharf left
    /// it, for tests of upgrades.
    pub async fn create_at_schema(schema: i64) -> Result<(Store, TestDatabase)> {
        match backend_name().as_str() {
            "postgres" => {
                let admin_url = std::env::var("WHARF_TEST_POSTGRES_URL").map_err(|_| {
                    StoreError::Url(
                        "WHARF_TEST_BACKEND=postgres needs WHARF_TEST_POSTGRES_URL".to_owned(),
                    )
                })?;
                let name = format!(
                    "wharf_test_{}_{:016x}",
                    std::process::id(),
                    rand::random::<u64>()
                );
                let admin = sqlx::PgPool::connect(&admin_url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&admin)
                    .await?;
                admin.close().await;
                let url = match admin_url.rsplit_once('/') {
                    Some((base, _)) => format!("{base}/{name}"),
                    None => {
                        return Err(StoreError::Url(
                            "WHARF_TEST_POSTGRES_URL has no database name".to_owned(),
                        ));
                    }
                };
                let store = open_at_schema(&url, schema).await?;
                Ok((
                    store,
                    TestDatabase {
                        url,
                        _cleanup: Cleanup::Postgres,
                    },
                ))
            }
            "sqlite" => {
                let dir = tempfile::tempdir().map_err(|error| {
                    StoreError::Url(format!("cannot create a temporary directory: {error}"))
                })?;
                let url = format!("sqlite://{}", dir.path().join("wharf.db").display());
                let store = open_at_schema(&url, schema).await?;
                Ok((
                    store,
                    TestDatabase {
                        url,
                        _cleanup: Cleanup::Sqlite(dir),
                    },
                ))
            }
            other => Err(StoreError::Url(format!(
                "unknown WHARF_TEST_BACKEND {other:?}: use sqlite or postgres"
            ))),
        }
    }
}

/// The settings of a service `name` of GitHub repository `repo` tracking `main`, with port 8080
/// and every other setting at its default; tests change what they need with `..`.
pub fn new_service(name: &str, repo: &str) -> crate::NewService {
    crate::NewService {
        name: name.to_owned(),
        project: "default".to_owned(),
        repo: repo.to_owned(),
        repo_key: Some(repo.to_ascii_lowercase()),
        branch: "main".to_owned(),
        dockerfile: None,
        context: None,
        compose: None,
        port: Some(8080),
        health_path: None,
        domain: None,
        cancel_running: false,
        build_network: Default::default(),
        deploy: Default::default(),
    }
}

/// Opens (creating) the database at `url` and migrates it up to step `schema`.
async fn open_at_schema(url: &str, schema: i64) -> Result<Store> {
    let store = Store::open(url, crate::Opening::CreateWhenMissing, Default::default()).await?;
    store.migrate_until(schema).await?;
    Ok(store)
}

/// Runs `sql` (one or more statements) as it is, for a test that writes rows the way an
/// earlier schema held them.
pub async fn execute(store: &Store, sql: &str) -> Result<()> {
    crate::on_pool!(store, pool => {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(pool).await?;
    });
    Ok(())
}

/// Stores a release of build `build_id` in `state`, as the release scheduler would, for tests
/// of what reads releases (the GitHub reporter). Returns the release's id.
pub async fn insert_release(
    store: &Store,
    build_id: i64,
    state: wharf_wire::ReleaseState,
    reason: Option<&str>,
    now: i64,
) -> Result<i64> {
    let (id,): (i64,) = crate::on_pool!(store, pool => {
        sqlx::query_as(
            "INSERT INTO releases (service_id, environment, build_id, image, trigger, state, reason, \
             created_at, updated_at) \
             SELECT service_id, 'production', id, COALESCE(image, 'test/image'), 'build', $1, $2, \
             $3, $3 FROM builds WHERE id = $4 RETURNING id",
        )
        .bind(state.as_str())
        .bind(reason)
        .bind(now)
        .bind(build_id)
        .fetch_one(pool)
        .await?
    });
    Ok(id)
}

/// Moves release `release_id` to `state`, as a rollout would.
pub async fn set_release_state(
    store: &Store,
    release_id: i64,
    state: wharf_wire::ReleaseState,
    reason: Option<&str>,
    now: i64,
) -> Result<()> {
    crate::on_pool!(store, pool => {
        sqlx::query("UPDATE releases SET state = $1, reason = $2, updated_at = $3 WHERE id = $4")
            .bind(state.as_str())
            .bind(reason)
            .bind(now)
            .bind(release_id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Stores a delivery as a Wharf from before every delivery was keyed by what it did or by its
/// body did: with `dedupe_key` (a push's repository, ref and `after`, or none).
pub async fn insert_earlier_delivery(
    store: &Store,
    id: &str,
    event: &str,
    dedupe_key: Option<&str>,
    body: &str,
    received_at: i64,
) -> Result<()> {
    crate::on_pool!(store, pool => {
        sqlx::query(
            "INSERT INTO deliveries (id, event, action, dedupe_key, body, outcome, received_at, \
             key_scheme) VALUES ($1, $2, NULL, $3, $4, 'stored', $5, 1)",
        )
        .bind(id)
        .bind(event)
        .bind(dedupe_key)
        .bind(body)
        .bind(received_at)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// A transaction of its own that moved a rollout to `failed` and has not committed yet, as
/// the lease job's would be while a report of the rollout comes in: on PostgreSQL it holds the
/// rollout's row, on SQLite the database's write lock.
pub struct UncommittedRolloutFailure {
    commit: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl UncommittedRolloutFailure {
    /// Commits the change.
    pub async fn commit(self) -> Result<()> {
        let _ = self.commit.send(());
        self.task.await.map_err(|error| {
            crate::StoreError::Conflict(format!("the transaction's task: {error}"))
        })?
    }
}

/// Moves rollout `rollout_id` to `failed` in a transaction that stays open until
/// [`UncommittedRolloutFailure::commit`].
pub async fn fail_rollout_uncommitted(
    store: &Store,
    rollout_id: i64,
    now: i64,
) -> Result<UncommittedRolloutFailure> {
    let (ready, begun) = tokio::sync::oneshot::channel::<()>();
    let (commit, committed) = tokio::sync::oneshot::channel::<()>();
    let store = store.clone();
    let task = tokio::spawn(async move {
        crate::in_transaction!(store, tx => {
            sqlx::query(
                "UPDATE rollouts SET state = 'failed', reason = 'abandoned', updated_at = $1, \
                 finished_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(rollout_id)
            .execute(&mut *tx)
            .await?;
            let _ = ready.send(());
            let _ = committed.await;
        });
        Ok(())
    });
    let _ = begun.await;
    Ok(UncommittedRolloutFailure { commit, task })
}

/// Whether another session's statement waits for a lock right now. PostgreSQL tells; SQLite
/// cannot, and answers true.
pub async fn statement_waits_for_lock(store: &Store) -> Result<bool> {
    match &store.backend {
        crate::Backend::Sqlite(_) => Ok(true),
        crate::Backend::Postgres(pool) => {
            let (waiting,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND datname = current_database()",
            )
            .fetch_one(pool)
            .await?;
            Ok(waiting > 0)
        }
    }
}
