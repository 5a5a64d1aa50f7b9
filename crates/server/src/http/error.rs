//! The one error type of the HTTP edge. Each variant is an HTTP status with a message the
//! caller can act on; faults of Wharf itself are logged in full and answered with a generic 500,
//! so no internal detail (a query, a path, a token) reaches the caller.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use wharf_wire::ApiError;

use crate::core::CoreError;
use crate::core::sealing::SealingError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// 426: the client must be upgraded to talk to this server.
    #[error("{0}")]
    UpgradeRequired(String),
    /// 408: the request's body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// 413: the request's body is larger than the route takes.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429: the client is past a limit; it may try again after `retry_after`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: std::time::Duration,
    },
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
    /// A stored secret cannot be opened: the server's secret key is not the one it was sealed with.
    #[error("{0}")]
    Sealing(#[from] SealingError),
}

/// Each kind of core error is one status.
impl From<CoreError> for HttpError {
    fn from(error: CoreError) -> HttpError {
        match error {
            CoreError::Invalid(message) => HttpError::BadRequest(message),
            CoreError::Refused(message) => HttpError::Unauthorized(message),
            CoreError::Forbidden(message) => HttpError::Forbidden(message),
            CoreError::NotFound(message) => HttpError::NotFound(message),
            CoreError::Conflict(message) => HttpError::Conflict(message),
            CoreError::Incompatible(message) => HttpError::UpgradeRequired(message),
            CoreError::Upstream(message) => HttpError::BadGateway(message),
            CoreError::Unavailable(message) => HttpError::Unavailable(message),
            CoreError::Sealing(error) => HttpError::Sealing(error),
            CoreError::Internal(error) => HttpError::Internal(error),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match &self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::Conflict(_) => StatusCode::CONFLICT,
            HttpError::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            HttpError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            HttpError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            HttpError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            HttpError::Sealing(error) => {
                tracing::error!(%error, "sealing");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let retry_after = match &self {
            HttpError::TooManyRequests { retry_after, .. } => Some(retry_after.as_secs()),
            _ => None,
        };
        let mut response = (
            status,
            Json(ApiError {
                error: self.to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

/// Reads a JSON body, answering 400 with serde's explanation when it does not fit.
pub(crate) struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, HttpError> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| HttpError::BadRequest(rejection.body_text()))?;
        if bytes.is_empty() {
            return serde_json::from_slice(b"{}")
                .map(JsonBody)
                .map_err(|error| {
                    HttpError::BadRequest(format!("a JSON body is required: {error}"))
                });
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|error| HttpError::BadRequest(format!("invalid JSON body: {error}")))
    }
}
