//! Notifications: the outbox of events, the sinks they go to and each message's deliveries.
//!
//! Events are written in the transaction of the change that causes them: by triggers
//! (migration 0016) for a build that failed, a release that ended live, failed or rolled back,
//! and an agent reported offline or heard from again; by lease expiry and abandoned rollouts
//! for `rollout.stuck` (once per build or rollout, by its `dedupe_key`); by a user's test.
//! [`Store::fan_out_notifications`] decides what becomes of each event in order (the flood rules
//! of `wharf_domain::notification`) and gives every matching sink a delivery row; the delivery
//! loop takes due rows under a lease ([`Store::take_notification_deliveries`]), so two servers
//! never send one message at once and a message whose sender died is taken again when its
//! lease runs out.

use wharf_domain::notification::{Disposition, ServiceHistory, disposition};
use wharf_wire::{
    EmailAddresses, NotificationDelivery, NotificationDeliveryState, NotificationEvent, SinkKind,
    format_millis,
};

use crate::{Result, Store, StoreError, in_transaction, is_unique_violation, on_pool};

/// A sink to add; its URL and secret come sealed.
#[derive(Clone)]
pub struct NewSink {
    pub name: String,
    pub kind: SinkKind,
    /// The URL as shown, without what may hold a token.
    pub url_shown: String,
    pub url_sealed: String,
    pub secret_sealed: Option<String>,
    /// An email sink's recipients and sender.
    pub email: Option<EmailAddresses>,
    pub events: Vec<NotificationEvent>,
    pub services: Vec<String>,
}

/// A stored sink, its URL and secret still sealed, with its deliveries counted.
#[derive(Clone)]
pub struct StoredSink {
    pub id: i64,
    pub name: String,
    pub kind: SinkKind,
    pub url_shown: String,
    pub url_sealed: String,
    pub secret_sealed: Option<String>,
    pub email: Option<EmailAddresses>,
    pub events: Vec<NotificationEvent>,
    pub services: Vec<String>,
    /// Messages waiting for their first or next attempt.
    pub pending: i64,
    /// Messages given up on.
    pub dead: i64,
    pub created_at: i64,
}

/// Everything one delivery needs to be sent: the sink (sealed) and the event it tells of.
#[derive(Clone)]
pub struct NotificationMessage {
    pub delivery_id: i64,
    /// The message's `X-Wharf-Delivery`.
    pub message_id: String,
    /// Attempts begun, this one included.
    pub attempts: i64,
    pub sink_name: String,
    pub sink_kind: SinkKind,
    pub url_sealed: String,
    pub secret_sealed: Option<String>,
    /// An email sink's recipients and sender.
    pub email: Option<EmailAddresses>,
    pub event: NotificationEvent,
    pub disposition: Disposition,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub commit_sha: Option<String>,
    pub build_id: Option<i64>,
    pub release_id: Option<i64>,
    pub agent: Option<String>,
    pub reason: Option<String>,
    /// When the event happened (milliseconds since the epoch).
    pub at: i64,
}

/// How an attempt to send a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryEnd {
    /// The sink took it.
    Delivered { status: i64 },
    /// It failed; try again at `at`.
    RetryAt {
        at: i64,
        status: Option<i64>,
        error: String,
    },
    /// It failed on its last allowed attempt: a dead letter until a user retries it.
    Dead { status: Option<i64>, error: String },
}

/// The outcome events of a service, as an SQL list.
macro_rules! outcome_events {
    () => {
        "('build.failed', 'release.failed', 'release.rolled_back', 'release.live')"
    };
}

/// The failed outcome events of a service, as an SQL list.
macro_rules! failure_events {
    () => {
        "('build.failed', 'release.failed', 'release.rolled_back')"
    };
}

macro_rules! select_sink {
    () => {
        "SELECT k.id, k.name, k.kind, k.url_shown, k.url_sealed, k.secret_sealed, k.email_to, \
         k.email_from, k.events, k.services, k.created_at, \
         (SELECT COUNT(*) FROM notification_deliveries d WHERE d.sink_id = k.id \
          AND d.state = 'pending') AS pending, \
         (SELECT COUNT(*) FROM notification_deliveries d WHERE d.sink_id = k.id \
          AND d.state = 'dead') AS dead \
         FROM notification_sinks k"
    };
}

