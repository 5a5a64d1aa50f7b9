//! `wharf notify`: notification sinks (a webhook, Slack, Discord, email), a test message, each
//! sink's messages and retrying its dead letters.

use anyhow::Context;
use wharf_client::ApiClient;
use wharf_wire::{
    CreateSink, EmailAddresses, ListSinkDeliveries, ListSinks, NotificationEvent, RemoveSink,
    RetrySink, SecretText, SinkKind, TestSink,
};

use super::args::NotifyCommand;
use super::render::{self, emit};

/// Runs one `wharf notify` verb.
pub(super) async fn run(client: &ApiClient, command: NotifyCommand) -> anyhow::Result<()> {
    match command {
        NotifyCommand::Add {
            name,
            webhook,
            slack,
            discord,
            email,
            from,
            smtp,
            secret,
            events,
            service,
            json,
        } => {
            let request = if let (false, Some(from), Some(smtp)) = (email.is_empty(), from, smtp) {
                // The password of the user the URL names, never from the command line.
                let password = smtp_names_user(&smtp)
                    .then(|| super::input::line("the SMTP password"))
                    .transpose()?
                    .map(SecretText::new);
                CreateSink {
                    name,
                    kind: SinkKind::Email,
                    url: SecretText::new(smtp),
                    secret: password,
                    email: Some(EmailAddresses { to: email, from }),
                    events: parse_events(&events)?,
                    services: service,
                }
            } else {
                let (kind, url) = match (webhook, slack, discord) {
                    (Some(url), _, _) => (SinkKind::Webhook, url),
                    (_, Some(url), _) => (SinkKind::Slack, url),
                    (_, _, Some(url)) => (SinkKind::Discord, url),
                    _ => anyhow::bail!(
                        "name the sink: --webhook, --slack, --discord or --email with --from and --smtp"
                    ),
                };
                CreateSink {
                    name,
                    kind,
                    url: SecretText::new(from_stdin_when_dash(url, "the URL")?),
                    secret: secret
                        .map(|secret| from_stdin_when_dash(secret, "the secret"))
                        .transpose()?
                        .map(SecretText::new),
                    email: None,
                    events: parse_events(&events)?,
                    services: service,
                }
            };
            let created = client.send(&request).await?;
            emit(&render::one(&created, json, render::sink_created)?)
        }
        NotifyCommand::List { json } => {
            let sinks = client.send(&ListSinks {}).await?;
            emit(&render::list(&sinks, json, render::SINKS)?)
        }
        NotifyCommand::Test { name } => {
            let tested = client.send(&TestSink { name }).await?;
            emit(&render::sink_tested(&tested))
        }
        NotifyCommand::Remove { name } => {
            client.send(&RemoveSink { name: name.clone() }).await?;
            emit(&render::sink_removed(&name))
        }
        NotifyCommand::Deliveries { name, failed, json } => {
            let deliveries = client.send(&ListSinkDeliveries { name, failed }).await?;
            emit(&render::list(&deliveries, json, render::SINK_DELIVERIES)?)
        }
        NotifyCommand::Retry { name } => {
            let retried = client.send(&RetrySink { name }).await?;
            emit(&render::sink_retried(&retried))
        }
    }
}

/// Whether an SMTP URL names a user (`smtp://USER@HOST`), who then needs a password.
fn smtp_names_user(url: &str) -> bool {
    url.strip_prefix("smtp://")
        .is_some_and(|rest| rest.contains('@'))
}

/// `value`, or the first line of standard input when it is `-`.
fn from_stdin_when_dash(value: String, what: &str) -> anyhow::Result<String> {
    if value != "-" {
        return Ok(value);
    }
    super::input::line(what)
}

/// The events named on the command line.
fn parse_events(names: &[String]) -> anyhow::Result<Vec<NotificationEvent>> {
    names
        .iter()
        .filter(|name| !name.is_empty())
        .map(|name| {
            NotificationEvent::parse(name).with_context(|| {
                let known: Vec<&str> = NotificationEvent::ALL
                    .iter()
                    .map(|event| event.as_str())
                    .collect();
                format!("{name:?} is not an event: use {}", known.join(", "))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{ClientCommand, parse};

    #[test]
    fn events_are_read_by_name() {
        assert_eq!(
            parse_events(&["release.live".to_owned(), "build.failed".to_owned()]).unwrap(),
            [
                NotificationEvent::ReleaseLive,
                NotificationEvent::BuildFailed
            ]
        );
        let error = parse_events(&["deploy.done".to_owned()]).unwrap_err();
        assert!(error.to_string().contains("release.rolled_back"), "{error}");
    }

    #[test]
    fn a_sink_is_one_of_webhook_slack_or_discord() {
        let Ok(ClientCommand::Notify {
            command:
                NotifyCommand::Add {
                    name,
                    webhook,
                    events,
                    service,
                    ..
                },
            ..
        }) = parse(&[
            "notify",
            "add",
            "ops",
            "--webhook",
            "https://ops.example.com/h",
            "--events",
            "release.live,release.rolled_back",
            "--service",
            "web",
            "--service",
            "api",
        ])
        else {
            panic!("notify add parses");
        };
        assert_eq!(name, "ops");
        assert_eq!(webhook.as_deref(), Some("https://ops.example.com/h"));
        assert_eq!(events, ["release.live", "release.rolled_back"]);
        assert_eq!(service, ["web", "api"]);
        assert!(
            parse(&["notify", "add", "ops"]).is_err(),
            "a sink needs a URL"
        );
        assert!(
            parse(&[
                "notify",
                "add",
                "ops",
                "--slack",
                "https://x",
                "--discord",
                "https://y"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "notify",
                "add",
                "ops",
                "--slack",
                "https://x",
                "--secret",
                "s"
            ])
            .is_err(),
            "only a webhook takes a secret"
        );
    }

    #[test]
    fn an_email_sink_names_its_recipients_sender_and_server() {
        let Ok(ClientCommand::Notify {
            command: NotifyCommand::Add {
                email, from, smtp, ..
            },
            ..
        }) = parse(&[
            "notify",
            "add",
            "mail",
            "--email",
            "ops@example.com",
            "--email",
            "oncall@example.com",
            "--from",
            "wharf@example.com",
            "--smtp",
            "smtp://wharf@mail.example.com",
        ])
        else {
            panic!("notify add --email parses");
        };
        assert_eq!(email, ["ops@example.com", "oncall@example.com"]);
        assert_eq!(from.as_deref(), Some("wharf@example.com"));
        assert_eq!(smtp.as_deref(), Some("smtp://wharf@mail.example.com"));
        let without = |missing: &str| {
            let mut words = vec![
                "notify",
                "add",
                "mail",
                "--email",
                "ops@example.com",
                "--from",
                "wharf@example.com",
                "--smtp",
                "smtp://mail.example.com",
            ];
            let at = words.iter().position(|word| *word == missing).unwrap();
            words.drain(at..at + 2);
            parse(&words)
        };
        assert!(without("--from").is_err(), "an email needs a sender");
        assert!(without("--smtp").is_err(), "an email needs a server");
        assert!(
            parse(&["notify", "add", "x", "--smtp", "smtp://h"]).is_err(),
            "a server needs an address to write to"
        );
        assert!(smtp_names_user(
            "smtp://wharf@example.com@mail.example.com:587"
        ));
        assert!(!smtp_names_user("smtp://mail.example.com"));
    }
}
