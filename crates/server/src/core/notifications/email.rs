//! Email through an SMTP server: one message with a plain-text and an HTML part, its subject
//! saying what happened to which service in which environment, linked to the build's page.
//!
//! The server is named by `smtp://[USER@]HOST[:PORT]` (port 587 by default) and always spoken
//! to with STARTTLS required: a server that does not offer it, or whose certificate does not
//! verify, gets nothing, so a password never crosses an unencrypted connection. Besides the
//! platform's roots, a CA from `WHARF_SMTP_CA_FILE` is trusted (a private mail server's).
//!
//! Every attempt at one message carries the same `Message-ID` and `X-Wharf-Delivery`, so a
//! mail client or a filter can drop the repeat that at-least-once delivery may send.

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use wharf_domain::notification::Disposition;
use wharf_wire::{EmailAddresses, format_millis};

use super::Message;
use super::delivery::Attempt;

/// The SMTP submission port, where STARTTLS is expected.
pub(crate) const DEFAULT_PORT: u16 = 587;

/// Where an email sink's messages are handed over: the SMTP server and the user it logs in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SmtpServer {
    pub host: String,
    pub port: u16,
    /// The user to authenticate as; its password is the sink's secret.
    pub user: Option<String>,
}

impl SmtpServer {
    /// Reads `smtp://[USER@]HOST[:PORT]`. A user holding `@` is written as it is
    /// (`smtp://wharf@example.com@mail.example.com`) or with `%40`. A password in the URL is
    /// refused: it would show wherever the URL does. Errors never repeat the URL, which may
    /// hold one.
    pub fn parse(text: &str) -> Result<SmtpServer, String> {
        let invalid = || {
            format!(
                "the email sink's URL must name an SMTP server: smtp://[USER@]HOST[:PORT] (STARTTLS, port {DEFAULT_PORT} by default)"
            )
        };
        let Some(rest) = text.strip_prefix("smtp://") else {
            return Err(invalid());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (user, address) = match rest.rsplit_once('@') {
            Some((user, address)) => (Some(percent_decoded(user).ok_or_else(invalid)?), address),
            None => (None, rest),
        };
        if user.as_deref().is_some_and(|user| user.contains(':')) {
            return Err(
                "the SMTP URL holds a password: leave it out, and give it on standard input"
                    .to_owned(),
            );
        }
        if user.as_deref().is_some_and(str::is_empty) {
            return Err(invalid());
        }
        if address.is_empty() || address.contains(['/', '?', '#', '@']) {
            return Err(invalid());
        }
        let url = reqwest::Url::parse(&format!("smtp://{address}")).map_err(|_| invalid())?;
        let host = url.host_str().filter(|host| !host.is_empty());
        let host = host.ok_or_else(invalid)?;
        Ok(SmtpServer {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: url.port().unwrap_or(DEFAULT_PORT),
            user,
        })
    }

    /// As a listing shows it: `smtp://host:port`, without the user.
    pub fn shown(&self) -> String {
        if self.host.contains(':') {
            format!("smtp://[{}]:{}", self.host, self.port)
        } else {
            format!("smtp://{}:{}", self.host, self.port)
        }
    }
}

/// `%XX` sequences decoded; `None` when one is malformed or the result is not UTF-8.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// Checks an email sink's addresses: at least one recipient, each a bare address, and a sender
/// that may carry a name.
pub(crate) fn check_addresses(addresses: &EmailAddresses) -> Result<(), String> {
    if addresses.to.is_empty() {
        return Err("an email sink needs at least one recipient".to_owned());
    }
    for to in &addresses.to {
        to.parse::<lettre::Address>()
            .map_err(|_| format!("{to:?} is not an email address"))?;
    }
    addresses
        .from
        .parse::<Mailbox>()
        .map_err(|_| format!("{:?} is not a sender's email address", addresses.from))?;
    Ok(())
}

/// The subject: what happened to which service in which environment, marked as Wharf's.
pub(super) fn subject(message: &Message) -> String {
    let title = message.title();
    let what = title.strip_prefix("Wharf: ").unwrap_or(&title);
    format!("[Wharf] {what}")
}

/// One word for the outcome, shown above the details.
fn outcome(message: &Message) -> &'static str {
    use wharf_wire::NotificationEvent::*;
    match (message.event, message.disposition) {
        (ReleaseLive, Disposition::Recovered) => "Recovered",
        (ReleaseLive | AgentOnline, _) => "Succeeded",
        (BuildFailed | ReleaseFailed | ReleaseRolledBack, Disposition::StillFailing) => {
            "Still failing"
        }
        (BuildFailed | ReleaseFailed | ReleaseRolledBack, _) => "Failed",
        (RolloutStuck, _) => "Stuck",
        (AgentOffline, _) => "Offline",
        (Test, _) => "Test",
        (Deployment, _) => "Deployment",
    }
}