#[derive(sqlx::FromRow)]
struct SinkRow {
    id: i64,
    name: String,
    kind: String,
    url_shown: String,
    url_sealed: String,
    secret_sealed: Option<String>,
    email_to: Option<String>,
    email_from: Option<String>,
    events: String,
    services: String,
    created_at: i64,
    pending: i64,
    dead: i64,
}

impl From<SinkRow> for StoredSink {
    fn from(row: SinkRow) -> StoredSink {
        StoredSink {
            id: row.id,
            name: row.name,
            kind: SinkKind::parse(&row.kind).unwrap_or(SinkKind::Webhook),
            url_shown: row.url_shown,
            url_sealed: row.url_sealed,
            secret_sealed: row.secret_sealed,
            email: email_addresses(row.email_to, row.email_from),
            events: split_list(&row.events)
                .filter_map(NotificationEvent::parse)
                .collect(),
            services: split_list(&row.services).map(str::to_owned).collect(),
            pending: row.pending,
            dead: row.dead,
            created_at: row.created_at,
        }
    }
}

/// An email sink's addresses from their columns: the recipients one a line.
fn email_addresses(to: Option<String>, from: Option<String>) -> Option<EmailAddresses> {
    Some(EmailAddresses {
        to: to?.lines().map(str::to_owned).collect(),
        from: from?,
    })
}

fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').filter(|item| !item.is_empty())
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: i64,
    message_id: String,
    attempts: i64,
    disposition: String,
    sink_name: String,
    sink_kind: String,
    url_sealed: String,
    secret_sealed: Option<String>,
    email_to: Option<String>,
    email_from: Option<String>,
    event: String,
    service: Option<String>,
    environment: Option<String>,
    commit_sha: Option<String>,
    build_id: Option<i64>,
    release_id: Option<i64>,
    agent: Option<String>,
    reason: Option<String>,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    message_id: String,
    event: String,
    service: Option<String>,
    disposition: String,
    state: String,
    attempts: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    delivered_at: Option<i64>,
}

impl From<DeliveryRow> for NotificationDelivery {
    fn from(row: DeliveryRow) -> NotificationDelivery {
        NotificationDelivery {
            id: row.id,
            message_id: row.message_id,
            event: NotificationEvent::parse(&row.event).unwrap_or(NotificationEvent::Test),
            service: row.service,
            disposition: row.disposition,
            state: NotificationDeliveryState::parse(&row.state)
                .unwrap_or(NotificationDeliveryState::Dead),
            attempts: row.attempts,
            last_status: row.last_status,
            last_error: row.last_error,
            created_at: format_millis(row.created_at),
            delivered_at: row.delivered_at.map(format_millis),
        }
    }
}

/// An event waiting to be fanned out.
#[derive(sqlx::FromRow)]
struct PendingEvent {
    id: i64,
    event: String,
    service_id: Option<i64>,
    environment: Option<String>,
    service: Option<String>,
    sink_id: Option<i64>,
    created_at: i64,
}

/// An arbitrary constant naming the fan-out's lock among PostgreSQL advisory locks: one server
/// fans out at a time, so each service's events are decided in order.
const FAN_OUT_LOCK: i64 = 0x5748_4152_465f_4e4f;

/// Whether `sink` gets `event` of `service`.
fn sink_matches(sink: &StoredSink, event: NotificationEvent, service: Option<&str>) -> bool {
    let event_wanted = sink.events.is_empty() || sink.events.contains(&event);
    let service_wanted = sink.services.is_empty()
        || service.is_some_and(|service| sink.services.iter().any(|name| name == service));
    event_wanted && service_wanted
}

