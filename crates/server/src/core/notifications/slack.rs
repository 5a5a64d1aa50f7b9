//! Slack incoming webhooks: one attachment in the outcome's colour, titled with what happened
//! and linked to the build's page, with `text` as the notification's fallback
//! (api.slack.com/messaging/webhooks, "Legacy secondary message attachments").

use serde_json::{Value, json};

use super::Message;

/// The body a Slack incoming webhook takes.
pub(super) fn body(message: &Message) -> Value {
    let title = message.title();
    let mut attachment = json!({
        "color": format!("#{:06X}", message.colour()),
        "fallback": title,
        "title": title,
        "text": message.details(),
        "footer": "Wharf",
        "ts": message.unix_seconds(),
    });
    if let Some(url) = &message.url {
        attachment["title_link"] = json!(url);
    }
    json!({
        "text": title,
        "attachments": [attachment],
    })
}

#[cfg(test)]
mod tests {
    use wharf_domain::notification::Disposition;
    use wharf_wire::NotificationEvent;

    use super::*;
    use crate::core::notifications::tests::sample;

    #[test]
    fn a_message_is_one_coloured_attachment_linked_to_the_page() {
        let body = body(&sample(
            NotificationEvent::ReleaseRolledBack,
            Disposition::Sent,
        ));
        assert_eq!(body["text"], "web (production): release #4 was rolled back");
        let attachments = body["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 1);
        let attachment = &attachments[0];
        assert_eq!(attachment["color"], "#E01E5A");
        assert_eq!(attachment["title"], body["text"]);
        assert_eq!(attachment["fallback"], body["text"]);
        assert_eq!(
            attachment["title_link"],
            "https://wharf.example.com/builds/7"
        );
        assert_eq!(
            attachment["text"],
            "the health check failed 3 times\ncommit 0123456789ab"
        );
        assert_eq!(attachment["ts"], 1_800_000_000);
        let live = body_colour(NotificationEvent::ReleaseLive);
        assert_eq!(live, "#2EB67D");
    }

    fn body_colour(event: NotificationEvent) -> String {
        body(&sample(event, Disposition::Sent))["attachments"][0]["color"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}