/// The facts of the message as (label, value) rows, the same in both parts.
fn facts(message: &Message) -> Vec<(&'static str, String)> {
    let mut facts = vec![("Event", message.event.as_str().to_owned())];
    if let Some(service) = &message.service {
        facts.push(("Service", service.clone()));
    }
    if let Some(environment) = &message.environment {
        facts.push(("Environment", environment.clone()));
    }
    if let Some(agent) = &message.agent {
        facts.push(("Agent", agent.clone()));
    }
    if let Some(commit) = &message.commit {
        facts.push(("Commit", commit.clone()));
    }
    if let Some(build) = message.build {
        facts.push(("Build", format!("#{build}")));
    }
    if let Some(release) = message.release {
        facts.push(("Release", format!("#{release}")));
    }
    facts.push(("At", format_millis(message.at)));
    facts
}

/// The plain-text part.
pub(super) fn text_body(message: &Message) -> String {
    let mut text = format!("{}\n\n{}\n", message.title(), outcome(message));
    if let Some(reason) = &message.reason {
        text.push_str(&format!("{reason}\n"));
    }
    text.push('\n');
    for (label, value) in facts(message) {
        text.push_str(&format!("{label}: {value}\n"));
    }
    if let Some(url) = &message.url {
        text.push_str(&format!("\nThe build's page:\n{url}\n"));
    }
    text.push_str("\n-- \nWharf\n");
    text
}

/// The HTML part: the same, with the outcome's colour and the link as a button.
pub(super) fn html_body(message: &Message) -> String {
    let colour = format!("#{:06X}", message.colour());
    let mut html = String::from(
        "<!DOCTYPE html>\n<html>\n<body style=\"font-family: sans-serif; color: #1d1c1d\">\n",
    );
    html.push_str(&format!(
        "<div style=\"border-left: 4px solid {colour}; padding: 4px 12px\">\n<h2 style=\"margin: 0 0 8px 0\">{}</h2>\n<p style=\"margin: 0; color: {colour}\"><strong>{}</strong></p>\n",
        escaped(&message.title()),
        outcome(message),
    ));
    if let Some(reason) = &message.reason {
        html.push_str(&format!("<p>{}</p>\n", escaped(reason)));
    }
    html.push_str("<table style=\"border-collapse: collapse\">\n");
    for (label, value) in facts(message) {
        html.push_str(&format!(
            "<tr><td style=\"padding: 2px 12px 2px 0; color: #616061\">{label}</td><td>{}</td></tr>\n",
            escaped(&value)
        ));
    }
    html.push_str("</table>\n");
    if let Some(url) = &message.url {
        html.push_str(&format!(
            "<p><a href=\"{url}\">Open the build's page</a></p>\n",
            url = escaped(url)
        ));
    }
    html.push_str("</div>\n</body>\n</html>\n");
    html
}

