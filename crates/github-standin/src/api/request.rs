//! An API request as the endpoints see it: decoded, with the checks GitHub makes before it answers
//! (who is asking, which repository they may see, whether the body keeps to the schema), and the
//! decoding of paths and query strings.

use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use super::response::ApiResponse;
use crate::auth::Authentication;
use crate::state::{IssuedToken, Repository, Shared};

/// One API request, decoded.
pub(super) struct ApiRequest<'a> {
    pub(super) shared: &'a Arc<Shared>,
    pub(super) method: &'a str,
    pub(super) segments: Vec<&'a str>,
    pub(super) query: Vec<(String, String)>,
    pub(super) headers: &'a HeaderMap,
    pub(super) body: Option<&'a Value>,
    pub(super) authentication: &'a Authentication,
    /// The first schema violation of the request body, which GitHub answers with 422.
    pub(super) body_problem: Option<String>,
}

pub(super) type Handled = Result<ApiResponse, ApiResponse>;

impl ApiRequest<'_> {
    pub(super) fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub(super) fn api_url(&self) -> &str {
        &self.shared.api_url
    }

    /// Requires a valid App JWT.
    pub(super) fn require_app(&self) -> Result<(), ApiResponse> {
        match self.authentication {
            Authentication::App => Ok(()),
            Authentication::None => Err(ApiResponse::error(401, "Requires authentication")),
            Authentication::RejectedJwt(message) => Err(ApiResponse::error(401, message)),
            Authentication::Installation { .. } | Authentication::Invalid => Err(
                ApiResponse::error(401, "A JSON web token could not be decoded"),
            ),
        }
    }

    /// Requires a valid installation token. Anonymous requests for a (private) repository get 404
    /// like on GitHub; elsewhere 401.
    pub(super) fn require_installation(
        &self,
        repository_scoped: bool,
    ) -> Result<&IssuedToken, ApiResponse> {
        match self.authentication {
            Authentication::Installation {
                suspended: true, ..
            } => Err(ApiResponse::error(
                403,
                "This installation has been suspended",
            )),
            Authentication::Installation { token, .. } => Ok(token),
            Authentication::None if repository_scoped => Err(ApiResponse::not_found()),
            Authentication::None => Err(ApiResponse::error(401, "Requires authentication")),
            Authentication::App => Err(ApiResponse::error(
                403,
                "Resource not accessible by integration",
            )),
            Authentication::RejectedJwt(_) | Authentication::Invalid => {
                Err(ApiResponse::error(401, "Bad credentials"))
            }
        }
    }

    /// Finds a repository the token may see (404 otherwise, like GitHub) and checks a permission.
    pub(super) fn repository(
        &self,
        token: &IssuedToken,
        owner: &str,
        name: &str,
        permission: Option<(&str, &str)>,
    ) -> Result<Repository, ApiResponse> {
        self.repository_with_any(token, owner, name, permission.as_slice())
    }

    /// Finds a repository the token may see (404 otherwise, like GitHub) and checks that the
    /// token holds at least one of `permissions` (each a permission and its level), for the
    /// endpoints that either of two permissions opens (issue comments: `issues` or
    /// `pull_requests`). No permissions: no check.
    pub(super) fn repository_with_any(
        &self,
        token: &IssuedToken,
        owner: &str,
        name: &str,
        permissions: &[(&str, &str)],
    ) -> Result<Repository, ApiResponse> {
        let repository = self
            .shared
            .lock()
            .repository(owner, name)
            .filter(|repository| token.grants(repository))
            .cloned()
            .ok_or_else(ApiResponse::not_found)?;
        if !permissions.is_empty()
            && !permissions
                .iter()
                .any(|(permission, level)| token.allows(permission, level))
        {
            return Err(ApiResponse::error(
                403,
                "Resource not accessible by integration",
            ));
        }
        Ok(repository)
    }

    /// Answers 422 when the request body broke the endpoint's schema.
    pub(super) fn reject_invalid_body(&self) -> Result<(), ApiResponse> {
        match &self.body_problem {
            Some(problem) => Err(ApiResponse::invalid_request(problem)),
            None => Ok(()),
        }
    }

    /// A field of the JSON body that is a string.
    pub(super) fn body_text(&self, field: &str) -> Option<String> {
        self.body?.get(field)?.as_str().map(str::to_string)
    }

    /// A field of the JSON body that is a boolean.
    pub(super) fn body_flag(&self, field: &str) -> Option<bool> {
        self.body?.get(field)?.as_bool()
    }

    pub(super) fn body_object(&self) -> Map<String, Value> {
        self.body
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }
}

/// Words a request-body violation like GitHub's 422 message does where the two agree
/// (`"ref" wasn't supplied.`), and keeps the validator's wording otherwise.
pub(super) fn github_problem(violation: &str) -> String {
    let problem = violation
        .split_once(": ")
        .map_or(violation, |(_, problem)| problem);
    match problem.strip_suffix(": required property is missing") {
        Some(location) => match location.strip_prefix("$.") {
            Some(name) if !name.contains(['.', '[']) => format!("\"{name}\" wasn't supplied."),
            _ => format!("{location} wasn't supplied."),
        },
        None => problem.to_string(),
    }
}

/// The request headers with the Authorization value replaced, so recorded requests never hold a
/// credential.
pub(super) fn redacted_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if name == axum::http::header::AUTHORIZATION {
                let scheme = value
                    .to_str()
                    .ok()
                    .and_then(|text| text.split_whitespace().next())
                    .unwrap_or("");
                format!("{scheme} <redacted>")
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_string(), value)
        })
        .collect()
}

/// Decodes `%XX` escapes; invalid escapes and non-UTF-8 results are kept as they are.
pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && index + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[index + 1..index + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            decoded.push(byte);
            index += 3;
            continue;
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8(decoded).unwrap_or_else(|_| text.to_string())
}

/// Encodes everything but unreserved characters (`A-Z a-z 0-9 - _ . ~`) as `%XX`, for a path
/// segment or a query value.
pub(super) fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Parses `a=1&b=two` into pairs, decoding `+` and `%XX`.
pub(super) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&key.replace('+', " ")),
                percent_decode(&value.replace('+', " ")),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_problems_are_worded_like_github() {
        assert_eq!(
            github_problem(
                "POST /repos/{owner}/{repo}/deployments request: $.ref: required property is missing"
            ),
            "\"ref\" wasn't supplied."
        );
        assert_eq!(
            github_problem("POST /x request: $.a: expected array, got string"),
            "$.a: expected array, got string"
        );
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(percent_decode("feature%2Fx"), "feature/x");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%2"), "end%2");
        assert_eq!(
            percent_encode("safe to preview/ü"),
            "safe%20to%20preview%2F%C3%BC"
        );
        assert_eq!(
            percent_decode(&percent_encode("safe to preview/ü")),
            "safe to preview/ü"
        );
        assert_eq!(
            parse_query("per_page=2&page=3&q=a+b"),
            vec![
                ("per_page".to_string(), "2".to_string()),
                ("page".to_string(), "3".to_string()),
                ("q".to_string(), "a b".to_string())
            ]
        );
    }
}