impl Store {
    /// Adds a sink; a name already taken is a conflict.
    pub async fn create_sink(&self, new: &NewSink, now: i64) -> Result<StoredSink> {
        let events: Vec<&str> = new.events.iter().map(|event| event.as_str()).collect();
        let inserted = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO notification_sinks (name, kind, url_shown, url_sealed, secret_sealed, \
                 email_to, email_from, events, services, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&new.name)
            .bind(new.kind.as_str())
            .bind(&new.url_shown)
            .bind(&new.url_sealed)
            .bind(&new.secret_sealed)
            .bind(new.email.as_ref().map(|email| email.to.join("\n")))
            .bind(new.email.as_ref().map(|email| email.from.clone()))
            .bind(events.join(","))
            .bind(new.services.join(","))
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match inserted {
            Ok(()) => {}
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::Conflict(format!(
                    "a notification sink named {} already exists",
                    new.name
                )));
            }
            Err(error) => return Err(error.into()),
        }
        self.sink(&new.name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no notification sink named {}", new.name)))
    }

    /// Every sink, by name.
    pub async fn sinks(&self) -> Result<Vec<StoredSink>> {
        let rows: Vec<SinkRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(select_sink!(), " ORDER BY k.name"))
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(StoredSink::from).collect())
    }

    /// The sink named `name`.
    pub async fn sink(&self, name: &str) -> Result<Option<StoredSink>> {
        let row: Option<SinkRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(select_sink!(), " WHERE k.name = $1"))
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(StoredSink::from))
    }

    /// Removes the sink named `name` with its deliveries; false when there is none.
    pub async fn remove_sink(&self, name: &str) -> Result<bool> {
        let removed = in_transaction!(self, tx => {
            sqlx::query(
                "DELETE FROM notification_deliveries WHERE sink_id IN \
                 (SELECT id FROM notification_sinks WHERE name = $1)",
            )
            .bind(name)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM notification_sinks WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        });
        Ok(removed > 0)
    }

    /// Writes a `test` event for the sink `sink_id` alone; answers its id.
    pub async fn record_test_event(&self, sink_id: i64, now: i64) -> Result<i64> {
        let (id,): (i64,) = on_pool!(self, pool => {
            sqlx::query_as(
                "INSERT INTO notification_events (event, sink_id, reason, created_at) \
                 VALUES ('test', $1, 'a test message, sent on request', $2) RETURNING id",
            )
            .bind(sink_id)
            .bind(now)
            .fetch_one(pool)
            .await?
        });
        Ok(id)
    }

    /// Reports agents not heard from since `silent_since` offline, once each: the trigger on
    /// `offline_since` writes `agent.offline`, and the agent's next sign of life `agent.online`.
    /// Agents never heard from are not reported. Answers their ids.
    pub async fn mark_agents_offline(&self, silent_since: i64, now: i64) -> Result<Vec<i64>> {
        let rows: Vec<(i64,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "UPDATE agents SET offline_since = $2 WHERE offline_since IS NULL \
                 AND last_seen_at IS NOT NULL AND last_seen_at < $1 RETURNING id",
            )
            .bind(silent_since)
            .bind(now)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Decides, in order, what becomes of up to `limit` events not fanned out yet, and gives
    /// every sink that wants one of them a pending delivery, due at `now`. Answers how many
    /// deliveries were made.
    pub async fn fan_out_notifications(&self, now: i64, limit: i64) -> Result<u64> {
        // A plain read first: most looks find nothing, and a read takes no write lock.
        let waiting: Option<(i64,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id FROM notification_events WHERE disposition IS NULL LIMIT 1")
                .fetch_optional(pool)
                .await?
        });
        if waiting.is_none() {
            return Ok(0);
        }
        let lock = self.pick("SELECT $1", "SELECT pg_advisory_xact_lock($1)");
        let made = in_transaction!(self, tx => {
            sqlx::query(lock).bind(FAN_OUT_LOCK).execute(&mut *tx).await?;
            let events: Vec<PendingEvent> = sqlx::query_as(
                "SELECT e.id, e.event, e.service_id, e.environment, s.name AS service, e.sink_id, \
                 e.created_at FROM notification_events e \
                 LEFT JOIN services s ON s.id = e.service_id \
                 WHERE e.disposition IS NULL ORDER BY e.id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let sinks: Vec<StoredSink> = if events.is_empty() {
                Vec::new()
            } else {
                let rows: Vec<SinkRow> = sqlx::query_as(concat!(select_sink!(), " ORDER BY k.id"))
                    .fetch_all(&mut *tx)
                    .await?;
                rows.into_iter().map(StoredSink::from).collect()
            };
            let mut made = 0u64;
            for pending in &events {
                let Some(event) = NotificationEvent::parse(&pending.event) else {
                    sqlx::query("UPDATE notification_events SET disposition = 'suppressed' WHERE id = $1")
                        .bind(pending.id)
                        .execute(&mut *tx)
                        .await?;
                    continue;
                };
                let history = match pending.service_id {
                    Some(service_id) => {
                        let last: Option<(String,)> = sqlx::query_as(concat!(
                            "SELECT event FROM notification_events WHERE service_id = $1 \
                             AND environment = $2 AND id < $3 AND disposition IS NOT NULL \
                             AND event IN ",
                            outcome_events!(),
                            " ORDER BY id DESC LIMIT 1"
                        ))
                        .bind(service_id)
                        .bind(&pending.environment)
                        .bind(pending.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        let (last_failure_message_at,): (Option<i64>,) = sqlx::query_as(concat!(
                            "SELECT MAX(created_at) FROM notification_events WHERE service_id = $1 \
                             AND environment = $2 AND id < $3 \
                             AND disposition IN ('sent', 'still_failing') AND event IN ",
                            failure_events!()
                        ))
                        .bind(service_id)
                        .bind(&pending.environment)
                        .bind(pending.id)
                        .fetch_one(&mut *tx)
                        .await?;
                        ServiceHistory {
                            failing: last
                                .and_then(|(event,)| NotificationEvent::parse(&event))
                                .is_some_and(NotificationEvent::is_failure),
                            last_failure_message_at,
                        }
                    }
                    None => ServiceHistory::default(),
                };
                let decided = disposition(event, history, pending.created_at);
                sqlx::query("UPDATE notification_events SET disposition = $1 WHERE id = $2")
                    .bind(decided.as_str())
                    .bind(pending.id)
                    .execute(&mut *tx)
                    .await?;
                if !decided.is_sent() {
                    continue;
                }
                for sink in &sinks {
                    let wanted = match pending.sink_id {
                        Some(sink_id) => sink.id == sink_id,
                        None => {
                            event != NotificationEvent::Test
                                && sink_matches(sink, event, pending.service.as_deref())
                        }
                    };
                    if !wanted {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO notification_deliveries (sink_id, event_id, disposition, state, \
                         next_at, created_at, updated_at) VALUES ($1, $2, $3, 'pending', $4, $4, $4)",
                    )
                    .bind(sink.id)
                    .bind(pending.id)
                    .bind(decided.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    made += 1;
                }
            }
            made
        });
        Ok(made)
    }

    /// Takes up to `limit` deliveries due at `now`, each under a lease until `now + lease_ms`,
    /// and counts the attempt. Their ids come back in order.
    pub async fn take_notification_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        let due: Option<(i64,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id FROM notification_deliveries WHERE next_at <= $1 LIMIT 1")
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        if due.is_none() {
            return Ok(Vec::new());
        }
        let take = self.pick(
            "UPDATE notification_deliveries SET next_at = $1, attempts = attempts + 1, \
             updated_at = $2 WHERE id IN (SELECT id FROM notification_deliveries \
             WHERE next_at <= $2 ORDER BY next_at, id LIMIT $3) RETURNING id",
            "UPDATE notification_deliveries SET next_at = $1, attempts = attempts + 1, \
             updated_at = $2 WHERE id IN (SELECT id FROM notification_deliveries \
             WHERE next_at <= $2 ORDER BY next_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             AND next_at <= $2 RETURNING id",
        );
        let taken: Vec<(i64,)> = on_pool!(self, pool => {
            sqlx::query_as(take)
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        let mut ids: Vec<i64> = taken.into_iter().map(|(id,)| id).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// What delivery `delivery_id` sends, and to which sink; `None` when it is gone (its sink
    /// was removed).
    pub async fn notification_message(
        &self,
        delivery_id: i64,
    ) -> Result<Option<NotificationMessage>> {
        let row: Option<MessageRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT d.id, d.message_id, d.attempts, d.disposition, k.name AS sink_name, \
                 k.kind AS sink_kind, k.url_sealed, k.secret_sealed, k.email_to, k.email_from, \
                 e.event, s.name AS service, \
                 e.environment, b.commit_sha, e.build_id, e.release_id, a.name AS agent, e.reason, \
                 e.created_at FROM notification_deliveries d \
                 JOIN notification_sinks k ON k.id = d.sink_id \
                 JOIN notification_events e ON e.id = d.event_id \
                 LEFT JOIN services s ON s.id = e.service_id \
                 LEFT JOIN builds b ON b.id = e.build_id \
                 LEFT JOIN agents a ON a.id = e.agent_id WHERE d.id = $1",
            )
            .bind(delivery_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|row| NotificationMessage {
            delivery_id: row.id,
            message_id: row.message_id,
            attempts: row.attempts,
            sink_name: row.sink_name,
            sink_kind: SinkKind::parse(&row.sink_kind).unwrap_or(SinkKind::Webhook),
            url_sealed: row.url_sealed,
            secret_sealed: row.secret_sealed,
            email: email_addresses(row.email_to, row.email_from),
            event: NotificationEvent::parse(&row.event).unwrap_or(NotificationEvent::Test),
            disposition: Disposition::parse(&row.disposition).unwrap_or(Disposition::Sent),
            service: row.service,
            environment: row.environment,
            commit_sha: row.commit_sha,
            build_id: row.build_id,
            release_id: row.release_id,
            agent: row.agent,
            reason: row.reason,
            at: row.created_at,
        }))
    }

    /// Records how an attempt at delivery `delivery_id` ended.
    pub async fn finish_notification_delivery(
        &self,
        delivery_id: i64,
        end: &DeliveryEnd,
        now: i64,
    ) -> Result<()> {
        let (state, next_at, status, error, delivered_at) = match end {
            DeliveryEnd::Delivered { status } => {
                ("delivered", None, Some(*status), None, Some(now))
            }
            DeliveryEnd::RetryAt { at, status, error } => {
                ("pending", Some(*at), *status, Some(error.as_str()), None)
            }
            DeliveryEnd::Dead { status, error } => {
                ("dead", None, *status, Some(error.as_str()), None)
            }
        };
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE notification_deliveries SET state = $1, next_at = $2, last_status = $3, \
                 last_error = $4, delivered_at = $5, updated_at = $6 \
                 WHERE id = $7 AND state = 'pending'",
            )
            .bind(state)
            .bind(next_at)
            .bind(status)
            .bind(error)
            .bind(delivered_at)
            .bind(now)
            .bind(delivery_id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A sink's deliveries, newest first; with `failed_only`, the dead ones and the pending
    /// ones whose last attempt failed.
    pub async fn sink_deliveries(
        &self,
        sink_id: i64,
        failed_only: bool,
        limit: i64,
    ) -> Result<Vec<NotificationDelivery>> {
        let rows: Vec<DeliveryRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT d.id, d.message_id, e.event, s.name AS service, d.disposition, d.state, \
                 d.attempts, d.last_status, d.last_error, d.created_at, d.delivered_at \
                 FROM notification_deliveries d JOIN notification_events e ON e.id = d.event_id \
                 LEFT JOIN services s ON s.id = e.service_id WHERE d.sink_id = $1 \
                 AND (NOT $2 OR d.state = 'dead' OR (d.state = 'pending' AND d.last_error IS NOT NULL)) \
                 ORDER BY d.id DESC LIMIT $3",
            )
            .bind(sink_id)
            .bind(failed_only)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(NotificationDelivery::from).collect())
    }

    /// Makes a sink's dead deliveries pending again, due at `now`, with their attempts counted
    /// from zero; answers how many.
    pub async fn retry_dead_deliveries(&self, sink_id: i64, now: i64) -> Result<i64> {
        let retried = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE notification_deliveries SET state = 'pending', attempts = 0, next_at = $1, \
                 updated_at = $1 WHERE sink_id = $2 AND state = 'dead'",
            )
            .bind(now)
            .bind(sink_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(retried as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(events: Vec<NotificationEvent>, services: &[&str]) -> StoredSink {
        StoredSink {
            id: 1,
            name: "ops".to_owned(),
            kind: SinkKind::Webhook,
            url_shown: String::new(),
            url_sealed: String::new(),
            secret_sealed: None,
            email: None,
            events,
            services: services.iter().map(|name| (*name).to_owned()).collect(),
            pending: 0,
            dead: 0,
            created_at: 0,
        }
    }

    #[test]
    fn sinks_take_the_events_and_services_they_name_or_all() {
        use NotificationEvent::*;
        let everything = sink(Vec::new(), &[]);
        assert!(sink_matches(&everything, BuildFailed, Some("api")));
        assert!(sink_matches(&everything, AgentOffline, None));
        let failures = sink(vec![BuildFailed, ReleaseRolledBack], &["api"]);
        assert!(sink_matches(&failures, BuildFailed, Some("api")));
        assert!(!sink_matches(&failures, ReleaseLive, Some("api")));
        assert!(!sink_matches(&failures, BuildFailed, Some("web")));
        assert!(!sink_matches(&failures, BuildFailed, None));
    }
}