/// `text` safe inside HTML text and attribute values.
fn escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// The letter for `message`: from and to the sink's addresses, its `Message-ID` made of the
/// delivery's id (`message_id`) and `domain`, the same on every attempt.
pub(super) fn letter(
    message: &Message,
    addresses: &EmailAddresses,
    message_id: &str,
    domain: &str,
) -> Result<lettre::Message, String> {
    let from: Mailbox = addresses
        .from
        .parse()
        .map_err(|_| format!("{:?} is not a sender's email address", addresses.from))?;
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(subject(message))
        .message_id(Some(format!("<{message_id}@{domain}>")))
        .date_now()
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Wharf-Event"),
            message.event.as_str().to_owned(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Wharf-Delivery"),
            message_id.to_owned(),
        ));
    for to in &addresses.to {
        let to: Mailbox = to
            .parse()
            .map_err(|_| format!("{to:?} is not an email address"))?;
        builder = builder.to(to);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            text_body(message),
            html_body(message),
        ))
        .map_err(|error| format!("cannot write the message: {error}"))
}

/// What sending needs besides the message: the server's settings.
pub(super) struct Mailer<'a> {
    /// PEM of CAs to trust besides the platform's (`WHARF_SMTP_CA_FILE`).
    pub extra_ca_pem: Option<&'a [u8]>,
    /// The longest one attempt may take, connection and all.
    pub timeout: std::time::Duration,
    /// The name Wharf gives itself in `EHLO`, and the right-hand side of its Message-IDs.
    pub domain: &'a str,
}

/// Hands `letter` to `server` once: over STARTTLS, then `AUTH` with `password` when the server
/// names a user. A 4xx answer is a failure to try again; a 5xx answer (a refused recipient,
/// sender or password) will not change by itself, so the message is refused at once.
pub(super) async fn send(
    mailer: &Mailer<'_>,
    server: &SmtpServer,
    password: Option<&str>,
    letter: lettre::Message,
) -> Attempt {
    let failed = |status: Option<u16>, error: String| Attempt::Failed {
        status,
        retry_after: None,
        error,
    };
    let mut tls = TlsParameters::builder(server.host.clone());
    if let Some(pem) = mailer.extra_ca_pem {
        match Certificate::from_pem(pem) {
            Ok(certificate) => tls = tls.add_root_certificate(certificate),
            Err(error) => {
                return failed(None, format!("cannot read WHARF_SMTP_CA_FILE: {error}"));
            }
        }
    }
    let tls = match tls.build_rustls() {
        Ok(tls) => tls,
        Err(error) => return failed(None, format!("cannot set TLS up: {}", described(&error))),
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&server.host)
        .port(server.port)
        .tls(Tls::Required(tls))
        .hello_name(client_id(mailer.domain))
        .timeout(Some(mailer.timeout));
    if let Some(user) = &server.user {
        transport = transport.credentials(Credentials::new(
            user.clone(),
            password.unwrap_or_default().to_owned(),
        ));
    }
    let transport = transport.build();
    let sent = tokio::time::timeout(mailer.timeout, transport.send(letter)).await;
    match sent {
        Ok(Ok(response)) => Attempt::Delivered {
            status: u16::from(response.code()),
        },
        Ok(Err(error)) => {
            let status = error.status().map(u16::from);
            let text = described(&error);
            if error.is_permanent() {
                Attempt::Refused {
                    status,
                    error: format!("the mail server refused the message: {text}"),
                }
            } else {
                failed(status, format!("the mail server did not take it: {text}"))
            }
        }
        Err(_) => failed(
            None,
            format!(
                "the mail server did not answer within {} s",
                mailer.timeout.as_secs()
            ),
        ),
    }
}

/// How Wharf names itself in `EHLO`: its host name, or an address literal.
fn client_id(domain: &str) -> ClientId {
    match domain.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(address)) => ClientId::Ipv4(address),
        Ok(std::net::IpAddr::V6(address)) => ClientId::Ipv6(address),
        Err(_) => ClientId::Domain(domain.to_owned()),
    }
}

/// An error and its causes in one line, clipped.
fn described(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    wharf_wire::text::clip_owned(text, wharf_wire::text::REASON_CHARS)
}

#[cfg(test)]
mod tests {
    use wharf_wire::NotificationEvent;

    use super::*;
    use crate::core::notifications::tests::sample;

