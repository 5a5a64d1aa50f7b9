//! Who a dashboard request comes from: the session its cookie names ([`SignedIn`]), the cookies
//! themselves, and the CSRF check every write makes.
//!
//! The session cookie is `HttpOnly` and `SameSite=Lax` (and `Secure` when Wharf's public URL is
//! https): scripts cannot read it and other sites' forms do not send it. Writes also carry the
//! session's CSRF token, in a form field or an `X-CSRF-Token` header, compared in constant time.

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::core::Core;
use crate::core::sessions::{SESSION_LIFETIME, Session};
use crate::ui::page::PageError;

/// The cookie that holds a session's id.
pub(crate) const SESSION_COOKIE: &str = "wharf_session";
/// The header htmx requests carry the session's CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// A request from a signed-in browser; a page asked for without one is sent to `/login`.
pub(crate) struct SignedIn(pub Session);

impl FromRequestParts<Core> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, core: &Core) -> Result<SignedIn, Response> {
        match session_of(&parts.headers, core).await {
            Ok(Some(session)) => Ok(SignedIn(session)),
            Ok(None) => {
                let wanted = parts
                    .uri
                    .path_and_query()
                    .map(|path| path.as_str())
                    .unwrap_or("/");
                Err(see_other(&format!(
                    "/login?next={}",
                    percent_encode(wanted)
                )))
            }
            Err(error) => Err(error.into_response()),
        }
    }
}

/// The session the request's cookie names, while it lasts.
pub(crate) async fn session_of(
    headers: &HeaderMap,
    core: &Core,
) -> Result<Option<Session>, PageError> {
    match cookie(headers, SESSION_COOKIE) {
        Some(id) => Ok(core.session(id).await?),
        None => Ok(None),
    }
}

/// Whether `given` is the session's CSRF token.
pub(crate) fn csrf_matches(session: &Session, given: Option<&str>) -> bool {
    given.is_some_and(|given| same_secret(&session.csrf_token, given))
}

/// Compares two secrets in constant time for a given length.
pub(crate) fn same_secret(expected: &str, given: &str) -> bool {
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// The value of the request's cookie `name`.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// A `Set-Cookie` value for `name`, for the whole site; an empty `value` removes the cookie.
pub(crate) fn set_cookie(core: &Core, name: &str, value: &str) -> HeaderValue {
    let max_age = if value.is_empty() {
        0
    } else {
        SESSION_LIFETIME.as_secs()
    };
    let secure = if core.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    // Cookie values here are alphanumeric tokens, always a valid header value.
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A 303 to `location`, with the cookies given.
pub(crate) fn see_other_setting(location: &str, cookies: &[HeaderValue]) -> Response {
    let mut response = see_other(location);
    for cookie in cookies {
        response.headers_mut().append(SET_COOKIE, cookie.clone());
    }
    response
}

/// A 303 to `location` (a path on this server).
pub(crate) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// Where a sign-in may send the browser on: a path on this server, never another site
/// (`//host`, `/\host`, anything not starting with `/`, and anything not ASCII, which no
/// `Location` header could carry, go to the overview).
pub(crate) fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with('/')
                && next.is_ascii()
                && !next.starts_with("//")
                && !next.starts_with("/\\")
                && !next.chars().any(char::is_control) =>
        {
            next
        }
        _ => "/",
    }
}

/// Percent-encodes everything but unreserved characters and `/`, for a path in a query.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; wharf_session_x=2"));
        headers.append(COOKIE, HeaderValue::from_static("wharf_session=abc; b=3"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("3"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path(Some("/builds/7?x=1")), "/builds/7?x=1");
        for foreign in [
            "/caf\u{e9}",
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "builds",
            "/a\nb",
        ] {
            assert_eq!(local_path(Some(foreign)), "/", "{foreign:?}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn paths_are_encoded_for_a_query() {
        assert_eq!(percent_encode("/builds/7?x=1&y"), "/builds/7%3Fx%3D1%26y");
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
