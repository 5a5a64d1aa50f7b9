//! The delivery loop: fans new outbox events out to the sinks that want them, then sends each
//! due message, under a lease, with retries.
//!
//! Delivery is at least once: a message is marked delivered only after its sink answered 2xx,
//! so a crash in between sends it again, with the same `X-Wharf-Delivery`, and the receiver can
//! drop the repeat. A failed attempt (no answer, or a status other than 2xx; for email, no
//! answer or a 4xx reply) is tried again after a backoff that doubles with each attempt, or
//! after the sink's `Retry-After`; after `notification_max_attempts` the message is a dead
//! letter until a user retries it. A mail server's 5xx reply (a refused recipient or password)
//! makes it a dead letter at once: trying again would get the same answer. All of it
//! lives in the store, so nothing is lost across restarts, and the lease keeps two servers
//! from sending one message at once in the normal case.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use wharf_store::{DeliveryEnd, NotificationMessage};
use wharf_wire::SinkKind;

use super::{Message, discord, email, slack, webhook};
use crate::core::sealing::{notification_secret_context, notification_url_context};
use crate::core::{Core, jobs, now_millis};

/// Messages being sent at once.
const CONCURRENCY: usize = 8;
/// The most events one fan-out decides.
const FAN_OUT_BATCH: i64 = 500;
/// The longest wait a sink may ask for with `Retry-After` that is honoured as asked.
const MAX_REQUESTED_WAIT: Duration = Duration::from_secs(3600);

/// How one attempt went.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Attempt {
    Delivered {
        status: u16,
    },
    /// Worth trying again.
    Failed {
        status: Option<u16>,
        retry_after: Option<Duration>,
        error: String,
    },
    /// Refused for good: trying again would get the same answer until a person acts.
    Refused {
        status: Option<u16>,
        error: String,
    },
}

