//! Schema migrations, embedded in the binary: one numbered SQL file per step and database.
//!
//! A table `wharf_migrations` records the steps applied. Each step runs in its own transaction
//! with its record, so a crash mid-way leaves the schema at the previous step. On PostgreSQL an
//! advisory lock keeps two server replicas starting together from migrating at once.

use sqlx::Executor;

use crate::{Backend, Result, Store, StoreError};

/// One step: its number, its name and its SQL for each database.
struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// One step, from its number, its name and its file name (the same in both folders).
macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!("../migrations/sqlite/", $file, ".sql")),
            postgres: include_str!(concat!("../migrations/postgres/", $file, ".sql")),
        }
    };
}

const MIGRATIONS: &[Migration] = &[
    migration!(1, "initial", "0001_initial"),
    migration!(2, "build_output", "0002_build_output"),
    migration!(3, "pending_by_service", "0003_pending_by_service"),
    migration!(4, "service_env", "0004_service_env"),
    migration!(5, "build_images", "0005_build_images"),
    migration!(6, "registry_credentials", "0006_registry_credentials"),
    migration!(7, "releases", "0007_releases"),
    migration!(8, "github_deployments", "0008_github_deployments"),
    migration!(9, "environments", "0009_environments"),
    migration!(10, "hook_signatures", "0010_hook_signatures"),
    migration!(11, "delivery_retention", "0011_delivery_retention"),
    migration!(12, "delivery_keys", "0012_delivery_keys"),
    migration!(13, "agent_scopes", "0013_agent_scopes"),
    migration!(14, "repository_ids", "0014_repository_ids"),
    migration!(15, "variable_members", "0015_variable_members"),
    migration!(16, "notifications", "0016_notifications"),
    migration!(17, "build_network", "0017_build_network"),
    migration!(21, "deadlines", "0021_deadlines"),
    migration!(22, "email_sinks", "0022_email_sinks"),
    migration!(23, "github_checks", "0023_github_checks"),
    migration!(24, "release_logs", "0024_release_logs"),
    migration!(25, "github_sink", "0025_github_sink"),
    migration!(27, "github_catch_up", "0027_github_catch_up"),
    migration!(28, "local_repositories", "0028_local_repositories"),
    migration!(29, "dashboard_sign_in", "0029_dashboard_sign_in"),
    migration!(30, "github_app", "0030_github_app"),
    migration!(31, "release_states", "0031_release_states"),
    migration!(32, "previews", "0032_previews"),
];

/// Every schema this version of Wharf knows, oldest first.
pub fn known_schemas() -> impl Iterator<Item = i64> {
    MIGRATIONS.iter().map(|migration| migration.version)
}

/// The newest schema this version of Wharf knows: the number of its last migration.
pub const NEWEST_SCHEMA: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// An arbitrary constant naming Wharf's migration lock among PostgreSQL advisory locks.
const MIGRATION_LOCK: i64 = 0x5748_4152_465f_4d49;

const NEWEST_APPLIED: &str = "SELECT MAX(version) FROM wharf_migrations";

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS wharf_migrations (
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

impl Store {
    /// Applies every migration not yet applied. A database a newer Wharf has migrated is refused
    /// untouched ([`StoreError::NewerSchema`]): its newer steps may have changed what this
    /// version reads and writes.
    pub async fn migrate(&self) -> Result<()> {
        self.migrate_until(NEWEST_SCHEMA).await
    }

    /// Applies the migrations not yet applied, up to and including step `last`.
    pub(crate) async fn migrate_until(&self, last: i64) -> Result<()> {
        let steps = MIGRATIONS
            .iter()
            .filter(|migration| migration.version <= last);
        match &self.backend {
            Backend::Sqlite(pool) => {
                let mut connection = pool.acquire().await?;
                connection.execute(CREATE_TABLE).await?;
                let (newest,): (Option<i64>,) = sqlx::query_as(NEWEST_APPLIED)
                    .fetch_one(&mut *connection)
                    .await?;
                refuse_newer(newest)?;
                for migration in steps {
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                    let applied: Option<(i64,)> =
                        sqlx::query_as("SELECT version FROM wharf_migrations WHERE version = $1")
                            .bind(migration.version)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if applied.is_none() {
                        sqlx::raw_sql(migration.sqlite)
                            .execute(&mut *tx)
                            .await
                            .map_err(|error| {
                                StoreError::Migration(format!("{}: {error}", migration.name))
                            })?;
                        record(&mut *tx, migration).await?;
                    }
                    tx.commit().await?;
                }
            }
            Backend::Postgres(pool) => {
                let mut connection = pool.acquire().await?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *connection)
                    .await?;
                let outcome = async {
                    connection.execute(CREATE_TABLE).await?;
                    let (newest,): (Option<i64>,) = sqlx::query_as(NEWEST_APPLIED)
                        .fetch_one(&mut *connection)
                        .await?;
                    refuse_newer(newest)?;
                    for migration in steps {
                        let applied: Option<(i64,)> = sqlx::query_as(
                            "SELECT version FROM wharf_migrations WHERE version = $1",
                        )
                        .bind(migration.version)
                        .fetch_optional(&mut *connection)
                        .await?;
                        if applied.is_none() {
                            let mut tx = sqlx::Connection::begin(&mut *connection).await?;
                            sqlx::raw_sql(migration.postgres)
                                .execute(&mut *tx)
                                .await
                                .map_err(|error| {
                                    StoreError::Migration(format!("{}: {error}", migration.name))
                                })?;
                            record(&mut *tx, migration).await?;
                            tx.commit().await?;
                        }
                    }
                    Ok::<(), StoreError>(())
                }
                .await;
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *connection)
                    .await?;
                outcome?;
            }
        }
        Ok(())
    }
}

/// Refuses a database whose schema is newer than this Wharf knows.
fn refuse_newer(newest_applied: Option<i64>) -> Result<()> {
    match newest_applied {
        Some(found) if found > NEWEST_SCHEMA => Err(StoreError::NewerSchema {
            found,
            known: NEWEST_SCHEMA,
        }),
        _ => Ok(()),
    }
}

async fn record<'c, E>(executor: E, migration: &Migration) -> Result<()>
where
    E: sqlx::Executor<'c>,
    i64: sqlx::Encode<'c, E::Database> + sqlx::Type<E::Database>,
    &'static str: sqlx::Encode<'c, E::Database> + sqlx::Type<E::Database>,
    for<'a> <E::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<E::Database>,
{
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0);
    sqlx::query("INSERT INTO wharf_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(migration.version)
        .bind(migration.name)
        .bind(now)
        .execute(executor)
        .await?;
    Ok(())
}
