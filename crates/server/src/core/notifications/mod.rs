//! Notifications: the sinks a user adds (a generic webhook, Slack, Discord, email), the messages
//! Wharf sends them, and the delivery loop (`delivery`) that sends them; and GitHub, the sink
//! built in while a GitHub App is configured (`github`).
//!
//! The store's outbox holds the events, written with the changes that cause them; the loop
//! fans them out to the sinks that want them (one message per outcome, repeated failures kept
//! quiet, recoveries marked) and sends each message with retries until the sink takes it or
//! it becomes a dead letter. Each sink kind renders a message in its own module, as a pure
//! function of the [`Message`]: `webhook` (Wharf's signed JSON), `slack`, `discord` and
//! `email` (a plain-text and an HTML part, handed to an SMTP server over STARTTLS).

pub(crate) mod delivery;
mod discord;
mod email;
mod github;
mod slack;
mod webhook;

use rand::distr::{Alphanumeric, SampleString};
use wharf_domain::deployment::build_log_url;
use wharf_domain::notification::Disposition;
use wharf_store::{NewSink, NotificationMessage, StoredSink};
use wharf_wire::{
    CreateSink, NotificationDelivery, NotificationEvent, NotificationSink, SecretText, SinkCreated,
    SinkKind, SinkRetried, SinkTested, format_millis,
};

use crate::core::sealing::{notification_secret_context, notification_url_context};
use crate::core::{Core, CoreError, now_millis};

/// The most deliveries a listing shows.
const DELIVERIES_LISTED: i64 = 100;

/// What one message tells, whichever sink it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub event: NotificationEvent,
    pub disposition: Disposition,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub commit: Option<String>,
    pub build: Option<i64>,
    pub release: Option<i64>,
    pub agent: Option<String>,
    /// The build's page, when the event has a build.
    pub url: Option<String>,
    pub reason: Option<String>,
    /// When the event happened, in milliseconds since the epoch.
    pub at: i64,
}

impl Message {
    /// The message of a stored delivery; links point below `public_url`.
    pub fn of(stored: &NotificationMessage, public_url: &str) -> Message {
        Message {
            event: stored.event,
            disposition: stored.disposition,
            service: stored.service.clone(),
            environment: stored.environment.clone(),
            commit: stored.commit_sha.clone(),
            build: stored.build_id,
            release: stored.release_id,
            agent: stored.agent.clone(),
            url: stored
                .build_id
                .map(|build| build_log_url(public_url, build)),
            reason: stored.reason.clone(),
            at: stored.at,
        }
    }

    /// One line saying what happened, for people: `web (production): release #4 is live again`.
    pub fn title(&self) -> String {
        let subject = match (&self.service, &self.environment, &self.agent) {
            (Some(service), Some(environment), _) => format!("{service} ({environment})"),
            (Some(service), None, _) => service.clone(),
            (None, _, Some(agent)) => format!("agent {agent}"),
            (None, _, None) => "Wharf".to_owned(),
        };
        let release = self
            .release
            .map_or_else(|| "a release".to_owned(), |id| format!("release #{id}"));
        let build = self
            .build
            .map_or_else(|| "a build".to_owned(), |id| format!("build #{id}"));
        let still = if self.disposition == Disposition::StillFailing {
            " (still failing)"
        } else {
            ""
        };
        let what = match self.event {
            NotificationEvent::BuildFailed => format!("{build} failed{still}"),
            NotificationEvent::ReleaseLive if self.disposition == Disposition::Recovered => {
                format!("{release} is live: recovered")
            }
            NotificationEvent::ReleaseLive => format!("{release} is live"),
            NotificationEvent::ReleaseFailed => format!("{release} failed{still}"),
            NotificationEvent::ReleaseRolledBack => format!("{release} was rolled back{still}"),
            NotificationEvent::RolloutStuck if self.release.is_some() => {
                format!("{release} is stuck")
            }
            NotificationEvent::RolloutStuck => format!("{build} is stuck"),
            NotificationEvent::AgentOffline => "is offline".to_owned(),
            NotificationEvent::AgentOnline => "is back online".to_owned(),
            NotificationEvent::Test => "a test message".to_owned(),
            NotificationEvent::Deployment => format!("{build} on GitHub"),
        };
        format!("{subject}: {what}")
    }

