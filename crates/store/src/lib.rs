//! Wharf's state: installations, repositories, projects, services, agents, webhook deliveries,
//! the build queue, what GitHub was told of each build and the notifications' outbox, in SQLite (the embedded default) or
//! PostgreSQL; and backups of a SQLite database (`backup`).
//!
//! Architecture invariant: this is the only crate that speaks SQL. Both databases run the same
//! statements (with `$1` placeholders, which SQLite accepts too) except where a database needs
//! its own form, such as `FOR UPDATE SKIP LOCKED` in the claim; each such place picks its text
//! with [`Store::pick`]. Every write that must happen together (a delivery and the builds it
//! queues) is one transaction, so a crash never leaves half of it behind.
//!
//! Times are milliseconds since the Unix epoch, passed in by the caller, so the store never reads
//! a clock and tests decide what "now" is.

mod agents;
mod backup;
mod builds;
mod catch_up;
mod deadlines;
mod deliveries;
mod env;
mod github_app;
mod github_reports;
mod hook_signatures;
mod logs;
mod migrate;
mod notifications;
mod previews;
mod releases;
mod services;
mod sessions;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

pub use agents::{hash_token, revoked_reason};
pub use backup::{DatabaseContents, DatabaseSummary, restore_sqlite};
pub use builds::{BuildFilter, ClaimedBuild, LeaseExpiry, NewBuild, StateReport};
pub use catch_up::{BranchHead, TrackedBranch};
pub use deadlines::Overdue;
pub use deliveries::{
    DeliveryEffect, DeliveryOutcome, EarlierDelivery, InstallationChange, NewDelivery,
};
pub use env::StoredEnv;
pub use github_app::StoredGithubApp;
pub use github_reports::{GithubReport, GithubReportEnd};
pub use logs::AppendOutcome;
pub use migrate::{NEWEST_SCHEMA, known_schemas};
pub use notifications::{DeliveryEnd, NewSink, NotificationMessage, StoredSink};
pub use previews::{PreviewOutcome, PullRequestChange, StoredPreview};
pub use releases::{NO_HOSTS_REASON, NewRelease, RolloutRef, RolloutReport};
pub use services::NewService;
pub use sessions::{DashboardSession, NewSession, StoredUser};

/// Where the store keeps its data.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A fault of the store, or a refusal a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with what is stored (a name already taken, a build already finished).
    #[error("{0}")]
    Conflict(String),
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A newer Wharf has migrated the database past the schema this version knows; it is left
    /// untouched.
    #[error(
        "the database's schema is {found}, newer than this Wharf knows ({known}): a newer Wharf \
         has run on it; run that version or a later one (Wharf never downgrades a database)"
    )]
    NewerSchema { found: i64, known: i64 },
    /// The store's writer has stopped (the server is shutting down).
    #[error("the store is shutting down")]
    Closed,
    /// The database URL is not one Wharf knows.
    #[error("{0}")]
    Url(String),
    /// The SQLite database file could not be created.
    #[error("{0}")]
    File(String),
    /// A backup could not be made, or a file given as a backup cannot be restored.
    #[error("{0}")]
    Backup(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Runs `$body` with `$pool` bound to the concrete pool of either database.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside one transaction on either database and commits it; an early return with
/// `?` drops the transaction, which rolls it back. SQLite transactions begin `IMMEDIATE`, taking
/// the write lock at once, so two writers never meet halfway and fail with "database is locked".
macro_rules! in_transaction {
    ($store:expr, $tx:ident => $body:block) => {
        match &$store.backend {
            $crate::Backend::Sqlite(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let value = $body;
                $tx.commit().await?;
                value
            }
            $crate::Backend::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                let value = $body;
                $tx.commit().await?;
                value
            }
        }
    };
}

pub(crate) use {in_transaction, on_pool};

/// Whether opening a database may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    CreateWhenMissing,
    Existing,
}

/// Which database a store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

/// How a SQLite commit reaches the disk (`PRAGMA synchronous`). Both keep every commit through
/// a crash of the process; they differ on a power loss or a crash of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSynchronous {
    /// The WAL is synced at checkpoints only: the last commits before a power loss may be lost
    /// (the database stays consistent). Fast.
    #[default]
    Normal,
    /// The WAL is synced at every commit: a commit survives a power loss. Slower.
    Full,
}

impl std::str::FromStr for SqliteSynchronous {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<SqliteSynchronous, String> {
        match text {
            "normal" => Ok(SqliteSynchronous::Normal),
            "full" => Ok(SqliteSynchronous::Full),
            other => Err(format!(
                "{other:?} is not a SQLite synchronous mode: use full or normal"
            )),
        }
    }
}

/// How to open a store, beyond its URL.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreOptions {
    /// How SQLite commits reach the disk; PostgreSQL has its own settings.
    pub sqlite_synchronous: SqliteSynchronous,
}

