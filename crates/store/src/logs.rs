//! Build logs: lines appended by the agent that holds the build, in order, up to a size limit
//! per build, after which one note says the log was cut and further lines are dropped.

use wharf_wire::{LogLine, LogStream, NewLogLine, format_millis};

use crate::{Result, Store, StoreError, in_transaction, on_pool};

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
            let Some((mut log_bytes, truncated, state, holder)) = row else {
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
            let (mut seq,): (i64,) =
                sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM build_logs WHERE build_id = $1")
                    .bind(build_id)
                    .fetch_one(&mut *tx)
                    .await?;
            let mut stored = 0;
            let mut now_truncated = false;
            for line in lines {
                let size = line.text.len() as i64 + 1;
                seq += 1;
                if log_bytes + size > max_bytes {
                    sqlx::query(
                        "INSERT INTO build_logs (build_id, seq, stream, line, at) VALUES ($1, $2, 'wharf', $3, $4)",
                    )
                    .bind(build_id)
                    .bind(seq)
                    .bind(format!(
                        "The log reached its limit of {} MiB; later lines are not kept.",
                        max_bytes / (1024 * 1024)
                    ))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    now_truncated = true;
                    break;
                }
                sqlx::query("INSERT INTO build_logs (build_id, seq, stream, line, at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(build_id)
                    .bind(seq)
                    .bind(line.stream.as_str())
                    .bind(&line.text)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                log_bytes += size;
                stored += 1;
            }
            sqlx::query("UPDATE builds SET log_bytes = $1, log_truncated = $2 WHERE id = $3")
                .bind(log_bytes)
                .bind(now_truncated)
                .bind(build_id)
                .execute(&mut *tx)
                .await?;
            AppendOutcome { stored, truncated: now_truncated }
        });
        Ok(outcome)
    }

    /// The lines of a build's log after `after`, at most `limit`.
    pub async fn logs_after(&self, build_id: i64, after: i64, limit: i64) -> Result<Vec<LogLine>> {
        let rows: Vec<(i64, String, String, i64)> = on_pool!(self, pool => {
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
        Ok(rows
            .into_iter()
            .map(|(seq, stream, text, at)| LogLine {
                seq,
                stream: LogStream::parse(&stream).unwrap_or(LogStream::Wharf),
                text,
                at: format_millis(at),
            })
            .collect())
    }
}