    /// The colour of the outcome, as `0xRRGGBB`: green when it works, red when it failed,
    /// amber when something is stuck or away, grey for a test.
    pub fn colour(&self) -> u32 {
        match self.event {
            NotificationEvent::ReleaseLive | NotificationEvent::AgentOnline => 0x2EB67D,
            NotificationEvent::BuildFailed
            | NotificationEvent::ReleaseFailed
            | NotificationEvent::ReleaseRolledBack => 0xE01E5A,
            NotificationEvent::RolloutStuck | NotificationEvent::AgentOffline => 0xECB22E,
            NotificationEvent::Test | NotificationEvent::Deployment => 0x868686,
        }
    }

    /// The details under the title: the reason and the commit.
    pub fn details(&self) -> String {
        let mut lines = Vec::new();
        if let Some(reason) = &self.reason {
            lines.push(reason.clone());
        }
        if let Some(commit) = &self.commit {
            lines.push(format!(
                "commit {}",
                commit.chars().take(12).collect::<String>()
            ));
        }
        lines.join("\n")
    }

    /// When it happened, in Unix seconds.
    pub fn unix_seconds(&self) -> i64 {
        self.at.div_euclid(1000)
    }
}

/// The URL as a listing shows it: whole for a webhook with nothing that may hold a token (no
/// user, password or query), else only its scheme and host.
fn shown_url(kind: SinkKind, url: &reqwest::Url) -> String {
    let plain = kind == SinkKind::Webhook
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none();
    if plain {
        url.to_string()
    } else {
        let port = url
            .port()
            .map(|port| format!(":{port}"))
            .unwrap_or_default();
        format!(
            "{}://{}{port}/…",
            url.scheme(),
            url.host_str().unwrap_or_default()
        )
    }
}

/// A sink's name: 1 to 63 lowercase letters, digits and `-`.
fn check_sink_name(name: &str) -> Result<(), CoreError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(CoreError::Invalid(format!(
            "{name:?} is not a sink name: use 1 to 63 lowercase letters, digits and -"
        )))
    }
}

/// The events a new sink asks for, each once; only those a sink may ask for.
fn wanted_events(request: &CreateSink) -> Result<Vec<NotificationEvent>, CoreError> {
    let mut events = request.events.clone();
    events.dedup();
    match events
        .iter()
        .find(|event| !NotificationEvent::ALL.contains(event))
    {
        Some(event) => Err(CoreError::Invalid(format!(
            "a sink cannot ask for {event}: it is the built-in github sink's"
        ))),
        None => Ok(events),
    }
}

fn shown(sink: StoredSink) -> NotificationSink {
    NotificationSink {
        name: sink.name,
        kind: sink.kind,
        url: sink.url_shown,
        email: sink.email,
        events: sink.events,
        services: sink.services,
        pending: sink.pending,
        dead: sink.dead,
        created_at: format_millis(sink.created_at),
    }
}

