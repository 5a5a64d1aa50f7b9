//! Backups of a SQLite database and their restore, and a summary of what a database holds.
//!
//! A backup is `VACUUM INTO`: SQLite copies one consistent snapshot of the database into a new
//! file while the server goes on writing (WAL readers never block the writer). The copy is made
//! under a temporary name, readable by its owner only from creation on (it holds sealed values
//! and token hashes), synced to disk and then renamed, so a backup that fails half-way never
//! leaves a file that looks whole. A restore checks the backup (a SQLite file, intact, holding a
//! Wharf schema no newer than this version's), copies it the same way and brings its schema up
//! to date. PostgreSQL is backed up and restored with its own tools (`pg_dump`, `pg_restore`).
//!
//! The secret key that opens the sealed values is never in the database, so never in a backup.

use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::migrate::NEWEST_SCHEMA;
use crate::{Backend, Result, Store, StoreError, on_pool};

/// What a database holds, as backups, restores and `wharf doctor` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSummary {
    /// The newest migration applied to it.
    pub schema_version: i64,
    /// What it holds; counted only on the schema this version of Wharf knows best (its newest).
    pub contents: Option<DatabaseContents>,
}

/// Counts of what a database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseContents {
    pub services: i64,
    pub releases: i64,
    /// Values only the secret key opens: secret variables, registry passwords, deploy-hook
    /// secrets, and notification sinks' URLs and secrets.
    pub sealed_values: i64,
}

const COUNT_CONTENTS: &str = "SELECT \
    (SELECT COUNT(*) FROM services), \
    (SELECT COUNT(*) FROM releases), \
    (SELECT COUNT(*) FROM service_env WHERE sealed IS NOT NULL) \
    + (SELECT COUNT(*) FROM preview_env WHERE sealed IS NOT NULL) \
    + (SELECT COUNT(*) FROM registry_credentials) \
    + (SELECT COUNT(*) FROM services WHERE deploy_secret IS NOT NULL) \
    + (SELECT COUNT(*) FROM notification_sinks) \
    + (SELECT COUNT(*) FROM notification_sinks WHERE secret_sealed IS NOT NULL) \
    + (SELECT COUNT(*) * 2 FROM github_app)";

impl Store {
    /// The newest migration applied to this database; `None` when it holds no Wharf schema.
    pub async fn schema_version(&self) -> Result<Option<i64>> {
        let has_table = self.pick(
            "SELECT COUNT(*) FROM sqlite_master \
             WHERE type = 'table' AND name = 'wharf_migrations'",
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_name = 'wharf_migrations' AND table_schema = current_schema()",
        );
        let (tables,): (i64,) = on_pool!(self, pool => {
            sqlx::query_as(has_table).fetch_one(pool).await?
        });
        if tables == 0 {
            return Ok(None);
        }
        let (version,): (Option<i64>,) = on_pool!(self, pool => {
            sqlx::query_as("SELECT MAX(version) FROM wharf_migrations")
                .fetch_one(pool)
                .await?
        });
        Ok(version)
    }

    /// What this database holds. A database without a Wharf schema is [`StoreError::Backup`].
    pub async fn summary(&self) -> Result<DatabaseSummary> {
        let schema_version = self
            .schema_version()
            .await?
            .ok_or_else(|| StoreError::Backup("the database holds no Wharf schema".to_owned()))?;
        let contents = if schema_version == NEWEST_SCHEMA {
            let (services, releases, sealed_values): (i64, i64, i64) = on_pool!(self, pool => {
                sqlx::query_as(COUNT_CONTENTS).fetch_one(pool).await?
            });
            Some(DatabaseContents {
                services,
                releases,
                sealed_values,
            })
        } else {
            None
        };
        Ok(DatabaseSummary {
            schema_version,
            contents,
        })
    }

    /// Writes a consistent copy of this SQLite database to `target`, which must not exist, while
    /// the server may go on using the database; returns what the copy holds. A PostgreSQL store
    /// is refused: `pg_dump` backs it up.
    pub async fn backup_into(&self, target: &Path) -> Result<DatabaseSummary> {
        let Backend::Sqlite(pool) = &self.backend else {
            return Err(StoreError::Backup(
                "a PostgreSQL database is backed up with pg_dump (and restored with pg_restore)"
                    .to_owned(),
            ));
        };
        vacuum_into(pool, target).await?;
        summarize_file(target).await
    }
}

