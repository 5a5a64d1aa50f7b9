//! The generic webhook: Wharf's JSON body, and the headers that name, time and sign it.
//!
//! The signature is `X-Wharf-Signature-256: sha256=` the HMAC-SHA256 of
//! `"{X-Wharf-Timestamp}.{body}"` with the sink's secret, as the deploy hook is signed, so a
//! receiver checks both with the same code and refuses an old or replayed request.

use serde_json::{Value, json};
use wharf_domain::notification::Disposition;
use wharf_domain::signature::sign_timestamped;
use wharf_wire::format_millis;

use super::Message;

/// The body a webhook sink gets.
pub(super) fn body(message: &Message) -> Value {
    json!({
        "event": message.event.as_str(),
        "service": message.service,
        "environment": message.environment,
        "commit": message.commit,
        "build": message.build,
        "release": message.release,
        "agent": message.agent,
        "url": message.url,
        "reason": message.reason,
        "at": format_millis(message.at),
        "recovered": message.disposition == Disposition::Recovered,
        "still_failing": message.disposition == Disposition::StillFailing,
        "summary": message.title(),
    })
}

/// The headers of one attempt, sent at `timestamp` (Unix seconds): the event, the message's
/// id (the same on every attempt), the time and the signature over both time and body.
pub(super) fn headers(
    message: &Message,
    message_id: &str,
    secret: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("X-Wharf-Event", message.event.as_str().to_owned()),
        ("X-Wharf-Delivery", message_id.to_owned()),
        ("X-Wharf-Timestamp", timestamp.to_string()),
        (
            "X-Wharf-Signature-256",
            sign_timestamped(secret.as_bytes(), timestamp, body),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use wharf_domain::signature::{SigningTime, verify_timestamped};
    use wharf_wire::NotificationEvent;

    use super::*;
    use crate::core::notifications::tests::sample;

    #[test]
    fn the_body_names_the_event_and_what_it_concerns() {
        let body = body(&sample(
            NotificationEvent::ReleaseLive,
            Disposition::Recovered,
        ));
        assert_eq!(body["event"], "release.live");
        assert_eq!(body["service"], "web");
        assert_eq!(body["environment"], "production");
        assert_eq!(body["commit"], "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(body["build"], 7);
        assert_eq!(body["release"], 4);
        assert_eq!(body["url"], "https://wharf.example.com/builds/7");
        assert_eq!(body["reason"], "the health check failed 3 times");
        assert_eq!(body["at"], "2027-01-15T08:00:00.123Z");
        assert_eq!(body["recovered"], true);
        assert_eq!(body["still_failing"], false);
    }

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let message = sample(NotificationEvent::BuildFailed, Disposition::Sent);
        let body = b"{\"event\":\"build.failed\"}";
        let headers = headers(&message, "abc123", "s3cret", 1_800_000_000, body);
        let header = |name| {
            headers
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
                .unwrap()
        };
        assert_eq!(header("X-Wharf-Event"), "build.failed");
        assert_eq!(header("X-Wharf-Delivery"), "abc123");
        assert_eq!(header("X-Wharf-Timestamp"), "1800000000");
        let time = SigningTime::check(Some(b"1800000000"), 1_800_000_000).unwrap();
        let signature = header("X-Wharf-Signature-256");
        assert!(verify_timestamped(b"s3cret", &time, body, Some(signature.as_bytes())).is_ok());
        assert!(verify_timestamped(b"other", &time, body, Some(signature.as_bytes())).is_err());
    }
}
