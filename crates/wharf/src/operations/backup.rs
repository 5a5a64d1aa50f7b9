//! `wharf backup FILE` and `wharf restore FILE`: a consistent copy of the local SQLite database,
//! made while the server runs, and its restore into an empty data directory (the store does
//! the copying; see `wharf_store`'s `backup` module). PostgreSQL has its own tools, which both
//! verbs name. The secret key is never in a backup, and both verbs say where it is and what to
//! do with it.

use std::path::Path;

use anyhow::{Context, bail};
use wharf_store::{DatabaseSummary, Store};

use crate::config::{DatabaseLocation, KeySource, StateArgs};

/// Backs the database up to `file`.
pub async fn backup(file: &Path, state: &StateArgs) -> anyhow::Result<()> {
    let database = match state.database_location()? {
        DatabaseLocation::Postgres => bail!("{}", postgres_refusal(Verb::Backup)),
        DatabaseLocation::Sqlite(path) => path,
    };
    let store = Store::open_existing(&format!("sqlite://{}", database.display()))
        .await
        .with_context(|| format!("cannot open the database {}", database.display()))?;
    let summary = store.backup_into(file).await;
    store.close().await;
    let summary = summary.context("no backup was made")?;
    println!(
        "{}",
        backed_up(&database, file, &summary, &state.key_source())
    );
    Ok(())
}