/// Checks that the file `backup` is an intact Wharf database that this version can run, copies
/// it to the SQLite file `target` (which must not exist) and brings the copy's schema up to
/// date. Returns what the restored database holds.
pub async fn restore_sqlite(backup: &Path, target: &Path) -> Result<DatabaseSummary> {
    let source = open_read_only(backup).await?;
    let checked = check_backup(&source, backup).await;
    let copied = match checked {
        Ok(()) => vacuum_into(&source, target).await,
        Err(error) => Err(error),
    };
    source.close().await;
    copied?;
    let restored = Store::open_sqlite_file(target).await?;
    let summary = restored.summary().await;
    restored.close().await;
    summary
}

/// Opens `path` read-only without creating it, as one connection.
async fn open_read_only(path: &Path) -> Result<SqlitePool> {
    if !path.is_file() {
        return Err(StoreError::Backup(format!(
            "{} is not a file",
            path.display()
        )));
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false);
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?)
}

/// Refuses a file that is not a SQLite database, is damaged, holds no Wharf schema, or holds
/// one newer than this version knows (it would be run by code that does not understand it).
async fn check_backup(pool: &SqlitePool, path: &Path) -> Result<()> {
    let shown = path.display();
    let verdict: std::result::Result<(String,), sqlx::Error> =
        sqlx::query_as("PRAGMA quick_check").fetch_one(pool).await;
    match verdict {
        Ok((verdict,)) if verdict == "ok" => {}
        Ok((verdict,)) => {
            return Err(StoreError::Backup(format!(
                "{shown} is damaged (SQLite's check says: {verdict})"
            )));
        }
        Err(sqlx::Error::Database(error)) => {
            return Err(StoreError::Backup(format!(
                "{shown} is not a SQLite database ({})",
                error.message()
            )));
        }
        Err(error) => return Err(error.into()),
    }
    let store = Store {
        backend: Backend::Sqlite(pool.clone()),
    };
    match store.schema_version().await? {
        None => Err(StoreError::Backup(format!(
            "{shown} is a SQLite database but not Wharf's (it has no wharf_migrations table)"
        ))),
        Some(version) if version > NEWEST_SCHEMA => Err(StoreError::Backup(format!(
            "{shown} comes from a newer Wharf (schema {version}; this Wharf knows up to \
             {NEWEST_SCHEMA}): restore it with that version or a newer one"
        ))),
        Some(_) => Ok(()),
    }
}

/// What the SQLite file at `path` holds, read without changing it.
async fn summarize_file(path: &Path) -> Result<DatabaseSummary> {
    let pool = open_read_only(path).await?;
    let store = Store {
        backend: Backend::Sqlite(pool),
    };
    let summary = store.summary().await;
    store.close().await;
    summary
}

/// `VACUUM INTO target` through a temporary neighbour of `target`, created empty with mode 0600
/// (SQLite fills an empty file and keeps its mode), synced and then renamed into place.
async fn vacuum_into(pool: &SqlitePool, target: &Path) -> Result<()> {
    if target.exists() {
        return Err(StoreError::Backup(format!(
            "{} already exists; name a new file",
            target.display()
        )));
    }
    let partial = partial_name(target);
    let io_error = |what: &str, path: &Path, error: std::io::Error| {
        StoreError::Backup(format!("cannot {what} {}: {error}", path.display()))
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
    {
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {
            return Err(StoreError::Backup(format!(
                "{} exists: another backup to {} is under way, or one failed (remove it)",
                partial.display(),
                target.display()
            )));
        }
        Err(error) => return Err(io_error("create", &partial, error)),
    }
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(partial.to_string_lossy().into_owned())
        .execute(pool)
        .await;
    if let Err(error) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(StoreError::Backup(format!(
            "SQLite could not copy the database: {error}"
        )));
    }
    // SQLite does not sync the file VACUUM INTO writes.
    let synced = std::fs::File::open(&partial).and_then(|file| file.sync_all());
    if let Err(error) = synced {
        let _ = std::fs::remove_file(&partial);
        return Err(io_error("sync", &partial, error));
    }
    std::fs::rename(&partial, target).map_err(|error| io_error("rename", &partial, error))?;
    if let Some(directory) = target.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        let _ = std::fs::File::open(directory).and_then(|dir| dir.sync_all());
    }
    Ok(())
}

/// `FILE.partial` beside `FILE`.
fn partial_name(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    target.with_file_name(name)
}