/// Runs until shutdown.
pub(crate) async fn run(core: Core, mut shutdown: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder()
        .timeout(core.config.notification_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Wharf/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot make the notifications' HTTP client");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut wake_ups = core.signals.notifications.subscribe();
    // A build's or a release's state changed: the triggers may have written an event.
    let mut changes = core.signals.states.subscribe();
    loop {
        wake_ups.borrow_and_update();
        changes.borrow_and_update();
        let now = now_millis();
        if let Err(error) = core.store.fan_out_notifications(now, FAN_OUT_BATCH).await {
            tracing::error!(%error, "cannot fan notification events out");
        }
        let free = slots.available_permits();
        if free > 0 {
            let lease = core.config.notification_lease.as_millis() as i64;
            match core
                .store
                .take_notification_deliveries(now, lease, free as i64)
                .await
            {
                Ok(ids) => {
                    for id in ids {
                        let Ok(slot) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        let (core, client) = (core.clone(), client.clone());
                        tokio::spawn(async move {
                            send_one(&core, &client, id).await;
                            drop(slot);
                            core.signals.notifications.notify();
                        });
                    }
                }
                Err(error) => tracing::error!(%error, "cannot take notifications to send"),
            }
        }
        tokio::select! {
            _ = wake_ups.changed() => {}
            _ = changes.changed() => {}
            _ = tokio::time::sleep(core.config.notification_interval) => {}
            _ = jobs::stopped(&mut shutdown) => return,
        }
    }
}

/// One attempt at delivery `id`, which the store handed out, and its outcome recorded.
async fn send_one(core: &Core, client: &reqwest::Client, id: i64) {
    let stored = match core.store.notification_message(id).await {
        Ok(Some(stored)) => stored,
        // Its sink was removed meanwhile.
        Ok(None) => return,
        Err(error) => {
            // The lease brings it back later.
            tracing::error!(delivery = id, %error, "cannot read a notification to send");
            return;
        }
    };
    let attempt = match attempt(core, client, &stored).await {
        Ok(attempt) => attempt,
        Err(error) => Attempt::Failed {
            status: None,
            retry_after: None,
            error,
        },
    };
    let now = now_millis();
    let end = outcome(core, &stored, attempt, now);
    match &end {
        DeliveryEnd::Delivered { .. } => {
            tracing::debug!(sink = %stored.sink_name, delivery = id, "notification delivered")
        }
        DeliveryEnd::RetryAt { error, .. } => {
            tracing::warn!(sink = %stored.sink_name, delivery = id, %error, "notification not delivered; it will be sent again")
        }
        DeliveryEnd::Dead { error, .. } => {
            tracing::error!(sink = %stored.sink_name, delivery = id, %error, "notification given up on after its last attempt")
        }
    }
    if let Err(error) = core.store.finish_notification_delivery(id, &end, now).await {
        tracing::error!(delivery = id, %error, "cannot record a notification's delivery");
    }
}

/// What an attempt's result makes of the delivery.
fn outcome(core: &Core, stored: &NotificationMessage, attempt: Attempt, now: i64) -> DeliveryEnd {
    match attempt {
        Attempt::Delivered { status } => DeliveryEnd::Delivered {
            status: i64::from(status),
        },
        Attempt::Refused { status, error } => DeliveryEnd::Dead {
            status: status.map(i64::from),
            error,
        },
        Attempt::Failed {
            status,
            retry_after,
            error,
        } => {
            let status = status.map(i64::from);
            if stored.attempts >= core.config.notification_max_attempts {
                DeliveryEnd::Dead { status, error }
            } else {
                let attempts = u32::try_from(stored.attempts).unwrap_or(u32::MAX);
                let wait = retry_after
                    .map(|wait| wait.min(MAX_REQUESTED_WAIT))
                    .unwrap_or_else(|| core.config.notification_retry.delay(attempts));
                DeliveryEnd::RetryAt {
                    at: now + wait.as_millis() as i64,
                    status,
                    error,
                }
            }
        }
    }
}

/// Sends the message once; `Err` when it cannot be sent at all (a secret that does not open).
async fn attempt(
    core: &Core,
    client: &reqwest::Client,
    stored: &NotificationMessage,
) -> Result<Attempt, String> {
    let key = &core.config.sealing_key;
    let url = key
        .open(
            &notification_url_context(&stored.sink_name),
            &stored.url_sealed,
        )
        .map_err(|error| error.to_string())?;
    let message = Message::of(stored, &core.config.public_url);
    let (body, headers) = match stored.sink_kind {
        SinkKind::Email => {
            let password = stored
                .secret_sealed
                .as_deref()
                .map(|sealed| key.open(&notification_secret_context(&stored.sink_name), sealed))
                .transpose()
                .map_err(|error| error.to_string())?;
            return Ok(send_email(core, stored, &message, &url, password.as_deref()).await);
        }
        SinkKind::Webhook => {
            let secret = stored
                .secret_sealed
                .as_deref()
                .map(|sealed| key.open(&notification_secret_context(&stored.sink_name), sealed))
                .transpose()
                .map_err(|error| error.to_string())?
                .unwrap_or_default();
            let body = webhook::body(&message).to_string();
            let timestamp = now_millis().div_euclid(1000);
            let headers = webhook::headers(
                &message,
                &stored.message_id,
                &secret,
                timestamp,
                body.as_bytes(),
            );
            (body, headers)
        }
        SinkKind::Slack => (slack::body(&message).to_string(), Vec::new()),
        SinkKind::Discord => (discord::body(&message).to_string(), Vec::new()),
        // Never stored: the GitHub reporter sends what the built-in sink carries.
        SinkKind::Github => return Err("the github sink is not sent from the outbox".to_owned()),
    };
    let mut request = client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    Ok(match request.send().await {
        Ok(response) if response.status().is_success() => Attempt::Delivered {
            status: response.status().as_u16(),
        },
        Ok(response) => {
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| retry_after(value, std::time::SystemTime::now()));
            Attempt::Failed {
                status: Some(status.as_u16()),
                retry_after,
                error: format!("the sink answered {status}"),
            }
        }
        // The error says which host it could not reach, never the URL's path or query.
        Err(error) => Attempt::Failed {
            status: None,
            retry_after: None,
            error: describe(error),
        },
    })
}

/// One attempt at an email: the sink's URL names its SMTP server.
async fn send_email(
    core: &Core,
    stored: &NotificationMessage,
    message: &Message,
    url: &str,
    password: Option<&str>,
) -> Attempt {
    let refused = |error: String| Attempt::Refused {
        status: None,
        error,
    };
    let server = match email::SmtpServer::parse(url) {
        Ok(server) => server,
        Err(error) => return refused(error),
    };
    let Some(addresses) = &stored.email else {
        return refused("the email sink has no addresses".to_owned());
    };
    let domain = reqwest::Url::parse(&core.config.public_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "wharf.invalid".to_owned());
    let letter = match email::letter(message, addresses, &stored.message_id, &domain) {
        Ok(letter) => letter,
        Err(error) => return refused(error),
    };
    let mailer = email::Mailer {
        extra_ca_pem: core.config.smtp_ca_pem.as_deref(),
        timeout: core.config.notification_timeout,
        domain: &domain,
    };
    email::send(&mailer, &server, password, letter).await
}

/// A failed request in one line, without its URL (which may hold a token).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    wharf_wire::text::clip_owned(text, wharf_wire::text::REASON_CHARS)
}

/// A `Retry-After` value: seconds, or an HTTP date after `now`.
fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
    }
}
