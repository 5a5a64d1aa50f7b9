//! Logs: a build's lines, appended by the agent that holds the build, and a release's deploy
//! log, appended by the agents rolling it out; in order, up to a size limit per build or
//! release, after which one note says the log was cut and further lines are dropped.

use wharf_wire::{LogLine, LogStream, NewLogLine, ReleaseState, format_millis};

use crate::{Result, Store, StoreError, in_transaction, on_pool};

/// Where a log is kept: the table of its lines and the row of what it belongs to (a build, a
/// release), which counts its bytes and says whether it reached its limit.
struct LogTables {
    /// The number of the owner's last line (`$1` the owner's id).
    last_seq: &'static str,
    /// Inserts one line: the owner's id, the line's number, stream, text and time as `$1`…`$5`,
    /// then the extra values [`append_lines!`] is given.
    insert: &'static str,
    /// Sets the owner's byte count and whether its log was cut (`$1`, `$2`) on row `$3`.
    account: &'static str,
}

const BUILD_LOG: LogTables = LogTables {
    last_seq: "SELECT COALESCE(MAX(seq), 0) FROM build_logs WHERE build_id = $1",
    insert: "INSERT INTO build_logs (build_id, seq, stream, line, at) VALUES ($1, $2, $3, $4, $5)",
    account: "UPDATE builds SET log_bytes = $1, log_truncated = $2 WHERE id = $3",
};

const RELEASE_LOG: LogTables = LogTables {
    last_seq: "SELECT COALESCE(MAX(seq), 0) FROM release_logs WHERE release_id = $1",
    insert: "INSERT INTO release_logs (release_id, seq, stream, line, at, rollout_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
    account: "UPDATE releases SET log_bytes = $1, log_truncated = $2 WHERE id = $3",
};

/// Appends `$lines` to the log `$tables` keeps for `$owner`, which holds `$log_bytes` bytes so
/// far, up to `$max_bytes`; at the limit, a note says so and the rest is dropped. Numbers the
/// lines after the owner's last, counts their bytes on the owner's row, and gives the
/// [`AppendOutcome`].
macro_rules! append_lines {
    ($tx:ident, $tables:expr, $owner:expr, $log_bytes:expr, $lines:expr, $max_bytes:expr, $now:expr $(, $extra:expr)*) => {{
        let tables: &LogTables = $tables;
        let (mut seq,): (i64,) = sqlx::query_as(tables.last_seq)
            .bind($owner)
            .fetch_one(&mut *$tx)
            .await?;
        let mut log_bytes = $log_bytes;
        let mut stored = 0;
        let mut truncated = false;
        for line in $lines {
            seq += 1;
            let size = line_bytes(line);
            let (stream, text) = if log_bytes + size > $max_bytes {
                truncated = true;
                ("wharf", limit_note($max_bytes))
            } else {
                (line.stream.as_str(), line.text.clone())
            };
            sqlx::query(tables.insert)
                .bind($owner)
                .bind(seq)
                .bind(stream)
                .bind(text)
                .bind($now)
                $(.bind($extra))*
                .execute(&mut *$tx)
                .await?;
            if truncated {
                break;
            }
            log_bytes += size;
            stored += 1;
        }
        sqlx::query(tables.account)
            .bind(log_bytes)
            .bind(truncated)
            .bind($owner)
            .execute(&mut *$tx)
            .await?;
        AppendOutcome { stored, truncated }
    }};
}

/// The bytes a line counts for against a log's limit.
fn line_bytes(line: &NewLogLine) -> i64 {
    line.text.len() as i64 + 1
}

/// The note that ends a log cut at its limit.
fn limit_note(max_bytes: i64) -> String {
    format!(
        "The log reached its limit of {} MiB; later lines are not kept.",
        max_bytes / (1024 * 1024)
    )
}

/// What appending did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub stored: usize,
    /// True once the limit is reached.
    pub truncated: bool,
}