impl Core {
    /// Adds a sink, its URL and secret sealed; a webhook given no secret gets a generated one,
    /// answered this once. An email sink's URL names its SMTP server, and its secret is the
    /// password of the user the URL names.
    pub async fn create_sink(&self, request: &CreateSink) -> Result<SinkCreated, CoreError> {
        check_sink_name(&request.name)?;
        if request.name == github::SINK || request.kind == SinkKind::Github {
            return Err(CoreError::Conflict(github::BUILT_IN.to_owned()));
        }
        if request.kind == SinkKind::Email {
            return self.create_email_sink(request).await;
        }
        if request.email.is_some() {
            return Err(CoreError::Invalid(
                "only an email sink takes addresses".to_owned(),
            ));
        }
        let url = reqwest::Url::parse(request.url.expose())
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
            .ok_or_else(|| {
                CoreError::Invalid("the sink's URL must be an http:// or https:// URL".to_owned())
            })?;
        for service in &request.services {
            wharf_domain::names::DnsLabel::parse("service name", service)?;
        }
        let (secret, generated) = match (request.kind, &request.secret) {
            (SinkKind::Webhook, Some(secret)) if secret.expose().is_empty() => {
                return Err(CoreError::Invalid(
                    "the webhook's secret is empty".to_owned(),
                ));
            }
            (SinkKind::Webhook, Some(secret)) => (Some(secret.expose().to_owned()), false),
            (SinkKind::Webhook, None) => (
                Some(format!(
                    "whn_{}",
                    Alphanumeric.sample_string(&mut rand::rng(), 40)
                )),
                true,
            ),
            (_, Some(_)) => {
                return Err(CoreError::Invalid(
                    "only a webhook or an email sink takes a secret: Slack and Discord URLs hold their own"
                        .to_owned(),
                ));
            }
            (_, None) => (None, false),
        };
        let key = &self.config.sealing_key;
        let url_sealed = key.seal(
            &notification_url_context(&request.name),
            request.url.expose(),
        )?;
        let secret_sealed = secret
            .as_deref()
            .map(|secret| key.seal(&notification_secret_context(&request.name), secret))
            .transpose()?;
        let stored = self
            .store
            .create_sink(
                &NewSink {
                    name: request.name.clone(),
                    kind: request.kind,
                    url_shown: shown_url(request.kind, &url),
                    url_sealed,
                    secret_sealed,
                    email: None,
                    events: wanted_events(request)?,
                    services: request.services.clone(),
                },
                now_millis(),
            )
            .await?;
        Ok(SinkCreated {
            sink: shown(stored),
            generated_secret: secret.filter(|_| generated).map(SecretText::new),
        })
    }

    /// Adds an email sink: its SMTP server's URL and password sealed, its addresses checked.
    async fn create_email_sink(&self, request: &CreateSink) -> Result<SinkCreated, CoreError> {
        let server = email::SmtpServer::parse(request.url.expose()).map_err(CoreError::Invalid)?;
        let addresses = request.email.clone().ok_or_else(|| {
            CoreError::Invalid("an email sink needs its recipients and its sender".to_owned())
        })?;
        email::check_addresses(&addresses).map_err(CoreError::Invalid)?;
        for service in &request.services {
            wharf_domain::names::DnsLabel::parse("service name", service)?;
        }
        let password = match (&server.user, &request.secret) {
            (Some(_), Some(password)) if !password.expose().is_empty() => Some(password.expose()),
            (Some(user), _) => {
                return Err(CoreError::Invalid(format!(
                    "the SMTP URL names the user {user}: give its password"
                )));
            }
            (None, Some(_)) => {
                return Err(CoreError::Invalid(
                    "a password needs a user: name it in the URL, smtp://USER@HOST".to_owned(),
                ));
            }
            (None, None) => None,
        };
        let key = &self.config.sealing_key;
        let url_sealed = key.seal(
            &notification_url_context(&request.name),
            request.url.expose(),
        )?;
        let secret_sealed = password
            .map(|password| key.seal(&notification_secret_context(&request.name), password))
            .transpose()?;
        let stored = self
            .store
            .create_sink(
                &NewSink {
                    name: request.name.clone(),
                    kind: SinkKind::Email,
                    url_shown: server.shown(),
                    url_sealed,
                    secret_sealed,
                    email: Some(addresses),
                    events: wanted_events(request)?,
                    services: request.services.clone(),
                },
                now_millis(),
            )
            .await?;
        Ok(SinkCreated {
            sink: shown(stored),
            generated_secret: None,
        })
    }

    /// Every sink, by name, GitHub's among them while a GitHub App is configured.
    pub async fn sinks(&self) -> Result<Vec<NotificationSink>, CoreError> {
        let mut sinks: Vec<NotificationSink> =
            self.store.sinks().await?.into_iter().map(shown).collect();
        if let Some(github) = self.github_sink().await? {
            let at = sinks.partition_point(|sink| sink.name.as_str() < github::SINK);
            sinks.insert(at, github);
        }
        Ok(sinks)
    }