/// Restores the backup `file` into the data directory, which must be empty.
pub async fn restore(file: &Path, state: &StateArgs) -> anyhow::Result<()> {
    let database = match state.database_location()? {
        DatabaseLocation::Postgres => bail!("{}", postgres_refusal(Verb::Restore)),
        DatabaseLocation::Sqlite(path) => path,
    };
    let data_dir = &state.data_dir;
    let held = entries(data_dir)?;
    if !held.is_empty() {
        bail!("{}", not_empty(data_dir, &held));
    }
    if database.exists() {
        bail!(
            "{} already exists: restore into a new database file",
            database.display()
        );
    }
    let created_data_dir = !data_dir.exists();
    for dir in [Some(data_dir.as_path()), database.parent()]
        .into_iter()
        .flatten()
        .filter(|dir| !dir.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match wharf_store::restore_sqlite(file, &database).await {
        Ok(summary) => {
            println!(
                "{}",
                restored(file, &database, data_dir, &summary, &state.key_source())
            );
            Ok(())
        }
        Err(error) => {
            if created_data_dir {
                // Only an empty directory goes; anything in it stays.
                let _ = std::fs::remove_dir(data_dir);
            }
            Err(anyhow::Error::new(error).context("nothing was restored"))
        }
    }
}

/// The names in `dir`, sorted; none when it does not exist.
fn entries(dir: &Path) -> anyhow::Result<Vec<String>> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", dir.display()));
        }
    };
    let mut names = listing
        .map(|entry| entry.map(|entry| entry.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    names.sort();
    Ok(names)
}

/// Which verb a message is for.
#[derive(Debug, Clone, Copy)]
enum Verb {
    Backup,
    Restore,
}

/// Why a PostgreSQL database is not backed up or restored here, and what does it instead.
fn postgres_refusal(verb: Verb) -> String {
    let instead = match verb {
        Verb::Backup => {
            "back it up with pg_dump: pg_dump --format=custom --file=wharf.dump \"$WHARF_DATABASE_URL\""
        }
        Verb::Restore => {
            "restore it with pg_restore into an empty database: pg_restore --no-owner --dbname=\"$WHARF_DATABASE_URL\" wharf.dump"
        }
    };
    format!(
        "WHARF_DATABASE_URL names a PostgreSQL database, which `wharf backup` and `wharf restore` \
         do not copy; {instead} (see \"Backups\" in the README)"
    )
}

/// Why a data directory that holds something is refused.
fn not_empty(data_dir: &Path, held: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut listed = held
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if held.len() > SHOWN {
        listed.push_str(&format!(" and {} more", held.len() - SHOWN));
    }
    format!(
        "the data directory {} is not empty (it holds {listed}): restore into a new or empty \
         directory (--data-dir or WHARF_DATA_DIR), so that nothing of another installation mixes \
         with the backup",
        data_dir.display()
    )
}

/// What a database holds, in a few words.
fn describe(summary: &DatabaseSummary) -> String {
    match summary.contents {
        Some(contents) => format!(
            "schema {}, {}, {}, {}",
            summary.schema_version,
            count(contents.services, "service"),
            count(contents.releases, "release"),
            count(contents.sealed_values, "sealed value"),
        ),
        None => format!("schema {}", summary.schema_version),
    }
}

fn count(number: i64, thing: &str) -> String {
    if number == 1 {
        format!("1 {thing}")
    } else {
        format!("{number} {thing}s")
    }
}

/// The sealed values a summary counts; unknown counts as some, so the key is never played down.
fn sealed_values(summary: &DatabaseSummary) -> Option<i64> {
    summary.contents.map(|contents| contents.sealed_values)
}

/// The secret key, as an operator would look for it.
fn key_named(key: &KeySource) -> String {
    match key {
        KeySource::Variable => "the key in WHARF_SECRET_KEY".to_owned(),
        KeySource::File(path) => format!("the key file {} (WHARF_SECRET_KEY_FILE)", path.display()),
        KeySource::DataDir(path) => format!("the key file {}", path.display()),
    }
}

/// What `wharf backup` prints when it made a backup.
fn backed_up(database: &Path, file: &Path, summary: &DatabaseSummary, key: &KeySource) -> String {
    let need = match sealed_values(summary) {
        Some(0) => {
            "it opens no value in this backup yet, but will open those sealed later".to_owned()
        }
        Some(sealed) => format!(
            "without it the {} cannot be opened",
            count(sealed, "sealed value")
        ),
        None => "without it the sealed values cannot be opened".to_owned(),
    };
    format!(
        "Backed up {} to {} ({}).\nThe secret key is not in the backup: keep a copy of {} apart \
         from it; {need}.",
        database.display(),
        file.display(),
        describe(summary),
        key_named(key),
    )
}

/// What `wharf restore` prints when it restored a backup.
fn restored(
    file: &Path,
    database: &Path,
    data_dir: &Path,
    summary: &DatabaseSummary,
    key: &KeySource,
) -> String {
    let first = format!(
        "Restored {} into {} ({}).",
        file.display(),
        database.display(),
        describe(summary)
    );
    let key_line = match (sealed_values(summary), key) {
        (Some(0), _) => "The secret key is not in the backup, which holds no sealed values: the \
                         server makes a new key on its first start."
            .to_owned(),
        (_, KeySource::DataDir(path)) => format!(
            "The secret key is not in the backup. Before `wharf server` starts on {}, put the key \
             you kept at {} (mode 0600) or set WHARF_SECRET_KEY_FILE: the sealed values need it, \
             and the server refuses to start without it.",
            data_dir.display(),
            path.display()
        ),
        (_, key) => format!(
            "The secret key is not in the backup: the server will use {}, which must be the key \
             the values were sealed with.",
            key_named(key)
        ),
    };
    format!("{first}\n{key_line}")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use wharf_store::DatabaseContents;

    use super::*;

    fn summary(sealed_values: i64) -> DatabaseSummary {
        DatabaseSummary {
            schema_version: 9,
            contents: Some(DatabaseContents {
                services: 1,
                releases: 4,
                sealed_values,
            }),
        }
    }

    #[test]
    fn a_backup_says_what_it_holds_and_that_the_key_is_not_in_it() {
        let key = KeySource::DataDir(PathBuf::from("/var/lib/wharf/secret.key"));
        let text = backed_up(
            Path::new("/var/lib/wharf/wharf.db"),
            Path::new("/backups/wharf.db"),
            &summary(2),
            &key,
        );
        assert_eq!(
            text,
            "Backed up /var/lib/wharf/wharf.db to /backups/wharf.db (schema 9, 1 service, \
             4 releases, 2 sealed values).\nThe secret key is not in the backup: keep a copy of \
             the key file /var/lib/wharf/secret.key apart from it; without it the 2 sealed values \
             cannot be opened."
        );
        let text = backed_up(
            Path::new("a.db"),
            Path::new("b.db"),
            &DatabaseSummary {
                schema_version: 7,
                contents: None,
            },
            &KeySource::Variable,
        );
        assert!(text.contains("(schema 7)"), "{text}");
        assert!(
            text.contains("a copy of the key in WHARF_SECRET_KEY"),
            "{text}"
        );
    }

    #[test]
    fn a_restore_says_where_the_key_goes() {
        let data_dir = Path::new("/srv/wharf");
        let in_data_dir = KeySource::DataDir(data_dir.join("secret.key"));
        let text = restored(
            Path::new("backup.db"),
            &data_dir.join("wharf.db"),
            data_dir,
            &summary(3),
            &in_data_dir,
        );
        assert!(
            text.starts_with(
                "Restored backup.db into /srv/wharf/wharf.db (schema 9, 1 service, 4 releases, \
                 3 sealed values).\n"
            ),
            "{text}"
        );
        assert!(text.contains("put the key you kept at /srv/wharf/secret.key (mode 0600)"));
        assert!(text.contains("refuses to start without it"));

        let from_file = KeySource::File(PathBuf::from("/run/secrets/wharf-key"));
        let text = restored(
            Path::new("b.db"),
            Path::new("w.db"),
            data_dir,
            &summary(3),
            &from_file,
        );
        assert!(
            text.contains("the server will use the key file /run/secrets/wharf-key"),
            "{text}"
        );
        let text = restored(
            Path::new("b.db"),
            Path::new("w.db"),
            data_dir,
            &summary(0),
            &in_data_dir,
        );
        assert!(text.contains("holds no sealed values"), "{text}");
    }

    #[test]
    fn postgres_is_sent_to_its_own_tools() {
        assert!(postgres_refusal(Verb::Backup).contains("pg_dump --format=custom"));
        assert!(postgres_refusal(Verb::Restore).contains("pg_restore"));
    }

    #[test]
    fn a_full_data_directory_is_refused_naming_what_it_holds() {
        let held: Vec<String> = ["admin-token", "registry", "secret.key", "wharf.db"]
            .map(str::to_owned)
            .to_vec();
        let text = not_empty(Path::new(".wharf"), &held);
        assert!(
            text.starts_with(
                "the data directory .wharf is not empty (it holds admin-token, registry, \
                 secret.key, wharf.db): restore into a new or empty directory"
            ),
            "{text}"
        );
        let many: Vec<String> = (0..8).map(|index| format!("f{index}")).collect();
        assert!(not_empty(Path::new("d"), &many).contains("f4 and 3 more"));
    }
}
