//! What every request has: the [`ApiRequest`] trait that names a request's method, path and
//! answer, the error body, and the encoding of values in paths.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A request to the server's REST API: its method, its path and the type it answers with.
pub trait ApiRequest: Serialize {
    /// What the server answers on success.
    type Response: DeserializeOwned;
    /// The HTTP method.
    const METHOD: Method;
    /// The path below the server's base URL, starting with `/`.
    fn path(&self) -> String;
}

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// The body of every error answer: one human-readable line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    pub error: String,
}

/// Percent-encodes a value for use in a path segment or query value.
pub fn url_component(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(byte as char)
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_component_escapes_everything_outside_unreserved() {
        assert_eq!(url_component("web-1"), "web-1");
        assert_eq!(url_component("a b/c?d"), "a%20b%2Fc%3Fd");
    }
}