impl Store {
    /// Appends lines to a build's log if `agent_id` holds the build; stops at `max_bytes` of
    /// stored text per build and records a note saying so.
    pub async fn append_logs(
        &self,
        build_id: i64,
        agent_id: i64,
        lines: &[NewLogLine],
        max_bytes: i64,
        now: i64,
    ) -> Result<AppendOutcome> {
        let outcome = in_transaction!(self, tx => {
            let row: Option<(i64, bool, String, Option<i64>)> = sqlx::query_as(
                "SELECT log_bytes, log_truncated, state, agent_id FROM builds WHERE id = $1",
            )
            .bind(build_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((log_bytes, truncated, state, holder)) = row else {
                return Err(StoreError::NotFound(format!("no build #{build_id}")));
            };
            let leased = matches!(state.as_str(), "claimed" | "cloning" | "building" | "pushing");
            if holder != Some(agent_id) || !leased {
                return Err(StoreError::Conflict(format!(
                    "build #{build_id} is not leased to this agent (it is {state})"
                )));
            }
            if truncated {
                return Ok(AppendOutcome { stored: 0, truncated: true });
            }
            append_lines!(tx, &BUILD_LOG, build_id, log_bytes, lines, max_bytes, now)
        });
        Ok(outcome)
    }

    /// Appends lines to the deploy log of rollout `rollout_id`'s release if `agent_id` runs the
    /// rollout now; stops at `max_bytes` of stored text per release and records a note saying so.
    pub async fn append_release_logs(
        &self,
        rollout_id: i64,
        agent_id: i64,
        lines: &[NewLogLine],
        max_bytes: i64,
        now: i64,
    ) -> Result<AppendOutcome> {
        let outcome = in_transaction!(self, tx => {
            let rollout: Option<(i64, i64, String)> =
                sqlx::query_as("SELECT release_id, agent_id, state FROM rollouts WHERE id = $1")
                    .bind(rollout_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((release_id, holder, state)) = rollout else {
                return Err(StoreError::NotFound(format!("no rollout #{rollout_id}")));
            };
            let rolling_out = ReleaseState::parse(&state).is_some_and(ReleaseState::is_rolling_out);
            if holder != agent_id || !rolling_out {
                return Err(StoreError::Conflict(format!(
                    "rollout #{rollout_id} is not in progress on this agent (it is {state})"
                )));
            }
            // Taking the release's row first makes appends of its hosts wait on each other, so
            // each numbers its lines after the other's.
            let (log_bytes, truncated): (i64, bool) = sqlx::query_as(
                "UPDATE releases SET log_bytes = log_bytes WHERE id = $1 \
                 RETURNING log_bytes, log_truncated",
            )
            .bind(release_id)
            .fetch_one(&mut *tx)
            .await?;
            if truncated {
                return Ok(AppendOutcome { stored: 0, truncated: true });
            }
            append_lines!(tx, &RELEASE_LOG, release_id, log_bytes, lines, max_bytes, now, rollout_id)
        });
        Ok(outcome)
    }

    /// The lines of a release's deploy log after `after`, at most `limit`, each naming its host;
    /// and whether the log reached its limit.
    pub async fn release_logs_after(
        &self,
        release_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<LogLine>, bool)> {
        let rows: Vec<(i64, String, String, i64, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT l.seq, l.stream, l.line, l.at, a.name FROM release_logs l \
                 JOIN rollouts o ON o.id = l.rollout_id JOIN agents a ON a.id = o.agent_id \
                 WHERE l.release_id = $1 AND l.seq > $2 ORDER BY l.seq LIMIT $3",
            )
            .bind(release_id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let truncated: Option<(bool,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT log_truncated FROM releases WHERE id = $1")
                .bind(release_id)
                .fetch_optional(pool)
                .await?
        });
        let Some((truncated,)) = truncated else {
            return Err(StoreError::NotFound(format!("no release #{release_id}")));
        };
        let lines = rows
            .into_iter()
            .map(|(seq, stream, text, at, host)| LogLine {
                seq,
                stream: LogStream::parse(&stream).unwrap_or(LogStream::Wharf),
                text,
                at: format_millis(at),
                host: Some(host),
            })
            .collect();
        Ok((lines, truncated))
    }

    /// The lines of a build's log after `after`, at most `limit`.
    pub async fn logs_after(&self, build_id: i64, after: i64, limit: i64) -> Result<Vec<LogLine>> {
        let rows: Vec<BuildLogRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT seq, stream, line, at FROM build_logs WHERE build_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
            )
            .bind(build_id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(build_log_line).collect())
    }

    /// The first `limit` lines Wharf itself wrote into a build's log: where each step began
    /// (fetching, building, pushed) and how the build ended.
    pub async fn build_notes(&self, build_id: i64, limit: i64) -> Result<Vec<LogLine>> {
        let rows: Vec<BuildLogRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT seq, stream, line, at FROM build_logs WHERE build_id = $1 \
                 AND stream = 'wharf' ORDER BY seq LIMIT $2",
            )
            .bind(build_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(build_log_line).collect())
    }
}

/// A stored line of a build's log: its number, stream, text and time.
type BuildLogRow = (i64, String, String, i64);

fn build_log_line((seq, stream, text, at): BuildLogRow) -> LogLine {
    LogLine {
        seq,
        stream: LogStream::parse(&stream).unwrap_or(LogStream::Wharf),
        text,
        at: format_millis(at),
        host: None,
    }
}