impl Store {
    /// Opens the database at `url` (`sqlite://PATH`, `sqlite:PATH` or `postgres://…`) with the
    /// default options and brings its schema up to date. A SQLite file is created when missing.
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_with(url, StoreOptions::default()).await
    }

    /// Opens the database at `url` with `options` and brings its schema up to date. A SQLite
    /// file is created when missing, readable and writable by its owner only.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Store> {
        let store = Store::open(url, Opening::CreateWhenMissing, options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the database at `url` as it is, for what reads a database without running Wharf on
    /// it (`wharf backup`, `wharf doctor`): its schema is not changed, and a SQLite file that does
    /// not exist is [`StoreError::NotFound`] rather than created.
    pub async fn open_existing(url: &str) -> Result<Store> {
        Store::open(url, Opening::Existing, StoreOptions::default()).await
    }

    async fn open(url: &str, opening: Opening, options: StoreOptions) -> Result<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|error| {
                StoreError::Url(format!(
                    "invalid PostgreSQL URL: {}",
                    redact(&error.to_string())
                ))
            })?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Ok(Store {
                backend: Backend::Postgres(pool),
            })
        } else if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|error| StoreError::Url(format!("invalid SQLite URL: {error}")))?;
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            match opening {
                Opening::Existing if !connect.get_filename().exists() => {
                    return Err(StoreError::NotFound(format!(
                        "no database at {}",
                        connect.get_filename().display()
                    )));
                }
                Opening::CreateWhenMissing if !in_memory => {
                    create_private_file(connect.get_filename())?;
                }
                _ => {}
            }
            Store::open_sqlite(connect, options.sqlite_synchronous).await
        } else {
            Err(StoreError::Url(
                "unsupported database URL: expected sqlite://PATH or postgres://…".to_owned(),
            ))
        }
    }

    /// Opens (creating when missing, readable by its owner only) the SQLite file at `path`.
    pub async fn open_sqlite_file(path: &std::path::Path) -> Result<Store> {
        create_private_file(path)?;
        let store = Store::open_sqlite(
            SqliteConnectOptions::new().filename(path),
            SqliteSynchronous::default(),
        )
        .await?;
        store.migrate().await?;
        Ok(store)
    }

    async fn open_sqlite(
        options: SqliteConnectOptions,
        synchronous: SqliteSynchronous,
    ) -> Result<Store> {
        // WAL lets readers run beside the single writer. With synchronous=NORMAL a commit is in
        // the WAL file before it returns, so a crash of the process loses no committed write;
        // only a power loss can take the last commits, as for any WAL database in this mode.
        // FULL syncs the WAL at every commit, so a power loss takes none.
        let synchronous = match synchronous {
            SqliteSynchronous::Normal => sqlx::sqlite::SqliteSynchronous::Normal,
            SqliteSynchronous::Full => sqlx::sqlite::SqliteSynchronous::Full,
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Store {
            backend: Backend::Sqlite(pool),
        })
    }

    /// Which database this store uses.
    pub fn kind(&self) -> DatabaseKind {
        match self.backend {
            Backend::Sqlite(_) => DatabaseKind::Sqlite,
            Backend::Postgres(_) => DatabaseKind::Postgres,
        }
    }

    /// Picks the statement text for this store's database.
    pub(crate) fn pick(&self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => sqlite,
            Backend::Postgres(_) => postgres,
        }
    }

    /// SQLite's `PRAGMA synchronous` as a connection of this store sees it (1 NORMAL, 2 FULL);
    /// `None` on PostgreSQL.
    pub async fn sqlite_synchronous(&self) -> Result<Option<i64>> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                let (mode,): (i64,) = sqlx::query_as("PRAGMA synchronous").fetch_one(pool).await?;
                Ok(Some(mode))
            }
            Backend::Postgres(_) => Ok(None),
        }
    }

    /// Answers whether the database responds.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Closes every connection; used at shutdown.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// Creates the SQLite database file at `path` when it is missing, readable and writable by its
/// owner only; SQLite gives its WAL and shared-memory files the same mode. A file that exists
/// is left as it is, with a warning when others may read it. A missing directory is left for
/// SQLite to report.
fn create_private_file(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(metadata) = std::fs::metadata(path)
                && metadata.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", metadata.permissions().mode() & 0o777),
                    "the database file may be read by other users; `chmod 600` it"
                );
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StoreError::File(format!(
            "cannot create the database file {}: {error}",
            path.display()
        ))),
    }
}

/// Removes a password from a message that may quote a database URL.
fn redact(message: &str) -> String {
    match (message.find("://"), message.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://…{}", &message[..scheme_end], &message[at..])
        }
        _ => message.to_owned(),
    }
}

/// True when `error` is a unique-constraint violation on either database.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database_error) => database_error.is_unique_violation(),
        _ => false,
    }
}

#[cfg(feature = "testing")]
pub mod testing;
