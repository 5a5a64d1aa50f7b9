//! What can go wrong speaking to a registry, and the registry's own words for it.

use serde::Deserialize;
use wharf_wire::text::{QUOTED_CHARS, clip};

/// What went wrong speaking to a registry or its token service. It never holds a password or a
/// token: what the registry answered is cleaned of both before it is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The caller's input names nothing a registry could hold (an address, a repository, a
    /// tag or digest), so nothing was sent.
    #[error("{0}")]
    Invalid(String),
    /// The registry or its token service could not be reached, or the connection broke before
    /// the answer was whole.
    #[error("{what}: {host} could not be reached: {detail}")]
    Unreachable {
        what: String,
        host: String,
        detail: String,
    },
    /// The registry or its token service answered with a status the call does not expect.
    #[error("{what}: {host} answered {status}{}", explained(.code, .message))]
    Status {
        what: String,
        host: String,
        status: u16,
        /// The codes of the answer's `errors` (`NAME_UNKNOWN`, `UNAUTHORIZED`…), joined by
        /// `, `, when it had any.
        code: Option<String>,
        /// The messages of the answer's `errors`, or its text when it was not the JSON of the
        /// distribution API.
        message: Option<String>,
    },
    /// An answer came but is not what the API promises (no digest header, JSON of another
    /// shape, a next page on another host).
    #[error("{what}: the answer of {host} could not be read: {detail}")]
    Unreadable {
        what: String,
        host: String,
        detail: String,
    },
}

impl RegistryError {
    /// The HTTP status the registry or its token service answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The registry's error codes (`UNAUTHORIZED`, `DENIED`…), if its answer gave any.
    pub fn code(&self) -> Option<&str> {
        match self {
            RegistryError::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// ` (CODE: message)`, ` (CODE)`, ` (message)` or nothing.
fn explained(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(code), Some(message)) => format!(" ({code}: {message})"),
        (Some(only), None) | (None, Some(only)) => format!(" ({only})"),
        (None, None) => String::new(),
    }
}

/// The body of a distribution API error, `{"errors": [{"code", "message", "detail"}]}`, and the
/// `details` some token services answer with instead.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
    #[serde(default)]
    details: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The codes and messages of an error answer's body: the `errors` of the distribution API,
/// a token service's `details`, or else the text's first line. Each is cut to a quotable
/// length, with control characters replaced and every one of `secrets` taken out.
pub(crate) fn codes_and_messages(
    body: &[u8],
    secrets: &[&str],
) -> (Option<String>, Option<String>) {
    let (codes, messages) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => {
            let codes: Vec<String> = parsed
                .errors
                .iter()
                .filter_map(|entry| entry.code.clone())
                .collect();
            let mut messages: Vec<String> = parsed
                .errors
                .into_iter()
                .filter_map(|entry| entry.message)
                .collect();
            messages.extend(parsed.details);
            (codes, messages)
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let line = text.lines().map(str::trim).find(|line| !line.is_empty());
            (Vec::new(), line.map(str::to_owned).into_iter().collect())
        }
    };
    let joined = |parts: Vec<String>, separator: &str| {
        let parts: Vec<String> = parts
            .into_iter()
            .map(|part| quotable(&part, secrets))
            .filter(|part| !part.is_empty())
            .collect();
        (!parts.is_empty()).then(|| clip(&parts.join(separator), QUOTED_CHARS))
    };
    (joined(codes, ", "), joined(messages, "; "))
}

/// Another program's text fit to quote: secrets taken out, control characters replaced, cut to
/// [`QUOTED_CHARS`].
pub(crate) fn quotable(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        text = text.replace(secret, "[redacted]");
    }
    let text: String = text
        .chars()
        .map(|character| {
            if character.is_control() {
                ' '
            } else {
                character
            }
        })
        .collect();
    clip(text.trim(), QUOTED_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_codes_and_messages_are_read_from_its_errors() {
        let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}},{"code":"DENIED"}]}"#;
        assert_eq!(
            codes_and_messages(body, &[]),
            (
                Some("NAME_UNKNOWN, DENIED".to_owned()),
                Some("repository name not known to registry".to_owned())
            )
        );
        assert_eq!(
            codes_and_messages(br#"{"details":"incorrect username or password"}"#, &[]),
            (None, Some("incorrect username or password".to_owned()))
        );
        assert_eq!(
            codes_and_messages(b"\n<html>\n<h1>502 Bad Gateway</h1>", &[]),
            (None, Some("<html>".to_owned()))
        );
        assert_eq!(codes_and_messages(b"", &[]), (None, None));
    }

    #[test]
    fn secrets_and_control_characters_never_reach_a_message() {
        let (_, message) = codes_and_messages(
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad password hunter2\u001b[31m for hunter2"}]}"#,
            &["hunter2", ""],
        );
        let message = message.unwrap();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(!message.contains('\u{1b}'), "{message}");
        let long = quotable(&"x".repeat(5000), &[]);
        assert_eq!(long.chars().count(), QUOTED_CHARS);
    }

    #[test]
    fn a_status_error_says_what_failed_and_the_registry_words() {
        let error = RegistryError::Status {
            what: "listing the tags of default/web".to_owned(),
            host: "127.0.0.1:5000".to_owned(),
            status: 401,
            code: Some("UNAUTHORIZED".to_owned()),
            message: Some("authentication required".to_owned()),
        };
        assert_eq!(
            error.to_string(),
            "listing the tags of default/web: 127.0.0.1:5000 answered 401 (UNAUTHORIZED: authentication required)"
        );
        assert_eq!(error.status(), Some(401));
        assert_eq!(error.code(), Some("UNAUTHORIZED"));
    }
}
