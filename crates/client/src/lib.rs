//! One typed client for Wharf's HTTP API. Every request type in `wharf-wire` names its answer,
//! and [`ApiClient::send`] sends any of them, so the agent and the CLI share one code path.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use wharf_wire::{ApiError, ApiRequest, Method, text};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error; `message` is its one-line explanation.
    #[error("{message}")]
    Api { status: u16, message: String },
    /// The server could not be reached.
    #[error("cannot reach the Wharf server at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    /// The answer was not what the request expects.
    #[error("unexpected answer from the Wharf server: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client bound to one server and one bearer token.
#[derive(Clone)]
pub struct ApiClient {
    base_url: String,
    token: SecretString,
    http: reqwest::Client,
}

impl ApiClient {
    /// `base_url` is the server's address, such as `http://127.0.0.1:8420`.
    pub fn new(base_url: &str, token: SecretString) -> Result<ApiClient, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| ClientError::Decode(error.to_string()))?;
        Ok(ApiClient {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// The server's address.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends `request` and reads its answer. `timeout` bounds the whole exchange (long-polls
    /// pass their wait plus a margin).
    pub async fn send_with_timeout<R: ApiRequest>(
        &self,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        let url = format!("{}{}", self.base_url, request.path());
        let builder = match R::METHOD {
            Method::Get => self.http.get(&url),
            Method::Post => self.http.post(&url).json(request),
            Method::Put => self.http.put(&url).json(request),
            Method::Delete => self.http.delete(&url),
        };
        let response = builder
            .bearer_auth(self.token.expose_secret())
            .timeout(timeout)
            .send()
            .await
            .map_err(|error| ClientError::Unreachable {
                server: self.base_url.clone(),
                detail: error.without_url().to_string(),
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ClientError::Unreachable {
                server: self.base_url.clone(),
                detail: error.without_url().to_string(),
            })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&bytes)
                .map(|error| error.error)
                .unwrap_or_else(|_| {
                    format!(
                        "the server answered {status}: {}",
                        text::clip(&String::from_utf8_lossy(&bytes), text::QUOTED_CHARS)
                    )
                });
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// Sends `request` with a 60-second limit.
    pub async fn send<R: ApiRequest>(&self, request: &R) -> Result<R::Response, ClientError> {
        self.send_with_timeout(request, Duration::from_secs(60))
            .await
    }
}
