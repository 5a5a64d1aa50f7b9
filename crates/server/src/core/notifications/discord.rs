//! Discord webhooks: one embed in the outcome's colour (an integer, as Discord takes it),
//! titled with what happened and linked to the build's page
//! (discord.com/developers/docs/resources/webhook#execute-webhook, embed object).

use serde_json::{Value, json};
use wharf_wire::format_millis;

use super::Message;

/// Discord's limits on an embed's title and description.
const TITLE_CHARS: usize = 256;
const DESCRIPTION_CHARS: usize = 4096;

/// The body a Discord webhook takes.
pub(super) fn body(message: &Message) -> Value {
    let mut embed = json!({
        "title": message.title().chars().take(TITLE_CHARS).collect::<String>(),
        "description": message.details().chars().take(DESCRIPTION_CHARS).collect::<String>(),
        "color": message.colour(),
        "timestamp": format_millis(message.at),
        "footer": {"text": "Wharf"},
    });
    if let Some(url) = &message.url {
        embed["url"] = json!(url);
    }
    json!({
        "username": "Wharf",
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    })
}

#[cfg(test)]
mod tests {
    use wharf_domain::notification::Disposition;
    use wharf_wire::NotificationEvent;

    use super::*;
    use crate::core::notifications::tests::sample;

    #[test]
    fn a_message_is_one_embed_with_an_integer_colour_and_a_link() {
        let body = body(&sample(NotificationEvent::BuildFailed, Disposition::Sent));
        let embeds = body["embeds"].as_array().unwrap();
        assert_eq!(embeds.len(), 1);
        let embed = &embeds[0];
        assert_eq!(embed["title"], "web (production): build #7 failed");
        assert_eq!(embed["url"], "https://wharf.example.com/builds/7");
        assert_eq!(embed["color"], 0xE01E5A);
        assert!(embed["color"].is_u64());
        assert_eq!(
            embed["description"],
            "the health check failed 3 times\ncommit 0123456789ab"
        );
        assert_eq!(embed["timestamp"], "2027-01-15T08:00:00.123Z");
        assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));
    }
}