    async fn stored_sink(&self, name: &str) -> Result<StoredSink, CoreError> {
        self.store
            .sink(name)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("no notification sink named {name}")))
    }

    /// Removes a sink and its deliveries; answers the sinks left.
    pub async fn remove_sink(&self, name: &str) -> Result<Vec<NotificationSink>, CoreError> {
        if self.is_github_sink(name) {
            return Err(CoreError::Conflict(github::BUILT_IN.to_owned()));
        }
        if !self.store.remove_sink(name).await? {
            return Err(CoreError::NotFound(format!(
                "no notification sink named {name}"
            )));
        }
        self.sinks().await
    }

    /// Writes a `test` event for one sink and wakes the delivery loop.
    pub async fn test_sink(&self, name: &str) -> Result<SinkTested, CoreError> {
        if self.is_github_sink(name) {
            return Err(CoreError::Conflict(github::NO_TEST.to_owned()));
        }
        let sink = self.stored_sink(name).await?;
        let event_id = self.store.record_test_event(sink.id, now_millis()).await?;
        self.signals.notifications.notify();
        Ok(SinkTested {
            sink: sink.name,
            event_id,
        })
    }

    /// A sink's messages, newest first; with `failed_only`, the dead ones and those whose last
    /// attempt failed.
    pub async fn sink_deliveries(
        &self,
        name: &str,
        failed_only: bool,
    ) -> Result<Vec<NotificationDelivery>, CoreError> {
        if self.is_github_sink(name) {
            return Ok(self
                .store
                .github_report_deliveries(failed_only, DELIVERIES_LISTED)
                .await?);
        }
        let sink = self.stored_sink(name).await?;
        Ok(self
            .store
            .sink_deliveries(sink.id, failed_only, DELIVERIES_LISTED)
            .await?)
    }

    /// Makes a sink's dead messages pending again and wakes the delivery loop.
    pub async fn retry_sink(&self, name: &str) -> Result<SinkRetried, CoreError> {
        if self.is_github_sink(name) {
            return self.retry_github_sink().await;
        }
        let sink = self.stored_sink(name).await?;
        let retried = self
            .store
            .retry_dead_deliveries(sink.id, now_millis())
            .await?;
        self.signals.notifications.notify();
        Ok(SinkRetried {
            sink: sink.name,
            retried,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn sample(event: NotificationEvent, disposition: Disposition) -> Message {
        Message {
            event,
            disposition,
            service: Some("web".to_owned()),
            environment: Some("production".to_owned()),
            commit: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
            build: Some(7),
            release: Some(4),
            agent: None,
            url: Some("https://wharf.example.com/builds/7".to_owned()),
            reason: Some("the health check failed 3 times".to_owned()),
            at: 1_800_000_000_123,
        }
    }

    #[test]
    fn titles_say_what_happened_to_what() {
        use NotificationEvent::*;
        assert_eq!(
            sample(ReleaseRolledBack, Disposition::Sent).title(),
            "web (production): release #4 was rolled back"
        );
        assert_eq!(
            sample(ReleaseLive, Disposition::Recovered).title(),
            "web (production): release #4 is live: recovered"
        );
        assert_eq!(
            sample(BuildFailed, Disposition::StillFailing).title(),
            "web (production): build #7 failed (still failing)"
        );
        let offline = Message {
            service: None,
            environment: None,
            agent: Some("edge-1".to_owned()),
            ..sample(AgentOffline, Disposition::Sent)
        };
        assert_eq!(offline.title(), "agent edge-1: is offline");
    }

    #[test]
    fn urls_holding_a_token_are_shown_without_it() {
        let parse = |text| reqwest::Url::parse(text).unwrap();
        assert_eq!(
            shown_url(
                SinkKind::Webhook,
                &parse("https://ops.example.com/hooks/wharf")
            ),
            "https://ops.example.com/hooks/wharf"
        );
        assert_eq!(
            shown_url(
                SinkKind::Webhook,
                &parse("https://ops.example.com/h?token=x")
            ),
            "https://ops.example.com/…"
        );
        assert_eq!(
            shown_url(SinkKind::Webhook, &parse("http://user:pw@127.0.0.1:9000/h")),
            "http://127.0.0.1:9000/…"
        );
        assert_eq!(
            shown_url(
                SinkKind::Slack,
                &parse("https://hooks.slack.com/services/T/B/X")
            ),
            "https://hooks.slack.com/…"
        );
    }

    #[test]
    fn sink_names_are_short_lowercase_words() {
        assert!(check_sink_name("ops-alerts").is_ok());
        assert!(check_sink_name("").is_err());
        assert!(check_sink_name("Ops").is_err());
        assert!(check_sink_name("a b").is_err());
    }
}