    #[test]
    fn smtp_urls_name_a_server_a_port_and_perhaps_a_user() {
        assert_eq!(
            SmtpServer::parse("smtp://mail.example.com").unwrap(),
            SmtpServer {
                host: "mail.example.com".to_owned(),
                port: 587,
                user: None
            }
        );
        let server = SmtpServer::parse("smtp://wharf@example.com@mail.example.com:2525").unwrap();
        assert_eq!(server.user.as_deref(), Some("wharf@example.com"));
        assert_eq!(server.port, 2525);
        assert_eq!(server.shown(), "smtp://mail.example.com:2525");
        let encoded = SmtpServer::parse("smtp://wharf%40example.com@127.0.0.1/").unwrap();
        assert_eq!(encoded.user.as_deref(), Some("wharf@example.com"));
        assert_eq!(encoded.host, "127.0.0.1");
        let password = SmtpServer::parse("smtp://user:hunter2@mail.example.com").unwrap_err();
        assert!(password.contains("standard input"), "{password}");
        assert!(!password.contains("hunter2"), "{password}");
        let other = SmtpServer::parse("https://user:hunter2@mail.example.com").unwrap_err();
        assert!(!other.contains("hunter2"), "{other}");
        for invalid in [
            "https://mail.example.com",
            "smtps://mail.example.com",
            "smtp://",
            "smtp://@mail.example.com",
            "smtp://mail.example.com/path",
            "smtp://mail.example.com:notaport",
        ] {
            assert!(SmtpServer::parse(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn addresses_are_checked() {
        let addresses = |to: &[&str], from: &str| EmailAddresses {
            to: to.iter().map(|to| (*to).to_owned()).collect(),
            from: from.to_owned(),
        };
        assert!(check_addresses(&addresses(&["ops@example.com"], "Wharf <w@example.com>")).is_ok());
        assert!(check_addresses(&addresses(&[], "w@example.com")).is_err());
        assert!(check_addresses(&addresses(&["not an address"], "w@example.com")).is_err());
        assert!(check_addresses(&addresses(&["ops@example.com"], "nobody")).is_err());
    }

    #[test]
    fn both_parts_tell_the_outcome_and_link_the_page() {
        let mut message = sample(NotificationEvent::ReleaseRolledBack, Disposition::Sent);
        message.reason = Some("the health check <failed> 3 times".to_owned());
        assert_eq!(
            subject(&message),
            "[Wharf] web (production): release #4 was rolled back"
        );
        let text = text_body(&message);
        assert!(
            text.contains("Failed\nthe health check <failed> 3 times\n"),
            "{text}"
        );
        assert!(text.contains("Event: release.rolled_back\n"), "{text}");
        assert!(text.contains("Environment: production\n"), "{text}");
        assert!(
            text.contains("https://wharf.example.com/builds/7"),
            "{text}"
        );
        let html = html_body(&message);
        assert!(
            html.contains("the health check &lt;failed&gt; 3 times"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"https://wharf.example.com/builds/7\">"),
            "{html}"
        );
        assert!(html.contains("#E01E5A"), "{html}");
        let live = sample(NotificationEvent::ReleaseLive, Disposition::Recovered);
        assert!(text_body(&live).contains("\nRecovered\n"));
    }

    #[test]
    fn a_letter_has_both_parts_and_a_stable_message_id() {
        let message = sample(NotificationEvent::BuildFailed, Disposition::Sent);
        let addresses = EmailAddresses {
            to: vec!["ops@example.com".to_owned()],
            from: "Wharf <wharf@example.com>".to_owned(),
        };
        let letter = letter(&message, &addresses, "abc123", "wharf.example.com").unwrap();
        let text = String::from_utf8(letter.formatted()).unwrap();
        assert!(
            text.contains("Message-ID: <abc123@wharf.example.com>"),
            "{text}"
        );
        assert!(text.contains("X-Wharf-Delivery: abc123"), "{text}");
        assert!(text.contains("X-Wharf-Event: build.failed"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(text.contains("text/plain"), "{text}");
        assert!(text.contains("text/html"), "{text}");
        assert_eq!(
            letter.envelope().to(),
            ["ops@example.com".parse::<lettre::Address>().unwrap()]
        );
    }
}
