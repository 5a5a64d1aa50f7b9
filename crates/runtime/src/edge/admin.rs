//! Caddy's admin API at one address: requests with the origin Caddy accepts, answers read as
//! JSON, Caddy's own error messages, and whether anything listens there at all.

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

use super::EdgeError;
use crate::error_chain;

/// An admin change reloads Caddy's whole config, which takes milliseconds; a change that takes
/// longer than this will not succeed.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long "does anything answer there?" waits, while a Caddy starts.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long "does anything listen there?" waits before Wharf gives up rather than guess.
const LISTEN_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Caddy's admin API at one address.
pub(super) struct AdminApi {
    /// host:port, as configured.
    pub(super) address: String,
    base: String,
    /// Sent as `Origin`, so that a Caddy that enforces origins (`admin.enforce_origin`) accepts
    /// us under its default origins; the `Host` header (checked whenever the admin address is not
    /// a wildcard) is the address itself.
    origin: String,
    http: reqwest::Client,
}

impl AdminApi {
    pub(super) fn new(address: &str) -> Result<AdminApi, EdgeError> {
        let http = reqwest::Client::builder()
            // An HTTP proxy from the environment must never see admin requests.
            .no_proxy()
            .connect_timeout(PROBE_TIMEOUT)
            .timeout(ADMIN_TIMEOUT)
            // Every change restarts Caddy's admin server too: a kept connection would meet the
            // same close race as clients of the edge do (see the module docs).
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|error| {
                EdgeError::Start(format!("no HTTP client: {}", error_chain(&error)))
            })?;
        Ok(AdminApi {
            address: address.to_owned(),
            base: format!("http://{address}"),
            origin: format!("http://{address}"),
            http,
        })
    }

    /// Whether anything listens at the admin address: false only when connections are refused
    /// (nothing is there to share the address with); an error when it cannot tell.
    pub(super) async fn listening(&self) -> Result<bool, EdgeError> {
        let connect = tokio::net::TcpStream::connect(self.address.as_str());
        match tokio::time::timeout(LISTEN_CHECK_TIMEOUT, connect).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => Ok(false),
            Ok(Err(error)) => Err(self.unreachable(Method::GET, "/", error.to_string())),
            Err(_) => Err(self.unreachable(
                Method::GET,
                "/",
                format!("no connection within {} s", LISTEN_CHECK_TIMEOUT.as_secs()),
            )),
        }
    }

    fn unreachable(&self, method: Method, path: &str, reason: String) -> EdgeError {
        EdgeError::Unreachable {
            admin: self.address.clone(),
            method,
            path: path.to_owned(),
            reason,
        }
    }

    /// True when anything answers HTTP at the admin address.
    pub(super) async fn answers(&self) -> bool {
        self.http
            .get(format!("{}/config/", self.base))
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .is_ok()
    }

    /// The object with `@id` `id`, or None when Caddy knows no such id.
    pub(super) async fn get_id(&self, id: &str) -> Result<Option<Value>, EdgeError> {
        match self.request(Method::GET, &format!("/id/{id}"), None).await {
            Ok(Value::Null) | Err(EdgeError::Refused { status: 404, .. }) => Ok(None),
            Ok(value) => Ok(Some(value)),
            Err(error) => Err(error),
        }
    }

    /// Sends one request; a non-2xx answer is [`EdgeError::Refused`] with Caddy's message.
    pub(super) async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, EdgeError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header(reqwest::header::ORIGIN, &self.origin);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let unreachable =
            |error: reqwest::Error| self.unreachable(method.clone(), path, error_chain(&error));
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(EdgeError::Refused {
                method,
                path: path.to_owned(),
                status: status.as_u16(),
                message: caddy_message(&bytes),
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|error| EdgeError::Unexpected {
            method,
            path: path.to_owned(),
            reason: error.to_string(),
        })
    }
}

/// Caddy's `{"error": "..."}`, or the start of whatever else it answered.
fn caddy_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct CaddyError {
        error: String,
    }
    match serde_json::from_slice::<CaddyError>(body) {
        Ok(answer) => answer.error,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            match text.char_indices().nth(500) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text.to_owned(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caddy_errors_are_shown_by_their_message() {
        assert_eq!(
            caddy_message(br#"{"error":"unknown object ID 'x'"}"#),
            "unknown object ID 'x'"
        );
        assert_eq!(caddy_message(b"  plain text\n"), "plain text");
        assert_eq!(caddy_message(&[b'x'; 2000]).chars().count(), 501);
    }
}
