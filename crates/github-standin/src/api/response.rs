//! What an endpoint answers, before it becomes an HTTP response: GitHub's headers, error bodies and
//! 422s, `Link` pagination, and the answers of injected failures.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use rand::Rng as _;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::request::{ApiRequest, percent_encode};
use crate::auth::Authentication;
use crate::state::{self, error_body};

/// A response before it becomes an HTTP response, so that its JSON can be checked and recorded.
#[derive(Debug)]
pub(super) struct ApiResponse {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: ResponseBody,
}

#[derive(Debug)]
pub(super) enum ResponseBody {
    Json(Value),
    Text(String),
    Bytes(Vec<u8>),
    Empty,
}

impl ApiResponse {
    pub(super) fn json(status: u16, value: Value) -> ApiResponse {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: ResponseBody::Json(value),
        }
    }

    pub(super) fn error(status: u16, message: &str) -> ApiResponse {
        ApiResponse::json(status, error_body(status, message))
    }

    pub(super) fn not_found() -> ApiResponse {
        ApiResponse::error(404, "Not Found")
    }

    pub(super) fn text(status: u16, text: impl Into<String>) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: ResponseBody::Text(text.into()),
        }
    }

    pub(super) fn empty(status: u16) -> ApiResponse {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: ResponseBody::Empty,
        }
    }

    pub(super) fn with_header(mut self, name: &str, value: impl Into<String>) -> ApiResponse {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// GitHub's 422 answer for a request body that breaks the endpoint's schema.
    pub(super) fn invalid_request(problem: &str) -> ApiResponse {
        ApiResponse::json(
            422,
            json!({
                "message": format!("Invalid request.\n\n{problem}"),
                "documentation_url": state::DOCUMENTATION_URL,
                "status": "422"
            }),
        )
    }

    pub(super) fn into_response(self, api_headers: bool) -> Response {
        let (content_type, bytes) = match self.body {
            ResponseBody::Json(value) => (
                Some("application/json; charset=utf-8"),
                serde_json::to_vec(&value).unwrap_or_default(),
            ),
            ResponseBody::Text(text) => (None, text.into_bytes()),
            ResponseBody::Bytes(bytes) => (None, bytes),
            ResponseBody::Empty => (None, Vec::new()),
        };
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        if let Some(content_type) = content_type {
            append_header(headers, "content-type", content_type);
        }
        if api_headers {
            let reset = OffsetDateTime::now_utc().unix_timestamp() + 3600;
            for (name, value) in [
                ("x-github-media-type", "github.v3; format=json".to_string()),
                ("x-github-api-version-selected", "2022-11-28".to_string()),
                ("x-github-request-id", request_id()),
                ("x-ratelimit-limit", "5000".to_string()),
                ("x-ratelimit-resource", "core".to_string()),
            ] {
                append_header(headers, name, &value);
            }
            // Explicit rate-limit headers of the response (an injected rate limit) win.
            if !self
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("x-ratelimit-remaining"))
            {
                append_header(headers, "x-ratelimit-remaining", "4999");
                append_header(headers, "x-ratelimit-used", "1");
                append_header(headers, "x-ratelimit-reset", &reset.to_string());
            }
        }
        for (name, value) in &self.headers {
            append_header(headers, name, value);
        }
        response
    }
}

fn append_header(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.append(name, value);
    }
}

fn request_id() -> String {
    let mut random = rand::rng();
    format!(
        "{:04X}:{:06X}:{:07X}:{:07X}:{:08X}",
        random.random::<u16>(),
        random.random::<u32>() & 0xFF_FFFF,
        random.random::<u32>() & 0xFFF_FFFF,
        random.random::<u32>() & 0xFFF_FFFF,
        random.random::<u32>()
    )
}

/// The answer to a request that `fail_next` told the stand-in to fail.
pub(super) fn injected_failure(
    status: u16,
    authentication: &Authentication,
    api: bool,
) -> ApiResponse {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Error");
    if status == 403 || status == 429 {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let message = match authentication.installation_id() {
            Some(id) => format!("API rate limit exceeded for installation ID {id}."),
            None => "API rate limit exceeded.".to_string(),
        };
        let response = if api {
            ApiResponse::json(
                status,
                json!({
                    "message": message,
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                    "status": status.to_string()
                }),
            )
        } else {
            ApiResponse::text(status, format!("{message}\n"))
        };
        let response = response
            .with_header("x-ratelimit-limit", "5000")
            .with_header("x-ratelimit-remaining", "0")
            .with_header("x-ratelimit-used", "5000")
            .with_header("x-ratelimit-reset", (now + 1).to_string())
            .with_header("x-ratelimit-resource", "core");
        return if status == 429 {
            response.with_header("retry-after", "1")
        } else {
            response
        };
    }
    if api {
        ApiResponse::error(status, reason)
    } else {
        ApiResponse::text(status, format!("{reason}\n"))
    }
}

/// Slices `items` by the `per_page` (default 30, at most 100) and `page` query parameters, wraps the
/// page with `wrap`, and adds GitHub's `Link` header when there is more than one page (its links
/// keep the request's other query parameters, a list's filters, as GitHub's do).
pub(super) fn paginate(
    request: &ApiRequest<'_>,
    path: &str,
    items: Vec<Value>,
    wrap: impl FnOnce(Vec<Value>) -> Value,
) -> ApiResponse {
    let per_page = request
        .query_value("per_page")
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|value| *value > 0)
        .unwrap_or(30)
        .min(100);
    let page = request
        .query_value("page")
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|value| *value > 0)
        .unwrap_or(1);
    let last_page = items.len().div_ceil(per_page).max(1);
    let page_items: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let response = ApiResponse::json(200, wrap(page_items));
    let filters: String = request
        .query
        .iter()
        .filter(|(name, _)| name != "per_page" && name != "page")
        .map(|(name, value)| format!("{}={}&", percent_encode(name), percent_encode(value)))
        .collect();
    let link = |number: usize, relation: &str| {
        format!(
            "<{}{path}?{filters}per_page={per_page}&page={number}>; rel=\"{relation}\"",
            request.api_url()
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page < last_page {
        links.push(link(page + 1, "next"));
        links.push(link(last_page, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
    }
    if links.is_empty() {
        response
    } else {
        response.with_header("link", links.join(", "))
    }
}
